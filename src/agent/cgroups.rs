//! The agent's cgroups (docs/containment.md): one per job on this node, made from its grant
//! when the job arrives (CPUs and their NUMA memory, `--mem` with swap off, a pids limit if the
//! agent has one, the node's GPUs it was not granted denied), and one per part of the job
//! under it, `batch` for the script and `step_N` for each step's proxy and its ranks (with the
//! step's own `--mem` when it has one, never above the job's); the one
//! step of a `gangway run` job runs in the job's cgroup itself (`Part::Only`).
//!
//! A part's first process joins its cgroup itself, between fork and exec (a write of `0` to
//! descriptors opened before the fork, `process::spawn`): nothing it runs ever starts outside,
//! and no process is moved afterwards. A step's part is made ahead of its launch with the
//! job's limits (`steps::prepare_next`, [`NodeCgroups::make_part`]) and narrowed to the
//! step's CPUs at the launch if they are fewer. The script gets a part of its own rather than the job
//! cgroup itself because cgroup v2 lets only a cgroup without processes give controllers to
//! its children (the steps).
//!
//! A part's end kills what is left in its cgroup and reads what it used (`Part` usage); the
//! job's release kills everything in the job's cgroup (freeze, SIGKILL, thaw: also what used
//! `setsid` or a double fork to leave its session) and reads the job's figures. A starting
//! agent sweeps every job cgroup under its root: its previous life's jobs were killed by
//! session already (`leftovers`), and this kills what escaped them.
//!
//! The calls block (the kill loop waits for the kernel), so the agent makes them on blocking
//! threads. Without permission to use cgroups the agent says so once and runs jobs unconfined.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use gangway_containment::{
    Base, Containment, Join, Limits, RootConfig, Swap, Usage, devices, job_cgroup, step_cgroup,
};
use gangway_topology::{CpuSet, NodeSet, Topology};

use crate::protocol::{JobId, JobLaunch, PartUsage};

/// How long killing one cgroup may take.
const KILL_BUDGET: Duration = Duration::from_secs(10);

/// A part of a job on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Batch,
    Step(u32),
    /// The one step of a `gangway run` job (`JobLaunch.one_step`), run in the job's cgroup
    /// itself: nothing else of the job runs on the node, so a cgroup of its own would only
    /// double the making and the removal, each under the kernel's global cgroup lock.
    Only(u32),
}

impl Part {
    fn path(self, job: JobId, attempt: u32) -> String {
        match self {
            Part::Batch => format!("{}/batch", job_path(job, attempt)),
            Part::Step(n) => step_cgroup(format!("{job}.{attempt}"), n),
            Part::Only(_) => job_path(job, attempt),
        }
    }

    /// How reports and messages name it.
    pub fn label(self) -> String {
        match self {
            Part::Batch => "batch".into(),
            Part::Step(n) | Part::Only(n) => format!("step {n}"),
        }
    }

    /// The part a step made ahead of its launch runs in: the job's cgroup for a one-step job.
    pub fn ahead(launch: &JobLaunch, step: u32) -> Part {
        if launch.one_step { Part::Only(step) } else { Part::Step(step) }
    }
}

/// A job attempt's cgroup, `job_<id>.<attempt>`: by attempt, because a release of an earlier
/// attempt may reach the node after the next one started there, and must not kill it.
fn job_path(job: JobId, attempt: u32) -> String {
    job_cgroup(format!("{job}.{attempt}"))
}

/// The cgroups of this node's jobs.
#[derive(Debug, Clone)]
pub struct NodeCgroups {
    containment: Arc<Containment>,
    node: String,
    /// The root's name, for the fencer ([`fence_jobs`]).
    root: String,
    /// The most tasks a job may run here at once.
    pids: Option<u64>,
}

