//! Grants: the exact CPUs, memory and GPUs a starting job gets on each of its nodes. Plain data
//! that the cluster records and decisions carry; building them needs the cluster, so that lives
//! in `grant_placement.rs` (topology placement, so GPUs follow the one GPU-affinity rule,
//! [`gangway_topology::GpuChooser`], the launcher binds with).

use std::time::Duration;

use gangway_topology::CpuSet;

use crate::types::{Bytes, JobId};

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
    /// The node's index in the cluster's nodes (`ClusterState::nodes`).
    pub node_index: usize,
    /// Every CPU granted (OS indexes): the union of the tasks' CPUs, or the whole node when
    /// exclusive.
    pub cpus: CpuSet,
    /// Memory granted.
    pub memory: Bytes,
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
