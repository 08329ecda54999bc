//! The proxy on one node (`gangway proxy`): starts this node's ranks and the proxies below it,
//! serves PMI to its ranks, relays messages between the launcher and its subtree, and kills
//! everything it started as soon as its parent is gone.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gangway_link::Psk;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::{Instant, sleep_until};

use super::callback::{CallBackError, CallbackListener, LinkWriter, call_back};
use super::fan_out::{self, Links, never_called_back};
use super::protocol::{Down, Envelope, FrameError, RemoteEnd, Stream, Subtree, Up};
use crate::binding;
use crate::bootstrap::RemoteCommand;
use crate::flow::{Budget, NODE_WINDOW, OutputTx};
use crate::output::LineAssembler;
use crate::pmi::node::{JobInfo, NodeInput};
use crate::pmi::pmix::pmix_namespace;
use crate::pmi::server::{PmiServer, ToRoot};
use crate::ranks::{self, ExitReport, NodeLaunch, NodeRanks, RankOutput};
use crate::signals;
use crate::spawn::ProcessEnd;

/// How long a rank's output may lag behind its exit without moving (only an escaped child
/// holding the pipe can make it wait that long; a slow reader of the output does not).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// How long a proxy waits for its parent to answer at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A silence timer that fires this much past its deadline means the proxy was not running; it
/// then waits this much longer for a ping that may already be waiting.
const LATE_WAKE: Duration = Duration::from_millis(500);

/// Why a proxy could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no start line on stdin (expected 'KEY HOST:PORT'): {0}")]
    StartLine(String),
    #[error("cannot reach the launcher at {addr}: {source}")]
    Connect { addr: SocketAddr, source: CallBackError },
    #[error("the launcher did not answer: {0}")]
    Protocol(String),
}

/// Runs the proxy for `node_id` until its parent goes away. Returns the process exit code.
pub async fn run(node_id: u32) -> Result<(), ProxyError> {
    let (key, parent) = read_start_line()?;
    let parent_gone = watch_stdin_end();
    let (mut from_parent, to_parent, address) = call_back(parent, &key, node_id, CONNECT_TIMEOUT)
        .await
        .map_err(|source| ProxyError::Connect { addr: parent, source })?;
    let first: Envelope =
        from_parent.recv().await.map_err(|e| ProxyError::Protocol(e.to_string()))?;
    let Down::Start(subtree) = first.msg else {
        return Err(ProxyError::Protocol("expected the job first".into()));
    };

    // Everything going up leaves through one writer task, in order.
    let (up_tx, up_rx) = unbounded_channel::<Up>();
    tokio::spawn(write_up(to_parent, up_rx));
    let (down_tx, mut down_rx) = unbounded_channel::<Result<Envelope, FrameError>>();
    tokio::spawn(async move {
        loop {
            let next = from_parent.recv::<Envelope>().await;
            let done = next.is_err();
            if down_tx.send(next).is_err() || done {
                return;
            }
        }
    });

    let children = Children::start(&subtree, &key, up_tx.clone()).await;
    let mut local = match LocalRanks::start(&subtree, up_tx.clone(), address).await {
        Ok(ranks) => ranks,
        Err(message) => {
            let _ = up_tx.send(Up::StartFailed { node_id, message });
            LocalRanks::empty()
        }
    };

    let ping_timeout = Duration::from_millis(subtree.job.ping_timeout_ms.max(100));
    let mut last_ping = Instant::now();
    let mut parent_gone = parent_gone;
    loop {
        tokio::select! {
            msg = down_rx.recv() => match msg {
                Some(Ok(envelope)) => {
                    if matches!(envelope.msg, Down::Ping(_)) {
                        last_ping = Instant::now();
                    }
                    if envelope.to.is_none_or(|to| to == node_id) {
                        if matches!(envelope.msg, Down::Signal(s) if s == Signal::SIGCONT as i32) {
                            // Else a SIGTSTP the ranks have not run to take yet is discarded.
                            signals::wait_taken(&local.live(), Signal::SIGTSTP, signals::TAKE_LIMIT).await;
                        }
                        local.handle(&envelope.msg, node_id, &up_tx);
                    }
                    children.forward(&envelope);
                }
                // The launcher closed the connection (job over) or it broke: either way, stop.
                _ => break,
            },
            Some(exit) = local.exits.recv() => local.exited(exit, &up_tx),
            Some(event) = local.pmi_events.recv() => { let _ = up_tx.send(Up::Pmi(event)); }
            Some(up) = local.to_root.recv() => {
                let _ = up_tx.send(match up {
                    ToRoot::Fence { epoch, pairs } => Up::Fence { node_id, epoch, pairs },
                    ToRoot::Name { id, request } => Up::Name { node_id, id, request },
                    ToRoot::Pmix(msg) => Up::Pmix { node_id, msg },
                });
            }
            _ = &mut parent_gone => break,
            _ = sleep_until(last_ping + ping_timeout) => {
                // Woken well after the deadline, this proxy was itself descheduled (an overloaded
                // node) and may not have read a ping that is waiting: look again before giving up.
                let late = Instant::now().saturating_duration_since(last_ping + ping_timeout);
                if late < LATE_WAKE {
                    break;
                }
                last_ping += late + LATE_WAKE;
            }
        }
    }
    local.kill_all();
    ranks::kill_leftovers(&[]).await;
    if let Some(pmi) = local.pmi.take() {
        pmi.close().await;
    }
    drop(children);
    Ok(())
}

