//! The controller's data: nodes, jobs and running steps, the indexes kept beside them (active
//! jobs, holders, waiting steps), the allocator's view, and what changed since the last commit.
//! The transitions over it are in the `handlers` module, what commands print in `views`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use gangway_scheduler::{
    Bytes, ClusterState, Event as SchedEvent, JobRequest, JobStart, MemoryRequest, NodeGrant,
    NodeHealth, Scheduler, SchedulerConfig, TaskGrant, Timestamp,
};
use gangway_topology::{CpuSet, Topology};
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::effects::ConnId;
use super::idempotency::SubmissionKeys;
use crate::exit_code;
use crate::protocol::array::IndexSet;
use crate::protocol::{JobId, StepRequest, Submission};

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

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub admin: bool,
}

impl Caller {
    /// Whether the caller may change `job`: its owner or an administrator.
    pub fn may_act_on(&self, job: &Job) -> bool {
        self.admin || self.uid == job.uid
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
    NodeFail,
    /// The kernel's OOM killer killed a process of the job at its memory limit.
    OutOfMemory,
}

impl JobState {
    /// Slurm's name for it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
        }
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
}

/// One node of a running job's allocation, in a form that survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedNode {
    pub node: String,
    pub cpus: CpuSet,
    pub memory: u64,
    pub gpus: CpuSet,
    pub exclusive: bool,
    /// CPU list of each task placed here.
    pub tasks: Vec<CpuSet>,
}

/// A job and everything known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub sub: Submission,
    pub state: JobState,
    pub reason: String,
    /// 1 for the first run; +1 per requeue.
    pub attempt: u32,
    pub priority: u32,
    pub submit_time: u64,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub exit_code: Option<i32>,
    pub held: bool,
    /// Nodes earlier attempts lost.
    pub excluded: Vec<String>,
    pub partition: String,
    pub time_limit: Option<u64>,
    pub granted: Vec<GrantedNode>,
    pub next_step: u32,
    /// When a stop (cancel, time limit) began; a KILL follows after the grace.
    #[serde(default)]
    pub stopping_since: Option<u64>,
    /// The `--signal` warning of this attempt has been sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
    /// The highest percentage of its time limit this attempt was mailed about (`--mail-type`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mail_marks: u8,
    /// Nodes whose features do not satisfy the job's `--constraint` (set at submission, from
    /// the configuration then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unfit: Vec<String>,
    /// A requeued job: the nodes still ending an earlier attempt (node, attempt). The next
    /// attempt starts only when this is empty (see `handlers::release`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releasing: Vec<(String, u32)>,
    /// What the parts of its current attempt used, per node (the agents' reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<crate::protocol::PartUsage>,
    /// Being preempted: signalled, it is requeued (or cancelled) after the grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted: Option<Preempted>,
    /// Why the current attempt is a requeue, when not a node's loss (the output's marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeued_for: Option<String>,
    /// What of its `--dependency` is not met yet (`None`: nothing, or met): it stays out of
    /// the scheduler's passes while this is set (`handlers::dependencies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<crate::protocol::dependency::Dependency>,
    /// A job array's own record: its tasks not started yet (see `controller::arrays`). Its
    /// `state` speaks of the record, not of the tasks: ask `Cluster::array_progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayRecord>,
    /// A task of a job array: which, and its index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<ArrayTask>,
}

