//! Rank placement: pure functions from a [`PlacementRequest`] and node models to each rank's
//! node, CPU set, NUMA/memory node set and GPUs. No I/O, no clocks, no panics.
//!
//! How it works, per node: the node's available CPUs are cut into *units* (cores, or hardware
//! threads with `--cpu-bind=threads`/`--hint=multithread`), ordered socket → NUMA node → core.
//! Each rank takes `cpus_per_task` units following the within-node distribution, then its CPU set
//! is widened to the binding level (core, L3, NUMA node, socket). Block and cyclic keep a rank's
//! units inside one NUMA node, then one socket, whenever the rank fits there.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cpuset::{CpuSet, NodeSet};
use crate::model::Topology;
use crate::options::{CpuBind, Distribution, Hint, MemBind, NodeDistribution, SocketDistribution};

/// What to place: the domain form of `gangway run`'s placement flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// Number of ranks (`-n`/`--ntasks`).
    pub ntasks: u32,
    /// CPUs per rank (`-c`/`--cpus-per-task`); cores unless CPUs are threads (see [`Hint`]).
    pub cpus_per_task: u32,
    /// At most this many ranks per node (`--ntasks-per-node`); nodes fill in order.
    pub tasks_per_node: Option<u32>,
    /// At most this many ranks per socket (`--ntasks-per-socket`).
    pub tasks_per_socket: Option<u32>,
    /// `--distribution`.
    pub distribution: Distribution,
    /// `--cpu-bind`.
    pub cpu_bind: CpuBind,
    /// `--hint`.
    pub hint: Hint,
    /// `--mem-bind`.
    pub mem_bind: MemBind,
    /// `--gpus-per-task` (0: no GPUs placed).
    pub gpus_per_task: u32,
    /// `--oversubscribe`: allow more ranks than CPUs (binding is then relaxed).
    pub oversubscribe: bool,
}

impl Default for PlacementRequest {
    fn default() -> Self {
        Self {
            ntasks: 1,
            cpus_per_task: 1,
            tasks_per_node: None,
            tasks_per_socket: None,
            distribution: Distribution::default(),
            cpu_bind: CpuBind::default(),
            hint: Hint::default(),
            mem_bind: MemBind::default(),
            gpus_per_task: 0,
            oversubscribe: false,
        }
    }
}

/// A node ranks can be placed on: its model and, optionally, the CPUs of it this job may use
/// (an allocation); the model's allowed set applies in any case.
pub trait PlacementNode {
    /// The node's hardware.
    fn topology(&self) -> &Topology;
    /// CPUs (OS indexes) this job may use, if narrower than the allowed set.
    fn available(&self) -> Option<&CpuSet> {
        None
    }
}

impl PlacementNode for Topology {
    fn topology(&self) -> &Topology {
        self
    }
}

impl<T: PlacementNode + ?Sized> PlacementNode for &T {
    fn topology(&self) -> &Topology {
        (**self).topology()
    }
    fn available(&self) -> Option<&CpuSet> {
        (**self).available()
    }
}

impl PlacementNode for Arc<Topology> {
    fn topology(&self) -> &Topology {
        self
    }
}

/// A node model plus the CPUs allocated to the job on it.
#[derive(Debug, Clone)]
pub struct NodeSpec<'a> {
    /// The node's hardware (shared by reference: 10,000 identical nodes need one model).
    pub topology: &'a Topology,
    /// CPUs (OS indexes) the job may use; `None` means all allowed CPUs.
    pub available: Option<CpuSet>,
}

impl PlacementNode for NodeSpec<'_> {
    fn topology(&self) -> &Topology {
        self.topology
    }
    fn available(&self) -> Option<&CpuSet> {
        self.available.as_ref()
    }
}

/// What one unit of `--cpus-per-task` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuUnit {
    /// A whole core (all its available hardware threads, or one with `--hint=nomultithread`).
    Core,
    /// One hardware thread.
    Thread,
}

impl fmt::Display for CpuUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuUnit::Core => "cores",
            CpuUnit::Thread => "PUs",
        })
    }
}

/// Where one rank runs: its numbers, and its binding (shared between ranks that bind alike on
/// identical nodes, so 10,000 nodes × 128 ranks cost one small record per rank).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankPlacement {
    /// Global rank.
    pub rank: u32,
    /// Index of the node in the list given to [`place`].
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

/// The result of [`place`].
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