fn read_start_line() -> Result<(Psk, SocketAddr), ProxyError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| ProxyError::StartLine(e.to_string()))?;
    parse_start_line(&line)
}

fn parse_start_line(line: &str) -> Result<(Psk, SocketAddr), ProxyError> {
    let mut words = line.split_whitespace();
    let (Some(key), Some(addr)) = (words.next(), words.next()) else {
        // Never echo the line: it may hold most of a key.
        return Err(ProxyError::StartLine(format!("a line of {} bytes", line.len())));
    };
    let key = Psk::from_hex(key)
        .ok_or_else(|| ProxyError::StartLine("the key is not 64 hex digits".into()))?;
    let addr = addr.parse().map_err(|_| ProxyError::StartLine(format!("bad address {addr:?}")))?;
    Ok((key, addr))
}

/// Resolves when stdin reaches end of file: the SSH session that started us is gone.
fn watch_stdin_end() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = std::thread::Builder::new().name("gangway-proxy-stdin".into()).spawn(move || {
        let mut sink = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    rx
}

async fn write_up(mut to_parent: LinkWriter, mut rx: UnboundedReceiver<Up>) {
    while let Some(msg) = rx.recv().await {
        if to_parent.send(&msg).await.is_err() {
            return;
        }
    }
}

/// The proxies this proxy started, and how to reach each one's subtree.
#[derive(Default)]
struct Children {
    links: Links,
    _sessions: Vec<RemoteCommand>,
}

impl Children {
    /// Starts a proxy for every subtree below this node. A child that cannot be started, or
    /// never calls back, is reported up as failed to start; the others run.
    async fn start(subtree: &Subtree, key: &Psk, up: UnboundedSender<Up>) -> Children {
        let mut children = Children::default();
        if subtree.below.is_empty() {
            return children;
        }
        let fail = |below: &Subtree, message: String| {
            let _ = up.send(Up::StartFailed { node_id: below.job.node_id, message });
        };
        let bootstrap = match subtree.job.bootstrap.build() {
            Ok(b) => b,
            Err(e) => {
                for below in &subtree.below {
                    fail(below, e.clone());
                }
                return children;
            }
        };
        let mut listener = match CallbackListener::bind(key.clone()).await {
            Ok(l) => l,
            Err(e) => {
                for below in &subtree.below {
                    fail(below, format!("cannot listen for proxies: {e}"));
                }
                return children;
            }
        };
        let (below, proxy_path, port) = (&subtree.below, &subtree.job.proxy_path, listener.port());
        let mut started = Vec::new();
        for (i, result) in fan_out::start_sessions(&bootstrap, below, proxy_path, key, port).await {
            match result {
                Ok(cmd) => {
                    children._sessions.push(cmd);
                    started.push(i);
                }
                Err(e) => fail(&below[i], e.to_string()),
            }
        }
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let lost = |b: &Subtree| format!("connection to the proxy on {} dropped", b.host);
        let joined =
            fan_out::join(&mut listener, below, started.clone(), deadline, &up, lost, |_, _| {})
                .await;
        let why = never_called_back(joined.refused, joined.other_version);
        for i in started.into_iter().filter(|&i| joined.links.links[i].is_none()) {
            fail(&below[i], format!("the proxy on {} {why}", below[i].host));
        }
        children.links = joined.links;
        children
    }

    /// Passes a message on to the subtree(s) it is meant for.
    fn forward(&self, envelope: &Envelope) {
        self.links.forward(envelope);
    }
}

/// This node's ranks.
struct LocalRanks {
    pids: HashMap<u32, u32>,
    alive: HashMap<u32, bool>,
    exits: UnboundedReceiver<(u32, std::io::Result<ProcessEnd>)>,
    pmi_events: UnboundedReceiver<crate::pmi::server::PmiEvent>,
    to_root: UnboundedReceiver<ToRoot>,
    pmi: Option<PmiServer>,
    /// Forwarded input for this node's stdin ranks (`None` in a channel closes that pipe).
    stdin: Vec<UnboundedSender<Option<Vec<u8>>>>,
    /// Keeps the ranks' output pumps running; dropping it cuts them off.
    _started: Option<NodeRanks>,
    /// The output sent up that the launcher has not credited back yet (`Down::Credit`).
    window: Arc<Budget>,
}

impl LocalRanks {
    fn empty() -> LocalRanks {
        let (_, exits) = unbounded_channel();
        let (_, pmi_events) = unbounded_channel();
        let (_, to_root) = unbounded_channel();
        LocalRanks {
            pids: HashMap::new(),
            alive: HashMap::new(),
            exits,
            pmi_events,
            to_root,
            pmi: None,
            stdin: Vec::new(),
            _started: None,
            window: Budget::new(NODE_WINDOW),
        }
    }

    async fn start(
        subtree: &Subtree,
        up: UnboundedSender<Up>,
        address: std::net::IpAddr,
    ) -> Result<LocalRanks, String> {
        let job = &subtree.job;
        ranks::prepare_parent();
        let local_size = job.ranks.len() as u32;
        // Inside what the node's agent said of the step (its CPUs, the job's GPUs, the
        // model): a managed step's tasks choose GPUs only among the job's.
        let step = binding::StepNode::from_env(|name| std::env::var(name).ok());
        let placement = binding::plan_step(local_size, &job.binding, &step)
            .map_err(|e| format!("node {}: {e}", job.node_id))?;
        let (root_tx, to_root) = unbounded_channel();
        let info = JobInfo {
            kvsname: job.kvsname.clone(),
            jobid: job.job_id.clone(),
            size: job.size,
            universe_size: job.size,
            appnum: 0,
            process_mapping: job.process_mapping.clone(),
        };
        let namespace = pmix_namespace(
            &job.job_id,
            job.node_names.clone(),
            job.node_of_rank.clone(),
            job.node_id,
        );
        let mut pmi = PmiServer::start(
            info,
            job.node_id,
            job.ranks.clone(),
            job.pmi_mode,
            Some(root_tx),
            job.mpi,
            namespace,
        )
        .await
        .map_err(|e| format!("node {}: cannot start the PMI service: {e}", job.node_id))?;
        let mut base_env: Vec<(OsString, OsString)> = job
            .env
            .iter()
            .map(|(k, v)| (OsString::from_vec(k.clone()), OsString::from_vec(v.clone())))
            .collect();
        // A proxy that a node's agent started has that agent's socket here: the ranks' own
        // `gangway` commands reach the controller through it, as their user, with no secret.
        if let Some(socket) = std::env::var_os("GANGWAY_CONTROLLER") {
            base_env.retain(|(k, _)| k != "GANGWAY_CONTROLLER");
            base_env.push(("GANGWAY_CONTROLLER".into(), socket));
        }
        let program = PathBuf::from(OsString::from_vec(job.program.clone()));
        let argv0 = OsString::from_vec(job.argv0.clone());
        let args: Vec<OsString> = job.args.iter().map(|a| OsString::from_vec(a.clone())).collect();
        let cwd = job.cwd.as_ref().map(|c| PathBuf::from(OsString::from_vec(c.clone())));

        // Output goes up as (rank, stream) chunks of whole lines: tag 2 * rank is the rank's
        // stdout, 2 * rank + 1 its stderr. At most a window of it not yet credited back by the
        // launcher (`Down::Credit`): the ranks' pipes wait meanwhile.
        let (raw_out, mut out_rx) = unbounded_channel::<(usize, Vec<u8>)>();
        let window = Budget::new(NODE_WINDOW);
        let out_tx = OutputTx::new(raw_out, Arc::clone(&window));
        let up_out = up.clone();
        tokio::spawn(async move {
            while let Some((tag, bytes)) = out_rx.recv().await {
                let stream = if tag % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
                let _ = up_out.send(Up::Output { rank: (tag / 2) as u32, stream, bytes });
            }
        });
        let label = job.label;
        let rank_output = |rank: u32| {
            let lines = || LineAssembler::lines(label.then(|| format!("{rank}: ")));
            let tag = rank as usize * 2;
            RankOutput { stdout: (tag, lines()), stderr: (tag + 1, lines()) }
        };
        let launch = NodeLaunch {
            program: &program,
            argv0: &argv0,
            args: &args,
            cwd: cwd.as_deref(),
            base_env: &base_env,
            job_id: &job.job_id,
            size: job.size,
            node_id: job.node_id,
            nnodes: job.nnodes,
            nodelist: &job.nodelist,
            ranks: &job.ranks,
            placement: placement.as_ref(),
            cpus_per_task: job.binding.cpus_per_task,
            input: job.input,
            inherit_stdin: false,
            direct_output: false,
            output: &rank_output,
            sink: out_tx,
            exit_report: ExitReport::AfterOutput(OUTPUT_DRAIN),
            cgroup: &[],
            cgroup_dir: None,
            gpu_numbering: step.gpu_numbering(),
        };
        let mut started = ranks::start(launch, &mut pmi).await.map_err(|failed| {
            format!("node {}: cannot start rank {}: {}", job.node_id, failed.rank, failed.source)
        })?;
        let mut stdin = Vec::new();
        for (_, mut pipe) in std::mem::take(&mut started.stdin) {
            let (tx, mut rx) = unbounded_channel::<Option<Vec<u8>>>();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Some(Some(bytes)) = rx.recv().await {
                    if pipe.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
            stdin.push(tx);
        }
        let pids = started.pids.clone();
        let _ = up.send(Up::Started {
            node_id: job.node_id,
            pids: pids.clone(),
            address: address.to_string(),
        });
        let exits = std::mem::replace(&mut started.exits, unbounded_channel().1);
        Ok(LocalRanks {
            alive: pids.iter().map(|&(rank, _)| (rank, true)).collect(),
            pids: pids.into_iter().collect(),
            exits,
            pmi_events: std::mem::replace(&mut pmi.events, unbounded_channel().1),
            to_root,
            pmi: Some(pmi),
            stdin,
            _started: Some(started),
            window,
        })
    }

    fn handle(&mut self, msg: &Down, node_id: u32, up: &UnboundedSender<Up>) {
        match msg {
            Down::FenceDone { epoch, pairs } => {
                if let Some(pmi) = &self.pmi {
                    pmi.from_root(NodeInput::FenceDown { epoch: *epoch, pairs: pairs.clone() });
                }
            }
            Down::Name { id, reply } => {
                if let Some(pmi) = &self.pmi {
                    pmi.from_root(NodeInput::NameDown { id: *id, reply: reply.clone() });
                }
            }
            Down::Pmix(msg) => {
                if let Some(pmi) = &self.pmi {
                    pmi.from_root_pmix(msg.clone());
                }
            }
            Down::Input(bytes) => {
                for stdin in &self.stdin {
                    let _ = stdin.send(Some(bytes.clone()));
                }
            }
            Down::InputEnd => {
                for stdin in self.stdin.drain(..) {
                    let _ = stdin.send(None);
                }
            }
            Down::Signal(sig) => {
                if let Ok(sig) = Signal::try_from(*sig) {
                    self.signal(sig);
                }
            }
            Down::Ping(seq) => {
                let _ = up.send(Up::Pong { node_id, seq: *seq });
            }
            Down::Credit(bytes) => self.window.give(usize::try_from(*bytes).unwrap_or(usize::MAX)),
            Down::Start(_) => {}
        }
    }

    fn exited(
        &mut self,
        (rank, end): (u32, std::io::Result<ProcessEnd>),
        up: &UnboundedSender<Up>,
    ) {
        self.alive.insert(rank, false);
        let pid = self.pids.get(&rank).copied().unwrap_or(0);
        let end = match end {
            Ok(ProcessEnd::Status(status)) => RemoteEnd::Status(status),
            Ok(ProcessEnd::ExecFailed { errno, .. }) => RemoteEnd::SetupFailed { errno },
            Err(_) => RemoteEnd::Status(crate::exit_status::RankStatus::Exited(-1)),
        };
        let _ = up.send(Up::Exited { rank, pid, end });
        if let Some(pmi) = &self.pmi {
            pmi.rank_exited(rank);
        }
    }

    /// The pids of the ranks still running here.
    fn live(&self) -> Vec<u32> {
        self.pids
            .iter()
            .filter(|(rank, _)| self.alive.get(rank).copied().unwrap_or(false))
            .map(|(_, pid)| *pid)
            .collect()
    }

    fn signal(&self, sig: Signal) {
        for (rank, pid) in &self.pids {
            if self.alive.get(rank).copied().unwrap_or(false) {
                let _ = killpg(Pid::from_raw(*pid as i32), sig);
            }
        }
    }

    fn kill_all(&self) {
        self.signal(Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::fan_out::start_line;

    #[test]
    fn start_lines_round_trip_and_bad_ones_never_echo_the_key() {
        let key = Psk::random();
        let addr: SocketAddr = "10.0.0.254:4242".parse().unwrap();
        let (k, a) = parse_start_line(&start_line(&key, addr)).unwrap();
        assert_eq!((k, a), (key.clone(), addr));
        let hex = key.to_hex();
        for bad in
            [String::new(), hex.clone(), format!("{} {addr}", &hex[..40]), format!("{hex} nowhere")]
        {
            let err = parse_start_line(&bad).expect_err(&bad).to_string();
            assert!(!err.contains(&hex[..16]), "{err}");
        }
    }
}
