//! The scheduler's books kept in step with the controller's jobs and nodes.
//!
//! The controller owns one [`Scheduler`] (priorities, backfill reservations, fair share,
//! quotas, preemption). Handlers change jobs and nodes and mark them (`touch_job`,
//! `sync_health`); before each pass `Cluster::reconcile` turns every marked job's change into
//! the scheduler's event (submitted, ended, cancelled, held, released, requeued), so no handler
//! has to know the scheduler's vocabulary and nothing is reported twice. A change of the
//! cluster's shape (a node registering with a new size) or a restart builds the books afresh
//! from the controller's state (`Cluster::rebuild_scheduler`), carrying fair-share usage over.

use std::sync::Arc;

use gangway_scheduler::{
    ClusterState, Event, NewJob, PartitionLimits, PendingReason, Scheduler, SchedulerConfig,
    Timestamp,
};
use gangway_topology::Topology;

use super::state::{Cluster, Job, JobState, health_of, job_start, placeholder_topology};
use crate::protocol::JobId;

impl Cluster {
    /// What the scheduler is told of a job (its account, QOS and nice as submitted).
    pub(super) fn new_job(&self, job: &Job) -> NewJob {
        let mut n = NewJob::new(job.id, job.request(), &job.user);
        n.account = job.sub.shape.account.clone();
        n.qos = job.sub.shape.qos.clone();
        n.nice = job.sub.shape.nice;
        n.requeue = job.sub.requeue;
        n.dependency = self.dependency_blocked(job);
        n.array = self.array_books(job);
        n.task_of = job.task.as_ref().map(|t| t.array);
        n
    }

    /// Whether the scheduler should have `job` in its queue: pending, past its `--begin`, and
    /// nothing of an earlier attempt is left on any node (see `handlers::release`). A job
    /// waiting for its begin time stays out, so it costs the passes nothing.
    pub(super) fn queueable(job: &Job, at: Timestamp) -> bool {
        job.state == JobState::Pending
            && job.releasing.is_empty()
            && job.sub.begin.is_none_or(|b| at.0 >= b)
    }

    /// Tells the scheduler what changed about every job marked since the last pass.
    pub(super) fn reconcile(&mut self, now: u64) {
        let at = Timestamp(now);
        for id in std::mem::take(&mut self.resync) {
            self.reconcile_job(id, at);
        }
    }

    fn reconcile_job(&mut self, id: JobId, at: Timestamp) {
        let known = self.sched.job(id);
        let Some(job) = self.jobs.get(&id) else {
            if known.is_some() {
                self.sched.handle(Event::Cancelled(id), at);
            }
            return;
        };
        match (job.state, known) {
            // Started by the scheduler's own decision: its books already say so.
            (JobState::Running, Some(s)) if s.running => {}
            // Running here but not in the books: its grants could not be booked at a rebuild
            // (logged then); its resources stay out of the books until it ends.
            (JobState::Running, _) => {}
            (_, Some(s)) if s.running => {
                // Ended, or requeued: the scheduler frees its resources; a next attempt is
                // queued afresh once every node confirmed the last one gone.
                self.sched.handle(Event::Ended { job: id, requeue: false }, at);
                self.usage_due = true;
                self.enqueue_if_ready(id, at);
            }
            (_, Some(_)) if !Self::queueable(job, at) => {
                self.sched.handle(Event::Cancelled(id), at);
            }
            (_, Some(s)) => {
                let waits_there = s.reason == Some(PendingReason::Dependency);
                match (self.dependency_blocked(job), waits_there) {
                    (false, true) => self.sched.handle(Event::DependenciesMet(id), at),
                    (true, false) => {
                        // Given a dependency while queued (`scontrol update`): out of the
                        // passes until it is met.
                        self.sched.handle(Event::Cancelled(id), at);
                        self.enqueue_if_ready(id, at);
                        return;
                    }
                    _ => {}
                }
                let reason = self.sched.job(id).and_then(|s| s.reason);
                let held_there = reason == Some(PendingReason::Held);
                // A job waiting for its dependency sits apart from holds in the books; held
                // meanwhile, it is held there once its dependency is met (just above).
                let (held, waiting) = (job.held, self.dependency_blocked(job));
                if held && !held_there && !waiting {
                    self.sched.handle(Event::Hold(id), at);
                } else if !held && held_there {
                    self.sched.handle(Event::Release(id), at);
                }
            }
            (_, None) => self.enqueue_if_ready(id, at),
        }
    }

