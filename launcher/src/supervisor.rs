//! Runs a job's ranks on this machine and owns them until the job ends.
//!
//! One task (this one) owns every rank: it hears their exits, the PMI service's events, the
//! signals the launcher catches and the timers, and decides when and how to stop the job.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use gangway_topology::Placement;

use crate::exit_status::RankStatus;
use crate::input;
use crate::job::{JobEnd, JobReport, JobSpec, LaunchError};
use crate::output::{self, DestinationId, LineAssembler, OutputSink, PatternVars};
use crate::pmi::mapping::process_mapping;
use crate::pmi::node::JobInfo;
use crate::pmi::server::{PmiEvent, PmiServer};
use crate::proxy::protocol::{Down, Envelope};
use crate::rank_env::{self, RankIdentity};
use crate::signals::CaughtSignals;
use crate::spawn::{self, ProcessEnd, RankCommand, SetupStep, StdinSetup};
use crate::time_limit::format_time_limit;

/// A second Ctrl-C within this long stops the job instead of being forwarded.
const DOUBLE_INTERRUPT: Duration = Duration::from_secs(1);
/// How long to wait for output after the last rank exited (only an escaped process can delay it).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How long the last exits may wait for the PMI service to settle them ([`PmiEvent::Settled`]).
/// It takes a task hop locally and a round trip from a proxy; this bound only keeps a lost
/// event from hanging the job.
const PMI_SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Runs the job on this machine and waits for it to end.
/// `placement` (from [`crate::binding::plan`]) says where each rank runs; `None`: unbound.
pub async fn run_local(
    spec: JobSpec,
    placement: Option<Placement>,
) -> Result<JobReport, LaunchError> {
    // Orphaned descendants of the ranks come to us, so none can outlive the job.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    spawn::ensure_standard_fds();

    let n = spec.ntasks;
    let mut routes = OutputRoutes::open(&spec)?;
    let sink = OutputSink::start(std::mem::take(&mut routes.files));
    let Some(out) = sink.sender() else {
        return Err(LaunchError::Setup {
            what: "the output thread",
            source: std::io::Error::other("thread spawn failed"),
        });
    };

    let job = JobInfo {
        kvsname: format!("kvs_{}_0", spec.job_id),
        jobid: spec.job_id.clone(),
        size: n,
        universe_size: n,
        appnum: 0,
        process_mapping: process_mapping(&vec![0; n as usize]),
    };
    let mut pmi = PmiServer::start(job, 0, (0..n).collect(), spec.pmi_mode, None)
        .await
        .map_err(|source| LaunchError::Setup { what: "the PMI service", source })?;
    let mut caught = CaughtSignals::install()
        .map_err(|source| LaunchError::Setup { what: "signal handlers", source })?;

    let base_env = rank_env::base_environment(&spec.export, std::env::vars_os());
    let inherit_stdin = input::can_inherit_stdin(spec.input);
    let (exit_tx, mut exit_rx) = unbounded_channel::<(u32, std::io::Result<ProcessEnd>)>();
    let mut pumps = JoinSet::new();
    let mut stdin_pipes = Vec::new();
    let mut pids: Vec<Option<u32>> = vec![None; n as usize];
    let started = std::time::Instant::now();
    // A lone unlabelled rank writes where we would: hand it our stdout/stderr (a terminal
    // stays a terminal for it, and nothing needs forwarding).
    let direct_output = n == 1 && !spec.label && spec.output.is_none() && spec.error.is_none();

    for rank in 0..n {
        let identity = RankIdentity {
            job_id: &spec.job_id,
            rank,
            size: n,
            local_rank: rank,
            local_size: n,
            node_id: 0,
            nnodes: 1,
            nodelist: &spec.host,
        };
        let child_end = pmi.take_child_end(rank);
        let child_fd = child_end.as_ref().map(|fd| fd.as_raw_fd());
        let binding =
            placement.as_ref().and_then(|p| p.ranks.get(rank as usize)).map(|r| &r.binding);
        let bound_cpus = binding.filter(|b| !b.unbound).map(|b| &b.cpus);
        let mem_nodes = binding.map(|b| &b.mem_nodes).filter(|m| !m.is_empty());
        let env = rank_env::rank_environment(
            &base_env,
            &identity,
            pmi.rank_env(rank, child_fd),
            binding.map(|b| &**b),
            spec.cpus_per_task,
        );
        let stdin = match spec.input {
            mode if !mode.reaches(rank) => StdinSetup::Null,
            _ if inherit_stdin => StdinSetup::Inherit,
            _ => StdinSetup::Pipe,
        };
        let spawned = spawn::spawn_rank(RankCommand {
            program: &spec.program,
            argv0: &spec.argv0,
            args: &spec.args,
            cwd: spec.cwd.as_deref(),
            env,
            stdin,
            direct_output,
            inherit_fd: child_fd,
            cpus: bound_cpus,
            mem_nodes,
        });
        drop(child_end);
        let process = match spawned {
            Ok(process) => process,
            Err(source) => {
                for pid in pids.iter().flatten() {
                    let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                }
                kill_leftovers();
                // The writer thread ends only when every sender is gone.
                drop(pumps);
                drop(out);
                sink.finish();
                return Err(LaunchError::Spawn { rank, program: spec.program.clone(), source });
            }
        };
        pids[rank as usize] = Some(process.pid);
        let (out_dest, err_dest) = routes.rank[rank as usize];
        let out_asm = routes.assembler(&spec, rank, out_dest);
        let err_asm = routes.assembler(&spec, rank, err_dest);
        if let Some(stdout) = process.stdout {
            pumps.spawn(output::pump(stdout, out_asm, out_dest, out.clone()));
        }
        if let Some(stderr) = process.stderr {
            pumps.spawn(output::pump(stderr, err_asm, err_dest, out.clone()));
        }
        stdin_pipes.extend(process.stdin);
        let exit_tx = exit_tx.clone();
        let watch = process.exit;
        tokio::spawn(async move {
            let _ = exit_tx.send((rank, watch.wait().await));
        });
    }
    input::forward(stdin_pipes);
    let say = |msg: String| {
        let _ = out.send((output::STDERR, format!("gangway: {msg}\n").into_bytes()));
    };
    if spec.verbose {
        say(format!(
            "job {}: started {n} rank(s) of {} in {:.1} ms",
            spec.job_id,
            spec.program.display(),
            started.elapsed().as_secs_f64() * 1e3
        ));
    }

    let mut sup = Supervisor::new(pids, spec.kill_grace, &say, None);
    let deadline = spec.time_limit.map(|limit| Instant::now() + limit);

    while sup.running() {
        tokio::select! {
            Some((rank, end)) = exit_rx.recv() => {
                match end {
                    Ok(ProcessEnd::Status(status)) => sup.rank_exited(rank, status, spec.kill_on_bad_exit),
                    Ok(ProcessEnd::ExecFailed { step, errno }) => sup.exec_failed(rank, step, errno, &spec.program),
                    // Waiting itself failed: count it as a failed rank rather than hang.
                    Err(_) => sup.rank_exited(rank, RankStatus::Exited(-1), spec.kill_on_bad_exit),
                }
                pmi.rank_exited(rank);
            }
            Some(event) = pmi.events.recv() => sup.pmi_event(event),
            sig = caught.recv() => sup.on_signal(sig),
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && sup.end.is_none() => {
                sup.on_time_limit(&spec.job_id, spec.time_limit.unwrap_or_default());
            }
            _ = sleep_until(sup.kill_at.unwrap_or_else(Instant::now)), if sup.kill_at.is_some() => {
                sup.kill_now();
            }
            _ = sleep_until(sup.settle_by.unwrap_or_else(Instant::now)), if sup.settle_by.is_some() => {}
        }
    }

    if spec.verbose {
        sup.say_summary(&spec.job_id, started.elapsed());
    }
    let leftovers = kill_leftovers();
    if leftovers > 0 && spec.verbose {
        say(format!("killed {leftovers} leftover process(es) the ranks had started"));
    }
    let _ =
        tokio::time::timeout(OUTPUT_DRAIN, async { while pumps.join_next().await.is_some() {} })
            .await;
    let warnings = pmi_warnings(&sup.spoke, &spec.program);
    let end = sup.end.clone().unwrap_or(JobEnd::Success);
    let ranks = sup.pids.iter().zip(&sup.statuses).map(|(p, s)| p.zip(*s)).collect();
    drop(out);
    sink.finish();
    Ok(JobReport { end, ranks, warnings })
}

