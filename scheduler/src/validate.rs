//! Submission checks: whether a request can ever run on this cluster (whatever finishes,
//! whatever comes back up), and if not, a [`Rejection`] naming the problem and the fix.

use std::cmp::Reverse;
use std::collections::HashSet;

use crate::avail::Avail;
use crate::cluster::{ClusterState, Node};
use crate::gang::{Candidate, Constraints, JobShape, select_nodes};
use crate::request::{JobRequest, MemoryRequest};
use crate::types::{Bytes, format_duration};

/// Why a request can never run on this cluster. Each message names the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A running job's grants could not be recorded (after a restart).
    #[error("cannot record the running job's allocation: {0}")]
    Recovery(String),
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

/// Checks a request against the cluster at submission: a request that can never run (whatever
/// finishes, whatever comes back up) is rejected with the reason and the fix.
pub fn validate(cluster: &ClusterState, request: &JobRequest) -> Result<(), Rejection> {
    request.check_shape()?;
    let partition = cluster.resolve_partition(request.partition.as_deref())?;
    if let (Some(asked), Some(max)) = (request.time_limit, partition.max_time)
        && asked > max
    {
        return Err(Rejection::TimeOverPartitionMax {
            requested: format_duration(asked),
            partition: partition.name.clone(),
            max: format_duration(max),
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
    let largest_memory = eligible.iter().map(|n| n.total_memory()).max().unwrap_or_default();
    let one_node_need = match request.memory {
        Some(MemoryRequest::PerNode(m)) => m,
        Some(MemoryRequest::PerCpu(m)) => {
            let cpus = eligible.iter().map(|n| n.cpus_per_unit).min().unwrap_or(1);
            m.saturating_mul(u64::from(request.cpus_per_task) * u64::from(cpus))
        }
        None => Bytes::ZERO,
    };
    if one_node_need > largest_memory {
        return Err(Rejection::MemoryTooBig {
            need: one_node_need.to_string(),
            partition: partition_name(),
            largest: largest_memory.to_string(),
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
            let cap = shape.capacity(node, &Avail::whole(node), request.exclusive);
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
