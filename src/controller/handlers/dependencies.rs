//! `--dependency` in the controller: refused at submission when it names an unknown job or
//! would close a cycle; indexed (`dependencies::Dependents`); looked at again only when a job
//! it names starts or ends, a namesake of a `singleton` ends, or a timed `after` falls due;
//! decided by the pure `dependencies::evaluate`. A waiting job is in the scheduler's books as
//! dependency-blocked (it costs a pass nothing) with the reason `Dependency`; once met the
//! books hear `DependenciesMet` (`books::reconcile`). One that can never be met waits with
//! `DependencyNeverSatisfied`, as in Slurm, or is cancelled under `--kill-on-invalid-dep`.
//!
//! Arrays: `Known::observe` answers `7_3` with that task (pending, running, ended, or
//! cancelled before it started) and `7` with the array's summary from its aggregate
//! (`Cluster::array_progress`: counts, no per-task list). Waking follows what can change an
//! answer: a task's start or end wakes those naming that task and those waiting task by task
//! (`aftercorr`); those naming the whole array wake only at its first task that ends not ok
//! (`arrays_failed`) and when the array's own record changes state (`settle_array`: every
//! task started, every task over), never at each of 100000 task ends.
//!
//! `aftercorr:A` on an array B: B stays one record in the scheduler, dependency-blocked
//! while none of its pending indexes may start (B_i may once A_i ended ok, or A has no index
//! i). When some may, B is queued (`corr_ready`) with its dependency kept, and each start
//! takes the lowest index free to start (`next_task_index`), not the lowest pending; when
//! none is left free, B is blocked again until a task of A ends. Every task end of A wakes
//! B, and looking at B walks its pending indexes until one is free: O(pending) at worst,
//! a cost only `aftercorr` pays. A B whose every pending index can never start waits
//! `DependencyNeverSatisfied`; under `--kill-on-invalid-dep` each index that can never start
//! is cancelled instead, as Slurm cancels that task (the others still run, and B ends once
//! its last task does). A task itself starts with its dependency met (its record carries
//! none).

use crate::controller::dependencies::{
    ArraySummary, Lookup, Observation, Observed, Subject, Verdict, creates_cycle, evaluate,
};
use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, Job, JobState};
use crate::protocol::dependency::{Condition, Dependency, JobRef};
use crate::protocol::{JobId, Reply};

/// Slurm's reason for a job waiting on other jobs.
pub const DEPENDENCY: &str = "Dependency";
/// Slurm's reason for a job whose dependency can never be satisfied.
pub const NEVER_SATISFIED: &str = "DependencyNeverSatisfied";

/// The controller's jobs as the pure evaluation sees them.
struct Known<'a>(&'a Cluster);

/// What a job is now, for the jobs that name it.
fn observed(job: &Job) -> Observed {
    match job.state {
        JobState::Pending => Observed::Pending,
        JobState::Running => Observed::Running { started: job.start_time.unwrap_or(0) },
        state => Observed::Ended {
            ok: state == JobState::Completed && job.exit_code.unwrap_or(0) == 0,
            state: state.name(),
            started: job.start_time,
            ended: job.end_time.unwrap_or(0),
        },
    }
}

impl Lookup for Known<'_> {
    fn observe(&self, r: JobRef) -> Option<Observation> {
        let job = self.0.jobs.get(&r.job)?;
        let Some(rec) = &job.array else {
            return r.task.is_none().then(|| Observation::Job(observed(job)));
        };
        let Some(index) = r.task else {
            return self.0.array_summary(r.job).map(Observation::Array);
        };
        let task = self.0.array_tasks.get(&r.job).and_then(|t| t.get(&index));
        if let Some(task) = task.and_then(|id| self.0.jobs.get(id)) {
            return Some(Observation::Job(observed(task)));
        }
        let o = if rec.pending.contains(index) {
            Observed::Pending
        } else if rec.cancelled.contains(index) {
            let ended = job.end_time.unwrap_or(0);
            Observed::Ended { ok: false, state: "CANCELLED", started: None, ended }
        } else {
            return None;
        };
        Some(Observation::Job(o))
    }

    fn singleton_blocker(&self, s: &Subject<'_>) -> Option<JobId> {
        // Active jobs only: a walk over the pending and running ones, made only when a
        // singleton's namesake starts or ends.
        self.0.active.iter().copied().find(|id| {
            let j = &self.0.jobs[id];
            *id != s.id
                && j.uid == s.uid
                && j.sub.name == s.name
                && (j.state == JobState::Running || (j.state == JobState::Pending && *id < s.id))
        })
    }
}

