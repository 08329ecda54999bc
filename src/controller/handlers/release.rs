//! A requeued job's next attempt waits until its previous attempt is gone from every node.
//!
//! When a job loses one of its nodes, its other nodes are told to end it (SIGTERM, then SIGKILL
//! after `kill_grace`). Starting the next attempt at once would let it run beside what is left of
//! the previous one for up to that grace. So each node told to end an attempt must confirm that
//! nothing of it is left ([`FromAgent::Released`](crate::protocol::FromAgent::Released), or, after
//! a reconnection, a registration that no longer mentions it), or be declared lost itself (its
//! lease then guarantees its fencer killed the job there, docs/cluster.md "Fencing"). Until then
//! the job is pending, keeps its place in the queue, and its reason names the nodes.
//!
//! Pure, like every handler: the time comes in as a value.

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, JobState};
use crate::protocol::JobId;

impl Cluster {
    /// Attempt `attempt` of `job` is over and `nodes` were told to end it: the next attempt
    /// waits for each of them.
    pub(super) fn await_release(&mut self, job: JobId, attempt: u32, nodes: Vec<String>, now: u64) {
        if nodes.is_empty() {
            return;
        }
        let names = node_list(&nodes);
        let Some(j) = self.jobs.get_mut(&job) else { return };
        for n in nodes {
            if !j.releasing.iter().any(|(m, a)| *m == n && *a >= attempt) {
                j.releasing.retain(|(m, _)| *m != n);
                j.releasing.push((n, attempt));
            }
        }
        self.touch_job(job);
        let detail = format!("attempt {} waits for {names} to end attempt {attempt}", attempt + 1);
        self.event(now, Some(job), None, "release_wait", detail);
    }

    /// `node` says nothing of `job` up to `attempt` is left there.
    pub(super) fn released(&mut self, node: &str, job: JobId, attempt: u32, now: u64) -> Effects {
        self.settle(job, node, |a| a <= attempt, "confirmed", now);
        Effects::new()
    }

    /// `node` registered, still running `running` and still ending `releasing`: every attempt a
    /// job waits for there that it mentions in neither is gone (its confirmation was lost with
    /// the connection, or its agent restarted and swept it).
    pub(super) fn settle_releases(
        &mut self,
        node: &str,
        running: &[(JobId, u32)],
        releasing: &[(JobId, u32)],
        now: u64,
    ) {
        let waiting: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| self.jobs[id].releasing.iter().any(|(n, _)| n == node))
            .copied()
            .collect();
        for job in waiting {
            let mentioned: Vec<u32> = running
                .iter()
                .chain(releasing)
                .filter(|(j, _)| *j == job)
                .map(|(_, a)| *a)
                .collect();
            let gone = |a: u32| !mentioned.iter().any(|m| *m <= a);
            self.settle(job, node, gone, "not mentioned when its agent registered", now);
        }
    }

    /// `node` was declared lost: whatever it still had of any job was fenced by its lease, so
    /// no job waits for it any longer.
    pub(super) fn lost_releases(&mut self, node: &str, now: u64) {
        let waiting: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| self.jobs[id].releasing.iter().any(|(n, _)| n == node))
            .copied()
            .collect();
        for job in waiting {
            self.settle(job, node, |_| true, "the node was lost; its lease fenced it", now);
        }
    }

    /// Takes `node` off `job`'s wait if `done` says its awaited attempt is gone.
    fn settle(&mut self, job: JobId, node: &str, done: impl Fn(u32) -> bool, how: &str, now: u64) {
        let Some(j) = self.jobs.get_mut(&job) else { return };
        let Some(at) = j.releasing.iter().position(|(n, a)| n == node && done(*a)) else { return };
        let (_, attempt) = j.releasing.remove(at);
        let left = j.releasing.is_empty();
        self.touch_job(job);
        self.event(
            now,
            Some(job),
            Some(node),
            "released",
            format!("attempt {attempt} gone ({how})"),
        );
        if left {
            self.needs_schedule = true;
        }
    }

    /// Why `job` may not start yet, if it still waits for nodes to end an earlier attempt.
    pub(crate) fn release_reason(&self, job: JobId) -> Option<String> {
        let j = self.jobs.get(&job).filter(|j| j.state == JobState::Pending)?;
        let attempt = j.releasing.iter().map(|(_, a)| *a).max()?;
        let nodes: Vec<String> = j.releasing.iter().map(|(n, _)| n.clone()).collect();
        Some(format!("PreviousAttempt: attempt {attempt} still ending on {}", node_list(&nodes)))
    }
}

