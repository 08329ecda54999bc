//! Whether a node's agent is alive, judged on the controller's monotonic clock, and what its
//! silence and its fences do to the node's jobs. Pure: the time comes in as a [`Mono`] value.
//!
//! The rule (docs/cluster.md, "Fencing"): an agent holds a lease until the send time of its
//! last acknowledged heartbeat plus `lost_timeout - fence_margin`; the controller declares the
//! node lost only after hearing nothing from it for `lost_timeout`, however its connection
//! ended. So every lease has run out, and the node's fencer has killed its jobs, `fence_margin`
//! before the controller may requeue them.

use std::time::Duration;

use super::{Cluster, ConnId, Effect, Health, JobState};
use crate::protocol::{JobId, ToAgent};

/// Milliseconds on the controller's monotonic clock (from an arbitrary origin). Wall time can
/// jump (NTP, an administrator); liveness must not, so it never uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mono(pub u64);

impl Mono {
    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Mono) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// What a node's silence means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// Silent for `suspect_timeout`: no new work.
    Suspect,
    /// Silent for `lost_timeout`: its lease ran out `fence_margin` ago; requeue its jobs.
    Lost,
}

/// The verdict on a node last heard at `last_heard` (None: not since this controller began
/// listening at `listening_since`), at `now`.
pub fn verdict(
    last_heard: Option<Mono>,
    listening_since: Mono,
    now: Mono,
    suspect: Duration,
    lost: Duration,
) -> Verdict {
    // A node this controller has not heard yet counts as heard when it began listening: until
    // then its agent found no one listening and kept its lease, never longer than a lease past
    // that moment.
    let heard = last_heard.unwrap_or(listening_since).max(listening_since);
    let silent = now.since(heard);
    if silent >= lost {
        Verdict::Lost
    } else if silent >= suspect {
        Verdict::Suspect
    } else {
        Verdict::Alive
    }
}

/// How a job lost its part on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PartLost {
    /// The node was declared lost: its agent is gone, the job must avoid it (unless the job
    /// named it with `--nodelist`: then it waits for it).
    NodeLost,
    /// The node's agent, alive, killed the job's processes there (its lease ran out, or its
    /// previous life left them): the node is fine and is told the attempt is over.
    Fenced,
}

impl Cluster {
    /// The controller listens from `mono` on: every node counts as heard at that moment, so none
    /// is declared lost before `lost_timeout` after it (agents extend their leases while their
    /// connections are refused, see docs/cluster.md). Until this is called nothing is lost.
    pub fn listening(&mut self, mono: Mono) {
        self.listening_since = Some(mono);
    }

    /// A message arrived on `conn`, claimed by `node`: if that is the node's current agent
    /// connection, the node was heard now.
    pub(super) fn heard(&mut self, conn: ConnId, node: &str, mono: Mono) {
        if let Some(rec) = self.nodes.get_mut(node)
            && rec.conn == Some(conn)
            && rec.health != Health::Down
        {
            rec.last_heard = Some(mono.max(rec.last_heard.unwrap_or_default()));
        }
    }

    /// The acknowledgement of heartbeat `seq`, if it came on the node's current connection and
    /// the node is not lost (an ack after that would extend a lease the controller has given
    /// up on).
    pub(super) fn ack(&self, conn: ConnId, node: &str, seq: u64) -> Option<Effect> {
        let rec = self.nodes.get(node)?;
        (rec.conn == Some(conn) && rec.health != Health::Down)
            .then_some(Effect::ToAgentConn { conn, msg: ToAgent::Ack { seq } })
    }