impl NodeCgroups {
    /// The node's cgroups under the root `root` (a directory at the top of each hierarchy),
    /// or `None` (turned off, or no permission: said here, once).
    pub fn open(node: &str, root: &str, off: bool, pids: Option<u64>) -> Option<Self> {
        if off {
            tracing::info!("cgroups turned off: jobs run unconfined");
            return None;
        }
        match Containment::discover(&RootConfig::new(root, Base::Top)) {
            Ok(c) => {
                tracing::info!(cgroups = %c.backend().location(), "jobs run in cgroups");
                // GANGWAY_CGROUP_FAVORDYNMODS=1: let joins skip the RCU grace period
                // (containment::migration). Off by default: measured here, a join cost 0.3 ms
                // either way once the kernel had warmed, and runs were slower with it on.
                let keep = std::env::var_os("GANGWAY_CGROUP_FAVORDYNMODS").is_none_or(|v| v != "1");
                match gangway_containment::migration::favor_dynamic_moves(keep) {
                    Ok(m) => tracing::info!(migrations = ?m, "cgroup joins and favordynmods"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot turn on favordynmods: each cgroup join may wait for an RCU grace period")
                    }
                }
                Some(Self {
                    containment: Arc::new(c),
                    node: node.to_string(),
                    root: root.to_string(),
                    pids,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "no cgroups: jobs run unconfined (CPUs by affinity only, memory not limited, nothing accounted)");
                None
            }
        }
    }

    /// The root's name (a directory at the top of each hierarchy).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Kills and removes every job cgroup under the root: at start-up the agent owns no job
    /// yet, so each one is a previous life's.
    pub async fn sweep(&self) {
        let c = self.containment.clone();
        let report = tokio::task::spawn_blocking(move || {
            c.sweep(&|name| !name.starts_with("job_"), KILL_BUDGET)
        })
        .await;
        let Ok(report) = report else { return };
        if !report.removed.is_empty() {
            tracing::warn!(cgroups = ?report.removed, processes = report.killed, "swept the job cgroups a previous agent left");
        }
        for (name, why) in report.failed {
            tracing::error!(cgroup = %name, error = %why, "cannot sweep a job cgroup");
        }
    }

    /// Creates the cgroup of a job arriving here. A failure is logged and the job runs
    /// unconfined (its parts find no cgroup to join).
    pub fn create_job(&self, launch: &JobLaunch, topology: &Topology) {
        self.create_job_with(launch.job, launch.attempt, &self.job_limits(launch, topology));
    }

    /// The job's limits on this node ([`job_limits`] with this agent's pids limit).
    pub fn job_limits(&self, launch: &JobLaunch, topology: &Topology) -> Limits {
        job_limits(launch, topology, self.pids, &machine_has)
    }

    /// [`NodeCgroups::create_job`] with the limits worked out: blocking.
    pub fn create_job_with(&self, job: JobId, attempt: u32, limits: &Limits) {
        let began = std::time::Instant::now();
        let made = self.containment.create(&job_path(job, attempt), limits);
        tracing::debug!(job, cgroup_us = began.elapsed().as_micros() as u64, "job cgroup made");
        match made {
            Ok(notes) => {
                for note in notes {
                    tracing::warn!(job, "{note}");
                }
            }
            Err(e) => {
                tracing::error!(job, error = %e, "cannot create the job's cgroup; it runs unconfined")
            }
        }
    }

    /// Creates a part's cgroup (narrowed to `cpus` when given) and opens what its first
    /// process writes to join it: the hierarchies that enforce one of the job's limits, the
    /// freezer and those that account (on v1 each join costs the kernel an RCU grace period,
    /// so no more than that). `None`: the job has no cgroup here (logged).
    pub fn enter(
        &self,
        launch: &JobLaunch,
        topology: &Topology,
        part: Part,
        cpus: Option<&CpuSet>,
    ) -> Option<Vec<OwnedFd>> {
        let limits = self.part_limits(launch, topology, cpus);
        self.make_part(launch.job, launch.attempt, part, &limits)
    }

    /// A part's limits: narrowed to `cpus` (when this machine has them), inside the job's.
    /// The job's limits on the part as well: the OOM killer then strikes (and counts) in the
    /// part that went over, which names it.
    pub fn part_limits(
        &self,
        launch: &JobLaunch,
        topology: &Topology,
        cpus: Option<&CpuSet>,
    ) -> Limits {
        self.step_limits(launch, topology, cpus, None)
    }

    /// A step's limits ([`step_limits`] inside this job's on this node).
    pub fn step_limits(
        &self,
        launch: &JobLaunch,
        topology: &Topology,
        cpus: Option<&CpuSet>,
        memory: Option<u64>,
    ) -> Limits {
        let job = job_limits(launch, topology, self.pids, &machine_has);
        step_limits(&job, cpus, memory, &machine_has)
    }

    /// [`NodeCgroups::enter`] with the limits worked out: blocking (the agent makes a step's
    /// cgroup ahead of its launch on a blocking thread, `steps::prepare_next`).
    pub fn make_part(
        &self,
        job: JobId,
        attempt: u32,
        part: Part,
        limits: &Limits,
    ) -> Option<Vec<OwnedFd>> {
        let began = std::time::Instant::now();
        if !self.containment.backend().exists(&job_path(job, attempt)) {
            return None;
        }
        let path = part.path(job, attempt);
        // The job's cgroup, made just before with the job's limits, is only joined.
        let made = match part {
            Part::Only(_) => Ok(Vec::new()),
            Part::Batch | Part::Step(_) => self.containment.create(&path, limits),
        }
        .and_then(|_| self.containment.backend().join_files(&path, Join::Accounting(limits)));
        let took = began.elapsed().as_micros() as u64;
        tracing::debug!(job, part = %part.label(), cgroup_us = took, "part cgroup made");
        match made {
            Ok(fds) => Some(fds),
            Err(e) => {
                tracing::error!(job, part = %part.label(), error = %e, "cannot set up the part's cgroup; it runs in its job's");
                None
            }
        }
    }

    /// A step's cgroup made ahead with its job's limits, now for a step on `limits`: its CPUs
    /// (and their NUMA nodes) narrowed when the step's differ from the job's, and its memory
    /// limit when it has one of its own (lower than the job's: v1 takes the limit before the
    /// memory-plus-swap one), a write each.
    /// `false`: they could not be (the caller makes the part afresh).
    pub fn narrow(&self, job: JobId, attempt: u32, part: Part, limits: &Limits) -> bool {
        let began = std::time::Instant::now();
        let mut cpus = Limits::new();
        if let Some(c) = &limits.cpus {
            cpus = cpus.cpus(c.clone());
        }
        if let Some(m) = &limits.mems {
            cpus = cpus.mems(m.clone());
        }
        if let Some(bytes) = limits.memory {
            cpus = cpus.memory(bytes).swap(limits.swap);
        }
        let done = self.containment.create(&part.path(job, attempt), &cpus).is_ok();
        let took = began.elapsed().as_micros() as u64;
        tracing::debug!(job, part = %part.label(), cgroup_us = took, "part cgroup made ahead, narrowed");
        done
    }

    /// A part ended: kills what is left of it, reads what it used, removes its cgroup (a
    /// one-step job's step: only the kill; the job's release does the rest). Blocking.
    /// `None`: it had no cgroup, or it was the job's.
    pub fn finish_part(
        &self,
        job: JobId,
        attempt: u32,
        part: Part,
        limit: Option<u64>,
    ) -> Option<PartUsage> {
        let path = part.path(job, attempt);
        let label = part.label();
        if let Part::Only(_) = part {
            // The job's own cgroup: what is left is killed now, the release reads and removes it.
            let began = std::time::Instant::now();
            if let Err(e) = self.containment.kill(&path, KILL_BUDGET) {
                tracing::error!(cgroup = path, error = %e, "cannot end the step's processes");
            }
            let took = began.elapsed().as_micros() as u64;
            tracing::debug!(cgroup = path, cgroup_us = took, "step ended in its job's cgroup");
            return None;
        }
        self.finish(&path, &label, &format!("{label} of job {job}"), limit)
    }

    /// What a part used so far, read without ending it (a step's figures go ahead of its
    /// end; its cgroup is ended after). `None`: it has no cgroup.
    pub fn read_part(
        &self,
        job: JobId,
        attempt: u32,
        part: Part,
        limit: Option<u64>,
    ) -> Option<PartUsage> {
        let label = part.label();
        let used = self.containment.usage(&part.path(job, attempt)).ok()?;
        Some(part_usage(&self.node, &label, &used, limit, &format!("{label} of job {job}")))
    }

    /// The job was released: kills everything of it here, reads what it used, removes its
    /// cgroup. Blocking.
    /// Every attempt up to `upto` is over: their figures, by attempt.
    pub fn finish_job(&self, job: JobId, upto: u32, limit: Option<u64>) -> Vec<(u32, PartUsage)> {
        // Each attempt's cgroup (numbered from 1) looked up by name, `finish` checking that it
        // exists: the root, which holds every job's, is not listed in each hierarchy at every
        // release.
        (1..=upto)
            .filter_map(|a| {
                let used = self.finish(&job_path(job, a), "job", &format!("job {job}"), limit)?;
                Some((a, used))
            })
            .collect()
    }

    fn finish(&self, path: &str, part: &str, what: &str, limit: Option<u64>) -> Option<PartUsage> {
        if !self.containment.backend().exists(path) {
            return None;
        }
        let began = std::time::Instant::now();
        let finished = self.containment.finish(path, KILL_BUDGET);
        tracing::debug!(
            cgroup = path,
            cgroup_us = began.elapsed().as_micros() as u64,
            "cgroup ended"
        );
        match finished {
            Ok((used, killed)) => {
                if killed.killed > 0 {
                    tracing::info!(
                        cgroup = path,
                        processes = killed.killed,
                        "killed what was left"
                    );
                }
                Some(part_usage(&self.node, part, &used, limit, what))
            }
            Err(e) => {
                tracing::error!(cgroup = path, error = %e, "cannot end the cgroup");
                None
            }
        }
    }
}

/// The variables that tell a job's script and step proxies its GPUs on this node
/// (`CUDA_VISIBLE_DEVICES`, `ROCR_VISIBLE_DEVICES`, `GANGWAY_GPUS`); none without GPUs.
/// Numbered 0.. over the job's GPUs where its cgroup denies the others' device nodes
/// (`confined`: the runtimes then count only what they can open), else by the machine's
/// indexes. Ranks started with `--gpus-per-task` get their own share from the launcher.
pub fn gpu_env(launch: &JobLaunch, topology: &Topology, confined: bool) -> Vec<(String, String)> {
    use gangway_containment::gpu::{Numbering, task_env};
    if launch.gpus.is_empty() {
        return Vec::new();
    }
    let numbering = if gpus_numbered_within_job(launch, topology, confined) {
        Numbering::WithinJob
    } else {
        Numbering::Machine
    };
    let gpus: Vec<u32> = launch.gpus.iter().collect();
    task_env(&gpus, &launch.gpus, numbering)
}

/// Whether the job's tasks number their GPUs 0.. over the job's: its cgroup denies the other
/// GPUs' device nodes (`confined`: the backend enforces device rules), so the runtimes count
/// only what they can open.
pub fn gpus_numbered_within_job(launch: &JobLaunch, topology: &Topology, confined: bool) -> bool {
    confined
        && !launch.gpus.is_empty()
        && !devices::denied_gpu_nodes(topology, &launch.gpus, std::path::Path::new("/dev"))
            .is_empty()
}

impl NodeCgroups {
    /// Whether this backend enforces device rules (v1's devices controller; on v2 an eBPF
    /// device program, if the agent may load one).
    pub fn confines_devices(&self) -> bool {
        self.containment.backend().confines_devices()
    }
}

/// Adds the agent's word on a part of a job to the job's error output (it exists: the
/// script's stderr was opened on it, as its user; appended as root, never created).
pub fn append_error(path: &str, message: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = writeln!(f, "gangway: error: {message}");
    }
}