/// A running job being stopped for another (the scheduler's preemption decision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preempted {
    /// The job it makes room for.
    pub by: JobId,
    /// When it was signalled (wall ms).
    pub since: u64,
    /// Between the signal and the end, ms.
    pub grace_ms: u64,
    /// Back to the queue afterwards (otherwise cancelled).
    pub requeue: bool,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Job {
    /// A job as it enters the books: pending, first attempt, nothing granted or recorded yet.
    pub(super) fn submitted(
        id: JobId,
        uid: u32,
        gid: u32,
        user: String,
        sub: Submission,
        now: u64,
    ) -> Self {
        Job {
            id,
            uid,
            gid,
            user,
            sub,
            state: JobState::Pending,
            reason: "None".into(),
            attempt: 1,
            priority: 0,
            submit_time: now,
            start_time: None,
            end_time: None,
            exit_code: None,
            held: false,
            excluded: Vec::new(),
            partition: String::new(),
            time_limit: None,
            granted: Vec::new(),
            next_step: 0,
            stopping_since: None,
            warned: false,
            mail_marks: 0,
            unfit: Vec::new(),
            releasing: Vec::new(),
            usage: Vec::new(),
            preempted: None,
            requeued_for: None,
            waiting_on: None,
            array: None,
            task: None,
        }
    }

    pub(super) fn nodes(&self) -> Vec<String> {
        self.granted.iter().map(|g| g.node.clone()).collect()
    }

    pub(super) fn ntasks(&self) -> u32 {
        let granted: usize = self.granted.iter().map(|g| g.tasks.len()).sum();
        if granted > 0 {
            return granted as u32;
        }
        let s = &self.sub.shape;
        s.ntasks.unwrap_or(s.min_nodes.unwrap_or(1) * s.ntasks_per_node.unwrap_or(1))
    }

    pub(super) fn request(&self) -> JobRequest {
        let s = &self.sub.shape;
        let mut r = JobRequest::new();
        r.min_nodes = s.min_nodes.unwrap_or(1);
        // `-n N` alone spans as many nodes as its tasks need, as in Slurm (at most one per task).
        r.max_nodes = match (s.min_nodes, s.ntasks, s.ntasks_per_node) {
            (None, Some(n), None) => Some(n),
            _ => s.max_nodes,
        };
        r.ntasks = s.ntasks;
        r.ntasks_per_node = s.ntasks_per_node;
        r.cpus_per_task = s.cpus_per_task.unwrap_or(1);
        r.memory = match (s.mem_per_node, s.mem_per_cpu) {
            (Some(m), _) => Some(MemoryRequest::PerNode(Bytes(m))),
            (None, Some(m)) => Some(MemoryRequest::PerCpu(Bytes(m))),
            _ => None,
        };
        r.gpus_per_task = s.gpus_per_task.unwrap_or(0);
        r.gpu_type = s.gpu_type.clone();
        r.exclusive = s.exclusive;
        r.partition = s.partition.clone();
        r.time_limit = s.time_limit_secs.filter(|t| *t > 0).map(Duration::from_secs);
        r.nodelist = s.nodelist.clone();
        r.exclude = s.exclude.clone();
        r.exclude.extend(self.unfit.iter().filter(|n| !s.exclude.contains(n)).cloned());
        r.priority = self.priority;
        r.submit_time = Timestamp(self.submit_time);
        r.held = self.held;
        // A node the job asked for by name is never avoided: the job waits for it to return.
        r.excluded_after_failure =
            self.excluded.iter().filter(|n| !s.nodelist.contains(n)).cloned().collect();
        r
    }
}

/// A node as the controller keeps it (beside the allocator's view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// The registered model (JSON), kept so a restarted controller knows the node's size.
    pub topology: Option<String>,
    pub addr: Option<String>,
    pub port: u16,
    pub health: Health,
    pub reason: Option<String>,
    /// Drained by an administrator (kept across down/up).
    pub drain: Option<String>,
    pub agent_version: Option<String>,
    pub agent_root: bool,
    /// The uid the agent runs as (a non-root agent may vouch only for it).
    #[serde(default)]
    pub agent_uid: Option<u32>,
    #[serde(skip)]
    pub last_heartbeat: Option<u64>,
    #[serde(skip)]
    pub load: Option<f64>,
    /// The agent's connection, while it has one.
    #[serde(skip)]
    pub conn: Option<ConnId>,
    /// When its agent last spoke on its current connection (None: not since this controller
    /// began listening), on the monotonic clock: it is lost `lost_timeout` after that.
    #[serde(skip)]
    pub last_heard: Option<Mono>,
}

/// A node's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// Never registered, or lost and not back.
    Down,
    Up,
    /// Missed heartbeats.
    Suspect,
}

/// A running step: the CPUs it uses on each node of its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub job: JobId,
    pub step: u32,
    pub conn: ConnId,
    pub cpus: Vec<(String, CpuSet)>,
}

/// An entry for the events table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: u64,
    pub job: Option<JobId>,
    pub node: Option<String>,
    pub kind: &'static str,
    pub detail: String,
}

/// What changed since the last [`Cluster::take_dirty`]: rows to write.
#[derive(Debug, Default)]
pub struct Dirty {
    pub jobs: Vec<Job>,
    pub nodes: Vec<NodeRecord>,
    pub events: Vec<Event>,
    pub next_id: JobId,
    /// Fair-share usage to store (after a pass that charged it).
    pub usage: Vec<gangway_scheduler::UsageRecord>,
}