impl Cluster {
    /// Checks a dependency for job `id` (new, or `scontrol update`): every job it names
    /// exists, and none of them waits, directly or through others, for `id`.
    pub(super) fn check_dependency(&self, id: JobId, dep: &Dependency) -> Result<(), String> {
        for r in dep.jobs() {
            if r.job == id {
                return Err(format!("--dependency={dep}: job {id} cannot wait for itself"));
            }
            if Known(self).observe(r).is_none() {
                return Err(format!(
                    "--dependency={dep}: job {r} does not exist (see `gangway queue` and `gangway history`)"
                ));
            }
        }
        let waits_on = |j: JobId| {
            self.jobs
                .get(&j)
                .and_then(|job| job.waiting_on.as_ref())
                .map(|d| d.jobs().into_iter().map(|r| r.job).collect())
                .unwrap_or_default()
        };
        if let Some(path) = creates_cycle(id, dep, waits_on) {
            let path: Vec<String> = path.iter().map(JobId::to_string).collect();
            return Err(format!(
                "--dependency={dep}: jobs would wait for each other in a circle ({})",
                path.join(" → ")
            ));
        }
        Ok(())
    }

    /// A job that waits for others from now on: indexed, and looked at in the next pass.
    pub(super) fn wait_for_dependency(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else { return };
        if let Some(dep) = &job.waiting_on {
            self.dependents.add(id, job.uid, &job.sub.name, dep);
            self.dependencies_due.insert(id);
        }
    }

    /// Job `id` started or ended: the jobs whose dependency names it are looked at again
    /// (an ended one that waited itself leaves the index). A task of an array also wakes
    /// those naming that task, those waiting task by task, and, if it is the array's first
    /// task to end not ok, those naming the whole array.
    pub(super) fn wake_dependents(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else { return };
        if job.state.is_final()
            && let Some(dep) = &job.waiting_on
        {
            self.dependents.remove(id, job.uid, &job.sub.name, dep);
        }
        let mut woken = self.dependents.woken_by(id, job.uid, &job.sub.name);
        if let Some(t) = job.task {
            woken.extend(self.dependents.woken_by_task(t.array, t.index));
            let not_ok = matches!(observed(job), Observed::Ended { ok: false, .. });
            if not_ok {
                woken.extend(self.first_failure(t.array));
            }
        }
        self.dependencies_due.extend(woken);
    }

    /// Those waiting for the whole of `array`, if this is the first of its tasks to end not ok.
    fn first_failure(&mut self, array: JobId) -> Vec<JobId> {
        if !self.dependents.waits_for_whole(array) || !self.arrays_failed.insert(array) {
            return Vec::new();
        }
        let Some(a) = self.jobs.get(&array) else { return Vec::new() };
        self.dependents.woken_by(array, a.uid, &a.sub.name)
    }

    /// Task `index` of `array` was cancelled before it started.
    pub(super) fn wake_for_cancelled_task(&mut self, array: JobId, index: u32) {
        let mut woken = self.dependents.woken_by_task(array, index);
        woken.extend(self.first_failure(array));
        self.dependencies_due.extend(woken);
    }

    /// The whole summary of an array, for those naming its id.
    pub(super) fn array_summary(&self, array: JobId) -> Option<ArraySummary> {
        let job = self.jobs.get(&array)?;
        let p = self.array_progress(array)?;
        let not_ok = if p.failed > 0 {
            Some("FAILED")
        } else if p.cancelled > 0 {
            Some("CANCELLED")
        } else {
            None
        };
        // The record starts (`settle_array`) when its last pending task does.
        let all_started = (p.pending == 0).then(|| job.start_time.or(job.end_time).unwrap_or(0));
        Some(ArraySummary { all_started, all_ended: p.is_complete(), not_ok })
    }

    /// Whether the scheduler keeps `job` out of its passes for its dependency: it waits, and
    /// is not an `aftercorr` array with a task free to start.
    pub(crate) fn dependency_blocked(&self, job: &Job) -> bool {
        job.waiting_on.is_some() && !self.corr_ready.contains(&job.id)
    }

    /// The index the next task of `array` starts with: its lowest pending one, or, for an
    /// array waiting `aftercorr`, the lowest whose dependency holds for that index.
    pub(super) fn next_task_index(&self, array: JobId, now: u64) -> Option<u32> {
        let job = self.jobs.get(&array)?;
        let rec = job.array.as_ref()?;
        let Some(dep) = &job.waiting_on else { return rec.pending.min() };
        rec.pending.iter().find(|i| {
            let subject = Subject { id: array, uid: job.uid, name: &job.sub.name, task: Some(*i) };
            evaluate(dep, &subject, &Known(self), now) == Verdict::Satisfied
        })
    }