/// Places `req.ntasks` ranks on `nodes`.
///
/// Ranks are spread over nodes by `req.distribution.node` (block: balanced contiguous ranges,
/// or `tasks_per_node` per node in order; cyclic; plane), then placed within each node.
/// Identical nodes (the same `&Topology` and allocation, back to back) share the per-node
/// preparation, so 10,000 nodes with one model cost little more than the per-rank work.
pub fn place<N: PlacementNode>(
    req: &PlacementRequest,
    nodes: &[N],
) -> Result<Placement, PlacementError> {
    if req.ntasks == 0 {
        return Err(PlacementError::NoTasks);
    }
    if req.cpus_per_task == 0 {
        return Err(PlacementError::ZeroCpusPerTask);
    }
    if req.tasks_per_node == Some(0) {
        return Err(PlacementError::ZeroTasksPerNode);
    }
    if req.tasks_per_socket == Some(0) {
        return Err(PlacementError::ZeroTasksPerSocket);
    }
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if let CpuBind::MapCpu(_) = req.cpu_bind
        && req.cpus_per_task > 1
    {
        return Err(PlacementError::MapCpuWithCpusPerTask(req.cpus_per_task));
    }
    let unit = cpu_unit(req);

    // Capacity of every node (ranks it can hold without oversubscribing).
    let mut cache = LayoutCache::default();
    let mut units_per_node: Vec<u32> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let layout = cache.get(n, req, unit);
        if layout.units.is_empty() {
            return Err(PlacementError::NoCpus { node: i as u32 });
        }
        units_per_node.push(layout.units.len() as u32);
    }
    let counts = node_counts(req, &units_per_node, unit)?;

    if let CpuBind::MapCpu(v) = &req.cpu_bind {
        check_map_len("map_cpu", "CPUs", v.len(), &counts)?;
    }
    if let CpuBind::MaskCpu(v) = &req.cpu_bind {
        check_map_len("mask_cpu", "masks", v.len(), &counts)?;
    }

    // Rank numbers per node, by the node distribution.
    let first_ranks = rank_order(req, &counts);

    let mut placement = Placement {
        ranks: Vec::with_capacity(req.ntasks as usize),
        tasks_per_node: counts.clone(),
        cpu_bind: req.cpu_bind.clone(),
        distribution: req.distribution,
        mem_bind: req.mem_bind,
        cpu_unit: unit,
        oversubscribed: false,
        binding_relaxed: false,
        notes: Vec::new(),
    };
    let mut scratch = Scratch::default();
    // The previous node's ranks (start in `placement.ranks`, count) when it was placed cleanly.
    let mut last: Option<(usize, u32)> = None;
    for (i, n) in nodes.iter().enumerate() {
        let k = counts.get(i).copied().unwrap_or(0);
        if k == 0 {
            continue;
        }
        let (layout, rebuilt) = cache.get_fresh(n, req, unit);
        let ranks = first_ranks.ranks_of(i);
        // Same model, same allocation, same rank count as the node before: the placement is
        // the same up to rank and node numbers, so copy it (the 10,000-identical-nodes case).
        if let Some((start, prev_k)) = last
            && !rebuilt
            && prev_k == k
            && start + k as usize <= placement.ranks.len()
        {
            // Clone the records in bulk, then renumber them in place: building each record
            // and pushing it staged it through the stack (a store-forwarding stall per rank).
            let from = placement.ranks.len();
            placement.ranks.extend_from_within(start..start + k as usize);
            let copied = placement.ranks.get_mut(from..).unwrap_or_default();
            for (local, r) in (0u32..).zip(copied) {
                r.rank = ranks.get(local);
                r.node = i as u32;
            }
            last = Some((from, k));
            continue;
        }
        let start = placement.ranks.len();
        let notes = placement.notes.len();
        place_node(req, n.topology(), layout, i as u32, k, &ranks, &mut scratch, &mut placement)?;
        // Oversubscribed nodes carry a note each; place them afresh so every note is written.
        last = (placement.notes.len() == notes).then_some((start, k));
    }
    if !placement.ranks.is_sorted_by_key(|r| r.rank) {
        placement.ranks.sort_unstable_by_key(|r| r.rank);
    }
    Ok(placement)
}

fn cpu_unit(req: &PlacementRequest) -> CpuUnit {
    if req.cpu_bind == CpuBind::Threads || req.hint == Hint::Multithread {
        CpuUnit::Thread
    } else {
        CpuUnit::Core
    }
}

fn check_map_len(
    kind: &'static str,
    what: &'static str,
    listed: usize,
    counts: &[u32],
) -> Result<(), PlacementError> {
    let most = counts.iter().copied().max().unwrap_or(0);
    if listed > most as usize {
        return Err(PlacementError::MapTooLong { kind, listed, what, tasks: most });
    }
    Ok(())
}

