//! What placement decided: each rank's node and numbers ([`RankPlacement`]), what it is bound
//! to ([`Binding`]), and the whole [`Placement`] with its notes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::request::CpuUnit;
use crate::cpuset::{CpuSet, NodeSet};
use crate::options::{CpuBind, Distribution, MemBind};

/// Where one rank runs: its numbers, and its binding (shared between ranks that bind alike on
/// identical nodes, so 10,000 nodes × 128 ranks cost one small record per rank).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankPlacement {
    /// Global rank.
    pub rank: u32,
    /// Index of the node in the list given to [`place`](crate::place).
    pub node: u32,
    /// Rank among the ranks of its node.
    pub local_rank: u32,
    /// CPUs, memory nodes and GPUs of the rank (flattened into the rank's JSON object).
    #[serde(flatten)]
    pub binding: Arc<Binding>,
}

/// What a rank is bound to. The default is an empty binding (placement fills one in place).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// CPUs to bind to (OS indexes): what the launcher passes to `sched_setaffinity`.
    pub cpus: CpuSet,
    /// Cores (logical indexes of the node model) holding the rank's CPUs.
    pub cores: CpuSet,
    /// NUMA nodes (OS indexes) local to the rank's CPUs.
    pub numa: NodeSet,
    /// NUMA nodes to bind memory to (OS indexes); empty means no memory policy.
    pub mem_nodes: NodeSet,
    /// GPUs (indexes as in [`crate::Gpu::index`]) for `CUDA_VISIBLE_DEVICES`.
    pub gpus: Vec<u32>,
    /// Whether the rank shares CPUs with another rank (only with `--oversubscribe`).
    pub oversubscribed: bool,
    /// Whether the CPU set is not a real binding (`--cpu-bind=none`, or relaxed because the
    /// node is oversubscribed): the launcher may skip `sched_setaffinity`.
    pub unbound: bool,
}

/// The result of [`place`](crate::place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// One entry per rank, in rank order.
    pub ranks: Vec<RankPlacement>,
    /// Ranks on each node given (same length as the node list; zero for unused nodes).
    pub tasks_per_node: Vec<u32>,
    /// The binding asked for.
    pub cpu_bind: CpuBind,
    /// The distribution used.
    pub distribution: Distribution,
    /// The memory binding asked for.
    pub mem_bind: MemBind,
    /// What one CPU of `--cpus-per-task` was.
    pub cpu_unit: CpuUnit,
    /// Whether any node runs more ranks than it has CPUs for (or ranks share CPUs).
    pub oversubscribed: bool,
    /// Whether binding was relaxed to all available CPUs on some node because of that.
    pub binding_relaxed: bool,
    /// Explanations for the user (e.g. which node was oversubscribed and why binding relaxed).
    pub notes: Vec<String>,
}

impl Placement {
    /// The ranks placed on node `node`.
    pub fn ranks_on_node(&self, node: u32) -> impl Iterator<Item = &RankPlacement> {
        self.ranks.iter().filter(move |r| r.node == node)
    }

    /// JSON for `--dry-run --json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }
}
