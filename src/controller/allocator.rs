//! The gang allocator: pure functions from the cluster's state and the pending queue to
//! decisions (start this job on these nodes and CPUs, or keep it waiting for this reason).
//!
//! No I/O and no clocks: time arrives as values ([`Timestamp`], [`Duration`]), and the
//! controller's I/O layer carries the decisions out (store them, tell the agents) and then
//! records them with [`ClusterState::allocate`].
//!
//! # Policy
//! - **Order**: pending jobs are considered by priority (highest first), then submit time
//!   (earliest first), then job id, so a pass is deterministic.
//! - **Gangs**: a job gets its whole shape at once or nothing; a job needing 3 nodes never starts
//!   on 2, and every node of a gang runs at least one task.
//! - **Packing**: nodes that already run jobs are filled before idle ones (first fit in
//!   partition order), and a node must be able to hold its share of the job (`ntasks` over the
//!   most nodes allowed), so a one-node job goes to the fullest node it fits on. Among the
//!   gang's nodes tasks fill each node before the next. The exact CPUs come from
//!   [`gangway_topology::place`] over the node's free CPUs (core binding, block distribution),
//!   which keeps a task inside one NUMA node whenever it fits there.
//! - **Strict priority, no backfill**: a job that cannot start reserves every node it could
//!   use; a lower-priority job starts only on nodes no waiting higher-priority job could use,
//!   and otherwise waits with [`PendingReason::Priority`]. A big job can therefore idle part of a
//!   partition until it fits; backfill (starting short jobs that end before it would) needs
//!   end-time estimates and comes later.
//! - **Memory and GPUs** are counted per node; a job without `--mem` is not charged memory, and
//!   `--exclusive` takes the whole node (every CPU, all memory, every GPU).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gangway_topology::{
    CpuBind, CpuSet, Distribution, NodeDistribution, NodeSpec, PlacementRequest, Shape,
    SocketDistribution, Topology, TopologyError, place,
};

/// A job's identifier, as the controller numbers them.
pub type JobId = u64;

/// A point in time, milliseconds since the Unix epoch, as the controller's clock gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// A node's health, as the controller and administrators set it. Whether it runs jobs
/// ([`NodeState::Idle`], [`NodeState::Mixed`], [`NodeState::Allocated`]) follows from its
/// allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeHealth {
    /// Registered and answering: takes new work.
    #[default]
    Up,
    /// Taken out of service by an administrator (`gangway drain`); running jobs continue.
    Drained,
    /// Lost or never registered: takes no work.
    Down,
    /// Missed heartbeats: takes no new work until it answers again or is declared lost.
    Suspect,
}

/// A node's state as `gangway nodes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Up, nothing allocated.
    Idle,
    /// Up, some CPUs allocated.
    Mixed,
    /// Up, every CPU allocated (or held by an exclusive job).
    Allocated,
    /// Drained by an administrator.
    Drained,
    /// Down.
    Down,
    /// Suspect (missed heartbeats).
    Suspect,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Idle => "idle",
            NodeState::Mixed => "mixed",
            NodeState::Allocated => "allocated",
            NodeState::Drained => "drained",
            NodeState::Down => "down",
            NodeState::Suspect => "suspect",
        })
    }
}

/// What one job holds on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The job.
    pub job: JobId,
    /// CPUs (OS indexes).
    pub cpus: CpuSet,
    /// Memory, bytes.
    pub memory: u64,
    /// GPUs (indexes as in [`gangway_topology::Gpu::index`]).
    pub gpus: CpuSet,
    /// Whether the job holds the node alone.
    pub exclusive: bool,
}

/// One node: its hardware, health and allocations, with totals kept up to date so a
/// scheduling pass over 10,000 nodes does not recount them.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    topology: Arc<Topology>,
    health: NodeHealth,
    reason: Option<String>,
    partitions: Vec<usize>,
    allocations: Vec<Allocation>,
    /// CPUs jobs may use: allowed and online (what placement considers available).
    usable_cpus: CpuSet,
    /// Cores with a usable CPU: placement's units.
    total_units: u32,
    /// Usable CPUs per unit (rounded up), for memory-per-CPU estimates.
    cpus_per_unit: u32,
    used_cpus: CpuSet,
    used_memory: u64,
    used_gpus: CpuSet,
    /// Units with no usable CPU allocated.
    free_units: u32,
    exclusive: bool,
}