/// What a part's cgroup counted, as the agent reports it.
pub fn part_usage(
    node: &str,
    part: &str,
    used: &Usage,
    limit: Option<u64>,
    what: &str,
) -> PartUsage {
    PartUsage {
        node: node.to_string(),
        part: part.to_string(),
        user_us: used.user.as_micros() as u64,
        system_us: used.system.as_micros() as u64,
        peak_memory: used.peak_memory,
        memory_limit: limit,
        out_of_memory: used.out_of_memory(&format!("{what} on {node}"), limit),
    }
}

/// Whether this machine has every one of `cpus` (a stand-in topology may grant others).
fn machine_has(cpus: &CpuSet) -> bool {
    let Ok(have) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return false;
    };
    !cpus.is_empty() && cpus.iter().all(|c| have.is_set(c as usize).unwrap_or(false))
}

/// A step's limits inside its job's `job` (pure but for `present`, as [`job_limits`]): its
/// CPUs, and its own memory limit (`--mem` of the step, from its credential) with swap off as
/// for jobs; never above the job's, which it keeps where the step sets none.
pub fn step_limits(
    job: &Limits,
    cpus: Option<&CpuSet>,
    memory: Option<u64>,
    present: &dyn Fn(&CpuSet) -> bool,
) -> Limits {
    let mut limits = Limits::new();
    if let Some(c) = cpus.filter(|c| present(c)) {
        limits = limits.cpus(c.clone());
    }
    if let Some(bytes) = memory {
        limits = limits.memory(bytes).swap(Swap::Off);
    }
    limits.within(job)
}

