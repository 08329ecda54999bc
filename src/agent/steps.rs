//! Step proxies: a launcher's request with a credential the launch port checked becomes a
//! `gangway proxy` run as the job's user on the step's CPUs, its stdin, stderr and exit relayed
//! over the launcher's encrypted link. Each step's cgroup is made ahead of its launch, on a
//! blocking thread ([`prepare_next`]), so the launch only joins it; the proxy is told the
//! job's GPUs here, which its tasks choose from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gangway_launcher::bootstrap::agent::{exit_frame, stderr_frame};
use gangway_launcher::bootstrap::{RemoteExit, exit_of};
use gangway_link::{Opener, Sealer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;

use super::cgroups::{NodeCgroups, Part};
use super::events::{Event, ProxyStarted};
use super::fence::Fencing;
use super::jobs::{Answered, LocalJob, NextStep, answered};
use super::launch::StepLaunch;
use super::options::AgentOptions;
use super::process::{self, RunAs};
use super::spawner::{Join, Owner, Start};
use crate::protocol::credential::StepCredential;
use crate::protocol::{FromAgent, JobId};

/// Starts a step's proxy, or refuses the launcher (the job is not here, its attempt is over,
/// or it may not run now).
pub(super) fn start_proxy(
    step: StepLaunch,
    owner: Owner<'_>,
    jobs: &mut HashMap<JobId, LocalJob>,
    fencing: &mut Fencing,
) {
    let Owner { opts, ev_tx, spawner } = owner;
    // A step cgroup of the job is being made ahead (with the job's own, for a job without a
    // script): the launch goes on once that is done, well under a millisecond. Every launch
    // of the job waits, not only the step's: the job's cgroup may not exist yet.
    if let Some(job) = jobs.get_mut(&step.credential.job)
        && job.launch.attempt == step.credential.attempt
        && let NextStep::Making(_, waiting) = &mut job.next_step
    {
        waiting.push(step);
        return;
    }
    // The job's own cgroup is being made with its script's start (`batch.rs`).
    if let Some(job) = jobs.get_mut(&step.credential.job)
        && job.launch.attempt == step.credential.attempt
        && let Some(waiting) = &mut job.making_cgroup
    {
        tracing::info!(
            job = job.launch.job,
            "a step launch waits for the job's cgroup, made with its script's start"
        );
        waiting.push(step);
        return;
    }
    let StepLaunch { credential: c, node_id, stream, sealer, opener, received: began } = step;
    let Some(job) = jobs.get_mut(&c.job) else {
        let why = format!(
            "job {} does not run on this node (it ended, or the step came too late)",
            c.job
        );
        refuse(stream, sealer, why);
        return;
    };
    if job.launch.attempt != c.attempt || job.launch.uid != c.uid {
        let why =
            format!("the credential is for attempt {} of job {}, which is over", c.attempt, c.job);
        refuse(stream, sealer, why);
        return;
    }
    if let Some(why) = job.fenced.clone().or_else(|| fencing.may_start().err()) {
        refuse(stream, sealer, format!("job {} cannot run here now: {why}", c.job));
        return;
    }
    let Some(cpus) = c.nodes.get(node_id as usize).map(|(_, cpus)| cpus.clone()) else {
        // The launch port checked that the credential names this node: not reached.
        refuse(stream, sealer, format!("the credential names no node {node_id}"));
        return;
    };
    let run_as = RunAs::for_job(&job.launch.user, c.uid, c.gid, "/", &cpus, job.launch.umask);
    let mut env: Vec<(String, String)> = job
        .launch
        .env
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "PATH" | "HOME" | "USER" | "LOGNAME" | "LANG" | "TMPDIR" | "XDG_CACHE_HOME"
            ) || k.starts_with("GANGWAY_")
        })
        .cloned()
        .collect();
    // A proxy needs a home (its cached machine model lives there) even when the job's
    // environment has none.
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid)) {
        for (k, v) in
            [("HOME", u.dir.display().to_string()), ("USER", u.name.clone()), ("LOGNAME", u.name)]
        {
            if !env.iter().any(|(e, _)| e == k) {
                env.push((k.to_string(), v));
            }
        }
    }
    if !env.iter().any(|(e, _)| e == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    // What the proxy is told of the step here is the agent's word alone, never the job's.
    env.retain(|(k, _)| !k.starts_with("GANGWAY_STEP_"));
    env.push(("GANGWAY_STEP_ID".into(), c.step.to_string()));
    env.push(("GANGWAY_STEP_CPUS".into(), cpus.to_string()));
    // The job's GPUs here; its ranks inherit them, or get their share of them with
    // --gpus-per-task (the proxy places tasks among these only, numbered as the job's are).
    let confined = opts.cgroups.as_ref().is_some_and(|c| c.confines_devices());
    for (k, v) in super::cgroups::gpu_env(&job.launch, &opts.topology, confined) {
        env.retain(|(e, _)| *e != k);
        env.push((k, v));
    }
    env.push(("GANGWAY_STEP_GPUS".into(), job.launch.gpus.to_string()));
    if super::cgroups::gpus_numbered_within_job(&job.launch, &opts.topology, confined) {
        env.push(("GANGWAY_STEP_GPU_NUMBERING".into(), "job".into()));
    }
    if let Some(model) = &opts.topology_file {
        env.push(("GANGWAY_STEP_TOPOLOGY_XML".into(), model.display().to_string()));
    }
    // The proxy hands it to its ranks: their commands reach the controller through this agent.
    env.retain(|(k, _)| k != "GANGWAY_CONTROLLER");
    env.push(("GANGWAY_CONTROLLER".into(), opts.socket.display().to_string()));
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("gangway"));
    let args = vec!["proxy".to_string(), "--node".to_string(), node_id.to_string()];
    let (part, join) = opts
        .cgroups
        .as_ref()
        .and_then(|cg| step_cgroup(cg, job, opts, c.step, &cpus, c.memory_on(node_id)))
        .unwrap_or((Part::Step(c.step), Vec::new()));
    let joined = began.elapsed();
    let in_cgroup = !join.is_empty();
    let start = Start {
        program: exe,
        args,
        env,
        run_as,
        batch: None,
        piped: true,
        join: Join::Ready(join),
        what: "a step's proxy",
        job: c.job,
        began,
    };
    job.starting += 1;
    let answer = spawner.spawn(start);
    let step = StepLaunch { credential: c, node_id, stream, sealer, opener, received: began };
    let tx = ev_tx.clone();
    tokio::spawn(async move {
        let answer = answer.await;
        let started = ProxyStarted { step, joined, part, in_cgroup, answer };
        let _ = tx.send(Event::ProxyStarted(Box::new(started)));
    });
}