impl Node {
    fn new(name: String, topology: Arc<Topology>) -> Self {
        let mut usable_cpus = topology.allowed_cpuset.intersection(&topology.online_cpuset);
        if usable_cpus.is_empty() {
            // Hand-built models may leave the online set empty (placement does the same).
            usable_cpus = topology.allowed_cpuset.clone();
        }
        let total_units = count_units(&topology, &usable_cpus);
        let cpus_per_unit = (usable_cpus.len() as u32).div_ceil(total_units.max(1)).max(1);
        Self {
            name,
            topology,
            health: NodeHealth::Up,
            reason: None,
            partitions: Vec::new(),
            allocations: Vec::new(),
            usable_cpus,
            total_units,
            cpus_per_unit,
            used_cpus: CpuSet::new(),
            used_memory: 0,
            used_gpus: CpuSet::new(),
            free_units: total_units,
            exclusive: false,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's hardware model (shared between identical nodes).
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// Health as set by the controller or an administrator.
    pub fn health(&self) -> NodeHealth {
        self.health
    }

    /// Why the node is drained, down or suspect.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The state `gangway nodes` shows.
    pub fn state(&self) -> NodeState {
        match self.health {
            NodeHealth::Drained => NodeState::Drained,
            NodeHealth::Down => NodeState::Down,
            NodeHealth::Suspect => NodeState::Suspect,
            NodeHealth::Up if self.allocations.is_empty() => NodeState::Idle,
            NodeHealth::Up if self.exclusive || self.free_units == 0 => NodeState::Allocated,
            NodeHealth::Up => NodeState::Mixed,
        }
    }

    /// What each job holds here.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// CPUs jobs may use (allowed and online).
    pub fn usable_cpus(&self) -> &CpuSet {
        &self.usable_cpus
    }

    /// CPUs allocated to jobs.
    pub fn allocated_cpus(&self) -> &CpuSet {
        &self.used_cpus
    }

    /// Memory allocated to jobs, bytes.
    pub fn allocated_memory(&self) -> u64 {
        self.used_memory
    }

    /// GPUs allocated to jobs.
    pub fn allocated_gpus(&self) -> &CpuSet {
        &self.used_gpus
    }

    /// Memory of the node, bytes.
    pub fn total_memory(&self) -> u64 {
        self.topology.total_memory
    }

    /// Indexes (into [`ClusterState::partitions`]) of the partitions holding the node.
    pub fn partitions(&self) -> &[usize] {
        &self.partitions
    }

    fn gpu_count(&self) -> u32 {
        self.topology.gpus.len() as u32
    }

    fn all_gpus(&self) -> CpuSet {
        self.topology.gpus.iter().map(|g| g.index).collect()
    }

    /// Recomputes the totals after allocations changed.
    fn refresh_totals(&mut self) {
        let mut cpus = CpuSet::new();
        let mut gpus = CpuSet::new();
        let mut memory = 0u64;
        for a in &self.allocations {
            cpus |= &a.cpus;
            gpus |= &a.gpus;
            memory = memory.saturating_add(a.memory);
        }
        let free = self.usable_cpus.difference(&cpus);
        self.free_units = count_units(&self.topology, &free);
        self.used_cpus = cpus;
        self.used_gpus = gpus;
        self.used_memory = memory;
        self.exclusive = self.allocations.iter().any(|a| a.exclusive);
    }
}

/// Cores holding at least one of `cpus`: how many placement units the CPUs make.
fn count_units(topology: &Topology, cpus: &CpuSet) -> u32 {
    topology.cores.iter().filter(|c| c.cpuset.intersects(cpus)).count() as u32
}

/// A partition: a named set of nodes with time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its name (`--partition`).
    pub name: String,
    /// Its nodes (indexes into [`ClusterState::nodes`]), in configuration order.
    pub nodes: Vec<usize>,
    /// Time limit of jobs that give none.
    pub default_time: Option<Duration>,
    /// Longest time limit a job may ask for.
    pub max_time: Option<Duration>,
}

/// Why the cluster's state could not be changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Two nodes with one name.
    #[error("node '{0}' is defined twice; give every node its own name")]
    DuplicateNode(String),
    /// Two partitions with one name.
    #[error("partition '{0}' is defined twice; give every partition its own name")]
    DuplicatePartition(String),
    /// A name that is no node.
    #[error("unknown node '{0}'")]
    UnknownNode(String),
    /// A grant for CPUs or GPUs another job holds.
    #[error("job {job} cannot take {what} {items} on node '{node}': job {holder} holds them")]
    AlreadyAllocated {
        /// The job being recorded.
        job: JobId,
        /// `CPUs` or `GPUs`.
        what: &'static str,
        /// The contested ones.
        items: String,
        /// The node.
        node: String,
        /// A job holding them.
        holder: JobId,
    },
    /// A job recorded twice on a node.
    #[error("job {job} already holds resources on node '{node}'")]
    JobAlreadyOnNode {
        /// The job.
        job: JobId,
        /// The node.
        node: String,
    },
    /// A shape that makes no model.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Everything the allocator knows: nodes, their allocations, partitions.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    nodes: Vec<Node>,
    node_index: HashMap<String, usize>,
    partitions: Vec<Partition>,
    partition_index: HashMap<String, usize>,
    default_partition: Option<usize>,
}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an `Up`, idle node; returns its index.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        topology: Arc<Topology>,
    ) -> Result<usize, ClusterError> {
        let name = name.into();
        if self.node_index.contains_key(&name) {
            return Err(ClusterError::DuplicateNode(name));
        }
        let index = self.nodes.len();
        self.node_index.insert(name.clone(), index);
        self.nodes.push(Node::new(name, topology));
        Ok(index)
    }

    /// Adds a partition of the named nodes; the first partition added with `is_default` (or
    /// else the first one) takes jobs that name none. Returns its index.
    pub fn add_partition(
        &mut self,
        name: impl Into<String>,
        node_names: &[&str],
        limits: PartitionLimits,
    ) -> Result<usize, ClusterError> {
        let name = name.into();
        if self.partition_index.contains_key(&name) {
            return Err(ClusterError::DuplicatePartition(name));
        }
        let mut nodes = Vec::with_capacity(node_names.len());
        for n in node_names {
            let i = self.index_of(n).ok_or_else(|| ClusterError::UnknownNode((*n).to_owned()))?;
            if !nodes.contains(&i) {
                nodes.push(i);
            }
        }
        let index = self.partitions.len();
        for &i in &nodes {
            if let Some(node) = self.nodes.get_mut(i) {
                node.partitions.push(index);
            }
        }
        if limits.is_default && self.default_partition.is_none() {
            self.default_partition = Some(index);
        }
        self.partition_index.insert(name.clone(), index);
        self.partitions.push(Partition {
            name,
            nodes,
            default_time: limits.default_time,
            max_time: limits.max_time,
        });
        Ok(index)
    }

    /// Sets a node's health and the reason shown beside it.
    pub fn set_health(
        &mut self,
        node: &str,
        health: NodeHealth,
        reason: Option<String>,
    ) -> Result<(), ClusterError> {
        let i = self.index_of(node).ok_or_else(|| ClusterError::UnknownNode(node.to_owned()))?;
        if let Some(n) = self.nodes.get_mut(i) {
            n.health = health;
            n.reason = reason;
        }
        Ok(())
    }

    /// Records a started job's grants; refuses (changing nothing) if any CPU or GPU is
    /// already held, so a CPU is never handed out twice.
    pub fn allocate(&mut self, start: &JobStart) -> Result<(), ClusterError> {
        for grant in &start.nodes {
            let node = self
                .nodes
                .get(grant.node_index)
                .filter(|n| n.name == grant.node)
                .ok_or_else(|| ClusterError::UnknownNode(grant.node.clone()))?;
            for a in &node.allocations {
                if a.job == start.job {
                    return Err(ClusterError::JobAlreadyOnNode {
                        job: start.job,
                        node: node.name.clone(),
                    });
                }
                let overlap = |what, mine: &CpuSet, theirs: &CpuSet| {
                    let both = mine.intersection(theirs);
                    (!both.is_empty()).then(|| ClusterError::AlreadyAllocated {
                        job: start.job,
                        what,
                        items: both.to_list_string(),
                        node: node.name.clone(),
                        holder: a.job,
                    })
                };
                if let Some(e) = overlap("CPUs", &grant.cpus, &a.cpus) {
                    return Err(e);
                }
                if let Some(e) = overlap("GPUs", &grant.gpus, &a.gpus) {
                    return Err(e);
                }
            }
        }
        for grant in &start.nodes {
            if let Some(node) = self.nodes.get_mut(grant.node_index) {
                node.allocations.push(Allocation {
                    job: start.job,
                    cpus: grant.cpus.clone(),
                    memory: grant.memory,
                    gpus: grant.gpus.clone(),
                    exclusive: grant.exclusive,
                });
                node.refresh_totals();
            }
        }
        Ok(())
    }

    /// Frees everything a job holds; returns on how many nodes it held something.
    pub fn release(&mut self, job: JobId) -> usize {
        let mut released = 0;
        for node in &mut self.nodes {
            let before = node.allocations.len();
            node.allocations.retain(|a| a.job != job);
            if node.allocations.len() != before {
                released += 1;
                node.refresh_totals();
            }
        }
        released
    }

    /// Every node, in configuration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index_of(name).and_then(|i| self.nodes.get(i))
    }

    /// Every partition, in configuration order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// A partition by name.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partition_index.get(name).and_then(|&i| self.partitions.get(i))
    }

    /// The partition of jobs that name none.
    pub fn default_partition(&self) -> Option<&Partition> {
        self.default_partition
            .or((!self.partitions.is_empty()).then_some(0))
            .and_then(|i| self.partitions.get(i))
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    fn resolve_partition(&self, name: Option<&str>) -> Result<&Partition, Rejection> {
        match name {
            Some(n) => self.partition(n).ok_or_else(|| Rejection::UnknownPartition {
                name: n.to_owned(),
                known: self.partition_names(),
            }),
            None => self.default_partition().ok_or(Rejection::NoPartitions),
        }
    }

    fn partition_names(&self) -> String {
        let names: Vec<&str> = self.partitions.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    }
}

/// A partition's time limits and whether it is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionLimits {
    /// Time limit of jobs that give none.
    pub default_time: Option<Duration>,
    /// Longest time limit a job may ask for.
    pub max_time: Option<Duration>,
    /// Whether jobs naming no partition go here.
    pub is_default: bool,
}

impl PartitionLimits {
    /// No limits, not the default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the default time limit.
    pub fn default_time(mut self, limit: Duration) -> Self {
        self.default_time = Some(limit);
        self
    }

    /// Sets the maximum time limit.
    pub fn max_time(mut self, limit: Duration) -> Self {
        self.max_time = Some(limit);
        self
    }

    /// Makes this the default partition.
    pub fn default_partition(mut self) -> Self {
        self.is_default = true;
        self
    }
}

/// Memory a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRequest {
    /// `--mem`: bytes on every node of the job.
    PerNode(u64),
    /// `--mem-per-cpu`: bytes per allocated CPU.
    PerCpu(u64),
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
    fn max_nodes(&self) -> u32 {
        self.max_nodes.unwrap_or(self.min_nodes)
    }

    /// Tasks the job runs.
    fn task_count(&self) -> u32 {
        self.ntasks.unwrap_or_else(|| {
            self.min_nodes.saturating_mul(self.ntasks_per_node.unwrap_or(1)).max(1)
        })
    }

    /// Checks the parts that need no cluster: counts that make no job.
    fn check_shape(&self) -> Result<(), Rejection> {
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

/// Why a pending job has not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingReason {
    /// The nodes it can use are busy.
    Resources,
    /// A higher-priority job waits for the nodes it could use.
    Priority,
    /// Its time limit is over its partition's maximum (the limit changed since submission).
    PartitionTimeLimit,
    /// Nodes it needs are down, drained or suspect.
    NodeDown,
    /// It is held (`gangway release` lets it run).
    Held,
    /// It no longer fits the cluster's configuration (its partition or nodes were removed);
    /// [`validate`] says why.
    Unsatisfiable,
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PendingReason::Resources => "Resources",
            PendingReason::Priority => "Priority",
            PendingReason::PartitionTimeLimit => "PartitionTimeLimit",
            PendingReason::NodeDown => "NodeDown",
            PendingReason::Held => "Held",
            PendingReason::Unsatisfiable => "Unsatisfiable",
        })
    }
}