/// Where each rank's stdout and stderr go.
pub(crate) struct OutputRoutes {
    pub(crate) files: Vec<File>,
    pub(crate) rank: Vec<(DestinationId, DestinationId)>,
    writers: HashMap<DestinationId, usize>,
}

impl OutputRoutes {
    pub(crate) fn open(spec: &JobSpec) -> Result<OutputRoutes, LaunchError> {
        let mut files = Vec::new();
        let mut by_path: HashMap<PathBuf, DestinationId> = HashMap::new();
        let mut rank = Vec::with_capacity(spec.ntasks as usize);
        let mut open = |pattern: &str, r: u32| -> Result<DestinationId, LaunchError> {
            let vars = PatternVars {
                job_id: &spec.job_id,
                rank: r,
                node_id: 0,
                host: &spec.host,
                user: &spec.user,
            };
            let mut path = PathBuf::from(output::expand_pattern(pattern, &vars)?);
            if let Some(dir) = spec.cwd.as_ref().filter(|_| path.is_relative()) {
                path = dir.join(path);
            }
            if let Some(&dest) = by_path.get(&path) {
                return Ok(dest);
            }
            let file = File::create(&path)
                .map_err(|source| LaunchError::OutputFile { path: path.clone(), source })?;
            files.push(file);
            let dest = files.len() + 1;
            by_path.insert(path, dest);
            Ok(dest)
        };
        for r in 0..spec.ntasks {
            let out = match &spec.output {
                Some(p) => open(p, r)?,
                None => output::STDOUT,
            };
            let err = match (&spec.error, &spec.output) {
                (Some(p), _) => open(p, r)?,
                (None, Some(_)) => out,
                (None, None) => output::STDERR,
            };
            rank.push((out, err));
        }
        let mut writers = HashMap::new();
        for &(o, e) in &rank {
            *writers.entry(o).or_insert(0) += 1;
            *writers.entry(e).or_insert(0) += 1;
        }
        Ok(OutputRoutes { files, rank, writers })
    }