/// The spawner answered a proxy's start: the proxy is guarded and relayed to its launcher, or,
/// if its job's attempt was fenced or released meanwhile, killed at once and the launcher told.
pub(super) fn proxy_started(
    started: ProxyStarted,
    opts: &AgentOptions,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    let ProxyStarted { step, joined, part, in_cgroup, answer } = started;
    let StepLaunch { credential: c, node_id, stream, sealer, opener, received: began } = step;
    let memory = c.memory_on(node_id);
    let verdict = answered(jobs.get(&c.job), c.attempt, fencing.may_start());
    if verdict != Answered::Gone
        && let Some(j) = jobs.get_mut(&c.job)
    {
        j.starting = j.starting.saturating_sub(1);
    }
    let why = match (verdict, answer) {
        (Answered::Keep, Ok(spawned)) => {
            let Some(job) = jobs.get_mut(&c.job) else { return };
            let link = (c, stream, sealer, opener);
            let how = (began, joined, part, in_cgroup, memory);
            keep_proxy(spawned, link, how, job, opts, ev_tx, fencing);
            return;
        }
        // A release waited for this answer: it is confirmed once the proxy is gone.
        (Answered::Gone, answer) => {
            let cgroups = opts.cgroups.clone().map(|cg| (cg, None));
            let pid = answer.as_ref().ok().map(|s| s.pid);
            reports.extend(fencing.late_start(c.job, c.attempt, pid, cgroups));
            format!("job {} ended here while its step's proxy started", c.job)
        }
        (_, Err(e)) => format!("cannot start the proxy: {e}"),
        (Answered::Fenced, Ok(spawned)) => {
            fencing.fence_started(c.job, c.attempt, spawned.pid);
            format!("job {} was fenced here while its step's proxy started", c.job)
        }
        (Answered::Refused(why), Ok(spawned)) => {
            fencing.fence_started(c.job, c.attempt, spawned.pid);
            format!("job {} cannot run here now: {why}", c.job)
        }
    };
    refuse(stream, sealer, why);
}

