//! The messages between `gangway` commands, the controller and the agents: JSON objects, one
//! per line on local sockets and one per encrypted message on TCP links (see [`wire`]).
//!
//! JSON rather than a binary format: these are control messages, a few per job, and a person
//! debugging a cluster can read them with `socat` on a local socket.

pub mod array;
pub mod constraint;
pub mod credential;
pub mod dependency;
pub mod end_handling;
mod job_id;
pub mod signal;
pub mod wire;

pub use end_handling::{
    EndHandling, MailEvent, MailRequest, SignalTarget, StopCause, WarningSignal, stop_notice,
};
use gangway_topology::CpuSet;
use serde::{Deserialize, Serialize};
pub use signal::Signal;

/// Bumped when a message changes incompatibly; both sides check it at the first message.
/// 3: heartbeats are acknowledged and grant a lease; agents report fenced jobs.
/// 4: agents confirm that a released attempt's processes are gone ([`FromAgent::Released`]).
/// 5: agents report what a job's parts used ([`FromAgent::Usage`]).
pub const VERSION: u32 = 5;

pub use job_id::JobId;

/// What kind of job: how it runs and what ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `gangway batch`: a script on the first node; ends when the script does.
    Batch,
    /// `gangway alloc`: held by the connected client; ends when it lets go.
    Alloc,
    /// `gangway run` outside an allocation: one step over the whole allocation.
    Run,
}

/// A job's shape and constraints, as the user gave them (`None`: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub min_nodes: Option<u32>,
    pub max_nodes: Option<u32>,
    pub ntasks: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// `--mem`, bytes per node.
    pub mem_per_node: Option<u64>,
    /// `--mem-per-cpu`, bytes.
    pub mem_per_cpu: Option<u64>,
    pub gpus_per_task: Option<u32>,
    /// The GPUs' type (`--gres=gpu:k40m:1`); `None`: any (and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<gangway_topology::GpuType>,
    pub exclusive: bool,
    pub partition: Option<String>,
    /// `--time`, seconds (0: no limit).
    pub time_limit_secs: Option<u64>,
    pub nodelist: Vec<String>,
    pub exclude: Vec<String>,
    /// `--account` (`None`: the user's default account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos` (`None`: the default QOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// `--nice`: points taken off the job's priority (negative: added; administrators only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nice: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A new job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub kind: JobKind,
    pub name: String,
    pub shape: Shape,
    /// Where the job's processes start.
    pub cwd: String,
    /// The environment the job's processes get (the submitter's, per `--export`).
    pub env: Vec<(String, String)>,
    /// The batch script's text.
    pub script: Option<String>,
    /// Arguments to the batch script.
    #[serde(default)]
    pub args: Vec<String>,
    /// What runs, for display (`run` and `alloc`: the command; `batch`: the script's path).
    pub command: String,
    /// `--output`/`--error` patterns (batch).
    pub output: Option<String>,
    pub error: Option<String>,
    /// Requeue on node failure (batch default: yes).
    pub requeue: bool,
    /// Submit held.
    pub hold: bool,
    /// The submitter's umask: the job's processes run with it, so the files they and the batch
    /// output create are as private as the submitter's own (absent: 022).
    #[serde(default)]
    pub umask: Option<u32>,
    /// Made up by the client, one per submission: sending the same submission again (after
    /// a broken connection) with the same key returns the first job instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Warning signal before the time limit, output open mode.
    #[serde(default)]
    pub end_handling: EndHandling,
    /// `--constraint`: the node features the job needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<constraint::Constraint>,
    /// `--begin`: not eligible before this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin: Option<u64>,
    /// `--dependency`: what the job waits for (docs/slurm.md, "Dependencies").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<dependency::Dependency>,
    /// `--kill-on-invalid-dep`: a dependency that can never be satisfied cancels the job
    /// (`None`: the cluster's `kill_on_invalid_dep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_on_invalid_dep: Option<bool>,
    /// `--comment`: free text kept with the job and shown by `show job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `--array`: one job per index, each its own job once it starts (batch only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<array::ArraySpec>,
}

/// The umask a job runs with when its submission did not say.
pub const DEFAULT_UMASK: u32 = 0o022;

