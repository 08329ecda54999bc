//! Job arrays' transitions: a submission checked against `max_array_size`; a task split off its
//! array as a job of its own when the scheduler starts it; the array's record settled as its
//! tasks start and end; cancelling a whole array, or tasks by index (`scancel 7_3`), pending
//! or running; a new throttle (`scontrol update ArrayTaskThrottle=N`).

use crate::controller::arrays::{ArrayRecord, ArrayTask};
use crate::controller::effects::Effects;
use crate::controller::state::{Caller, Cluster, Job, JobState};
use crate::exit_code;
use crate::protocol::{JobId, JobKind, StopCause, Submission};
use gangway_scheduler::{Event, Timestamp};

impl Cluster {
    /// An array submission's record, or the refusal (exit code, message naming `--array` and
    /// what to write instead).
    pub(super) fn array_record(
        &self,
        sub: &Submission,
    ) -> Result<Option<ArrayRecord>, (u8, String)> {
        let Some(spec) = &sub.array else { return Ok(None) };
        if sub.kind != JobKind::Batch {
            let message =
                "--array is for batch jobs (gangway batch, sbatch); submit the command in a script"
                    .to_string();
            return Err((exit_code::USAGE, message));
        }
        let max = self.config.limits.max_array_size;
        if spec.indexes.is_empty() {
            return Err((exit_code::USAGE, "--array: no task indexes; write them as 0-99".into()));
        }
        if spec.throttle == Some(0) {
            let message = "--array: '%0' lets no task run; write %1 or more".to_string();
            return Err((exit_code::USAGE, message));
        }
        if spec.indexes.max().is_some_and(|m| m >= max) {
            let message = format!(
                "--array={spec}: task indexes must be below this cluster's max_array_size, {max}; use indexes 0-{} (or ask an administrator to raise max_array_size)",
                max - 1
            );
            return Err((exit_code::USAGE, message));
        }
        Ok(Some(ArrayRecord {
            pending: spec.indexes.clone(),
            cancelled: Default::default(),
            throttle: spec.throttle,
        }))
    }

    /// The scheduler started a task of array `array` as job `task`: the task becomes a job
    /// of its own (the array's lowest pending index, its request, a row of its own), ready
    /// for its start to be recorded. An array waiting `aftercorr` gives its lowest index free
    /// to start instead (`handlers::dependencies`). `false` (and the scheduler's booking undone)
    /// if there is none: for an `aftercorr` array, a pass that started more tasks than were
    /// free (it waits again); otherwise only a bug could cause it.
    pub(super) fn split_task(&mut self, array: JobId, task: JobId, now: u64) -> bool {
        let next = self.next_task_index(array, now);
        let split = self.jobs.get_mut(&array).and_then(|a| {
            let index = next?;
            a.array.as_mut()?.pending.remove(index).then_some(())?;
            Some((index, task_of(a, task, index)))
        });
        let Some((index, job)) = split else {
            self.sched.handle(Event::Ended { job: task, requeue: false }, Timestamp(now));
            if self.jobs.get(&array).is_some_and(|a| a.waiting_on.is_some()) {
                // An `aftercorr` array with no index free to start (the pass started more
                // than were): its books count its pending tasks again, and it waits.
                self.rebook_array(array, now);
                self.corr_ready.remove(&array);
                if let Some(a) = self.jobs.get_mut(&array) {
                    a.reason = super::dependencies::DEPENDENCY.into();
                }
                self.touch_job(array);
                self.dependencies_due.insert(array);
            } else {
                tracing::error!(
                    array,
                    task,
                    "the scheduler started a task of an array with none left"
                );
            }
            return false;
        };
        self.jobs.insert(task, job);
        self.active.insert(task);
        self.array_tasks.entry(array).or_default().insert(index, task);
        *self.array_live.entry(array).or_default() += 1;
        self.next_id = self.next_id.max(task + 1);
        self.touch_job(task);
        // Its pending set is stored with the task's row, in the same commit: a restart never
        // starts an index twice.
        self.touch_job(array);
        self.event(now, Some(task), None, "submit", format!("task {index} of array {array}"));
        // Not over: a task of it just started, so no mail comes of it.
        let _ = self.settle_array(array, now);
        self.recheck_corr(array, now);
        true
    }

