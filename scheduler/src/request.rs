//! What a job asks for: its shape (nodes, tasks, CPUs per task, memory, GPUs), its partition
//! and time limit, the nodes it must or must not use, and the checks that need no cluster.

use std::time::Duration;

use gangway_topology::GpuType;

use crate::rejection::Rejection;
use crate::types::{Bytes, JobId, Timestamp};

/// Memory a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryRequest {
    /// `--mem`: memory on every node of the job.
    PerNode(Bytes),
    /// `--mem-per-cpu`: memory per allocated CPU.
    PerCpu(Bytes),
}

/// The shape and constraints of a job: the domain form of `alloc`/`run`/`batch` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// `--nodes` minimum.
    pub min_nodes: u32,
    /// `--nodes` maximum (`None`: the minimum).
    pub max_nodes: Option<u32>,
    /// `--ntasks` (`None`: one per node, or `--ntasks-per-node` per node, at the minimum count).
    pub ntasks: Option<u32>,
    /// `--ntasks-per-node`: at most this many tasks on a node.
    pub ntasks_per_node: Option<u32>,
    /// `--cpus-per-task`: cores per task.
    pub cpus_per_task: u32,
    /// `--mem` or `--mem-per-cpu`.
    pub memory: Option<MemoryRequest>,
    /// `--gpus-per-task`.
    pub gpus_per_task: u32,
    /// The GPUs' type (`--gres=gpu:k40m:1`); `None`: any type.
    pub gpu_type: Option<GpuType>,
    /// `--exclusive`: whole nodes.
    pub exclusive: bool,
    /// `--partition` (`None`: the default partition).
    pub partition: Option<String>,
    /// `--time` (`None`: the partition's default).
    pub time_limit: Option<Duration>,
    /// `--nodelist`: nodes the job must include.
    pub nodelist: Vec<String>,
    /// `--exclude`: nodes the job must not use.
    pub exclude: Vec<String>,
    /// Higher runs first.
    pub priority: u32,
    /// When the job was submitted.
    pub submit_time: Timestamp,
    /// `gangway hold`: not started until released.
    pub held: bool,
    /// Nodes an earlier attempt failed on, avoided by the next one.
    pub excluded_after_failure: Vec<String>,
}

impl Default for JobRequest {
    fn default() -> Self {
        Self {
            min_nodes: 1,
            max_nodes: None,
            ntasks: None,
            ntasks_per_node: None,
            cpus_per_task: 1,
            memory: None,
            gpus_per_task: 0,
            gpu_type: None,
            exclusive: false,
            partition: None,
            time_limit: None,
            nodelist: Vec::new(),
            exclude: Vec::new(),
            priority: 0,
            submit_time: Timestamp(0),
            held: false,
            excluded_after_failure: Vec::new(),
        }
    }
}

impl JobRequest {
    /// One task on one node, one CPU: the default shape.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--nodes=min-max`.
    pub fn nodes(mut self, min: u32, max: u32) -> Self {
        self.min_nodes = min;
        self.max_nodes = Some(max);
        self
    }

    /// `--ntasks`.
    pub fn ntasks(mut self, n: u32) -> Self {
        self.ntasks = Some(n);
        self
    }

    /// `--ntasks-per-node`.
    pub fn ntasks_per_node(mut self, n: u32) -> Self {
        self.ntasks_per_node = Some(n);
        self
    }

    /// `--cpus-per-task`.
    pub fn cpus_per_task(mut self, n: u32) -> Self {
        self.cpus_per_task = n;
        self
    }

    /// `--mem` / `--mem-per-cpu`.
    pub fn memory(mut self, m: MemoryRequest) -> Self {
        self.memory = Some(m);
        self
    }

    /// `--gpus-per-task`.
    pub fn gpus_per_task(mut self, n: u32) -> Self {
        self.gpus_per_task = n;
        self
    }

    /// The GPUs' type (`--gres=gpu:TYPE:N`).
    pub fn gpu_type(mut self, t: GpuType) -> Self {
        self.gpu_type = Some(t);
        self
    }

    /// `--exclusive`.
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// `--partition`.
    pub fn partition(mut self, name: &str) -> Self {
        self.partition = Some(name.to_owned());
        self
    }

    /// `--time`.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// `--nodelist`.
    pub fn nodelist(mut self, names: &[&str]) -> Self {
        self.nodelist = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// `--exclude`.
    pub fn exclude(mut self, names: &[&str]) -> Self {
        self.exclude = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Priority (higher first).
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = p;
        self
    }

    /// Submit time.
    pub fn submitted(mut self, at: Timestamp) -> Self {
        self.submit_time = at;
        self
    }

    /// Held.
    pub fn held(mut self) -> Self {
        self.held = true;
        self
    }

    /// The most nodes the job may use.
    pub(crate) fn max_nodes(&self) -> u32 {
        self.max_nodes.unwrap_or(self.min_nodes)
    }

    /// Tasks the job runs.
    pub(crate) fn task_count(&self) -> u32 {
        self.ntasks.unwrap_or_else(|| {
            self.min_nodes.saturating_mul(self.ntasks_per_node.unwrap_or(1)).max(1)
        })
    }

    /// Checks the parts that need no cluster: counts that make no job.
    pub(crate) fn check_shape(&self) -> Result<(), Rejection> {
        if self.min_nodes == 0 {
            return Err(Rejection::ZeroNodes);
        }
        if self.max_nodes() < self.min_nodes {
            return Err(Rejection::NodeRangeInverted {
                min: self.min_nodes,
                max: self.max_nodes(),
            });
        }
        if self.ntasks == Some(0) {
            return Err(Rejection::ZeroTasks);
        }
        if self.cpus_per_task == 0 {
            return Err(Rejection::ZeroCpusPerTask);
        }
        if self.ntasks_per_node == Some(0) {
            return Err(Rejection::ZeroTasksPerNode);
        }
        let tasks = self.task_count();
        if tasks < self.min_nodes {
            return Err(Rejection::FewerTasksThanNodes {
                ntasks: tasks,
                min_nodes: self.min_nodes,
            });
        }
        if let Some(per_node) = self.ntasks_per_node {
            let need = tasks.div_ceil(per_node);
            if need > self.max_nodes() {
                return Err(Rejection::TasksPerNodeNeedMoreNodes {
                    ntasks: tasks,
                    per_node,
                    need,
                    max_nodes: self.max_nodes(),
                });
            }
        }
        Ok(())
    }
}

/// A job waiting to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// Its id.
    pub id: JobId,
    /// What it asks for.
    pub request: JobRequest,
}
