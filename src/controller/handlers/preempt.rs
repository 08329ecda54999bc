//! Preemption carried out: the scheduler decided to stop a running job for another (a higher
//! QOS, or a lender taking its quota back). The victim is signalled (SIGTERM) at once; when it
//! exits, or when its grace is over, it goes back to the queue as its next attempt (or is
//! cancelled when it may not be requeued). The next attempt waits, like any requeued one, until
//! every node confirmed the previous attempt gone (`handlers::release`), so it never runs twice
//! at once. Who preempted whom is in both jobs' events.

use gangway_scheduler::{AfterPreempt, PreemptCause, Preemption, format_duration};

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, JobState, Preempted};
use crate::protocol::{JobId, JobKind, Signal, ToAgent};

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
            fx.to_agent(&n, ToAgent::Signal { job: p.victim, attempt, signal: Signal::TERM });
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
        } else {
            let reason = format!("preempted by job {} ({how})", p.by);
            fx.append(self.finish(id, JobState::Cancelled, &reason, None, now));
        }
        fx
    }
}
