//! Client requests that change the state: submit (exactly once per idempotency key), done,
//! a client that goes away, cancel and signal, hold and release, drain and resume.

use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Caller, Cluster, Job, JobState};
use crate::exit_code;
use crate::protocol::{
    JobId, JobKind, Reply, Signal, SignalTarget, StopCause, Submission, ToAgent,
};
use gangway_scheduler::{NewJob, Rejection, Scheduler, SubmitError, Timestamp, validate};

impl Cluster {
    /// `gangway batch/alloc/run`: checks and queues a job.
    pub fn submit(&mut self, conn: ConnId, caller: &Caller, sub: Submission, now: u64) -> Effects {
        if let Some(id) = self.keys.find(caller.uid, &sub) {
            // Sent again after a broken connection: the job exists already.
            return self.resubmitted(conn, id);
        }
        let id = self.next_id;
        let (job, fits) = match self.checked_job(id, caller, sub, now) {
            Ok(checked) => checked,
            Err(reply) => return Effects::reply_and_close(conn, reply),
        };
        // The scheduler checks the rest (account, QOS, their limits) and queues it.
        if fits {
            let new = self.new_job(&job);
            if let Err(reply) = book(&mut self.sched, new, now) {
                return Effects::reply_and_close(conn, reply);
            }
        }
        self.next_id += 1;
        self.event(now, Some(id), None, "submit", format!("{:?} by {}", job.sub.kind, job.user));
        let kind = job.sub.kind;
        self.keys.record(job.uid, id, &job.sub);
        self.jobs.insert(id, job);
        self.active.insert(id);
        self.touch_job(id);
        self.wait_for_dependency(id);
        self.needs_schedule = true;
        let mut fx = Effects::reply(conn, Reply::Submitted { id });
        if kind == JobKind::Batch {
            fx.close_client(conn);
        } else {
            self.holders.insert(id, conn);
        }
        fx
    }

    /// A new job's record, checked as far as the state can tell without booking it: `--nice`,
    /// `--dependency`, `--constraint`, whether it fits the cluster (`true`: it can be booked
    /// with [`book`]; `false`: it cannot be judged until its nodes register). `Err`: the refusal.
    pub(super) fn checked_job(
        &self,
        id: JobId,
        caller: &Caller,
        sub: Submission,
        now: u64,
    ) -> Result<(Job, bool), Reply> {
        let mut job = Job::submitted(id, caller.uid, caller.gid, caller.user.clone(), sub, now);
        job.held = job.sub.hold;
        match self.array_record(&job.sub) {
            Ok(record) => job.array = record,
            Err((code, message)) => return Err(Reply::Error { code, message }),
        }
        if job.sub.shape.nice < 0 && !caller.admin {
            let message = format!(
                "--nice {} raises the job's priority, which only an administrator may do; use 0 or more",
                job.sub.shape.nice
            );
            let reply = Reply::Error { code: exit_code::PERMISSION_DENIED, message };
            return Err(reply);
        }
        if let Some(dep) = &job.sub.dependency {
            if let Err(message) = self.check_dependency(id, dep) {
                let reply = Reply::Error { code: exit_code::USAGE, message };
                return Err(reply);
            }
            job.waiting_on = Some(dep.clone());
        }
        if let Some(c) = &job.sub.constraint {
            let features = |n: &String| {
                self.config.node_settings.get(n).map(|s| s.features.clone()).unwrap_or_default()
            };
            job.unfit =
                self.config.nodes.iter().filter(|n| !c.matches(&features(n))).cloned().collect();
            if job.unfit.len() == self.config.nodes.len() {
                let message = format!(
                    "--constraint={c}: no node has these features (features are set per node in the controller's configuration: [node.NAME] features = [...])"
                );
                let reply = Reply::Error { code: exit_code::CANNOT_PLACE, message };
                return Err(reply);
            }
        }
        let request = job.request();
        let fits = validate(self.alloc(), &request);
        if let Err(rejection) = &fits {
            // A partition whose nodes never registered has placeholder sizes: do not judge it.
            let unknown_sizes = self.nodes.values().any(|n| n.topology.is_none());
            if !unknown_sizes
                || !matches!(
                    *rejection,
                    Rejection::NeverFits { .. }
                        | Rejection::TaskTooBig { .. }
                        | Rejection::MemoryTooBig { .. }
                        | Rejection::TooManyGpus { .. }
                        | Rejection::NamedNodeTooSmall { .. }
                        | Rejection::UnknownGpuType { .. }
                )
            {
                let message = rejection.to_string();
                let reply = Reply::Error { code: exit_code::CANNOT_PLACE, message };
                return Err(reply);
            }
        }
        job.partition = request
            .partition
            .clone()
            .or_else(|| self.alloc().default_partition().map(|p| p.name.clone()))
            .unwrap_or_default();
        Ok((job, fits.is_ok()))
    }

