//! `gangway agent`: one per node. Registers with the controller (reporting the node's model),
//! heartbeats, runs batch scripts and step proxies as their users, reports how they end, and
//! keeps running them while the controller is away and its lease lasts, reconnecting until it
//! is back. Local users (jobs included) reach the controller through its socket ([`local`]).
//! Fencing (the lease, the fencer, the leftover sweep) is in [`fence`]; ending a released job
//! and confirming it is gone, in [`release`].

pub mod fence;
pub mod launch;
pub mod lease;
pub mod leftovers;
mod link;
pub mod local;
pub mod process;
mod release;
pub mod sessions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use gangway_launcher::bootstrap::agent::{exit_frame, stderr_frame};
use gangway_launcher::bootstrap::{RemoteExit, exit_of};
use gangway_launcher::exit_status::RankStatus;
use gangway_launcher::signals::describe;
use gangway_topology::Topology;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::auth::Key;
use crate::protocol::{FromAgent, JobId, JobLaunch, ToAgent};
use fence::Fencing;
use launch::StepLaunch;
use lease::Boot;
use link::{ConnectError, Link, connect};
use process::{BatchOutput, RunAs};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub controller: String,
    pub key: Key,
    pub name: String,
    /// Address launchers use to reach this agent (None: as the controller sees us).
    pub address: Option<String>,
    pub port: u16,
    pub spool: PathBuf,
    /// The local socket users and jobs reach the controller through.
    pub socket: PathBuf,
    pub topology: Topology,
    pub kill_grace: Duration,
    /// Local connections one user may hold at once (0: no limit).
    pub max_connections_per_user: usize,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the controller refused this agent: {0}")]
    Refused(String),
    #[error("cannot listen for step launches on port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on the local socket {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the spool directory {}: {source}", path.display())]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    SpoolLock(#[from] leftovers::SpoolError),
}

/// One job this node runs a part of.
#[derive(Debug)]
struct LocalJob {
    launch: JobLaunch,
    /// Sessions started for it (the batch script, step proxies).
    sessions: Vec<u32>,
    /// How its batch script ended (exit code, why), kept until the controller releases the
    /// job: a report lost with a connection is sent again after every registration.
    ended: Option<(i32, Option<String>)>,
    /// Why its processes here were killed by a fence (reported with every registration until
    /// the controller releases the job).
    fenced: Option<String>,
}

impl LocalJob {
    fn end_report(&self) -> Option<FromAgent> {
        let (exit_code, message) = self.ended.clone()?;
        Some(FromAgent::JobEnded {
            job: self.launch.job,
            attempt: self.launch.attempt,
            exit_code,
            message,
        })
    }
}

/// How a batch script ended.
#[derive(Debug)]
pub struct ScriptEnd {
    job: JobId,
    attempt: u32,
    sid: u32,
    code: i32,
    message: Option<String>,
}

/// Events for the owner task.
#[derive(Debug)]
enum Event {
    FromController(ToAgent),
    ControllerGone,
    Step(StepLaunch),
    ScriptEnded(ScriptEnd),
    ProxyEnded { job: JobId, sid: u32 },
    WhichJob(local::JobQuery),
    Fencer(fence::Report),
}