fn node_list(nodes: &[String]) -> String {
    gangway_launcher::nodes::hostlist::compress(nodes).unwrap_or_else(|_| nodes.join(","))
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::{Effect, Effects};
    use crate::controller::scenario::{batch, cluster, registration, root, starts};
    use crate::controller::state::{Cluster, JobState, Mono};
    use crate::protocol::{FromAgent, JobId, ToAgent};

    fn conn(node: &str) -> u64 {
        100 + node[1..].parse::<u64>().expect("n<i>")
    }

    /// Heartbeats from every node but those in `silent`, and ticks, from `from` to `to` (ms).
    fn silence(c: &mut Cluster, silent: &[&str], from: u64, to: u64) -> Effects {
        let mut fx = Effects::new();
        for t in (from..=to).step_by(500) {
            for i in 1..=3 {
                let name = format!("n{i}");
                if !silent.contains(&name.as_str()) {
                    let hb = FromAgent::Heartbeat { load: 0.0, seq: t };
                    fx.append(c.from_agent(conn(&name), &name, hb, t, Mono(t)));
                }
            }
            fx.append(c.tick(t, Mono(t)));
        }
        fx
    }

    fn released(c: &mut Cluster, node: &str, job: JobId, attempt: u32, t: u64) {
        c.from_agent(conn(node), node, FromAgent::Released { job, attempt }, t, Mono(t));
    }

    fn releases_to(fx: &[Effect], job: JobId) -> Vec<String> {
        let mut nodes: Vec<String> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::ToAgent { node, msg: ToAgent::Release { job: j, .. } } if *j == job => {
                    Some(node.clone())
                }
                _ => None,
            })
            .collect();
        nodes.sort();
        nodes
    }

    /// A two-node job on n1 and n2; n2 goes silent until it is lost (at 7 s).
    fn lose_n2() -> (Cluster, Effects) {
        let mut c = cluster();
        c.submit(1, &root(), batch(2, 2), 0);
        let s = starts(&c.schedule(0));
        assert_eq!(s.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        let fx = silence(&mut c, &["n2"], 1000, 7000);
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        (c, fx)
    }

    #[test]
    fn the_next_attempt_waits_until_every_surviving_node_confirms_the_last_one_is_gone() {
        let (mut c, fx) = lose_n2();
        assert_eq!(releases_to(&fx, 1), ["n1"], "the lost node is not told; its lease fenced it");
        assert_eq!(c.job(1).expect("job").releasing, [("n1".to_string(), 1)]);
        // n1 ends attempt 1 (TERM, then KILL after the grace): the job may not start meanwhile,
        // though n1 and n3 have room for it.
        for t in [7000, 7500, 9000] {
            assert!(starts(&c.schedule(t)).is_empty(), "started at {t} beside attempt 1");
            silence(&mut c, &["n2"], t, t);
        }
        let reason = c.job_info(1).expect("job").reason;
        assert!(reason.contains("attempt 1") && reason.contains("n1"), "{reason}");
        // A confirmation from another node, or of an older attempt, settles nothing.
        released(&mut c, "n3", 1, 1, 9100);
        released(&mut c, "n1", 1, 0, 9100);
        assert!(starts(&c.schedule(9100)).is_empty());
        released(&mut c, "n1", 1, 1, 9200);
        let s = starts(&c.schedule(9200));
        assert_eq!(s, [("n1".to_string(), 1, 2), ("n3".to_string(), 1, 2)]);
        assert!(c.job(1).expect("job").releasing.is_empty());
        let events = c.take_dirty().events;
        assert!(events.iter().any(|e| e.kind == "release_wait" && e.detail.contains("n1")));
        assert!(events.iter().any(|e| e.kind == "released" && e.node.as_deref() == Some("n1")));
    }

    #[test]
    fn a_waiting_job_keeps_its_age_and_waits_for_what_started_meanwhile() {
        let (mut c, _) = lose_n2();
        // Submitted after the requeue: the requeued job may not run yet, so this one starts
        // (like a backfill); the requeued one then starts when there is room, never before
        // its nodes confirmed.
        c.submit(2, &root(), batch(1, 2), 7100);
        let s = starts(&c.schedule(7100));
        assert!(s.iter().all(|(_, j, _)| *j == 2), "only the new job: {s:?}");
        released(&mut c, "n1", 1, 1, 7200);
        let s = starts(&c.schedule(7200));
        assert!(s.iter().all(|(_, j, _)| *j == 1), "then the requeued one: {s:?}");
        assert_eq!(c.job(1).expect("job").submit_time, 0, "it keeps its submission time");
    }

    #[test]
    fn a_registration_that_no_longer_mentions_the_attempt_confirms_it() {
        let (mut c, _) = lose_n2();
        let mut reg = registration("n1");
        // The connection broke while n1 was ending attempt 1: it says so when it is back.
        reg.releasing = vec![(1, 1)];
        c.from_agent(201, "n1", FromAgent::Register(reg.clone()), 7100, Mono(7100));
        assert!(starts(&c.schedule(7100)).is_empty());
        // Still running it (the release never arrived): told again, and still waited for.
        reg.releasing = Vec::new();
        reg.running = vec![(1, 1)];
        let fx = c.from_agent(202, "n1", FromAgent::Register(reg.clone()), 7200, Mono(7200));
        assert_eq!(releases_to(&fx, 1), ["n1"]);
        assert!(starts(&c.schedule(7200)).is_empty());
        // Its confirmation was lost with the connection: the next registration mentions it no more.
        reg.running = Vec::new();
        c.from_agent(203, "n1", FromAgent::Register(reg), 7300, Mono(7300));
        assert_eq!(starts(&c.schedule(7300)).len(), 2);
    }

    #[test]
    fn a_surviving_node_that_is_lost_itself_is_waited_for_no_longer() {
        let (mut c, _) = lose_n2();
        // n1 goes silent too: lost at 7 s + lost_timeout, its lease has fenced the job there.
        silence(&mut c, &["n1", "n2"], 7500, 13500);
        let job = c.job(1).expect("job");
        assert!(job.releasing.is_empty(), "{:?}", job.releasing);
        assert!(!c.job_info(1).expect("job").reason.contains("attempt 1"));
    }

    #[test]
    fn after_a_fence_every_node_of_the_attempt_confirms_the_fencing_one_too() {
        let mut c = cluster();
        c.submit(1, &root(), batch(2, 2), 0);
        c.schedule(0);
        let fenced = FromAgent::Fenced { job: 1, attempt: 1, reason: "lease ran out".into() };
        let fx = c.from_agent(conn("n2"), "n2", fenced, 500, Mono(500));
        assert_eq!(releases_to(&fx, 1), ["n1", "n2"]);
        released(&mut c, "n2", 1, 1, 600);
        assert!(starts(&c.schedule(600)).is_empty(), "n1 still ends it");
        released(&mut c, "n1", 1, 1, 700);
        assert_eq!(starts(&c.schedule(700)).len(), 2);
    }

    #[test]
    fn the_wait_survives_a_controller_restart_and_ends_with_a_cancel() {
        let (mut c, _) = lose_n2();
        let dirty = c.take_dirty();
        let mut again = Cluster::new(c.config().clone(), 0, dirty.nodes, dirty.jobs, 2, 8000);
        again.listening(Mono(0));
        assert_eq!(again.job(1).expect("job").releasing, [("n1".to_string(), 1)]);
        let mut reg = registration("n1");
        reg.releasing = vec![(1, 1)];
        again.from_agent(301, "n1", FromAgent::Register(reg), 8100, Mono(100));
        again.from_agent(303, "n3", FromAgent::Register(registration("n3")), 8100, Mono(100));
        assert!(starts(&again.schedule(8100)).is_empty());
        let fx = again.cancel(9, &root(), &[1], &[], None, None, 8200);
        assert!(starts(&fx).is_empty());
        let job = again.job(1).expect("job");
        assert_eq!(job.state, JobState::Cancelled);
        assert!(job.releasing.is_empty());
    }
}
