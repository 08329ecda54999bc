//! The scheduler the controller holds: one [`Scheduler`] value fed with submissions and
//! events ([`Event`]), asked for passes ([`Scheduler::pass`]) that return [`Decision`]s to carry
//! out. It keeps its indexes (free cores per node and partition, the queue by priority, the
//! reservation profile, quota holdings, decayed usage) up to date event by event, so a pass
//! looks only at what changed; a periodic full pass recomputes priorities and reservations.
//! Every pass is bounded by a [`Budget`] and carries on where it stopped in the next one.
//!
//! Pure: time comes in as [`Timestamp`]s; a caller that wants decision timings passes a clock
//! closure ([`Scheduler::pass_timed`]).

mod arrays;
mod events;
mod jobs;
mod lanes;
mod preempt;
pub(crate) mod profile;
mod scan;
mod view;

use std::collections::VecDeque;

use crate::avail::Avail;
use crate::cluster::{ClusterState, NodeHealth};
use crate::decision::{Decision, ExpectedStart, PendingReason};
use crate::grant::JobStart;
use crate::grant_placement::PlacementCache;
use crate::hash::{FastMap, FastSet};
use crate::policy::Policy;
use crate::policy::accounts::{UsageRecord, UsageValue, fair_share_factor};
use crate::policy::config::{ConfigError, SchedulerConfig};
use crate::policy::priority::PriorityExplanation;
use crate::policy::quota::Quotas;
use crate::rejection::Rejection;
use crate::request::JobRequest;
use crate::types::{JobId, Timestamp};

pub use jobs::ArrayTasks;
use jobs::{Job, Queue, QueueKey, Where};
use lanes::Lanes;
use profile::{Profile, Reservation};

/// A job handed to the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Its id.
    pub id: JobId,
    /// What it asks for.
    pub request: JobRequest,
    /// Its owner's login name.
    pub user: String,
    /// `--account` (`None`: the user's default).
    pub account: Option<String>,
    /// `--qos` (`None`: the default QOS).
    pub qos: Option<String>,
    /// `--nice`: points taken off its priority.
    pub nice: i32,
    /// Whether it may be requeued when preempted (otherwise it is cancelled).
    pub requeue: bool,
    /// It waits for other jobs; it is not looked at until [`Event::DependenciesMet`].
    pub dependency: bool,
    /// A job array's tasks not started yet, waiting as this one job (see [`ArrayTasks`]).
    pub array: Option<ArrayTasks>,
    /// The array this job is a task of (its running tasks count against the throttle).
    pub task_of: Option<JobId>,
}

impl NewJob {
    /// A job of `user` with the default account and QOS, requeueable, no dependencies.
    pub fn new(id: JobId, request: JobRequest, user: &str) -> Self {
        Self {
            id,
            request,
            user: user.to_owned(),
            account: None,
            qos: None,
            nice: 0,
            requeue: true,
            dependency: false,
            array: None,
            task_of: None,
        }
    }
}

/// Why a job was refused at submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The request can never run on this cluster.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// `--account` names no account.
    #[error("unknown account '{0}'; ask an administrator which accounts you may use")]
    UnknownAccount(String),
    /// The user may not use the account.
    #[error("user '{user}' may not use account '{account}'; use --account with one of yours")]
    NotMember {
        /// The user.
        user: String,
        /// The account.
        account: String,
    },
    /// The user is in no account.
    #[error("user '{0}' belongs to no account; ask an administrator to add you to one")]
    NoAccount(String),
    /// `--qos` names no QOS.
    #[error("unknown QOS '{0}'; use --qos with one of the configured levels")]
    UnknownQos(String),
    /// The time limit is over the QOS's maximum.
    #[error("--time is over QOS '{qos}''s maximum of {max}; lower --time or choose another --qos")]
    OverQosWallTime {
        /// The QOS.
        qos: String,
        /// Its maximum (Slurm time form).
        max: String,
    },
    /// Too many queued jobs.
    #[error("account '{0}' has as many jobs queued as it may; wait for some to start")]
    QueuedLimit(String),
    /// The id is in use.
    #[error("job {0} is already known")]
    Duplicate(JobId),
}