/// Tells a launcher why its step does not start here, in the launch port's words.
fn refuse(stream: TcpStream, mut sealer: Sealer, why: String) {
    tokio::spawn(async move {
        let mut stream = stream;
        tracing::warn!(reason = %why, "step launch refused");
        let msg = format!("error {why}");
        let _ = gangway_link::tokio_io::send(&mut stream, &mut sealer, msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    });
}

/// A proxy started for a job that may run it: guarded, its next step's cgroup made ahead, its
/// pipes relayed to its launcher until it ends.
fn keep_proxy(
    spawned: process::Spawned,
    (c, stream, sealer, opener): (StepCredential, TcpStream, Sealer, Opener),
    (began, joined, part, in_cgroup, memory): (Instant, Duration, Part, bool, Option<u64>),
    job: &mut LocalJob,
    opts: &AgentOptions,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    let sid = spawned.pid;
    // The launch path's share of the agent, for benches/containment.py.
    tracing::debug!(
        job = c.job,
        step = c.step,
        launch_us = began.elapsed().as_micros() as u64,
        cgroup_ready_us = joined.as_micros() as u64,
        "step proxy started"
    );
    if opts.cgroups.is_some() && !job.launch.one_step && matches!(job.next_step, NextStep::None) {
        prepare_next(job, c.step + 1, opts, ev_tx, false);
    }
    fencing.guard(c.job, c.attempt, sid);
    job.sessions.push(sid);
    let (job_id, tx) = (c.job, ev_tx.clone());
    let end = StepEnd {
        cgroups: opts.cgroups.clone().filter(|_| in_cgroup),
        job: c.job,
        attempt: c.attempt,
        part,
        limit: super::cgroups::step_memory_limit(job.launch.memory, memory),
        error_output: job.launch.error_output.clone(),
        tx: tx.clone(),
    };
    tokio::spawn(async move {
        relay_proxy(spawned.child, stream, sealer, opener, end).await;
        let _ = tx.send(Event::ProxyEnded { job: job_id, sid });
    });
}

/// The cgroup step `step` of `job` runs in, on `cpus`, and the files that join it: the one
/// made ahead when it is this step's (its CPUs narrowed if the step's are fewer than the
/// job's, its memory if it has a limit of its own; a one-step job's own cgroup only when they
/// are the job's), else one made now.
fn step_cgroup(
    cgroups: &NodeCgroups,
    job: &mut LocalJob,
    opts: &AgentOptions,
    step: u32,
    cpus: &gangway_topology::CpuSet,
    memory: Option<u64>,
) -> Option<(Part, Vec<std::os::fd::OwnedFd>)> {
    let limits = cgroups.step_limits(&job.launch, &opts.topology, Some(cpus), memory);
    let (job_id, attempt) = (job.launch.job, job.launch.attempt);
    match std::mem::take(&mut job.next_step) {
        NextStep::Made(n, made, join) if n == step => {
            let part = Part::ahead(&job.launch, step);
            if made == limits
                || (matches!(part, Part::Step(_)) && cgroups.narrow(job_id, attempt, part, &limits))
            {
                return Some((part, join));
            }
        }
        other => job.next_step = other,
    }
    let part = Part::Step(step);
    cgroups.make_part(job_id, attempt, part, &limits).map(|join| (part, join))
}

/// Makes step `step`'s cgroup for `job` ahead of its launch, with the job's limits, on a
/// blocking thread (`Event::StepPrepared` hands it over): at the start of a job without a
/// script and after each step's start (but for a `run` job's one step), so that a step's
/// launch only joins its
/// cgroup. Steps are numbered in order by the controller, so the next one is almost always
/// `step`; another one is made at its launch as before. `with_job`: the job's own cgroup
/// first (a job without a script: nothing of it runs before its first step's launch, which
/// waits for this).
pub(super) fn prepare_next(
    job: &mut LocalJob,
    step: u32,
    opts: &AgentOptions,
    ev_tx: &UnboundedSender<Event>,
    with_job: bool,
) {
    let Some(cgroups) = opts.cgroups.clone() else { return };
    let limits = cgroups.part_limits(&job.launch, &opts.topology, None);
    let (id, attempt) = (job.launch.job, job.launch.attempt);
    let part = Part::ahead(&job.launch, step);
    job.next_step = NextStep::Making(step, Vec::new());
    let tx = ev_tx.clone();
    let job_limits = with_job.then(|| cgroups.job_limits(&job.launch, &opts.topology));
    tokio::task::spawn_blocking(move || {
        // Whatever happens here, the answer goes back: launches of the job wait for it.
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(job_limits) = job_limits {
                cgroups.create_job_with(id, attempt, &job_limits);
            }
            cgroups.make_part(id, attempt, part, &limits).map(|j| (limits, j))
        }))
        .ok()
        .flatten();
        let _ = tx.send(Event::StepPrepared { job: id, attempt, step, made });
    });
}

/// A step's cgroup made ahead is ready: kept for the step's launch, and the launches that
/// waited for it go on.
pub(super) fn step_prepared(
    prepared: (JobId, u32, u32, Option<(gangway_containment::Limits, Vec<std::os::fd::OwnedFd>)>),
    owner: Owner<'_>,
    jobs: &mut HashMap<JobId, LocalJob>,
    fencing: &mut Fencing,
) {
    let opts = owner.opts;
    let (id, attempt, step, made) = prepared;
    let Some(job) = jobs.get_mut(&id).filter(|j| j.launch.attempt == attempt) else {
        // Released meanwhile: its release may have ended the job's cgroup before this one
        // was made (making it made the job's again), so what is left of the attempt goes now.
        if made.is_some()
            && let Some(cgroups) = opts.cgroups.clone()
        {
            tokio::task::spawn_blocking(move || cgroups.finish_job(id, attempt, None));
        }
        return;
    };
    let waiting = match std::mem::take(&mut job.next_step) {
        NextStep::Making(n, waiting) if n == step => waiting,
        // Not the one awaited (an older attempt's, or overtaken): the job's end removes it.
        other => {
            job.next_step = other;
            return;
        }
    };
    job.next_step = match made {
        Some((limits, join)) => NextStep::Made(step, limits, join),
        None => NextStep::None,
    };
    for launch in waiting {
        start_proxy(launch, owner, jobs, fencing);
    }
}