/// The memory limit a step runs under: its own, never above its job's (`None`: neither has
/// one). What its OOM report names.
pub fn step_memory_limit(job: Option<u64>, step: Option<u64>) -> Option<u64> {
    match (job, step) {
        (Some(j), Some(s)) => Some(j.min(s)),
        (j, s) => j.or(s),
    }
}

/// A job's limits on this node from its grant (pure but for `present`, which says whether
/// the machine has the granted CPUs): its CPUs and their NUMA nodes, its memory with swap
/// off, the pids limit, and the GPUs of the node it was not granted denied.
pub fn job_limits(
    launch: &JobLaunch,
    topology: &Topology,
    pids: Option<u64>,
    present: &dyn Fn(&CpuSet) -> bool,
) -> Limits {
    let mut limits = Limits::new();
    if present(&launch.cpus) {
        limits = limits.cpus(launch.cpus.clone());
        let mems: NodeSet = topology.local_numa_nodes(&launch.cpus);
        if !mems.is_empty() {
            limits = limits.mems(mems);
        }
    }
    if let Some(m) = launch.memory {
        limits = limits.memory(m);
    }
    if let Some(p) = pids {
        limits = limits.pids(p);
    }
    for d in devices::denied_gpu_nodes(topology, &launch.gpus, std::path::Path::new("/dev")) {
        limits = limits.deny(d);
    }
    limits
}

