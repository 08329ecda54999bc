//! What `queue`, `history`, `show job`, `nodes`, `show node` and `share` print: the state as
//! [`JobInfo`] (with the scheduler's [`SchedInfo`]), [`NodeInfo`] and [`ShareInfo`], pending
//! jobs in the order of the scheduler's priority.

use std::collections::HashMap;

use super::state::{Cluster, Health, Job, JobState};
use gangway_scheduler::Timestamp;

use crate::protocol::{ArrayInfo, GpuTypeCount, JobId, JobInfo, NodeInfo, SchedInfo, ShareInfo};

impl Cluster {
    /// Pending jobs in the order they start (priority, then submission).
    fn pending_order(&self) -> Vec<JobId> {
        let mut pending: Vec<&Job> = self
            .active
            .iter()
            .map(|i| &self.jobs[i])
            .filter(|j| j.state == JobState::Pending)
            .collect();
        pending.sort_by_key(|j| (std::cmp::Reverse(self.priority_of(j)), j.submit_time, j.id));
        pending.into_iter().map(|j| j.id).collect()
    }

    /// The scheduler's priority of a job it knows (0 otherwise).
    fn priority_of(&self, job: &Job) -> i64 {
        self.sched.job(job.id).map_or(0, |s| s.priority)
    }

