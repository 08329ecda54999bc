//! The stateless form of a pass, for callers that keep their own books (the controller until
//! it holds a [`Scheduler`]): strict priority order, no backfill, every pending job decided.
//! It runs the same engine as [`Scheduler::pass`] on a copy of the cluster.

use std::cmp::Reverse;

use crate::cluster::ClusterState;
use crate::decision::PendingReason;
use crate::engine::{Budget, NewJob, Scheduler};
use crate::grant::JobStart;
use crate::policy::config::SchedulerConfig;
use crate::request::PendingJob;
use crate::types::{JobId, Timestamp};

// The submission check, beside the pass, for callers that use this module as their allocator.
pub use crate::validate::{Rejection, validate};

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
    let now = order.iter().map(|j| j.request.submit_time).max().unwrap_or_default();
    let Ok(mut engine) = Scheduler::new(state.clone(), SchedulerConfig::strict()) else {
        return Vec::new();
    };
    for job in &order {
        // Unchecked: a request that no longer fits the cluster waits as `Unsatisfiable`.
        engine.insert_unchecked(NewJob::new(job.id, job.request.clone(), "user"), now);
    }
    let pass = engine.pass(now.max(Timestamp(0)), Budget::unlimited());
    let mut decisions: Vec<Decision> = pass
        .decisions
        .into_iter()
        .filter_map(|d| match d {
            crate::decision::Decision::Start { start, .. } => Some(Decision::Start(start)),
            crate::decision::Decision::Wait { job, reason, .. } => {
                Some(Decision::Wait { job, reason })
            }
            crate::decision::Decision::Preempt(_) => None,
        })
        .collect();
    for job in &order {
        if job.request.held {
            decisions.push(Decision::Wait { job: job.id, reason: PendingReason::Held });
        }
    }
    let rank: std::collections::HashMap<JobId, usize> =
        order.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    decisions.sort_by_key(|d| rank.get(&d.job()).copied().unwrap_or(usize::MAX));
    decisions
}

#[cfg(test)]
mod tests;