/// Something that happened, for the scheduler to take into account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A running job stopped (completed, failed, cancelled, timed out, preempted). With
    /// `requeue` it waits again as a new attempt; otherwise it is forgotten.
    Ended {
        /// The job.
        job: JobId,
        /// Back to the queue.
        requeue: bool,
    },
    /// A waiting job was cancelled.
    Cancelled(JobId),
    /// Keep a waiting job from starting.
    Hold(JobId),
    /// Let a held job start.
    Release(JobId),
    /// The jobs a job waited for are done: it joins the queue.
    DependenciesMet(JobId),
    /// A node's health changed.
    NodeHealth {
        /// The node.
        node: String,
        /// Its health.
        health: NodeHealth,
        /// Why (shown beside it).
        reason: Option<String>,
    },
}

/// How much one pass may do before it stops (to carry on in the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Jobs to look at.
    pub jobs: usize,
}

impl Budget {
    /// No bound.
    pub fn unlimited() -> Self {
        Budget { jobs: usize::MAX }
    }

    /// At most `n` jobs looked at.
    pub fn jobs(n: usize) -> Self {
        Budget { jobs: n }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// The decisions, in the order taken.
    pub decisions: Vec<Decision>,
    /// Nothing is left to do until the next event or full pass.
    pub done: bool,
    /// Jobs looked at.
    pub examined: usize,
    /// Jobs started.
    pub started: usize,
    /// Of which ahead of a higher-priority waiting job.
    pub backfilled: usize,
    /// A full pass (priorities and reservations recomputed) began in this call.
    pub full: bool,
    /// Time of each job's decision, from the caller's clock ([`Scheduler::pass_timed`]).
    pub decision_times: Vec<u64>,
}

/// Where a job stands, for `gangway queue`/`show`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Running (or being stopped).
    pub running: bool,
    /// Its priority.
    pub priority: i64,
    /// Why it waits (`None` while running or not yet looked at).
    pub reason: Option<PendingReason>,
    /// When and where it should start, if it holds a reservation.
    pub expected: Option<ExpectedStart>,
    /// Its account.
    pub account: String,
    /// Its QOS.
    pub qos: String,
    /// Running on borrowed quota: may be preempted to give it back.
    pub preemptable: bool,
}

/// One row of `gangway share`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRow {
    /// The account.
    pub account: String,
    /// The user (`None` for the account's own row).
    pub user: Option<String>,
    /// Normalised share of the cluster.
    pub share: f64,
    /// Decayed usage, dominant-share seconds.
    pub usage: f64,
    /// Usage over everyone's.
    pub usage_share: f64,
    /// Fair-share factor (users only).
    pub factor: Option<f64>,
}

/// The state of a pass that has not finished.
#[derive(Debug, Clone, Default)]
struct Scan {
    /// Priorities and reservations were recomputed for it.
    full: bool,
    /// Last job looked at.
    cursor: Option<QueueKey>,
    /// Jobs queued since the previous pass (the pass judges them in their turn).
    fresh: Vec<JobId>,
    /// Jobs that failed to fit, by (class, view): alike jobs after them fail too, since a
    /// pass only ever takes resources.
    failed: FastSet<(u64, u8)>,
}

