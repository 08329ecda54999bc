//! `--test-only`: when and where a submission would start, nothing submitted. The submission
//! is checked as a real one is (`checked_job`), then tried on a copy of the scheduler's books
//! (the running jobs' allocations and every queued job, `books::fresh_books`): one unbounded
//! pass over the copy decides it, as the next real pass would if nothing changed meanwhile.
//! Its dependency is taken as met (the answer is when it could start once it is).

use gangway_scheduler::{Budget, Decision, Timestamp};

use super::client::book;
use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Caller, Cluster};
use crate::protocol::{Reply, Submission};

impl Cluster {
    /// Answers [`Reply::WouldStart`] (or the refusal a submission would get).
    pub fn test_only(&self, conn: ConnId, caller: &Caller, sub: Submission, now: u64) -> Effects {
        let id = self.next_id;
        let (mut job, fits) = match self.checked_job(id, caller, sub, now) {
            Ok(checked) => checked,
            Err(reply) => return Effects::reply_and_close(conn, reply),
        };
        job.waiting_on = None;
        let at = Timestamp(now);
        let mut books = self.fresh_books(at);
        for other in self.active.iter().filter_map(|i| self.jobs.get(i)) {
            if Cluster::queueable(other, at) {
                // Refused now only if the configuration changed under it; it waits either way.
                let _ = books.submit(self.new_job(other), at);
            }
        }
        let tasks = job.ntasks();
        let cpus_per_task = job.sub.shape.cpus_per_task.unwrap_or(1);
        let mut answer = Reply::WouldStart {
            id,
            start: None,
            cpus: tasks * cpus_per_task,
            nodes: Vec::new(),
            partition: job.partition.clone(),
        };
        if fits {
            if let Err(refusal) = book(&mut books, self.new_job(&job), now) {
                return Effects::reply_and_close(conn, refusal);
            }
            let pass = books.pass(at, Budget::unlimited());
            let decided = pass.decisions.into_iter().find(|d| d.job() == id);
            if let Reply::WouldStart { start, cpus, nodes, partition, .. } = &mut answer {
                match decided {
                    Some(Decision::Start { start: s, .. }) => {
                        *start = Some(now);
                        *cpus = s.nodes.iter().map(|n| n.cpus.len() as u32).sum();
                        *nodes = s.nodes.iter().map(|n| n.node.clone()).collect();
                        partition.clone_from(&s.partition);
                    }
                    Some(Decision::Wait { expected: Some(e), .. }) => {
                        *start = Some(e.at.as_millis()).filter(|t| *t != u64::MAX);
                        *nodes = e.nodes;
                    }
                    _ => {}
                }
            }
        }
        Effects::reply_and_close(conn, answer)
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::scenario::{alice, batch, cluster, replies_to, root, starts};
    use crate::controller::state::Cluster;
    use crate::protocol::{Reply, Submission};

    fn ask(c: &Cluster, sub: Submission, now: u64) -> Reply {
        let fx = c.test_only(50, &root(), sub, now);
        replies_to(&fx, 50).first().copied().cloned().expect("a reply")
    }

    #[test]
    fn an_idle_cluster_would_start_it_now_and_nothing_is_submitted() {
        let mut c = cluster();
        let Reply::WouldStart { id, start, cpus, nodes, partition } = ask(&c, batch(2, 4), 1_000)
        else {
            panic!("refused")
        };
        assert_eq!(
            (id, start, cpus, nodes.len(), partition.as_str()),
            (1, Some(1_000), 4, 2, "batch")
        );
        assert!(c.queue().is_empty(), "nothing submitted");
        assert!(starts(&c.schedule(1_000)).is_empty());
    }

    #[test]
    fn behind_a_running_job_it_starts_when_that_ones_time_limit_ends() {
        let mut c = cluster();
        let mut wide = batch(3, 3);
        wide.shape.time_limit_secs = Some(600);
        wide.shape.exclusive = true;
        c.submit(1, &alice(), wide, 0);
        assert_eq!(starts(&c.schedule(0)).len(), 3);
        let Reply::WouldStart { id, start, nodes, .. } = ask(&c, batch(1, 1), 5_000) else {
            panic!("refused")
        };
        assert_eq!(id, 2);
        assert_eq!(start, Some(600_000), "when job 1 reaches its limit");
        assert_eq!(nodes.len(), 1);
        // A submission it would refuse is refused the same way.
        let mut bad = batch(1, 1);
        bad.shape.partition = Some("nope".into());
        assert!(matches!(ask(&c, bad, 5_000), Reply::Error { .. }));
    }
}