    /// The answer to a submission whose idempotency key names job `id`: its id, as the first
    /// time. An alloc or run job is held by its first connection; a second one cannot take it.
    fn resubmitted(&self, conn: ConnId, id: JobId) -> Effects {
        let reply = match self.jobs.get(&id) {
            Some(job) if job.sub.kind != JobKind::Batch => Reply::Error {
                code: exit_code::FAILURE,
                message: format!(
                    "job {id} was already submitted with this idempotency key; an interactive job cannot be taken over by another connection"
                ),
            },
            _ => Reply::Submitted { id },
        };
        Effects::reply_and_close(conn, reply)
    }

    /// A client connection closed: the jobs and steps it held end.
    pub fn client_gone(&mut self, conn: ConnId, now: u64) -> Effects {
        let mut fx = Effects::new();
        let held: Vec<JobId> =
            self.holders.iter().filter(|(_, c)| **c == conn).map(|(j, _)| *j).collect();
        for id in held {
            self.holders.remove(&id);
            if let Some(job) = self.jobs.get(&id)
                && !job.state.is_final()
            {
                // A client that leaves because the time limit stopped its job: still a timeout.
                let (state, reason) = if job.stopping_since.is_some() {
                    (JobState::Timeout, "reached its time limit")
                } else {
                    (JobState::Cancelled, "its client went away")
                };
                fx.append(self.finish(id, state, reason, None, now));
            }
        }
        self.end_steps_of(conn, None, now);
        self.waiting_steps.retain(|(c, _, _)| *c != conn);
        fx
    }

    /// The steps `conn` ran are over: recorded (`step_end`, with the exit code when the
    /// launcher said it) for `sacct`'s step lines, and forgotten.
    fn end_steps_of(&mut self, conn: ConnId, exit_code: Option<i32>, now: u64) {
        let ended: Vec<(JobId, u32)> =
            self.steps.iter().filter(|s| s.conn == conn).map(|s| (s.job, s.step)).collect();
        for (job, step) in ended {
            let how = exit_code.map_or("connection closed".to_string(), |c| format!("exit {c}"));
            self.event(now, Some(job), None, "step_end", format!("step {step}: {how}"));
        }
        self.steps.retain(|s| s.conn != conn);
    }

    /// The client holding an alloc/run job is done with it (or a step's launcher with its
    /// step: then only the step ends).
    pub fn done(&mut self, conn: ConnId, exit_code: i32, now: u64) -> Effects {
        let mut fx = Effects::new();
        self.end_steps_of(conn, Some(exit_code), now);
        let held: Vec<JobId> =
            self.holders.iter().filter(|(_, c)| **c == conn).map(|(j, _)| *j).collect();
        for id in held {
            self.holders.remove(&id);
            let state = if exit_code == 0 { JobState::Completed } else { JobState::Failed };
            if self.jobs.get(&id).is_some_and(|j| !j.state.is_final()) {
                fx.append(self.finish(id, state, "None", Some(exit_code), now));
            }
        }
        fx.append(Effects::reply_and_close(conn, Reply::Ok { message: "released".into() }));
        fx
    }

