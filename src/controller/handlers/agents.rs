//! What agents say: registration (refusals on the agent's own connection, what it still runs
//! or no longer runs, what it fenced), heartbeats, job ends, fences and releases, and the end
//! of an agent's connection.

use std::collections::BTreeSet;

use gangway_topology::Topology;

use super::requeue::PartLost;
use crate::controller::effects::{ConnId, Effects};
use crate::controller::state::{Cluster, Health, JobState, Mono};
use crate::protocol::{FromAgent, JobId, JobKind, PartUsage, Registration, ToAgent};

impl Cluster {
    /// An agent's message, which arrived at `now` (wall time, for records) and `mono` (the
    /// monotonic clock, for liveness).
    pub fn from_agent(
        &mut self,
        conn: ConnId,
        node: &str,
        msg: FromAgent,
        now: u64,
        mono: Mono,
    ) -> Effects {
        let fx = self.agent_message(conn, node, msg, now);
        self.heard(conn, node, mono);
        fx
    }

    fn agent_message(&mut self, conn: ConnId, node: &str, msg: FromAgent, now: u64) -> Effects {
        match msg {
            FromAgent::Register(r) => self.register(conn, r, now),
            FromAgent::Heartbeat { load, seq } => {
                let Some(ack) = self.ack(conn, node, seq) else {
                    // A connection the node no longer uses (replaced, or the node was lost).
                    return Effects::new();
                };
                let mut back = false;
                if let Some(rec) = self.nodes.get_mut(node) {
                    rec.last_heartbeat = Some(now);
                    rec.load = Some(load);
                    back = rec.health == Health::Suspect;
                }
                if back {
                    if let Some(rec) = self.nodes.get_mut(node) {
                        rec.health = Health::Up;
                        rec.reason = None;
                    }
                    self.event(now, None, Some(node), "node_up", "heartbeats again".into());
                    self.sync_health(node);
                }
                ack
            }
            FromAgent::Fenced { job, attempt, reason } => {
                if self.agent_conn(node) != Some(conn) {
                    return Effects::new();
                }
                self.fenced(node, job, attempt, &reason, now)
            }
            FromAgent::Released { job, attempt } => {
                if self.agent_conn(node) != Some(conn) {
                    return Effects::new();
                }
                self.released(node, job, attempt, now)
            }
            FromAgent::Usage { job, attempt, usage } => {
                if self.agent_conn(node) != Some(conn) || usage.node != node {
                    return Effects::new();
                }
                self.usage_reported(job, attempt, usage, now);
                Effects::new()
            }
            FromAgent::JobEnded { job, attempt, exit_code, message } => {
                let mut fx = Effects::new();
                let current = self
                    .jobs
                    .get(&job)
                    .map(|j| (j.attempt, j.state, j.sub.kind, j.stopping_since.is_some()));
                match current {
                    Some((a, JobState::Running, _, _))
                        if a == attempt && self.is_preempted(job) =>
                    {
                        let how = format!("it exited with {exit_code} on the signal");
                        fx.append(self.end_preempted(job, &how, now));
                    }
                    // A script that ends of the TERM its time limit sent (143, or 0 for one that
                    // traps it) still timed out, as in Slurm.
                    Some((a, JobState::Running, JobKind::Batch, true)) if a == attempt => {
                        let why = "reached its time limit";
                        fx.append(self.finish(job, JobState::Timeout, why, Some(exit_code), now));
                    }
                    Some((a, JobState::Running, JobKind::Batch, false)) if a == attempt => {
                        let state =
                            if exit_code == 0 { JobState::Completed } else { JobState::Failed };
                        let reason = message.unwrap_or_else(|| "None".into());
                        fx.append(self.finish(job, state, &reason, Some(exit_code), now));
                    }
                    // The script's end after the grace at its time limit, which ended the job
                    // without it: its exit is the batch step's (`sacct` `.batch` `0:15`).
                    Some((a, JobState::Timeout, JobKind::Batch, _))
                        if a == attempt && self.jobs[&job].exit_code.is_none() =>
                    {
                        if let Some(j) = self.jobs.get_mut(&job) {
                            j.exit_code = Some(exit_code);
                        }
                        self.touch_job(job);
                        let what =
                            format!("attempt {attempt} exit {exit_code} after its time limit");
                        self.event(now, Some(job), Some(node), "late_report", what);
                    }
                    _ => {
                        // A report from an attempt that is over: the job has moved on.
                        self.event(
                            now,
                            Some(job),
                            Some(node),
                            "late_report",
                            format!("attempt {attempt} exit {exit_code} ignored"),
                        );
                    }
                }
                fx
            }
        }
    }

