//! A scheduling pass: the allocator's decisions over the pending jobs, the starts (agents told,
//! holders granted), and the waiting clients told their place; waiting steps retried first.

use gangway_scheduler::JobStart;
use gangway_scheduler::PendingJob;
use gangway_scheduler::allocator::{self, Decision};

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, GrantedNode, JobState};
use crate::protocol::{Reply, ToAgent};

impl Cluster {
    /// Runs the allocator if anything changed; starts what fits.
    pub fn schedule(&mut self, now: u64) -> Effects {
        let mut fx = self.retry_steps(now);
        if !self.needs_schedule {
            return fx;
        }
        self.needs_schedule = false;
        let pending: Vec<PendingJob> = self
            .active
            .iter()
            .filter(|id| self.jobs[id].state == JobState::Pending)
            .map(|id| PendingJob { id: *id, request: self.jobs[id].request() })
            .collect();
        if pending.is_empty() {
            return fx;
        }
        let decisions = allocator::schedule(&self.alloc, &pending);
        let mut waiting_updates = Vec::new();
        for d in decisions {
            // A requeued job whose previous attempt is still ending somewhere waits, keeping
            // what the allocator chose for it from the jobs after it (its place in the queue).
            let d = match d {
                Decision::Start(start) => match self.release_reason(start.job) {
                    Some(why) => Err((start.job, why)),
                    None => Ok(start),
                },
                Decision::Wait { job, reason } => {
                    Err((job, self.release_reason(job).unwrap_or_else(|| reason.to_string())))
                }
            };
            match d {
                Ok(start) => fx.append(self.start(start, now)),
                Err((job, text)) => {
                    if let Some(j) = self.jobs.get_mut(&job)
                        && j.reason != text
                    {
                        j.reason = text;
                        // Reasons are recomputed after a restart; no need to write each change.
                    }
                    if self.holders.contains_key(&job) {
                        waiting_updates.push(job);
                    }
                }
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

    /// Starts one job where the allocator placed it: its nodes' agents and its holder are told.
    fn start(&mut self, start: JobStart, now: u64) -> Effects {
        let mut fx = Effects::new();
        if self.alloc.allocate(&start).is_err() {
            return fx;
        }
        let id = start.job;
        let Some(job) = self.jobs.get_mut(&id) else { return fx };
        job.state = JobState::Running;
        job.reason = "None".into();
        job.start_time = Some(now);
        job.partition = start.partition.clone();
        job.time_limit = start.time_limit.map(|d| d.as_secs());
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
        let names: Vec<String> = start.nodes.iter().map(|g| g.node.clone()).collect();
        self.event(
            now,
            Some(id),
            None,
            "start",
            format!("attempt {attempt} on {}", names.join(",")),
        );
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
        c.submit(3, &root(), batch(1, 1), 12);
        c.schedule(12);
        let positions: Vec<(JobId, Option<usize>)> =
            c.queue().iter().map(|j| (j.id, j.position)).collect();
        assert_eq!(positions, [(1, None), (2, Some(1)), (3, Some(2))]);
        assert_eq!(c.job_info(3).expect("job").position, Some(2));
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
