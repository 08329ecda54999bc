//! How a running job stops for good or goes back to the queue: its end (any reason), a lost
//! node's jobs, a job that lost its part on one node (requeued with a new attempt, or
//! `NodeFail`). The wait of a requeued attempt for the previous one is in [`super::release`].

use crate::controller::effects::Effects;
use crate::controller::state::{Cluster, Health, JobState};
use crate::protocol::{JobId, JobKind, MailEvent, Reply, ToAgent};

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
    /// A node is gone: its jobs stop everywhere; batch jobs (and run jobs with `--requeue`) go
    /// back to the queue avoiding it, the others fail with `NodeFail`.
    pub(super) fn node_lost(
        &mut self,
        name: &str,
        why: &str,
        now: u64,
        only: Option<JobId>,
    ) -> Effects {
        let mut fx = Effects::new();
        if only.is_none() {
            if let Some(rec) = self.nodes.get_mut(name) {
                rec.health = Health::Down;
                rec.reason = Some(format!("lost: {why}"));
                rec.last_heard = None;
                if let Some(c) = rec.conn.take() {
                    fx.close_agent(c);
                }
            }
            self.event(now, None, Some(name), "node_lost", why.to_string());
            self.sync_health(name);
            self.lost_releases(name, now);
        }
        let victims: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| {
                let j = &self.jobs[id];
                j.state == JobState::Running
                    && j.granted.iter().any(|g| g.node == name)
                    && only.is_none_or(|o| o == **id)
            })
            .copied()
            .collect();
        for id in victims {
            fx.append(self.lose_part(id, name, why, PartLost::NodeLost, now));
        }
        self.needs_schedule = true;
        fx
    }

    /// A running job lost its part on `name`: it stops everywhere; batch jobs (and run jobs with
    /// `--requeue`) go back to the queue, the others fail with `NodeFail`.
    pub(super) fn lose_part(
        &mut self,
        id: JobId,
        name: &str,
        why: &str,
        how: PartLost,
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get(&id) else { return fx };
        let what = match how {
            PartLost::NodeLost => format!("{name} was lost"),
            PartLost::Fenced => format!("{name} fenced it"),
        };
        let requeue = requeue_on_node_loss(job.sub.kind, job.sub.requeue);
        let attempt = job.attempt;
        // A lost node is not told: its lease has run out, its fencer killed the job there.
        let told: Vec<String> =
            job.nodes().into_iter().filter(|n| n != name || how == PartLost::Fenced).collect();
        for n in &told {
            fx.to_agent(n, ToAgent::Release { job: id, attempt });
        }
        self.steps.retain(|s| s.job != id);
        if requeue {
            // A node the job named is never avoided (it would wait for it forever).
            let avoid = (how == PartLost::NodeLost).then_some(name);
            let detail = format!("attempt {} after {what}: {why}", attempt + 1);
            let reason = format!("node {what} ({why})");
            fx.append(self.next_attempt(id, avoid, Some(name), told, detail, reason, now));
        } else {
            let reason = format!("NodeFail: {what} ({why})");
            fx.append(self.finish(id, JobState::NodeFail, &reason, None, now));
        }
        self.needs_schedule = true;
        fx
    }

    /// Puts a stopped running job back in the queue as its next attempt: `avoid` (a lost
    /// node) is excluded from now on, the attempt waits for every node in `told` to confirm
    /// the previous one gone (`handlers::release`), and its holder hears why.
    #[expect(clippy::too_many_arguments, reason = "one call per way a job is requeued")]
    pub(super) fn next_attempt(
        &mut self,
        id: JobId,
        avoid: Option<&str>,
        node: Option<&str>,
        told: Vec<String>,
        detail: String,
        reason: String,
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        // While its run time is still known.
        fx.append(self.mail(id, MailEvent::Requeue, now));
        let Some(j) = self.jobs.get_mut(&id) else { return fx };
        let attempt = j.attempt;
        let (was_final, task) = (j.state.is_final(), j.task);
        j.state = JobState::Pending;
        j.attempt += 1;
        j.reason = "Requeued".into();
        if let Some(name) = avoid
            && !j.excluded.iter().any(|e| e == name)
            && !j.sub.shape.nodelist.iter().any(|n| n == name)
        {
            j.excluded.push(name.to_string());
        }
        j.granted.clear();
        // The next attempt's figures are its own.
        j.usage.clear();
        j.start_time = None;
        j.stopping_since = None;
        j.preempted = None;
        j.requeued_for = None;
        j.warned = false;
        j.mail_marks = 0;
        self.touch_job(id);
        self.event(now, Some(id), node, "requeue", detail);
        if let Some(t) = task.filter(|_| was_final) {
            // A finished task runs again: its array is not over.
            self.task_restarted(t.array, now);
        }
        // The next attempt may not run beside what is left of this one.
        self.await_release(id, attempt, told, now);
        if let Some(conn) = self.holders.get(&id) {
            fx.to_client(*conn, Reply::Requeued { id, attempt: attempt + 1, reason });
        }
        self.needs_schedule = true;
        self.reconcile(now);
        fx
    }

    /// Ends a job: frees its CPUs, tells its nodes and its client, records it.
    pub(super) fn finish(
        &mut self,
        id: JobId,
        state: JobState,
        reason: &str,
        exit: Option<i32>,
        now: u64,
    ) -> Effects {
        let mut fx = Effects::new();
        let Some(job) = self.jobs.get_mut(&id) else { return fx };
        let was_running = job.state == JobState::Running;
        let was_final = job.state.is_final();
        // A part the OOM killer struck decides how the job ended, whatever its exit code.
        let (state, reason) = match out_of_memory(job, state) {
            Some(message) => (JobState::OutOfMemory, message),
            None => (state, reason.to_string()),
        };
        let reason = reason.as_str();
        job.state = state;
        job.reason = reason.to_string();
        job.end_time = Some(now);
        job.exit_code = exit.or(job.exit_code);
        job.stopping_since = None;
        job.preempted = None;
        job.warned = false;
        // Over: no next attempt waits for anything.
        job.releasing.clear();
        let (attempt, nodes) = (job.attempt, job.nodes());
        if was_running {
            for n in nodes {
                fx.to_agent(&n, ToAgent::Release { job: id, attempt });
            }
        }
        self.active.remove(&id);
        self.steps.retain(|s| s.job != id);
        if let Some(conn) = self.holders.remove(&id) {
            let reason = reason.to_string();
            fx.to_client(conn, Reply::Ended { id, state: state.name().into(), reason });
        }
        self.touch_job(id);
        self.wake_dependents(id);
        fx.append(self.end_mail(id, state, now));
        self.event(now, Some(id), None, "end", format!("{} ({reason})", state.name()));
        if let Some(task) = self.jobs.get(&id).and_then(|j| j.task) {
            fx.append(self.task_ended(task.array, !was_final, now));
        }
        self.needs_schedule = true;
        // Its resources are free in the books at once (what `gangway nodes` shows).
        self.reconcile(now);
        fx
    }
}

