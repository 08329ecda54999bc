//! Preemption carried out: the scheduler decided to stop a running job for another (a higher
//! QOS, or a lender taking its quota back). The victim is signalled (SIGTERM) at once; when it
//! exits, or when its grace is over, it goes back to the queue as its next attempt (or is
//! cancelled when it may not be requeued). The next attempt waits, like any requeued one, until
//! every node confirmed the previous attempt gone (`handlers::release`), so it never runs twice
//! at once. Who preempted whom is in both jobs' events.

use gangway_scheduler::{AfterPreempt, PreemptCause, Preemption, format_duration};

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, JobState, Preempted};
use crate::protocol::{JobId, JobKind, Signal, SignalTarget, ToAgent};

impl Cluster {
    /// Begins stopping `p.victim`: signalled now, ended after the grace.
    pub(super) fn preempt(&mut self, p: &Preemption, now: u64) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get(&p.victim) else { return fx };
        if job.state != JobState::Running || job.preempted.is_some() {
            return fx;
        }
        // An interactive allocation cannot be moved: it ends instead.
        let requeue = p.then == AfterPreempt::Requeue && job.sub.kind != JobKind::Alloc;
        let attempt = job.attempt;
        for n in job.nodes() {
            fx.to_agent(
                &n,
                ToAgent::Signal {
                    job: p.victim,
                    attempt,
                    signal: Signal::TERM,
                    target: SignalTarget::All,
                },
            );
        }
        let grace_ms = u64::try_from(p.grace.as_millis()).unwrap_or(u64::MAX);
        if let Some(j) = self.jobs.get_mut(&p.victim) {
            j.preempted = Some(Preempted { by: p.by, since: now, grace_ms, requeue });
        }
        self.touch_job(p.victim);
        let cause = match &p.cause {
            PreemptCause::Qos => "QOS".to_string(),
            PreemptCause::QuotaReclaim { lender } => format!("account {lender} reclaims its quota"),
        };
        let then = if requeue { "requeue" } else { "cancel" };
        let detail = format!(
            "preempted by job {} ({cause}): SIGTERM, {then} after {}",
            p.by,
            format_duration(p.grace)
        );
        self.event(now, Some(p.victim), None, "preempted", detail);
        self.event(now, Some(p.by), None, "preempts", format!("job {}", p.victim));
        fx
    }

    /// Preempted jobs whose grace is over: requeued or cancelled.
    pub(super) fn preemptions_due(&mut self, now: u64) -> Effects {
        let due: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| {
                self.jobs[id].preempted.as_ref().is_some_and(|p| now >= p.since + p.grace_ms)
            })
            .copied()
            .collect();
        let mut fx = Effects::new();
        for id in due {
            fx.append(self.end_preempted(id, "its grace ran out", now));
        }
        fx
    }

    /// Whether `job` is being preempted (its end is then the preemption's, whatever its exit).
    pub(super) fn is_preempted(&self, job: JobId) -> bool {
        self.jobs.get(&job).is_some_and(|j| j.preempted.is_some())
    }

    /// A preempted job stopped (it exited, or its grace ran out): its nodes are told to end
    /// what is left, and it is requeued or cancelled.
    pub(super) fn end_preempted(&mut self, id: JobId, how: &str, now: u64) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get(&id) else { return fx };
        let Some(p) = job.preempted.clone() else { return fx };
        let (attempt, nodes) = (job.attempt, job.nodes());
        self.steps.retain(|s| s.job != id);
        if p.requeue {
            for n in &nodes {
                fx.to_agent(n, ToAgent::Release { job: id, attempt });
            }
            let detail =
                format!("attempt {} after preemption by job {} ({how})", attempt + 1, p.by);
            let reason = format!("preempted by job {}", p.by);
            fx.append(self.next_attempt(id, None, None, nodes, detail, reason, now));
            if let Some(j) = self.jobs.get_mut(&id) {
                j.requeued_for = Some(format!("preemption by job {}", p.by));
            }
        } else {
            let reason = format!("preempted by job {} ({how})", p.by);
            fx.append(self.finish(id, JobState::Cancelled, &reason, None, now));
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{
        alice, batch, beat, cluster_with, conn_of, releases, starts,
    };
    use crate::controller::state::{Cluster, JobState, Mono};
    use crate::protocol::{FromAgent, Signal, ToAgent};

    const QOS: &str = r#"
[[qos]]
name = "low"
preempt_mode = "requeue"
grace = "2s"

[[qos]]
name = "high"
priority = 100
preempt = ["low"]
"#;

    fn terms(fx: &[Effect]) -> Vec<String> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::ToAgent { node, msg: ToAgent::Signal { signal, .. } }
                    if *signal == Signal::TERM =>
                {
                    Some(node.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn confirm(c: &mut Cluster, job: u64, attempt: u32, t: u64) {
        for n in ["n1", "n2", "n3"] {
            let gone = FromAgent::Released { job, attempt };
            c.from_agent(conn_of(n), n, gone, t, Mono(t));
        }
    }

    #[test]
    fn a_high_qos_job_preempts_a_low_one_which_is_requeued_and_never_runs_twice() {
        let mut c = cluster_with(QOS);
        let mut low = batch(3, 6);
        low.shape.qos = Some("low".into());
        c.submit(1, &alice(), low, 0);
        assert_eq!(starts(&c.schedule(0)).len(), 3);
        let mut high = batch(1, 2);
        high.shape.qos = Some("high".into());
        c.submit(2, &alice(), high, 1_000);
        let fx = c.schedule(1_000);
        assert_eq!(terms(&fx), ["n1", "n2", "n3"], "the low job is signalled everywhere");
        assert!(starts(&fx).is_empty(), "nothing starts before it is gone");
        // Within its grace it runs on.
        beat(&mut c, "-", 2_500);
        let fx = c.tick(2_500, Mono(2_500));
        assert!(releases(&fx).is_empty());
        assert_eq!(c.job(1).expect("job").state, JobState::Running);
        // Grace over: told to end everywhere, requeued as attempt 2.
        beat(&mut c, "-", 3_000);
        let fx = c.tick(3_000, Mono(3_000));
        assert_eq!(releases(&fx).len(), 3, "{fx:?}");
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        assert_eq!(job.releasing.len(), 3);
        // The high job starts; the low one waits for its nodes' confirmations first.
        let s = starts(&c.schedule(3_000));
        assert_eq!(s.iter().map(|(_, j, _)| *j).collect::<Vec<_>>(), [2]);
        confirm(&mut c, 1, 1, 3_100);
        assert!(starts(&c.schedule(3_100)).is_empty(), "the high job holds a node");
        let node = c.job(2).expect("job").nodes()[0].clone();
        let ended = FromAgent::JobEnded { job: 2, attempt: 1, exit_code: 0, message: None };
        for t in [5_000, 7_000, 9_000] {
            beat(&mut c, "-", t);
        }
        c.from_agent(conn_of(&node), &node, ended, 9_000, Mono(9_000));
        let s = starts(&c.schedule(9_000));
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|(_, j, a)| *j == 1 && *a == 2), "{s:?}");
        let events = c.take_dirty().events;
        assert!(
            events.iter().any(|e| e.job == Some(1)
                && e.kind == "preempted"
                && e.detail.contains("by job 2")),
            "{events:?}"
        );
        assert!(events.iter().any(|e| e.job == Some(2) && e.kind == "preempts"));
    }

    #[test]
    fn a_preempted_job_that_exits_on_the_signal_is_requeued_at_once() {
        let mut c = cluster_with(QOS);
        let mut low = batch(3, 6);
        low.shape.qos = Some("low".into());
        c.submit(1, &alice(), low, 0);
        c.schedule(0);
        let mut high = batch(1, 2);
        high.shape.qos = Some("high".into());
        c.submit(2, &alice(), high, 1_000);
        c.schedule(1_000);
        // Its script exits on SIGTERM (143): that is the preemption's end, not a failure.
        let exited = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 143, message: None };
        c.from_agent(conn_of("n1"), "n1", exited, 1_200, Mono(1_200));
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
    }
}