/// One task's share of a node grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGrant {
    /// CPUs (OS indexes) of the task.
    pub cpus: CpuSet,
    /// GPUs of the task.
    pub gpus: CpuSet,
}

/// What a starting job gets on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGrant {
    /// The node's name.
    pub node: String,
    /// The node's index in [`ClusterState::nodes`].
    pub node_index: usize,
    /// Every CPU granted (OS indexes): the union of the tasks' CPUs, or the whole node when
    /// exclusive.
    pub cpus: CpuSet,
    /// Memory granted, bytes.
    pub memory: u64,
    /// GPUs granted.
    pub gpus: CpuSet,
    /// Whether the node is the job's alone.
    pub exclusive: bool,
    /// The tasks placed here, in order.
    pub tasks: Vec<TaskGrant>,
}

/// A job to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStart {
    /// The job.
    pub job: JobId,
    /// Its partition.
    pub partition: String,
    /// Its time limit (its own, or the partition's default; `None`: unlimited).
    pub time_limit: Option<Duration>,
    /// Its nodes, in task order.
    pub nodes: Vec<NodeGrant>,
}

/// What the allocator decided for one pending job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it with these grants.
    Start(JobStart),
    /// Keep it pending.
    Wait {
        /// The job.
        job: JobId,
        /// Why.
        reason: PendingReason,
    },
}

impl Decision {
    /// The job decided on.
    pub fn job(&self) -> JobId {
        match self {
            Decision::Start(s) => s.job,
            Decision::Wait { job, .. } => *job,
        }
    }
}

/// Why a request can never run on this cluster. Each message names the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The cluster has no partition.
    #[error("the cluster has no partitions; add one to the controller's configuration")]
    NoPartitions,
    /// `--partition` names none.
    #[error("unknown partition '{name}'; use --partition with one of: {known}")]
    UnknownPartition {
        /// The name given.
        name: String,
        /// The partitions there are.
        known: String,
    },
    /// `--nodes=0`.
    #[error("--nodes must be at least 1")]
    ZeroNodes,
    /// `--nodes=5-3`.
    #[error(
        "--nodes={min}-{max}: the minimum is above the maximum; write --nodes=MIN-MAX with MIN <= MAX"
    )]
    NodeRangeInverted {
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// `--ntasks=0`.
    #[error("--ntasks must be at least 1")]
    ZeroTasks,
    /// `--cpus-per-task=0`.
    #[error("--cpus-per-task must be at least 1")]
    ZeroCpusPerTask,
    /// `--ntasks-per-node=0`.
    #[error("--ntasks-per-node must be at least 1")]
    ZeroTasksPerNode,
    /// Fewer tasks than nodes.
    #[error(
        "--ntasks={ntasks} is less than --nodes={min_nodes}: every node of a job runs at least \
         one task; lower --nodes or raise --ntasks"
    )]
    FewerTasksThanNodes {
        /// Tasks.
        ntasks: u32,
        /// Minimum nodes.
        min_nodes: u32,
    },
    /// `--ntasks-per-node` needs more nodes than `--nodes` allows.
    #[error(
        "--ntasks={ntasks} with --ntasks-per-node={per_node} needs {need} nodes but --nodes allows \
         at most {max_nodes}; raise --nodes or --ntasks-per-node"
    )]
    TasksPerNodeNeedMoreNodes {
        /// Tasks.
        ntasks: u32,
        /// `--ntasks-per-node`.
        per_node: u32,
        /// Nodes needed.
        need: u32,
        /// `--nodes` maximum.
        max_nodes: u32,
    },
    /// More nodes than the partition has.
    #[error(
        "--nodes={requested} but partition '{partition}' has only {has} nodes{excluded}; lower \
         --nodes or choose a bigger partition with --partition"
    )]
    TooManyNodes {
        /// Minimum nodes asked.
        requested: u32,
        /// The partition.
        partition: String,
        /// Nodes it has (minus excluded ones).
        has: usize,
        /// ` (after --exclude)` when exclusions shrank it.
        excluded: &'static str,
    },
    /// One task needs more cores than any node has.
    #[error(
        "--cpus-per-task={cpus_per_task} is more than any node of partition '{partition}' has \
         (the largest has {largest} cores); lower --cpus-per-task"
    )]
    TaskTooBig {
        /// `--cpus-per-task`.
        cpus_per_task: u32,
        /// The partition.
        partition: String,
        /// Cores of its largest node.
        largest: u32,
    },
    /// Memory per node over any node's memory.
    #[error(
        "the job needs {need} of memory per node but the largest node of partition '{partition}' \
         has {largest}; lower --mem or --mem-per-cpu"
    )]
    MemoryTooBig {
        /// Memory needed on one node (human form).
        need: String,
        /// The partition.
        partition: String,
        /// Memory of its largest node (human form).
        largest: String,
    },
    /// One task needs more GPUs than any node has.
    #[error(
        "--gpus-per-task={per_task} is more than any node of partition '{partition}' has (the \
         most is {largest}); lower --gpus-per-task or pick a GPU partition with --partition"
    )]
    TooManyGpus {
        /// `--gpus-per-task`.
        per_task: u32,
        /// The partition.
        partition: String,
        /// Most GPUs of one node.
        largest: u32,
    },
    /// `--time` over the partition's maximum.
    #[error(
        "--time={requested} is over partition '{partition}''s limit of {max}; lower --time to at \
         most {max} or choose another partition with --partition"
    )]
    TimeOverPartitionMax {
        /// Asked (Slurm time form).
        requested: String,
        /// The partition.
        partition: String,
        /// Its maximum (Slurm time form).
        max: String,
    },
    /// `--nodelist` names nodes that do not exist.
    #[error("--nodelist names unknown nodes: {names}; check the names with `gangway nodes`")]
    UnknownNodes {
        /// The unknown names.
        names: String,
    },
    /// `--nodelist` names nodes of another partition.
    #[error(
        "--nodelist names nodes outside partition '{partition}': {names}; pick nodes of the \
         partition or change --partition"
    )]
    NodesOutsidePartition {
        /// The nodes.
        names: String,
        /// The partition.
        partition: String,
    },
    /// A node both required and excluded.
    #[error("{names} appear in --nodelist and are excluded; remove them from one of the two")]
    NodelistExcluded {
        /// The nodes.
        names: String,
    },
    /// `--nodelist` longer than `--nodes` allows.
    #[error(
        "--nodelist names {listed} nodes but --nodes allows at most {max_nodes}; raise --nodes or \
         shorten --nodelist"
    )]
    NodelistOverMax {
        /// Nodes listed.
        listed: usize,
        /// `--nodes` maximum.
        max_nodes: u32,
    },
    /// The whole shape does not fit even an empty partition.
    #[error(
        "{ntasks} tasks x {cpus_per_task} cores on {nodes} nodes do not fit partition \
         '{partition}' even when it is empty (its usable nodes hold at most {capacity} such \
         tasks{within}); lower --ntasks, --cpus-per-task, --mem or --gpus-per-task, or raise --nodes"
    )]
    NeverFits {
        /// Tasks.
        ntasks: u32,
        /// `--cpus-per-task`.
        cpus_per_task: u32,
        /// `--nodes` as given.
        nodes: String,
        /// The partition.
        partition: String,
        /// Tasks the partition's nodes can hold at most.
        capacity: u64,
        /// ` on N nodes` when the node count limited it.
        within: String,
    },
}

/// Slurm's time form: `[D-]HH:MM:SS`.
fn format_time(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 { format!("{days}-{h:02}:{m:02}:{sec:02}") } else { format!("{h}:{m:02}:{sec:02}") }
}

