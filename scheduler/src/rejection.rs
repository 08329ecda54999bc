//! [`Rejection`]: why a request can never run on this cluster, naming the problem and the fix.
//! A leaf of its own because the request's own checks, the cluster's partition lookup and the
//! submission checks (`validate.rs`, which uses both) all return it.

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
        "{per_task} GPUs per task is more than any node of partition '{partition}' has (the most \
         is {largest}); ask for fewer (--gpus-per-task, --gres, --gpus, --gpus-per-node) or pick \
         a GPU partition with --partition"
    )]
    TooManyGpus {
        /// `--gpus-per-task`.
        per_task: u32,
        /// The partition.
        partition: String,
        /// Most GPUs of one node.
        largest: u32,
    },
    /// A GPU type no node of the partition has.
    #[error(
        "no node of partition '{partition}' has GPUs of type '{gpu_type}' (its GPU types: \
         {types}); ask for one of those, for any GPU with a count alone (--gres=gpu:N), or pick \
         another partition with --partition"
    )]
    UnknownGpuType {
        /// The type asked for.
        gpu_type: String,
        /// The partition.
        partition: String,
        /// The types its nodes have, comma-separated (`none`).
        types: String,
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
    /// A node the job must use (`--nodelist`) cannot hold one of its tasks, even empty.
    #[error(
        "--nodelist names {node}, which cannot hold one task of this job even when it is idle: \
         {lacks}; drop {node} from --nodelist or ask for less"
    )]
    NamedNodeTooSmall {
        /// The node.
        node: String,
        /// What it lacks, in words (`it has 0 GPUs, a task needs 1`).
        lacks: String,
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