/// The OOM message a job ending `state` ends `OUT_OF_MEMORY` with: the part whose end is the
/// job's was struck by the OOM killer and the job ended by itself (completed or failed; not
/// cancelled, timed out or lost, which say more about why it ended).
pub(super) fn out_of_memory(job: &super::super::state::Job, state: JobState) -> Option<String> {
    if !matches!(state, JobState::Completed | JobState::Failed) {
        return None;
    }
    job.usage
        .iter()
        .filter(|u| ends_the_job(job.sub.kind, &u.part))
        .find_map(|u| u.out_of_memory.clone())
}

/// Whether an OOM kill of `part` decides how a job of `kind` ended. As in Slurm (slurmctld
/// takes a job's state from its batch script's end, or a job-of-its-own srun's): a batch
/// job's from its script alone, a `run` job's from its one step; a step inside a batch or
/// alloc job is marked itself (sacct's step line `OUT_OF_MEMORY`) while the script or shell
/// goes on, and the job ends as that does.
fn ends_the_job(kind: JobKind, part: &str) -> bool {
    match kind {
        JobKind::Batch => part == "batch",
        JobKind::Run => true,
        JobKind::Alloc => false,
    }
}

/// Whether a job that lost a node goes back to the queue (the rest fail with `NodeFail`).
pub fn requeue_on_node_loss(kind: JobKind, requeue: bool) -> bool {
    match kind {
        JobKind::Batch | JobKind::Run => requeue,
        // An interactive allocation's shell cannot be moved.
        JobKind::Alloc => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::scenario::{batch, cluster, root, starts};
    use crate::controller::state::{JobState, Mono};
    use crate::protocol::FromAgent;

    #[test]
    fn a_lost_node_requeues_batch_jobs_away_from_it_and_late_reports_are_ignored() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 2), 0);
        let s = starts(&c.schedule(0));
        let node = s[0].0.clone();
        let conn = 100 + node[1..].parse::<u64>().expect("n");
        // Heartbeats from the others only.
        for t in (1000..=7000).step_by(1000) {
            for i in 1..=3u64 {
                let name = format!("n{i}");
                if name != node {
                    c.from_agent(
                        100 + i,
                        &name,
                        FromAgent::Heartbeat { load: 0.0, seq: 0 },
                        t,
                        Mono(t),
                    );
                }
            }
            c.tick(t, Mono(t));
        }
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        assert_eq!(job.excluded, vec![node.clone()]);
        let fx = c.schedule(7000);
        let s2 = starts(&fx);
        assert_eq!(s2.len(), 1);
        assert_ne!(s2[0].0, node, "placed away from the lost node");
        assert_eq!(s2[0].2, 2);
        // The lost node's agent reports attempt 1 late: ignored.
        c.from_agent(
            conn,
            &node,
            FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 0, message: None },
            7100,
            Mono(7100),
        );
        assert_eq!(c.job(1).expect("job").state, JobState::Running);
        let dirty = c.take_dirty();
        assert!(dirty.events.iter().any(|e| e.kind == "requeue"));
        assert!(dirty.events.iter().any(|e| e.kind == "late_report"));
    }

    #[test]
    fn no_requeue_jobs_fail_with_node_fail() {
        let mut c = cluster();
        let mut sub = batch(1, 1);
        sub.requeue = false;
        c.submit(1, &root(), sub, 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let conn = 100 + node[1..].parse::<u64>().expect("n");
        c.agent_gone(conn, 100);
        // Its connection dropped, but its agent may still hold a lease: not lost yet.
        c.tick(5999, Mono(5999));
        assert_eq!(c.job(1).expect("job").state, JobState::Running);
        c.tick(6000, Mono(6000));
        let job = c.job(1).expect("job");
        assert_eq!(job.state, JobState::NodeFail);
        assert!(job.reason.contains("NodeFail"), "{}", job.reason);
    }
}