/// Ranks per node.
fn node_counts(
    req: &PlacementRequest,
    units_per_node: &[u32],
    unit: CpuUnit,
) -> Result<Vec<u32>, PlacementError> {
    let n = req.ntasks;
    let c = req.cpus_per_task;
    let nn = units_per_node.len();
    let explicit = matches!(req.cpu_bind, CpuBind::MapCpu(_) | CpuBind::MaskCpu(_));
    // Capacity per node: unlimited when oversubscribing or when the user maps CPUs by hand
    // (sharing is then checked per node against the map).
    let cap = |i: usize| -> u32 {
        let mut cap = if req.oversubscribe || explicit {
            u32::MAX
        } else {
            units_per_node.get(i).copied().unwrap_or(0) / c
        };
        if let Some(t) = req.tasks_per_node {
            cap = cap.min(t);
        }
        cap
    };
    if !req.oversubscribe && !explicit && units_per_node.iter().all(|&u| u < c) {
        return Err(PlacementError::TaskTooBig {
            cpus_per_task: c,
            node: 0,
            available: u64::from(units_per_node.first().copied().unwrap_or(0)),
            unit,
        });
    }
    if let Some(t) = req.tasks_per_node {
        let need = u64::from(n).div_ceil(u64::from(t));
        if need > nn as u64 {
            return Err(PlacementError::TooFewNodes { tasks: n, per_node: t, need, have: nn });
        }
    }
    let total_cap: u64 = (0..nn).map(|i| u64::from(cap(i))).sum();
    if total_cap < u64::from(n) {
        let available: u64 = units_per_node.iter().map(|&u| u64::from(u)).sum();
        if req.tasks_per_node.is_none() || available < u64::from(n) * u64::from(c) {
            let (scope, allows) = if nn == 1 {
                ("node 0".to_owned(), "allows")
            } else {
                (format!("the {nn} nodes"), "allow")
            };
            return Err(PlacementError::NotEnoughCpus {
                tasks: n,
                cpus_per_task: c,
                need: u64::from(n) * u64::from(c),
                unit,
                scope,
                allows,
                available,
            });
        }
        // --ntasks-per-node asks for more ranks on a node than it holds.
        let node = (0..nn).find(|&i| cap(i) < req.tasks_per_node.unwrap_or(0)).unwrap_or(0);
        let per = req.tasks_per_node.unwrap_or(0);
        return Err(PlacementError::NotEnoughCpus {
            tasks: per,
            cpus_per_task: c,
            need: u64::from(per) * u64::from(c),
            unit,
            scope: format!("node {node}"),
            allows: "allows",
            available: u64::from(units_per_node.get(node).copied().unwrap_or(0)),
        });
    }

    let mut counts = vec![0u32; nn];
    match (req.distribution.node, req.tasks_per_node) {
        // --ntasks-per-node with block: fill nodes in order, like mpiexec's -ppn.
        // (The capacity check above guarantees the ranks fit.)
        (NodeDistribution::Block, Some(_)) => {
            let mut left = n;
            for (i, slot) in counts.iter_mut().enumerate() {
                let take = left.min(cap(i));
                *slot = take;
                left -= take;
            }
        }
        (dist, _) => {
            // Deal chunks round-robin over the nodes, skipping full ones. For block the chunk
            // is 1 (balanced counts, contiguous ranks assigned later).
            let used = nn;
            let chunk = match dist {
                NodeDistribution::Plane(p) => p,
                _ => 1,
            };
            // Fast path: even spread when every node can take its share.
            let share = n.div_ceil(used as u32);
            if chunk == 1 && (0..used).all(|i| cap(i) >= share) {
                let base = n / used as u32;
                let extra = (n % used as u32) as usize;
                for (i, slot) in counts.iter_mut().take(used).enumerate() {
                    *slot = base + u32::from(i < extra);
                }
            } else {
                let mut left = n;
                while left > 0 {
                    let mut progressed = false;
                    for (i, slot) in counts.iter_mut().take(used).enumerate() {
                        if left == 0 {
                            break;
                        }
                        let room = cap(i).saturating_sub(*slot);
                        let take = room.min(chunk).min(left);
                        if take > 0 {
                            *slot += take;
                            left -= take;
                            progressed = true;
                        }
                    }
                    if !progressed {
                        break;
                    }
                }
            }
        }
    }
    Ok(counts)
}

/// Which global ranks land on each node.
enum RankOrder {
    /// Contiguous ranges starting at these ranks.
    Block(Vec<u32>),
    /// Explicit lists.
    Lists(Vec<Vec<u32>>),
}

impl RankOrder {
    fn ranks_of(&self, node: usize) -> NodeRanks<'_> {
        match self {
            RankOrder::Block(starts) => NodeRanks::Range(starts.get(node).copied().unwrap_or(0)),
            RankOrder::Lists(l) => NodeRanks::List(l.get(node).map_or(&[], |v| v.as_slice())),
        }
    }
}

enum NodeRanks<'a> {
    Range(u32),
    List(&'a [u32]),
}

impl NodeRanks<'_> {
    fn get(&self, local: u32) -> u32 {
        match self {
            NodeRanks::Range(start) => start + local,
            NodeRanks::List(l) => l.get(local as usize).copied().unwrap_or(0),
        }
    }
}

fn rank_order(req: &PlacementRequest, counts: &[u32]) -> RankOrder {
    let chunk = match req.distribution.node {
        NodeDistribution::Block => {
            let mut starts = Vec::with_capacity(counts.len());
            let mut next = 0u32;
            for &k in counts {
                starts.push(next);
                next += k;
            }
            return RankOrder::Block(starts);
        }
        NodeDistribution::Cyclic => 1,
        NodeDistribution::Plane(p) => p.max(1),
    };
    let mut lists: Vec<Vec<u32>> = counts.iter().map(|&k| Vec::with_capacity(k as usize)).collect();
    let mut rank = 0u32;
    while rank < req.ntasks {
        let before = rank;
        for (i, list) in lists.iter_mut().enumerate() {
            let room = counts.get(i).copied().unwrap_or(0).saturating_sub(list.len() as u32);
            let take = room.min(chunk).min(req.ntasks - rank);
            list.extend(rank..rank + take);
            rank += take;
        }
        if rank == before {
            break;
        }
    }
    RankOrder::Lists(lists)
}