    /// A task of `array` ended (`counted`: it had not ended before): its record settles
    /// (the array's end mail, if that was its last task).
    pub(super) fn task_ended(&mut self, array: JobId, counted: bool, now: u64) -> Effects {
        if counted && let Some(live) = self.array_live.get_mut(&array) {
            *live = live.saturating_sub(1);
        }
        self.settle_array(array, now)
    }

    /// A task of `array` that had ended was requeued: the array is not over.
    pub(super) fn task_restarted(&mut self, array: JobId, now: u64) {
        *self.array_live.entry(array).or_default() += 1;
        // Running again: no mail comes of it.
        let _ = self.settle_array(array, now);
    }

    /// Brings an array's record in line with its tasks: with pending tasks it waits (in the
    /// queue); with none, it leaves the queue and is `Running` while any task is not over; then
    /// it ends with its tasks' outcome (`COMPLETED` only if every task completed). Cheap until
    /// the last task ends: only then are the tasks walked, once. Its end is mailed once for
    /// the whole array (`mail.rs`).
    pub(super) fn settle_array(&mut self, array: JobId, now: u64) -> Effects {
        let none = Effects::new;
        let Some(rec) = self.jobs.get(&array).and_then(|a| a.array.as_ref()) else { return none() };
        if !rec.pending.is_empty() {
            return none();
        }
        let live = self.array_live.get(&array).copied().unwrap_or(0);
        let state = if live > 0 {
            JobState::Running
        } else {
            let Some(progress) = self.array_progress(array) else { return none() };
            if progress.all_ok() {
                JobState::Completed
            } else if progress.failed > 0 {
                JobState::Failed
            } else {
                JobState::Cancelled
            }
        };
        let Some(job) = self.jobs.get_mut(&array) else { return none() };
        if job.state == state {
            return none();
        }
        job.state = state;
        if !job.reason.starts_with("cancelled by ") {
            job.reason = "None".into();
        }
        if state.is_final() {
            job.end_time = Some(now);
        } else if job.start_time.is_none() {
            job.start_time = Some(now);
        }
        // Its tasks stand for it now: nothing of the record waits or runs.
        self.active.remove(&array);
        self.touch_job(array);
        // Every task started, or every task over: what those naming the array wait for.
        self.wake_dependents(array);
        if state.is_final() { self.end_mail(array, state, now) } else { none() }
    }

    /// `cancel 7` of an array: its pending tasks never start, its running ones end.
    pub(super) fn cancel_array(&mut self, array: JobId, caller: &Caller, now: u64) -> Effects {
        let mut fx = Effects::new();
        let Some(rec) = self.jobs.get_mut(&array).and_then(|a| a.array.as_mut()) else {
            return fx;
        };
        let pending = std::mem::take(&mut rec.pending);
        rec.cancelled.extend(&pending);
        for index in pending.iter() {
            self.wake_for_cancelled_task(array, index);
        }
        self.sched.update_array(array, 0, None, Timestamp(now));
        // Who cancelled it stays the array's reason: sacct names them (`CANCELLED by UID`, as
        // Slurm) on the line of the tasks that never started.
        if let Some(job) = self.jobs.get_mut(&array) {
            job.reason = format!("cancelled by {}", caller.user);
            self.touch_job(array);
        }
        let tasks: Vec<JobId> = self.array_task_ids(array).map(|(_, id)| id).collect();
        for id in tasks {
            fx.append(self.cancel_task_job(id, caller, now));
        }
        let job = self.jobs.get(&array);
        if job.is_some_and(|j| j.state == JobState::Pending && !self.has_active_task(array)) {
            let reason = format!("cancelled by {}", caller.user);
            fx.append(self.finish(array, JobState::Cancelled, &reason, None, now));
        }
        fx.append(self.settle_array(array, now));
        self.event(now, Some(array), None, "cancel", format!("array, by {}", caller.user));
        fx
    }