/// Checks a request against the cluster at submission: a request that can never run (whatever
/// finishes, whatever comes back up) is rejected with the reason and the fix.
pub fn validate(cluster: &ClusterState, request: &JobRequest) -> Result<(), Rejection> {
    request.check_shape()?;
    let partition = cluster.resolve_partition(request.partition.as_deref())?;
    if let (Some(asked), Some(max)) = (request.time_limit, partition.max_time)
        && asked > max
    {
        return Err(Rejection::TimeOverPartitionMax {
            requested: format_time(asked),
            partition: partition.name.clone(),
            max: format_time(max),
        });
    }
    let unknown: Vec<&str> = request
        .nodelist
        .iter()
        .filter(|n| cluster.index_of(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Rejection::UnknownNodes { names: unknown.join(", ") });
    }
    let outside: Vec<&str> = request
        .nodelist
        .iter()
        .filter(|n| cluster.index_of(n).is_some_and(|i| !partition.nodes.contains(&i)))
        .map(String::as_str)
        .collect();
    if !outside.is_empty() {
        return Err(Rejection::NodesOutsidePartition {
            names: outside.join(", "),
            partition: partition.name.clone(),
        });
    }
    let excluded: Vec<&str> = request
        .nodelist
        .iter()
        .filter(|n| request.exclude.contains(n) || request.excluded_after_failure.contains(n))
        .map(String::as_str)
        .collect();
    if !excluded.is_empty() {
        return Err(Rejection::NodelistExcluded { names: excluded.join(", ") });
    }
    let required: HashSet<&str> = request.nodelist.iter().map(String::as_str).collect();
    if required.len() > request.max_nodes() as usize {
        return Err(Rejection::NodelistOverMax {
            listed: required.len(),
            max_nodes: request.max_nodes(),
        });
    }

    let constraints = Constraints::new(cluster, request);
    let eligible: Vec<&Node> = partition
        .nodes
        .iter()
        .filter(|&&i| !constraints.excluded.contains(&i))
        .filter_map(|&i| cluster.nodes.get(i))
        .collect();
    let partition_name = || partition.name.clone();
    if eligible.len() < request.min_nodes as usize {
        return Err(Rejection::TooManyNodes {
            requested: request.min_nodes,
            partition: partition_name(),
            has: eligible.len(),
            excluded: if eligible.len() < partition.nodes.len() {
                " (after --exclude)"
            } else {
                ""
            },
        });
    }
    let largest_units = eligible.iter().map(|n| n.total_units).max().unwrap_or(0);
    if request.cpus_per_task > largest_units {
        return Err(Rejection::TaskTooBig {
            cpus_per_task: request.cpus_per_task,
            partition: partition_name(),
            largest: largest_units,
        });
    }
    let largest_gpus = eligible.iter().map(|n| n.gpu_count()).max().unwrap_or(0);
    if request.gpus_per_task > largest_gpus {
        return Err(Rejection::TooManyGpus {
            per_task: request.gpus_per_task,
            partition: partition_name(),
            largest: largest_gpus,
        });
    }
    let largest_memory = eligible.iter().map(|n| n.total_memory()).max().unwrap_or(0);
    let one_node_need = match request.memory {
        Some(MemoryRequest::PerNode(m)) => m,
        Some(MemoryRequest::PerCpu(m)) => {
            let cpus = eligible.iter().map(|n| n.cpus_per_unit).min().unwrap_or(1);
            m.saturating_mul(u64::from(request.cpus_per_task) * u64::from(cpus))
        }
        None => 0,
    };
    if one_node_need > largest_memory {
        return Err(Rejection::MemoryTooBig {
            need: gangway_topology::human_bytes(one_node_need),
            partition: partition_name(),
            largest: gangway_topology::human_bytes(largest_memory),
        });
    }

    // The whole shape on the empty partition, down nodes included: they may come back.
    let shape = JobShape::of(request);
    let candidates: Vec<Candidate> = partition
        .nodes
        .iter()
        .filter(|&&i| !constraints.excluded.contains(&i))
        .filter_map(|&i| {
            let node = cluster.nodes.get(i)?;
            let cap = shape.capacity(node, &NodeFree::empty(node), request.exclusive);
            Some(Candidate { node: i, cap, partial: false })
        })
        .collect();
    let required = constraints.required_positions(&candidates);
    if select_nodes(&candidates, &required, &shape).is_none() {
        let capacity: u64;
        let within;
        let mut caps: Vec<u64> = candidates.iter().map(|c| u64::from(c.cap)).collect();
        caps.sort_unstable_by_key(|&c| Reverse(c));
        if caps.len() > shape.max_nodes as usize {
            capacity = caps.iter().take(shape.max_nodes as usize).sum();
            within = format!(" on {} nodes", shape.max_nodes);
        } else {
            capacity = caps.iter().sum();
            within = String::new();
        }
        let nodes = if shape.max_nodes == shape.min_nodes {
            shape.min_nodes.to_string()
        } else {
            format!("{}-{}", shape.min_nodes, shape.max_nodes)
        };
        return Err(Rejection::NeverFits {
            ntasks: shape.ntasks,
            cpus_per_task: shape.cpus_per_task,
            nodes,
            partition: partition_name(),
            capacity,
            within,
        });
    }
    Ok(())
}

/// The job's shape with defaults applied.
#[derive(Debug, Clone, Copy)]
struct JobShape {
    min_nodes: u32,
    max_nodes: u32,
    ntasks: u32,
    tasks_per_node: Option<u32>,
    cpus_per_task: u32,
    memory: Option<MemoryRequest>,
    gpus_per_task: u32,
}

impl JobShape {
    fn of(r: &JobRequest) -> Self {
        Self {
            min_nodes: r.min_nodes.max(1),
            max_nodes: r.max_nodes().max(r.min_nodes.max(1)),
            ntasks: r.task_count(),
            tasks_per_node: r.ntasks_per_node,
            cpus_per_task: r.cpus_per_task.max(1),
            memory: r.memory,
            gpus_per_task: r.gpus_per_task,
        }
    }

    /// Tasks of this job a node can take with `free` resources.
    fn capacity(&self, node: &Node, free: &NodeFree, exclusive: bool) -> u32 {
        let whole = NodeFree::empty(node);
        let free = if exclusive {
            // Exclusive jobs take untouched nodes only, and then everything on them.
            if free.busy {
                return 0;
            }
            &whole
        } else {
            if free.exclusive {
                return 0;
            }
            free
        };
        let mut cap = free.units / self.cpus_per_task;
        if let Some(per_node) = self.tasks_per_node {
            cap = cap.min(per_node);
        }
        match self.memory {
            Some(MemoryRequest::PerNode(m)) if m > free.memory => return 0,
            Some(MemoryRequest::PerCpu(m)) if m > 0 => {
                let per_task = m
                    .saturating_mul(u64::from(self.cpus_per_task))
                    .saturating_mul(u64::from(node.cpus_per_unit));
                cap = cap.min(u32::try_from(free.memory / per_task.max(1)).unwrap_or(u32::MAX));
            }
            _ => {}
        }
        if let Some(gpu_cap) = (free.gpus.len() as u32).checked_div(self.gpus_per_task) {
            cap = cap.min(gpu_cap);
        }
        cap
    }
}

/// Nodes a request names, as indexes.
struct Constraints {
    excluded: HashSet<usize>,
    required: Vec<usize>,
}

impl Constraints {
    fn new(cluster: &ClusterState, request: &JobRequest) -> Self {
        let excluded = request
            .exclude
            .iter()
            .chain(&request.excluded_after_failure)
            .filter_map(|n| cluster.index_of(n))
            .collect();
        let mut required: Vec<usize> =
            request.nodelist.iter().filter_map(|n| cluster.index_of(n)).collect();
        required.sort_unstable();
        required.dedup();
        Self { excluded, required }
    }

    /// Positions in `candidates` of the required nodes; `None` for one that is missing.
    fn required_positions(&self, candidates: &[Candidate]) -> Vec<Option<usize>> {
        self.required.iter().map(|&node| candidates.iter().position(|c| c.node == node)).collect()
    }
}

/// What is free on a node during a pass.
#[derive(Debug, Clone)]
struct NodeFree {
    cpus: CpuSet,
    units: u32,
    memory: u64,
    gpus: CpuSet,
    /// Something is allocated here.
    busy: bool,
    /// An exclusive job holds it.
    exclusive: bool,
    /// A waiting higher-priority job could use it.
    reserved: bool,
}

impl NodeFree {
    fn empty(node: &Node) -> Self {
        Self {
            cpus: node.usable_cpus.clone(),
            units: node.total_units,
            memory: node.total_memory(),
            gpus: node.all_gpus(),
            busy: false,
            exclusive: false,
            reserved: false,
        }
    }

    fn now(node: &Node) -> Self {
        if node.allocations.is_empty() {
            return Self::empty(node);
        }
        Self {
            cpus: node.usable_cpus.difference(&node.used_cpus),
            units: node.free_units,
            memory: node.total_memory().saturating_sub(node.used_memory),
            gpus: node.all_gpus().difference(&node.used_gpus),
            busy: true,
            exclusive: node.exclusive,
            reserved: false,
        }
    }
}