    /// The job, if it exists and the caller may `verb` it; else the problem, for the reply.
    fn owned_job(&self, caller: &Caller, id: JobId, verb: &str) -> Result<&Job, Problem> {
        let job =
            self.jobs.get(&id).ok_or_else(|| Problem::Other(format!("job {id} does not exist")))?;
        if !caller.may_act_on(job) {
            return Err(Problem::Permission(format!(
                "job {id} belongs to {}; only its owner or an administrator may {verb} it",
                job.user
            )));
        }
        Ok(job)
    }

    /// `gangway cancel`: ends jobs (or signals running ones, with `signal`). An array's id
    /// stands for all its tasks; `tasks` names some by index (`7_3`).
    #[expect(clippy::too_many_arguments, reason = "the request's parts, each distinct")]
    pub fn cancel(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        ids: &[JobId],
        tasks: &[(JobId, u32)],
        signal: Option<Signal>,
        user: Option<&str>,
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        let mut targets: Vec<JobId> = ids.to_vec();
        if let Some(u) = user {
            targets.extend(self.active.iter().filter(|id| self.jobs[id].user == u).copied());
        }
        // An array named (or reached through --user) ends its tasks itself.
        let arrays: Vec<JobId> = targets
            .iter()
            .copied()
            .filter(|id| self.jobs.get(id).is_some_and(|j| j.array.is_some()))
            .collect();
        targets.retain(|id| {
            self.jobs.get(id).and_then(|j| j.task).is_none_or(|t| !arrays.contains(&t.array))
        });
        let mut problems = Vec::new();
        for &(array, index) in tasks {
            match self.owned_job(caller, array, "cancel") {
                Err(problem) => problems.push(problem),
                Ok(_) if signal.is_some() => {
                    let id = self.array_tasks.get(&array).and_then(|t| t.get(&index)).copied();
                    match id {
                        Some(id) => targets.push(id),
                        None => problems.push(Problem::Other(format!(
                            "array task {array}_{index} is not running; a signal reaches only running jobs"
                        ))),
                    }
                }
                Ok(_) => match self.cancel_array_task(array, index, caller, now) {
                    Ok(done) => fx.append(done),
                    Err(problem) => problems.push(Problem::Other(problem)),
                },
            }
        }
        for id in targets {
            let job = match self.owned_job(caller, id, "cancel") {
                Ok(job) => job,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if job.array.is_some() && signal.is_none() {
                if job.state.is_final() {
                    let problem = format!("array {id} has already ended ({})", job.state.name());
                    problems.push(Problem::Other(problem));
                } else {
                    fx.append(self.cancel_array(id, caller, now));
                }
                continue;
            }
            if let (Some(_), Some(sig)) = (&job.array, signal) {
                // A signal to an array reaches its running tasks.
                let running: Vec<JobId> = self
                    .array_task_ids(id)
                    .map(|(_, t)| t)
                    .filter(|t| self.jobs.get(t).is_some_and(|j| j.state == JobState::Running))
                    .collect();
                for t in running {
                    fx.append(self.signal_job(t, sig, caller, now));
                }
                continue;
            }
            if job.state.is_final() {
                let problem = format!("job {id} has already ended ({})", job.state.name());
                problems.push(Problem::Other(problem));
                continue;
            }
            match signal {
                Some(sig) if job.state == JobState::Running => {
                    fx.append(self.signal_job(id, sig, caller, now));
                }
                Some(_) => {
                    let problem =
                        format!("job {id} is not running; a signal reaches only running jobs");
                    problems.push(Problem::Other(problem));
                }
                None => {
                    fx.append(self.stop_notice(id, StopCause::Cancelled, now));
                    let reason = format!("cancelled by {}", caller.user);
                    fx.append(self.finish(id, JobState::Cancelled, &reason, None, now));
                }
            }
        }
        fx.to_client(conn, problems_reply(&problems));
        fx
    }

    /// Sends `sig` to a running job's processes on every node.
    fn signal_job(&mut self, id: JobId, sig: Signal, caller: &Caller, now: u64) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get(&id) else { return fx };
        let attempt = job.attempt;
        for n in job.nodes() {
            let target = SignalTarget::All;
            fx.to_agent(&n, ToAgent::Signal { job: id, attempt, signal: sig, target });
        }
        let detail = format!("signal {sig} by {}", caller.user);
        self.event(now, Some(id), None, "signal", detail);
        fx
    }

