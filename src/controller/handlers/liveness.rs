//! Whether a node's agent is alive, judged on the controller's monotonic clock, and what its
//! silence and its fences do to the node's jobs. Pure: the time comes in as a [`Mono`] value.
//!
//! The rule (docs/cluster.md, "Fencing"): an agent holds a lease until the send time of its
//! last acknowledged heartbeat plus `lost_timeout - fence_margin`; the controller declares the
//! node lost only after hearing nothing from it for `lost_timeout`, however its connection
//! ended. So every lease has run out, and the node's fencer has killed its jobs, `fence_margin`
//! before the controller may requeue them.

use std::time::Duration;

use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Cluster, Health, JobState, Mono};
use crate::protocol::{
    JobId, JobKind, MailEvent, Reply, Signal, SignalTarget, StopCause, ToAgent, WarningSignal,
    stop_notice,
};

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
    pub(super) fn ack(&self, conn: ConnId, node: &str, seq: u64) -> Option<Effects> {
        let rec = self.nodes.get(node)?;
        (rec.conn == Some(conn) && rec.health != Health::Down).then(|| {
            let mut fx = Effects::new();
            fx.to_agent_conn(conn, ToAgent::Ack { seq });
            fx
        })
    }

    /// Marks silent nodes suspect, and loses those silent for the lost timeout.
    fn check_liveness(&mut self, now: u64, mono: Mono) -> Effects {
        let mut fx = Effects::new();
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
            fx.append(self.node_lost(&name, why, now, None));
        }
        fx
    }

    /// Liveness and time limits; call every few hundred milliseconds with the wall time (for
    /// records and time limits) and the monotonic clock (for liveness).
    pub fn tick(&mut self, now: u64, mono: Mono) -> Effects {
        let mut fx = self.check_liveness(now, mono);
        fx.append(self.time_limits(now));
        fx.append(self.preemptions_due(now));
        self.wake_at_begin(now);
        self.timed_dependencies(now);
        fx
    }

    /// Running jobs near or past their time limit: the `--signal` warning when it is due; at
    /// the limit Slurm's notice in a batch job's error output, TERM (and their holder told); KILL
    /// and the end as `TIMEOUT` after the grace.
    fn time_limits(&mut self, now: u64) -> Effects {
        let mut fx = Effects::new();
        let kill_grace = self.config.kill_grace.as_millis() as u64;
        let running: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| self.jobs[id].state == JobState::Running)
            .copied()
            .collect();
        for id in running {
            let job = &self.jobs[&id];
            let (Some(start), Some(limit)) = (job.start_time, job.time_limit) else { continue };
            let end = start + limit * 1000;
            if let Some(w) = job.sub.end_handling.warning
                && !job.warned
                && now + w.before_secs * 1000 >= end
            {
                fx.append(self.warn(id, w, now));
            }
            fx.append(self.time_limit_marks(id, start, limit, now));
            if now < end {
                continue;
            }
            let job = &self.jobs[&id];
            match job.stopping_since {
                None => {
                    let attempt = job.attempt;
                    let nodes = job.nodes();
                    let nodes_first = nodes.first().cloned();
                    fx.append(self.stop_notice(id, StopCause::TimeLimit, now));
                    fx.append(self.mail(id, MailEvent::TimeLimit, now));
                    for n in nodes {
                        let (signal, target) = (Signal::TERM, SignalTarget::All);
                        fx.to_agent(&n, ToAgent::Signal { job: id, attempt, signal, target });
                    }
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.stopping_since = Some(now);
                    }
                    if let Some(conn) = self.holders.get(&id) {
                        // Slurm's words, for scripts that look for them in the command's errors.
                        let node = nodes_first.unwrap_or_default();
                        let reason = stop_notice(id, &node, now, StopCause::TimeLimit);
                        let state = JobState::Timeout.name().into();
                        fx.to_client(*conn, Reply::Ended { id, state, reason });
                    }
                }
                Some(t) if now >= t + kill_grace => {
                    let why = "reached its time limit";
                    fx.append(self.finish(id, JobState::Timeout, why, None, now));
                }
                Some(_) => {}
            }
        }
        fx
    }

    /// The `--signal` warning of a running job, once per attempt.
    fn warn(&mut self, id: JobId, w: WarningSignal, now: u64) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get_mut(&id) else { return fx };
        job.warned = true;
        let (attempt, nodes) = (job.attempt, job.nodes());
        // Kept, so that a restarted controller does not warn again.
        self.touch_job(id);
        let (signal, target) = (w.signal, w.target);
        // The batch shell runs on the first node only.
        let nodes = if target == SignalTarget::BatchShell {
            nodes[..1.min(nodes.len())].to_vec()
        } else {
            nodes
        };
        for n in nodes {
            fx.to_agent(&n, ToAgent::Signal { job: id, attempt, signal, target });
        }
        self.event(now, Some(id), None, "signal", format!("{w} before the time limit"));
        fx
    }

    /// Slurm's notice of a stopped job, into a running batch job's error output (its first
    /// node runs the script and holds the file).
    pub(super) fn stop_notice(&self, id: JobId, cause: StopCause, now: u64) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get(&id) else { return fx };
        if job.state != JobState::Running || job.sub.kind != JobKind::Batch {
            return fx;
        }
        if let Some(first) = job.granted.first() {
            let line = stop_notice(id, &first.node, now, cause);
            fx.to_agent(&first.node, ToAgent::Notice { job: id, attempt: job.attempt, line });
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{
        batch, beat, cluster, config, conn_of, registration, releases, root, starts,
    };
    use crate::protocol::{FromAgent, JobKind};

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

    #[test]
    fn time_limits_term_then_end_the_job() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.shape.time_limit_secs = Some(60);
        c.submit(1, &root(), sub, 0);
        c.schedule(0);
        let keep_alive = |c: &mut Cluster, t: u64| {
            for i in 1..=3u64 {
                c.from_agent(
                    100 + i,
                    &format!("n{i}"),
                    FromAgent::Heartbeat { load: 0.0, seq: 0 },
                    t,
                    Mono(t),
                );
            }
        };
        keep_alive(&mut c, 60_000);
        let fx = c.tick(60_000, Mono(60_000));
        assert!(fx.iter().any(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Signal { signal, .. }, .. } if *signal == Signal::TERM)));
        keep_alive(&mut c, 62_000);
        c.tick(62_000, Mono(62_000));
        assert_eq!(c.job(1).expect("job").state, JobState::Timeout);
        assert_eq!(c.job(1).expect("job").exit_code, None, "ended at the grace, unreported");

        // The script's own end reported after that (a slow node) is its exit, once.
        let node = c.job(1).expect("job").nodes()[0].clone();
        let conn = 100 + node[1..].parse::<u64>().expect("n");
        let ended =
            |exit_code| FromAgent::JobEnded { job: 1, attempt: 1, exit_code, message: None };
        c.from_agent(conn, &node, ended(143), 62_500, Mono(62_500));
        c.from_agent(conn, &node, ended(0), 62_600, Mono(62_600));
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.exit_code), (JobState::Timeout, Some(143)));

        // An allocation told of its time limit leaves at once: still a timeout, not a cancel.
        let mut sub = batch(1, 1);
        sub.kind = JobKind::Alloc;
        sub.shape.time_limit_secs = Some(60);
        c.submit(7, &root(), sub, 62_000);
        c.schedule(62_000);
        keep_alive(&mut c, 122_000);
        let fx = c.tick(122_000, Mono(122_000));
        assert!(
            fx.iter()
                .any(|e| matches!(e, Effect::ToClient { conn: 7, reply: Reply::Ended { .. } }))
        );
        c.client_gone(7, 122_100);
        assert_eq!(c.job(2).expect("job").state, JobState::Timeout);
    }

    #[test]
    fn a_script_ending_of_the_time_limits_term_times_out_after_its_warning_and_notice() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.shape.time_limit_secs = Some(120);
        sub.end_handling.warning = Some("B:USR1@30".parse().expect("signal"));
        c.submit(1, &root(), sub, 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let conn = 100 + node[1..].parse::<u64>().expect("n");
        let beat_all = |c: &mut Cluster, t: u64| {
            for i in 1..=3u64 {
                let hb = FromAgent::Heartbeat { load: 0.0, seq: 0 };
                c.from_agent(100 + i, &format!("n{i}"), hb, t, Mono(t));
            }
        };
        beat_all(&mut c, 89_000);
        let fx = c.tick(89_000, Mono(89_000));
        assert!(
            !fx.iter().any(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Signal { .. }, .. }))
        );
        beat_all(&mut c, 90_000);
        let fx = c.tick(90_000, Mono(90_000));
        let warned: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::ToAgent { node, msg: ToAgent::Signal { signal, target, .. } } => {
                    Some((node.clone(), signal.name(), *target))
                }
                _ => None,
            })
            .collect();
        assert_eq!(warned, [(node.clone(), "SIGUSR1", SignalTarget::BatchShell)]);
        beat_all(&mut c, 91_000);
        let fx = c.tick(91_000, Mono(91_000));
        assert!(fx.is_empty(), "warned once: {fx:?}");
        beat_all(&mut c, 120_000);
        let fx = c.tick(120_000, Mono(120_000));
        let notice = fx.iter().find_map(|e| match e {
            Effect::ToAgent { node: n, msg: ToAgent::Notice { line, .. } } if *n == node => {
                Some(line.clone())
            }
            _ => None,
        });
        let notice = notice.expect("a notice to the script's node");
        assert!(
            notice.starts_with(&format!("slurmstepd: error: *** JOB 1 ON {node} CANCELLED AT ")),
            "{notice}"
        );
        assert!(notice.ends_with(" DUE TO TIME LIMIT ***"), "{notice}");
        // The script dies of the TERM (143) before the grace is over: TIMEOUT, not FAILED.
        let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 143, message: None };
        c.from_agent(conn, &node, ended, 120_500, Mono(120_500));
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.exit_code), (JobState::Timeout, Some(143)));
    }

    #[test]
    fn a_cancelled_batch_job_gets_slurms_notice_before_its_release() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let fx = c.cancel(2, &root(), &[1], &[], None, None, 5_000);
        let msgs: Vec<&ToAgent> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::ToAgent { node: n, msg } if *n == node => Some(msg),
                _ => None,
            })
            .collect();
        assert!(
            matches!(msgs[0], ToAgent::Notice { line, .. } if line.ends_with(" ***") && !line.contains("DUE TO")),
            "{msgs:?}"
        );
        assert!(matches!(msgs[1], ToAgent::Release { .. }), "{msgs:?}");
        assert_eq!(c.job(1).expect("job").state, JobState::Cancelled);
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