    /// What the scheduler says of a job it knows: account, QOS, priority factor by factor,
    /// expected start.
    fn sched_info(&self, id: JobId) -> Option<SchedInfo> {
        let status = self.sched.job(id)?;
        let explained = self.sched.explain(id);
        let factors = explained
            .as_ref()
            .map(|e| {
                e.terms
                    .iter()
                    .map(|t| {
                        (t.factor.name().to_string(), format!("{:.4}", t.value), t.weight, t.points)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expected = status.expected.clone();
        Some(SchedInfo {
            account: status.account,
            qos: status.qos,
            priority: explained.map_or(status.priority, |e| e.total),
            factors,
            expected_start: expected.as_ref().map(|e| e.at.as_millis()).filter(|t| *t != u64::MAX),
            expected_nodes: expected.map(|e| e.nodes).unwrap_or_default(),
            preemptable: status.preemptable,
        })
    }

    /// `gangway share`: every account and user with their shares, usage and factor.
    pub fn shares(&self, now: u64) -> Vec<ShareInfo> {
        self.sched
            .shares(Timestamp(now))
            .into_iter()
            .map(|r| ShareInfo {
                account: r.account,
                user: r.user,
                share: r.share,
                usage: r.usage,
                usage_share: r.usage_share,
                factor: r.factor,
            })
            .collect()
    }

    pub(super) fn position(&self, id: JobId) -> Option<usize> {
        self.pending_order().iter().position(|j| *j == id).map(|p| p + 1)
    }

    /// A job for display.
    pub fn job_info(&self, id: JobId) -> Option<JobInfo> {
        self.job_info_at(id, self.position(id))
    }

    fn job_info_at(&self, id: JobId, position: Option<usize>) -> Option<JobInfo> {
        let job = self.jobs.get(&id)?;
        Some(JobInfo {
            id,
            name: job.sub.name.clone(),
            user: job.user.clone(),
            uid: job.uid,
            kind: job.sub.kind,
            state: job.state.name().into(),
            reason: if job.held && job.state == JobState::Pending {
                "Held".into()
            } else if let Some(waiting) = self.release_reason(id) {
                waiting
            } else {
                job.reason.clone()
            },
            partition: job.partition.clone(),
            nodes: job.nodes(),
            ntasks: job.ntasks(),
            cpus: if job.granted.is_empty() {
                job.ntasks() * job.sub.shape.cpus_per_task.unwrap_or(1)
            } else {
                job.granted.iter().map(|g| g.cpus.len() as u32).sum()
            },
            submit_time: job.submit_time,
            start_time: job.start_time,
            end_time: job.end_time,
            time_limit: job.time_limit.or(job.sub.shape.time_limit_secs.filter(|t| *t > 0)),
            exit_code: job.exit_code,
            attempt: job.attempt,
            requeue: job.sub.requeue,
            held: job.held,
            priority: u32::try_from(self.priority_of(job).max(0)).unwrap_or(u32::MAX),
            command: job.sub.command.clone(),
            cwd: job.sub.cwd.clone(),
            output: job.sub.output.clone(),
            error: job.sub.error.clone(),
            cpu_map: job
                .granted
                .iter()
                .map(|g| (g.node.clone(), g.cpus.to_list_string()))
                .collect(),
            shape: job.sub.shape.clone(),
            position: if job.state == JobState::Pending { position } else { None },
            events: Vec::new(),
            usage: job.usage.clone(),
            sched: self.sched_info(id),
            comment: job.sub.comment.clone(),
            dependency: Cluster::dependency_text(job),
            array: match (&job.array, job.task) {
                (Some(rec), _) => Some(ArrayInfo {
                    job: id,
                    task: None,
                    pending: Some(rec.pending.clone()),
                    throttle: rec.throttle,
                }),
                (None, Some(t)) => Some(ArrayInfo {
                    job: t.array,
                    task: Some(t.index),
                    pending: None,
                    throttle: None,
                }),
                (None, None) => None,
            },
        })
    }

    /// Pending and running jobs, in id order.
    pub fn queue(&self) -> Vec<JobInfo> {
        // One ordering for the whole queue, not one per pending job.
        let order: HashMap<JobId, usize> =
            self.pending_order().into_iter().enumerate().map(|(i, id)| (id, i + 1)).collect();
        self.active.iter().filter_map(|id| self.job_info_at(*id, order.get(id).copied())).collect()
    }

    /// Finished jobs, newest first (an array's tasks, not the array's own record).
    pub fn history(&self, limit: usize) -> Vec<JobInfo> {
        self.jobs
            .values()
            .rev()
            .filter_map(|j| match &j.array {
                None if j.state.is_final() => self.job_info(j.id),
                None => None,
                // The tasks an array had cancelled before they started: one line for them all
                // (`7_[5-9%2] CANCELLED by 0`, as sacct shows them), not one row per task.
                Some(rec) if !rec.cancelled.is_empty() => {
                    let mut info = self.job_info(j.id)?;
                    if let Some(a) = info.array.as_mut() {
                        a.pending = Some(rec.cancelled.clone());
                    }
                    info.state = JobState::Cancelled.name().into();
                    info.exit_code = None;
                    Some(info)
                }
                Some(_) => None,
            })
            .take(limit)
            .collect()
    }

    /// A node for display.
    pub fn node_info(&self, name: &str, now: u64) -> Option<NodeInfo> {
        let rec = self.nodes.get(name)?;
        let node = self.alloc().node(name)?;
        let registered = rec.topology.is_some();
        let t = node.topology();
        let partitions = node
            .partitions()
            .iter()
            .filter_map(|i| self.alloc().partitions().get(*i).map(|p| p.name.clone()))
            .collect();
        let state = match (rec.health, &rec.drain) {
            (Health::Down, _) => "down".to_string(),
            (_, Some(_)) if node.allocations().is_empty() => "drained".into(),
            (_, Some(_)) => "draining".into(),
            (Health::Suspect, _) => "suspect".into(),
            (Health::Up, None) => node.state().to_string(),
        };
        Some(NodeInfo {
            name: name.to_string(),
            state,
            reason: rec.drain.clone().or_else(|| rec.reason.clone()),
            partitions,
            cpus_total: if registered { node.usable_cpus().len() as u32 } else { 0 },
            cpus_alloc: node.allocated_cpus().len() as u32,
            memory_total: if registered { node.total_memory().get() } else { 0 },
            memory_alloc: node.allocated_memory().get(),
            gpus: if registered { t.gpus.len() as u32 } else { 0 },
            gpu_types: node
                .gpu_types()
                .iter()
                .map(|(name, gpus)| GpuTypeCount {
                    name: name.to_string(),
                    total: gpus.len() as u32,
                    alloc: gpus.intersection(node.allocated_gpus()).len() as u32,
                })
                .collect(),
            gpus_alloc: node.allocated_gpus().len() as u32,
            load: rec.load,
            addr: rec.addr.clone(),
            hardware: if registered {
                let c = t.counts();
                format!(
                    "{} packages, {} NUMA, {} cores, {} PUs",
                    c.packages, c.numa_nodes, c.cores, c.pus
                )
            } else {
                "unknown (never registered)".into()
            },
            jobs: node.allocations().iter().map(|a| a.job).collect(),
            cpu_map: node.allocations().iter().map(|a| (a.job, a.cpus.to_list_string())).collect(),
            last_heartbeat_ms_ago: rec.last_heartbeat.map(|t| now.saturating_sub(t)),
            agent_version: rec.agent_version.clone(),
        })
    }

    /// Every node for display.
    pub fn nodes(&self, now: u64) -> Vec<NodeInfo> {
        self.config.nodes.iter().filter_map(|n| self.node_info(n, now)).collect()
    }
}
