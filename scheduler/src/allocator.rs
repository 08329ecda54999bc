//! The strict-priority pass: every pending job gets a [`Decision`] in priority order, and a job
//! that must wait keeps every node it could use from the jobs after it.

use std::cmp::Reverse;
use std::fmt;

use crate::cluster::{ClusterState, NodeHealth, count_units};
use crate::gang::{Candidate, Constraints, JobShape, NodeFree, select_nodes};
use crate::grant::{JobStart, PlacementCache, build_grants};
use crate::request::PendingJob;
use crate::types::JobId;

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

#[cfg(test)]
mod tests;
