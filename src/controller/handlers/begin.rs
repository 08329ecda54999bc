//! `--begin`: a pending job is not eligible before its begin time. It waits with the reason
//! `BeginTime` (as Slurm shows it) outside the scheduler's view, and the tick wakes the
//! scheduler when a begin time passes.

use crate::controller::state::{Cluster, JobState};
use crate::protocol::JobId;

/// Slurm's pending reason for a job whose begin time is still ahead.
const BEGIN_TIME: &str = "BeginTime";

impl Cluster {
    /// Whether job `id` may not start yet because of its `--begin`.
    pub(super) fn before_begin(&self, id: JobId, now: u64) -> bool {
        self.jobs.get(&id).and_then(|j| j.sub.begin).is_some_and(|b| now < b)
    }

    /// Gives the pending jobs still before their begin time the reason `BeginTime`.
    pub(super) fn hold_until_begin(&mut self, now: u64) {
        let waiting: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| self.jobs[id].state == JobState::Pending && self.before_begin(**id, now))
            .copied()
            .collect();
        for id in waiting {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.reason = BEGIN_TIME.into();
            }
        }
    }

    /// Queues the pending jobs whose begin time has passed, and asks for a pass.
    pub(super) fn wake_at_begin(&mut self, now: u64) {
        let due: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| {
                let j = &self.jobs[id];
                j.state == JobState::Pending
                    && j.reason == BEGIN_TIME
                    && !self.before_begin(**id, now)
            })
            .copied()
            .collect();
        for id in due {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.reason = "Priority".into();
                if j.waiting_on.is_some() {
                    // Its reason is its dependency's again (decided in the next pass).
                    self.dependencies_due.insert(id);
                }
            }
            self.touch_job(id);
            self.needs_schedule = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::scenario::{batch, cluster, root, starts};
    use crate::controller::state::Mono;
    use crate::protocol::FromAgent;

    #[test]
    fn a_job_waits_for_its_begin_time_then_starts() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.begin = Some(10_000);
        c.submit(1, &root(), sub, 0);
        c.submit(2, &root(), batch(1, 1), 0);
        let started: Vec<u64> = starts(&c.schedule(0)).into_iter().map(|s| s.1).collect();
        assert_eq!(started, [2], "job 2 does not wait for job 1");
        assert_eq!(c.job(1).expect("job").reason, "BeginTime");
        for t in (1_000..=9_000).step_by(1_000).chain([9_999, 10_000]) {
            for i in 1..=3u64 {
                let hb = FromAgent::Heartbeat { load: 0.0, seq: 0 };
                c.from_agent(100 + i, &format!("n{i}"), hb, t, Mono(t));
            }
            c.tick(t, Mono(t));
            if t < 10_000 {
                assert!(starts(&c.schedule(t)).is_empty(), "at {t}");
            }
        }
        let started: Vec<u64> = starts(&c.schedule(10_000)).into_iter().map(|s| s.1).collect();
        assert_eq!(started, [1]);
    }
}