/// A request from a `gangway` command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A new job. Batch: answered with [`Reply::Submitted`]. Alloc and run: then
    /// [`Reply::Waiting`] updates and [`Reply::Granted`]; the job lasts while the connection
    /// does (or until [`Request::Release`]).
    Submit(Box<Submission>),
    /// `--test-only`: when and where this submission would start; nothing is submitted
    /// (answered with [`Reply::WouldStart`]).
    TestOnly(Box<Submission>),
    /// Pending and running jobs.
    Queue,
    /// Finished jobs, newest first.
    History {
        limit: usize,
    },
    /// Every node.
    Nodes,
    ShowJob {
        id: JobId,
    },
    ShowNode {
        name: String,
    },
    /// Ends jobs (or signals them, when `signal` is given).
    Cancel {
        ids: Vec<JobId>,
        signal: Option<Signal>,
        user: Option<String>,
        /// Array tasks by index (`7_3`): pending ones never start, running ones end.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tasks: Vec<(JobId, u32)>,
    },
    Hold {
        ids: Vec<JobId>,
    },
    Release {
        ids: Vec<JobId>,
    },
    /// Changes a pending job (`scontrol update`): what is `Some` is set, checked as a
    /// submission would be.
    Update {
        id: JobId,
        changes: JobUpdate,
    },
    /// Puts running or finished batch jobs back in the queue as a new attempt
    /// (`scontrol requeue`).
    Requeue {
        ids: Vec<JobId>,
    },
    Drain {
        nodes: Vec<String>,
        reason: String,
    },
    Resume {
        nodes: Vec<String>,
    },
    /// A step inside a job's allocation: answered with [`Reply::Waiting`] while it does not
    /// fit and then [`Reply::Step`]; the step lasts while the connection does.
    Step(StepRequest),
    /// A token for the caller's TCP access, valid for this long (local and vouched callers
    /// only: a token cannot renew itself).
    Token {
        valid_secs: u64,
    },
    /// Ends the job this connection holds (alloc/run), with the command's exit code.
    Done {
        exit_code: i32,
    },
    /// Fair share: every account and user (`gangway share`).
    Share,
    /// Reloads the scheduling sections of the controller's configuration (administrators).
    Reconfigure,
}

/// A step's shape inside an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRequest {
    pub job: JobId,
    pub ntasks: Option<u32>,
    pub nodes: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub cpus_per_task: u32,
    pub command: String,
    /// `-w`: only these nodes of the allocation (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodelist: Vec<String>,
    /// The step's own `--mem`/`--mem-per-cpu`: its cgroup's limit on each node, inside the
    /// job's (`None`, also from older clients: the job's limit alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<StepMemory>,
}

/// How a step asked for memory; the controller works out each node's limit once it knows the
/// step's CPUs there ([`StepMemory::on_node`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepMemory {
    /// `--mem`: bytes on each node of the step.
    PerNode(u64),
    /// `--mem-per-cpu`: bytes per CPU the step holds on a node.
    PerCpu(u64),
}

impl StepMemory {
    /// The limit on a node where the step holds `cpus` CPUs (Slurm's rule: `--mem-per-cpu`
    /// times the step's CPUs there).
    pub fn on_node(self, cpus: u32) -> u64 {
        match self {
            StepMemory::PerNode(bytes) => bytes,
            StepMemory::PerCpu(bytes) => bytes.saturating_mul(u64::from(cpus.max(1))),
        }
    }

    /// The flag it came from, as the user wrote it (for messages).
    pub fn flag(self) -> &'static str {
        match self {
            StepMemory::PerNode(_) => "--mem",
            StepMemory::PerCpu(_) => "--mem-per-cpu",
        }
    }
}

/// An answer to a `gangway` command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok {
        message: String,
    },
    /// Refused: `code` is the exit code the command should end with.
    Error {
        code: u8,
        message: String,
    },
    Submitted {
        id: JobId,
    },
    /// A `--test-only` submission: the id it would get, when it would start (wall ms; `None`:
    /// not known, e.g. behind jobs without a time limit, or held), on how many CPUs, where.
    WouldStart {
        id: JobId,
        start: Option<u64>,
        cpus: u32,
        nodes: Vec<String>,
        partition: String,
    },
    /// Still waiting: place in the queue (1 = next) and why.
    Waiting {
        id: JobId,
        position: usize,
        reason: String,
    },
    Granted(Grant),
    /// The job this connection holds ended without the client (cancelled, node lost, time).
    Ended {
        id: JobId,
        state: String,
        reason: String,
    },
    /// The job this connection holds lost a node and was requeued: wait for a new grant.
    Requeued {
        id: JobId,
        attempt: u32,
        reason: String,
    },
    Jobs {
        jobs: Vec<JobInfo>,
    },
    Nodes {
        nodes: Vec<NodeInfo>,
    },
    Job(Box<JobInfo>),
    Node(Box<NodeInfo>),
    Step(StepGrant),
    Token {
        token: String,
        /// Unix seconds.
        expiry: u64,
    },
    Shares {
        rows: Vec<ShareInfo>,
    },
}