/// A node's available CPUs cut into units, with the domain tables block/cyclic need.
///
/// Built once per node shape and request, so it holds only what the request's binding uses:
/// per-unit CPU sets are not stored (a unit is a core's available CPUs or one CPU of it), and
/// only the domain table of the binding level is filled.
#[derive(Debug, Default)]
struct Layout {
    avail: CpuSet,
    /// Units in socket → NUMA → core order.
    units: Vec<Unit>,
    /// Per unit: [start, end) of its NUMA run (within its socket) in `units`.
    numa_run: Vec<(u32, u32)>,
    /// Sockets: [start, end) in `units`.
    sockets: Vec<(u32, u32)>,
    /// Available CPUs of each core (model index): what a core unit stands for.
    core_cpus: Vec<CpuSet>,
    /// Available CPUs of each domain of the binding level (L3 cache, NUMA node or package,
    /// model indexes; [`Unit::domain`] points here); empty for the other bindings.
    domain_cpus: Vec<CpuSet>,
    /// NUMA nodes holding available CPUs: cpuset, OS index, memory may be bound there. Nodes
    /// without available CPUs cannot meet a rank's CPUs (always a subset of `avail`).
    numa: Vec<(CpuSet, u32, bool)>,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    core: u32,
    socket: u32,
    numa: u32,
    package: u32,
    /// Domain of the binding level (index into [`Layout::domain_cpus`]) or [`NONE`].
    domain: u32,
    /// The CPU (OS index) of a thread unit; [`NONE`] for a core unit (all of `core_cpus`).
    cpu: u32,
}

const NONE: u32 = u32::MAX;

impl Unit {
    const EMPTY: Self =
        Unit { core: NONE, socket: 0, numa: NONE, package: NONE, domain: NONE, cpu: NONE };
}

impl Layout {
    fn build(
        topo: &Topology,
        extra: Option<&CpuSet>,
        req: &PlacementRequest,
        unit: CpuUnit,
    ) -> Self {
        let mut avail = topo.allowed_cpuset.intersection(&topo.online_cpuset);
        if avail.is_empty() {
            // Hand-built models may leave `online_cpuset` empty; the allowed set still holds.
            avail = topo.allowed_cpuset.clone();
        }
        if let Some(e) = extra {
            avail &= e;
        }
        let nomt = req.hint == Hint::Nomultithread;
        // Filled in place: collecting sets returned by value copied each through the stack.
        let mut core_cpus: Vec<CpuSet> = vec![CpuSet::new(); topo.cores.len()];
        for (dst, core) in core_cpus.iter_mut().zip(&topo.cores) {
            if !nomt {
                // Word-wise AND: the common case, and the hot loop of building a layout.
                dst.assign_intersection(&core.cpuset, &avail);
                continue;
            }
            // One thread per core: the core's first available PU in logical order.
            if let Some(os) = core
                .pus
                .iter()
                .filter_map(|&p| topo.pus.get(p as usize))
                .map(|pu| pu.os_index)
                .find(|&os| avail.contains(os))
            {
                dst.insert(os);
            }
        }
        // The domain table of the binding level only: a real machine lists hundreds of L1/L2
        // caches that core or thread binding never looks at.
        let level: fn(&crate::model::Core) -> Option<u32> = match req.cpu_bind {
            CpuBind::L3 => |c| c.l3,
            CpuBind::Numa => |c| c.numa,
            CpuBind::Sockets => |c| c.package,
            _ => |_| None,
        };
        let restrict = |s: &CpuSet| s.intersection(&avail);
        let domain_cpus: Vec<CpuSet> = match req.cpu_bind {
            CpuBind::L3 => topo.caches.iter().map(|c| restrict(&c.cpuset)).collect(),
            CpuBind::Numa => topo.numa_nodes.iter().map(|n| restrict(&n.cpuset)).collect(),
            CpuBind::Sockets => topo.packages.iter().map(|p| restrict(&p.cpuset)).collect(),
            _ => Vec::new(),
        };
        // Exact count first, then every unit written into its slot: pushing a `Unit` kept it
        // alive across the vector's grow call, so it went through the stack and stalled.
        let count: usize = match unit {
            CpuUnit::Core => core_cpus.iter().filter(|s| !s.is_empty()).count(),
            CpuUnit::Thread => core_cpus.iter().map(CpuSet::len).sum(),
        };
        let mut units: Vec<Unit> = vec![Unit::EMPTY; count];
        let mut slots = units.iter_mut();
        for (ci, (core, cpus)) in topo.cores.iter().zip(&core_cpus).enumerate() {
            if cpus.is_empty() {
                continue;
            }
            let u = Unit {
                core: ci as u32,
                socket: 0,
                numa: core.numa.unwrap_or(NONE),
                package: core.package.unwrap_or(NONE),
                domain: level(core).unwrap_or(NONE),
                cpu: NONE,
            };
            match unit {
                CpuUnit::Core => {
                    if let Some(slot) = slots.next() {
                        *slot = u;
                    }
                }
                CpuUnit::Thread => {
                    // CPUs first: `zip` pulls from its first iterator before the second,
                    // so no slot is taken once the core's CPUs run out.
                    for (cpu, slot) in cpus.iter().zip(slots.by_ref()) {
                        *slot = Unit { cpu, ..u };
                    }
                }
            }
        }
        if !units.is_sorted_by_key(|u| (u.package, u.numa)) {
            // Stable: keeps core order inside each (package, NUMA) pair.
            units.sort_by_key(|u| (u.package, u.numa));
        }
        // Sockets: maximal stretches of one package.
        let mut sockets = Vec::new();
        let mut i = 0usize;
        while let Some(package) = units.get(i).map(|u| u.package) {
            let start = i;
            while let Some(u) = units.get_mut(i)
                && u.package == package
            {
                u.socket = sockets.len() as u32;
                i += 1;
            }
            sockets.push((start as u32, i as u32));
        }
        let mut numa_run = Vec::with_capacity(units.len());
        // NUMA runs: maximal stretches of one (package, NUMA) pair.
        let mut i = 0usize;
        while let Some(first) = units.get(i).copied() {
            let start = i;
            while units.get(i).is_some_and(|u| u.package == first.package && u.numa == first.numa) {
                i += 1;
            }
            numa_run.resize(i, (start as u32, i as u32));
        }
        let numa = topo
            .numa_nodes
            .iter()
            .filter(|n| n.cpuset.intersects(&avail))
            .map(|n| (n.cpuset.clone(), n.os_index, topo.allowed_nodeset.contains(n.os_index)))
            .collect();
        Layout { avail, units, numa_run, sockets, core_cpus, domain_cpus, numa }
    }