    /// After a task of an `aftercorr` array started (or could not): blocked again if no
    /// pending index is free to start.
    pub(super) fn recheck_corr(&mut self, array: JobId, now: u64) {
        if self.corr_ready.contains(&array) && self.next_task_index(array, now).is_none() {
            self.corr_ready.remove(&array);
            if let Some(j) = self.jobs.get_mut(&array) {
                j.reason = DEPENDENCY.into();
            }
            self.touch_job(array);
            // Looked at again in the next pass: its indexes left may never be free.
            self.dependencies_due.insert(array);
        }
    }

    /// The timed `after:ID+MIN` that fell due by `now` (the tick).
    pub(super) fn timed_dependencies(&mut self, now: u64) {
        let due = self.dependents.due(now);
        if !due.is_empty() {
            self.dependencies_due.extend(due);
            self.needs_schedule = true;
        }
    }

    /// Evaluates every job marked since the last pass. A job met goes to the scheduler's
    /// queue; one that can never be met waits with `DependencyNeverSatisfied`, or is
    /// cancelled under `--kill-on-invalid-dep` (whose end may wake others in turn).
    pub(super) fn settle_dependencies(&mut self, now: u64) -> Effects {
        let mut fx = Effects::new();
        while let Some(id) = self.dependencies_due.pop_first() {
            fx.append(self.settle_dependency(id, now));
        }
        fx
    }

