//! Gang selection: how many of a job's tasks each node can take with what is free there, and
//! which nodes make the gang (all or nothing). Pure arithmetic over counts; the exact CPUs
//! come later from placement ([`crate::grant`]).

use std::cmp::Reverse;

use gangway_topology::GpuType;

use crate::avail::{Avail, Need};
use crate::cluster::{ClusterState, Node};
use crate::hash::FastSet;
use crate::request::{JobRequest, MemoryRequest};
use crate::types::Bytes;

/// The job's shape with defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct JobShape {
    pub(crate) min_nodes: u32,
    pub(crate) max_nodes: u32,
    pub(crate) ntasks: u32,
    pub(crate) tasks_per_node: Option<u32>,
    pub(crate) cpus_per_task: u32,
    pub(crate) memory: Option<MemoryRequest>,
    pub(crate) gpus_per_task: u32,
    pub(crate) gpu_type: Option<GpuType>,
}

impl JobShape {
    pub(crate) fn of(r: &JobRequest) -> Self {
        Self {
            min_nodes: r.min_nodes.max(1),
            max_nodes: r.max_nodes().max(r.min_nodes.max(1)),
            ntasks: r.task_count(),
            tasks_per_node: r.ntasks_per_node,
            cpus_per_task: r.cpus_per_task.max(1),
            memory: r.memory,
            gpus_per_task: r.gpus_per_task,
            gpu_type: r.gpu_type.clone(),
        }
    }

    /// Tasks of this job a node can take with `avail` free there.
    pub(crate) fn capacity(&self, node: &Node, avail: &Avail, exclusive: bool) -> u32 {
        let whole;
        let avail = if exclusive {
            // Exclusive jobs take untouched nodes only, and then everything on them.
            if avail.busy() {
                return 0;
            }
            whole = Avail::whole(node);
            &whole
        } else {
            if avail.exclusive > 0 {
                return 0;
            }
            avail
        };
        let mut cap = avail.units() / self.cpus_per_task;
        if let Some(per_node) = self.tasks_per_node {
            cap = cap.min(per_node);
        }
        match self.memory {
            Some(MemoryRequest::PerNode(m)) if m > avail.memory() => return 0,
            Some(MemoryRequest::PerCpu(m)) if m > Bytes::ZERO => {
                let per_task = m
                    .saturating_mul(u64::from(self.cpus_per_task))
                    .saturating_mul(u64::from(node.cpus_per_unit));
                let fits = avail.memory().get() / per_task.get().max(1);
                cap = cap.min(u32::try_from(fits).unwrap_or(u32::MAX));
            }
            _ => {}
        }
        let free_gpus = match &self.gpu_type {
            _ if self.gpus_per_task == 0 => 0,
            None => avail.gpus(),
            Some(t) => match node.gpu_type_slot(t) {
                Some(slot) => avail.typed_gpus(slot),
                None => return 0,
            },
        };
        if let Some(gpu_cap) = free_gpus.checked_div(self.gpus_per_task) {
            cap = cap.min(gpu_cap);
        }
        cap
    }

    /// What `count` tasks of this job hold on `node` (the whole node when exclusive).
    pub(crate) fn need(&self, node: &Node, count: u32, exclusive: bool) -> Need {
        if exclusive {
            return Need::whole(node);
        }
        let units = count.saturating_mul(self.cpus_per_task);
        let memory = match self.memory {
            Some(MemoryRequest::PerNode(m)) => m,
            Some(MemoryRequest::PerCpu(m)) => {
                m.saturating_mul(u64::from(units) * u64::from(node.cpus_per_unit))
            }
            None => Bytes::ZERO,
        };
        let gpus = count.saturating_mul(self.gpus_per_task);
        let mut typed = [0; crate::cluster::GPU_TYPE_SLOTS];
        if let Some(n) = self
            .gpu_type
            .as_ref()
            .and_then(|t| node.gpu_type_slot(t))
            .and_then(|s| typed.get_mut(s))
        {
            *n = gpus;
        }
        Need { units, memory, gpus, typed, exclusive }
    }

    /// Units one node must have free to take `tasks` of this job: a cheap first filter.
    pub(crate) fn units_for(&self, tasks: u32) -> u32 {
        tasks.saturating_mul(self.cpus_per_task)
    }
}

/// Nodes a request names, as indexes.
pub(crate) struct Constraints {
    pub(crate) excluded: FastSet<usize>,
    pub(crate) required: Vec<usize>,
}

