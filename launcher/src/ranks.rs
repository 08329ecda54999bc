//! One node's ranks, from "these ranks run here" to running processes: this process as their
//! child subreaper, each rank's identity, environment, PMI connection, binding and stdin, the
//! spawn, and the pumps that carry its output.
//!
//! The local run (`local_run.rs`) and the proxy on each node of a multi-node job
//! (`proxy/node.rs`) both start their ranks here, so the two cannot drift apart. What
//! differs between them comes in as values: where output goes ([`RankOutput`]), whether a rank's
//! exit waits for its last output ([`ExitReport`]), and the node's PMI service, behind the one
//! small [`PmiService`] trait so that a PMIx server can stand beside PMI-1/2 (pmix/README.md,
//! "what the launcher integration needs").

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use gangway_topology::Placement;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinSet;

use crate::flow::{self, OutputTx, Progress};
use crate::input::InputMode;
use crate::output::{self, DestinationId, LineAssembler};
use crate::pmi::server::{MPICH_PMI_VERSION, PmiServer};
use crate::rank_env::{self, RankIdentity};
use crate::spawn::{self, ProcessEnd, RankCommand, StdinSetup};

/// A node's PMI service, as starting a rank needs it. The PMI-1/PMI-2 server is one, with the
/// node's PMIx server beside it (`--mpi`): its `setup_fork` variables join a rank's
/// [`PmiAccess::env`]. Events and exits stay with the owner of the ranks, which knows
/// what each service reports.
pub trait PmiService {
    /// What `rank` needs to reach the service. Called once per rank, just before its spawn.
    fn connect(&mut self, rank: u32) -> PmiAccess;
}

/// How one rank reaches its node's PMI service.
#[derive(Debug, Default)]
pub struct PmiAccess {
    /// Variables for its environment (`PMI_FD`, `PMI_PORT`, `PMI_JOBID`, ...).
    pub env: Vec<(String, String)>,
    /// A descriptor the rank inherits (its end of a socket pair); closed here once it started.
    pub inherit: Option<OwnedFd>,
}

impl PmiService for PmiServer {
    fn connect(&mut self, rank: u32) -> PmiAccess {
        let inherit = self.take_child_end(rank);
        let env = self.rank_env(rank, inherit.as_ref().map(AsRawFd::as_raw_fd));
        let mut env: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        // With `--mpi=auto` a rank gets both: each MPI takes what it speaks.
        env.extend(self.pmix_env(rank));
        PmiAccess { env, inherit }
    }
}

/// Where one rank's stdout and stderr go, and how each is cut into lines on the way.
#[derive(Debug)]
pub struct RankOutput {
    pub stdout: (DestinationId, LineAssembler),
    pub stderr: (DestinationId, LineAssembler),
}

/// When a rank's exit is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReport {
    /// As soon as it is seen; the owner waits for output at the end ([`NodeRanks::drain_output`]).
    /// A failed rank stops the job at once even if something it started holds its pipes.
    AtOnce,
    /// Once its last output went to the sink, waiting at most this long without any of it
    /// moving (a slow reader is waited for, an escaped holder of a pipe is not): for a proxy, whose
    /// output and exits travel up one ordered link, so the launcher never waits for
    /// stragglers (a child still holding the pipe is cut off).
    AfterOutput(Duration),
}