    /// `cancel 7_3`: task 3 of array 7, pending (it never starts) or running (it ends). The
    /// problem, if it has none such or it is over.
    pub(super) fn cancel_array_task(
        &mut self,
        array: JobId,
        index: u32,
        caller: &Caller,
        now: u64,
    ) -> Result<Effects, String> {
        let label = crate::protocol::array::task_label(array, index);
        let Some(rec) = self.jobs.get_mut(&array).and_then(|a| a.array.as_mut()) else {
            return Err(format!("job {array} is not an array, so it has no task {label}"));
        };
        if rec.pending.remove(index) {
            rec.cancelled.insert(index);
            self.rebook_array(array, now);
            self.touch_job(array);
            self.wake_for_cancelled_task(array, index);
            self.event(
                now,
                Some(array),
                None,
                "cancel",
                format!("task {index} by {}", caller.user),
            );
            return Ok(self.settle_array(array, now));
        }
        let task = self.array_tasks.get(&array).and_then(|t| t.get(&index)).copied();
        match task {
            Some(id) if self.jobs.get(&id).is_some_and(|j| !j.state.is_final()) => {
                Ok(self.cancel_task_job(id, caller, now))
            }
            Some(id) => {
                let state = self.jobs.get(&id).map_or("ended", |j| j.state.name());
                Err(format!("array task {label} has already ended ({state})"))
            }
            None if rec_has(self.jobs.get(&array), index) => {
                Err(format!("array task {label} was cancelled before it started"))
            }
            None => Err(format!("array {array} has no task {index}")),
        }
    }

    /// Ends one started task as `cancel` does any job.
    fn cancel_task_job(&mut self, id: JobId, caller: &Caller, now: u64) -> Effects {
        let mut fx = Effects::new();
        if self.jobs.get(&id).is_none_or(|j| j.state.is_final()) {
            return fx;
        }
        fx.append(self.stop_notice(id, StopCause::Cancelled, now));
        let reason = format!("cancelled by {}", caller.user);
        fx.append(self.finish(id, JobState::Cancelled, &reason, None, now));
        fx
    }

    /// Tells the scheduler's books what the array's record now holds: its pending count and
    /// throttle (none left once the record is gone).
    pub(super) fn rebook_array(&mut self, array: JobId, now: u64) {
        let rec = self.jobs.get(&array).and_then(|a| a.array.as_ref());
        let (pending, throttle) = rec.map_or((0, None), |r| (r.pending.len(), r.throttle));
        let pending = u32::try_from(pending).unwrap_or(u32::MAX);
        self.sched.update_array(array, pending, throttle, Timestamp(now));
    }

    fn has_active_task(&self, array: JobId) -> bool {
        self.array_task_ids(array)
            .any(|(_, id)| self.jobs.get(&id).is_some_and(|j| !j.state.is_final()))
    }

    /// A new throttle for an array's tasks (0: none), in force at the next pass.
    pub(super) fn set_array_throttle(&mut self, array: JobId, throttle: u32, now: u64) -> bool {
        let Some(rec) = self.jobs.get_mut(&array).and_then(|a| a.array.as_mut()) else {
            return false;
        };
        rec.throttle = (throttle > 0).then_some(throttle);
        self.rebook_array(array, now);
        self.touch_job(array);
        self.needs_schedule = true;
        true
    }
}

/// Whether task `index` was one of the array's (cancelled before it started).
fn rec_has(job: Option<&Job>, index: u32) -> bool {
    job.and_then(|j| j.array.as_ref()).is_some_and(|a| a.cancelled.contains(index))
}

