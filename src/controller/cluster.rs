//! The controller's model: nodes, jobs and steps, and every transition between their states
//! (submit, start, end, cancel, hold, requeue on a lost node, heartbeats, time limits, restart
//! recovery). Pure: callers pass the time in, get [`Effect`]s back to carry out, and persist what
//! [`Cluster::take_dirty`] lists. Only `server.rs` does I/O. Liveness and fencing are in
//! [`liveness`]; a requeued job's wait for its previous attempt to end everywhere in
//! [`release`].

mod liveness;
mod release;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use gangway_topology::{CpuSet, Topology};
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::idempotency::SubmissionKeys;
use crate::exit_code;
use liveness::PartLost;
pub use liveness::{Mono, Verdict, verdict};

use crate::protocol::{
    BatchLaunch, FromAgent, Grant, GrantNode, JobId, JobInfo, JobKind, JobLaunch, NodeInfo,
    Registration, Reply, StepGrant, StepRequest, Submission, ToAgent,
};
use gangway_scheduler::allocator::{self, Decision};
use gangway_scheduler::{
    Bytes, ClusterState, JobRequest, JobStart, MemoryRequest, NodeGrant, NodeHealth,
    PartitionLimits, PendingJob, TaskGrant, Timestamp,
};

/// A client connection's id (alloc/run holders and step launchers are tied to one).
pub type ConnId = u64;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub admin: bool,
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
    pub cpus: String,
    pub memory: u64,
    pub gpus: String,
    pub exclusive: bool,
    /// CPU list of each task placed here.
    pub tasks: Vec<String>,
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
    /// A requeued job: the nodes still ending an earlier attempt (node, attempt). The next
    /// attempt starts only when this is empty (see [`release`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releasing: Vec<(String, u32)>,
}

impl Job {
    fn nodes(&self) -> Vec<String> {
        self.granted.iter().map(|g| g.node.clone()).collect()
    }

    fn ntasks(&self) -> u32 {
        let granted: usize = self.granted.iter().map(|g| g.tasks.len()).sum();
        if granted > 0 {
            return granted as u32;
        }
        let s = &self.sub.shape;
        s.ntasks.unwrap_or(s.min_nodes.unwrap_or(1) * s.ntasks_per_node.unwrap_or(1))
    }

