//! The scheduler's jobs: each job's request and owner, its priority factors, where it is
//! (queued, held, waiting on dependencies or a quota, running), and the queue ordered by
//! priority. Only queued jobs are looked at by a pass: held, dependency-blocked and
//! quota-parked jobs sit in side tables and cost nothing until the event that frees them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::decision::PendingReason;
use crate::policy::accounts::{AccountId, AssocId};
use crate::policy::priority::Factors;
use crate::policy::quota::{Park, Tally};
use crate::request::JobRequest;
use crate::types::{JobId, Timestamp};

/// A job's place in the queue: priority (highest first), then submit time, then id.
pub(crate) type QueueKey = (Reverse<i64>, Timestamp, JobId);

/// Where a job is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Where {
    /// In the queue, looked at by passes.
    Queued,
    /// Held by a user or administrator.
    Held,
    /// Waiting for other jobs to finish.
    Dependency,
    /// Waiting until a quota has room.
    Parked(Park),
    /// Running (or being stopped).
    Running(Box<Run>),
}

/// A running job's books.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub start: Timestamp,
    /// When its time limit ends it.
    pub end: Timestamp,
    /// Index of its partition.
    pub partition: usize,
    /// What it holds, for quotas.
    pub tally: Tally,
    /// Quota borrowed, per lender.
    pub borrowed: Vec<(AccountId, Tally)>,
    /// Its dominant share of the partition: usage per second.
    pub rate: f64,
    /// Usage is charged up to here.
    pub charged: Timestamp,
    /// Signalled to make room; still holds its resources until it ends.
    pub stopping: bool,
    /// Started by backfill.
    pub backfilled: bool,
}

/// One job.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: JobId,
    pub request: JobRequest,
    /// Index of its partition (`None`: it names one that does not exist).
    pub partition: Option<usize>,
    pub account: AccountId,
    pub assoc: AssocId,
    pub qos: u16,
    pub nice: i32,
    /// May be requeued when preempted (otherwise cancelled).
    pub requeue: bool,
    pub factors: Factors,
    pub priority: i64,
    /// When it became eligible (submitted, released, requeued): where age counts from.
    pub eligible: Timestamp,
    pub at: Where,
    /// Fit-relevant shape, hashed: jobs alike share what a pass learnt about one of them.
    pub class: u64,
    /// The last reason and expected start reported to the controller.
    pub reported: Option<(PendingReason, Option<Timestamp>)>,
    /// Jobs preempted for this one, still stopping.
    pub awaiting: Vec<JobId>,
    /// A job array's pending tasks (this job stands for them in the queue).
    pub array: Option<ArrayTasks>,
    /// The array this job is a task of.
    pub task_of: Option<JobId>,
}

impl Job {
    /// The job's queue key.
    pub fn key(&self) -> QueueKey {
        (Reverse(self.priority), self.request.submit_time, self.id)
    }

    /// Its time limit, or the partition's default (`None`: unlimited).
    pub fn limit(&self, partition_default: Option<Duration>) -> Option<Duration> {
        self.request.time_limit.or(partition_default)
    }

    /// The running books, if running.
    pub fn run(&self) -> Option<&Run> {
        match &self.at {
            Where::Running(r) => Some(r),
            _ => None,
        }
    }
}

/// The queue and the side tables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Queue {
    /// Queued jobs by priority.
    pub order: BTreeSet<QueueKey>,
    /// Quota-parked jobs by what they wait on, each set by priority.
    pub parked: BTreeMap<Park, BTreeSet<QueueKey>>,
}

impl Queue {
    /// Puts a job in the queue.
    pub fn enqueue(&mut self, job: &mut Job) {
        job.at = Where::Queued;
        self.order.insert(job.key());
    }

    /// Takes a job out of the queue or its parking place (before it moves elsewhere).
    pub fn remove(&mut self, job: &Job) {
        match &job.at {
            Where::Queued => {
                self.order.remove(&job.key());
            }
            Where::Parked(p) => {
                if let Some(set) = self.parked.get_mut(p) {
                    set.remove(&job.key());
                    if set.is_empty() {
                        self.parked.remove(p);
                    }
                }
            }
            _ => {}
        }
    }

    /// Parks a queued job until `park` has room.
    pub fn park(&mut self, job: &mut Job, park: Park) {
        self.remove(job);
        self.parked.entry(park).or_default().insert(job.key());
        job.at = Where::Parked(park);
    }

    /// Parked jobs waiting on `park`, best first.
    pub fn parked_on(&self, park: &Park) -> Vec<JobId> {
        self.parked.get(park).map_or_else(Vec::new, |s| s.iter().map(|k| k.2).collect())
    }
}

/// A job array's pending tasks, queued as one job: each start takes one task out as a job of
/// its own (with an id from the scheduler's `set_next_id` counter), so a waiting array costs a
/// pass one look, whatever its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayTasks {
    /// Tasks not started yet.
    pub pending: u32,
    /// Tasks running now.
    pub running: u32,
    /// At most this many running at once (`--array=...%N`).
    pub throttle: Option<u32>,
}
