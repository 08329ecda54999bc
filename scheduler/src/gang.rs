//! Gang selection: how many of a job's tasks each node can take with what is free there, and
//! which nodes make the gang (all or nothing). Pure arithmetic over counts; the exact CPUs
//! come later from placement ([`crate::grant`]).

use std::cmp::Reverse;
use std::collections::HashSet;

use gangway_topology::CpuSet;

use crate::cluster::{ClusterState, Node};
use crate::request::{JobRequest, MemoryRequest};
use crate::types::Bytes;

/// The job's shape with defaults applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobShape {
    pub(crate) min_nodes: u32,
    pub(crate) max_nodes: u32,
    pub(crate) ntasks: u32,
    pub(crate) tasks_per_node: Option<u32>,
    pub(crate) cpus_per_task: u32,
    pub(crate) memory: Option<MemoryRequest>,
    pub(crate) gpus_per_task: u32,
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
        }
    }

    /// Tasks of this job a node can take with `free` resources.
    pub(crate) fn capacity(&self, node: &Node, free: &NodeFree, exclusive: bool) -> u32 {
        let whole;
        let free = if exclusive {
            // Exclusive jobs take untouched nodes only, and then everything on them.
            if free.busy {
                return 0;
            }
            whole = NodeFree::empty(node);
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
            Some(MemoryRequest::PerCpu(m)) if m > Bytes::ZERO => {
                let per_task = m
                    .saturating_mul(u64::from(self.cpus_per_task))
                    .saturating_mul(u64::from(node.cpus_per_unit));
                let fits = free.memory.get() / per_task.get().max(1);
                cap = cap.min(u32::try_from(fits).unwrap_or(u32::MAX));
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
pub(crate) struct Constraints {
    pub(crate) excluded: HashSet<usize>,
    pub(crate) required: Vec<usize>,
}

impl Constraints {
    pub(crate) fn new(cluster: &ClusterState, request: &JobRequest) -> Self {
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
    pub(crate) fn required_positions(&self, candidates: &[Candidate]) -> Vec<Option<usize>> {
        self.required.iter().map(|&node| candidates.iter().position(|c| c.node == node)).collect()
    }
}

/// What is free on a node during a pass.
#[derive(Debug, Clone)]
pub(crate) struct NodeFree {
    pub(crate) cpus: CpuSet,
    pub(crate) units: u32,
    pub(crate) memory: Bytes,
    pub(crate) gpus: CpuSet,
    /// Something is allocated here.
    pub(crate) busy: bool,
    /// An exclusive job holds it.
    pub(crate) exclusive: bool,
    /// A waiting higher-priority job could use it.
    pub(crate) reserved: bool,
}

impl NodeFree {
    pub(crate) fn empty(node: &Node) -> Self {
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

    pub(crate) fn now(node: &Node) -> Self {
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
pub(crate) struct Candidate {
    pub(crate) node: usize,
    pub(crate) cap: u32,
    /// Already runs something: filled before idle nodes.
    pub(crate) partial: bool,
}

/// Chooses the gang: node positions in `candidates` with their task counts, or `None` when
/// the shape does not fit. Required nodes come first, then partly used nodes, then idle ones.
pub(crate) fn select_nodes(
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