/// One node's share of a job, everything already decided.
pub struct NodeLaunch<'a> {
    pub program: &'a Path,
    pub argv0: &'a OsString,
    pub args: &'a [OsString],
    /// The ranks' working directory (ours when `None`).
    pub cwd: Option<&'a Path>,
    /// Every rank's environment before its own variables (already filtered by `--export`).
    pub base_env: &'a [(OsString, OsString)],
    pub job_id: &'a str,
    /// Ranks in the whole job.
    pub size: u32,
    pub node_id: u32,
    pub nnodes: u32,
    /// The job's nodes, as the ranks see them (`GANGWAY_NODELIST`).
    pub nodelist: &'a str,
    /// The job's ranks on this node, in local-rank order.
    pub ranks: &'a [u32],
    /// Where each runs, by local rank; `None`: unbound.
    pub placement: Option<&'a Placement>,
    /// `-c` (also `OMP_NUM_THREADS` unless the user set it).
    pub cpus_per_task: u32,
    /// Which ranks read stdin (the others read /dev/null).
    pub input: InputMode,
    /// The stdin rank gets our own stdin instead of a pipe ([`crate::input::can_inherit_stdin`]).
    pub inherit_stdin: bool,
    /// The ranks write to our own stdout/stderr, not through pipes: for a lone unlabelled rank
    /// (a terminal stays a terminal for it, and nothing needs forwarding).
    pub direct_output: bool,
    /// Where each rank's output goes, by rank (not used with `direct_output`).
    pub output: &'a dyn Fn(u32) -> RankOutput,
    /// Where the pumps send output, tagged with its destination: they read a rank's pipe only
    /// while its budget has room ([`crate::flow`]).
    pub sink: OutputTx,
    pub exit_report: ExitReport,
    /// `cgroup.procs` files every rank joins before it execs (`run_cgroup.rs`); empty: none.
    pub cgroup: &'a [std::os::fd::RawFd],
    /// The cgroup v2 directory every rank starts in, `cgroup` being the fallback (`spawn.rs`).
    pub cgroup_dir: Option<std::os::fd::RawFd>,
    /// The job's GPUs here when its tasks number theirs 0.. over them (a managed step whose
    /// cgroup hides the others, [`crate::binding::StepNode`]); `None`: the model's indexes.
    pub gpu_numbering: Option<&'a gangway_topology::CpuSet>,
}

impl std::fmt::Debug for NodeLaunch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLaunch")
            .field("program", &self.program)
            .field("job_id", &self.job_id)
            .field("node_id", &self.node_id)
            .field("ranks", &self.ranks)
            .field("exit_report", &self.exit_report)
            .finish_non_exhaustive()
    }
}

/// A rank that could not be started (the ranks started before it were killed).
#[derive(Debug)]
pub struct RankStartError {
    pub rank: u32,
    pub source: io::Error,
}

/// The started ranks of one node.
#[derive(Debug)]
pub struct NodeRanks {
    /// `(rank, pid)` of every rank, in start order.
    pub pids: Vec<(u32, u32)>,
    /// Each rank's end, as [`ExitReport`] says.
    pub exits: UnboundedReceiver<(u32, io::Result<ProcessEnd>)>,
    /// The stdin pipes of the ranks that read stdin through one, by rank.
    pub stdin: Vec<(u32, pipe::Sender)>,
    /// One task per rank: its exit, then (or before, with `AfterOutput`) its output pumps.
    /// Dropping the set cuts off whatever still pumps.
    watchers: JoinSet<()>,
    /// How each rank's pumps are doing, for the wait for their last output.
    progress: Vec<std::sync::Arc<Progress>>,
}

/// Makes this process fit to parent ranks. Call it before creating anything a rank must not
/// inherit by accident (PMI sockets, output files): the standard descriptors are opened if
/// closed, so no pipe lands on them, and this process becomes a child subreaper, so whatever a
/// rank leaves behind comes to us and [`kill_leftovers`] can kill it.
pub fn prepare_parent() {
    prepare_descriptors();
    become_subreaper();
}

/// The first half of [`prepare_parent`]: the standard descriptors opened if closed.
pub fn prepare_descriptors() {
    spawn::ensure_standard_fds();
}