/// A node a job may use and how many of its tasks it can take.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    node: usize,
    cap: u32,
    /// Already runs something: filled before idle nodes.
    partial: bool,
}

/// Chooses the gang: node positions in `candidates` with their task counts, or `None` when
/// the shape does not fit. Required nodes come first, then partly used nodes, then idle ones.
fn select_nodes(
    candidates: &[Candidate],
    required: &[Option<usize>],
    shape: &JobShape,
) -> Option<Vec<(usize, u32)>> {
    let mut chosen: Vec<(usize, u32)> = Vec::new();
    let mut sum = 0u64;
    let mut is_chosen = vec![false; candidates.len()];
    for r in required {
        let pos = (*r)?;
        let cand = candidates.get(pos)?;
        if cand.cap == 0 {
            return None;
        }
        if let Some(flag) = is_chosen.get_mut(pos)
            && !*flag
        {
            *flag = true;
            chosen.push((pos, cand.cap));
            sum += u64::from(cand.cap);
        }
    }
    let ntasks = u64::from(shape.ntasks);
    let max_nodes = shape.max_nodes as usize;
    let min_nodes = shape.min_nodes as usize;
    if chosen.len() > max_nodes {
        return None;
    }
    let done = |chosen: &[(usize, u32)], sum: u64| sum >= ntasks && chosen.len() >= min_nodes;
    if !done(&chosen, sum) {
        // Each further node must take its share if the job used as many nodes as allowed, so
        // a small job lands on one (the fullest) node that fits it rather than on several.
        let slots = (max_nodes - chosen.len()).max(1) as u64;
        let share = ntasks.saturating_sub(sum).div_ceil(slots).max(1);
        'walk: for want_partial in [true, false] {
            for (pos, c) in candidates.iter().enumerate() {
                if done(&chosen, sum) || chosen.len() >= max_nodes {
                    break 'walk;
                }
                if c.partial != want_partial || u64::from(c.cap) < share {
                    continue;
                }
                if let Some(flag) = is_chosen.get_mut(pos)
                    && !*flag
                {
                    *flag = true;
                    chosen.push((pos, c.cap));
                    sum += u64::from(c.cap);
                }
            }
        }
    }
    if !done(&chosen, sum) {
        // Uneven capacities: take the biggest nodes, then as few of them as do.
        let fixed = chosen.len().min(required.len());
        chosen.truncate(fixed);
        sum = chosen.iter().map(|&(_, cap)| u64::from(cap)).sum();
        let mut rest: Vec<(usize, u32)> = candidates
            .iter()
            .enumerate()
            .filter(|(pos, c)| c.cap > 0 && !chosen.iter().any(|&(p, _)| p == *pos))
            .map(|(pos, c)| (pos, c.cap))
            .collect();
        rest.sort_unstable_by_key(|&(pos, cap)| (Reverse(cap), pos));
        for (pos, cap) in rest {
            if done(&chosen, sum) || chosen.len() >= max_nodes {
                break;
            }
            chosen.push((pos, cap));
            sum += u64::from(cap);
        }
        if !done(&chosen, sum) {
            return None;
        }
    }
    // Every node gets one task (a gang node runs something), then fill in order.
    let mut left = shape.ntasks.checked_sub(chosen.len() as u32)?;
    let mut counts: Vec<(usize, u32)> = Vec::with_capacity(chosen.len());
    for &(pos, cap) in &chosen {
        let extra = left.min(cap.saturating_sub(1));
        left -= extra;
        counts.push((pos, 1 + extra));
    }
    (left == 0).then_some(counts)
}

/// Places tasks on one node's free CPUs; remembers the last result because identical nodes
/// with identical free CPUs come back to back in big gangs.
#[derive(Default)]
struct PlacementCache {
    key: Option<(*const Topology, CpuSet, u32)>,
    tasks: Vec<CpuSet>,
}

impl PlacementCache {
    fn place(
        &mut self,
        topology: &Arc<Topology>,
        free: &CpuSet,
        count: u32,
        cpus_per_task: u32,
    ) -> Option<&[CpuSet]> {
        let ptr = Arc::as_ptr(topology);
        let hit = self
            .key
            .as_ref()
            .is_some_and(|(p, f, c)| std::ptr::eq(*p, ptr) && *c == count && f == free);
        if !hit {
            let request = PlacementRequest {
                ntasks: count,
                cpus_per_task,
                // Block inside the node fills one socket (then NUMA node) before the next,
                // leaving whole domains free for later jobs.
                distribution: Distribution {
                    node: NodeDistribution::Block,
                    socket: SocketDistribution::Block,
                },
                cpu_bind: CpuBind::Cores,
                ..PlacementRequest::default()
            };
            let spec = [NodeSpec { topology: topology.as_ref(), available: Some(free.clone()) }];
            let placement = place(&request, &spec).ok()?;
            if placement.oversubscribed {
                return None;
            }
            self.tasks = placement.ranks.iter().map(|r| r.binding.cpus.clone()).collect();
            self.key = Some((ptr, free.clone(), count));
        }
        Some(&self.tasks)
    }
}

/// Picks `per_task` free GPUs for a task, those near its CPUs first.
fn pick_gpus(node: &Node, free: &mut CpuSet, task_cpus: &CpuSet, per_task: u32) -> CpuSet {
    let mut picked = CpuSet::new();
    let mut want = per_task;
    for near in [true, false] {
        for gpu in &node.topology.gpus {
            if want == 0 {
                return picked;
            }
            if free.contains(gpu.index) && gpu.cpuset.intersects(task_cpus) == near {
                free.remove(gpu.index);
                picked.insert(gpu.index);
                want -= 1;
            }
        }
    }
    picked
}

/// Builds the grants for the chosen nodes; `None` if placement disagrees with the capacity
/// estimate (then the job waits, and nothing is changed).
fn build_grants(
    state: &ClusterState,
    work: &[NodeFree],
    candidates: &[Candidate],
    chosen: &[(usize, u32)],
    request: &JobRequest,
    cache: &mut PlacementCache,
) -> Option<Vec<NodeGrant>> {
    let mut grants = Vec::with_capacity(chosen.len());
    for &(pos, count) in chosen {
        let index = candidates.get(pos)?.node;
        let node = state.nodes.get(index)?;
        let free = work.get(index)?;
        let whole;
        let free = if request.exclusive {
            whole = NodeFree::empty(node);
            &whole
        } else {
            free
        };
        let task_cpus = cache.place(&node.topology, &free.cpus, count, request.cpus_per_task)?;
        let mut gpus_left = free.gpus.clone();
        let mut tasks = Vec::with_capacity(task_cpus.len());
        let mut cpus = CpuSet::new();
        for t in task_cpus {
            cpus |= t;
            let gpus = pick_gpus(node, &mut gpus_left, t, request.gpus_per_task);
            if gpus.len() < request.gpus_per_task as usize {
                return None;
            }
            tasks.push(TaskGrant { cpus: t.clone(), gpus });
        }
        let mut gpus: CpuSet = tasks.iter().flat_map(|t| t.gpus.iter()).collect();
        let mut memory = match request.memory {
            Some(MemoryRequest::PerNode(m)) => m,
            Some(MemoryRequest::PerCpu(m)) => m.saturating_mul(cpus.len() as u64),
            None => 0,
        };
        if memory > free.memory {
            return None;
        }
        if request.exclusive {
            cpus = node.usable_cpus.clone();
            memory = node.total_memory();
            gpus = node.all_gpus();
        }
        grants.push(NodeGrant {
            node: node.name.clone(),
            node_index: index,
            cpus,
            memory,
            gpus,
            exclusive: request.exclusive,
            tasks,
        });
    }
    Some(grants)
}