    fn request(&self) -> JobRequest {
        let s = &self.sub.shape;
        let mut r = JobRequest::new();
        r.min_nodes = s.min_nodes.unwrap_or(1);
        r.max_nodes = s.max_nodes;
        r.ntasks = s.ntasks;
        r.ntasks_per_node = s.ntasks_per_node;
        r.cpus_per_task = s.cpus_per_task.unwrap_or(1);
        r.memory = match (s.mem_per_node, s.mem_per_cpu) {
            (Some(m), _) => Some(MemoryRequest::PerNode(Bytes(m))),
            (None, Some(m)) => Some(MemoryRequest::PerCpu(Bytes(m))),
            _ => None,
        };
        r.gpus_per_task = s.gpus_per_task.unwrap_or(0);
        r.exclusive = s.exclusive;
        r.partition = s.partition.clone();
        r.time_limit = s.time_limit_secs.filter(|t| *t > 0).map(Duration::from_secs);
        r.nodelist = s.nodelist.clone();
        r.exclude = s.exclude.clone();
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

/// Something the I/O layer must do.
#[derive(Debug, Clone)]
pub enum Effect {
    ToAgent {
        node: String,
        msg: ToAgent,
    },
    /// To one agent connection, whichever node it claims to be.
    ToAgentConn {
        conn: ConnId,
        msg: ToAgent,
    },
    ToClient {
        conn: ConnId,
        reply: Reply,
    },
    /// Close a client's connection after its replies.
    CloseClient {
        conn: ConnId,
    },
    /// Close an agent's connection (refused, or replaced by a newer one).
    CloseAgent {
        conn: ConnId,
    },
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
}

/// The controller's whole state.
#[derive(Debug)]
pub struct Cluster {
    config: Config,
    controller_uid: u32,
    nodes: BTreeMap<String, NodeRecord>,
    jobs: BTreeMap<JobId, Job>,
    /// Pending and running jobs, so a pass does not walk the history.
    active: BTreeSet<JobId>,
    next_id: JobId,
    alloc: ClusterState,
    /// Alloc/run jobs: the connection holding each.
    holders: HashMap<JobId, ConnId>,
    steps: Vec<Step>,
    /// Step requests that do not fit yet.
    waiting_steps: Vec<(ConnId, Caller, StepRequest)>,
    dirty_jobs: BTreeSet<JobId>,
    dirty_nodes: BTreeSet<String>,
    events: Vec<Event>,
    /// Something changed that may let a pending job start.
    needs_schedule: bool,
    /// When this controller began listening: every node counts as heard then.
    listening_since: Option<Mono>,
    /// The job's key-derived token and credentials are made by the I/O layer; this signs them.
    signer: Option<crate::auth::Key>,
    /// Submissions' idempotency keys, per user (exactly-once submission).
    keys: SubmissionKeys,
}

/// The allocator's view of an unregistered node: one CPU, down.
fn placeholder_topology() -> Arc<Topology> {
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
        for job in stored_jobs {
            max_id = max_id.max(job.id);
            if !job.state.is_final() {
                active.insert(job.id);
            }
            jobs.insert(job.id, job);
        }
        let mut c = Cluster {
            config,
            controller_uid,
            nodes,
            jobs,
            active,
            next_id: next_id.max(max_id + 1),
            alloc: ClusterState::new(),
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
        };
        c.keys = SubmissionKeys::from_jobs(c.jobs.values().map(|j| (j.uid, j.id, &j.sub)));
        // Alloc and run jobs last only as long as their client's connection, which the restart
        // cut: no one is left to use them. Their agents are told to end them when they register.
        let orphaned: Vec<JobId> =
            c.active.iter().filter(|id| c.jobs[id].sub.kind != JobKind::Batch).copied().collect();
        for id in orphaned {
            let why = "its client's connection was cut by a controller restart";
            c.finish(id, JobState::Cancelled, why, None, now, &mut Vec::new());
        }
        c.rebuild_allocator();
        c
    }

    /// The key used to sign step credentials and derive their link keys.
    pub fn set_signer(&mut self, key: crate::auth::Key) {
        self.signer = Some(key);
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
        Dirty { jobs, nodes, events: std::mem::take(&mut self.events), next_id: self.next_id }
    }

    fn event(
        &mut self,
        now: u64,
        job: Option<JobId>,
        node: Option<&str>,
        kind: &'static str,
        detail: String,
    ) {
        self.events.push(Event { time: now, job, node: node.map(str::to_string), kind, detail });
    }

    fn touch_job(&mut self, id: JobId) {
        self.dirty_jobs.insert(id);
    }

    fn touch_node(&mut self, name: &str) {
        self.dirty_nodes.insert(name.to_string());
    }

    /// Rebuilds the allocator's view: every node (registered ones with their model), the
    /// partitions, and the running jobs' allocations.
    fn rebuild_allocator(&mut self) {
        let mut state = ClusterState::new();
        for rec in self.nodes.values() {
            let model = rec
                .topology
                .as_deref()
                .and_then(|t| Topology::from_json(t).ok())
                .map(Arc::new)
                .unwrap_or_else(placeholder_topology);
            // Names come from the configuration, so they are unique.
            let _ = state.add_node(rec.name.clone(), model);
            let _ = state.set_health(&rec.name, health_of(rec), rec.reason.clone());
        }
        for p in &self.config.partitions {
            let names: Vec<&str> = p.nodes.iter().map(String::as_str).collect();
            let mut limits = PartitionLimits::new();
            if let Some(d) = p.default_time {
                limits = limits.default_time(d);
            }
            if let Some(m) = p.max_time {
                limits = limits.max_time(m);
            }
            if p.default {
                limits = limits.default_partition();
            }
            let _ = state.add_partition(p.name.clone(), &names, limits);
        }
        for id in &self.active {
            let job = &self.jobs[id];
            if job.state == JobState::Running
                && let Some(start) = job_start(job, &state)
            {
                let _ = state.allocate(&start);
            }
        }
        self.alloc = state;
        self.needs_schedule = true;
    }

    fn sync_health(&mut self, name: &str) {
        if let Some(rec) = self.nodes.get(name) {
            let h = health_of(rec);
            let reason = rec.reason.clone().or_else(|| rec.drain.clone());
            let _ = self.alloc.set_health(name, h, reason);
        }
        self.touch_node(name);
        self.needs_schedule = true;
    }

    // ---------------------------------------------------------------- clients

    /// `gangway batch/alloc/run`: checks and queues a job.
    pub fn submit(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        sub: Submission,
        now: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(id) = self.keys.find(caller.uid, &sub) {
            // Sent again after a broken connection: the job exists already.
            return self.resubmitted(conn, id);
        }
        let id = self.next_id;
        let mut job = Job {
            id,
            uid: caller.uid,
            gid: caller.gid,
            user: caller.user.clone(),
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
            releasing: Vec::new(),
        };
        job.held = job.sub.hold;
        let request = job.request();
        if let Err(rejection) = allocator::validate(&self.alloc, &request) {
            // A partition whose nodes never registered has placeholder sizes: do not judge it.
            let unknown_sizes = self.nodes.values().any(|n| n.topology.is_none());
            if !unknown_sizes
                || !matches!(
                    rejection,
                    allocator::Rejection::NeverFits { .. }
                        | allocator::Rejection::TaskTooBig { .. }
                        | allocator::Rejection::MemoryTooBig { .. }
                        | allocator::Rejection::TooManyGpus { .. }
                )
            {
                fx.push(Effect::ToClient {
                    conn,
                    reply: Reply::Error {
                        code: exit_code::CANNOT_PLACE,
                        message: rejection.to_string(),
                    },
                });
                fx.push(Effect::CloseClient { conn });
                return fx;
            }
        }
        job.partition = request
            .partition
            .clone()
            .or_else(|| self.alloc.default_partition().map(|p| p.name.clone()))
            .unwrap_or_default();
        self.next_id += 1;
        self.event(now, Some(id), None, "submit", format!("{:?} by {}", job.sub.kind, job.user));
        let kind = job.sub.kind;
        self.keys.record(job.uid, id, &job.sub);
        self.jobs.insert(id, job);
        self.active.insert(id);
        self.touch_job(id);
        self.needs_schedule = true;
        fx.push(Effect::ToClient { conn, reply: Reply::Submitted { id } });
        if kind == JobKind::Batch {
            fx.push(Effect::CloseClient { conn });
        } else {
            self.holders.insert(id, conn);
        }
        fx
    }

    /// The answer to a submission whose idempotency key names job `id`: its id, as the first
    /// time. An alloc or run job is held by its first connection; a second one cannot take it.
    fn resubmitted(&self, conn: ConnId, id: JobId) -> Vec<Effect> {
        let reply = match self.jobs.get(&id) {
            Some(job) if job.sub.kind != JobKind::Batch => Reply::Error {
                code: exit_code::FAILURE,
                message: format!(
                    "job {id} was already submitted with this idempotency key; an interactive job cannot be taken over by another connection"
                ),
            },
            _ => Reply::Submitted { id },
        };
        vec![Effect::ToClient { conn, reply }, Effect::CloseClient { conn }]
    }

    /// A client connection closed: the jobs and steps it held end.
    pub fn client_gone(&mut self, conn: ConnId, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let held: Vec<JobId> =
            self.holders.iter().filter(|(_, c)| **c == conn).map(|(j, _)| *j).collect();
        for id in held {
            self.holders.remove(&id);
            if let Some(job) = self.jobs.get(&id)
                && !job.state.is_final()
            {
                // A client that leaves because the time limit stopped its job: still a timeout.
                if job.stopping_since.is_some() {
                    self.finish(
                        id,
                        JobState::Timeout,
                        "reached its time limit",
                        None,
                        now,
                        &mut fx,
                    );
                } else {
                    self.finish(
                        id,
                        JobState::Cancelled,
                        "its client went away",
                        None,
                        now,
                        &mut fx,
                    );
                }
            }
        }
        self.steps.retain(|s| s.conn != conn);
        self.waiting_steps.retain(|(c, _, _)| *c != conn);
        fx
    }

    /// The client holding an alloc/run job is done with it.
    pub fn done(&mut self, conn: ConnId, exit_code: i32, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let held: Vec<JobId> =
            self.holders.iter().filter(|(_, c)| **c == conn).map(|(j, _)| *j).collect();
        for id in held {
            self.holders.remove(&id);
            let state = if exit_code == 0 { JobState::Completed } else { JobState::Failed };
            if self.jobs.get(&id).is_some_and(|j| !j.state.is_final()) {
                self.finish(id, state, "None", Some(exit_code), now, &mut fx);
            }
        }
        fx.push(Effect::ToClient { conn, reply: Reply::Ok { message: "released".into() } });
        fx.push(Effect::CloseClient { conn });
        fx
    }

    /// The job, if it exists and the caller may `verb` it; else the problem, for the reply.
    fn owned_job(&self, caller: &Caller, id: JobId, verb: &str) -> Result<&Job, String> {
        let job = self.jobs.get(&id).ok_or_else(|| format!("job {id} does not exist"))?;
        if !self.may_act(caller, job) {
            return Err(format!(
                "job {id} belongs to {}; only its owner or an administrator may {verb} it",
                job.user
            ));
        }
        Ok(job)
    }

    fn may_act(&self, caller: &Caller, job: &Job) -> bool {
        caller.admin || caller.uid == job.uid
    }

    /// `gangway cancel`.
    pub fn cancel(
        &mut self,
        caller: &Caller,
        ids: &[JobId],
        signal: Option<i32>,
        user: Option<&str>,
        now: u64,
    ) -> (Reply, Vec<Effect>) {
        let mut fx = Vec::new();
        let mut targets: Vec<JobId> = ids.to_vec();
        if let Some(u) = user {
            targets.extend(self.active.iter().filter(|id| self.jobs[id].user == u).copied());
        }
        let mut done = Vec::new();
        let mut problems = Vec::new();
        for id in targets {
            let job = match self.owned_job(caller, id, "cancel") {
                Ok(job) => job,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if job.state.is_final() {
                problems.push(format!("job {id} has already ended ({})", job.state.name()));
                continue;
            }
            match signal {
                Some(sig) if job.state == JobState::Running => {
                    for n in job.nodes() {
                        fx.push(Effect::ToAgent {
                            node: n,
                            msg: ToAgent::Signal { job: id, attempt: job.attempt, signal: sig },
                        });
                    }
                    let detail = format!("signal {sig} by {}", caller.user);
                    self.event(now, Some(id), None, "signal", detail);
                }
                Some(_) => {
                    problems.push(format!(
                        "job {id} is not running; a signal reaches only running jobs"
                    ));
                    continue;
                }
                None => {
                    let reason = format!("cancelled by {}", caller.user);
                    self.finish(id, JobState::Cancelled, &reason, None, now, &mut fx);
                }
            }
            done.push(id);
        }
        (problems_reply(&problems), fx)
    }

    /// `gangway hold` / `release`.
    pub fn set_held(&mut self, caller: &Caller, ids: &[JobId], held: bool, now: u64) -> Reply {
        let mut problems = Vec::new();
        for id in ids {
            let job = match self.owned_job(caller, *id, "change") {
                Ok(job) => job,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if job.state != JobState::Pending {
                problems.push(format!(
                    "job {id} is {}; only pending jobs can be held or released",
                    job.state.name()
                ));
                continue;
            }
            if let Some(job) = self.jobs.get_mut(id) {
                job.held = held;
            }
            self.touch_job(*id);
            self.event(
                now,
                Some(*id),
                None,
                if held { "hold" } else { "release" },
                caller.user.clone(),
            );
            self.needs_schedule = true;
        }
        problems_reply(&problems)
    }

    /// `gangway drain` / `resume`.
    pub fn set_drain(
        &mut self,
        caller: &Caller,
        names: &[String],
        reason: Option<String>,
        now: u64,
    ) -> Reply {
        if !caller.admin {
            return Reply::Error {
                code: exit_code::PERMISSION_DENIED,
                message: "only an administrator (root, or a user in the controller's `admins`) may drain or resume nodes".into(),
            };
        }
        let unknown: Vec<&String> = names.iter().filter(|n| !self.nodes.contains_key(*n)).collect();
        if !unknown.is_empty() {
            return Reply::Error {
                code: exit_code::USAGE,
                message: format!(
                    "unknown nodes: {}; see `gangway nodes`",
                    unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
        }
        for n in names {
            if let Some(rec) = self.nodes.get_mut(n) {
                rec.drain = reason.clone();
            }
            self.sync_health(n);
            let detail = match &reason {
                Some(r) => format!("drained by {}: {r}", caller.user),
                None => format!("resumed by {}", caller.user),
            };
            self.event(
                now,
                None,
                Some(n),
                if reason.is_some() { "drain" } else { "resume" },
                detail,
            );
        }
        Reply::Ok { message: String::new() }
    }

    /// `gangway run` inside an allocation: a step on (part of) it, now or when it fits.
    pub fn step(
        &mut self,
        conn: ConnId,
        caller: &Caller,
        req: StepRequest,
        now: u64,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let error = |code, message: String| {
            vec![
                Effect::ToClient { conn, reply: Reply::Error { code, message } },
                Effect::CloseClient { conn },
            ]
        };
        let Some(job) = self.jobs.get(&req.job) else {
            return error(
                exit_code::USAGE,
                format!("job {} does not exist (is GANGWAY_JOB_ID stale?)", req.job),
            );
        };
        if !self.may_act(caller, job) {
            return error(
                exit_code::PERMISSION_DENIED,
                format!("job {} belongs to {}", job.id, job.user),
            );
        }
        if job.state != JobState::Running {
            return error(
                exit_code::USAGE,
                format!(
                    "job {} is {}, not running; steps run only inside a running job",
                    job.id,
                    job.state.name()
                ),
            );
        }
        match self.place_step(&req) {
            StepFit::Now(cpus) => fx.extend(self.grant_step(conn, &req, cpus, now)),
            StepFit::Later => {
                self.waiting_steps.push((conn, caller.clone(), req.clone()));
                fx.push(Effect::ToClient {
                    conn,
                    reply: Reply::Waiting {
                        id: req.job,
                        position: self.waiting_steps.len(),
                        reason: "StepResources".into(),
                    },
                });
            }
            StepFit::Never(message) => return error(exit_code::CANNOT_PLACE, message),
        }
        fx
    }

    /// Where a step goes within its job's allocation, given the CPUs other steps use.
    fn place_step(&self, req: &StepRequest) -> StepFit {
        let Some(job) = self.jobs.get(&req.job) else {
            return StepFit::Never("no such job".into());
        };
        let alloc_nodes = job.granted.len() as u32;
        let nodes = req.nodes.unwrap_or_else(|| match req.ntasks {
            Some(n) => n.min(alloc_nodes),
            None => alloc_nodes,
        });
        if nodes == 0 || nodes > alloc_nodes {
            return StepFit::Never(format!(
                "the step asks for {nodes} nodes but job {} has {alloc_nodes}",
                job.id
            ));
        }
        let ntasks = req.ntasks.unwrap_or_else(|| {
            if req.nodes.is_some() {
                nodes * req.ntasks_per_node.unwrap_or(1)
            } else {
                job.ntasks()
            }
        });
        if ntasks < nodes {
            return StepFit::Never(format!(
                "-n {ntasks} is less than -N {nodes}: every node of a step runs a task"
            ));
        }
        let cpt = req.cpus_per_task.max(1);
        // Tasks per node, block-wise, as even as possible.
        let per_node: Vec<u32> =
            (0..nodes).map(|i| ntasks / nodes + u32::from(i < ntasks % nodes)).collect();
        if let Some(limit) = req.ntasks_per_node
            && per_node.iter().any(|&n| n > limit)
        {
            return StepFit::Never(format!(
                "-n {ntasks} on {nodes} nodes needs more than --ntasks-per-node={limit}"
            ));
        }
        let mut chosen = Vec::new();
        let mut any_could = true;
        for (i, g) in job.granted.iter().take(nodes as usize).enumerate() {
            let all = CpuSet::parse_list(&g.cpus).unwrap_or_default();
            let want = per_node[i] * cpt;
            if want as usize > all.len() {
                // More tasks than CPUs: they share the node's CPUs (the step cannot bind).
                if self
                    .steps
                    .iter()
                    .any(|s| s.job == job.id && s.cpus.iter().any(|(n, _)| *n == g.node))
                {
                    any_could = false;
                }
                chosen.push((g.node.clone(), all, per_node[i]));
                continue;
            }
            let mut used = CpuSet::new();
            for s in self.steps.iter().filter(|s| s.job == job.id) {
                for (n, c) in &s.cpus {
                    if *n == g.node {
                        used = used.union(c);
                    }
                }
            }
            let free: Vec<u32> = all.difference(&used).iter().collect();
            if free.len() < want as usize {
                any_could = false;
                continue;
            }
            chosen.push((
                g.node.clone(),
                free.into_iter().take(want as usize).collect(),
                per_node[i],
            ));
        }
        if any_could { StepFit::Now(chosen) } else { StepFit::Later }
    }

    fn grant_step(
        &mut self,
        conn: ConnId,
        req: &StepRequest,
        cpus: Vec<(String, CpuSet, u32)>,
        now: u64,
    ) -> Vec<Effect> {
        let Some(job) = self.jobs.get_mut(&req.job) else { return Vec::new() };
        let step = job.next_step;
        job.next_step += 1;
        let (id, attempt, uid, gid) = (job.id, job.attempt, job.uid, job.gid);
        self.touch_job(id);
        let nodes: Vec<GrantNode> = cpus
            .iter()
            .map(|(n, c, t)| {
                let rec = self.nodes.get(n);
                GrantNode {
                    name: n.clone(),
                    addr: rec.and_then(|r| r.addr.clone()).unwrap_or_else(|| n.clone()),
                    port: rec.map(|r| r.port).unwrap_or(0),
                    cpus: c.to_list_string(),
                    ntasks: *t,
                }
            })
            .collect();
        let text = step_credential_text(id, attempt, step, uid, gid, &nodes);
        let (credential, link_key) = match &self.signer {
            Some(k) => {
                let sealed = k.seal("step", &text);
                let link_key = k.step_psk(&sealed).to_hex();
                (sealed, link_key)
            }
            None => (text, String::new()),
        };
        self.steps.push(Step {
            job: id,
            step,
            conn,
            cpus: cpus.iter().map(|(n, c, _)| (n.clone(), c.clone())).collect(),
        });
        self.event(now, Some(id), None, "step", format!("step {step}: {}", req.command));
        vec![Effect::ToClient {
            conn,
            reply: Reply::Step(StepGrant { job: id, step, nodes, credential, link_key }),
        }]
    }

    fn retry_steps(&mut self, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let waiting = std::mem::take(&mut self.waiting_steps);
        for (conn, caller, req) in waiting {
            if self.jobs.get(&req.job).is_none_or(|j| j.state != JobState::Running) {
                fx.push(Effect::ToClient {
                    conn,
                    reply: Reply::Error {
                        code: exit_code::FAILURE,
                        message: format!("job {} ended before the step could start", req.job),
                    },
                });
                fx.push(Effect::CloseClient { conn });
                continue;
            }
            match self.place_step(&req) {
                StepFit::Now(cpus) => fx.extend(self.grant_step(conn, &req, cpus, now)),
                _ => self.waiting_steps.push((conn, caller, req)),
            }
        }
        fx
    }

    // ---------------------------------------------------------------- agents

    /// An agent's message, which arrived at `now` (wall time, for records) and `mono` (the
    /// monotonic clock, for liveness).
    pub fn from_agent(
        &mut self,
        conn: ConnId,
        node: &str,
        msg: FromAgent,
        now: u64,
        mono: Mono,
    ) -> Vec<Effect> {
        let fx = self.agent_message(conn, node, msg, now);
        self.heard(conn, node, mono);
        fx
    }

    fn agent_message(&mut self, conn: ConnId, node: &str, msg: FromAgent, now: u64) -> Vec<Effect> {
        match msg {
            FromAgent::Register(r) => self.register(conn, r, now),
            FromAgent::Heartbeat { load, seq } => {
                let Some(ack) = self.ack(conn, node, seq) else {
                    // A connection the node no longer uses (replaced, or the node was lost).
                    return Vec::new();
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
                vec![ack]
            }
            FromAgent::Fenced { job, attempt, reason } => {
                if self.agent_conn(node) != Some(conn) {
                    return Vec::new();
                }
                self.fenced(node, job, attempt, &reason, now)
            }
            FromAgent::Released { job, attempt } => {
                if self.agent_conn(node) != Some(conn) {
                    return Vec::new();
                }
                self.released(node, job, attempt, now)
            }
            FromAgent::JobEnded { job, attempt, exit_code, message } => {
                let mut fx = Vec::new();
                let current = self.jobs.get(&job).map(|j| (j.attempt, j.state, j.sub.kind));
                match current {
                    Some((a, JobState::Running, JobKind::Batch)) if a == attempt => {
                        let state =
                            if exit_code == 0 { JobState::Completed } else { JobState::Failed };
                        let reason = message.unwrap_or_else(|| "None".into());
                        self.finish(job, state, &reason, Some(exit_code), now, &mut fx);
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

    fn register(&mut self, conn: ConnId, r: Registration, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let refuse = |reason: String| {
            vec![
                // By connection: a refused agent is not (or not yet) the node's agent.
                Effect::ToAgentConn { conn, msg: ToAgent::Refused { reason } },
                Effect::CloseAgent { conn },
            ]
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
            fx.push(Effect::CloseAgent { conn: old });
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
        fx.push(Effect::ToAgent {
            node: r.name.clone(),
            msg: ToAgent::Welcome {
                heartbeat_ms: self.config.heartbeat_interval.as_millis() as u64,
                lease_ms: self.config.lease().as_millis() as u64,
            },
        });
        if size_changed {
            self.rebuild_allocator();
        } else {
            self.sync_health(&r.name);
        }
        // What its agent killed since it last registered: over here, whatever else it reports.
        for (job, attempt, reason) in &r.fenced {
            fx.extend(self.fenced(&r.name, *job, *attempt, reason, now));
        }
        // What it still runs that is over (or another attempt's): end it.
        for (job, attempt) in &r.running {
            let keep = self.jobs.get(job).is_some_and(|j| {
                j.state == JobState::Running
                    && j.attempt == *attempt
                    && j.granted.iter().any(|g| g.node == r.name)
            });
            if !keep {
                fx.push(Effect::ToAgent {
                    node: r.name.clone(),
                    msg: ToAgent::Release { job: *job, attempt: *attempt },
                });
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
                fx.extend(self.node_lost(
                    &r.name.clone(),
                    "its agent restarted without the job's script",
                    now,
                    Some(id),
                ));
            } else if let Some(launch) = self.launch_for(id, &r.name) {
                fx.push(Effect::ToAgent {
                    node: r.name.clone(),
                    msg: ToAgent::Start(Box::new(launch)),
                });
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

    /// Liveness and time limits; call every few hundred milliseconds with the wall time (for
    /// records and time limits) and the monotonic clock (for liveness).
    pub fn tick(&mut self, now: u64, mono: Mono) -> Vec<Effect> {
        let mut fx = self.check_liveness(now, mono);
        // Time limits: TERM at the limit, KILL after the grace.
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
            if now >= start + limit * 1000 {
                match job.stopping_since {
                    None => {
                        let nodes = job.nodes();
                        let attempt = job.attempt;
                        for n in nodes {
                            fx.push(Effect::ToAgent {
                                node: n,
                                msg: ToAgent::Signal { job: id, attempt, signal: libc::SIGTERM },
                            });
                        }
                        if let Some(j) = self.jobs.get_mut(&id) {
                            j.stopping_since = Some(now);
                        }
                        if let Some(conn) = self.holders.get(&id) {
                            fx.push(Effect::ToClient {
                                conn: *conn,
                                reply: Reply::Ended {
                                    id,
                                    state: "TIMEOUT".into(),
                                    reason: "the job reached its time limit".into(),
                                },
                            });
                        }
                    }
                    Some(t) if now >= t + kill_grace => {
                        self.finish(
                            id,
                            JobState::Timeout,
                            "reached its time limit",
                            None,
                            now,
                            &mut fx,
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        fx
    }

    /// A node is gone: its jobs stop everywhere; batch jobs (and run jobs with `--requeue`) go
    /// back to the queue avoiding it, the others fail with `NodeFail`.
    fn node_lost(&mut self, name: &str, why: &str, now: u64, only: Option<JobId>) -> Vec<Effect> {
        let mut fx = Vec::new();
        if only.is_none() {
            if let Some(rec) = self.nodes.get_mut(name) {
                rec.health = Health::Down;
                rec.reason = Some(format!("lost: {why}"));
                rec.last_heard = None;
                if let Some(c) = rec.conn.take() {
                    fx.push(Effect::CloseAgent { conn: c });
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
            self.lose_part(id, name, why, PartLost::NodeLost, now, &mut fx);
        }
        self.needs_schedule = true;
        fx
    }

    /// A running job lost its part on `name`: it stops everywhere; batch jobs (and run jobs with
    /// `--requeue`) go back to the queue, the others fail with `NodeFail`.
    fn lose_part(
        &mut self,
        id: JobId,
        name: &str,
        why: &str,
        how: PartLost,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get(&id) else { return };
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
            fx.push(Effect::ToAgent {
                node: n.clone(),
                msg: ToAgent::Release { job: id, attempt },
            });
        }
        self.alloc.release(id);
        self.steps.retain(|s| s.job != id);
        if requeue {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.state = JobState::Pending;
                j.attempt += 1;
                j.reason = "Requeued".into();
                // A node the job named is never avoided (it would wait for it forever).
                if how == PartLost::NodeLost
                    && !j.excluded.iter().any(|e| e == name)
                    && !j.sub.shape.nodelist.iter().any(|n| n == name)
                {
                    j.excluded.push(name.to_string());
                }
                j.granted.clear();
                j.start_time = None;
                j.stopping_since = None;
            }
            self.touch_job(id);
            self.event(
                now,
                Some(id),
                Some(name),
                "requeue",
                format!("attempt {} after {what}: {why}", attempt + 1),
            );
            // The next attempt may not run beside what is left of this one.
            self.await_release(id, attempt, told, now);
            if let Some(conn) = self.holders.get(&id) {
                fx.push(Effect::ToClient {
                    conn: *conn,
                    reply: Reply::Requeued {
                        id,
                        attempt: attempt + 1,
                        reason: format!("node {what} ({why})"),
                    },
                });
            }
        } else {
            let reason = format!("NodeFail: {what} ({why})");
            self.finish(id, JobState::NodeFail, &reason, None, now, fx);
        }
        self.needs_schedule = true;
    }

    /// Ends a job: frees its CPUs, tells its nodes and its client, records it.
    fn finish(
        &mut self,
        id: JobId,
        state: JobState,
        reason: &str,
        exit: Option<i32>,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let was_running = job.state == JobState::Running;
        job.state = state;
        job.reason = reason.to_string();
        job.end_time = Some(now);
        job.exit_code = exit.or(job.exit_code);
        job.stopping_since = None;
        // Over: no next attempt waits for anything.
        job.releasing.clear();
        let (attempt, nodes) = (job.attempt, job.nodes());
        if was_running {
            for n in nodes {
                fx.push(Effect::ToAgent { node: n, msg: ToAgent::Release { job: id, attempt } });
            }
        }
        self.alloc.release(id);
        self.active.remove(&id);
        self.steps.retain(|s| s.job != id);
        if let Some(conn) = self.holders.remove(&id) {
            fx.push(Effect::ToClient {
                conn,
                reply: Reply::Ended { id, state: state.name().into(), reason: reason.to_string() },
            });
        }
        self.touch_job(id);
        self.event(now, Some(id), None, "end", format!("{} ({reason})", state.name()));
        self.needs_schedule = true;
    }

    /// Runs the allocator if anything changed; starts what fits.
    pub fn schedule(&mut self, now: u64) -> Vec<Effect> {
        let mut fx = self.retry_steps(now);
        if !self.needs_schedule {
            return fx;
        }
        self.needs_schedule = false;
        let pending: Vec<PendingJob> = self
            .active
            .iter()
            .filter(|id| self.jobs[id].state == JobState::Pending)
            .map(|id| PendingJob { id: *id, request: self.jobs[id].request() })
            .collect();
        if pending.is_empty() {
            return fx;
        }
        let decisions = allocator::schedule(&self.alloc, &pending);
        let mut waiting_updates = Vec::new();
        for d in decisions {
            // A requeued job whose previous attempt is still ending somewhere waits, keeping
            // what the allocator chose for it from the jobs after it (its place in the queue).
            let d = match d {
                Decision::Start(start) => match self.release_reason(start.job) {
                    Some(why) => Err((start.job, why)),
                    None => Ok(start),
                },
                Decision::Wait { job, reason } => {
                    Err((job, self.release_reason(job).unwrap_or_else(|| reason.to_string())))
                }
            };
            match d {
                Ok(start) => fx.extend(self.start(start, now)),
                Err((job, text)) => {
                    if let Some(j) = self.jobs.get_mut(&job)
                        && j.reason != text
                    {
                        j.reason = text;
                        // Reasons are recomputed after a restart; no need to write each change.
                    }
                    if self.holders.contains_key(&job) {
                        waiting_updates.push(job);
                    }
                }
            }
        }
        for job in waiting_updates {
            if let (Some(conn), Some(position)) = (self.holders.get(&job), self.position(job)) {
                fx.push(Effect::ToClient {
                    conn: *conn,
                    reply: Reply::Waiting {
                        id: job,
                        position,
                        reason: self.jobs[&job].reason.clone(),
                    },
                });
            }
        }
        fx
    }

    fn start(&mut self, start: JobStart, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.alloc.allocate(&start).is_err() {
            return fx;
        }
        let id = start.job;
        let Some(job) = self.jobs.get_mut(&id) else { return fx };
        job.state = JobState::Running;
        job.reason = "None".into();
        job.start_time = Some(now);
        job.partition = start.partition.clone();
        job.time_limit = start.time_limit.map(|d| d.as_secs());
        job.granted = start
            .nodes
            .iter()
            .map(|g| GrantedNode {
                node: g.node.clone(),
                cpus: g.cpus.to_list_string(),
                memory: g.memory.get(),
                gpus: g.gpus.to_list_string(),
                exclusive: g.exclusive,
                tasks: g.tasks.iter().map(|t| t.cpus.to_list_string()).collect(),
            })
            .collect();
        let attempt = job.attempt;
        self.touch_job(id);
        let names: Vec<String> = start.nodes.iter().map(|g| g.node.clone()).collect();
        self.event(
            now,
            Some(id),
            None,
            "start",
            format!("attempt {attempt} on {}", names.join(",")),
        );
        for n in &names {
            if let Some(launch) = self.launch_for(id, n) {
                fx.push(Effect::ToAgent { node: n.clone(), msg: ToAgent::Start(Box::new(launch)) });
            }
        }
        if let Some(conn) = self.holders.get(&id).copied()
            && let Some(grant) = self.grant_of(id)
        {
            fx.push(Effect::ToClient { conn, reply: Reply::Granted(grant) });
        }
        fx
    }

    /// The variables every process of a job gets.
    fn job_env(&self, job: &Job) -> Vec<(String, String)> {
        let names = job.nodes();
        let nodelist =
            gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","));
        let tasks_per_node: Vec<String> =
            job.granted.iter().map(|g| g.tasks.len().to_string()).collect();
        // No secret among them: commands inside the job reach the controller through their
        // node's agent, which vouches for their uid (see agent::local).
        vec![
            ("GANGWAY_JOB_ID".to_string(), job.id.to_string()),
            ("GANGWAY_JOB_NAME".into(), job.sub.name.clone()),
            ("GANGWAY_JOB_NODELIST".into(), nodelist.clone()),
            ("GANGWAY_NODELIST".into(), nodelist),
            ("GANGWAY_JOB_NUM_NODES".into(), names.len().to_string()),
            ("GANGWAY_NNODES".into(), names.len().to_string()),
            ("GANGWAY_NTASKS".into(), job.ntasks().to_string()),
            ("GANGWAY_TASKS_PER_NODE".into(), tasks_per_node.join(",")),
            ("GANGWAY_CPUS_PER_TASK".into(), job.sub.shape.cpus_per_task.unwrap_or(1).to_string()),
            ("GANGWAY_JOB_PARTITION".into(), job.partition.clone()),
            ("GANGWAY_SUBMIT_DIR".into(), job.sub.cwd.clone()),
            ("GANGWAY_RESTART_COUNT".into(), (job.attempt - 1).to_string()),
            ("GANGWAY_CLUSTER_NAME".into(), self.config.cluster.clone()),
        ]
    }

    fn launch_for(&self, id: JobId, node: &str) -> Option<JobLaunch> {
        let job = self.jobs.get(&id)?;
        let g = job.granted.iter().find(|g| g.node == node)?;
        let first = job.granted.first().map(|f| f.node == node).unwrap_or(false);
        let mut env: Vec<(String, String)> = job.sub.env.clone();
        env.extend(self.job_env(job));
        env.push((
            "GANGWAY_NODEID".into(),
            job.granted.iter().position(|x| x.node == node).unwrap_or(0).to_string(),
        ));
        let batch = (first && job.sub.kind == JobKind::Batch).then(|| {
            let vars = gangway_launcher::output::BatchPatternVars {
                job_id: &id.to_string(),
                job_name: &job.sub.name,
                user: &job.user,
                first_node: node,
            };
            let expand = |p: &str| {
                let path = gangway_launcher::output::expand_batch_pattern(p, &vars).unwrap_or_else(|_| p.to_string());
                if path.starts_with('/') { path } else { format!("{}/{path}", job.sub.cwd.trim_end_matches('/')) }
            };
            let output = expand(job.sub.output.as_deref().unwrap_or(gangway_launcher::output::DEFAULT_BATCH_OUTPUT));
            BatchLaunch {
                script: job.sub.script.clone().unwrap_or_default(),
                args: job.sub.args.clone(),
                output,
                error: job.sub.error.as_deref().map(expand),
                marker: (job.attempt > 1).then(|| {
                    format!(
                        "gangway: job {id} requeued (attempt {}), after {}; starting again on {node}",
                        job.attempt,
                        if job.excluded.is_empty() { "a node failure".to_string() } else { format!("losing {}", job.excluded.join(",")) }
                    )
                }),
                time_limit: job.time_limit,
            }
        });
        Some(JobLaunch {
            job: id,
            attempt: job.attempt,
            name: job.sub.name.clone(),
            user: job.user.clone(),
            uid: job.uid,
            gid: job.gid,
            cpus: g.cpus.clone(),
            batch,
            env,
            cwd: job.sub.cwd.clone(),
            umask: job.sub.umask.unwrap_or(crate::protocol::DEFAULT_UMASK) & 0o777,
        })
    }

    fn grant_of(&self, id: JobId) -> Option<Grant> {
        let job = self.jobs.get(&id)?;
        let nodes = job
            .granted
            .iter()
            .map(|g| {
                let rec = self.nodes.get(&g.node);
                GrantNode {
                    name: g.node.clone(),
                    addr: rec.and_then(|r| r.addr.clone()).unwrap_or_else(|| g.node.clone()),
                    port: rec.map(|r| r.port).unwrap_or(0),
                    cpus: g.cpus.clone(),
                    ntasks: g.tasks.len() as u32,
                }
            })
            .collect();
        Some(Grant {
            job: id,
            attempt: job.attempt,
            nodes,
            ntasks: job.ntasks(),
            cpus_per_task: job.sub.shape.cpus_per_task.unwrap_or(1),
            env: self.job_env(job),
        })
    }

    // ---------------------------------------------------------------- views

    /// Pending jobs in the order they start (priority, then submission).
    fn pending_order(&self) -> Vec<JobId> {
        let mut pending: Vec<&Job> = self
            .active
            .iter()
            .map(|i| &self.jobs[i])
            .filter(|j| j.state == JobState::Pending)
            .collect();
        pending.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.submit_time, j.id));
        pending.into_iter().map(|j| j.id).collect()
    }

    fn position(&self, id: JobId) -> Option<usize> {
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
            } else {
                job.reason.clone()
            },
            partition: job.partition.clone(),
            nodes: job.nodes(),
            ntasks: job.ntasks(),
            cpus: if job.granted.is_empty() {
                job.ntasks() * job.sub.shape.cpus_per_task.unwrap_or(1)
            } else {
                job.granted
                    .iter()
                    .map(|g| CpuSet::parse_list(&g.cpus).map(|c| c.len() as u32).unwrap_or(0))
                    .sum()
            },
            submit_time: job.submit_time,
            start_time: job.start_time,
            end_time: job.end_time,
            time_limit: job.time_limit.or(job.sub.shape.time_limit_secs.filter(|t| *t > 0)),
            exit_code: job.exit_code,
            attempt: job.attempt,
            requeue: job.sub.requeue,
            held: job.held,
            priority: job.priority,
            command: job.sub.command.clone(),
            cwd: job.sub.cwd.clone(),
            output: job.sub.output.clone(),
            error: job.sub.error.clone(),
            cpu_map: job.granted.iter().map(|g| (g.node.clone(), g.cpus.clone())).collect(),
            shape: job.sub.shape.clone(),
            position: if job.state == JobState::Pending { position } else { None },
            events: Vec::new(),
        })
    }

    /// Pending and running jobs, in id order.
    pub fn queue(&self) -> Vec<JobInfo> {
        // One ordering for the whole queue, not one per pending job.
        let order: HashMap<JobId, usize> =
            self.pending_order().into_iter().enumerate().map(|(i, id)| (id, i + 1)).collect();
        self.active.iter().filter_map(|id| self.job_info_at(*id, order.get(id).copied())).collect()
    }

    /// Finished jobs, newest first.
    pub fn history(&self, limit: usize) -> Vec<JobInfo> {
        self.jobs
            .values()
            .rev()
            .filter(|j| j.state.is_final())
            .take(limit)
            .filter_map(|j| self.job_info(j.id))
            .collect()
    }

    /// A node for display.
    pub fn node_info(&self, name: &str, now: u64) -> Option<NodeInfo> {
        let rec = self.nodes.get(name)?;
        let node = self.alloc.node(name)?;
        let registered = rec.topology.is_some();
        let t = node.topology();
        let partitions = node
            .partitions()
            .iter()
            .filter_map(|i| self.alloc.partitions().get(*i).map(|p| p.name.clone()))
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

enum StepFit {
    Now(Vec<(String, CpuSet, u32)>),
    Later,
    Never(String),
}

/// The text of a step credential: what the agents check before starting a proxy.
pub fn step_credential_text(
    job: JobId,
    attempt: u32,
    step: u32,
    uid: u32,
    gid: u32,
    nodes: &[GrantNode],
) -> String {
    let nodes: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.name, n.cpus)).collect();
    format!(
        "v1;job={job};attempt={attempt};step={step};uid={uid};gid={gid};nodes={}",
        nodes.join(" ")
    )
}

/// A step credential's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCredential {
    pub job: JobId,
    pub attempt: u32,
    pub step: u32,
    pub uid: u32,
    pub gid: u32,
    /// Node name and CPU list, in node-id order.
    pub nodes: Vec<(String, String)>,
}

impl StepCredential {
    /// Parses the text [`step_credential_text`] wrote.
    pub fn parse(text: &str) -> Option<StepCredential> {
        let mut fields: HashMap<&str, &str> = HashMap::new();
        let mut parts = text.split(';');
        if parts.next()? != "v1" {
            return None;
        }
        for p in parts {
            let (k, v) = p.split_once('=')?;
            fields.insert(k, v);
        }
        let nodes = fields
            .get("nodes")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|n| n.split_once('=').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect::<Option<Vec<_>>>()?;
        Some(StepCredential {
            job: fields.get("job")?.parse().ok()?,
            attempt: fields.get("attempt")?.parse().ok()?,
            step: fields.get("step")?.parse().ok()?,
            uid: fields.get("uid")?.parse().ok()?,
            gid: fields.get("gid")?.parse().ok()?,
            nodes,
        })
    }
}

/// The answer to a request on several jobs: Ok, or every problem, with 117 when one was a
/// matter of permission.
fn problems_reply(problems: &[String]) -> Reply {
    if problems.is_empty() {
        return Reply::Ok { message: String::new() };
    }
    let code = if problems.iter().any(|p| p.contains("belongs to")) {
        exit_code::PERMISSION_DENIED
    } else {
        exit_code::FAILURE
    };
    Reply::Error { code, message: problems.join("\n") }
}

/// Whether a job that lost a node goes back to the queue (the rest fail with `NodeFail`).
pub fn requeue_on_node_loss(kind: JobKind, requeue: bool) -> bool {
    match kind {
        JobKind::Batch | JobKind::Run => requeue,
        // An interactive allocation's shell cannot be moved.
        JobKind::Alloc => false,
    }
}

fn health_of(rec: &NodeRecord) -> NodeHealth {
    match (rec.health, &rec.drain) {
        (Health::Down, _) => NodeHealth::Down,
        (_, Some(_)) => NodeHealth::Drained,
        (Health::Suspect, _) => NodeHealth::Suspect,
        (Health::Up, None) => NodeHealth::Up,
    }
}

/// A running job's allocation in the allocator's terms (after a restart or a rebuild).
fn job_start(job: &Job, state: &ClusterState) -> Option<JobStart> {
    let nodes = job
        .granted
        .iter()
        .map(|g| {
            let node_index = state.nodes().iter().position(|n| n.name() == g.node)?;
            Some(NodeGrant {
                node: g.node.clone(),
                node_index,
                cpus: CpuSet::parse_list(&g.cpus).ok()?,
                memory: Bytes(g.memory),
                gpus: CpuSet::parse_list(&g.gpus).unwrap_or_default(),
                exclusive: g.exclusive,
                tasks: g
                    .tasks
                    .iter()
                    .map(|t| TaskGrant {
                        cpus: CpuSet::parse_list(t).unwrap_or_default(),
                        gpus: CpuSet::new(),
                    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shape;
    use std::path::Path;

    pub(super) fn config() -> Config {
        let text = r#"
cluster = "t"
state_dir = "/nonexistent"
key_file = "/nonexistent"
heartbeat_interval = "1s"
suspect_timeout = "3s"
lost_timeout = "6s"
reconnect_grace = "1s"
kill_grace = "2s"
[[partition]]
name = "batch"
nodes = "n[1-3]"
default = true
"#;
        Config::parse(text, Path::new("t.toml")).expect("config")
    }

    pub(super) fn root() -> Caller {
        Caller { uid: 0, gid: 0, user: "root".into(), admin: true }
    }

    pub(super) fn alice() -> Caller {
        Caller { uid: 1000, gid: 1000, user: "alice".into(), admin: false }
    }

    pub(super) fn registration(name: &str) -> Registration {
        let model = gangway_topology::Shape::new(1, 2, 1).build().expect("model");
        Registration {
            version: crate::protocol::VERSION,
            gangway_version: "test".into(),
            name: name.into(),
            topology: model.to_json(),
            addr: format!("10.0.0.{}", &name[1..]),
            port: 7718,
            running: Vec::new(),
            root: true,
            uid: Some(0),
            fenced: Vec::new(),
            releasing: Vec::new(),
        }
    }

    /// A cluster of three registered 2-core nodes (agent connections 101-103).
    pub(super) fn cluster() -> Cluster {
        let mut c = Cluster::new(config(), 0, Vec::new(), Vec::new(), 1, 0);
        c.listening(Mono(0));
        for i in 1..=3 {
            let name = format!("n{i}");
            c.from_agent(100 + i, &name, FromAgent::Register(registration(&name)), 0, Mono(0));
        }
        c
    }

    pub(super) fn batch(nodes: u32, ntasks: u32) -> Submission {
        Submission {
            kind: JobKind::Batch,
            name: "job".into(),
            shape: Shape { min_nodes: Some(nodes), ntasks: Some(ntasks), ..Shape::default() },
            cwd: "/tmp".into(),
            env: Vec::new(),
            script: Some("#!/bin/sh\ntrue\n".into()),
            args: Vec::new(),
            command: "job.sh".into(),
            output: None,
            error: None,
            umask: None,
            requeue: true,
            hold: false,
            idempotency_key: None,
        }
    }

    pub(super) fn starts(fx: &[Effect]) -> Vec<(String, JobId, u32)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::ToAgent { node, msg: ToAgent::Start(l) } => {
                    Some((node.clone(), l.job, l.attempt))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_gang_starts_on_all_its_nodes_at_once_or_not_at_all() {
        let mut c = cluster();
        c.submit(1, &root(), batch(3, 3), 10);
        let fx = c.schedule(10);
        let s = starts(&fx);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].0 == "n1" && s.iter().all(|(_, j, a)| *j == 1 && *a == 1));
        // A second 3-node job waits, with a reason, and nothing of it starts.
        c.submit(2, &root(), batch(3, 6), 11);
        assert!(starts(&c.schedule(11)).is_empty());
        assert_eq!(c.job_info(2).expect("job").reason, "Resources");
        c.submit(3, &root(), batch(1, 1), 12);
        c.schedule(12);
        let positions: Vec<(JobId, Option<usize>)> =
            c.queue().iter().map(|j| (j.id, j.position)).collect();
        assert_eq!(positions, [(1, None), (2, Some(1)), (3, Some(2))]);
        assert_eq!(c.job_info(3).expect("job").position, Some(2));
        // The first ends: the second starts on all three.
        let fx = c.from_agent(
            101,
            "n1",
            FromAgent::JobEnded { job: 1, attempt: 1, exit_code: 0, message: None },
            20,
            Mono(20),
        );
        assert_eq!(
            fx.iter()
                .filter(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Release { .. }, .. }))
                .count(),
            3
        );
        assert_eq!(starts(&c.schedule(20)).len(), 3);
        assert_eq!(c.job(1).expect("job").state, JobState::Completed);
    }

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

    #[test]
    fn only_the_owner_or_an_admin_may_cancel_and_hold() {
        let mut c = cluster();
        c.submit(1, &root(), batch(1, 1), 0);
        let (reply, fx) = c.cancel(&alice(), &[1], None, None, 1);
        assert!(
            matches!(reply, Reply::Error { code: exit_code::PERMISSION_DENIED, .. }),
            "{reply:?}"
        );
        assert!(fx.is_empty());
        assert!(matches!(c.set_held(&alice(), &[1], true, 1), Reply::Error { .. }));
        assert!(matches!(
            c.set_drain(&alice(), &["n1".into()], Some("x".into()), 1),
            Reply::Error { .. }
        ));
        let (reply, _) = c.cancel(&root(), &[1], None, None, 2);
        assert!(matches!(reply, Reply::Ok { .. }), "{reply:?}");
        assert_eq!(c.job(1).expect("job").state, JobState::Cancelled);
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
        assert!(fx.iter().any(|e| matches!(e, Effect::ToAgent { msg: ToAgent::Signal { signal, .. }, .. } if *signal == libc::SIGTERM)));
        keep_alive(&mut c, 62_000);
        c.tick(62_000, Mono(62_000));
        assert_eq!(c.job(1).expect("job").state, JobState::Timeout);

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
    fn step_credentials_round_trip() {
        let nodes = vec![
            GrantNode {
                name: "n1".into(),
                addr: "a".into(),
                port: 1,
                cpus: "0-1".into(),
                ntasks: 2,
            },
            GrantNode { name: "n2".into(), addr: "b".into(), port: 1, cpus: "0".into(), ntasks: 1 },
        ];
        let text = step_credential_text(7, 2, 3, 1000, 100, &nodes);
        let c = StepCredential::parse(&text).expect("parses");
        assert_eq!((c.job, c.attempt, c.step, c.uid, c.gid), (7, 2, 3, 1000, 100));
        assert_eq!(c.nodes, vec![("n1".into(), "0-1".into()), ("n2".into(), "0".into())]);
        assert!(StepCredential::parse("v2;job=1").is_none());
    }
}