    /// Queues a pending job in the scheduler; a job it refuses (a node it needs was removed
    /// from the configuration, its account went away) waits with the refusal as its reason.
    fn enqueue_if_ready(&mut self, id: JobId, at: Timestamp) {
        let Some(job) = self.jobs.get(&id) else { return };
        if !Self::queueable(job, at) {
            return;
        }
        let new = self.new_job(job);
        if let Err(e) = self.sched.submit(new, at)
            && let Some(job) = self.jobs.get_mut(&id)
        {
            job.reason = format!("Unsatisfiable: {e}");
        }
        self.needs_schedule = true;
    }

    /// Builds the scheduler afresh from the controller's state: every node with its model and
    /// health, the partitions, the running jobs' allocations, the pending jobs; fair-share
    /// usage is carried over from the previous books.
    pub(super) fn rebuild_scheduler(&mut self, now: u64) {
        let at = Timestamp(now);
        self.sched = self.fresh_books(at);
        let active: Vec<JobId> = self.active.iter().copied().collect();
        for id in active {
            self.enqueue_if_ready(id, at);
        }
        self.resync.clear();
        self.needs_schedule = true;
    }

    /// New books from the controller's state (nodes, partitions, running jobs' allocations,
    /// fair-share usage), without the pending jobs: for a rebuild, and for the copy a
    /// `--test-only` submission is tried on.
    pub(super) fn fresh_books(&self, at: Timestamp) -> Scheduler {
        let mut state = ClusterState::new();
        for rec in self.nodes.values() {
            let model = rec
                .topology
                .as_deref()
                .and_then(|t| Topology::from_json(t).ok())
                .map(|t| Arc::new(self.config.named_gpu_types(t)))
                .unwrap_or_else(placeholder_topology);
            // Names come from the configuration, so they are unique.
            let _ = state.add_node(rec.name.clone(), model);
            let _ = state.set_health(&rec.name, health_of(rec), rec.reason.clone());
        }
        for p in &self.config.partitions {
            let names: Vec<&str> = p.nodes.iter().map(String::as_str).collect();
            let mut limits = PartitionLimits::new();
            if let Some(d) = p.default_time {
                limits = limits.default_time(d);
            }
            if let Some(m) = p.max_time {
                limits = limits.max_time(m);
            }
            if p.default {
                limits = limits.default_partition();
            }
            let _ = state.add_partition(p.name.clone(), &names, limits);
        }
        let usage = self.sched.usage(at);
        let mut sched = match Scheduler::new(state.clone(), self.sched_config.clone()) {
            Ok(s) => s,
            // The configuration was checked when it was adopted; an empty policy always builds.
            Err(_) => Scheduler::new(state, SchedulerConfig::default())
                .unwrap_or_else(|e| panic!("the default scheduling policy always builds: {e}")),
        };
        sched.restore_usage(&usage);
        for id in &self.active {
            let job = &self.jobs[id];
            if job.state != JobState::Running {
                continue;
            }
            let started = Timestamp(job.start_time.unwrap_or(at.0));
            if let Some(start) = job_start(job, sched.cluster()) {
                let new = self.new_job(job);
                if let Err(e) = sched.recover(new, &start, started) {
                    tracing::warn!(job = id, error = %e, "a running job could not be booked");
                }
            }
        }
        sched
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::scenario::{alice, batch, cluster_with, conn_of, replies_to, starts};
    use crate::controller::state::{Caller, Cluster, JobState, Mono};
    use crate::exit_code;
    use crate::protocol::{FromAgent, JobId, Reply};

    const ACCOUNTS: &str = r#"
[[account]]
name = "physics"
users = ["alice"]
[account.limits]
cpus = 2

[[account]]
name = "chemistry"
"#;

    fn bob() -> Caller {
        Caller { uid: 1001, gid: 1001, user: "bob".into(), admin: false }
    }

    fn refusal(c: &mut Cluster, who: &Caller, account: Option<&str>, qos: Option<&str>) -> Reply {
        let mut sub = batch(1, 1);
        sub.shape.account = account.map(String::from);
        sub.shape.qos = qos.map(String::from);
        let fx = c.submit(30, who, sub, 0);
        replies_to(&fx, 30).first().copied().cloned().expect("a reply")
    }

    fn end(c: &mut Cluster, job: JobId, t: u64) {
        let node = c.job(job).expect("job").nodes()[0].clone();
        let ended = FromAgent::JobEnded { job, attempt: 1, exit_code: 0, message: None };
        c.from_agent(conn_of(&node), &node, ended, t, Mono(t));
    }

    #[test]
    fn submissions_name_the_account_or_qos_they_cannot_use_and_what_to_do() {
        let mut c = cluster_with(ACCOUNTS);
        let text = |r: Reply| match r {
            Reply::Error { code, message } => (code, message),
            other => panic!("accepted: {other:?}"),
        };
        let (code, m) = text(refusal(&mut c, &alice(), Some("biology"), None));
        assert_eq!(code, exit_code::USAGE);
        assert!(m.contains("unknown account 'biology'") && m.contains("administrator"), "{m}");
        let (code, m) = text(refusal(&mut c, &alice(), Some("chemistry"), None));
        assert_eq!(code, exit_code::PERMISSION_DENIED);
        assert!(m.contains("'alice' may not use account 'chemistry'"), "{m}");
        let (code, m) = text(refusal(&mut c, &bob(), None, None));
        assert_eq!(code, exit_code::PERMISSION_DENIED);
        assert!(m.contains("'bob' belongs to no account"), "{m}");
        let (_, m) = text(refusal(&mut c, &alice(), None, Some("turbo")));
        assert!(m.contains("unknown QOS 'turbo'") && m.contains("--qos"), "{m}");
        // Listed in physics without a [[user]] entry: physics is alice's default.
        assert!(matches!(refusal(&mut c, &alice(), None, None), Reply::Submitted { .. }));
        let info = c.job_info(1).expect("job");
        assert_eq!(info.sched.expect("scheduled").account, "physics");
    }

    #[test]
    fn an_account_over_its_cpu_limit_waits_with_the_reason_and_starts_when_it_frees() {
        let mut c = cluster_with(ACCOUNTS);
        c.submit(1, &alice(), batch(1, 2), 0);
        c.submit(2, &alice(), batch(1, 2), 0);
        assert_eq!(starts(&c.schedule(0)).len(), 1, "physics may hold 2 CPUs");
        assert_eq!(c.job_info(2).expect("job").reason, "AccountCpuLimit");
        end(&mut c, 1, 5_000);
        let s = starts(&c.schedule(5_000));
        assert_eq!(s.iter().map(|(_, j, _)| *j).collect::<Vec<_>>(), [2]);
        // The usage of the job that ended is stored with the next commit.
        let usage = c.take_dirty().usage;
        let alice_usage = usage.iter().find(|u| u.user == "alice").expect("alice's usage");
        assert_eq!(alice_usage.account, "physics");
        assert!(alice_usage.value > 0.0, "{usage:?}");
        assert_eq!(c.job(1).expect("job").state, JobState::Completed);
    }

    #[test]
    fn stored_usage_comes_back_after_a_restart_and_lowers_the_fair_share_factor() {
        let mut c = cluster_with(ACCOUNTS);
        c.submit(1, &alice(), batch(1, 2), 0);
        c.schedule(0);
        end(&mut c, 1, 3_600_000);
        c.schedule(3_600_000);
        let dirty = c.take_dirty();
        assert!(!dirty.usage.is_empty());
        let mut again = Cluster::new(
            crate::controller::scenario::config_with(ACCOUNTS),
            0,
            dirty.nodes,
            dirty.jobs,
            dirty.next_id,
            3_600_000,
        );
        again.restore_usage(&dirty.usage);
        let rows = again.shares(3_600_000);
        let alice_row = rows.iter().find(|r| r.user.as_deref() == Some("alice")).expect("row");
        assert!(alice_row.usage > 0.0 && alice_row.factor.expect("factor") < 1.0, "{rows:?}");
    }
}