/// One scheduling pass: every pending job gets a [`Decision`], in the order considered
/// (priority, then submit time, then id). Started jobs' resources count as taken for the jobs
/// after them; the caller records them with [`ClusterState::allocate`] once carried out.
pub fn schedule(state: &ClusterState, pending: &[PendingJob]) -> Vec<Decision> {
    let mut order: Vec<&PendingJob> = pending.iter().collect();
    order.sort_by_key(|j| (Reverse(j.request.priority), j.request.submit_time, j.id));
    let mut work: Vec<NodeFree> = state.nodes.iter().map(NodeFree::now).collect();
    let mut cache = PlacementCache::default();
    let mut candidates: Vec<Candidate> = Vec::new();
    order
        .into_iter()
        .map(|job| {
            let outcome = decide(state, &mut work, job, &mut candidates, &mut cache);
            match outcome {
                Ok(start) => Decision::Start(start),
                Err(reason) => Decision::Wait { job: job.id, reason },
            }
        })
        .collect()
}

/// Decides one job, updating `work` when it starts and reserving its nodes when it must wait
/// for them.
fn decide(
    state: &ClusterState,
    work: &mut [NodeFree],
    job: &PendingJob,
    candidates: &mut Vec<Candidate>,
    cache: &mut PlacementCache,
) -> Result<JobStart, PendingReason> {
    let request = &job.request;
    if request.held {
        return Err(PendingReason::Held);
    }
    if request.check_shape().is_err() {
        return Err(PendingReason::Unsatisfiable);
    }
    let partition = state
        .resolve_partition(request.partition.as_deref())
        .map_err(|_| PendingReason::Unsatisfiable)?;
    let time_limit = request.time_limit.or(partition.default_time);
    if let (Some(limit), Some(max)) = (time_limit, partition.max_time)
        && limit > max
    {
        return Err(PendingReason::PartitionTimeLimit);
    }
    let shape = JobShape::of(request);
    let constraints = Constraints::new(state, request);
    if constraints.required.len() < request.nodelist.len() {
        return Err(PendingReason::Unsatisfiable);
    }

    // Usable nodes of the partition (up, not excluded), with what they can take now.
    candidates.clear();
    let mut down_eligible = false;
    let mut reserved_any = false;
    for &i in &partition.nodes {
        if constraints.excluded.contains(&i) {
            continue;
        }
        let (Some(node), Some(free)) = (state.nodes.get(i), work.get(i)) else { continue };
        if node.health != NodeHealth::Up {
            down_eligible = true;
            continue;
        }
        reserved_any |= free.reserved;
        let cap = if free.reserved { 0 } else { shape.capacity(node, free, request.exclusive) };
        candidates.push(Candidate { node: i, cap, partial: free.busy });
    }
    let required = constraints.required_positions(candidates);
    if required.iter().any(Option::is_none) {
        // A required node is outside the partition or not up.
        let outside = constraints.required.iter().any(|r| !partition.nodes.contains(r));
        return Err(if outside { PendingReason::Unsatisfiable } else { PendingReason::NodeDown });
    }
    if let Some(chosen) = select_nodes(candidates, &required, &shape)
        && let Some(nodes) = build_grants(state, work, candidates, &chosen, request, cache)
    {
        for g in &nodes {
            if let (Some(free), Some(node)) =
                (work.get_mut(g.node_index), state.nodes.get(g.node_index))
            {
                free.cpus = free.cpus.difference(&g.cpus);
                free.units = count_units(&node.topology, &free.cpus);
                free.memory = free.memory.saturating_sub(g.memory);
                free.gpus = free.gpus.difference(&g.gpus);
                free.busy = true;
                free.exclusive |= g.exclusive;
            }
        }
        return Ok(JobStart { job: job.id, partition: partition.name.clone(), time_limit, nodes });
    }

    // Cannot start now. Find out why, from the most specific cause.
    let reason = if reserved_any && {
        for c in candidates.iter_mut() {
            if let (Some(node), Some(free)) = (state.nodes.get(c.node), work.get(c.node)) {
                c.cap = shape.capacity(node, free, request.exclusive);
            }
        }
        select_nodes(candidates, &required, &shape).is_some()
    } {
        PendingReason::Priority
    } else {
        for c in candidates.iter_mut() {
            if let Some(node) = state.nodes.get(c.node) {
                c.cap = shape.capacity(node, &NodeFree::empty(node), request.exclusive);
            }
        }
        if select_nodes(candidates, &required, &shape).is_some() {
            PendingReason::Resources
        } else if down_eligible {
            PendingReason::NodeDown
        } else {
            PendingReason::Unsatisfiable
        }
    };
    if matches!(reason, PendingReason::Resources | PendingReason::Priority) {
        // Strict priority: whatever this job could use is kept from the jobs after it.
        for c in candidates.iter() {
            if let Some(free) = work.get_mut(c.node) {
                free.reserved = true;
            }
        }
    }
    Err(reason)
}