    /// `gangway hold` / `release`.
    pub fn set_held(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        ids: &[JobId],
        held: bool,
        now: u64,
    ) -> Effects {
        let mut problems = Vec::new();
        for id in ids {
            let job = match self.owned_job(caller, *id, "change") {
                Ok(job) => job,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if job.state != JobState::Pending {
                problems.push(Problem::Other(format!(
                    "job {id} is {}; only pending jobs can be held or released",
                    job.state.name()
                )));
                continue;
            }
            if let Some(job) = self.jobs.get_mut(id) {
                job.held = held;
            }
            self.touch_job(*id);
            let kind = if held { "hold" } else { "release" };
            self.event(now, Some(*id), None, kind, caller.user.clone());
            self.needs_schedule = true;
        }
        self.reconcile(now);
        Effects::reply(conn, problems_reply(&problems))
    }

    /// `gangway drain` (with a reason) / `resume` (without).
    pub fn set_drain(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        names: &[String],
        reason: Option<String>,
        now: u64,
    ) -> Effects {
        if !caller.admin {
            return Effects::reply(conn, Reply::Error {
                code: exit_code::PERMISSION_DENIED,
                message: "only an administrator (root, or a user in the controller's `admins`) may drain or resume nodes".into(),
            });
        }
        let unknown: Vec<&str> =
            names.iter().filter(|n| !self.nodes.contains_key(*n)).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Effects::reply(
                conn,
                Reply::Error {
                    code: exit_code::USAGE,
                    message: format!("unknown nodes: {}; see `gangway nodes`", unknown.join(", ")),
                },
            );
        }
        for n in names {
            if let Some(rec) = self.nodes.get_mut(n) {
                rec.drain = reason.clone();
            }
            self.sync_health(n);
            let detail = match &reason {
                Some(r) => format!("drained by {}: {r}", caller.user),
                None => format!("resumed by {}", caller.user),
            };
            let kind = if reason.is_some() { "drain" } else { "resume" };
            self.event(now, None, Some(n), kind, detail);
        }
        Effects::reply(conn, Reply::Ok { message: String::new() })
    }
}

/// Why a request on one of several jobs was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// The caller may not act on the job (exit code 117).
    Permission(String),
    Other(String),
}

/// The answer to a request on several jobs: Ok, or every problem, with 117 when one was a
/// matter of permission.
fn problems_reply(problems: &[Problem]) -> Reply {
    if problems.is_empty() {
        return Reply::Ok { message: String::new() };
    }
    let code = if problems.iter().any(|p| matches!(p, Problem::Permission(_))) {
        exit_code::PERMISSION_DENIED
    } else {
        exit_code::FAILURE
    };
    let text: Vec<&str> = problems
        .iter()
        .map(|p| match p {
            Problem::Permission(t) | Problem::Other(t) => t.as_str(),
        })
        .collect();
    Reply::Error { code, message: text.join("\n") }
}