    /// A part of a job ended on a node and reported what it used. Kept with the job's attempt
    /// (a later report of the same part replaces an earlier one). An OOM kill reported after
    /// the job ended by itself still turns it `OUT_OF_MEMORY`: the step's end can reach its
    /// launcher (and the job its end) before this report reaches the controller.
    fn usage_reported(&mut self, id: JobId, attempt: u32, usage: PartUsage, now: u64) {
        let Some(job) = self.jobs.get_mut(&id).filter(|j| j.attempt == attempt) else { return };
        // An agent sends a report again when it cannot know that the first one arrived
        // (agent/usage.rs): the same figures again change nothing and say nothing.
        if job.usage.contains(&usage) {
            return;
        }
        job.usage.retain(|u| !(u.node == usage.node && u.part == usage.part));
        let oom = usage.out_of_memory.clone();
        let part = format!("{} on {}", usage.part, usage.node);
        job.usage.push(usage);
        let late_oom = oom.is_some()
            && job.state.is_final()
            && super::requeue::out_of_memory(job, job.state).is_some();
        if late_oom && let Some(message) = oom.clone() {
            job.state = JobState::OutOfMemory;
            job.reason = message;
        }
        let task = job.task.filter(|_| late_oom);
        self.touch_job(id);
        if let Some(t) = task {
            // Its array's outcome may change with it (its end was mailed already).
            let _ = self.settle_array(t.array, now);
        }
        if let Some(message) = oom {
            self.event(now, Some(id), None, "out_of_memory", format!("{part}: {message}"));
        }
    }

    fn register(&mut self, conn: ConnId, r: Registration, now: u64) -> Effects {
        let mut fx = Effects::new();
        let refuse = |reason: String| {
            // By connection: a refused agent is not (or not yet) the node's agent.
            let mut fx = Effects::new();
            fx.to_agent_conn(conn, ToAgent::Refused { reason });
            fx.close_agent(conn);
            fx
        };
        if r.version != crate::protocol::VERSION {
            return refuse(format!(
                "agent protocol {} but the controller speaks {}; install the same gangway everywhere",
                r.version,
                crate::protocol::VERSION
            ));
        }
        if !self.nodes.contains_key(&r.name) {
            return refuse(format!(
                "node '{}' is in no partition of cluster '{}'; add it to the controller's configuration (or start the agent with --name)",
                r.name, self.config.cluster
            ));
        }
        if let Err(e) = Topology::from_json(&r.topology) {
            return refuse(format!("its topology does not parse: {e}"));
        }
        let old_conn = self.nodes.get(&r.name).and_then(|n| n.conn);
        if let Some(old) = old_conn.filter(|c| *c != conn) {
            fx.close_agent(old);
        }
        let size_changed;
        {
            let Some(rec) = self.nodes.get_mut(&r.name) else { return fx };
            size_changed = rec.topology.as_deref() != Some(r.topology.as_str());
            rec.topology = Some(r.topology.clone());
            rec.addr = Some(r.addr.clone());
            rec.port = r.port;
            rec.health = Health::Up;
            rec.reason = None;
            rec.agent_version = Some(r.gangway_version.clone());
            rec.agent_root = r.root;
            rec.agent_uid = r.uid;
            rec.last_heartbeat = Some(now);
            rec.conn = Some(conn);
        }
        self.touch_node(&r.name);
        self.event(
            now,
            None,
            Some(&r.name),
            "register",
            format!(
                "agent {} at {}:{}, {} running",
                r.gangway_version,
                r.addr,
                r.port,
                r.running.len()
            ),
        );
        let heartbeat_ms = self.config.heartbeat_interval.as_millis() as u64;
        let lease_ms = self.config.lease().as_millis() as u64;
        fx.to_agent(&r.name, ToAgent::Welcome { heartbeat_ms, lease_ms });
        if size_changed {
            self.rebuild_allocator();
        } else {
            self.sync_health(&r.name);
        }
        // What its agent killed since it last registered: over here, whatever else it reports.
        for (job, attempt, reason) in &r.fenced {
            fx.append(self.fenced(&r.name, *job, *attempt, reason, now));
        }
        // What it still runs that is over (or another attempt's): end it.
        for (job, attempt) in &r.running {
            let keep = self.jobs.get(job).is_some_and(|j| {
                j.state == JobState::Running
                    && j.attempt == *attempt
                    && j.granted.iter().any(|g| g.node == r.name)
            });
            if !keep {
                fx.to_agent(&r.name, ToAgent::Release { job: *job, attempt: *attempt });
            }
        }
        // Requeued jobs waiting for this node to end an earlier attempt: what it no longer
        // mentions is gone.
        self.settle_releases(&r.name, &r.running, &r.releasing, now);
        // Jobs that should run here but the agent does not report: a batch script's host that
        // restarted lost it; other nodes just get the job again (steps authorise against it).
        let reported: BTreeSet<JobId> = r.running.iter().map(|(j, _)| *j).collect();
        let expected: Vec<JobId> = self
            .active
            .iter()
            .filter(|id| {
                let j = &self.jobs[id];
                j.state == JobState::Running && j.granted.iter().any(|g| g.node == r.name)
            })
            .copied()
            .collect();
        for id in expected {
            if reported.contains(&id) {
                continue;
            }
            let first = self.jobs[&id].granted.first().map(|g| g.node == r.name).unwrap_or(false);
            if first && self.jobs[&id].sub.kind == JobKind::Batch {
                // The script's node came back without it: the node was lost meanwhile.
                let why = "its agent restarted without the job's script";
                fx.append(self.node_lost(&r.name, why, now, Some(id)));
            } else if let Some(launch) = self.launch_for(id, &r.name) {
                fx.to_agent(&r.name, ToAgent::Start(Box::new(launch)));
            }
        }
        fx
    }