/// Task `index` of array record `a`, as job `id`: the array's request and owner, a first
/// attempt; its script stays with the array (`Cluster::script_of`).
fn task_of(a: &Job, id: JobId, index: u32) -> Job {
    let sub = Submission {
        script: None,
        array: None,
        idempotency_key: None,
        hold: false,
        ..a.sub.clone()
    };
    // Pending, with the array's priority and place; the array's dependency held when the
    // scheduler split this task off, so the task waits for nothing.
    Job {
        priority: a.priority,
        partition: a.partition.clone(),
        unfit: a.unfit.clone(),
        task: Some(ArrayTask { array: a.id, index }),
        ..Job::submitted(id, a.uid, a.gid, a.user.clone(), sub, a.submit_time)
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::arrays::{ArrayProgress, TaskOutcome};
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{
        alice, alloc, array, cluster, config, conn_of, releases, replies_to, root, starts,
    };
    use crate::controller::state::{Cluster, JobState, Mono};
    use crate::exit_code;
    use crate::protocol::{FromAgent, JobId, JobUpdate, Reply, ToAgent};

    fn env(c: &Cluster, job: JobId, name: &str) -> Option<String> {
        let node = c.job(job)?.nodes().first()?.clone();
        let launch = c.launch_for(job, &node)?;
        launch.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn end(c: &mut Cluster, job: JobId, code: i32, t: u64) {
        let node = c.job(job).expect("job").nodes()[0].clone();
        let ended = FromAgent::JobEnded { job, attempt: 1, exit_code: code, message: None };
        c.from_agent(conn_of(&node), &node, ended, t, Mono(t));
    }

    fn labels(c: &Cluster) -> Vec<String> {
        c.queue().iter().map(crate::protocol::JobInfo::label).collect()
    }

    #[test]
    fn an_array_runs_its_tasks_as_jobs_of_their_own_under_its_throttle() {
        let mut c = cluster();
        let fx = c.submit(5, &alice(), array("1-6%2"), 0);
        assert!(matches!(replies_to(&fx, 5)[..], [Reply::Submitted { id: 1 }]), "{fx:?}");
        let s = starts(&c.schedule(0));
        // Six cores free, two at once by the throttle: tasks 1 and 2 as jobs 2 and 3.
        assert_eq!(s.iter().map(|(_, j, _)| *j).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(labels(&c), ["1_[3-6%2]", "1_1", "1_2"]);
        assert_eq!(c.job_info(1).expect("array").reason, "JobArrayTaskLimit");
        for (name, want) in [
            ("SLURM_JOB_ID", "3"),
            ("SLURM_ARRAY_JOB_ID", "1"),
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "6"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
            ("GANGWAY_ARRAY_TASK_ID", "2"),
            ("GANGWAY_JOB_ID", "3"),
        ] {
            assert_eq!(env(&c, 3, name).as_deref(), Some(want), "{name}");
        }
        let node = c.job(3).expect("task").nodes()[0].clone();
        let batch = c.launch_for(3, &node).and_then(|l| l.batch).expect("a batch launch");
        assert_eq!(batch.output, "/tmp/out_1_2.txt");
        assert_eq!(batch.script, "#!/bin/sh\ntrue\n", "the array's script");
        // A task ends: the next index starts as the next job id.
        end(&mut c, 2, 0, 10);
        let s = starts(&c.schedule(10));
        assert_eq!(s.iter().map(|(_, j, _)| *j).collect::<Vec<_>>(), [4]);
        assert_eq!(c.job(4).and_then(|j| j.task).map(|t| t.index), Some(3));
        let p = c.array_progress(1).expect("progress");
        assert_eq!(
            p,
            ArrayProgress { total: 6, pending: 3, running: 2, completed: 1, ..Default::default() }
        );
        assert_eq!(c.array_task_outcome(1, 1), Some(TaskOutcome::Ended(JobState::Completed)));
        assert_eq!(c.array_task_outcome(1, 3), Some(TaskOutcome::Running));
        assert_eq!(c.array_task_outcome(1, 6), Some(TaskOutcome::Pending));
        assert_eq!(c.array_task_outcome(1, 7), None);
        // The rest, one failing: the array's own record ends FAILED with its last task.
        let mut t = 20;
        while let Some(id) = c.queue().iter().find(|j| j.state == "RUNNING").map(|j| j.id) {
            end(&mut c, id, i32::from(id == 5), t);
            c.schedule(t);
            t += 10;
        }
        let p = c.array_progress(1).expect("progress");
        assert!(p.is_complete() && !p.all_ok() && p.any_not_ok(), "{p:?}");
        assert_eq!((p.completed, p.failed), (5, 1));
        assert_eq!(c.job(1).expect("array").state, JobState::Failed);
        let history: Vec<String> =
            c.history(10).iter().map(crate::protocol::JobInfo::label).collect();
        assert_eq!(history, ["1_6", "1_5", "1_4", "1_3", "1_2", "1_1"]);
    }

    #[test]
    fn a_hundred_thousand_tasks_are_one_row_and_one_queue_entry_until_they_start() {
        let mut c = cluster();
        c.submit(5, &root(), array("0-99999"), 0);
        let dirty = c.take_dirty();
        assert_eq!(dirty.jobs.len(), 1, "one row for the whole array");
        assert!(serde_json::to_string(&dirty.jobs[0]).expect("json").len() < 2_000);
        assert_eq!(starts(&c.schedule(0)).len(), 6, "six cores");
        assert_eq!(c.take_dirty().jobs.len(), 7, "the six tasks started, and the array");
        assert_eq!(labels(&c)[0], "1_[6-99999]");
        assert_eq!(c.queue().len(), 7);
        // A pass with it waiting looks at one entry.
        end(&mut c, 2, 0, 5);
        assert_eq!(starts(&c.schedule(5)).len(), 1);
    }

    #[test]
    fn tasks_are_cancelled_by_index_pending_or_running_and_the_array_by_its_id() {
        let mut c = cluster();
        c.submit(5, &alice(), array("0-9"), 0);
        c.schedule(0);
        // Task 7 is pending: it never starts. Task 1 (job 3) runs: it ends.
        let fx = c.cancel(6, &alice(), &[], &[(1, 7), (1, 1)], None, None, 1);
        assert!(matches!(replies_to(&fx, 6)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert_eq!(releases(&fx).iter().map(|r| r.1).collect::<Vec<_>>(), [3]);
        assert_eq!(c.array_task_outcome(1, 7), Some(TaskOutcome::Ended(JobState::Cancelled)));
        assert_eq!(c.job(3).expect("task").state, JobState::Cancelled);
        let fx = c.cancel(6, &alice(), &[], &[(1, 7), (1, 42)], None, None, 2);
        let Some(Reply::Error { message, .. }) = replies_to(&fx, 6).first().copied() else {
            panic!("{fx:?}")
        };
        assert!(message.contains("1_7 was cancelled before it started"), "{message}");
        assert!(message.contains("array 1 has no task 42"), "{message}");
        // History has a line for the task cancelled before it started, beside the one that ran.
        let history: Vec<(String, String)> =
            c.history(10).iter().map(|j| (j.label(), j.state.clone())).collect();
        assert_eq!(
            history,
            [("1_1".into(), "CANCELLED".into()), ("1_7".into(), "CANCELLED".into())]
        );
        // A later pass starts task 6 in task 1's place, never task 7.
        let s = starts(&c.schedule(3));
        assert_eq!(c.job(s[0].1).and_then(|j| j.task).map(|t| t.index), Some(6));
        // The whole array: its running tasks end, its pending ones never start.
        let fx = c.cancel(7, &alice(), &[1], &[], None, None, 4);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert_eq!(releases(&fx).len(), 6);
        assert!(c.queue().is_empty(), "{:?}", labels(&c));
        assert!(starts(&c.schedule(5)).is_empty());
        let p = c.array_progress(1).expect("progress");
        assert_eq!((p.total, p.cancelled, p.completed), (10, 10, 0));
        assert_eq!(c.job(1).expect("array").state, JobState::Cancelled);
        let history: Vec<String> = c.history(20).iter().map(|j| j.label()).collect();
        assert_eq!(history.last().map(String::as_str), Some("1_[7-9]"), "one line: {history:?}");
    }

    #[test]
    fn a_restarted_controller_keeps_the_array_its_tasks_and_their_ids() {
        let mut c = cluster();
        c.submit(5, &root(), array("1-100%4"), 0);
        c.schedule(0);
        let dirty = c.take_dirty();
        let mut again = Cluster::new(config(), 0, dirty.nodes, dirty.jobs, dirty.next_id, 1_000);
        again.listening(Mono(1_000));
        assert_eq!(labels(&again), ["1_[5-100%4]", "1_1", "1_2", "1_3", "1_4"]);
        for n in ["n1", "n2", "n3"] {
            let mut reg = crate::controller::scenario::registration(n);
            reg.running = again
                .queue()
                .iter()
                .filter(|j| j.nodes.iter().any(|x| x == n))
                .map(|j| (j.id, 1))
                .collect();
            again.from_agent(conn_of(n), n, FromAgent::Register(reg), 1_000, Mono(1_000));
        }
        // The throttle still counts the four running tasks.
        assert!(starts(&again.schedule(1_000)).is_empty());
        end(&mut again, 3, 0, 2_000);
        let s = starts(&again.schedule(2_000));
        assert_eq!(
            s.iter().map(|(_, j, _)| *j).collect::<Vec<_>>(),
            [6],
            "the next id, not a reused one"
        );
        assert_eq!(again.job(6).and_then(|j| j.task).map(|t| t.index), Some(5));
    }

    #[test]
    fn bad_arrays_are_refused_naming_the_flag_and_what_to_write() {
        let mut c = cluster();
        let fx = c.submit(5, &root(), array("0-100001"), 0);
        let Some(Reply::Error { code, message }) = replies_to(&fx, 5).first().copied() else {
            panic!("{fx:?}")
        };
        assert_eq!(*code, exit_code::USAGE);
        assert!(message.contains("--array=0-100001") && message.contains("0-100000"), "{message}");
        // A %0 sent by a client that skipped the command's check.
        let mut sub = array("1-3");
        sub.array.as_mut().expect("spec").throttle = Some(0);
        let fx = c.submit(5, &root(), sub, 0);
        assert!(
            matches!(replies_to(&fx, 5)[..], [Reply::Error { code: exit_code::USAGE, .. }]),
            "{fx:?}"
        );
        let mut sub = alloc(1, 1);
        sub.array = Some("1-3".parse().expect("spec"));
        let fx = c.submit(6, &root(), sub, 0);
        assert!(
            matches!(replies_to(&fx, 6)[..], [Reply::Error { code: exit_code::USAGE, .. }]),
            "{fx:?}"
        );
        assert!(c.job(1).is_none());
    }

    #[test]
    fn a_held_array_starts_nothing_until_released_and_its_throttle_can_change() {
        let mut c = cluster();
        let mut sub = array("1-10%1");
        sub.hold = true;
        c.submit(5, &alice(), sub, 0);
        assert!(starts(&c.schedule(0)).is_empty());
        c.set_held(6, &alice(), &[1], false, 1);
        assert_eq!(starts(&c.schedule(1)).len(), 1, "throttle 1");
        let changes = JobUpdate { array_throttle: Some(3), ..JobUpdate::default() };
        let fx = c.update(7, &alice(), 1, &changes, 2);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert_eq!(starts(&c.schedule(2)).len(), 2, "now three at once");
        let fx = c.update(7, &alice(), 2, &changes, 3);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Error { .. }]), "a task is no array");
        // A signal to the array reaches its running tasks.
        let usr1 = "USR1".parse().expect("signal");
        let fx = c.cancel(8, &alice(), &[1], &[], Some(usr1), None, 4);
        let signalled = fx
            .iter()
            .filter(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Signal { .. }, .. }))
            .count();
        assert_eq!(signalled, 3);
    }

    #[test]
    fn a_finished_task_requeued_makes_its_array_unfinished_again() {
        let mut c = cluster();
        c.submit(5, &alice(), array("1-2"), 0);
        c.schedule(0);
        end(&mut c, 2, 0, 10);
        end(&mut c, 3, 0, 11);
        assert_eq!(c.job(1).expect("array").state, JobState::Completed);
        assert!(c.array_progress(1).expect("progress").all_ok());
        let fx = c.requeue_asked(6, &alice(), &[2], 12);
        assert!(matches!(replies_to(&fx, 6)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert_eq!(c.job(1).expect("array").state, JobState::Running);
        assert_eq!(c.array_task_outcome(1, 1), Some(TaskOutcome::Pending));
        let fx = c.requeue_asked(6, &alice(), &[1], 13);
        assert!(matches!(replies_to(&fx, 6)[..], [Reply::Error { .. }]), "the array's own record");
    }
}