    fn settle_dependency(&mut self, id: JobId, now: u64) -> Effects {
        let Some(job) = self.jobs.get(&id) else { return Effects::new() };
        let Some(dep) = job.waiting_on.clone().filter(|_| job.state == JobState::Pending) else {
            return Effects::new();
        };
        if job.array.is_some() && waits_task_by_task(&dep) {
            return self.settle_corr(id, &dep, now);
        }
        let subject = Subject { id, uid: job.uid, name: &job.sub.name, task: None };
        let verdict = evaluate(&dep, &subject, &Known(self), now);
        let (uid, name) = (job.uid, job.sub.name.clone());
        let kill = job.sub.kill_on_invalid_dep.unwrap_or(self.config.kill_on_invalid_dep);
        match verdict {
            Verdict::Satisfied => {
                self.dependents.remove(id, uid, &name, &dep);
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.waiting_on = None;
                    j.reason = "Priority".into();
                }
                self.event(now, Some(id), None, "dependency", format!("{dep} satisfied"));
                // The books hear `DependenciesMet` and the job is queued.
                self.touch_job(id);
                self.needs_schedule = true;
                Effects::new()
            }
            Verdict::Waiting { remaining, recheck_at } => {
                if let Some(at) = recheck_at {
                    self.dependents.recheck_at(id, at);
                }
                if let Some(j) = self.jobs.get_mut(&id)
                    && remaining != dep
                {
                    // What was met stays met (an `after` whose job is requeued later).
                    j.waiting_on = Some(remaining);
                    self.dirty_jobs.insert(id);
                }
                self.dependency_reason(id, DEPENDENCY)
            }
            Verdict::Never { why } => {
                let already = self.jobs.get(&id).is_some_and(|j| j.reason == NEVER_SATISFIED);
                if !already {
                    let detail = format!("{dep} can never be satisfied: {why}");
                    self.event(now, Some(id), None, "dependency", detail);
                }
                if kill {
                    return self.finish(id, JobState::Cancelled, NEVER_SATISFIED, None, now);
                }
                self.dependency_reason(id, NEVER_SATISFIED)
            }
        }
    }

    /// An array waiting `aftercorr`: queued while some pending index may start, its
    /// dependency kept for the indexes after it. Under `--kill-on-invalid-dep` the indexes
    /// that can never start are cancelled, each as `scancel` of a pending task would.
    fn settle_corr(&mut self, id: JobId, dep: &Dependency, now: u64) -> Effects {
        let Some(job) = self.jobs.get(&id) else { return Effects::new() };
        let kill = job.sub.kill_on_invalid_dep.unwrap_or(self.config.kill_on_invalid_dep);
        if self.corr_ready.contains(&id) && !kill {
            return Effects::new();
        }
        let Some(rec) = job.array.as_ref() else { return Effects::new() };
        let (mut ready, mut open, mut recheck) = (false, false, None::<u64>);
        let mut never = Vec::new();
        for i in rec.pending.iter() {
            let subject = Subject { id, uid: job.uid, name: &job.sub.name, task: Some(i) };
            match evaluate(dep, &subject, &Known(self), now) {
                Verdict::Satisfied => {
                    ready = true;
                    // Under the flag every index is looked at: those that can never start go.
                    if !kill {
                        break;
                    }
                }
                Verdict::Waiting { recheck_at, .. } => {
                    open = true;
                    recheck = match (recheck, recheck_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Verdict::Never { .. } => never.push(i),
            }
        }
        let mut fx = Effects::new();
        if kill && !never.is_empty() {
            fx.append(self.cancel_never_tasks(id, dep, &never, now));
            if self
                .jobs
                .get(&id)
                .and_then(|j| j.array.as_ref())
                .is_none_or(|r| r.pending.is_empty())
            {
                return fx;
            }
        }
        if self.corr_ready.contains(&id) {
            return fx;
        }
        if ready {
            self.corr_ready.insert(id);
            if let Some(j) = self.jobs.get_mut(&id) {
                j.reason = "Priority".into();
            }
            self.touch_job(id);
            self.needs_schedule = true;
            return fx;
        }
        if let Some(at) = recheck {
            self.dependents.recheck_at(id, at);
        }
        if open {
            fx.append(self.dependency_reason(id, DEPENDENCY));
            return fx;
        }
        let already = self.jobs.get(&id).is_some_and(|j| j.reason == NEVER_SATISFIED);
        if !already {
            let detail = format!("{dep}: no pending task of the array can ever start");
            self.event(now, Some(id), None, "dependency", detail);
        }
        fx.append(self.dependency_reason(id, NEVER_SATISFIED));
        fx
    }

    /// `--kill-on-invalid-dep` on an `aftercorr` array: the pending `indexes` that can never
    /// start are cancelled (they show as cancelled before they started), those waiting for
    /// them are woken, and the array settles (it ends once nothing of it is left to run).
    fn cancel_never_tasks(
        &mut self,
        id: JobId,
        dep: &Dependency,
        indexes: &[u32],
        now: u64,
    ) -> Effects {
        let Some(job) = self.jobs.get_mut(&id) else { return Effects::new() };
        let (uid, name) = (job.uid, job.sub.name.clone());
        let Some(rec) = job.array.as_mut() else { return Effects::new() };
        for i in indexes {
            if rec.pending.remove(*i) {
                rec.cancelled.insert(*i);
            }
        }
        let none_left = rec.pending.is_empty();
        self.rebook_array(id, now);
        self.touch_job(id);
        for i in indexes {
            self.wake_for_cancelled_task(id, *i);
        }
        let list = crate::protocol::array::IndexSet::from_indexes(indexes.to_vec());
        let detail = format!("tasks {list} cancelled: {dep} can never be satisfied for them");
        self.event(now, Some(id), None, "dependency", detail);
        if none_left {
            // Nothing of it waits any more: it leaves the index of waiting jobs.
            self.dependents.remove(id, uid, &name, dep);
            self.corr_ready.remove(&id);
        }
        self.settle_array(id, now)
    }

    /// Gives a waiting job its reason; a client holding it (alloc, run) is told when it changes,
    /// as the passes tell it of other reasons.
    fn dependency_reason(&mut self, id: JobId, reason: &str) -> Effects {
        let mut fx = Effects::new();
        let Some(j) = self.jobs.get_mut(&id) else { return fx };
        if j.reason == reason {
            return fx;
        }
        j.reason = reason.into();
        if let Some(conn) = self.holders.get(&id).copied() {
            let position = self.position(id).unwrap_or(1);
            fx.to_client(conn, Reply::Waiting { id, position, reason: reason.into() });
        }
        fx
    }

    /// After a restart: the index rebuilt from the pending jobs that still wait, each looked
    /// at again in the first pass.
    pub(super) fn index_dependencies(&mut self) {
        let waiting: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| {
                let j = &self.jobs[id];
                j.state == JobState::Pending && j.waiting_on.is_some()
            })
            .copied()
            .collect();
        for id in waiting {
            self.wait_for_dependency(id);
        }
    }

    /// What `show job` prints after `Dependency=`: what is not met yet, as Slurm marks it.
    pub(crate) fn dependency_text(job: &Job) -> Option<String> {
        let dep = job
            .waiting_on
            .as_ref()
            .filter(|_| !job.state.is_final() || job.reason == NEVER_SATISFIED)?;
        let mark = if job.reason == NEVER_SATISFIED { "failed" } else { "unfulfilled" };
        Some(format!("{dep}({mark})"))
    }
}

