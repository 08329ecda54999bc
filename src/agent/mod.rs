//! `gangway agent`: one per node. Registers with the controller (reporting the node's model),
//! heartbeats, runs batch scripts and step proxies as their users, reports how they end, and
//! keeps running them while the controller is away and its lease lasts, reconnecting until it
//! is back. Local users (jobs included) reach the controller through its socket ([`local`]).
//! This module is the owner task (registration, heartbeats, events); the rest are leaves it
//! uses: the link to the controller (`link`), batch scripts (`batch`), step proxies
//! (`steps`), the thread that starts their processes (`spawner`), fencing (the lease, the fencer, the leftover sweep: [`fence`]), ending a
//! released job and confirming it is gone (`release`).

mod batch;
pub mod cgroups;
mod events;
pub mod fence;
mod jobs;
pub mod launch;
pub mod lease;
pub mod leftovers;
mod link;
pub mod local;
mod options;
pub mod process;
mod release;
pub mod sessions;
mod spawner;
mod steps;
mod usage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc::unbounded_channel;

use crate::protocol::{FromAgent, JobId, SignalTarget, ToAgent};
use batch::{script_path, start_job};
use events::Event;
use fence::Fencing;
use jobs::{LocalJob, script_ended};
use launch::StepLaunch;
use lease::Boot;
use link::{ConnectError, Link, connect};
pub use options::AgentOptions;
use spawner::{Owner, Spawner};
use steps::start_proxy;
use usage::UsageLedger;

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
    #[error("cannot start the thread that starts job processes: {0}")]
    Spawner(#[source] std::io::Error),
}

/// Runs the agent until the controller refuses it.
pub async fn run(opts: AgentOptions) -> Result<(), AgentError> {
    std::fs::create_dir_all(&opts.spool)
        .map_err(|source| AgentError::Spool { path: opts.spool.clone(), source })?;
    let (ev_tx, mut ev_rx) = unbounded_channel::<Event>();
    // Before anything else: end what a previous life left, and start the fencer.
    let (fence_tx, mut fence_rx) = unbounded_channel::<fence::Report>();
    let cgroup_root = opts.cgroups.as_ref().map(|c| c.root().to_string());
    let mut fencing = Fencing::start(&opts.spool, fence_tx, cgroup_root)?;
    // Then what escaped those sessions: every job cgroup is a previous life's.
    if let Some(cgroups) = &opts.cgroups {
        cgroups.sweep().await;
    }
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
    // Every job process starts on a thread of the spawner's, so that a slow start never stops
    // the heartbeats; they live as long as the agent (their children's parent-death signal is
    // theirs).
    let spawner = Spawner::start(tokio::runtime::Handle::current()).map_err(AgentError::Spawner)?;
    let owner = Owner { opts: &opts, ev_tx: &ev_tx, spawner: &spawner };
    let topology_json = opts.topology.to_json();
    let mut jobs: HashMap<JobId, LocalJob> = HashMap::new();
    // Usage reports until the controller has them (a job's end is kept in `jobs`).
    let mut ledger = UsageLedger::default();
    let mut backoff = Duration::from_millis(100);
    let mut said_waiting = false;
    loop {
        // A lease that ran out (the agent may just have woken) fences before anything is said.
        fencing.check(&mut jobs, &mut Vec::new());
        let held = fencing.registration(&jobs);
        let began = Boot::now();
        let link = match connect(&opts, &topology_json, port, held).await {
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
                        // Reports are kept (job ends in `jobs`, usage in the ledger) and sent
                        // after registering.
                        Some(ev) = ev_rx.recv() => {
                            let mut reports = Vec::new();
                            handle(ev, owner, &mut jobs, &mut reports, &mut fencing);
                            reports.iter().for_each(|r| ledger.track(r));
                        }
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
        // What each part used ahead of the ends, as when they were first sent.
        if !ledger.is_empty() {
            tracing::info!(reports = ledger.len(), "sending usage reports again");
        }
        for report in ledger.resend() {
            let _ = out.send(report);
        }
        for report in jobs.values().filter_map(LocalJob::end_report) {
            let _ = out.send(report);
        }
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                due = beat.tick() => {
                    let late = due.elapsed();
                    if late >= heartbeat {
                        // The thread was blocked or the machine stalled: the log says which
                        // gap a fence that follows came from.
                        tracing::warn!(late_ms = late.as_millis() as u64, "a heartbeat left late");
                    }
                    if fencing.lapsed() {
                        // No acknowledgement for a whole lease: register again (the controller
                        // may count this node lost by now).
                        tracing::warn!("lease ran out on a live connection; reconnecting");
                        reader.abort();
                        break;
                    }
                    let seq = fencing.heartbeat();
                    ledger.heartbeat(seq);
                    let _ = out.send(FromAgent::Heartbeat { load: load_average(), seq });
                }
                Some(ev) = ev_rx.recv() => {
                    if let Event::ControllerGone = ev {
                        tracing::warn!("lost the controller; jobs keep running, reconnecting");
                        break;
                    }
                    if let Event::FromController(ToAgent::Ack { seq }) = &ev {
                        ledger.acked(*seq);
                    }
                    let mut reports = Vec::new();
                    handle(ev, owner, &mut jobs, &mut reports, &mut fencing);
                    for r in reports {
                        ledger.track(&r);
                        let _ = out.send(r);
                    }
                }
            }
        }
    }
}