    /// Bytes pass through untouched where a rank writes alone and unlabelled; elsewhere whole
    /// lines, so no two ranks' output mixes within a line.
    fn assembler(&self, spec: &JobSpec, rank: u32, dest: DestinationId) -> LineAssembler {
        if spec.label {
            LineAssembler::lines(Some(format!("{rank}: ")))
        } else if self.writers.get(&dest).copied().unwrap_or(0) <= 1 {
            LineAssembler::raw()
        } else {
            LineAssembler::lines(None)
        }
    }
}

/// The decisions about a job's ranks: who failed first, when to stop, how to signal them.
/// Ranks are local processes, or remote ones reached through the proxies (`remote`).
pub(crate) struct Supervisor<'a> {
    pub(crate) pids: Vec<Option<u32>>,
    pub(crate) alive: Vec<bool>,
    pub(crate) statuses: Vec<Option<RankStatus>>,
    pub(crate) spoke: Vec<bool>,
    /// Ranks that exited but are not yet settled by the PMI service: whether their exit dooms
    /// the job (no finalize) is not known until they are.
    pub(crate) unsettled: Vec<bool>,
    /// Once every rank exited: how long the unsettled ones may still take.
    pub(crate) settle_by: Option<Instant>,
    pub(crate) end: Option<JobEnd>,
    pub(crate) stopping: bool,
    pub(crate) kill_at: Option<Instant>,
    grace: Duration,
    say: &'a dyn Fn(String),
    remote: Option<UnboundedSender<Envelope>>,
    last_interrupt: Option<Instant>,
}

impl<'a> Supervisor<'a> {
    pub(crate) fn new(
        pids: Vec<Option<u32>>,
        grace: Duration,
        say: &'a dyn Fn(String),
        remote: Option<UnboundedSender<Envelope>>,
    ) -> Self {
        let n = pids.len();
        Supervisor {
            pids,
            alive: vec![true; n],
            statuses: vec![None; n],
            spoke: vec![false; n],
            unsettled: vec![false; n],
            settle_by: None,
            end: None,
            stopping: false,
            kill_at: None,
            grace,
            say,
            remote,
            last_interrupt: None,
        }
    }