/// Whether `dep` is decided index by index (`aftercorr` naming a whole array).
fn waits_task_by_task(dep: &Dependency) -> bool {
    dep.conditions.iter().any(|c| matches!(c, Condition::AfterCorr { job } if job.task.is_none()))
}

#[cfg(test)]
mod tests {
    use crate::controller::scenario::{alice, array, batch, cluster, replies_to, root, starts};
    use crate::controller::state::{Cluster, JobState, Mono};
    use crate::protocol::{FromAgent, JobId, JobUpdate, Reply, Submission};

    fn with_dep(dep: &str) -> Submission {
        let mut sub = batch(1, 1);
        sub.dependency = Some(dep.parse().expect("dependency"));
        sub
    }

    fn end(c: &mut Cluster, job: JobId, exit_code: i32, t: u64) {
        let node = c.job(job).expect("job").nodes()[0].clone();
        let conn = 100 + node[1..].parse::<u64>().expect("n<i>");
        let ended = FromAgent::JobEnded { job, attempt: 1, exit_code, message: None };
        c.from_agent(conn, &node, ended, t, Mono(t));
    }

    fn started(c: &mut Cluster, t: u64) -> Vec<JobId> {
        starts(&c.schedule(t)).into_iter().map(|s| s.1).collect()
    }

