//! What the scheduler decides, for the controller to carry out: start a job with these grants,
//! keep it waiting (for this reason, until about then, there), or stop running jobs to make
//! room (signal, then requeue or cancel). Plain data, no behaviour: the controller stores and
//! executes decisions, then reports back with events.

use std::fmt;
use std::time::Duration;

use crate::grant::JobStart;
use crate::types::{JobId, Timestamp};

/// Why a pending job has not started. The names are what `gangway queue` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingReason {
    /// The nodes it can use are busy.
    Resources,
    /// It would fit now, but a job ahead of it holds a reservation it would delay (or, without
    /// backfill, waits for the nodes it could use).
    Priority,
    /// Its time limit is over its partition's maximum (the limit changed since submission).
    PartitionTimeLimit,
    /// Nodes it needs are down, drained or suspect.
    NodeDown,
    /// It is held (`gangway release` lets it run).
    Held,
    /// It no longer fits the cluster's configuration (its partition or nodes were removed);
    /// [`crate::validate()`] says why.
    Unsatisfiable,
    /// It waits for other jobs (dependencies; kept out of every pass until they are met).
    Dependency,
    /// Its account (or a parent account) would go over its CPU quota.
    AccountCpuLimit,
    /// Its account would go over its GPU quota.
    AccountGpuLimit,
    /// Its account would go over its memory quota.
    AccountMemoryLimit,
    /// Its account would go over its node quota.
    AccountNodeLimit,
    /// Its account runs as many jobs as it may.
    AccountJobLimit,
    /// Its QOS would go over its CPU limit.
    QosCpuLimit,
    /// Its QOS would go over its GPU limit.
    QosGpuLimit,
    /// Its QOS would go over its memory limit.
    QosMemoryLimit,
    /// Its QOS would go over its node limit.
    QosNodeLimit,
    /// Its QOS runs as many jobs as it may.
    QosJobLimit,
    /// Its time limit is over its QOS's maximum wall time (the QOS changed since submission).
    QosMaxWallTime,
    /// Its account lent the quota it needs; borrowing jobs are being stopped to return it.
    QuotaReclaim,
    /// Jobs were preempted for it; it starts when they have stopped.
    Preemption,
    /// A job array runs as many tasks at once as its throttle (`%N`) allows.
    JobArrayTaskLimit,
}

impl PendingReason {
    /// The reason's name, as `gangway queue` prints it.
    pub fn name(self) -> &'static str {
        match self {
            PendingReason::Resources => "Resources",
            PendingReason::JobArrayTaskLimit => "JobArrayTaskLimit",
            PendingReason::Priority => "Priority",
            PendingReason::PartitionTimeLimit => "PartitionTimeLimit",
            PendingReason::NodeDown => "NodeDown",
            PendingReason::Held => "Held",
            PendingReason::Unsatisfiable => "Unsatisfiable",
            PendingReason::Dependency => "Dependency",
            PendingReason::AccountCpuLimit => "AccountCpuLimit",
            PendingReason::AccountGpuLimit => "AccountGpuLimit",
            PendingReason::AccountMemoryLimit => "AccountMemoryLimit",
            PendingReason::AccountNodeLimit => "AccountNodeLimit",
            PendingReason::AccountJobLimit => "AccountJobLimit",
            PendingReason::QosCpuLimit => "QosCpuLimit",
            PendingReason::QosGpuLimit => "QosGpuLimit",
            PendingReason::QosMemoryLimit => "QosMemoryLimit",
            PendingReason::QosNodeLimit => "QosNodeLimit",
            PendingReason::QosJobLimit => "QosJobLimit",
            PendingReason::QosMaxWallTime => "QosMaxWallTime",
            PendingReason::QuotaReclaim => "QuotaReclaim",
            PendingReason::Preemption => "Preemption",
        }
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When and where a waiting job is expected to start: its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStart {
    /// When, by the time limits of the jobs before it.
    pub at: Timestamp,
    /// On which nodes (names).
    pub nodes: Vec<String>,
}

/// What happens to a preempted job after its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPreempt {
    /// Back to the queue (a new attempt); its work so far is lost.
    Requeue,
    /// Ended for good (it may not be requeued, or its QOS cancels).
    Cancel,
}

/// Why a running job is stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreemptCause {
    /// A job of a QOS allowed to preempt this job's QOS needs its resources.
    Qos,
    /// The job borrowed quota from this account, which needs it back.
    QuotaReclaim {
        /// The lending account.
        lender: String,
    },
}

/// Stop a running job to make room: signal it now, end it after `grace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    /// The job stopped.
    pub victim: JobId,
    /// The job it is stopped for (recorded as "preempted by").
    pub by: JobId,
    /// Why.
    pub cause: PreemptCause,
    /// Time between the signal (SIGTERM) and the kill.
    pub grace: Duration,
    /// Requeue or cancel once stopped.
    pub then: AfterPreempt,
    /// Work lost: CPU-seconds the victim has run this attempt.
    pub lost_cpu_seconds: u64,
}

/// One decision of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start the job with these grants.
    Start {
        /// The grants.
        start: JobStart,
        /// Started ahead of a higher-priority waiting job (backfill).
        backfilled: bool,
        /// It runs on quota borrowed from these accounts, so it may be preempted to give
        /// the quota back.
        borrowed_from: Vec<String>,
        /// A task of this job array, started as a job of its own (`start.job`, a new id).
        array: Option<JobId>,
    },
    /// Keep it pending; sent when the reason or the expected start changed.
    Wait {
        /// The job.
        job: JobId,
        /// Why.
        reason: PendingReason,
        /// Its reservation, if it holds one.
        expected: Option<ExpectedStart>,
    },
    /// Stop a running job for another.
    Preempt(Preemption),
}

impl Decision {
    /// The job decided on (the victim for a preemption).
    pub fn job(&self) -> JobId {
        match self {
            Decision::Start { start, .. } => start.job,
            Decision::Wait { job, .. } => *job,
            Decision::Preempt(p) => p.victim,
        }
    }
}