/// Where a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub job: JobId,
    pub attempt: u32,
    pub nodes: Vec<GrantNode>,
    pub ntasks: u32,
    pub cpus_per_task: u32,
    /// `GANGWAY_*` variables for the job's processes.
    pub env: Vec<(String, String)>,
}

/// One node of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantNode {
    pub name: String,
    /// The agent's address and step port.
    pub addr: String,
    pub port: u16,
    /// Its CPUs (on the wire as a list: `0-3,8`).
    pub cpus: CpuSet,
    pub ntasks: u32,
    /// The step's own memory limit here, bytes (`None`: the job's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// Where a step runs, and the credential its proxies show the agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepGrant {
    pub job: JobId,
    pub step: u32,
    pub nodes: Vec<GrantNode>,
    pub credential: String,
    /// The key of the step's links to the agents' step ports (hex), derived from the credential
    /// with the cluster key: what a launcher holds and an eavesdropper does not.
    pub link_key: String,
}

/// What `scontrol update` may change in a pending job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUpdate {
    pub name: Option<String>,
    pub partition: Option<String>,
    /// Seconds (0: no limit).
    pub time_limit_secs: Option<u64>,
    /// `Dependency=...` (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<dependency::DependencyChange>,
    /// An array's throttle (`ArrayTaskThrottle`; 0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_throttle: Option<u32>,
}

/// A job as `queue`, `show job` and `history` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    pub name: String,
    pub user: String,
    pub uid: u32,
    pub kind: JobKind,
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY.
    pub state: String,
    /// Why it is pending, or how it ended.
    pub reason: String,
    pub partition: String,
    pub nodes: Vec<String>,
    pub ntasks: u32,
    pub cpus: u32,
    pub submit_time: u64,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    /// Seconds (None: unlimited).
    pub time_limit: Option<u64>,
    pub exit_code: Option<i32>,
    pub attempt: u32,
    pub requeue: bool,
    pub held: bool,
    pub priority: u32,
    pub command: String,
    pub cwd: String,
    pub output: Option<String>,
    pub error: Option<String>,
    /// Node name and CPU list, per node.
    pub cpu_map: Vec<(String, String)>,
    pub shape: Shape,
    /// Place among pending jobs (1 = next).
    pub position: Option<usize>,
    /// `show job` only: the job's events (time in ms, kind, detail), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<(u64, String, String)>,
    /// What its parts used on each node (its last attempt), as the agents reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<PartUsage>,
    /// What the scheduler says of a pending or running job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedInfo>,
    /// `--comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// What of its `--dependency` is not met yet, as Slurm prints it (`afterok:5(unfulfilled)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// An array's pending tasks (its own id), or one task of an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayInfo>,
}

/// What a line of the queue or history has to do with a job array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayInfo {
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub job: JobId,
    /// One task's index; `None` on the line of the array's pending tasks.
    pub task: Option<u32>,
    /// The tasks not started yet (on the array's own line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<array::IndexSet>,
    pub throttle: Option<u32>,
}

impl JobInfo {
    /// The id as Slurm shows it: `7`, a task `7_3`, an array's pending tasks `7_[3-999%50]`.
    pub fn label(&self) -> String {
        match &self.array {
            None => self.id.to_string(),
            Some(ArrayInfo { job, task: Some(i), .. }) => array::task_label(*job, *i),
            Some(ArrayInfo { job, task: None, pending, throttle }) => {
                array::pending_label(*job, &pending.clone().unwrap_or_default(), *throttle)
            }
        }
    }
}