    /// An agent's connection closed. The node takes no new work, but is lost only when it has
    /// been silent for the lost timeout: its agent may still hold a lease and run its jobs.
    pub fn agent_gone(&mut self, conn: ConnId, now: u64) {
        let name = self.nodes.values().find(|n| n.conn == Some(conn)).map(|n| n.name.clone());
        if let Some(name) = name {
            if let Some(rec) = self.nodes.get_mut(&name) {
                rec.conn = None;
                if rec.health == Health::Up {
                    rec.health = Health::Suspect;
                    rec.reason = Some("agent connection closed".into());
                }
            }
            self.event(now, None, Some(&name), "disconnect", "agent connection closed".into());
            self.sync_health(&name);
        }
    }

    /// `node`'s agent killed attempt `attempt` of `job` there: if that is the job's current
    /// attempt, it goes back to the queue (or fails, as on a node loss) without avoiding the
    /// node; else the report is late and the agent just forgets the attempt.
    fn fenced(&mut self, node: &str, job: JobId, attempt: u32, reason: &str, now: u64) -> Effects {
        let mut fx = Effects::new();
        let current = self.jobs.get(&job).is_some_and(|j| {
            j.state == JobState::Running
                && j.attempt == attempt
                && j.granted.iter().any(|g| g.node == node)
        });
        if current {
            self.event(now, Some(job), Some(node), "fenced", reason.to_string());
            fx.append(self.lose_part(job, node, reason, PartLost::Fenced, now));
        } else {
            self.event(
                now,
                Some(job),
                Some(node),
                "late_report",
                format!("attempt {attempt} fenced ({reason}) ignored"),
            );
            fx.to_agent(node, ToAgent::Release { job, attempt });
        }
        self.needs_schedule = true;
        fx
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{
        batch, beat, cluster, conn_of, registration, releases, root, starts,
    };
    use crate::controller::state::{JobState, Mono};
    use crate::exit_code;
    use crate::protocol::{FromAgent, JobKind, ToAgent};

    #[test]
    fn agents_of_unknown_nodes_or_versions_are_refused_on_their_own_connection() {
        let mut c = cluster();
        let fx = c.from_agent(300, "n9", FromAgent::Register(registration("n9")), 1, Mono(1));
        assert!(
            matches!(&fx[0], Effect::ToAgentConn { conn: 300, msg: ToAgent::Refused { reason } } if reason.contains("in no partition")),
            "{fx:?}"
        );
        assert!(matches!(fx[1], Effect::CloseAgent { conn: 300 }));
        let mut old = registration("n1");
        old.version = 0;
        let fx = c.from_agent(301, "n1", FromAgent::Register(old), 2, Mono(2));
        assert!(matches!(&fx[0], Effect::ToAgentConn { conn: 301, .. }), "{fx:?}");
        // n1's registered agent keeps its connection.
        assert_eq!(c.agent_conn("n1"), Some(101));
    }

    #[test]
    fn agents_vouch_only_while_registered_and_non_root_ones_only_for_themselves() {
        let mut c = cluster();
        assert_eq!(c.may_vouch("n1", 0), Ok(()));
        assert_eq!(c.may_vouch("n1", 1000), Ok(()));
        let (code, unknown) = c.may_vouch("n9", 1000).expect_err("not a node");
        assert!(unknown.contains("'n9'") && code == exit_code::NO_CONTROLLER, "{unknown}");
        // A non-root agent (uid 1000) speaks for uid 1000 only.
        let mut r = registration("n2");
        r.root = false;
        r.uid = Some(1000);
        c.from_agent(202, "n2", FromAgent::Register(r), 1, Mono(1));
        assert_eq!(c.may_vouch("n2", 1000), Ok(()));
        let (code, other) = c.may_vouch("n2", 0).expect_err("not its uid");
        assert!(other.contains("not run as root"), "{other}");
        assert_eq!(code, exit_code::PERMISSION_DENIED);
        // One that did not say its uid speaks for nobody.
        let mut r = registration("n3");
        r.root = false;
        r.uid = None;
        c.from_agent(203, "n3", FromAgent::Register(r), 1, Mono(1));
        assert!(c.may_vouch("n3", 1000).is_err());
        // Once its connection is gone, nobody's.
        c.agent_gone(101, 2);
        let (_, gone) = c.may_vouch("n1", 1000).expect_err("disconnected");
        assert!(gone.contains("not registered"), "{gone}");
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
    fn a_silent_node_heard_again_is_up_and_a_closed_connection_makes_it_suspect() {
        let mut c = cluster();
        for t in [1000, 2000, 3000, 4000] {
            beat(&mut c, "n1", t);
            c.tick(t, Mono(t));
        }
        assert_eq!(c.node_info("n1", 4000).expect("node").state, "suspect");
        let hb = FromAgent::Heartbeat { load: 0.5, seq: 9 };
        c.from_agent(conn_of("n1"), "n1", hb, 4100, Mono(4100));
        let n1 = c.node_info("n1", 4100).expect("node");
        assert_eq!((n1.state.as_str(), n1.load), ("idle", Some(0.5)));
        c.agent_gone(conn_of("n1"), 4200);
        assert_eq!(c.node_info("n1", 4200).expect("node").state, "suspect");
        assert_eq!(c.agent_conn("n1"), None);
        let events = c.take_dirty().events;
        assert!(
            ["suspect", "node_up", "disconnect"]
                .iter()
                .all(|k| events.iter().any(|e| e.kind == *k))
        );
    }

    #[test]
    fn a_registration_without_a_running_job_restarts_it_there_or_requeues_a_lost_script() {
        let mut c = cluster();
        c.submit(1, &root(), batch(2, 2), 0);
        let s = starts(&c.schedule(0));
        assert_eq!(s.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        // n2's agent restarted and knows nothing of the job: it is told again (steps need it).
        let fx = c.from_agent(202, "n2", FromAgent::Register(registration("n2")), 100, Mono(100));
        assert_eq!(starts(&fx), [("n2".to_string(), 1, 1)]);
        // n1 held the script and lost it: the job goes back to the queue, n1 is not avoided.
        let fx = c.from_agent(201, "n1", FromAgent::Register(registration("n1")), 200, Mono(200));
        assert!(releases(&fx).contains(&("n2".to_string(), 1, 1)), "{fx:?}");
        let job = c.job(1).expect("job");
        assert_eq!((job.state, job.attempt), (JobState::Pending, 2));
        // Its report of the old attempt comes late: ignored.
        let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 0, message: None };
        c.from_agent(201, "n1", ended, 300, Mono(300));
        assert_eq!(c.job(1).expect("job").state, JobState::Pending);
    }

    fn part(node: &str, part: &str, oom: bool) -> crate::protocol::PartUsage {
        crate::protocol::PartUsage {
            node: node.into(),
            part: part.into(),
            user_us: 1_000,
            system_us: 500,
            peak_memory: Some(100 << 20),
            memory_limit: Some(100 << 20),
            out_of_memory: oom.then(|| format!("{part} of job 1 on {node} ran out of memory")),
        }
    }

    #[test]
    fn a_batch_job_whose_script_the_oom_killer_struck_ends_out_of_memory() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let conn = conn_of(&node);
        let used = |p| FromAgent::Usage { job: 1, attempt: 1, usage: p };
        c.from_agent(conn, &node, used(part(&node, "batch", true)), 50, Mono(50));
        // A report from another node's name on this connection is not believed.
        c.from_agent(conn, &node, used(part("elsewhere", "step 1", true)), 51, Mono(51));
        let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 137, message: None };
        c.from_agent(conn, &node, ended, 100, Mono(100));
        let job = c.job(1).expect("job");
        assert_eq!(job.state, JobState::OutOfMemory);
        assert!(job.reason.starts_with("batch of job 1 on"), "{}", job.reason);
        assert_eq!(job.usage.len(), 1, "{:?}", job.usage);
        assert_eq!(c.job_info(1).expect("info").state, "OUT_OF_MEMORY");
    }