/// Builds clusters of identical nodes for tests and benches:
/// `ClusterBuilder::new().nodes(4).shape(2, 8, 2).partition("batch", PartitionLimits::new())`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    count: usize,
    shape: Shape,
    prefix: String,
    partitions: Vec<(String, Option<std::ops::Range<usize>>, PartitionLimits)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterBuilder {
    /// One node of 2 sockets × 8 cores × 2 threads, named `node1`, no partitions yet (one
    /// called `batch` with every node is made if none is given).
    pub fn new() -> Self {
        Self {
            count: 1,
            shape: Shape::new(2, 8, 2),
            prefix: "node".to_owned(),
            partitions: Vec::new(),
        }
    }

    /// Number of nodes.
    pub fn nodes(mut self, count: usize) -> Self {
        self.count = count;
        self
    }

    /// Every node: `packages` × `cores` per package × `threads` per core.
    pub fn shape(mut self, packages: u32, cores: u32, threads: u32) -> Self {
        let keep = self.shape.clone();
        self.shape = Shape { packages, cores_per_numa: cores, pus_per_core: threads, ..keep };
        self
    }

    /// NUMA nodes per package (cores are split among them).
    pub fn numa_per_package(mut self, numa: u32) -> Self {
        let cores = self.shape.cores_per_numa * self.shape.numa_per_package;
        self.shape.numa_per_package = numa.max(1);
        self.shape.cores_per_numa = cores / numa.max(1);
        self
    }

    /// GPUs per package.
    pub fn gpus_per_package(mut self, gpus: u32) -> Self {
        self.shape.gpus_per_package = gpus;
        self
    }

    /// Memory per NUMA node, bytes.
    pub fn memory_per_numa(mut self, bytes: u64) -> Self {
        self.shape.memory_per_numa = bytes;
        self
    }

    /// Node names: `prefix1`, `prefix2`, ...
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// A partition of every node.
    pub fn partition(mut self, name: &str, limits: PartitionLimits) -> Self {
        self.partitions.push((name.to_owned(), None, limits));
        self
    }

    /// A partition of the nodes at these positions (0-based).
    pub fn partition_of(
        mut self,
        name: &str,
        nodes: std::ops::Range<usize>,
        limits: PartitionLimits,
    ) -> Self {
        self.partitions.push((name.to_owned(), Some(nodes), limits));
        self
    }

    /// The cluster: every node shares one model.
    pub fn build(self) -> Result<ClusterState, ClusterError> {
        let topology = Arc::new(self.shape.build()?);
        let mut state = ClusterState::new();
        let names: Vec<String> = (1..=self.count).map(|i| format!("{}{i}", self.prefix)).collect();
        for name in &names {
            state.add_node(name.clone(), Arc::clone(&topology))?;
        }
        let mut partitions = self.partitions;
        if partitions.is_empty() {
            partitions.push(("batch".to_owned(), None, PartitionLimits::new()));
        }
        for (name, range, limits) in partitions {
            let members: Vec<&str> = match range {
                Some(r) => names.get(r).unwrap_or_default().iter().map(String::as_str).collect(),
                None => names.iter().map(String::as_str).collect(),
            };
            state.add_partition(name, &members, limits)?;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn cluster(nodes: usize) -> ClusterState {
        ClusterBuilder::new().nodes(nodes).shape(2, 8, 2).build().unwrap()
    }

    fn job(id: JobId, request: JobRequest) -> PendingJob {
        PendingJob { id, request: request.submitted(Timestamp(id)) }
    }

    fn starts(decisions: &[Decision]) -> Vec<&JobStart> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Start(s) => Some(s),
                Decision::Wait { .. } => None,
            })
            .collect()
    }

    fn reason_of(decisions: &[Decision], job: JobId) -> Option<PendingReason> {
        decisions.iter().find_map(|d| match d {
            Decision::Wait { job: j, reason } if *j == job => Some(*reason),
            _ => None,
        })
    }

    /// Applies every start, failing the test if a CPU or GPU would be handed out twice.
    fn apply(state: &mut ClusterState, decisions: &[Decision]) {
        for s in starts(decisions) {
            state.allocate(s).unwrap();
        }
    }

    #[test]
    fn three_node_job_never_starts_on_two_free_nodes() {
        let mut state = cluster(3);
        state.set_health("node3", NodeHealth::Up, None).unwrap();
        // Fill node3 completely, leaving 2 free nodes.
        let first = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node3"]).ntasks(16))]);
        apply(&mut state, &first);
        let d = schedule(&state, &[job(2, JobRequest::new().nodes(3, 3))]);
        assert_eq!(reason_of(&d, 2), Some(PendingReason::Resources));
        state.release(1);
        let d = schedule(&state, &[job(2, JobRequest::new().nodes(3, 3))]);
        let s = starts(&d);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].nodes.len(), 3);
        assert!(s[0].nodes.iter().all(|g| g.tasks.len() == 1));
    }

    #[test]
    fn twenty_small_jobs_pack_cores_without_sharing() {
        let mut state = cluster(2);
        let pending: Vec<PendingJob> =
            (1..=20).map(|id| job(id, JobRequest::new().ntasks(1))).collect();
        let d = schedule(&state, &pending);
        let s = starts(&d);
        assert_eq!(s.len(), 20);
        // 16 cores on node1 first (packing), then node2.
        let on_node1 = s.iter().filter(|s| s.nodes[0].node == "node1").count();
        assert_eq!(on_node1, 16);
        let mut seen = HashSet::new();
        for st in &s {
            for g in &st.nodes {
                assert_eq!(g.cpus.len(), 2, "one core = 2 threads");
                for cpu in g.cpus.iter() {
                    assert!(seen.insert((g.node.clone(), cpu)), "cpu {cpu} on {} twice", g.node);
                }
            }
        }
        apply(&mut state, &d);
        assert_eq!(state.node("node1").unwrap().state(), NodeState::Allocated);
        assert_eq!(state.node("node2").unwrap().state(), NodeState::Mixed);
    }

    #[test]
    fn small_job_goes_to_partly_used_node() {
        let mut state = cluster(3);
        let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node2"]).ntasks(4))]);
        apply(&mut state, &d);
        let d = schedule(&state, &[job(2, JobRequest::new().ntasks(4))]);
        assert_eq!(starts(&d)[0].nodes[0].node, "node2");
    }

    #[test]
    fn tasks_stay_inside_a_numa_node() {
        let state =
            ClusterBuilder::new().nodes(1).shape(2, 8, 1).numa_per_package(2).build().unwrap();
        let topo = Arc::clone(state.nodes()[0].topology());
        let d = schedule(&state, &[job(1, JobRequest::new().ntasks(4).cpus_per_task(4))]);
        let s = starts(&d);
        for t in &s[0].nodes[0].tasks {
            let numa = topo.numa_nodes.iter().filter(|n| n.cpuset.intersects(&t.cpus)).count();
            assert_eq!(numa, 1, "task {:?} spans NUMA nodes", t.cpus);
        }
    }

    #[test]
    fn priority_then_submit_time_order() {
        let state = cluster(1);
        let pending = vec![
            job(1, JobRequest::new().ntasks(16)),
            job(2, JobRequest::new().ntasks(16).priority(5)),
            job(3, JobRequest::new().ntasks(16).priority(5)),
        ];
        let d = schedule(&state, &pending);
        let order: Vec<JobId> = d.iter().map(Decision::job).collect();
        assert_eq!(order, vec![2, 3, 1]);
        assert!(matches!(d[0], Decision::Start(_)));
        assert_eq!(reason_of(&d, 3), Some(PendingReason::Resources));
        // Job 1 would fit nowhere either, but it is behind job 3 for the same node.
        assert_eq!(reason_of(&d, 1), Some(PendingReason::Resources));
    }

    #[test]
    fn lower_priority_job_waits_for_priority_not_backfilled() {
        let mut state = cluster(2);
        let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node1"]).ntasks(8))]);
        apply(&mut state, &d);
        // Job 2 needs both whole nodes: blocked. Job 3 would fit on node2, but node2 is kept
        // for job 2 (strict priority).
        let pending = vec![
            job(2, JobRequest::new().nodes(2, 2).ntasks_per_node(16).priority(10)),
            job(3, JobRequest::new().ntasks(1)),
        ];
        let d = schedule(&state, &pending);
        assert_eq!(reason_of(&d, 2), Some(PendingReason::Resources));
        assert_eq!(reason_of(&d, 3), Some(PendingReason::Priority));
    }

    #[test]
    fn blocked_job_leaves_other_partitions_alone() {
        let state = ClusterBuilder::new()
            .nodes(2)
            .partition_of("a", 0..1, PartitionLimits::new())
            .partition_of("b", 1..2, PartitionLimits::new())
            .build()
            .unwrap();
        let pending = vec![
            job(1, JobRequest::new().partition("a").ntasks(16)),
            job(2, JobRequest::new().partition("a").ntasks(16).priority(1)),
            job(3, JobRequest::new().partition("b").ntasks(4)),
        ];
        let d = schedule(&state, &pending);
        assert_eq!(reason_of(&d, 1), Some(PendingReason::Resources));
        assert_eq!(starts(&d).len(), 2);
    }

    #[test]
    fn held_and_time_limit_and_node_down_reasons() {
        let mut state = ClusterBuilder::new()
            .nodes(2)
            .partition("batch", PartitionLimits::new().max_time(Duration::from_secs(3600)))
            .build()
            .unwrap();
        state.set_health("node2", NodeHealth::Down, Some("not responding".into())).unwrap();
        assert_eq!(state.node("node2").unwrap().state(), NodeState::Down);
        assert_eq!(state.node("node2").unwrap().reason(), Some("not responding"));
        let pending = vec![
            job(1, JobRequest::new().held()),
            job(2, JobRequest::new().time_limit(Duration::from_secs(7200))),
            job(3, JobRequest::new().nodes(2, 2)),
            job(4, JobRequest::new().nodelist(&["node2"])),
            job(5, JobRequest::new().time_limit(Duration::from_secs(60))),
        ];
        let d = schedule(&state, &pending);
        assert_eq!(reason_of(&d, 1), Some(PendingReason::Held));
        assert_eq!(reason_of(&d, 2), Some(PendingReason::PartitionTimeLimit));
        assert_eq!(reason_of(&d, 3), Some(PendingReason::NodeDown));
        assert_eq!(reason_of(&d, 4), Some(PendingReason::NodeDown));
        let s = starts(&d);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].time_limit, Some(Duration::from_secs(60)));
        for health in [NodeHealth::Drained, NodeHealth::Suspect] {
            state.set_health("node2", health, None).unwrap();
            let d = schedule(&state, &[job(3, JobRequest::new().nodes(2, 2))]);
            assert_eq!(reason_of(&d, 3), Some(PendingReason::NodeDown));
        }
    }

    #[test]
    fn partition_default_time_applies() {
        let limits = PartitionLimits::new().default_time(Duration::from_secs(600));
        let state = ClusterBuilder::new().partition("batch", limits).build().unwrap();
        let d = schedule(&state, &[job(1, JobRequest::new())]);
        assert_eq!(starts(&d)[0].time_limit, Some(Duration::from_secs(600)));
    }

    #[test]
    fn exclusive_takes_whole_idle_nodes() {
        let mut state = cluster(2);
        let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node1"]))]);
        apply(&mut state, &d);
        let d = schedule(&state, &[job(2, JobRequest::new().exclusive())]);
        let s = starts(&d);
        let g = &s[0].nodes[0];
        assert_eq!(g.node, "node2", "node1 is partly used");
        assert_eq!(g.cpus.len(), 32);
        assert_eq!(g.memory, state.node("node2").unwrap().total_memory());
        apply(&mut state, &d);
        assert_eq!(state.node("node2").unwrap().state(), NodeState::Allocated);
        // Nothing shares an exclusive node, and exclusive jobs need an untouched node.
        let d = schedule(&state, &[job(3, JobRequest::new().nodelist(&["node2"]))]);
        assert_eq!(reason_of(&d, 3), Some(PendingReason::Resources));
        let d = schedule(&state, &[job(4, JobRequest::new().exclusive())]);
        assert_eq!(reason_of(&d, 4), Some(PendingReason::Resources));
    }

    #[test]
    fn memory_is_accounted() {
        // 2 NUMA nodes × 16 GiB = 32 GiB per node.
        let mut state = cluster(1);
        let d = schedule(
            &state,
            &[
                job(1, JobRequest::new().memory(MemoryRequest::PerNode(20 * GIB))),
                job(2, JobRequest::new().ntasks(2).memory(MemoryRequest::PerCpu(GIB))),
                job(3, JobRequest::new().memory(MemoryRequest::PerNode(20 * GIB))),
            ],
        );
        let s = starts(&d);
        assert_eq!(s.len(), 2);
        assert_eq!(reason_of(&d, 3), Some(PendingReason::Resources));
        // Job 2: two tasks of one core (2 CPUs each) at 1 GiB per CPU.
        assert_eq!(s[1].nodes[0].memory, 4 * GIB);
        apply(&mut state, &d);
        assert_eq!(state.node("node1").unwrap().allocated_memory(), 24 * GIB);
        state.release(1);
        assert_eq!(state.node("node1").unwrap().allocated_memory(), 4 * GIB);
    }

    #[test]
    fn gpus_are_accounted_and_near_their_tasks() {
        let mut state = ClusterBuilder::new().nodes(1).gpus_per_package(2).build().unwrap();
        let topo = Arc::clone(state.nodes()[0].topology());
        let d = schedule(&state, &[job(1, JobRequest::new().ntasks(3).gpus_per_task(1))]);
        let s = starts(&d);
        assert_eq!(s[0].nodes[0].gpus.len(), 3);
        for t in &s[0].nodes[0].tasks {
            let gpu = t.gpus.first().unwrap();
            let near = topo.gpus.iter().find(|g| g.index == gpu).unwrap();
            assert!(near.cpuset.intersects(&t.cpus) || t.gpus.len() == 1);
        }
        apply(&mut state, &d);
        let d = schedule(&state, &[job(2, JobRequest::new().ntasks(2).gpus_per_task(1))]);
        assert_eq!(reason_of(&d, 2), Some(PendingReason::Resources));
        let d = schedule(&state, &[job(3, JobRequest::new().gpus_per_task(1))]);
        let s = starts(&d);
        assert_eq!(s[0].nodes[0].gpus.len(), 1);
        assert!(!s[0].nodes[0].gpus.intersects(state.node("node1").unwrap().allocated_gpus()));
    }

    #[test]
    fn node_range_and_tasks_per_node() {
        let state = cluster(4);
        let d = schedule(&state, &[job(1, JobRequest::new().nodes(2, 4).ntasks(40))]);
        let s = starts(&d);
        assert_eq!(s[0].nodes.len(), 3, "fewest nodes that hold 40 tasks of 16 per node");
        let total: usize = s[0].nodes.iter().map(|g| g.tasks.len()).sum();
        assert_eq!(total, 40);
        let d = schedule(&state, &[job(2, JobRequest::new().nodes(2, 2).ntasks_per_node(3))]);
        let s = starts(&d);
        assert!(s[0].nodes.iter().all(|g| g.tasks.len() == 3));
    }

    #[test]
    fn excluded_nodes_are_avoided() {
        let state = cluster(2);
        let mut request = JobRequest::new().exclude(&["node1"]);
        request.excluded_after_failure = vec!["node2".into()];
        assert!(matches!(validate(&state, &request), Err(Rejection::TooManyNodes { .. })));
        let d = schedule(&state, &[job(1, JobRequest::new().exclude(&["node1"]))]);
        assert_eq!(starts(&d)[0].nodes[0].node, "node2");
    }

    #[test]
    fn rejections_name_problem_and_fix() {
        let state = ClusterBuilder::new()
            .nodes(4)
            .partition("batch", PartitionLimits::new().max_time(Duration::from_secs(3600)))
            .build()
            .unwrap();
        let msg = |r: JobRequest| validate(&state, &r).unwrap_err().to_string();
        assert_eq!(
            msg(JobRequest::new().nodes(5, 5)),
            "--nodes=5 but partition 'batch' has only 4 nodes; lower --nodes or choose a bigger \
             partition with --partition"
        );
        assert_eq!(
            msg(JobRequest::new().cpus_per_task(17)),
            "--cpus-per-task=17 is more than any node of partition 'batch' has (the largest has \
             16 cores); lower --cpus-per-task"
        );
        assert_eq!(
            msg(JobRequest::new().time_limit(Duration::from_secs(7200))),
            "--time=2:00:00 is over partition 'batch''s limit of 1:00:00; lower --time to at most \
             1:00:00 or choose another partition with --partition"
        );
        assert_eq!(
            msg(JobRequest::new().partition("gpu")),
            "unknown partition 'gpu'; use --partition with one of: batch"
        );
        assert_eq!(
            msg(JobRequest::new().nodelist(&["node1", "nodeX"])),
            "--nodelist names unknown nodes: nodeX; check the names with `gangway nodes`"
        );
        assert!(msg(JobRequest::new().nodes(2, 2).ntasks(65)).contains("do not fit partition"));
        assert!(msg(JobRequest::new().nodes(3, 1)).contains("minimum is above the maximum"));
        assert!(msg(JobRequest::new().nodes(3, 3).ntasks(2)).contains("lower --nodes"));
        assert!(msg(JobRequest::new().gpus_per_task(1)).contains("--gpus-per-task=1"));
        assert!(msg(JobRequest::new().memory(MemoryRequest::PerNode(64 * GIB))).contains("--mem"));
        assert!(msg(JobRequest::new().nodelist(&["node1"]).exclude(&["node1"])).contains("remove"));
        assert!(msg(JobRequest::new().ntasks(0)).contains("--ntasks"));
        assert!(validate(&state, &JobRequest::new().nodes(4, 4).ntasks(64)).is_ok());
        assert!(validate(&ClusterState::new(), &JobRequest::new()).is_err());
    }

    #[test]
    fn allocate_refuses_a_cpu_twice() {
        let mut state = cluster(1);
        let d = schedule(&state, &[job(1, JobRequest::new())]);
        apply(&mut state, &d);
        let mut again = starts(&d)[0].clone();
        again.job = 2;
        let err = state.allocate(&again).unwrap_err();
        assert!(err.to_string().contains("job 1 holds them"), "{err}");
    }

    #[test]
    fn schedule_is_deterministic() {
        let state = cluster(8);
        let pending: Vec<PendingJob> = (0..40)
            .map(|id| {
                job(
                    id,
                    JobRequest::new().ntasks(1 + (id as u32 * 7) % 20).priority((id % 3) as u32),
                )
            })
            .collect();
        let mut reversed = pending.clone();
        reversed.reverse();
        assert_eq!(schedule(&state, &pending), schedule(&state, &reversed));
    }

    proptest! {
        #[test]
        fn no_cpu_is_ever_granted_twice(
            jobs in prop::collection::vec((1u32..4, 1u32..24, 1u32..5, any::<bool>(), 0u32..3), 1..30),
            rounds in 1usize..4,
        ) {
            let mut state = ClusterBuilder::new().nodes(4).shape(2, 4, 2).gpus_per_package(1).build().unwrap();
            let mut next = 0u64;
            for _ in 0..rounds {
                let pending: Vec<PendingJob> = jobs
                    .iter()
                    .map(|&(nodes, ntasks, cpus, exclusive, gpus)| {
                        next += 1;
                        let mut r = JobRequest::new().nodes(1, nodes).ntasks(ntasks.max(nodes)).cpus_per_task(cpus).priority(ntasks % 3);
                        if exclusive { r = r.exclusive(); }
                        if gpus > 0 && cpus < 3 { r = r.gpus_per_task(1); }
                        job(next, r)
                    })
                    .collect();
                let decisions = schedule(&state, &pending);
                prop_assert_eq!(decisions.len(), pending.len());
                // allocate() refuses any CPU or GPU already held: it must never fail.
                for s in starts(&decisions) {
                    prop_assert!(!s.nodes.is_empty());
                    prop_assert!(state.allocate(s).is_ok());
                }
                // Release some to mix freed and held resources.
                for id in (next - pending.len() as u64 + 1..=next).step_by(2) {
                    state.release(id);
                }
            }
            for node in state.nodes() {
                let mut seen = CpuSet::new();
                for a in node.allocations() {
                    prop_assert!(!seen.intersects(&a.cpus));
                    seen |= &a.cpus;
                }
            }
        }
    }
}