/// The fencer's part (`agent/fence.rs`): the node's job cgroups under `root`, opened once when
/// the fencer starts (None: no cgroups).
pub fn fencer_cgroups(root: &str) -> Option<Containment> {
    Containment::discover(&RootConfig::new(root, Base::Top)).ok()
}

/// Kills everything in every job cgroup under the fencer's root, when the lease ends or the
/// agent is gone: the sessions' kill misses a `setsid` daemon or a double-forked orphan. Not
/// removed: a live agent still reads their figures and removes them at the job's release, a
/// restarted one sweeps them. How many processes were killed.
pub fn fence_jobs(containment: &Containment) -> usize {
    let mut killed = 0;
    for job in containment.backend().children("") {
        if job.starts_with("job_")
            && let Ok(report) = containment.kill(&job, KILL_BUDGET)
        {
            killed += report.killed;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_topology::Shape;

    fn launch(cpus: &str, memory: Option<u64>) -> JobLaunch {
        JobLaunch {
            job: 7,
            attempt: 1,
            name: "j".into(),
            user: "alice".into(),
            uid: 1000,
            gid: 1000,
            cpus: cpus.parse().unwrap(),
            batch: None,
            env: Vec::new(),
            cwd: "/".into(),
            umask: 0o022,
            memory,
            gpus: CpuSet::new(),
            error_output: None,
            one_step: false,
        }
    }

    #[test]
    fn a_job_is_confined_to_its_cpus_their_numa_nodes_and_its_memory() {
        let topology = Shape::new(2, 4, 1).build().unwrap();
        let l = job_limits(&launch("4-5", Some(100 << 20)), &topology, Some(64), &|_| true);
        assert_eq!(l.cpus, Some("4-5".parse().unwrap()));
        assert_eq!(l.mems, Some("1".parse().unwrap()), "CPUs 4-5 sit on the second socket");
        assert_eq!(l.memory, Some(100 << 20));
        assert_eq!(l.pids, Some(64));
        assert_eq!(l.swap, gangway_containment::Swap::Off);
    }

    #[test]
    fn a_steps_own_memory_narrows_its_jobs_and_never_widens_it() {
        let topology = Shape::new(2, 4, 1).build().unwrap();
        let job = job_limits(&launch("0-3", Some(300 << 20)), &topology, None, &|_| true);
        let cpus: CpuSet = "1".parse().unwrap();
        let l = step_limits(&job, Some(&cpus), Some(50 << 20), &|_| true);
        assert_eq!((l.cpus, l.memory, l.swap), (Some(cpus.clone()), Some(50 << 20), Swap::Off));
        assert_eq!(l.mems, job.mems, "the job's NUMA nodes");
        // More than the job's (the controller refuses it; an old one may not): the job's.
        let l = step_limits(&job, None, Some(1 << 30), &|_| true);
        assert_eq!((l.cpus, l.memory), (job.cpus.clone(), Some(300 << 20)));
        // None of its own: the job's limits as they are.
        assert_eq!(step_limits(&job, None, None, &|_| true), job);
        assert_eq!(step_memory_limit(Some(300), Some(50)), Some(50));
        assert_eq!(step_memory_limit(Some(300), Some(500)), Some(300));
        assert_eq!(step_memory_limit(None, Some(50)), Some(50));
        assert_eq!(step_memory_limit(Some(300), None), Some(300));
        // A job without a limit: the step's own is the only one, swap off.
        let free = job_limits(&launch("0-3", None), &topology, None, &|_| true);
        let l = step_limits(&free, None, Some(50 << 20), &|_| true);
        assert_eq!((l.memory, l.swap), (Some(50 << 20), Swap::Off));
    }

    #[test]
    fn cpus_the_machine_lacks_and_memory_not_asked_for_are_not_limits() {
        let topology = Shape::new(2, 4, 1).build().unwrap();
        let l = job_limits(&launch("0-1", None), &topology, None, &|_| false);
        assert_eq!((l.cpus, l.mems, l.memory, l.pids), (None, None, None, None));
    }

    #[test]
    fn a_job_with_gpus_is_told_them_and_one_without_is_told_nothing() {
        let mut shape = Shape::new(2, 4, 1);
        shape.gpus_per_package = 2;
        let topology = shape.build().unwrap();
        let mut l = launch("0-7", None);
        assert!(gpu_env(&l, &topology, true).is_empty());
        l.gpus = "1,3".parse().unwrap();
        let env = gpu_env(&l, &topology, false);
        assert_eq!(env[0], ("CUDA_VISIBLE_DEVICES".into(), "1,3".into()));
        assert_eq!(env[1], ("ROCR_VISIBLE_DEVICES".into(), "1,3".into()));
        assert_eq!(env[2], ("GANGWAY_GPUS".into(), "1,3".into()));
    }

    #[test]
    fn job_cgroups_are_named_by_attempt() {
        assert_eq!(job_path(12, 3), "job_12.3");
        assert_eq!(Part::Step(0).path(12, 3), "job_12.3/step_0");
        assert_eq!(Part::Only(0).path(12, 3), "job_12.3", "a one-step job's step: the job's");
        assert_eq!(Part::Only(0).label(), Part::Step(0).label());
        assert_eq!(Part::Batch.path(12, 3), "job_12.3/batch");
    }

    #[test]
    fn only_a_run_jobs_step_made_ahead_runs_in_the_job_cgroup() {
        let mut l = launch("0", None);
        assert_eq!(Part::ahead(&l, 1), Part::Step(1));
        l.one_step = true;
        assert_eq!(Part::ahead(&l, 0), Part::Only(0));
    }

    #[test]
    fn the_oom_report_names_the_part_the_node_and_the_limit() {
        let used = Usage {
            user: Duration::from_millis(1500),
            oom_kills: 1,
            peak_memory: Some(100 << 20),
            ..Usage::default()
        };
        let u = part_usage("node2", "step 0", &used, Some(100 << 20), "step 0 of job 7");
        assert_eq!((u.user_us, u.part.as_str(), u.node.as_str()), (1_500_000, "step 0", "node2"));
        let m = u.out_of_memory.expect("an OOM message");
        assert!(m.starts_with("step 0 of job 7 on node2 ran out of memory"), "{m}");
        assert!(m.contains("memory limit of 100 MiB"), "{m}");
        let quiet = part_usage("node2", "batch", &Usage::default(), None, "batch of job 7");
        assert_eq!(quiet.out_of_memory, None);
    }
}