    /// Whether the job is still going: a rank runs, or an exited rank's PMI outcome is pending
    /// (for at most [`PMI_SETTLE_LIMIT`] after the last exit). Without that wait, a job whose
    /// ranks all leave without finalize ended 0 or 120 depending on which message came first.
    pub(crate) fn running(&mut self) -> bool {
        if self.alive.iter().any(|a| *a) {
            return true;
        }
        if !self.unsettled.iter().any(|u| *u) {
            return false;
        }
        let by = *self.settle_by.get_or_insert_with(|| Instant::now() + PMI_SETTLE_LIMIT);
        if Instant::now() < by {
            return true;
        }
        tracing::warn!("the PMI service did not settle every exited rank in time");
        false
    }

    /// A rank will not be settled any more (its node is gone).
    pub(crate) fn forget_unsettled(&mut self, rank: u32) {
        if let Some(u) = self.unsettled.get_mut(rank as usize) {
            *u = false;
        }
    }

    /// A caught signal: forwarded to every rank, except that a second Ctrl-C within a second
    /// stops the job (a third kills at once), and Ctrl-Z stops the launcher too.
    pub(crate) fn on_signal(&mut self, sig: Signal) {
        if sig == Signal::SIGINT {
            let now = Instant::now();
            if self.stopping {
                (self.say)("interrupted again; killing every rank now".into());
                self.kill_now();
                return;
            }
            if self.last_interrupt.is_some_and(|t| now - t < DOUBLE_INTERRUPT) {
                (self.say)("interrupted twice; stopping the job".into());
                self.fail(JobEnd::Interrupted);
                self.begin_stop();
                return;
            }
            self.last_interrupt = Some(now);
            let count = self.signal_ranks(Signal::SIGINT);
            (self.say)(format!(
                "interrupt sent to {count} rank(s); press Ctrl-C again within 1 s to stop the job"
            ));
        } else if sig == Signal::SIGTSTP {
            self.signal_ranks(Signal::SIGTSTP);
            // Stop ourselves too, so the shell gets the terminal back; SIGCONT resumes all.
            let _ = kill(Pid::this(), Signal::SIGSTOP);
        } else {
            self.signal_ranks(sig);
        }
    }

    /// `-v`: how the job ended and how long it took.
    pub(crate) fn say_summary(&self, job_id: &str, elapsed: Duration) {
        let outcome = match &self.end {
            None => "every rank exited 0".to_string(),
            Some(end) => format!("{end:?}"),
        };
        (self.say)(format!(
            "job {job_id} ended after {:.1} ms: {outcome}",
            elapsed.as_secs_f64() * 1e3
        ));
    }

    /// The `--time` limit passed: stop the job.
    pub(crate) fn on_time_limit(&mut self, job_id: &str, limit: Duration) {
        (self.say)(format!(
            "job {job_id} reached its time limit ({}); stopping it",
            format_time_limit(limit)
        ));
        self.fail(JobEnd::TimeLimit);
        self.begin_stop();
    }