/// The controller's whole state.
#[derive(Debug)]
pub struct Cluster {
    pub(super) config: Config,
    pub(super) controller_uid: u32,
    pub(super) nodes: BTreeMap<String, NodeRecord>,
    pub(super) jobs: BTreeMap<JobId, Job>,
    /// Pending and running jobs, so a pass does not walk the history.
    pub(super) active: BTreeSet<JobId>,
    pub(super) next_id: JobId,
    /// The scheduler's books (see `books`): the cluster as it allocates it, the queue, the
    /// policies; the single owner of which CPUs are taken.
    pub(super) sched: Scheduler,
    /// The scheduling policy in force (`[scheduling]`, `[[account]]`, `[[user]]`, `[[qos]]`).
    pub(super) sched_config: SchedulerConfig,
    /// Jobs changed since the last pass, to report to the scheduler (`books::reconcile`).
    pub(super) resync: BTreeSet<JobId>,
    /// When the last pass ran (wall ms): a pass also runs every `full_pass_interval`.
    pub(super) last_pass: u64,
    /// Usage changed (a job ended, or a periodic pass): store it with the next commit.
    pub(super) usage_due: bool,
    /// Alloc/run jobs: the connection holding each.
    pub(super) holders: HashMap<JobId, ConnId>,
    pub(super) steps: Vec<Step>,
    /// Step requests that do not fit yet.
    pub(super) waiting_steps: Vec<(ConnId, Caller, StepRequest)>,
    pub(super) dirty_jobs: BTreeSet<JobId>,
    pub(super) dirty_nodes: BTreeSet<String>,
    pub(super) events: Vec<Event>,
    /// Something changed that may let a pending job start.
    pub(super) needs_schedule: bool,
    /// When this controller began listening: every node counts as heard then.
    pub(super) listening_since: Option<Mono>,
    /// The job's key-derived token and credentials are made by the I/O layer; this signs them.
    pub(super) signer: Option<crate::auth::Key>,
    /// Submissions' idempotency keys, per user (exactly-once submission).
    pub(super) keys: SubmissionKeys,
    /// Who waits for whom (`dependencies`): rebuilt from the jobs at a restart.
    pub(super) dependents: super::dependencies::Dependents,
    /// Jobs whose dependency must be looked at again (a job it names started or ended).
    pub(super) dependencies_due: BTreeSet<JobId>,
    /// Each job array's started tasks: index → the task's job id (rebuilt at a restart).
    pub(super) array_tasks: HashMap<JobId, BTreeMap<u32, JobId>>,
    /// Each job array's started tasks that have not ended (kept as they start and end, so
    /// settling an array never walks its tasks until the last has ended).
    pub(super) array_live: HashMap<JobId, u32>,
    /// Arrays one of whose tasks has ended not ok (memory only: the first such end wakes who
    /// waits for the whole array; after a restart every waiter is looked at anyway).
    pub(super) arrays_failed: std::collections::HashSet<JobId>,
    /// Arrays waiting `aftercorr` with at least one pending task free to start now: queued in
    /// the scheduler though their dependency stays (`handlers::dependencies`; memory only).
    pub(super) corr_ready: std::collections::HashSet<JobId>,
}

/// The allocator's view of an unregistered node: one CPU, down.
pub(super) fn placeholder_topology() -> Arc<Topology> {
    static MODEL: std::sync::OnceLock<Arc<Topology>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                gangway_topology::Shape::new(1, 1, 1)
                    .build()
                    .unwrap_or_else(|e| panic!("the 1-CPU model always builds: {e}")),
            )
        })
        .clone()
}

impl Cluster {
    /// The key used to sign step credentials and derive their link keys.
    pub fn set_signer(&mut self, key: crate::auth::Key) {
        self.signer = Some(key);
    }