    /// Marks silent nodes suspect, and loses those silent for the lost timeout.
    pub(super) fn check_liveness(&mut self, now: u64, mono: Mono) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(since) = self.listening_since else { return fx };
        let (suspect, lost) = (self.config.suspect_timeout, self.config.lost_timeout);
        let mut to_lose = Vec::new();
        let mut to_suspect = Vec::new();
        for rec in self.nodes.values() {
            if rec.health == Health::Down {
                continue;
            }
            match verdict(rec.last_heard, since, mono, suspect, lost) {
                Verdict::Lost if rec.conn.is_some() => {
                    to_lose.push((rec.name.clone(), "no heartbeat within the lost timeout"))
                }
                Verdict::Lost => to_lose.push((
                    rec.name.clone(),
                    "its agent disconnected and was silent for the lost timeout",
                )),
                Verdict::Suspect if rec.health == Health::Up => to_suspect.push(rec.name.clone()),
                _ => {}
            }
        }
        for name in to_suspect {
            if let Some(rec) = self.nodes.get_mut(&name) {
                rec.health = Health::Suspect;
                rec.reason = Some("missed heartbeats".into());
            }
            self.event(now, None, Some(&name), "suspect", "missed heartbeats".into());
            self.sync_health(&name);
        }
        for (name, why) in to_lose {
            fx.extend(self.node_lost(&name, why, now, None));
        }
        fx
    }

    /// `node`'s agent killed attempt `attempt` of `job` there: if that is the job's current
    /// attempt, it goes back to the queue (or fails, as on a node loss) without avoiding the
    /// node; else the report is late and the agent just forgets the attempt.
    pub(super) fn fenced(
        &mut self,
        node: &str,
        job: JobId,
        attempt: u32,
        reason: &str,
        now: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let current = self.jobs.get(&job).is_some_and(|j| {
            j.state == JobState::Running
                && j.attempt == attempt
                && j.granted.iter().any(|g| g.node == node)
        });
        if current {
            self.event(now, Some(job), Some(node), "fenced", reason.to_string());
            self.lose_part(job, node, reason, PartLost::Fenced, now, &mut fx);
        } else {
            self.event(
                now,
                Some(job),
                Some(node),
                "late_report",
                format!("attempt {attempt} fenced ({reason}) ignored"),
            );
            fx.push(Effect::ToAgent {
                node: node.to_string(),
                msg: ToAgent::Release { job, attempt },
            });
        }
        self.needs_schedule = true;
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{batch, cluster, config, registration, root, starts};
    use super::*;
    use crate::protocol::{FromAgent, JobKind};

    fn conn_of(node: &str) -> ConnId {
        100 + node[1..].parse::<u64>().expect("n<i>")
    }

    /// Heartbeats from every node but `silent`, at `t` (wall and monotonic alike).
    fn beat(c: &mut Cluster, silent: &str, t: u64) {
        for i in 1..=3u64 {
            let name = format!("n{i}");
            if name != silent {
                c.from_agent(
                    100 + i,
                    &name,
                    FromAgent::Heartbeat { load: 0.0, seq: t },
                    t,
                    Mono(t),
                );
            }
        }
    }

    fn releases(fx: &[Effect]) -> Vec<(String, JobId, u32)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::ToAgent { node, msg: ToAgent::Release { job, attempt } } => {
                    Some((node.clone(), *job, *attempt))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dropped_connection_is_no_loss_until_the_node_is_silent_for_the_lost_timeout() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 2), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let hb = FromAgent::Heartbeat { load: 0.0, seq: 1 };
        c.from_agent(conn_of(&node), &node, hb, 1000, Mono(1000));
        c.agent_gone(conn_of(&node), 1100);
        for t in (1200..7000).step_by(100) {
            beat(&mut c, &node, t);
            c.tick(t, Mono(t));
        }
        // Its agent may hold a lease until 1000 + 5.5 s: the job runs on, the node takes no
        // new work.
        assert_eq!(c.job(1).expect("job").state, JobState::Running);
        assert_eq!(c.node_info(&node, 6900).expect("node").state, "suspect");
        beat(&mut c, &node, 7000);
        c.tick(7000, Mono(7000));
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        assert_eq!(c.node_info(&node, 7000).expect("node").state, "down");
    }

    #[test]
    fn wall_clock_jumps_lose_no_node() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 2), 0);
        c.schedule(0);
        beat(&mut c, "", 1000);
        // NTP steps the wall clock an hour ahead: no one was silent for an hour.
        let fx = c.tick(3_601_000, Mono(1100));
        assert!(releases(&fx).is_empty(), "{fx:?}");
        assert_eq!(c.job(1).expect("job").state, JobState::Running);
        assert!(c.nodes(3_601_000).iter().all(|n| n.state != "down"));
    }

    #[test]
    fn heartbeats_are_acknowledged_on_their_own_connection_until_the_node_is_lost() {
        let mut c = cluster();
        let fx = c.from_agent(201, "n1", FromAgent::Register(registration("n1")), 10, Mono(10));
        assert!(
            fx.iter().any(|e| matches!(
                e,
                Effect::ToAgent {
                    msg: ToAgent::Welcome { lease_ms: 5500, heartbeat_ms: 1000 },
                    ..
                }
            )),
            "the lease is lost_timeout - fence_margin: {fx:?}"
        );
        let fx = c.from_agent(201, "n1", FromAgent::Heartbeat { load: 0.0, seq: 5 }, 20, Mono(20));
        assert!(
            matches!(fx[..], [Effect::ToAgentConn { conn: 201, msg: ToAgent::Ack { seq: 5 } }]),
            "{fx:?}"
        );
        // The connection n1 had before (replaced): its heartbeats extend nothing.
        let fx = c.from_agent(101, "n1", FromAgent::Heartbeat { load: 0.0, seq: 6 }, 30, Mono(30));
        assert!(fx.is_empty(), "{fx:?}");
        for t in (100..=6100).step_by(500) {
            beat(&mut c, "n1", t);
            c.tick(t, Mono(t));
        }
        assert_eq!(c.node_info("n1", 6100).expect("node").state, "down");
        // A heartbeat that was on its way when the node was declared lost: no ack, no lease.
        let fx =
            c.from_agent(201, "n1", FromAgent::Heartbeat { load: 0.0, seq: 7 }, 6200, Mono(6200));
        assert!(fx.is_empty(), "{fx:?}");
        assert_eq!(c.node_info("n1", 6200).expect("node").state, "down", "and no resurrection");
    }

    #[test]
    fn a_restarted_controller_loses_no_node_before_lost_timeout_after_it_listens() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 2), 0);
        c.schedule(0);
        let dirty = c.take_dirty();
        // Wall time and this controller's monotonic clock have nothing in common.
        let mut again = Cluster::new(config(), 0, dirty.nodes, dirty.jobs, dirty.next_id, 90_000);
        assert!(releases(&again.tick(90_000, Mono(1_000_000))).is_empty(), "not listening yet");
        again.listening(Mono(2_000_000));
        assert!(releases(&again.tick(96_000, Mono(2_005_999))).is_empty());
        assert_eq!(again.job(1).expect("job").state, JobState::Running);
        again.tick(96_100, Mono(2_006_000));
        assert_eq!(again.job(1).expect("job").state, JobState::Pending, "lost, requeued");
    }

    #[test]
    fn a_fence_requeues_the_job_without_avoiding_the_node_and_late_fences_are_released() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 2), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let fenced =
            |attempt| FromAgent::Fenced { job: 1, attempt, reason: "lease ran out".into() };
        let fx = c.from_agent(conn_of(&node), &node, fenced(1), 500, Mono(500));
        assert_eq!(releases(&fx), vec![(node.clone(), 1, 1)], "the fencing node forgets it");
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        assert!(job.excluded.is_empty(), "its node is fine: {:?}", job.excluded);
        assert_eq!(c.node_info(&node, 500).expect("node").state, "idle");
        // Runs again once the node says the killed processes are gone (see `release`).
        let gone = FromAgent::Released { job: 1, attempt: 1 };
        c.from_agent(conn_of(&node), &node, gone, 510, Mono(510));
        assert_eq!(starts(&c.schedule(510)).len(), 1, "runs again at once");
        // The same fence reported again (with the next registration): late, just released.
        let fx = c.from_agent(conn_of(&node), &node, fenced(1), 600, Mono(600));
        assert_eq!(releases(&fx), vec![(node.clone(), 1, 1)]);
        assert_eq!(c.job(1).expect("job").attempt, 2);
        let dirty = c.take_dirty();
        assert!(dirty.events.iter().any(|e| e.kind == "fenced"));
        assert!(dirty.events.iter().any(|e| e.kind == "late_report"));
    }

    #[test]
    fn a_restarted_agent_reports_what_its_previous_life_left_and_those_jobs_run_again() {
        let mut c = cluster();
        let mut run = batch(1, 2);
        run.kind = JobKind::Alloc;
        c.submit(7, &root(), run, 0);
        c.submit(1, &root(), batch(1, 2), 0);
        c.schedule(0);
        let node = c.job(2).expect("job").granted[0].node.clone();
        let mut reg = registration(&node);
        reg.fenced = vec![(2, 1, "the agent restarted".into())];
        let fx = c.from_agent(900, &node, FromAgent::Register(reg), 800, Mono(800));
        assert!(releases(&fx).contains(&(node.clone(), 2, 1)), "{fx:?}");
        let job = c.job(2).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        assert!(job.excluded.is_empty());
        assert_eq!(c.job(1).expect("job").state, JobState::Running, "the other job is untouched");
    }

    #[test]
    fn a_job_that_named_a_lost_node_waits_for_it_and_starts_when_it_returns() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.shape.nodelist = vec!["n2".into()];
        c.submit(1, &root(), sub, 0);
        assert_eq!(starts(&c.schedule(0)), vec![("n2".to_string(), 1, 1)]);
        for t in (500..=6500).step_by(500) {
            beat(&mut c, "n2", t);
            c.tick(t, Mono(t));
        }
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        assert!(job.excluded.is_empty(), "a named node is never avoided: {:?}", job.excluded);
        assert!(starts(&c.schedule(6500)).is_empty());
        assert_eq!(c.job_info(1).expect("job").reason, "NodeDown");
        // n2's agent comes back: the job starts there.
        c.from_agent(202, "n2", FromAgent::Register(registration("n2")), 9000, Mono(9000));
        assert_eq!(starts(&c.schedule(9000)), vec![("n2".to_string(), 1, 2)]);

        // A job requeued by an older controller, which did avoid the node it named: it still
        // starts there.
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.shape.nodelist = vec!["n3".into()];
        c.submit(1, &root(), sub, 0);
        if let Some(j) = c.jobs.get_mut(&1) {
            j.excluded = vec!["n3".into()];
        }
        assert_eq!(starts(&c.schedule(0)), vec![("n3".to_string(), 1, 1)]);
    }

    const S: Duration = Duration::from_secs(3);
    const L: Duration = Duration::from_secs(6);

    #[test]
    fn silence_makes_a_node_suspect_then_lost() {
        let v = |heard, now| verdict(Some(Mono(heard)), Mono(0), Mono(now), S, L);
        assert_eq!(v(1000, 3999), Verdict::Alive);
        assert_eq!(v(1000, 4000), Verdict::Suspect);
        assert_eq!(v(1000, 6999), Verdict::Suspect);
        assert_eq!(v(1000, 7000), Verdict::Lost);
    }

    #[test]
    fn a_node_not_heard_yet_counts_as_heard_when_the_controller_began_listening() {
        // A controller that started at 50 s never loses a node before 56 s, whatever the node
        // did before (its agent kept its lease while no one listened).
        let v = |heard: Option<u64>, now| verdict(heard.map(Mono), Mono(50_000), Mono(now), S, L);
        assert_eq!(v(None, 55_999), Verdict::Suspect);
        assert_eq!(v(None, 56_000), Verdict::Lost);
        assert_eq!(v(Some(10), 55_999), Verdict::Suspect, "heard before the start counts as at it");
    }

    #[test]
    fn a_clock_that_seems_to_go_back_is_no_silence() {
        assert_eq!(Mono(5).since(Mono(9)), Duration::ZERO);
        assert_eq!(verdict(Some(Mono(9)), Mono(0), Mono(5), S, L), Verdict::Alive);
    }
}