/// A job as the scheduler sees it: its account and QOS, its priority factor by factor, and
/// (pending) when and where it is expected to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedInfo {
    pub account: String,
    pub qos: String,
    /// The priority: the sum of the factors' points.
    pub priority: i64,
    /// Each factor: name, value (as shown), weight, points.
    pub factors: Vec<(String, String, u32, i64)>,
    /// Expected start (wall ms), by its reservation.
    pub expected_start: Option<u64>,
    /// The nodes reserved for it.
    pub expected_nodes: Vec<String>,
    /// Running on borrowed quota: may be preempted to give it back.
    pub preemptable: bool,
}

/// One row of `gangway share`: an account (user `None`) or a user in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareInfo {
    pub account: String,
    pub user: Option<String>,
    /// Normalised share of the cluster.
    pub share: f64,
    /// Decayed usage, dominant-share seconds.
    pub usage: f64,
    /// That usage over everyone's.
    pub usage_share: f64,
    /// Fair-share factor (users only): 1 unused, 0.5 at its share, toward 0 above.
    pub factor: Option<f64>,
}

/// A node as `nodes` and `show node` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub state: String,
    pub reason: Option<String>,
    pub partitions: Vec<String>,
    pub cpus_total: u32,
    pub cpus_alloc: u32,
    pub memory_total: u64,
    pub memory_alloc: u64,
    pub gpus: u32,
    /// The node's GPUs by type (GPUs of no known type in none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_types: Vec<GpuTypeCount>,
    /// GPUs allocated to jobs.
    #[serde(default)]
    pub gpus_alloc: u32,
    pub load: Option<f64>,
    pub addr: Option<String>,
    /// "2 packages, 8 cores, 16 PUs, 2 NUMA".
    pub hardware: String,
    pub jobs: Vec<JobId>,
    /// Job id and its CPU list here.
    pub cpu_map: Vec<(JobId, String)>,
    pub last_heartbeat_ms_ago: Option<u64>,
    pub agent_version: Option<String>,
}

/// A node's GPUs of one type (`Gres=gpu:k40m:2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuTypeCount {
    pub name: String,
    pub total: u32,
    pub alloc: u32,
}

impl NodeInfo {
    /// Slurm's `Gres` of the node: `gpu:k40m:1,gpu:r9:1`, untyped GPUs as `gpu:N`; `(null)`
    /// without GPUs.
    pub fn gres(&self) -> String {
        self.gres_by(|t| t.total, self.gpus)
    }

    /// Slurm's `GresUsed`: the same with the counts allocated (`gpu:k40m:1,gpu:r9:0`).
    pub fn gres_used(&self) -> String {
        if self.gpus == 0 {
            return "(null)".into();
        }
        self.gres_by(|t| t.alloc, self.gpus_alloc)
    }

    fn gres_by(&self, count: impl Fn(&GpuTypeCount) -> u32, all: u32) -> String {
        if self.gpus == 0 {
            return "(null)".into();
        }
        let mut parts: Vec<String> =
            self.gpu_types.iter().map(|t| format!("gpu:{}:{}", t.name, count(t))).collect();
        let typed: u32 = self.gpu_types.iter().map(|t| t.total).sum();
        if typed < self.gpus {
            let untyped = all.saturating_sub(self.gpu_types.iter().map(&count).sum());
            parts.push(format!("gpu:{untyped}"));
        }
        parts.join(",")
    }
}

/// What an agent tells the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromAgent {
    Register(Registration),
    /// Numbered so the controller's [`ToAgent::Ack`] names it: an acknowledged heartbeat
    /// extends the agent's lease from when it was sent (docs/cluster.md, "Fencing").
    Heartbeat {
        load: f64,
        #[serde(default)]
        seq: u64,
    },
    /// A job's process on this node ended (the batch script), or the job's last process here.
    JobEnded {
        job: JobId,
        attempt: u32,
        exit_code: i32,
        message: Option<String>,
    },
    /// The job's processes here were killed because the agent's lease ran out (or the agent
    /// could not vouch for them): the attempt is over here, though it did not end by itself.
    Fenced {
        job: JobId,
        attempt: u32,
        reason: String,
    },
    /// Every process of `job` up to `attempt` here is gone (after a [`ToAgent::Release`]): a
    /// requeued job's next attempt waits for this from each node of the one before
    /// (docs/cluster.md, "When a node dies").
    Released {
        job: JobId,
        attempt: u32,
    },
    /// What one part of a job (its batch script, a step, or the whole job) used on this node,
    /// read from its cgroup when it ended. A part ended by the OOM killer says so.
    Usage {
        job: JobId,
        attempt: u32,
        usage: PartUsage,
    },
}

