//! What `scontrol` changes besides holds: `update` of a pending job's name, partition and time
//! limit, checked as a submission would be (the job keeps its place; a running job is
//! refused); `requeue` of a running or finished batch job as a new attempt.

use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Caller, Cluster, Job, JobState};
use crate::exit_code;
use crate::protocol::dependency::DependencyChange;
use crate::protocol::{JobId, JobKind, JobUpdate, Reply, ToAgent};
use gangway_scheduler::allocator;

impl Cluster {
    /// Applies `changes` to pending job `id`, or refuses with the reason.
    pub fn update(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        id: JobId,
        changes: &JobUpdate,
        now: u64,
    ) -> Effects {
        let refuse =
            |code: u8, message: String| Effects::reply(conn, Reply::Error { code, message });
        let Some(job) = self.jobs.get(&id) else {
            return refuse(exit_code::FAILURE, format!("job {id} does not exist"));
        };
        if !caller.may_act_on(job) {
            return refuse(
                exit_code::PERMISSION_DENIED,
                format!(
                    "job {id} belongs to {}; only its owner or an administrator may update it",
                    job.user
                ),
            );
        }
        if let Some(throttle) = changes.array_throttle {
            if job.array.is_none() {
                let message = format!(
                    "job {id} is not a job array; ArrayTaskThrottle applies to an array's id"
                );
                return refuse(exit_code::FAILURE, message);
            }
            self.set_array_throttle(id, throttle, now);
            let detail = format!("array throttle {throttle} by {}", caller.user);
            self.event(now, Some(id), None, "update", detail);
            let only =
                JobUpdate { array_throttle: None, ..changes.clone() } == JobUpdate::default();
            if only {
                return Effects::reply(conn, Reply::Ok { message: format!("job {id} updated") });
            }
        }
        let Some(job) = self.jobs.get(&id) else {
            return refuse(exit_code::FAILURE, format!("job {id} does not exist"));
        };
        if job.state != JobState::Pending {
            return refuse(
                exit_code::FAILURE,
                format!("job {id} is {}; only pending jobs can be updated", job.state.name()),
            );
        }
        let mut changed: Job = job.clone();
        if let Some(name) = &changes.name {
            changed.sub.name = name.clone();
        }
        if let Some(p) = &changes.partition {
            changed.sub.shape.partition = Some(p.clone());
        }
        if let Some(t) = changes.time_limit_secs {
            changed.sub.shape.time_limit_secs = Some(t);
        }
        match &changes.dependency {
            None => {}
            Some(DependencyChange::Set(dep)) => {
                if let Err(message) = self.check_dependency(id, dep) {
                    return refuse(exit_code::USAGE, message);
                }
                changed.sub.dependency = Some(dep.clone());
                changed.waiting_on = Some(dep.clone());
            }
            Some(DependencyChange::Clear) => {
                changed.sub.dependency = None;
                changed.waiting_on = None;
                changed.reason = "Priority".into();
            }
        }
        let request = changed.request();
        if let Err(rejection) = allocator::validate(self.alloc(), &request) {
            return refuse(exit_code::CANNOT_PLACE, rejection.to_string());
        }
        changed.partition = request
            .partition
            .clone()
            .or_else(|| self.alloc().default_partition().map(|p| p.name.clone()))
            .unwrap_or_default();
        // Indexed again under its new dependency and name; a singleton waiting on its old name
        // may go now.
        if let Some(old) = &job.waiting_on {
            self.dependents.remove(id, job.uid, &job.sub.name, old);
        }
        if changed.sub.name != job.sub.name {
            let namesakes = self.dependents.woken_by(id, job.uid, &job.sub.name);
            self.dependencies_due.extend(namesakes);
        }
        self.jobs.insert(id, changed);
        self.wait_for_dependency(id);
        // The scheduler queues the job afresh with its new shape (its submit time, and so its
        // place by age, is kept).
        if self.sched.job(id).is_some() {
            self.sched
                .handle(gangway_scheduler::Event::Cancelled(id), gangway_scheduler::Timestamp(now));
        }
        self.touch_job(id);
        self.event(now, Some(id), None, "update", format!("{changes:?} by {}", caller.user));
        self.needs_schedule = true;
        Effects::reply(conn, Reply::Ok { message: format!("job {id} updated") })
    }
}