/// The second half of [`prepare_parent`]: before the first rank starts, whatever a rank
/// leaves behind comes to us.
pub fn become_subreaper() {
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Starts the node's ranks, each in its own process group. On an error the ranks already
/// started are killed, and nothing of theirs is left holding the sink.
pub async fn start(
    launch: NodeLaunch<'_>,
    pmi: &mut dyn PmiService,
) -> Result<NodeRanks, RankStartError> {
    let local_size = launch.ranks.len() as u32;
    let (exit_tx, exits) = unbounded_channel();
    let mut ranks = NodeRanks {
        pids: Vec::with_capacity(launch.ranks.len()),
        exits,
        stdin: Vec::new(),
        watchers: JoinSet::new(),
        progress: Vec::new(),
    };
    for (local_rank, &rank) in launch.ranks.iter().enumerate() {
        let identity = RankIdentity {
            job_id: launch.job_id,
            rank,
            size: launch.size,
            local_rank: local_rank as u32,
            local_size,
            node_id: launch.node_id,
            nnodes: launch.nnodes,
            nodelist: launch.nodelist,
            node_ranks: launch.ranks,
        };
        let mut access = pmi.connect(rank);
        if launch.base_env.iter().any(|(name, _)| name == MPICH_PMI_VERSION) {
            access.env.retain(|(name, _)| name != MPICH_PMI_VERSION);
        }
        let binding = launch.placement.and_then(|p| p.ranks.get(local_rank)).map(|r| &*r.binding);
        let env = rank_env::rank_environment(
            launch.base_env,
            &identity,
            &access.env,
            binding,
            launch.cpus_per_task,
            launch.gpu_numbering,
        );
        let stdin = match launch.input {
            mode if !mode.reaches(rank) => StdinSetup::Null,
            _ if launch.inherit_stdin => StdinSetup::Inherit,
            _ => StdinSetup::Pipe,
        };
        let spawned = spawn::spawn_rank(RankCommand {
            program: launch.program,
            argv0: launch.argv0,
            args: launch.args,
            cwd: launch.cwd,
            env,
            stdin,
            direct_output: launch.direct_output,
            inherit_fd: access.inherit.as_ref().map(AsRawFd::as_raw_fd),
            cpus: binding.filter(|b| !b.unbound).map(|b| &b.cpus),
            mem_nodes: binding.map(|b| &b.mem_nodes).filter(|m| !m.is_empty()),
            cgroup: launch.cgroup,
            cgroup_dir: launch.cgroup_dir,
        });
        // The rank has its copy now; ours would keep the PMI connection open after it exits.
        drop(access);
        let process = match spawned {
            Ok(process) => process,
            Err(source) => {
                for &(_, pid) in &ranks.pids {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                ranks.cut_off().await;
                return Err(RankStartError { rank, source });
            }
        };
        ranks.pids.push((rank, process.pid));
        let mut pumps = JoinSet::new();
        let progress = Progress::new();
        ranks.progress.push(progress.clone());
        if process.stdout.is_some() || process.stderr.is_some() {
            let RankOutput { stdout: (out_dest, out_lines), stderr: (err_dest, err_lines) } =
                (launch.output)(rank);
            let sink = &launch.sink;
            if let Some(stdout) = process.stdout {
                pumps.spawn(output::pump(
                    stdout,
                    out_lines,
                    out_dest,
                    sink.clone(),
                    progress.clone(),
                ));
            }
            if let Some(stderr) = process.stderr {
                pumps.spawn(output::pump(
                    stderr,
                    err_lines,
                    err_dest,
                    sink.clone(),
                    progress.clone(),
                ));
            }
        }
        ranks.stdin.extend(process.stdin.map(|pipe| (rank, pipe)));
        let exit_tx = exit_tx.clone();
        let watch = process.exit;
        let report = launch.exit_report;
        ranks.watchers.spawn(async move {
            let end = watch.wait().await;
            match report {
                ExitReport::AtOnce => {
                    let _ = exit_tx.send((rank, end));
                    while pumps.join_next().await.is_some() {}
                }
                ExitReport::AfterOutput(idle) => {
                    // As long as the output moves: a slow reader is no reason to lose any.
                    flow::drain(&mut pumps, std::slice::from_ref(&progress), idle).await;
                    let _ = exit_tx.send((rank, end));
                }
            }
        });
    }
    Ok(ranks)
}

impl NodeRanks {
    /// Waits until every exited rank's output has reached the sink, as long as it moves (a slow
    /// reader of the output waits its turn), and at most `idle` while nothing moves; what still
    /// pumps after that is cut off. Afterwards nothing here holds the sink, so a writer thread
    /// waiting for its senders to go can finish.
    pub async fn drain_output(&mut self, idle: Duration) {
        flow::drain(&mut self.watchers, &self.progress, idle).await;
        self.cut_off().await;
    }

    /// Stops every watcher and pump, and waits until they are gone: an aborted task lets go
    /// of what it holds only when the runtime gets to it.
    async fn cut_off(&mut self) {
        self.watchers.abort_all();
        while self.watchers.join_next().await.is_some() {}
    }
}

/// Kills whatever the ranks left behind (reparented to us as subreaper) and reaps it, all
/// our children but `spared` (a run's cgroup watcher). Returns how many processes it killed.
pub async fn kill_leftovers(spared: &[i32]) -> usize {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut killed = 0;
    let give_up = std::time::Instant::now() + Duration::from_secs(2);
    // Each round exposes the next generation: killing a process hands its children to us.
    while std::time::Instant::now() < give_up {
        let mut children = own_children();
        children.retain(|pid| !spared.contains(pid));
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
                    Ok(WaitStatus::StillAlive) => {
                        tokio::time::sleep(Duration::from_millis(1)).await
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