    /// Puts stored fair-share usage back (at start).
    pub fn restore_usage(&mut self, records: &[gangway_scheduler::UsageRecord]) {
        self.sched.restore_usage(records);
        self.needs_schedule = true;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Rows and events to persist, and clears the lists.
    pub fn take_dirty(&mut self) -> Dirty {
        let jobs = std::mem::take(&mut self.dirty_jobs)
            .into_iter()
            .filter_map(|id| self.jobs.get(&id).cloned())
            .collect();
        let nodes = std::mem::take(&mut self.dirty_nodes)
            .into_iter()
            .filter_map(|n| self.nodes.get(&n).cloned())
            .collect();
        let usage = if std::mem::take(&mut self.usage_due) {
            self.sched.usage(Timestamp(self.last_pass))
        } else {
            Vec::new()
        };
        Dirty {
            jobs,
            nodes,
            events: std::mem::take(&mut self.events),
            next_id: self.next_id,
            usage,
        }
    }

    pub(super) fn event(
        &mut self,
        now: u64,
        job: Option<JobId>,
        node: Option<&str>,
        kind: &'static str,
        detail: String,
    ) {
        self.events.push(Event { time: now, job, node: node.map(str::to_string), kind, detail });
    }

    pub(super) fn touch_job(&mut self, id: JobId) {
        self.dirty_jobs.insert(id);
        self.resync.insert(id);
    }

    /// The cluster as the scheduler allocates it.
    pub(super) fn alloc(&self) -> &ClusterState {
        self.sched.cluster()
    }

    pub(super) fn touch_node(&mut self, name: &str) {
        self.dirty_nodes.insert(name.to_string());
    }

    /// Rebuilds the scheduler's view: every node (registered ones with their model), the
    /// partitions, the running jobs' allocations and the pending jobs (`books`).
    pub(super) fn rebuild_allocator(&mut self) {
        self.rebuild_scheduler(self.last_pass);
    }

    pub(super) fn sync_health(&mut self, name: &str) {
        if let Some(rec) = self.nodes.get(name) {
            let h = health_of(rec);
            let reason = rec.reason.clone().or_else(|| rec.drain.clone());
            let event = SchedEvent::NodeHealth { node: name.to_string(), health: h, reason };
            self.sched.handle(event, Timestamp(self.last_pass));
        }
        self.touch_node(name);
        self.needs_schedule = true;
    }

    /// Whether `node`'s agent may vouch for a local user `uid` (a session it relays): the node
    /// has a registered, connected agent, which runs as root or as `uid` itself (a non-root
    /// agent runs every job as itself, so vouching for another user would hand them its uid).
    /// A refusal comes with the exit code the command should end with.
    pub fn may_vouch(&self, node: &str, uid: u32) -> Result<(), (u8, String)> {
        let rec = self.nodes.get(node).ok_or_else(|| {
            let message = format!(
                "node '{node}' is not in cluster '{}'; its agent cannot speak for its users",
                self.config.cluster
            );
            (exit_code::NO_CONTROLLER, message)
        })?;
        if rec.conn.is_none() {
            let message = format!(
                "the agent of node '{node}' is not registered with the controller now; try again once `gangway nodes` shows the node"
            );
            return Err((exit_code::NO_CONTROLLER, message));
        }
        if rec.agent_root || rec.agent_uid == Some(uid) {
            Ok(())
        } else {
            let message = format!(
                "the agent of node '{node}' does not run as root, so it speaks only for its own user, not uid {uid}"
            );
            Err((exit_code::PERMISSION_DENIED, message))
        }
    }

    /// Whether the caller is an administrator.
    pub fn is_admin(&self, uid: u32, user: &str) -> bool {
        uid == 0 || uid == self.controller_uid || self.config.admins.iter().any(|a| a == user)
    }

    /// A node's agent connection.
    pub fn agent_conn(&self, node: &str) -> Option<ConnId> {
        self.nodes.get(node).and_then(|n| n.conn)
    }

    /// The job record (tests and the I/O layer).
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }
}

pub(super) fn health_of(rec: &NodeRecord) -> NodeHealth {
    match (rec.health, &rec.drain) {
        (Health::Down, _) => NodeHealth::Down,
        (_, Some(_)) => NodeHealth::Drained,
        (Health::Suspect, _) => NodeHealth::Suspect,
        (Health::Up, None) => NodeHealth::Up,
    }
}

/// A running job's allocation in the allocator's terms (after a restart or a rebuild).
pub(super) fn job_start(job: &Job, state: &ClusterState) -> Option<JobStart> {
    let nodes = job
        .granted
        .iter()
        .map(|g| {
            let node_index = state.nodes().iter().position(|n| n.name() == g.node)?;
            Some(NodeGrant {
                node: g.node.clone(),
                node_index,
                cpus: g.cpus.clone(),
                memory: Bytes(g.memory),
                gpus: g.gpus.clone(),
                exclusive: g.exclusive,
                tasks: g
                    .tasks
                    .iter()
                    .map(|t| TaskGrant { cpus: t.clone(), gpus: CpuSet::new() })
                    .collect(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(JobStart {
        job: job.id,
        partition: job.partition.clone(),
        time_limit: job.time_limit.map(Duration::from_secs),
        nodes,
    })
}

/// A job array's own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayRecord {
    /// Tasks not started yet.
    pub pending: IndexSet,
    /// Tasks cancelled before they started (they never get a job of their own).
    #[serde(default, skip_serializing_if = "IndexSet::is_empty")]
    pub cancelled: IndexSet,
    /// At most this many tasks running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
}

/// What makes a job a task of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayTask {
    /// The array's job id.
    pub array: JobId,
    /// `SLURM_ARRAY_TASK_ID`.
    pub index: u32,
}