/// The scheduler: cluster state, jobs, policies and indexes.
#[derive(Debug)]
pub struct Scheduler {
    policy: Policy,
    cluster: ClusterState,
    jobs: FastMap<JobId, Box<Job>>,
    queue: Queue,
    quotas: Quotas,
    /// Decayed usage of each user-in-account.
    usage: Vec<UsageValue>,
    /// Fair-share factor of each user-in-account, as of the last full pass.
    fairshare: Vec<f32>,
    lanes: Lanes,
    profile: Profile,
    reservations: FastMap<JobId, Reservation>,
    /// EASY: the job holding each partition's reservation.
    holders: Vec<Option<JobId>>,
    /// EASY: the earliest reservation start touching each partition.
    shadow: Vec<Timestamp>,
    /// Reserved nodes: what jobs running past the reservations may use there.
    spare: FastMap<usize, Avail>,
    /// Bumped whenever resources may have come free earlier than the profile said (a job
    /// ended, a reservation went, a node changed): reservations made since are still earliest.
    profile_epoch: u64,
    /// The profile epoch when the last pass from the top finished.
    settled_epoch: u64,
    /// Each job being preempted, and the job it makes room for.
    preempted_for: FastMap<JobId, JobId>,
    /// Lenders with jobs waiting for their lent quota to come back (they lend nothing more).
    wanting: FastMap<u32, FastSet<JobId>>,
    /// No-backfill mode: nodes kept for waiting jobs in this pass.
    closed: Vec<bool>,
    /// No-backfill mode: partitions whose every node is kept.
    closed_parts: Vec<bool>,
    scan: Option<Scan>,
    /// Resources were freed (or priorities changed) since the last pass began at the top.
    stale: bool,
    /// Jobs queued since then, to decide on their own.
    fresh: VecDeque<JobId>,
    next_full: Option<Timestamp>,
    /// Whether each class fits the partition at all, by (class, health epoch).
    static_fit: FastMap<u64, (u64, PendingReason)>,
    health_epoch: u64,
    cache: PlacementCache,
    /// As of when restored usage counts running jobs' charges: a job recovered afterwards is
    /// charged from then on, not again from its start.
    usage_restored_at: Timestamp,
    /// The id the next array task started gets (the caller's id counter, see
    /// [`Scheduler::set_next_id`]).
    next_task_id: JobId,
}

impl Scheduler {
    /// A scheduler for `cluster` (with any running jobs already allocated in it, see
    /// [`Scheduler::recover`]) under `config`.
    pub fn new(cluster: ClusterState, config: SchedulerConfig) -> Result<Self, ConfigError> {
        let policy = Policy::new(config)?;
        let lanes = Lanes::new(&cluster);
        let mut s = Scheduler {
            quotas: Quotas::new(policy.tree.accounts.len(), policy.qos.len()),
            profile: Profile::new(cluster.nodes().len()),
            holders: vec![None; cluster.partitions().len()],
            shadow: vec![Timestamp::NEVER; cluster.partitions().len()],
            closed: vec![false; cluster.nodes().len()],
            closed_parts: vec![false; cluster.partitions().len()],
            policy,
            lanes,
            cluster,
            jobs: FastMap::default(),
            queue: Queue::default(),
            usage: Vec::new(),
            fairshare: Vec::new(),
            reservations: FastMap::default(),
            spare: FastMap::default(),
            wanting: FastMap::default(),
            preempted_for: FastMap::default(),
            profile_epoch: 0,
            settled_epoch: u64::MAX,
            scan: None,
            stale: true,
            fresh: VecDeque::new(),
            next_full: None,
            static_fit: FastMap::default(),
            health_epoch: 0,
            cache: PlacementCache::default(),
            usage_restored_at: Timestamp(0),
            next_task_id: 1,
        };
        for n in 0..s.cluster.nodes().len() {
            s.refresh_node(n);
        }
        Ok(s)
    }

    /// The cluster as the scheduler sees it.
    pub fn cluster(&self) -> &ClusterState {
        &self.cluster
    }

    /// The configuration in force.
    pub fn config(&self) -> &SchedulerConfig {
        &self.policy.config
    }

    /// Jobs waiting in the queue (not held, parked or blocked).
    pub fn queued(&self) -> usize {
        self.queue.order.len()
    }

    /// Accounts whose own holdings (borrowed capacity aside) are over one of their limits, or
    /// that lent more than they left unused: always empty unless something is wrong; for
    /// tests and diagnostics.
    pub fn over_quota(&self) -> Vec<String> {
        let tree = &self.policy.tree;
        (1..tree.accounts.len() as u32)
            .filter(|&a| !self.quotas.within_limits(tree, a) || !self.quotas.lends_within(tree, a))
            .map(|a| tree.name(a).to_owned())
            .collect()
    }