/// Runs the agent until the controller refuses it.
pub async fn run(opts: AgentOptions) -> Result<(), AgentError> {
    std::fs::create_dir_all(&opts.spool)
        .map_err(|source| AgentError::Spool { path: opts.spool.clone(), source })?;
    let (ev_tx, mut ev_rx) = unbounded_channel::<Event>();
    // Before anything else: end what a previous life left, and start the fencer.
    let (fence_tx, mut fence_rx) = unbounded_channel::<fence::Report>();
    let mut fencing = Fencing::start(&opts.spool, fence_tx)?;
    {
        let ev = ev_tx.clone();
        tokio::spawn(async move {
            while let Some(r) = fence_rx.recv().await {
                let _ = ev.send(Event::Fencer(r));
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", opts.port))
        .await
        .map_err(|source| AgentError::Listen { port: opts.port, source })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(opts.port);
    let (step_tx, mut step_rx) = unbounded_channel::<StepLaunch>();
    tokio::spawn(launch::serve(listener, opts.key.clone(), opts.name.clone(), step_tx));
    {
        let ev = ev_tx.clone();
        tokio::spawn(async move {
            while let Some(s) = step_rx.recv().await {
                let _ = ev.send(Event::Step(s));
            }
        });
    }
    let socket = local::bind(&opts.socket)
        .map_err(|source| AgentError::Socket { path: opts.socket.clone(), source })?;
    let (query_tx, mut query_rx) = unbounded_channel::<local::JobQuery>();
    let local_opts = local::LocalOptions {
        controller: opts.controller.clone(),
        key: opts.key.clone(),
        node: opts.name.clone(),
        max_per_user: opts.max_connections_per_user,
    };
    tokio::spawn(local::serve(socket, local_opts, query_tx));
    {
        let ev = ev_tx.clone();
        tokio::spawn(async move {
            while let Some(q) = query_rx.recv().await {
                let _ = ev.send(Event::WhichJob(q));
            }
        });
    }
    let topology_json = opts.topology.to_json();
    let mut jobs: HashMap<JobId, LocalJob> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    let mut said_waiting = false;
    loop {
        // A lease that ran out (the agent may just have woken) fences before anything is said.
        fencing.check(&mut jobs, &mut Vec::new());
        let (running, fenced, releasing) = fencing.registration(&jobs);
        let began = Boot::now();
        let link = match connect(&opts, &topology_json, port, running, fenced, releasing).await {
            Ok(link) => link,
            Err(ConnectError::Refused(why)) => return Err(AgentError::Refused(why)),
            Err(e @ (ConnectError::Unreachable(_) | ConnectError::NoListener(_))) => {
                let why = match e {
                    ConnectError::NoListener(why) => {
                        // No controller process listens: one that starts later counts this node
                        // as heard at its start, so the lease may run on from this attempt.
                        fencing.refused(began);
                        why
                    }
                    ConnectError::Unreachable(why) | ConnectError::Refused(why) => why,
                };
                if !said_waiting {
                    tracing::warn!(controller = %opts.controller, error = %why, "controller unreachable; retrying");
                    said_waiting = true;
                }
                // Keep serving steps and reaping scripts while waiting.
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        // Reports are kept in `jobs` and sent after registering.
                        Some(ev) = ev_rx.recv() => handle(ev, &opts, &mut jobs, &mut Vec::new(), &ev_tx, &mut fencing),
                    }
                }
                backoff = (backoff * 2).min(fencing.retry_cap());
                continue;
            }
        };
        said_waiting = false;
        backoff = Duration::from_millis(100);
        tracing::info!(controller = %opts.controller, "registered");
        fencing.welcomed(link.lease, link.registered_at);
        let Link { out, heartbeat, reader } = link.start(ev_tx.clone());
        for report in jobs.values().filter_map(LocalJob::end_report) {
            let _ = out.send(report);
        }
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    if fencing.lapsed() {
                        // No acknowledgement for a whole lease: register again (the controller
                        // may count this node lost by now).
                        tracing::warn!("lease ran out on a live connection; reconnecting");
                        reader.abort();
                        break;
                    }
                    let seq = fencing.heartbeat();
                    let _ = out.send(FromAgent::Heartbeat { load: load_average(), seq });
                }
                Some(ev) = ev_rx.recv() => {
                    if let Event::ControllerGone = ev {
                        tracing::warn!("lost the controller; jobs keep running, reconnecting");
                        break;
                    }
                    let mut reports = Vec::new();
                    handle(ev, &opts, &mut jobs, &mut reports, &ev_tx, &mut fencing);
                    for r in reports {
                        let _ = out.send(r);
                    }
                }
            }
        }
    }
}

