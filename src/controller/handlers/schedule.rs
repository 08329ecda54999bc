//! A scheduling pass: the scheduler's books brought up to date (`books::reconcile`), a pass
//! bounded by a [`Budget`] (carried on in the next tick when it stops early), and its
//! decisions carried out: starts (agents told, holders granted), waiting jobs' reasons and
//! expected starts (waiting clients told their place), preemptions. Waiting steps are retried
//! first. A pass runs when something changed, and at least every `full_pass_interval`.

use std::time::Duration;

use gangway_scheduler::{Budget, Decision, JobStart, Timestamp};

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, GrantedNode, JobState};
use crate::protocol::{MailEvent, Reply, ToAgent};

/// Jobs one pass looks at before it yields to the controller's other work (the rest are
/// looked at in the next tick).
const PASS_BUDGET: usize = 2_000;

impl Cluster {
    /// Runs a scheduling pass if anything changed (or the periodic one is due); starts what
    /// the scheduler decides.
    pub fn schedule(&mut self, now: u64) -> Effects {
        let mut fx = self.retry_steps(now);
        fx.append(self.settle_dependencies(now));
        self.reconcile(now);
        let interval = self.sched_config.full_pass_interval.max(Duration::from_secs(1));
        let periodic = now.saturating_sub(self.last_pass) >= interval.as_millis() as u64;
        if !self.needs_schedule && !periodic {
            return fx;
        }
        self.last_pass = now;
        self.hold_until_begin(now);
        self.usage_due |= periodic;
        // Array tasks started by the pass take their ids from here on.
        self.sched.set_next_id(self.next_id);
        let pass = self.sched.pass(Timestamp(now), Budget::jobs(PASS_BUDGET));
        self.needs_schedule = !pass.done;
        let mut waiting_updates = Vec::new();
        for d in pass.decisions {
            match d {
                Decision::Start { start, backfilled, borrowed_from, array } => {
                    if array.is_none_or(|a| self.split_task(a, start.job, now)) {
                        fx.append(self.start(start, backfilled, &borrowed_from, now));
                    }
                }
                Decision::Wait { job, reason, .. } => {
                    let text = self.release_reason(job).unwrap_or_else(|| reason.to_string());
                    // An `aftercorr` array whose last free index just started waits again.
                    let blocked = self.jobs.get(&job).filter(|j| self.dependency_blocked(j));
                    let text = match blocked {
                        Some(j) if j.reason.starts_with("Dependency") => j.reason.clone(),
                        Some(_) => super::dependencies::DEPENDENCY.into(),
                        None => text,
                    };
                    if let Some(j) = self.jobs.get_mut(&job) {
                        // Reasons are recomputed after a restart; no need to write each change.
                        j.reason = text;
                    }
                    if self.holders.contains_key(&job) {
                        waiting_updates.push(job);
                    }
                }
                Decision::Preempt(p) => fx.append(self.preempt(&p, now)),
            }
        }
        for job in waiting_updates {
            if let (Some(conn), Some(position)) = (self.holders.get(&job), self.position(job)) {
                let reason = self.jobs[&job].reason.clone();
                fx.to_client(*conn, Reply::Waiting { id: job, position, reason });
            }
        }
        fx
    }