    /// Jobs known (waiting in any way, or running).
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Where a job stands.
    pub fn job(&self, id: JobId) -> Option<JobStatus> {
        let job = self.jobs.get(&id)?;
        let run = job.run();
        Some(JobStatus {
            running: run.is_some(),
            priority: job.priority,
            reason: match &job.at {
                Where::Running(_) => None,
                Where::Held => Some(PendingReason::Held),
                Where::Dependency => Some(PendingReason::Dependency),
                _ => job.reported.map(|(r, _)| r),
            },
            expected: self.expected(id),
            account: self.policy.tree.name(job.account).to_owned(),
            qos: self.policy.qos(job.qos).map(|q| q.name.clone()).unwrap_or_default(),
            preemptable: run.is_some_and(|r| !r.borrowed.is_empty()),
        })
    }

    fn expected(&self, id: JobId) -> Option<ExpectedStart> {
        let r = self.reservations.get(&id)?;
        let nodes = r
            .nodes
            .iter()
            .filter_map(|(n, ..)| self.cluster.nodes().get(*n).map(|n| n.name().to_owned()))
            .collect();
        Some(ExpectedStart { at: r.start, nodes })
    }

    /// A job's priority, factor by factor; its `total` is the job's priority.
    pub fn explain(&self, id: JobId) -> Option<PriorityExplanation> {
        let job = self.jobs.get(&id)?;
        Some(PriorityExplanation::new(&job.factors, &self.policy.config.weights))
    }

    /// Usage of every user-in-account, decayed to `now`, for the controller to store.
    pub fn usage(&self, now: Timestamp) -> Vec<UsageRecord> {
        let h = self.policy.config.half_life;
        let mut charged = self.usage.clone();
        self.running_charges(now, &mut charged);
        self.policy
            .tree
            .assocs
            .iter()
            .zip(&charged)
            .map(|(a, u)| UsageRecord {
                account: self.policy.tree.name(a.account).to_owned(),
                user: a.user.clone(),
                value: u.at(now, h),
                at: now,
            })
            .collect()
    }

    /// Puts stored usage back (after a restart or a reload); records of accounts that no
    /// longer exist are dropped. The records count running jobs' charges up to their time
    /// ([`Scheduler::usage`]): running jobs, whether recovered before or after
    /// ([`Scheduler::recover`]), are charged from then on only.
    pub fn restore_usage(&mut self, records: &[UsageRecord]) {
        if let Some(at) = records.iter().map(|r| r.at).max() {
            self.usage_restored_at = self.usage_restored_at.max(at);
            // Jobs already running here (recovered before the usage came back) too.
            for job in self.jobs.values_mut() {
                if let Where::Running(run) = &mut job.at {
                    run.charged = run.charged.max(at);
                }
            }
        }
        for r in records {
            let Some(account) = self.policy.tree.account(&r.account) else { continue };
            let assoc = self.policy.tree.assoc(account, &r.user) as usize;
            if self.usage.len() <= assoc {
                self.usage.resize(assoc + 1, UsageValue::default());
            }
            if let Some(u) = self.usage.get_mut(assoc) {
                *u = UsageValue { value: r.value, at: r.at };
            }
        }
        self.next_full = None;
    }

    /// Usage with running jobs' charges up to `now` added (without changing the books).
    fn running_charges(&self, now: Timestamp, usage: &mut Vec<UsageValue>) {
        let h = self.policy.config.half_life;
        for job in self.jobs.values() {
            let Some(run) = job.run() else { continue };
            let i = job.assoc as usize;
            if usage.len() <= i {
                usage.resize(i + 1, UsageValue::default());
            }
            if let Some(u) = usage.get_mut(i) {
                let charge = crate::policy::accounts::accrue(run.rate, run.charged, now, h);
                u.add(charge, now, h);
            }
        }
    }

