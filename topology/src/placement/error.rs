//! Why ranks could not be placed ([`PlacementError`]); each message names the flag to change.

use super::request::CpuUnit;

/// Why ranks could not be placed. Each message names the flag to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// `--ntasks=0`.
    #[error("--ntasks must be at least 1")]
    NoTasks,
    /// `--cpus-per-task=0`.
    #[error("--cpus-per-task must be at least 1")]
    ZeroCpusPerTask,
    /// `--ntasks-per-node=0`.
    #[error("--ntasks-per-node must be at least 1")]
    ZeroTasksPerNode,
    /// `--ntasks-per-socket=0`.
    #[error("--ntasks-per-socket must be at least 1")]
    ZeroTasksPerSocket,
    /// Empty node list.
    #[error("no nodes to place ranks on")]
    NoNodes,
    /// A node has no CPU this job may use.
    #[error("node {node} has no available CPUs (allowed set and allocation do not meet)")]
    NoCpus {
        /// The node.
        node: u32,
    },
    /// Not enough CPUs for the ranks without oversubscribing.
    #[error(
        "{tasks} tasks x {cpus_per_task} cpus need {need} {unit}, {scope} {allows} {available}; \
         lower --ntasks or --cpus-per-task, or add --oversubscribe"
    )]
    NotEnoughCpus {
        /// Ranks to place there.
        tasks: u32,
        /// `--cpus-per-task`.
        cpus_per_task: u32,
        /// `tasks * cpus_per_task`.
        need: u64,
        /// What a CPU is.
        unit: CpuUnit,
        /// `node 3` or `the 4 nodes`.
        scope: String,
        /// `allows` or `allow`, agreeing with `scope`.
        allows: &'static str,
        /// CPUs there.
        available: u64,
    },
    /// One rank needs more CPUs than any node has.
    #[error(
        "--cpus-per-task={cpus_per_task} is more than a node has: node {node} allows {available} \
         {unit}"
    )]
    TaskTooBig {
        /// `--cpus-per-task`.
        cpus_per_task: u32,
        /// A node that is too small.
        node: u32,
        /// CPUs there.
        available: u64,
        /// What a CPU is.
        unit: CpuUnit,
    },
    /// `--ntasks-per-node` needs more nodes than given.
    #[error("--ntasks={tasks} with --ntasks-per-node={per_node} needs {need} nodes, {have} given")]
    TooFewNodes {
        /// `--ntasks`.
        tasks: u32,
        /// `--ntasks-per-node`.
        per_node: u32,
        /// Nodes needed.
        need: u64,
        /// Nodes given.
        have: usize,
    },
    /// `--ntasks-per-socket` cannot hold a node's ranks.
    #[error(
        "--ntasks-per-socket={per_socket}: node {node} has {sockets} sockets with free CPUs, so \
         {tasks} tasks do not fit"
    )]
    TasksPerSocket {
        /// `--ntasks-per-socket`.
        per_socket: u32,
        /// The node.
        node: u32,
        /// Its sockets.
        sockets: usize,
        /// Ranks placed there.
        tasks: u32,
    },
    /// `map_cpu`/`mask_cpu` list longer than the ranks of a node.
    #[error("--cpu-bind={kind} lists {listed} {what} for {tasks} tasks per node")]
    MapTooLong {
        /// `map_cpu` or `mask_cpu`.
        kind: &'static str,
        /// Entries in the list.
        listed: usize,
        /// `CPUs` or `masks`.
        what: &'static str,
        /// Most ranks on one node.
        tasks: u32,
    },
    /// `map_cpu`/`mask_cpu` names a CPU the node does not let this job use.
    #[error(
        "--cpu-bind={kind}: CPU {cpu} is not available on node {node} (available: {available})"
    )]
    CpuNotAvailable {
        /// `map_cpu` or `mask_cpu`.
        kind: &'static str,
        /// The CPU (OS index).
        cpu: u32,
        /// The node.
        node: u32,
        /// Its available CPUs, list syntax.
        available: String,
    },
    /// Ranks would share CPUs through a short or overlapping map.
    #[error(
        "--cpu-bind={kind} makes ranks {first} and {second} on node {node} share CPUs; give one \
         entry per task or add --oversubscribe"
    )]
    MapShares {
        /// `map_cpu` or `mask_cpu`.
        kind: &'static str,
        /// Node.
        node: u32,
        /// Earlier local rank.
        first: u32,
        /// Later local rank.
        second: u32,
    },
    /// `map_cpu` with more than one CPU per task.
    #[error(
        "--cpu-bind=map_cpu gives one CPU per task but --cpus-per-task={0}; use mask_cpu instead"
    )]
    MapCpuWithCpusPerTask(u32),
    /// Not enough GPUs.
    #[error(
        "--gpus-per-task={per_task} needs {need} GPUs for {tasks} tasks on node {node}, it has \
         {have}; lower --gpus-per-task or add --oversubscribe to share GPUs"
    )]
    NotEnoughGpus {
        /// `--gpus-per-task`.
        per_task: u32,
        /// GPUs needed.
        need: u64,
        /// Ranks on the node.
        tasks: u32,
        /// The node.
        node: u32,
        /// GPUs it has.
        have: usize,
    },
}