    #[test]
    fn a_step_the_oom_killer_struck_marks_the_step_and_its_job_ends_as_its_script_does() {
        // Slurm's rule: a batch job's state is its script's; the step's line says OOM.
        for (exit_code, state) in [(0, JobState::Completed), (137, JobState::Failed)] {
            let mut c = cluster();
            c.submit(1, &root(), batch(1, 1), 0);
            let node = starts(&c.schedule(0))[0].0.clone();
            let conn = conn_of(&node);
            let used = FromAgent::Usage { job: 1, attempt: 1, usage: part(&node, "step 0", true) };
            c.from_agent(conn, &node, used, 50, Mono(50));
            let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code, message: None };
            c.from_agent(conn, &node, ended, 100, Mono(100));
            let job = c.job(1).expect("job");
            assert_eq!(job.state, state, "script exit {exit_code}");
            assert!(job.usage[0].out_of_memory.is_some(), "the step keeps its OOM (sacct)");
            // Its report coming after the end changes nothing either.
            let again = FromAgent::Usage { job: 1, attempt: 1, usage: part(&node, "step 1", true) };
            c.from_agent(conn, &node, again, 110, Mono(110));
            assert_eq!(c.job(1).expect("job").state, state);
        }
    }

    #[test]
    fn an_oom_report_after_the_end_still_marks_the_job() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let conn = conn_of(&node);
        let ended = FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 1, message: None };
        c.from_agent(conn, &node, ended, 100, Mono(100));
        assert_eq!(c.job(1).expect("job").state, JobState::Failed);
        let used = FromAgent::Usage { job: 1, attempt: 1, usage: part(&node, "batch", true) };
        c.from_agent(conn, &node, used, 110, Mono(110));
        assert_eq!(c.job(1).expect("job").state, JobState::OutOfMemory);
        // The same part reported again replaces its figures.
        let again = FromAgent::Usage { job: 1, attempt: 1, usage: part(&node, "batch", true) };
        c.from_agent(conn, &node, again, 120, Mono(120));
        assert_eq!(c.job(1).expect("job").usage.len(), 1);
    }

    #[test]
    fn a_report_an_agent_sends_again_changes_nothing_and_says_nothing_twice() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let node = starts(&c.schedule(0))[0].0.clone();
        let conn = conn_of(&node);
        let oom = |n: &str| FromAgent::Usage { job: 1, attempt: 1, usage: part(n, "step 0", true) };
        c.from_agent(conn, &node, oom(&node), 50, Mono(50));
        let ooms = |events: Vec<crate::controller::state::Event>| {
            events.iter().filter(|e| e.kind == "out_of_memory").count()
        };
        assert_eq!(ooms(c.take_dirty().events), 1);
        // Resent after a reconnection (agent/usage.rs): the same figures, no second event.
        c.from_agent(conn, &node, oom(&node), 60, Mono(60));
        assert_eq!(ooms(c.take_dirty().events), 0);
        assert_eq!(c.job(1).expect("job").usage.len(), 1);
    }
}