/// What ends with a step's proxy: its cgroup (what is left killed, what it used read).
struct StepEnd {
    cgroups: Option<NodeCgroups>,
    job: JobId,
    attempt: u32,
    part: Part,
    limit: Option<u64>,
    /// The job's error output (batch jobs), where an OOM kill is told.
    error_output: Option<String>,
    tx: UnboundedSender<Event>,
}

impl StepEnd {
    /// Reads what the step used (its processes are gone, or about to be killed) and sends it
    /// to the owner task. If the OOM killer struck the step, a batch job's error output is
    /// told, and for other jobs the message is returned (for the launcher's stderr).
    async fn report(&self) -> Option<String> {
        let (job, attempt, part, limit) = (self.job, self.attempt, self.part, self.limit);
        // Read here, not on a blocking thread: a few small cgroup files that never wait,
        // where the hop to another thread cost the exit frame ~0.4 ms on a busy machine.
        let usage = self.cgroups.as_ref()?.read_part(job, attempt, part, limit)?;
        let oom = usage.out_of_memory.clone();
        let _ = self.tx.send(Event::Used { job, attempt, usage });
        // The launcher may be gone by now (its rank's end came first, through the proxy), so
        // the job's error output hears of it from here.
        match (&self.error_output, oom) {
            (Some(path), Some(message)) => {
                super::cgroups::append_error(path, &message);
                None
            }
            (_, oom) => oom,
        }
    }

    /// Kills what is left in the step's cgroup and removes it: after the exit frame, off the
    /// launcher's path.
    async fn remove(self) {
        let Some(cgroups) = self.cgroups else { return };
        let (job, attempt, part, limit) = (self.job, self.attempt, self.part, self.limit);
        let _ = tokio::task::spawn_blocking(move || cgroups.finish_part(job, attempt, part, limit))
            .await;
    }
}

/// Relays a proxy's pipes over its launcher's link: the link's messages to the proxy's stdin
/// (the launcher's start line first, which holds the job's call-back key), and the proxy's
/// stderr and how it ended back, as frames. Before the exit frame the step's cgroup is read:
/// its figures reach the controller ahead of anything the step's end causes, and an OOM kill
/// is told (the job's error output, or the launcher's stderr). After it, what is left in the
/// cgroup is killed and the cgroup removed, off the launcher's path.
async fn relay_proxy(
    mut child: tokio::process::Child,
    stream: tokio::net::TcpStream,
    mut sealer: gangway_link::Sealer,
    mut opener: gangway_link::Opener,
    end: StepEnd,
) {
    use gangway_link::tokio_io::{recv, send};
    let (mut net_rd, mut net_wr) = stream.into_split();
    let _ = send(&mut net_wr, &mut sealer, b"ok").await;
    let stdin = child.stdin.take();
    let to_stdin = tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        while let Ok(Some(data)) = recv(&mut net_rd, &mut opener).await {
            if stdin.write_all(&data).await.is_err() {
                break;
            }
        }
        // Dropping stdin tells the proxy its launcher is gone: it ends its ranks and exits.
    });
    let mut linked = true;
    if let Some(mut err) = child.stderr.take() {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match err.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Keep draining the pipe after the launcher went away, so the proxy never
                    // blocks on a full stderr.
                    if linked {
                        linked =
                            send(&mut net_wr, &mut sealer, &stderr_frame(&buf[..n])).await.is_ok();
                    }
                }
            }
        }
    }
    let exit = child.wait().await.map(exit_of).unwrap_or(RemoteExit::Code(255));
    let ended = std::time::Instant::now();
    let message = end.report().await;
    tracing::debug!(
        job = end.job,
        part = %end.part.label(),
        exit_us = ended.elapsed().as_micros() as u64,
        "step proxy ended, its figures read"
    );
    if let Some(message) = message
        && linked
    {
        let line = format!("gangway: error: {message}\n");
        linked = send(&mut net_wr, &mut sealer, &stderr_frame(line.as_bytes())).await.is_ok();
    }
    if linked {
        let _ = send(&mut net_wr, &mut sealer, &exit_frame(&exit)).await;
    }
    let _ = net_wr.shutdown().await;
    to_stdin.abort();
    end.remove().await;
}