/// What one part of a job used on one node, as its cgroup counted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartUsage {
    pub node: String,
    /// `batch`, `step N`, or `job` (everything of the job on the node).
    pub part: String,
    /// CPU time in microseconds.
    pub user_us: u64,
    pub system_us: u64,
    /// Highest memory use, bytes (None: not counted here).
    pub peak_memory: Option<u64>,
    /// The memory limit it ran under, bytes.
    pub memory_limit: Option<u64>,
    /// Set when the kernel's OOM killer struck it: the message naming the part and the limit.
    pub out_of_memory: Option<String>,
}

/// An agent's first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub version: u32,
    pub gangway_version: String,
    pub name: String,
    /// The node's model as `gangway_topology::Topology` JSON.
    pub topology: String,
    /// Where launchers reach the agent.
    pub addr: String,
    pub port: u16,
    /// Jobs it still runs (after a controller restart or a reconnect).
    pub running: Vec<(JobId, u32)>,
    /// The agent runs as root (so it can run jobs as their users).
    pub root: bool,
    /// The agent's own uid (a non-root agent vouches only for it).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Attempts whose processes here were killed since the last registration (the lease ran
    /// out, or the agent's previous life left them): job, attempt, why.
    #[serde(default)]
    pub fenced: Vec<(JobId, u32, String)>,
    /// Attempts released by the controller whose processes here are still being ended (each
    /// job with the highest attempt released): any other attempt the controller waits for, not
    /// in `running` either, is gone.
    #[serde(default)]
    pub releasing: Vec<(JobId, u32)>,
}

/// What the controller tells an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToAgent {
    Welcome {
        heartbeat_ms: u64,
        /// How long after sending a heartbeat (or this registration) that is acknowledged the
        /// agent may keep its jobs running: `lost_timeout - fence_margin`.
        #[serde(default)]
        lease_ms: u64,
    },
    /// The controller heard heartbeat `seq` (0: the registration) on this connection.
    Ack {
        seq: u64,
    },
    Refused {
        reason: String,
    },
    /// A job now holds CPUs here: remember it (steps may come), and on the first node of a batch
    /// job run its script.
    Start(Box<JobLaunch>),
    /// Send a signal to the job's processes here (or to those `target` names).
    Signal {
        job: JobId,
        attempt: u32,
        signal: Signal,
        #[serde(default)]
        target: SignalTarget,
    },
    /// Append `line` to the job's batch error output here (Slurm's notice of a stopped job).
    Notice {
        job: JobId,
        attempt: u32,
        line: String,
    },
    /// The job is over here: end whatever of it still runs (TERM, then KILL), forget it, and
    /// say [`FromAgent::Released`] once nothing of it is left.
    Release {
        job: JobId,
        attempt: u32,
    },
}

/// A job start, as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobLaunch {
    pub job: JobId,
    pub attempt: u32,
    pub name: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// This node's CPUs for the job.
    pub cpus: CpuSet,
    pub batch: Option<BatchLaunch>,
    /// The job's environment (the submitter's plus `GANGWAY_*`).
    pub env: Vec<(String, String)>,
    pub cwd: String,
    /// The submitter's umask, for every process of the job here.
    pub umask: u32,
    /// The job's memory limit on this node, in bytes, when it asked for one (`--mem`,
    /// `--mem-per-cpu`): its cgroup enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// The node's GPUs the job holds (indexes of the node's model).
    #[serde(default, skip_serializing_if = "CpuSet::is_empty")]
    pub gpus: CpuSet,
    /// A batch job's error output (absolute), on every node: where an agent reports a part
    /// of the job the OOM killer struck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_output: Option<String>,
    /// A `gangway run` job of its own: one step over the whole allocation, so the agent
    /// makes no cgroup ahead for a second one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_step: bool,
}

/// The script part of a batch job start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchLaunch {
    pub script: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Absolute paths.
    pub output: String,
    pub error: Option<String>,
    /// Written at the top of the output before a requeued attempt runs.
    pub marker: Option<String>,
    /// Seconds (None: none); the agent does not enforce it, the controller does.
    pub time_limit: Option<u64>,
    /// `--open-mode`: see [`EndHandling::append`].
    #[serde(default)]
    pub append: Option<bool>,
}