    /// Where messages for the user go.
    pub(crate) fn say_fn(&self) -> &'a dyn Fn(String) {
        self.say
    }

    pub(crate) fn rank_exited(&mut self, rank: u32, status: RankStatus, kill_on_bad_exit: bool) {
        let i = rank as usize;
        self.alive[i] = false;
        self.unsettled[i] = true;
        self.statuses[i] = Some(status);
        if status.success() || self.stopping {
            return;
        }
        let pid = self.pids[i].unwrap_or(0);
        (self.say)(format!("rank {rank} (pid {pid}) {status}"));
        self.fail(JobEnd::RankFailed { rank, pid, status });
        if kill_on_bad_exit {
            if self.alive.iter().any(|a| *a) {
                (self.say)("stopping the other ranks (--kill-on-bad-exit)".into());
            }
            self.begin_stop();
        }
    }

    pub(crate) fn exec_failed(
        &mut self,
        rank: u32,
        step: SetupStep,
        errno: i32,
        program: &std::path::Path,
    ) {
        let i = rank as usize;
        self.alive[i] = false;
        self.unsettled[i] = true;
        self.statuses[i] = Some(RankStatus::Exited(127));
        if self.end.is_none() {
            let why = std::io::Error::from_raw_os_error(errno);
            (self.say)(format!("rank {rank} ({}) could not {step}: {why}", program.display()));
        }
        self.fail(JobEnd::ExecFailed { rank, errno });
        self.begin_stop();
    }

    pub(crate) fn pmi_event(&mut self, event: PmiEvent) {
        match event {
            PmiEvent::Connected { rank } => {
                if let Some(s) = self.spoke.get_mut(rank as usize) {
                    *s = true;
                }
            }
            PmiEvent::Finalized { .. } => {}
            PmiEvent::Settled { rank } => self.forget_unsettled(rank),
            PmiEvent::Warning { message } => (self.say)(format!("warning: {message}")),
            PmiEvent::Abort { rank, code, message } => {
                if self.end.is_none() {
                    let why = message.map(|m| format!(": {m}")).unwrap_or_default();
                    (self.say)(format!(
                        "rank {rank} called MPI_Abort with code {code}{why}; stopping the job"
                    ));
                }
                self.fail(JobEnd::Aborted { rank, code });
                self.begin_stop();
            }
            PmiEvent::Failed { rank: _, reason } => {
                if self.end.is_none() {
                    (self.say)(format!("error: {reason}; stopping the job"));
                }
                self.fail(JobEnd::PmiFailed { reason });
                self.begin_stop();
            }
        }
    }

    /// Records the cause of failure, unless an earlier one is already known.
    pub(crate) fn fail(&mut self, end: JobEnd) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }

    /// SIGTERM (with SIGCONT, in case they are stopped) now, SIGKILL after the grace period.
    pub(crate) fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.signal_ranks(Signal::SIGCONT);
        self.signal_ranks(Signal::SIGTERM);
        if self.grace.is_zero() {
            self.kill_now();
        } else {
            self.kill_at = Some(Instant::now() + self.grace);
        }
    }

    pub(crate) fn kill_now(&mut self) {
        self.stopping = true;
        self.kill_at = None;
        self.signal_ranks(Signal::SIGKILL);
    }

    /// Sends a signal to the process group of every live rank; returns how many.
    pub(crate) fn signal_ranks(&self, sig: Signal) -> usize {
        if let Some(proxies) = &self.remote {
            let _ = proxies.send(Envelope { to: None, msg: Down::Signal(sig as i32) });
            return self.alive.iter().filter(|a| **a).count();
        }
        let mut count = 0;
        for (pid, alive) in self.pids.iter().zip(&self.alive) {
            if let (Some(pid), true) = (pid, alive)
                && killpg(Pid::from_raw(*pid as i32), sig).is_ok()
            {
                count += 1;
            }
        }
        count
    }
}

/// Kills whatever the ranks left behind (reparented to us as subreaper) and reaps it.
/// Returns how many processes it killed.
pub(crate) fn kill_leftovers() -> usize {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let mut killed = 0;
    let give_up = std::time::Instant::now() + Duration::from_secs(2);
    // Each round exposes the next generation: killing a process hands its children to us.
    while std::time::Instant::now() < give_up {
        let children = own_children();
        if children.is_empty() {
            break;
        }
        for &pid in &children {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        for &pid in &children {
            while std::time::Instant::now() < give_up {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    _ => break,
                }
            }
        }
    }
    killed
}

/// Our direct children, from every thread's `/proc` children list.
fn own_children() -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return pids };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Warnings about ranks that did not wire up through PMI.
pub(crate) fn pmi_warnings(spoke: &[bool], program: &std::path::Path) -> Vec<String> {
    let silent: Vec<String> =
        spoke.iter().enumerate().filter(|(_, s)| !**s).map(|(r, _)| r.to_string()).collect();
    let talked = spoke.len() - silent.len();
    if talked > 0 && !silent.is_empty() {
        return vec![format!(
            "rank(s) {} never connected to PMI while {talked} other rank(s) did: they ran as separate \
             singletons (a different program, or an MPI without PMI-1/PMI-2 support such as Open MPI)",
            silent.join(",")
        )];
    }
    if talked == 0 && spoke.len() > 1 && links_open_mpi(program) {
        return vec![format!(
            "{} links Open MPI (libmpi.so.40), which cannot wire up through PMI-1/PMI-2: each of \
             the {} ranks ran as a singleton of size 1; build it with MPICH (Debian: mpicc.mpich)",
            program.display(),
            spoke.len()
        )];
    }
    Vec::new()
}

fn links_open_mpi(program: &std::path::Path) -> bool {
    let needle = b"libmpi.so.40";
    std::fs::read(program)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}
