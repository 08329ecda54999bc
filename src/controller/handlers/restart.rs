//! Restart recovery: the controller's state from its configuration and what the store held.
//! Nodes wait for their agents to register again while their jobs keep running; alloc and run
//! jobs, whose clients' connections the restart cut, end.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::controller::config::Config;
use crate::controller::idempotency::SubmissionKeys;
use crate::controller::state::{Cluster, Health, Job, JobState, NodeRecord};
use crate::protocol::{JobId, JobKind};
use gangway_scheduler::{ClusterState, Scheduler, SchedulerConfig};

impl Cluster {
    /// A controller's state from its configuration and what the store held.
    pub fn new(
        config: Config,
        controller_uid: u32,
        stored_nodes: Vec<NodeRecord>,
        stored_jobs: Vec<Job>,
        next_id: JobId,
        now: u64,
    ) -> Cluster {
        let mut nodes = BTreeMap::new();
        let stored: HashMap<String, NodeRecord> =
            stored_nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
        for name in &config.nodes {
            let mut rec = stored.get(name).cloned().unwrap_or_else(|| NodeRecord {
                name: name.clone(),
                topology: None,
                addr: None,
                port: 0,
                health: Health::Down,
                reason: Some("not registered yet".into()),
                drain: None,
                agent_version: None,
                agent_root: false,
                agent_uid: None,
                last_heartbeat: None,
                load: None,
                conn: None,
                last_heard: None,
            });
            if let Some(d) = config.node_settings.get(name).and_then(|s| s.drain.clone())
                && rec.drain.is_none()
            {
                rec.drain = Some(d);
            }
            // After a restart every node must register again; its jobs keep running meanwhile.
            if rec.health != Health::Down {
                rec.health = Health::Suspect;
                rec.reason = Some("waiting for the agent to reconnect".into());
            }
            rec.last_heard = None;
            nodes.insert(name.clone(), rec);
        }
        let mut active = BTreeSet::new();
        let mut jobs = BTreeMap::new();
        let mut max_id = 0;
        let mut array_tasks: HashMap<JobId, BTreeMap<u32, JobId>> = HashMap::new();
        let mut array_live: HashMap<JobId, u32> = HashMap::new();
        for job in stored_jobs {
            max_id = max_id.max(job.id);
            // An array whose every task started waits for nothing itself.
            let drained = job.array.as_ref().is_some_and(|a| a.pending.is_empty());
            if !job.state.is_final() && !drained {
                active.insert(job.id);
            }
            if let Some(t) = &job.task {
                array_tasks.entry(t.array).or_default().insert(t.index, job.id);
                if !job.state.is_final() {
                    *array_live.entry(t.array).or_default() += 1;
                }
            }
            jobs.insert(job.id, job);
        }
        let sched_config = config.scheduler.clone();
        let mut c = Cluster {
            config,
            controller_uid,
            nodes,
            jobs,
            active,
            next_id: next_id.max(max_id + 1),
            sched: Scheduler::new(ClusterState::new(), SchedulerConfig::default())
                .unwrap_or_else(|e| panic!("the default scheduling policy always builds: {e}")),
            sched_config,
            resync: BTreeSet::new(),
            last_pass: now,
            usage_due: false,
            holders: HashMap::new(),
            steps: Vec::new(),
            waiting_steps: Vec::new(),
            dirty_jobs: BTreeSet::new(),
            dirty_nodes: BTreeSet::new(),
            events: Vec::new(),
            needs_schedule: true,
            listening_since: None,
            signer: None,
            keys: SubmissionKeys::default(),
            dependents: Default::default(),
            dependencies_due: BTreeSet::new(),
            array_tasks,
            array_live,
            arrays_failed: Default::default(),
            corr_ready: Default::default(),
        };
        c.index_dependencies();
        c.keys = SubmissionKeys::from_jobs(c.jobs.values().map(|j| (j.uid, j.id, &j.sub)));
        // Alloc and run jobs last only as long as their client's connection, which the restart
        // cut: no one is left to use them. Their agents are told to end them when they register.
        let orphaned: Vec<JobId> =
            c.active.iter().filter(|id| c.jobs[id].sub.kind != JobKind::Batch).copied().collect();
        for id in orphaned {
            let why = "its client's connection was cut by a controller restart";
            // Nobody to tell yet: the agents hear of it when they register.
            let _unsent = c.finish(id, JobState::Cancelled, why, None, now);
        }
        c.rebuild_allocator();
        c
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::effects::Effect;
    use crate::controller::scenario::{batch, cluster, config, registration, root, starts};
    use crate::controller::state::{Cluster, Job, JobState, Mono};
    use crate::protocol::{FromAgent, ToAgent};

    #[test]
    fn a_restarted_controller_keeps_running_jobs_and_their_cpus() {
        let mut c = cluster();
        for _ in 0..4 {
            c.submit(1, &root(), batch(1, 2), 0);
        }
        c.schedule(0);
        let dirty = c.take_dirty();
        let nodes = dirty.nodes.clone();
        let jobs: Vec<Job> = dirty.jobs.clone();
        let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
        assert_eq!(running, 3);
        let mut again = Cluster::new(config(), 0, nodes, jobs, dirty.next_id, 50_000);
        again.listening(Mono(50_000));
        // Nothing new starts on CPUs the running jobs still hold.
        assert!(starts(&again.schedule(50_000)).is_empty());
        // An agent comes back reporting its job: it keeps running, nothing is released.
        let mut reg = registration("n1");
        reg.running = vec![(1, 1)];
        let fx = again.from_agent(201, "n1", FromAgent::Register(reg), 50_100, Mono(50_100));
        assert!(
            !fx.iter().any(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Release { .. }, .. })),
            "{fx:?}"
        );
        assert_eq!(again.job(1).expect("job").state, JobState::Running);
        assert_eq!(again.submit(9, &root(), batch(1, 1), 50_200).len(), 2);
    }
}