    fn refusal(c: &mut Cluster, sub: Submission) -> String {
        let fx = c.submit(40, &root(), sub, 0);
        match replies_to(&fx, 40).first() {
            Some(Reply::Error { message, .. }) => message.clone(),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn afterok_waits_out_of_the_passes_then_starts_when_the_job_succeeds() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        c.submit(2, &root(), with_dep("afterok:1"), 0);
        c.submit(3, &root(), with_dep("afternotok:1"), 0);
        assert_eq!(started(&mut c, 0), [1], "there is room, but 2 and 3 wait for 1");
        assert_eq!(c.job(2).expect("job").reason, "Dependency");
        assert_eq!(c.job_info(2).expect("job").reason, "Dependency");
        end(&mut c, 1, 0, 5_000);
        assert_eq!(started(&mut c, 5_000), [2]);
        let three = c.job(3).expect("job");
        assert_eq!(
            (three.state, three.reason.as_str()),
            (JobState::Pending, "DependencyNeverSatisfied")
        );
        // It stays so: nothing more starts, and it can still be cancelled.
        end(&mut c, 2, 0, 6_000);
        assert!(started(&mut c, 6_000).is_empty());
        assert_eq!(c.job(3).expect("job").state, JobState::Pending);
    }

    #[test]
    fn an_allocation_waiting_for_a_job_is_told_why_then_granted() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let mut sub = crate::controller::scenario::alloc(1, 1);
        sub.dependency = Some("afterany:1".parse().expect("dependency"));
        c.submit(7, &root(), sub, 0);
        let fx = c.schedule(0);
        assert!(
            matches!(&replies_to(&fx, 7)[..], [Reply::Waiting { id: 2, reason, .. }] if reason == "Dependency"),
            "{fx:?}"
        );
        end(&mut c, 1, 2, 1_000);
        let fx = c.schedule(1_000);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Granted(_)]), "{fx:?}");
    }

    #[test]
    fn kill_on_invalid_dep_cancels_and_wakes_what_waited_for_it() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let mut sub = with_dep("afternotok:1");
        sub.kill_on_invalid_dep = Some(true);
        c.submit(2, &root(), sub, 0);
        c.submit(3, &root(), with_dep("afterany:2"), 0);
        c.submit(4, &root(), with_dep("afterok:2"), 0);
        assert_eq!(started(&mut c, 0), [1]);
        end(&mut c, 1, 0, 1_000);
        assert_eq!(started(&mut c, 1_000), [3], "2 is cancelled: afterany holds, afterok never");
        let two = c.job(2).expect("job");
        assert_eq!(
            (two.state, two.reason.as_str()),
            (JobState::Cancelled, "DependencyNeverSatisfied")
        );
        assert_eq!(c.job(4).expect("job").reason, "DependencyNeverSatisfied");
    }

    #[test]
    fn after_plus_minutes_waits_from_the_start() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        c.submit(2, &root(), with_dep("after:1+1"), 0);
        assert_eq!(started(&mut c, 0), [1]);
        for t in (1_000..60_000).step_by(1_000).chain([59_999]) {
            for i in 1..=3u64 {
                let hb = FromAgent::Heartbeat { load: 0.0, seq: 0 };
                c.from_agent(100 + i, &format!("n{i}"), hb, t, Mono(t));
            }
            c.tick(t, Mono(t));
            assert!(started(&mut c, t).is_empty(), "at {t}");
        }
        assert_eq!(c.job(2).expect("job").reason, "Dependency");
        c.tick(60_000, Mono(60_000));
        assert_eq!(started(&mut c, 60_000), [2]);
    }

    #[test]
    fn any_of_them_suffices_with_a_question_mark() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        c.submit(2, &root(), batch(1, 1), 0);
        c.submit(3, &root(), with_dep("afterok:1?afterok:2"), 0);
        assert_eq!(started(&mut c, 0), [1, 2]);
        end(&mut c, 2, 0, 1_000);
        assert_eq!(started(&mut c, 1_000), [3]);
    }

    #[test]
    fn singleton_runs_one_job_of_a_name_at_a_time_in_submission_order() {
        let mut c = cluster();
        for _ in 0..3 {
            let mut sub = with_dep("singleton");
            sub.name = "nightly".into();
            c.submit(1, &root(), sub, 0);
        }
        // Another user's namesake does not count.
        let mut other = with_dep("singleton");
        other.name = "nightly".into();
        c.submit(1, &alice(), other, 0);
        assert_eq!(started(&mut c, 0), [1, 4]);
        end(&mut c, 1, 1, 1_000);
        assert_eq!(started(&mut c, 1_000), [2], "however the namesake ended");
        end(&mut c, 2, 0, 2_000);
        assert_eq!(started(&mut c, 2_000), [3]);
    }

    #[test]
    fn unknown_jobs_and_cycles_are_refused() {
        let mut c = cluster();
        let m = refusal(&mut c, with_dep("afterok:42"));
        assert!(m.contains("job 42 does not exist"), "{m}");
        c.submit(1, &root(), batch(1, 1), 0);
        let m = refusal(&mut c, with_dep("afterok:1_3"));
        assert!(m.contains("job 1_3 does not exist"), "{m}");
        c.submit(1, &root(), with_dep("afterok:1"), 0);
        // Job 1 cannot be made to wait for 2, which waits for 1.
        let dep = "afterok:2".parse().expect("dependency");
        let m = c.check_dependency(1, &dep).unwrap_err();
        assert!(m.contains("circle (1 → 2 → 1)"), "{m}");
    }

    #[test]
    fn scontrol_update_sets_or_clears_a_dependency_but_never_a_circle() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        c.submit(2, &root(), with_dep("afterok:1"), 0);
        let mut held = batch(1, 1);
        held.hold = true;
        c.submit(3, &root(), held, 0);
        assert_eq!(started(&mut c, 0), [1]);
        let set = |d: &str| JobUpdate {
            dependency: Some(d.parse().expect("dependency")),
            ..JobUpdate::default()
        };
        // 3 waits for 2 now; 2 may then not wait for 3.
        assert!(
            replies_to(&c.update(9, &root(), 3, &set("afterany:2"), 1), 9)
                .iter()
                .all(|r| matches!(r, Reply::Ok { .. }))
        );
        let fx = c.update(9, &root(), 2, &set("afterok:3"), 1);
        let m = match replies_to(&fx, 9).first() {
            Some(Reply::Error { message, .. }) => message.clone(),
            other => panic!("accepted: {other:?}"),
        };
        assert!(m.contains("circle (2 → 3 → 2)"), "{m}");
        c.update(9, &root(), 2, &set(""), 2);
        end(&mut c, 1, 1, 3_000);
        assert_eq!(started(&mut c, 3_000), [2], "no longer waits for 1, which failed");
        assert_eq!(c.job(3).expect("job").reason, "Dependency");
    }

    #[test]
    fn renaming_the_namesake_ahead_lets_a_singleton_go() {
        let mut c = cluster();
        let mut ahead = batch(1, 1);
        ahead.name = "x".into();
        ahead.hold = true;
        c.submit(1, &root(), ahead, 0);
        let mut solo = with_dep("singleton");
        solo.name = "x".into();
        c.submit(2, &root(), solo, 0);
        assert!(started(&mut c, 0).is_empty(), "1 (pending, submitted before) keeps 2 waiting");
        let rename = JobUpdate { name: Some("y".into()), ..JobUpdate::default() };
        c.update(9, &root(), 1, &rename, 1);
        assert_eq!(started(&mut c, 1), [2]);
    }

    #[test]
    fn a_held_job_stays_held_once_its_dependency_is_met() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let mut sub = with_dep("afterok:1");
        sub.hold = true;
        c.submit(2, &root(), sub, 0);
        assert_eq!(started(&mut c, 0), [1]);
        end(&mut c, 1, 0, 1_000);
        assert!(started(&mut c, 1_000).is_empty());
        c.set_held(1, &root(), &[2], false, 2_000);
        assert_eq!(started(&mut c, 2_000), [2]);
    }

    #[test]
    fn a_dependency_on_a_job_long_over_is_decided_at_once() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        started(&mut c, 0);
        end(&mut c, 1, 3, 1_000);
        c.schedule(1_000);
        c.submit(2, &root(), with_dep("afternotok:1"), 2_000);
        c.submit(3, &root(), with_dep("afterok:1"), 2_000);
        assert_eq!(started(&mut c, 2_000), [2]);
        assert_eq!(c.job(3).expect("job").reason, "DependencyNeverSatisfied");
    }

    #[test]
    fn waiting_survives_a_restart() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        c.submit(2, &root(), with_dep("afterok:1"), 0);
        started(&mut c, 0);
        let dirty = c.take_dirty();
        let config = crate::controller::scenario::config();
        let mut again = Cluster::new(config, 0, dirty.nodes, dirty.jobs, dirty.next_id, 1_000);
        again.listening(Mono(1_000));
        for n in ["n1", "n2", "n3"] {
            let mut reg = crate::controller::scenario::registration(n);
            if again.job(1).expect("job").nodes()[0] == n {
                reg.running = vec![(1, 1)];
            }
            let conn = 100 + n[1..].parse::<u64>().expect("n<i>");
            again.from_agent(conn, n, FromAgent::Register(reg), 1_000, Mono(1_000));
        }
        assert!(started(&mut again, 1_000).is_empty(), "2 still waits");
        assert_eq!(again.job(2).expect("job").reason, "Dependency");
        end(&mut again, 1, 0, 2_000);
        assert_eq!(started(&mut again, 2_000), [2]);
    }

    fn task_of(c: &Cluster, job: JobId) -> Option<u32> {
        c.job(job).and_then(|j| j.task).map(|t| t.index)
    }

    #[test]
    fn an_array_id_waits_for_all_its_tasks_and_a_task_id_for_that_one() {
        let mut c = cluster();
        c.submit(1, &root(), array("1-3"), 0);
        assert_eq!(started(&mut c, 0), [2, 3, 4], "tasks 1, 2, 3");
        c.submit(2, &root(), with_dep("afterok:1"), 1);
        c.submit(2, &root(), with_dep("afterok:1_2"), 1);
        c.submit(2, &root(), with_dep("afternotok:1"), 1);
        c.submit(2, &root(), with_dep("after:1"), 1);
        assert_eq!(started(&mut c, 1), [8], "after:1 holds: every task started");
        end(&mut c, 2, 0, 10);
        // Task 1's end changes nothing for those naming the whole array: not woken.
        assert!(c.dependencies_due.is_empty(), "{:?}", c.dependencies_due);
        assert!(started(&mut c, 10).is_empty());
        end(&mut c, 3, 0, 20);
        assert_eq!(c.dependencies_due.iter().copied().collect::<Vec<_>>(), [6]);
        assert_eq!(started(&mut c, 20), [6], "afterok:1_2");
        end(&mut c, 4, 1, 30);
        assert_eq!(started(&mut c, 30), [7], "afternotok:1 once all ended, one failed");
        assert_eq!(c.job(5).expect("job").reason, "DependencyNeverSatisfied");
        assert_eq!(c.job(1).expect("array").state, JobState::Failed);
    }

    #[test]
    fn afterok_on_an_array_is_never_from_its_first_failed_task() {
        let mut c = cluster();
        c.submit(1, &root(), array("1-3"), 0);
        started(&mut c, 0);
        c.submit(2, &root(), with_dep("afterok:1"), 1);
        started(&mut c, 1);
        end(&mut c, 3, 2, 10);
        assert_eq!(c.dependencies_due.iter().copied().collect::<Vec<_>>(), [5]);
        started(&mut c, 10);
        assert_eq!(c.job(5).expect("job").reason, "DependencyNeverSatisfied");
        // A second failure wakes nobody.
        end(&mut c, 4, 2, 20);
        assert!(c.dependencies_due.is_empty());
        // A task cancelled before it started counts as not ok too.
        c.submit(1, &root(), array("1-9"), 30);
        started(&mut c, 30);
        c.submit(2, &root(), with_dep("afterok:6"), 31);
        started(&mut c, 31);
        assert_eq!(c.job(12).expect("job").reason, "Dependency");
        c.cancel(3, &root(), &[], &[(6, 9)], None, None, 40);
        assert_eq!(c.dependencies_due.iter().copied().collect::<Vec<_>>(), [12]);
        started(&mut c, 40);
        assert_eq!(c.job(12).expect("job").reason, "DependencyNeverSatisfied");
    }

    #[test]
    fn aftercorr_starts_each_task_after_its_partner_succeeded() {
        let mut c = cluster();
        c.submit(1, &root(), array("1-3"), 0);
        assert_eq!(started(&mut c, 0), [2, 3, 4]);
        let mut b = array("1-4");
        b.dependency = Some("aftercorr:1".parse().expect("dependency"));
        c.submit(2, &root(), b, 1);
        // Index 4 has no partner: it may start at once, and only it.
        let s = started(&mut c, 1);
        assert_eq!(s.iter().map(|j| task_of(&c, *j)).collect::<Vec<_>>(), [Some(4)]);
        assert_eq!(c.job(5).expect("array").reason, "Dependency");
        assert!(started(&mut c, 2).is_empty());
        end(&mut c, 3, 0, 10);
        let s = started(&mut c, 10);
        assert_eq!(s.iter().map(|j| task_of(&c, *j)).collect::<Vec<_>>(), [Some(2)]);
        end(&mut c, 2, 1, 20);
        assert!(started(&mut c, 20).is_empty(), "1_1 failed: 5_1 never starts");
        end(&mut c, 4, 0, 30);
        let s = started(&mut c, 30);
        assert_eq!(s.iter().map(|j| task_of(&c, *j)).collect::<Vec<_>>(), [Some(3)]);
        assert!(started(&mut c, 31).is_empty());
        assert_eq!(c.job(5).expect("array").reason, "DependencyNeverSatisfied");
        assert_eq!(c.job(5).expect("array").state, JobState::Pending);
    }

    #[test]
    fn kill_on_invalid_dep_cancels_each_aftercorr_task_whose_partner_failed() {
        let mut c = cluster();
        c.submit(1, &root(), array("1-3"), 0);
        assert_eq!(started(&mut c, 0), [2, 3, 4]);
        let mut b = array("1-3");
        b.dependency = Some("aftercorr:1".parse().expect("dependency"));
        b.kill_on_invalid_dep = Some(true);
        c.submit(2, &root(), b, 1);
        assert!(started(&mut c, 1).is_empty());
        // 1_1 fails: 5_1 is cancelled at once; 5_2 and 5_3 still wait for theirs.
        end(&mut c, 2, 1, 10);
        assert!(started(&mut c, 10).is_empty());
        let rec = c.job(5).expect("array").array.clone().expect("array record");
        assert!(rec.cancelled.contains(1) && !rec.pending.contains(1), "{rec:?}");
        assert_eq!(c.job(5).expect("array").state, JobState::Pending);
        // 1_2 completes while 1_3 fails: 5_2 runs, 5_3 is cancelled too.
        end(&mut c, 3, 0, 20);
        end(&mut c, 4, 2, 20);
        let s = started(&mut c, 20);
        assert_eq!(s.iter().map(|j| task_of(&c, *j)).collect::<Vec<_>>(), [Some(2)]);
        let rec = c.job(5).expect("array").array.clone().expect("array record");
        assert!(rec.pending.is_empty() && rec.cancelled.contains(3), "{rec:?}");
        assert_eq!(c.job(5).expect("array").state, JobState::Running);
        // Its one task that ran ends: the array is over, cancelled in part.
        end(&mut c, s[0], 0, 30);
        c.schedule(30);
        assert_eq!(c.job(5).expect("array").state, JobState::Cancelled);
    }

    #[test]
    fn an_array_with_afterok_waits_as_a_whole() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let mut a = array("1-3");
        a.dependency = Some("afterok:1".parse().expect("dependency"));
        c.submit(2, &root(), a, 0);
        assert_eq!(started(&mut c, 0), [1]);
        end(&mut c, 1, 0, 10);
        assert_eq!(started(&mut c, 10).len(), 3);
    }
}