    /// `gangway share`: every account and user with their shares, usage and factor.
    pub fn shares(&self, now: Timestamp) -> Vec<ShareRow> {
        let h = self.policy.config.half_life;
        let tree = &self.policy.tree;
        let mut usage = self.usage.clone();
        self.running_charges(now, &mut usage);
        let values: Vec<f64> =
            (0..tree.assocs.len()).map(|i| usage.get(i).map_or(0.0, |u| u.at(now, h))).collect();
        let total: f64 = values.iter().sum();
        let norm = |v: f64| if total > 0.0 { v / total } else { 0.0 };
        let account_shares = tree.account_shares();
        let assoc_shares = tree.assoc_shares(&account_shares);
        let mut rows = Vec::new();
        for (id, acc) in tree.accounts.iter().enumerate().skip(1) {
            let id = id as u32;
            let used: f64 = tree
                .assocs
                .iter()
                .zip(&values)
                .filter(|(a, _)| tree.is_under(a.account, id))
                .map(|(_, v)| v)
                .sum();
            rows.push(ShareRow {
                account: acc.name.clone(),
                user: None,
                share: account_shares.get(id as usize).copied().unwrap_or(0.0),
                usage: used,
                usage_share: norm(used),
                factor: None,
            });
            for (i, a) in tree.assocs.iter().enumerate().filter(|(_, a)| a.account == id) {
                let v = values.get(i).copied().unwrap_or(0.0);
                let share = assoc_shares.get(i).copied().unwrap_or(0.0);
                rows.push(ShareRow {
                    account: acc.name.clone(),
                    user: Some(a.user.clone()),
                    share,
                    usage: v,
                    usage_share: norm(v),
                    factor: Some(fair_share_factor(norm(v), share)),
                });
            }
        }
        rows
    }

    /// Replaces the policy (a reload): checked first, so a bad one changes nothing. Usage
    /// follows users by name; every job's account and QOS are looked up again (a job whose
    /// account or QOS vanished keeps running, and waits with `Unsatisfiable` if pending).
    pub fn reconfigure(
        &mut self,
        config: SchedulerConfig,
        now: Timestamp,
    ) -> Result<(), ConfigError> {
        let policy = Policy::new(config)?;
        let records = self.usage(now);
        let old = std::mem::replace(&mut self.policy, policy);
        self.usage.clear();
        // The records hold running jobs' charges up to now: from now on only, after this.
        self.restore_usage(&records);
        self.rebind_jobs(&old);
        self.invalidate();
        Ok(())
    }

    /// Everything derived from the policy or the health of nodes must be recomputed.
    fn invalidate(&mut self) {
        self.profile_epoch += 1;
        self.next_full = None;
        self.scan = None;
        self.stale = true;
        self.health_epoch += 1;
    }

    /// Records a job that was already running (after a controller restart): its grants are
    /// allocated and charged like a start, without a decision.
    pub fn recover(
        &mut self,
        job: NewJob,
        start: &JobStart,
        started: Timestamp,
    ) -> Result<(), SubmitError> {
        if start.job != job.id {
            let why = format!("the grants are job {}'s, not job {}'s", start.job, job.id);
            return Err(SubmitError::Rejected(Rejection::Recovery(why)));
        }
        let mut j = self.make_job(job, started)?;
        let p = self.partition_index(&j.request);
        let account = j.account;
        j.at = Where::Held;
        let id = j.id;
        self.jobs.insert(id, j);
        if let Err(e) = self.cluster.allocate(start) {
            self.jobs.remove(&id);
            return Err(SubmitError::Rejected(Rejection::Recovery(e.to_string())));
        }
        // Counted in, as a submission would be, so that starting counts it out again.
        self.quotas.count_queued(&self.policy.tree, account, true);
        self.record_start(id, p.unwrap_or(0), start, Vec::new(), false, started);
        // Restored usage already holds its charges up to when it was stored.
        let restored = self.usage_restored_at;
        if let Some(Where::Running(run)) = self.jobs.get_mut(&id).map(|j| &mut j.at) {
            run.charged = run.charged.max(restored);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