    /// Adds to `numa` the NUMA nodes local to `cpus` (a subset of `avail`), and to `mem` those
    /// of them memory is bound to under `mem_bind`: one pass over the few NUMA nodes.
    fn add_numa_of(&self, cpus: &CpuSet, mem_bind: MemBind, numa: &mut NodeSet, mem: &mut NodeSet) {
        let local = mem_bind == MemBind::Local;
        for (set, os, bindable) in &self.numa {
            if set.intersects(cpus) {
                numa.insert(*os);
                if local && *bindable {
                    mem.insert(*os);
                }
            }
        }
    }

    /// Adds to `out` the CPUs the units stand for.
    fn add_unit_cpus(&self, units: &[u32], out: &mut CpuSet) {
        for &u in units {
            let Some(unit) = self.units.get(u as usize) else { continue };
            if unit.cpu != NONE {
                out.insert(unit.cpu);
            } else if let Some(s) = self.core_cpus.get(unit.core as usize) {
                *out |= s;
            }
        }
    }

    /// The CPUs the units stand for: what GPU nearness looks at.
    fn unit_cpus(&self, units: &[u32]) -> CpuSet {
        let mut out = CpuSet::new();
        self.add_unit_cpus(units, &mut out);
        out
    }
}

/// Remembers the last node's layout: identical nodes (same model by reference, same
/// allocation) come back to back in big clusters.
#[derive(Default)]
struct LayoutCache {
    key: Option<(*const Topology, Option<CpuSet>)>,
    layout: Layout,
}

impl LayoutCache {
    fn get<N: PlacementNode>(&mut self, n: &N, req: &PlacementRequest, unit: CpuUnit) -> &Layout {
        self.get_fresh(n, req, unit).0
    }

    /// The layout, and whether it had to be built (a different node shape than the last).
    fn get_fresh<N: PlacementNode>(
        &mut self,
        n: &N,
        req: &PlacementRequest,
        unit: CpuUnit,
    ) -> (&Layout, bool) {
        let topo = n.topology();
        let ptr: *const Topology = topo;
        let hit = match &self.key {
            Some((p, a)) => std::ptr::eq(*p, ptr) && a.as_ref() == n.available(),
            None => false,
        };
        if !hit {
            self.layout = Layout::build(topo, n.available(), req, unit);
            self.key = Some((ptr, n.available().cloned()));
        }
        (&self.layout, !hit)
    }
}