fn handle(
    ev: Event,
    owner: Owner<'_>,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    fencing: &mut Fencing,
) {
    let Owner { opts, ev_tx, .. } = owner;
    // First, whatever the event: the agent may wake from a long stop with its lease gone.
    fencing.check(jobs, reports);
    match ev {
        Event::FromController(ToAgent::Start(launch)) => {
            start_job(*launch, owner, jobs, reports, fencing)
        }
        Event::FromController(ToAgent::Ack { seq }) => fencing.acked(seq),
        Event::FromController(ToAgent::Signal { job, attempt, signal, target }) => {
            if let Some(j) = jobs.get(&job).filter(|j| j.launch.attempt == attempt) {
                let script = j.script_session();
                match target {
                    SignalTarget::All => {
                        for sid in &j.sessions {
                            process::signal_session(*sid, signal.get());
                        }
                    }
                    // The shell alone (its leader), so that its trap runs while its children
                    // keep working, as `--signal=B:` does in Slurm.
                    SignalTarget::BatchShell => {
                        if let Some(sid) = script {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(sid as i32),
                                signal.get(),
                            );
                        }
                    }
                    // The steps' tasks and what they started, not the steps' proxies (the
                    // leaders of the other sessions).
                    SignalTarget::Steps => {
                        for sid in j.sessions.iter().filter(|s| Some(**s) != script) {
                            process::signal_session_but_leader(*sid, signal.get());
                        }
                    }
                }
            }
        }
        Event::FromController(ToAgent::Notice { job, attempt, line }) => {
            if let Some(sid) = jobs
                .get(&job)
                .filter(|j| j.launch.attempt == attempt)
                .and_then(|j| j.script_session())
            {
                process::append_to_stderr(sid, &line);
            }
        }
        Event::FromController(ToAgent::Release { job, attempt }) => {
            let mut limit = None;
            if let Some(j) = jobs.get(&job).filter(|j| j.launch.attempt <= attempt) {
                limit = j.launch.memory;
                // Its starts in flight: the confirmation waits for their answers.
                for _ in 0..j.starting {
                    fencing.await_start(job, j.launch.attempt);
                }
                let released = jobs.remove(&job);
                let _ = std::fs::remove_file(script_path(opts, job, attempt));
                // Launches that waited for a step cgroup made ahead, or the job's own, are
                // refused now, saying why (the job no longer runs here), not dropped.
                if let Some(released) = released {
                    let ahead = match released.next_step {
                        jobs::NextStep::Making(_, waiting) => waiting,
                        _ => Vec::new(),
                    };
                    for step in ahead.into_iter().chain(released.making_cgroup.unwrap_or_default())
                    {
                        start_proxy(step, owner, jobs, fencing);
                    }
                }
            }
            let cgroups = opts.cgroups.clone().map(|c| (c, limit));
            reports.extend(fencing.release(job, attempt, opts.kill_grace, cgroups));
        }
        Event::FromController(_) | Event::ControllerGone => {}
        Event::Step(step) => start_proxy(step, owner, jobs, fencing),
        Event::ScriptEnded(end) => {
            if let Some(end) = fencing.script_ended(end, jobs) {
                script_ended(end, jobs, reports);
            }
        }
        // Sent whether or not the job is still here: a step's proxy can exit (and its figures
        // be read) after its launcher, the script and so the job have ended and the job was
        // released. The controller keeps a report for the job's current attempt only.
        Event::Used { job, attempt, usage } => {
            reports.push(FromAgent::Usage { job, attempt, usage });
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
        Event::StepPrepared { job, attempt, step, made } => {
            steps::step_prepared((job, attempt, step, made), owner, jobs, fencing)
        }
        Event::JobCgroupMade { job, attempt } => {
            batch::job_cgroup_made((job, attempt), owner, jobs, fencing)
        }
        Event::ScriptStarted { job, attempt, answer } => {
            batch::script_started((job, attempt, answer), owner, jobs, reports, fencing)
        }
        Event::ProxyStarted(started) => {
            steps::proxy_started(*started, opts, jobs, reports, ev_tx, fencing)
        }
        Event::WhichJob(q) => {
            let job = jobs.values().find(|j| j.sessions.contains(&q.sid)).map(|j| j.launch.job);
            let _ = q.answer.send(job);
        }
    }
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0)
}