    /// Starts one job where the scheduler placed it (its books hold the allocation): its
    /// nodes' agents and its holder are told.
    fn start(
        &mut self,
        start: JobStart,
        backfilled: bool,
        borrowed_from: &[String],
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        let id = start.job;
        let Some(job) = self.jobs.get_mut(&id) else { return fx };
        job.state = JobState::Running;
        job.reason = "None".into();
        job.start_time = Some(now);
        job.partition = start.partition.clone();
        job.time_limit = start.time_limit.map(|d| d.as_secs());
        fx.append(self.mail(id, MailEvent::Begin, now));
        let Some(job) = self.jobs.get_mut(&id) else { return fx };
        job.granted = start
            .nodes
            .iter()
            .map(|g| GrantedNode {
                node: g.node.clone(),
                cpus: g.cpus.clone(),
                memory: g.memory.get(),
                gpus: g.gpus.clone(),
                exclusive: g.exclusive,
                tasks: g.tasks.iter().map(|t| t.cpus.clone()).collect(),
            })
            .collect();
        let attempt = job.attempt;
        self.touch_job(id);
        self.wake_dependents(id);
        let names: Vec<String> = start.nodes.iter().map(|g| g.node.clone()).collect();
        let mut detail = format!("attempt {attempt} on {}", names.join(","));
        if backfilled {
            detail.push_str(" (backfilled)");
        }
        if !borrowed_from.is_empty() {
            detail.push_str(&format!(" on quota borrowed from {}", borrowed_from.join(",")));
        }
        self.event(now, Some(id), None, "start", detail);
        for n in &names {
            if let Some(launch) = self.launch_for(id, n) {
                fx.to_agent(n, ToAgent::Start(Box::new(launch)));
            }
        }
        if let Some(conn) = self.holders.get(&id).copied()
            && let Some(grant) = self.grant_of(id)
        {
            fx.to_client(conn, Reply::Granted(grant));
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{alloc, batch, cluster, replies_to, root, starts};
    use crate::controller::state::{JobState, Mono};
    use crate::protocol::{FromAgent, JobId, Reply, ToAgent};

    #[test]
    fn a_gang_starts_on_all_its_nodes_at_once_or_not_at_all() {
        let mut c = cluster();
        c.submit(1, &root(), batch(3, 3), 10);
        let fx = c.schedule(10);
        let s = starts(&fx);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].0 == "n1" && s.iter().all(|(_, j, a)| *j == 1 && *a == 1));
        // A second 3-node job waits, with a reason, and nothing of it starts.
        c.submit(2, &root(), batch(3, 6), 11);
        assert!(starts(&c.schedule(11)).is_empty());
        assert_eq!(c.job_info(2).expect("job").reason, "Resources");
        // A small one fits beside the first and delays the wide one's reservation in nothing
        // (the first has no time limit, so the wide one's start is unknown): backfilled.
        c.submit(3, &root(), batch(1, 1), 12);
        assert_eq!(starts(&c.schedule(12)).len(), 1);
        let positions: Vec<(JobId, Option<usize>)> =
            c.queue().iter().map(|j| (j.id, j.position)).collect();
        assert_eq!(positions, [(1, None), (2, Some(1)), (3, None)]);
        assert_eq!(c.job(3).expect("job").state, JobState::Running);
        let ended3 = FromAgent::JobEnded { job: 3, attempt: 1, exit_code: 0, message: None };
        let node3 = c.job(3).expect("job").nodes()[0].clone();
        c.from_agent(100 + node3[1..].parse::<u64>().expect("n<i>"), &node3, ended3, 13, Mono(13));
        // The first ends: the second starts on all three.
        let fx = c.from_agent(
            101,
            "n1",
            FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 0, message: None },
            20,
            Mono(20),
        );
        assert_eq!(
            fx.iter()
                .filter(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Release { .. }, .. }))
                .count(),
            3
        );
        assert_eq!(starts(&c.schedule(20)).len(), 3);
        assert_eq!(c.job(1).expect("job").state, JobState::Completed);
    }

    #[test]
    fn a_waiting_allocation_is_told_its_place_and_reason_then_granted() {
        let mut c = cluster();
        c.submit(1, &root(), batch(3, 6), 0);
        c.schedule(0);
        c.submit(7, &root(), alloc(1, 1), 1);
        let fx = c.schedule(1);
        assert!(
            matches!(&replies_to(&fx, 7)[..], [Reply::Waiting { id: 2, position: 1, reason }] if reason == "Resources"),
            "{fx:?}"
        );
        assert!(c.schedule(2).is_empty(), "nothing changed, no pass");
        let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 0, message: None };
        c.from_agent(101, "n1", ended, 3, Mono(3));
        let fx = c.schedule(3);
        let Some(Reply::Granted(g)) = replies_to(&fx, 7).first().copied() else {
            panic!("no grant: {fx:?}")
        };
        assert_eq!((g.job, g.attempt, g.ntasks, g.nodes.len()), (2, 1, 1, 1));
        assert!(g.env.iter().any(|(k, v)| k == "GANGWAY_JOB_ID" && v == "2"));
    }
}