#[derive(Default)]
struct Scratch {
    /// Units of each rank of the node, `c` per rank.
    assigned: Vec<u32>,
    used: Vec<bool>,
    cursor: Vec<u32>,
    per_socket: Vec<u32>,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per node in the hot loop; a context struct would only rename these"
)]
fn place_node(
    req: &PlacementRequest,
    topo: &Topology,
    layout: &Layout,
    node: u32,
    k: u32,
    ranks: &NodeRanks<'_>,
    scratch: &mut Scratch,
    out: &mut Placement,
) -> Result<(), PlacementError> {
    let c = req.cpus_per_task;
    let total = layout.units.len() as u64;
    let need = u64::from(k) * u64::from(c);
    let explicit = matches!(req.cpu_bind, CpuBind::MapCpu(_) | CpuBind::MaskCpu(_));
    let over = need > total;
    if over && !req.oversubscribe && !explicit {
        return Err(PlacementError::NotEnoughCpus {
            tasks: k,
            cpus_per_task: c,
            need,
            unit: out.cpu_unit,
            scope: format!("node {node}"),
            allows: "allows",
            available: total,
        });
    }
    if let Some(tps) = req.tasks_per_socket {
        let max = u64::from(tps) * layout.sockets.len() as u64;
        if u64::from(k) > max {
            return Err(PlacementError::TasksPerSocket {
                per_socket: tps,
                node,
                sockets: layout.sockets.len(),
                tasks: k,
            });
        }
    }

    if explicit {
        return place_explicit(req, topo, layout, node, k, ranks, out);
    }

    // Pick units for every rank.
    scratch.assigned.clear();
    if over {
        // Oversubscribed: deal units round-robin (only used for GPU nearness); binding relaxed.
        for i in 0..need {
            scratch.assigned.push((i % total.max(1)) as u32);
        }
        out.oversubscribed = true;
        out.binding_relaxed = true;
        out.notes.push(format!(
            "node {node}: {k} tasks x {c} cpus need {need} {}, it allows {total}; oversubscribed \
             (--oversubscribe), binding relaxed to all {} available CPUs",
            out.cpu_unit,
            layout.avail.len()
        ));
    } else {
        let ok = match req.distribution.socket {
            SocketDistribution::Block => {
                assign_block(layout, k, c, req.tasks_per_socket, true, scratch)
                    || assign_block(layout, k, c, req.tasks_per_socket, false, scratch)
            }
            SocketDistribution::Cyclic => {
                assign_cyclic(layout, k, c, req.tasks_per_socket, scratch)
            }
            SocketDistribution::Fcyclic => assign_fcyclic(layout, k, c, scratch),
        };
        if !ok {
            return Err(PlacementError::TasksPerSocket {
                per_socket: req.tasks_per_socket.unwrap_or(0),
                node,
                sockets: layout.sockets.len(),
                tasks: k,
            });
        }
    }

    // GPUs chosen while building ranks; `gpu_used` counts how often each was handed out.
    let mut gpu_used = vec![0u32; topo.gpus.len()];
    if req.gpus_per_task > 0 {
        let need_gpus = u64::from(k) * u64::from(req.gpus_per_task);
        if need_gpus > topo.gpus.len() as u64 && (!req.oversubscribe || topo.gpus.is_empty()) {
            return Err(PlacementError::NotEnoughGpus {
                per_task: req.gpus_per_task,
                need: need_gpus,
                tasks: k,
                node,
                have: topo.gpus.len(),
            });
        }
    }

    let unbound = over || req.cpu_bind == CpuBind::None;
    let gpus_per_rank = req.gpus_per_task > 0 && !topo.gpus.is_empty();
    // Unbound ranks all get the node's available CPUs; without per-rank GPUs their bindings
    // are equal, so they share one.
    let mut shared: Option<Arc<Binding>> = None;
    let all_cores: CpuSet =
        if unbound { layout.units.iter().map(|u| u.core).collect() } else { CpuSet::new() };
    let assigned = &scratch.assigned;
    let mut bind = |local: u32| -> Arc<Binding> {
        let lo = (local * c) as usize;
        let units = assigned.get(lo..lo + c as usize).unwrap_or(&[]);
        match &shared {
            Some(b) => Arc::clone(b),
            None => {
                // Allocate an empty binding and fill it where it lives (`Arc::default` builds
                // in place): building it on the stack and moving it in cost a 224-byte copy
                // per rank that stalled on store forwarding (the sets were just written word
                // by word), a tenth of the time of a node.
                let mut arc = Arc::<Binding>::default();
                if let Some(b) = Arc::get_mut(&mut arc) {
                    b.oversubscribed = over;
                    b.unbound = unbound;
                    if gpus_per_rank {
                        b.gpus = pick_gpus(topo, req, &layout.unit_cpus(units), &mut gpu_used);
                    }
                    if unbound {
                        b.cpus.clone_from(&layout.avail);
                        b.cores.clone_from(&all_cores);
                    } else {
                        for &u in units {
                            if let Some(unit) = layout.units.get(u as usize) {
                                b.cores.insert(unit.core);
                            }
                        }
                        match req.cpu_bind {
                            CpuBind::Threads => layout.add_unit_cpus(units, &mut b.cpus),
                            CpuBind::Cores => {
                                widen(units, layout, |u| u.core, &layout.core_cpus, &mut b.cpus)
                            }
                            CpuBind::L3 | CpuBind::Numa | CpuBind::Sockets => {
                                widen(units, layout, |u| u.domain, &layout.domain_cpus, &mut b.cpus)
                            }
                            _ => b.cpus.clone_from(&layout.avail),
                        }
                    }
                    layout.add_numa_of(&b.cpus, req.mem_bind, &mut b.numa, &mut b.mem_nodes);
                }
                if unbound && !gpus_per_rank {
                    shared = Some(Arc::clone(&arc));
                }
                arc
            }
        }
    };
    // `extend` over a range writes each record straight into the vector; `push` staged it on
    // the stack in 4-byte halves and reloaded it in 8-byte words, a store-forwarding stall per
    // rank.
    out.ranks.extend((0..k).map(|local| RankPlacement {
        rank: ranks.get(local),
        node,
        local_rank: local,
        binding: bind(local),
    }));
    Ok(())
}