impl Cluster {
    /// `scontrol requeue`: each running or finished batch job goes back to the queue as its
    /// next attempt; a running one is released on its nodes first (the next attempt waits for
    /// them, as after a node loss). Pending, alloc and run jobs are refused, as Slurm does.
    pub fn requeue_asked(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        ids: &[JobId],
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        let mut problems: Vec<String> = Vec::new();
        let mut code = exit_code::FAILURE;
        for id in ids {
            let Some(job) = self.jobs.get(id) else {
                problems.push(format!("job {id} does not exist"));
                continue;
            };
            if !caller.may_act_on(job) {
                code = exit_code::PERMISSION_DENIED;
                problems.push(format!(
                    "job {id} belongs to {}; only its owner or an administrator may requeue it",
                    job.user
                ));
                continue;
            }
            if job.array.is_some() {
                problems.push(format!(
                    "job {id} is a job array; requeue its tasks by their own ids (squeue -j {id})"
                ));
                continue;
            }
            if job.sub.kind != JobKind::Batch || job.state == JobState::Pending {
                problems.push(format!(
                    "job {id} is a {} job; only running or finished batch jobs can be requeued",
                    if job.state == JobState::Pending { "pending" } else { "interactive" }
                ));
                continue;
            }
            let (attempt, running, nodes) =
                (job.attempt, job.state == JobState::Running, job.nodes());
            if running {
                for n in &nodes {
                    fx.to_agent(n, ToAgent::Release { job: *id, attempt });
                }
                self.steps.retain(|s| s.job != *id);
            }
            if let Some(j) = self.jobs.get_mut(id) {
                j.end_time = None;
                j.exit_code = None;
            }
            self.active.insert(*id);
            let detail = format!("attempt {} asked by {}", attempt + 1, caller.user);
            let told = if running { nodes } else { Vec::new() };
            let reason = format!("requeued by {}", caller.user);
            fx.append(self.next_attempt(*id, None, None, told, detail, reason, now));
            // A job cancelled while it waited for its dependency waits for what is left of it.
            self.wait_for_dependency(*id);
            self.needs_schedule = true;
        }
        let reply = if problems.is_empty() {
            Reply::Ok { message: String::new() }
        } else {
            Reply::Error { code, message: problems.join("\n") }
        };
        fx.to_client(conn, reply);
        fx
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{
        alice, batch, cluster, conn_of, releases, replies_to, root, starts,
    };
    use crate::controller::state::Mono;
    use crate::exit_code;
    use crate::protocol::{FromAgent, JobUpdate, Reply};

    fn code(fx: &[Effect]) -> Option<u8> {
        match replies_to(fx, 1).first() {
            Some(Reply::Error { code, .. }) => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn a_pending_job_is_renamed_and_relimited_by_its_owner_only_and_checked() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.hold = true;
        c.submit(1, &root(), sub, 0);
        let changes = JobUpdate {
            name: Some("renamed".into()),
            time_limit_secs: Some(600),
            ..JobUpdate::default()
        };
        assert_eq!(
            code(&c.update(1, &alice(), 1, &changes, 1)),
            Some(exit_code::PERMISSION_DENIED)
        );
        assert_eq!(code(&c.update(1, &root(), 1, &changes, 1)), None);
        let info = c.job_info(1).expect("job");
        assert_eq!((info.name.as_str(), info.time_limit), ("renamed", Some(600)));
        let elsewhere = JobUpdate { partition: Some("nope".into()), ..JobUpdate::default() };
        assert_eq!(code(&c.update(1, &root(), 1, &elsewhere, 2)), Some(exit_code::CANNOT_PLACE));
        assert_eq!(
            c.job_info(1).expect("job").partition,
            "batch",
            "a refused update changes nothing"
        );
        // Once it runs, it is no longer the user's to change.
        c.set_held(1, &root(), &[1], false, 3);
        c.schedule(3);
        assert_eq!(code(&c.update(1, &root(), 1, &changes, 4)), Some(exit_code::FAILURE));
        assert_eq!(code(&c.update(1, &root(), 9, &changes, 4)), Some(exit_code::FAILURE));
    }

    #[test]
    fn a_running_batch_job_requeued_is_released_and_runs_again_as_its_next_attempt() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        assert_eq!(
            code(&c.requeue_asked(1, &alice(), &[1], 1)),
            Some(exit_code::PERMISSION_DENIED)
        );
        let fx = c.requeue_asked(1, &root(), &[1], 1);
        assert_eq!(code(&fx), None);
        assert_eq!(releases(&fx), [(node.clone(), 1, 1)], "the first attempt is ended");
        let info = c.job_info(1).expect("job");
        assert_eq!((info.state.as_str(), info.attempt), ("PENDING", 2));
        // The next attempt waits for the node to confirm the first one gone.
        assert!(starts(&c.schedule(2)).is_empty());
        c.from_agent(conn_of(&node), &node, FromAgent::Released { job: 1, attempt: 1 }, 3, Mono(3));
        assert_eq!(starts(&c.schedule(3)), [(node, 1, 2)]);
        // A pending job is not requeued.
        c.submit(1, &root(), batch(3, 3), 4);
        assert_eq!(code(&c.requeue_asked(1, &root(), &[2], 4)), Some(exit_code::FAILURE));
    }
}