impl Constraints {
    /// The nodes `request` excludes and requires; with `avoid_failed`, the nodes it lost in
    /// earlier attempts are excluded too (whether they should be is decided in `validate.rs`).
    pub(crate) fn with(cluster: &ClusterState, request: &JobRequest, avoid_failed: bool) -> Self {
        let failed: &[String] = if avoid_failed { &request.excluded_after_failure } else { &[] };
        if request.nodelist.is_empty() && request.exclude.is_empty() && failed.is_empty() {
            // Most jobs name no nodes: nothing to look up or allocate.
            return Self { excluded: FastSet::default(), required: Vec::new() };
        }
        let excluded =
            request.exclude.iter().chain(failed).filter_map(|n| cluster.index_of(n)).collect();
        let mut required: Vec<usize> =
            request.nodelist.iter().filter_map(|n| cluster.index_of(n)).collect();
        required.sort_unstable();
        required.dedup();
        Self { excluded, required }
    }

    /// Positions in `candidates` of the required nodes; `None` for one that is missing.
    pub(crate) fn required_positions(&self, candidates: &[Candidate]) -> Vec<Option<usize>> {
        self.required.iter().map(|&node| candidates.iter().position(|c| c.node == node)).collect()
    }

    /// Whether the request names no nodes (most jobs): any node of the partition will do.
    pub(crate) fn is_empty(&self) -> bool {
        self.excluded.is_empty() && self.required.is_empty()
    }
}

/// A node a job may use and how many of its tasks it can take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) node: usize,
    pub(crate) cap: u32,
    /// Already runs something: filled before idle nodes.
    pub(crate) partial: bool,
}

/// The nodes a job may use, in partition order, as gang selection sees them: how many tasks
/// each can take and whether it already runs something.
pub(crate) trait GangView {
    /// Number of candidate positions.
    fn len(&self) -> usize;
    /// Tasks the node at `pos` can take (0: none, or not usable).
    fn cap(&self, pos: usize) -> u32;
    /// Whether the node at `pos` already runs something (filled before idle nodes).
    fn partial(&self, pos: usize) -> bool;
    /// The first position at or after `from` with the given `partial` flag that can take at
    /// least `share` tasks. Views with an index answer this without visiting every node.
    fn next_fit(&self, from: usize, partial: bool, share: u32) -> Option<usize> {
        (from..self.len()).find(|&p| self.partial(p) == partial && self.cap(p) >= share)
    }
}

impl GangView for [Candidate] {
    fn len(&self) -> usize {
        <[Candidate]>::len(self)
    }
    fn cap(&self, pos: usize) -> u32 {
        self.get(pos).map_or(0, |c| c.cap)
    }
    fn partial(&self, pos: usize) -> bool {
        self.get(pos).is_some_and(|c| c.partial)
    }
}

/// Chooses the gang: node positions in `candidates` with their task counts, or `None` when
/// the shape does not fit. Required nodes come first, then partly used nodes, then idle ones.
pub(crate) fn select_nodes(
    candidates: &[Candidate],
    required: &[Option<usize>],
    shape: &JobShape,
) -> Option<Vec<(usize, u32)>> {
    select(candidates, required, shape)
}

/// [`select_nodes`] over any [`GangView`]: the one packing policy, whether the view is a list
/// of every candidate or an index over a partition.
pub(crate) fn select<V: GangView + ?Sized>(
    view: &V,
    required: &[Option<usize>],
    shape: &JobShape,
) -> Option<Vec<(usize, u32)>> {
    let mut chosen: Vec<(usize, u32)> = Vec::new();
    let mut sum = 0u64;
    for r in required {
        let pos = (*r)?;
        let cap = view.cap(pos);
        if cap == 0 {
            return None;
        }
        if !chosen.iter().any(|&(p, _)| p == pos) {
            chosen.push((pos, cap));
            sum += u64::from(cap);
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
        let share = u32::try_from(share).unwrap_or(u32::MAX);
        let fixed = chosen.len();
        'walk: for want_partial in [true, false] {
            let mut from = 0;
            while let Some(pos) = view.next_fit(from, want_partial, share) {
                if done(&chosen, sum) || chosen.len() >= max_nodes {
                    break 'walk;
                }
                from = pos + 1;
                if !chosen.get(..fixed).unwrap_or_default().iter().any(|&(p, _)| p == pos) {
                    let cap = view.cap(pos);
                    chosen.push((pos, cap));
                    sum += u64::from(cap);
                }
            }
        }
    }
    if !done(&chosen, sum) {
        // Uneven capacities: take the biggest nodes, then as few of them as do.
        let fixed = chosen.len().min(required.len());
        chosen.truncate(fixed);
        sum = chosen.iter().map(|&(_, cap)| u64::from(cap)).sum();
        let mut rest: Vec<(usize, u32)> = (0..view.len())
            .filter_map(|pos| {
                let cap = view.cap(pos);
                (cap > 0 && !chosen.iter().any(|&(p, _)| p == pos)).then_some((pos, cap))
            })
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
    // In partition order, as Slurm lists a job's nodes: rank 0 on the first, and the node list
    // (`node[1-3]`, never `node[3,1-2]`) reads the same whichever node was chosen first.
    chosen.sort_unstable_by_key(|&(pos, _)| pos);
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