/// Adds to `out` the available CPUs of the domains (core, L3, NUMA node, package) holding
/// `units`; a unit outside any such domain (no L3 in the model) adds its own core.
fn widen(
    units: &[u32],
    layout: &Layout,
    domain: impl Fn(&Unit) -> u32,
    sets: &[CpuSet],
    out: &mut CpuSet,
) {
    let mut last = None;
    for &u in units {
        let Some(unit) = layout.units.get(u as usize) else { continue };
        let d = domain(unit);
        // Units come grouped by domain, so skipping repeats avoids most redundant unions.
        if d != NONE && last == Some(d) {
            continue;
        }
        last = Some(d);
        match sets.get(d as usize) {
            Some(s) => *out |= s,
            None => {
                if let Some(s) = layout.core_cpus.get(unit.core as usize) {
                    *out |= s;
                }
            }
        }
    }
}

/// Block: consecutive units. With `aligned`, a rank that does not fit in the rest of its NUMA
/// node (or socket) starts at the next one when it would fit there.
fn assign_block(
    layout: &Layout,
    k: u32,
    c: u32,
    tps: Option<u32>,
    aligned: bool,
    s: &mut Scratch,
) -> bool {
    s.assigned.clear();
    s.per_socket.clear();
    s.per_socket.resize(layout.sockets.len(), 0);
    let total = layout.units.len() as u32;
    let mut cur = 0u32;
    for _ in 0..k {
        loop {
            if cur >= total {
                return false;
            }
            let Some(unit) = layout.units.get(cur as usize) else { return false };
            let sock = unit.socket as usize;
            let (ss, se) = layout.sockets.get(sock).copied().unwrap_or((cur, total));
            if tps.is_some_and(|t| s.per_socket.get(sock).copied().unwrap_or(0) >= t) {
                cur = se;
                continue;
            }
            if aligned {
                let (ns, ne) = layout.numa_run.get(cur as usize).copied().unwrap_or((cur, total));
                if ne - cur >= c {
                    break;
                }
                if ne - ns >= c {
                    cur = ne;
                    continue;
                }
                // This NUMA node is too small for any rank: a later one of the socket may
                // still hold the rank whole.
                if let Some(next) = next_numa_fit(layout, ne, se, c) {
                    cur = next;
                    continue;
                }
                if se - cur >= c {
                    break;
                }
                if se - ss >= c {
                    cur = se;
                    continue;
                }
            }
            if total - cur < c {
                return false;
            }
            break;
        }
        if let Some(unit) = layout.units.get(cur as usize)
            && let Some(n) = s.per_socket.get_mut(unit.socket as usize)
        {
            *n += 1;
        }
        s.assigned.extend(cur..cur + c);
        cur += c;
    }
    true
}

/// Start of the first NUMA run in `[from, end)` (a run boundary) holding at least `c` units.
fn next_numa_fit(layout: &Layout, mut from: u32, end: u32, c: u32) -> Option<u32> {
    while from < end {
        let (_, e) = layout.numa_run.get(from as usize).copied()?;
        let e = e.min(end);
        if e - from >= c {
            return Some(from);
        }
        from = e.max(from + 1);
    }
    None
}

/// Start of `c` consecutive units inside one socket from `cur`, preferring a NUMA-aligned run.
fn chunk_in_socket(layout: &Layout, mut cur: u32, end: u32, c: u32) -> Option<u32> {
    let start = cur;
    while end.saturating_sub(cur) >= c {
        let (ns, ne) = layout.numa_run.get(cur as usize).copied().unwrap_or((cur, end));
        let ne = ne.min(end);
        if ne - cur >= c || ne - ns < c {
            return Some(cur);
        }
        cur = ne;
    }
    (end.saturating_sub(start) >= c).then_some(start)
}

/// Cyclic: rank by rank round-robin over sockets, each rank's units from one socket; ranks that
/// fit in no socket take the first free units anywhere.
fn assign_cyclic(layout: &Layout, k: u32, c: u32, tps: Option<u32>, s: &mut Scratch) -> bool {
    let ns = layout.sockets.len();
    s.assigned.clear();
    s.used.clear();
    s.used.resize(layout.units.len(), false);
    s.cursor.clear();
    s.cursor.extend(layout.sockets.iter().map(|&(a, _)| a));
    s.per_socket.clear();
    s.per_socket.resize(ns, 0);
    let mut next = 0usize;
    for _ in 0..k {
        let mut placed = false;
        for step in 0..ns {
            let sock = (next + step) % ns;
            if tps.is_some_and(|t| s.per_socket.get(sock).copied().unwrap_or(0) >= t) {
                continue;
            }
            let (Some(&(_, end)), Some(&cur)) = (layout.sockets.get(sock), s.cursor.get(sock))
            else {
                continue;
            };
            if let Some(start) = chunk_in_socket(layout, cur, end, c) {
                for u in start..start + c {
                    if let Some(f) = s.used.get_mut(u as usize) {
                        *f = true;
                    }
                }
                s.assigned.extend(start..start + c);
                if let Some(x) = s.cursor.get_mut(sock) {
                    *x = start + c;
                }
                if let Some(x) = s.per_socket.get_mut(sock) {
                    *x += 1;
                }
                next = sock + 1;
                placed = true;
                break;
            }
        }
        if !placed {
            // Larger than any socket's free run: first free units in order.
            let mut got = 0;
            for (u, f) in s.used.iter_mut().enumerate() {
                if got == c {
                    break;
                }
                if !*f {
                    *f = true;
                    s.assigned.push(u as u32);
                    got += 1;
                }
            }
            if got < c {
                return false;
            }
        }
    }
    true
}