fn handle(
    ev: Event,
    opts: &AgentOptions,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    // First, whatever the event: the agent may wake from a long stop with its lease gone.
    fencing.check(jobs, reports);
    match ev {
        Event::FromController(ToAgent::Start(launch)) => {
            start_job(*launch, opts, jobs, reports, ev_tx, fencing)
        }
        Event::FromController(ToAgent::Ack { seq }) => fencing.acked(seq),
        Event::FromController(ToAgent::Signal { job, attempt, signal }) => {
            if let Some(j) = jobs.get(&job).filter(|j| j.launch.attempt == attempt)
                && let Ok(sig) = Signal::try_from(signal)
            {
                for sid in &j.sessions {
                    process::signal_session(*sid, sig);
                }
            }
        }
        Event::FromController(ToAgent::Release { job, attempt }) => {
            if jobs.get(&job).is_some_and(|j| j.launch.attempt <= attempt) {
                jobs.remove(&job);
                let _ = std::fs::remove_file(script_path(opts, job, attempt));
            }
            reports.extend(fencing.release(job, attempt, opts.kill_grace));
        }
        Event::FromController(_) | Event::ControllerGone => {}
        Event::Step(step) => start_proxy(step, opts, jobs, ev_tx, fencing),
        Event::ScriptEnded(end) => {
            if let Some(end) = fencing.script_ended(end, jobs) {
                script_ended(end, jobs, reports);
            }
        }
        Event::ProxyEnded { job, sid } => {
            if let Some(j) = jobs.get_mut(&job) {
                j.sessions.retain(|s| *s != sid);
            }
            fencing.leader_gone(sid);
        }
        Event::Fencer(report) => {
            for end in fencing.on_report(report, jobs, reports) {
                script_ended(end, jobs, reports);
            }
        }
        Event::WhichJob(q) => {
            let job = jobs.values().find(|j| j.sessions.contains(&q.sid)).map(|j| j.launch.job);
            let _ = q.answer.send(job);
        }
    }
}

/// Records how a batch script ended (unless its job was fenced meanwhile) and reports it.
fn script_ended(end: ScriptEnd, jobs: &mut HashMap<JobId, LocalJob>, reports: &mut Vec<FromAgent>) {
    let ScriptEnd { job, attempt, sid, code, message } = end;
    if let Some(j) =
        jobs.get_mut(&job).filter(|j| j.launch.attempt == attempt && j.fenced.is_none())
    {
        j.sessions.retain(|s| *s != sid);
        j.ended = Some((code, message));
        reports.extend(j.end_report());
    }
    // Its session stays guarded until the job is released: what the script left is killed then.
}

fn script_path(opts: &AgentOptions, job: JobId, attempt: u32) -> PathBuf {
    opts.spool.join(format!("job{job}.{attempt}.script"))
}

fn start_job(
    launch: JobLaunch,
    opts: &AgentOptions,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    let (job, attempt) = (launch.job, launch.attempt);
    if let Some(old) = jobs.get(&job) {
        if old.launch.attempt == attempt {
            return; // already known (a resync after reconnecting)
        }
        if let Some(old) = jobs.remove(&job) {
            reports.extend(fencing.release(job, old.launch.attempt, opts.kill_grace));
        }
    }
    let mut local = LocalJob { launch, sessions: Vec::new(), ended: None, fenced: None };
    if let Some(batch) = local.launch.batch.clone() {
        // Never a script without a lease: the controller may already count this node lost.
        if let Err(why) = fencing.may_start() {
            tracing::warn!(job, reason = %why, "batch script not started");
            fence::mark_fenced_new(&mut local, &why, reports);
            jobs.insert(job, local);
            return;
        }
        let fail = |jobs: &mut HashMap<JobId, LocalJob>,
                    reports: &mut Vec<FromAgent>,
                    mut local: LocalJob,
                    message: String| {
            tracing::warn!(job, %message, "batch script not started");
            local.ended = Some((1, Some(message)));
            reports.extend(local.end_report());
            jobs.insert(job, local);
        };
        let path = script_path(opts, job, attempt);
        let run_as = RunAs::for_job(
            &local.launch.user,
            local.launch.uid,
            local.launch.gid,
            &local.launch.cwd,
            &local.launch.cpus,
            local.launch.umask,
        );
        if let Err(e) =
            write_script(&path, &batch.script, run_as.ids.as_ref().map(|(u, g, _)| (*u, *g)))
        {
            let why = format!("cannot write the script to {}: {e}", path.display());
            fail(jobs, reports, local, why);
            return;
        }
        if !process::dir_exists(&local.launch.cwd) {
            let why = format!(
                "the submit directory {} does not exist on {}",
                local.launch.cwd, opts.name
            );
            fail(jobs, reports, local, why);
            return;
        }
        let mut env = local.launch.env.clone();
        // This node's agent socket: commands in the script reach the controller as the job's
        // user, vouched for by this agent, with no secret in the environment.
        env.push(("GANGWAY_CONTROLLER".into(), opts.socket.display().to_string()));
        env.push(("GANGWAY_JOB_CPUS".into(), local.launch.cpus.clone()));
        let out = BatchOutput {
            output: batch.output.clone(),
            error: batch.error.clone(),
            truncate: attempt == 1,
            marker: batch.marker.clone(),
        };
        let mut program = script_program(&batch.script, &path);
        program.1.extend(batch.args.iter().cloned());
        match process::spawn(&program.0, &program.1, &env, &run_as, Some(&out), false) {
            Ok(spawned) => {
                let sid = spawned.pid;
                fencing.guard(job, attempt, sid);
                local.sessions.push(sid);
                let tx = ev_tx.clone();
                let mut child = spawned.child;
                tokio::spawn(async move {
                    let (code, message) = match child.wait().await {
                        Ok(s) => match RankStatus::of(s) {
                            Some(end @ RankStatus::Signaled(n)) => (
                                end.shell_code(),
                                Some(format!("the script was killed by {}", describe(n))),
                            ),
                            Some(end) => (end.shell_code(), None),
                            None => (1, None),
                        },
                        Err(e) => (1, Some(e.to_string())),
                    };
                    let _ =
                        tx.send(Event::ScriptEnded(ScriptEnd { job, attempt, sid, code, message }));
                });
            }
            Err(e) => {
                let why = format!(
                    "cannot start the script on {}: {e} (output {})",
                    opts.name, batch.output
                );
                fail(jobs, reports, local, why);
                return;
            }
        }
    }
    jobs.insert(job, local);
}