/// Books a checked job in `sched` (the scheduler checks account, QOS and their limits);
/// `Err`: the refusal.
pub(super) fn book(sched: &mut Scheduler, job: NewJob, now: u64) -> Result<(), Reply> {
    sched.submit(job, Timestamp(now)).map_err(|e| {
        let code = match e {
            SubmitError::Rejected(_) => exit_code::CANNOT_PLACE,
            SubmitError::NotMember { .. } | SubmitError::NoAccount(_) => {
                exit_code::PERMISSION_DENIED
            }
            _ => exit_code::USAGE,
        };
        Reply::Error { code, message: e.to_string() }
    })
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{
        alice, alloc, batch, closes, cluster, releases, replies_to, root, starts,
    };
    use crate::controller::state::JobState;
    use crate::exit_code;
    use crate::protocol::{Reply, ToAgent};

    #[test]
    fn a_batch_job_is_answered_with_its_id_and_one_that_never_fits_is_refused() {
        let mut c = cluster();
        let fx = c.submit(5, &root(), batch(1, 2), 10);
        assert!(matches!(replies_to(&fx, 5)[..], [Reply::Submitted { id: 1 }]), "{fx:?}");
        assert!(closes(&fx, 5), "a batch submission's connection is done: {fx:?}");
        let job = c.job(1).expect("job");
        assert_eq!(
            (job.state, job.submit_time, job.partition.as_str()),
            (JobState::Pending, 10, "batch")
        );
        // Four nodes of a three-node cluster: refused at once, and no job made.
        let fx = c.submit(6, &root(), batch(4, 4), 11);
        assert!(
            matches!(replies_to(&fx, 6)[..], [Reply::Error { code: exit_code::CANNOT_PLACE, .. }]),
            "{fx:?}"
        );
        assert!(closes(&fx, 6) && c.job(2).is_none());
    }

    #[test]
    fn a_submission_sent_again_with_its_key_is_the_first_job() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.idempotency_key = Some("k-1".into());
        c.submit(5, &root(), sub.clone(), 0);
        let fx = c.submit(6, &root(), sub, 1);
        assert!(matches!(replies_to(&fx, 6)[..], [Reply::Submitted { id: 1 }]), "{fx:?}");
        assert!(c.job(2).is_none(), "no second job");
        // An allocation is held by its first connection: a second one cannot take it over.
        let mut sub = alloc(1, 1);
        sub.idempotency_key = Some("k-2".into());
        c.submit(7, &root(), sub.clone(), 2);
        let fx = c.submit(8, &root(), sub, 3);
        assert!(matches!(replies_to(&fx, 8)[..], [Reply::Error { code: exit_code::FAILURE, .. }]));
        assert!(closes(&fx, 8) && c.job(3).is_none());
    }

    #[test]
    fn done_ends_the_held_job_with_the_commands_exit_code() {
        let mut c = cluster();
        c.submit(7, &root(), alloc(1, 2), 0);
        let fx = c.schedule(0);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Granted(_)]), "{fx:?}");
        let node = starts(&fx)[0].0.clone();
        let fx = c.done(7, 3, 500);
        assert_eq!(releases(&fx), [(node, 1, 1)]);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Ok { .. }]) && closes(&fx, 7));
        let job = c.job(1).expect("job");
        assert_eq!(
            (job.state, job.exit_code, job.end_time),
            (JobState::Failed, Some(3), Some(500))
        );
    }

    #[test]
    fn a_client_that_goes_away_cancels_what_it_held() {
        let mut c = cluster();
        c.submit(7, &root(), alloc(1, 2), 0);
        c.submit(8, &root(), alloc(1, 2), 0);
        c.schedule(0);
        let fx = c.client_gone(7, 100);
        assert_eq!(releases(&fx).len(), 1, "its node is told: {fx:?}");
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.reason.as_str()), (JobState::Cancelled, "its client went away"));
        assert_eq!(c.job(2).expect("job").state, JobState::Running, "another client's job runs on");
        assert!(c.client_gone(7, 200).is_empty(), "nothing left to end");
    }

    #[test]
    fn a_signal_reaches_a_running_jobs_nodes_and_a_pending_job_is_not_signalled() {
        let mut c = cluster();
        c.submit(1, &root(), batch(2, 2), 0);
        c.schedule(0);
        let usr1 = "USR1".parse().expect("signal");
        let fx = c.cancel(5, &root(), &[1], &[], Some(usr1), None, 10);
        let signalled: Vec<&str> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::ToAgent {
                    node,
                    msg: ToAgent::Signal { job: 1, attempt: 1, signal, .. },
                } if *signal == usr1 => Some(node.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(signalled, ["n1", "n2"]);
        assert!(matches!(replies_to(&fx, 5)[..], [Reply::Ok { .. }]));
        assert_eq!(c.job(1).expect("job").state, JobState::Running, "a signal ends nothing");
        c.submit(2, &root(), batch(3, 3), 11);
        let fx = c.cancel(6, &root(), &[2], &[], Some(usr1), None, 12);
        assert!(matches!(replies_to(&fx, 6)[..], [Reply::Error { code: exit_code::FAILURE, .. }]));
        // `--user`: every active job of that user.
        let fx = c.cancel(7, &root(), &[], &[], None, Some("root"), 13);
        assert!(matches!(replies_to(&fx, 7)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert!([1, 2].iter().all(|id| c.job(*id).expect("job").state == JobState::Cancelled));
    }

    #[test]
    fn a_drained_node_takes_no_new_job_until_it_is_resumed() {
        let mut c = cluster();
        let all: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let fx = c.set_drain(5, &root(), &all, Some("bad DIMM".into()), 0);
        assert!(matches!(replies_to(&fx, 5)[..], [Reply::Ok { .. }]));
        assert_eq!(c.node_info("n1", 0).expect("node").state, "drained");
        c.submit(1, &root(), batch(1, 1), 1);
        assert!(starts(&c.schedule(1)).is_empty());
        let fx = c.set_drain(5, &root(), &["n9".into()], None, 2);
        assert!(matches!(replies_to(&fx, 5)[..], [Reply::Error { code: exit_code::USAGE, .. }]));
        c.set_drain(5, &root(), &all[..1], None, 3);
        assert_eq!(starts(&c.schedule(3)), [("n1".to_string(), 1, 1)]);
        let events = c.take_dirty().events;
        assert!(
            events.iter().any(|e| e.kind == "drain") && events.iter().any(|e| e.kind == "resume")
        );
    }

    #[test]
    fn only_the_owner_or_an_admin_may_cancel_and_hold() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let fx = c.cancel(2, &alice(), &[1], &[], None, None, 1);
        assert!(
            matches!(
                fx[..],
                [Effect::ToClient {
                    conn: 2,
                    reply: Reply::Error { code: exit_code::PERMISSION_DENIED, .. }
                }]
            ),
            "nothing but the refusal: {fx:?}"
        );
        let fx = c.set_held(2, &alice(), &[1], true, 1);
        assert!(matches!(replies_to(&fx, 2)[..], [Reply::Error { .. }]), "{fx:?}");
        let fx = c.set_drain(2, &alice(), &["n1".into()], Some("x".into()), 1);
        assert!(matches!(replies_to(&fx, 2)[..], [Reply::Error { .. }]), "{fx:?}");
        let fx = c.cancel(3, &root(), &[1], &[], None, None, 2);
        assert!(matches!(replies_to(&fx, 3)[..], [Reply::Ok { .. }]), "{fx:?}");
        assert_eq!(c.job(1).expect("job").state, JobState::Cancelled);
    }

    #[test]
    fn a_constraint_places_only_on_nodes_with_the_features() {
        use crate::controller::config::NodeConfig;
        let mut c = cluster();
        let gpu = NodeConfig { drain: None, features: vec!["gpu".into(), "ib".into()] };
        c.config.node_settings.insert("n3".into(), gpu);
        for (conn, want) in [(1, "gpu&ib"), (2, "(a100|gpu)")] {
            let mut sub = batch(1, 1);
            sub.constraint = Some(want.parse().expect("constraint"));
            c.submit(conn, &root(), sub, 0);
        }
        let placed: Vec<String> = starts(&c.schedule(0)).into_iter().map(|s| s.0).collect();
        assert_eq!(placed, ["n3", "n3"], "both on n3, though n1 and n2 are free");
        let mut sub = batch(1, 1);
        sub.constraint = Some("a100".parse().expect("constraint"));
        let fx = c.submit(3, &root(), sub, 0);
        assert!(
            fx.iter().any(|e| matches!(e, Effect::ToClient { reply: Reply::Error { message, .. }, .. } if message.contains("--constraint=a100: no node has"))),
            "{fx:?}"
        );
    }
}