/// Fcyclic: unit by unit round-robin over sockets.
fn assign_fcyclic(layout: &Layout, k: u32, c: u32, s: &mut Scratch) -> bool {
    let ns = layout.sockets.len();
    s.assigned.clear();
    s.cursor.clear();
    s.cursor.extend(layout.sockets.iter().map(|&(a, _)| a));
    let mut next = 0usize;
    for _ in 0..u64::from(k) * u64::from(c) {
        let mut took = false;
        for step in 0..ns {
            let sock = (next + step) % ns;
            let (Some(&(_, end)), Some(cur)) = (layout.sockets.get(sock), s.cursor.get_mut(sock))
            else {
                continue;
            };
            if *cur < end {
                s.assigned.push(*cur);
                *cur += 1;
                next = sock + 1;
                took = true;
                break;
            }
        }
        if !took {
            return false;
        }
    }
    true
}

/// GPUs for one rank: the free ones sharing most CPUs with the rank, then nearest by NUMA
/// node, then lowest index. With `--oversubscribe` and none free, GPUs are shared round-robin.
fn pick_gpus(topo: &Topology, req: &PlacementRequest, near: &CpuSet, used: &mut [u32]) -> Vec<u32> {
    let g = req.gpus_per_task as usize;
    if g == 0 || topo.gpus.is_empty() {
        return Vec::new();
    }
    let mut picked = Vec::with_capacity(g);
    for _ in 0..g {
        let min_use = used.iter().copied().min().unwrap_or(0);
        let best = topo
            .gpus
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                used.get(*i).copied() == Some(min_use) && !picked.contains(&(*i as u32))
            })
            .max_by_key(|(i, gpu)| {
                let overlap = gpu.cpuset.intersection(near).len();
                (overlap, std::cmp::Reverse(*i))
            })
            .map(|(i, _)| i);
        let Some(i) = best else { break };
        if let Some(u) = used.get_mut(i) {
            *u += 1;
        }
        picked.push(i as u32);
    }
    picked.iter().filter_map(|&i| topo.gpus.get(i as usize).map(|g| g.index)).collect()
}

fn place_explicit(
    req: &PlacementRequest,
    topo: &Topology,
    layout: &Layout,
    node: u32,
    k: u32,
    ranks: &NodeRanks<'_>,
    out: &mut Placement,
) -> Result<(), PlacementError> {
    let (kind, sets): (&'static str, Vec<CpuSet>) = match &req.cpu_bind {
        CpuBind::MapCpu(v) => {
            ("map_cpu", v.iter().map(|&c| std::iter::once(c).collect()).collect())
        }
        CpuBind::MaskCpu(v) => ("mask_cpu", v.clone()),
        _ => return Ok(()),
    };
    if sets.is_empty() {
        return Err(PlacementError::MapTooLong { kind, listed: 0, what: "entries", tasks: k });
    }
    for s in &sets {
        if let Some(cpu) = s.iter().find(|&c| !layout.avail.contains(c)) {
            return Err(PlacementError::CpuNotAvailable {
                kind,
                cpu,
                node,
                available: layout.avail.to_string(),
            });
        }
    }
    let mut gpu_used = vec![0u32; topo.gpus.len()];
    if req.gpus_per_task > 0 {
        let need = u64::from(k) * u64::from(req.gpus_per_task);
        if need > topo.gpus.len() as u64 && (!req.oversubscribe || topo.gpus.is_empty()) {
            return Err(PlacementError::NotEnoughGpus {
                per_task: req.gpus_per_task,
                need,
                tasks: k,
                node,
                have: topo.gpus.len(),
            });
        }
    }
    let mut seen: Vec<&CpuSet> = Vec::with_capacity(k as usize);
    let mut shared_any = false;
    for local in 0..k {
        let Some(cpus) = sets.get(local as usize % sets.len()) else { continue };
        let shared = seen.iter().position(|s| s.intersects(cpus));
        if let Some(first) = shared {
            if !req.oversubscribe {
                return Err(PlacementError::MapShares {
                    kind,
                    node,
                    first: first as u32,
                    second: local,
                });
            }
            shared_any = true;
        }
        seen.push(cpus);
        let cores: CpuSet = topo
            .cores
            .iter()
            .enumerate()
            .filter(|(_, core)| core.cpuset.intersects(cpus))
            .map(|(i, _)| i as u32)
            .collect();
        let (mut numa, mut mem_nodes) = (NodeSet::new(), NodeSet::new());
        layout.add_numa_of(cpus, req.mem_bind, &mut numa, &mut mem_nodes);
        out.ranks.push(RankPlacement {
            rank: ranks.get(local),
            node,
            local_rank: local,
            binding: Arc::new(Binding {
                cpus: cpus.clone(),
                cores,
                numa,
                mem_nodes,
                gpus: pick_gpus(topo, req, cpus, &mut gpu_used),
                oversubscribed: shared.is_some(),
                unbound: false,
            }),
        });
    }
    if shared_any {
        out.oversubscribed = true;
        out.notes.push(format!(
            "node {node}: --cpu-bind={kind} makes ranks share CPUs (--oversubscribe)"
        ));
    }
    Ok(())
}