/// A script with `#!` runs as itself; one without runs under `/bin/sh`, as sbatch does.
fn script_program(text: &str, path: &std::path::Path) -> (PathBuf, Vec<String>) {
    if text.starts_with("#!") {
        (path.to_owned(), Vec::new())
    } else {
        (PathBuf::from("/bin/sh"), vec![path.display().to_string()])
    }
}

fn write_script(
    path: &std::path::Path,
    text: &str,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn start_proxy(
    step: StepLaunch,
    opts: &AgentOptions,
    jobs: &mut HashMap<JobId, LocalJob>,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    let StepLaunch { credential: c, node_id, stream, sealer, opener } = step;
    let refuse = |stream: tokio::net::TcpStream, mut sealer: gangway_link::Sealer, why: String| {
        tokio::spawn(async move {
            let mut stream = stream;
            tracing::warn!(reason = %why, "step launch refused");
            let msg = format!("error {why}");
            let _ = gangway_link::tokio_io::send(&mut stream, &mut sealer, msg.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    };
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
    let cpus = c.nodes.get(node_id as usize).map(|(_, cpus)| cpus.clone()).unwrap_or_default();
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
    env.push(("GANGWAY_STEP_ID".into(), c.step.to_string()));
    env.push(("GANGWAY_STEP_CPUS".into(), cpus));
    // The proxy hands it to its ranks: their commands reach the controller through this agent.
    env.retain(|(k, _)| k != "GANGWAY_CONTROLLER");
    env.push(("GANGWAY_CONTROLLER".into(), opts.socket.display().to_string()));
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("gangway"));
    let args = vec!["proxy".to_string(), "--node".to_string(), node_id.to_string()];
    let spawned = match process::spawn(&exe, &args, &env, &run_as, None, true) {
        Ok(s) => s,
        Err(e) => {
            refuse(stream, sealer, format!("cannot start the proxy: {e}"));
            return;
        }
    };
    let sid = spawned.pid;
    fencing.guard(c.job, c.attempt, sid);
    job.sessions.push(sid);
    let (job_id, tx) = (c.job, ev_tx.clone());
    tokio::spawn(async move {
        relay_proxy(spawned.child, stream, sealer, opener).await;
        let _ = tx.send(Event::ProxyEnded { job: job_id, sid });
    });
}

/// Relays a proxy's pipes over its launcher's link: the link's messages to the proxy's stdin
/// (the launcher's start line first, which holds the job's call-back key), and the proxy's
/// stderr and how it ended back, as frames.
async fn relay_proxy(
    mut child: tokio::process::Child,
    stream: tokio::net::TcpStream,
    mut sealer: gangway_link::Sealer,
    mut opener: gangway_link::Opener,
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
    if linked {
        let _ = send(&mut net_wr, &mut sealer, &exit_frame(&exit)).await;
    }
    let _ = net_wr.shutdown().await;
    to_stdin.abort();
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}
