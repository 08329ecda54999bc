//! The launcher's side of a multi-node job: starts the top of the proxy tree, owns the job-wide
//! PMI root, watches every node's pings, and makes every decision.
//!
//! [`run_cluster`] is a sequence of named steps: plan the nodes' work and the tree
//! ([`super::plan`]), start the top proxies (`start_top`), wait for their call-backs
//! ([`super::fan_out::join`]), give up the nodes that never joined, then supervise
//! (`ClusterRun`) until the job ends.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use gangway_link::Psk;
use nix::sys::signal::Signal;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::callback::CallbackListener;
use super::fan_out::{self, Joined, Links, never_called_back};
pub use super::plan::ClusterPlan;
use super::plan::{node_jobs, proxy_tree};
use super::protocol::{
    Down, Envelope, LauncherKind, PROTOCOL_VERSION, RemoteEnd, Stream, Subtree, Up,
};
use crate::bootstrap::{Bootstrap, RemoteCommand};
use crate::flow::OutputTx;
use crate::flow::Progress;
use crate::input::InputMode;
use crate::job::{JobEnd, JobReport, JobSpec, LaunchError};
use crate::output::{self, DestinationId, OutputSink};
use crate::output_routes::OutputRoutes;
use crate::pmi::pmix_root::{PmixRoot, Routed};
use crate::pmi::root::{RootInput, RootOutput, RootPmi};
use crate::pmi::server::PmiEvent;
use crate::signals::CaughtSignals;
use crate::spawn::{ProcessEnd, SetupStep};
use crate::supervisor::Supervisor;
use crate::supervisor::policy::{RankState, StopPolicy, StopRules};
use crate::supervisor::report::job_report;
use crate::supervisor::signaller::Signaller;

/// Runs the job on the plan's nodes and waits for it to end.
pub async fn run_cluster(spec: JobSpec, plan: ClusterPlan) -> Result<JobReport, LaunchError> {
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut routes = OutputRoutes::open(&spec, Some((&plan.node_of_rank, &names)))?;
    let sink = OutputSink::start(std::mem::take(&mut routes.files));
    let Some(out) = sink.sender() else {
        return Err(LaunchError::Setup {
            what: "the output thread",
            source: std::io::Error::other("spawn"),
        });
    };
    let say = |msg: String| {
        let _ = out.send((output::STDERR, format!("gangway: {msg}\n").into_bytes()));
    };
    let started = std::time::Instant::now();

    let jobs = node_jobs(&spec, &plan, std::env::vars_os(), std::env::current_dir().ok());
    let subtrees = proxy_tree(&jobs, &plan.nodes, plan.tree_width);

    // The job's call-back key: proxies get it in their start line and must prove they hold it.
    let key = Psk::random();
    let mut callbacks = CallbackListener::bind(key.clone())
        .await
        .map_err(|source| LaunchError::Setup { what: "the proxy listener", source })?;
    let bootstrap = plan.bootstrap.build().map_err(|e| LaunchError::Setup {
        what: "the SSH bootstrap",
        source: std::io::Error::other(e),
    })?;
    let mut caught = CaughtSignals::install()
        .map_err(|source| LaunchError::Setup { what: "signal handlers", source })?;

    let mut top =
        match start_top(&bootstrap, &subtrees, &plan.proxy_path, &key, callbacks.port()).await {
            Ok(top) => top,
            Err(message) => {
                // The writer thread ends only when every sender is gone.
                drop(out);
                sink.finish();
                return Err(LaunchError::Node { message });
            }
        };

    let last_words = relay_agent_stderr(&plan, &mut top.sessions, &out);

    let (up_tx, up_rx) = unbounded_channel::<Up>();
    let deadline = Instant::now() + plan.ping_timeout.max(Duration::from_secs(10));
    // Each call-back is handshaken on its own task: whatever else connects here (idle or
    // garbage connections, a wrong key) cannot hold up the proxies.
    let joined = fan_out::join(
        &mut callbacks,
        &subtrees,
        0..subtrees.len(),
        deadline,
        &up_tx,
        |_| "its connection dropped".to_string(),
        |version, first| {
            if first {
                say(format!(
                    "a proxy speaks protocol {version}, this gangway {PROTOCOL_VERSION}; install the same version everywhere"
                ));
            }
        },
    )
    .await;
    // Nobody else has business on the port once the proxies are in.
    drop(callbacks);
    drop(up_tx);
    let Joined { links, refused, other_version } = joined;
    let silent: Vec<usize> = (0..subtrees.len()).filter(|&i| links.links[i].is_none()).collect();
    let (down, router) = route_down(links);

    let rules = StopRules {
        kill_grace: spec.kill_grace,
        kill_on_bad_exit: spec.kill_on_bad_exit,
        time_limit: spec.time_limit,
        job_id: spec.job_id.clone(),
        program: spec.program.clone(),
    };
    let policy = StopPolicy::new(spec.ntasks as usize, rules, Instant::now());
    let signals = ProxySignals { down: down.clone() };
    // Rank output from the proxies enters the writer's budget through one task, which credits
    // each node back once its bytes are in: a node never has more than a window of output on
    // its way, and a slow writer slows the ranks down instead of filling this process.
    let (to_writer, mut from_proxies) =
        unbounded_channel::<(Option<u32>, Option<DestinationId>, Vec<u8>)>();
    let credits = {
        let (out, down) = (out.clone(), down.clone());
        tokio::spawn(async move {
            let progress = Progress::new();
            while let Some((node, dest, bytes)) = from_proxies.recv().await {
                let n = bytes.len() as u64;
                if let Some(dest) = dest {
                    let _ = out.send_when_room((dest, bytes), &progress).await;
                }
                if let Some(node) = node {
                    let _ = down.send(Envelope { to: Some(node), msg: Down::Credit(n) });
                }
            }
        })
    };
    let mut run = ClusterRun {
        sup: Supervisor::new(policy, signals, &say),
        say: &say,
        nodes: NodeTable::new(&plan, &jobs, top.address),
        pmi_root: RootPmi::new(plan.nodes.len() as u32),
        pmix_root: PmixRoot::new(plan.nodes.len() as u32, plan.node_of_rank.clone()),
        rank_output: &routes.rank,
        to_writer,
        down: down.clone(),
        spec: &spec,
        plan: &plan,
        started,
    };
    let why = never_called_back(refused, other_version);
    for i in silent {
        run.never_joined(&subtrees[i], &why);
    }
    forward_stdin(spec.input, &plan.node_of_rank, down.clone());
    if spec.verbose {
        let others = match refused {
            0 => String::new(),
            n => format!(" ({n} other connection(s) to the call-back port refused)"),
        };
        say(format!(
            "job {}: {} proxies called back in {:.1} ms{others}",
            spec.job_id,
            subtrees.len(),
            started.elapsed().as_secs_f64() * 1e3
        ));
    }

    run.supervise(up_rx, &mut caught).await;

    if spec.verbose {
        say(run.sup.policy().summary(started.elapsed()));
    }
    let report = job_report(run.sup.policy(), &spec.program);
    // Every rank's output arrived before its exit (the proxies see to that); it is all in the
    // writer's queue once the credit task is done (it ends with the run's sender). Closing the
    // connections then ends the proxies, which kill whatever their ranks left.
    drop(run);
    let _ = credits.await;
    drop(down);
    // The agents tell an OOM kill of a step on its session's stderr once its proxy has exited
    // (the kill reached us through the proxy first): after a failed rank, wait a moment for
    // those last words. Other ends do not wait, so a job that went well ends as fast as ever.
    let wait = matches!(report.end, JobEnd::RankFailed { .. }) && !last_words.is_empty();
    if wait {
        // The links close with the router, and the proxies exit on it; the stdin thread may
        // hold a sender for as long as the terminal stays open, so the router is not waited for.
        router.abort();
        let _ = router.await;
    }
    let until = Instant::now() + LAST_WORDS;
    for mut relay in last_words {
        if wait && tokio::time::timeout_at(until, &mut relay).await.is_ok() {
            continue;
        }
        // Each relay holds a sender of the writer thread, which `finish` waits for.
        relay.abort();
        let _ = relay.await;
    }
    for s in &top.sessions {
        s.terminate();
    }
    drop(out);
    sink.finish();
    Ok(report)
}

/// How long a launcher whose rank failed waits for the agents' last words on the sessions'
/// stderr (an OOM kill is told after the proxy's exit, within a millisecond or so).
const LAST_WORDS: Duration = Duration::from_secs(1);

/// Relays what the agents send on each top session's stderr (the proxy's own stderr, and an
/// agent's word on the step such as an OOM kill) to the launcher's stderr, until the session
/// ends. Only for agent sessions: over SSH the session's stderr also carries the ssh client's
/// own chatter, which stays unread as before.
fn relay_agent_stderr(
    plan: &ClusterPlan,
    sessions: &mut [RemoteCommand],
    out: &OutputTx,
) -> Vec<JoinHandle<()>> {
    if plan.bootstrap.kind != LauncherKind::Agent {
        return Vec::new();
    }
    sessions
        .iter_mut()
        .map(|session| {
            let (_, closed) = tokio::sync::mpsc::channel(1);
            let mut stderr = std::mem::replace(&mut session.stderr, closed);
            let out = out.clone();
            tokio::spawn(async move {
                while let Some(bytes) = stderr.recv().await {
                    let _ = out.send((output::STDERR, bytes));
                }
            })
        })
        .collect()
}

/// The top of the tree, started.
struct TopSessions {
    sessions: Vec<RemoteCommand>,
    /// Each top node's address as its session saw it, by node id.
    address: HashMap<u32, String>,
}

/// Starts the proxies of the top subtrees, all at once, never more than one session per node.
/// If any cannot start, the job cannot run: the others are terminated, and the first error
/// comes back.
async fn start_top(
    bootstrap: &Arc<dyn Bootstrap>,
    subtrees: &[Subtree],
    proxy_path: &str,
    key: &Psk,
    port: u16,
) -> Result<TopSessions, String> {
    let mut top = TopSessions { sessions: Vec::new(), address: HashMap::new() };
    let mut start_error = None;
    for (i, result) in fan_out::start_sessions(bootstrap, subtrees, proxy_path, key, port).await {
        match result {
            Ok(cmd) => {
                top.address.insert(subtrees[i].job.node_id, cmd.peer_addr.ip().to_string());
                top.sessions.push(cmd);
            }
            Err(e) => {
                start_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    match start_error {
        None => Ok(top),
        Some(message) => {
            for s in &top.sessions {
                s.terminate();
            }
            Err(message)
        }
    }
}

/// The down direction: one writer per top proxy; a router task picks the subtree of each
/// addressed message.
/// The router's task owns the links: it ends (closing them) once every sender is gone, or
/// when aborted.
fn route_down(links: Links) -> (UnboundedSender<Envelope>, JoinHandle<()>) {
    let (down_tx, mut down_rx) = unbounded_channel::<Envelope>();
    let router = tokio::spawn(async move {
        while let Some(envelope) = down_rx.recv().await {
            links.forward(&envelope);
        }
    });
    (down_tx, router)
}

/// Signals for ranks on other nodes: one message down, and every proxy signals its own ranks'
/// process groups.
struct ProxySignals {
    down: UnboundedSender<Envelope>,
}

impl Signaller for ProxySignals {
    fn signal(&self, signal: Signal, ranks: &[RankState]) -> usize {
        let _ = self.down.send(Envelope { to: None, msg: Down::Signal(signal as i32) });
        ranks.iter().filter(|r| r.running).count()
    }
}

/// What the launcher knows of each node while the job runs.
struct NodeTable<'p> {
    plan: &'p ClusterPlan,
    /// The job's ranks on each node.
    ranks_of: Vec<Vec<u32>>,
    /// Each node's address, once known (from its session, or its start report).
    address: HashMap<u32, String>,
    lost: Vec<bool>,
    last_seen: Vec<Instant>,
    started: Vec<bool>,
}

impl<'p> NodeTable<'p> {
    fn new(
        plan: &'p ClusterPlan,
        jobs: &[super::protocol::NodeJob],
        address: HashMap<u32, String>,
    ) -> Self {
        let n = plan.nodes.len();
        NodeTable {
            plan,
            ranks_of: jobs.iter().map(|j| j.ranks.clone()).collect(),
            address,
            lost: vec![false; n],
            last_seen: vec![Instant::now(); n],
            started: vec![false; n],
        }
    }

    fn name(&self, node: u32) -> &str {
        &self.plan.nodes[node as usize].name
    }

    /// The node as messages name it: `n1`, or `n1 (10.0.0.2)` when its address differs.
    fn shown_as(&self, node: u32) -> String {
        let name = self.name(node);
        match self.address.get(&node) {
            Some(a) if a != name => format!("{name} ({a})"),
            _ => name.to_string(),
        }
    }

    fn ranks(&self, node: u32) -> &[u32] {
        self.ranks_of.get(node as usize).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A multi-node job while it runs: its supervisor, its nodes, its PMI root, and where output
/// and down messages go.
struct ClusterRun<'a> {
    sup: Supervisor<'a, ProxySignals>,
    /// Messages for the user.
    say: &'a dyn Fn(String),
    nodes: NodeTable<'a>,
    pmi_root: RootPmi,
    pmix_root: PmixRoot,
    /// Per rank: (stdout, stderr) destinations.
    rank_output: &'a [(DestinationId, DestinationId)],
    /// Rank output for the writer, with the node to credit for it.
    to_writer: UnboundedSender<(Option<u32>, Option<DestinationId>, Vec<u8>)>,
    down: UnboundedSender<Envelope>,
    spec: &'a JobSpec,
    plan: &'a ClusterPlan,
    started: std::time::Instant,
}

/// At most this many waiting messages are read before a ping round: enough for every pong of a
/// large job, bounded so that a flood of output cannot hold the round off.
const WAITING_READ_BEFORE_PING: usize = 65_536;

impl ClusterRun<'_> {
    /// A top proxy never called back: its node and every node below it are lost before they
    /// start.
    fn never_joined(&mut self, sub: &Subtree, why: &str) {
        let node = sub.job.node_id;
        let mut ranks = Vec::new();
        for id in sub.node_ids() {
            self.nodes.lost[id as usize] = true;
            ranks.extend_from_slice(self.nodes.ranks(id));
        }
        let shown_as = self.nodes.shown_as(node);
        let name = self.nodes.name(node);
        let reason = format!("its proxy {why}");
        self.sup
            .decide(|policy, now| policy.node_start_failed(&shown_as, name, reason, &ranks, now));
    }

    /// The supervisor's loop: proxies' messages, caught signals, pings and the policy's timers,
    /// until the job ends.
    async fn supervise(&mut self, mut up: UnboundedReceiver<Up>, caught: &mut CaughtSignals) {
        let mut next_ping = Instant::now();
        let mut ping_seq = 0u64;
        while self.sup.running() {
            let timer = self.sup.next_timer();
            tokio::select! {
                Some(msg) = up.recv() => self.on_up(msg),
                sig = caught.recv() => self.sup.decide(|policy, now| policy.signal_caught(sig, now)),
                _ = sleep_until(next_ping) => {
                    ping_seq += 1;
                    let late = Instant::now().saturating_duration_since(next_ping);
                    // Replies already waiting are read before the round judges the nodes, so a
                    // launcher that was itself descheduled does not call answering nodes lost.
                    for _ in 0..WAITING_READ_BEFORE_PING {
                        let Ok(msg) = up.try_recv() else { break };
                        self.on_up(msg);
                    }
                    next_ping = Instant::now() + self.plan.ping_interval;
                    self.ping(ping_seq, late);
                }
                _ = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => self.sup.tick(),
            }
        }
    }

    fn on_up(&mut self, msg: Up) {
        match msg {
            Up::Started { node_id, pids, address } => {
                self.nodes.started[node_id as usize] = true;
                self.nodes.address.entry(node_id).or_insert(address);
                for (rank, pid) in pids {
                    self.sup.policy_mut().set_pid(rank, pid);
                }
                if self.spec.verbose && self.nodes.started.iter().all(|s| *s) {
                    (self.say)(format!(
                        "job {}: all {} ranks started in {:.1} ms",
                        self.spec.job_id,
                        self.spec.ntasks,
                        self.started.elapsed().as_secs_f64() * 1e3
                    ));
                }
            }
            Up::StartFailed { node_id, message } => {
                let shown_as = self.nodes.shown_as(node_id);
                let (name, ranks) = (self.nodes.name(node_id), self.nodes.ranks(node_id));
                self.sup.decide(|policy, now| {
                    policy.node_start_failed(&shown_as, name, message, ranks, now)
                });
            }
            Up::Output { rank, stream, bytes } => {
                let dest = self
                    .rank_output
                    .get(rank as usize)
                    .map(|&(o, e)| if stream == Stream::Stdout { o } else { e });
                let node = self.plan.node_of_rank.get(rank as usize).copied();
                let _ = self.to_writer.send((node, dest, bytes));
            }
            Up::Exited { rank, pid, end } => {
                self.sup.policy_mut().set_pid(rank, pid);
                let end = match end {
                    RemoteEnd::Status(status) => ProcessEnd::Status(status),
                    RemoteEnd::SetupFailed { errno } => {
                        ProcessEnd::ExecFailed { step: SetupStep::Exec, errno }
                    }
                };
                self.sup.decide(|policy, now| policy.rank_ended(rank, end, now));
            }
            Up::Pmi(event) => self.sup.decide(|policy, now| policy.pmi_event(event, now)),
            Up::Fence { node_id, epoch, pairs } => {
                self.pass_to_pmi_root(RootInput::FenceUp { node: node_id, epoch, pairs })
            }
            Up::Name { node_id, id, request } => {
                self.pass_to_pmi_root(RootInput::NameUp { node: node_id, id, request })
            }
            Up::Pmix { node_id, msg } => {
                tracing::debug!(target: "gangway::pmi", "node {node_id} -> PMIx {}", msg.summary());
                let (routed, error) = self.pmix_root.handle(node_id, msg);
                for Routed { to, msg } in routed {
                    let _ = self.down.send(Envelope { to, msg: Down::Pmix(msg) });
                }
                if let Some(reason) = error {
                    let failed = PmiEvent::Failed { rank: None, reason };
                    self.sup.decide(|policy, now| policy.pmi_event(failed, now));
                }
            }
            Up::Pong { node_id, .. } => {
                if let Some(t) = self.nodes.last_seen.get_mut(node_id as usize) {
                    *t = Instant::now();
                }
            }
            Up::Lost { node_ids, reason } => {
                for node in node_ids {
                    self.node_lost(node, &reason);
                }
            }
            Up::Hello { .. } => {}
        }
    }

    /// Sends a ping everywhere, and gives up the nodes that answered none for too long. `late` is
    /// how long after its time this round came: the launcher could not hear anyone meanwhile (an
    /// overloaded host), so that time is not held against the nodes.
    fn ping(&mut self, seq: u64, late: Duration) {
        let _ = self.down.send(Envelope { to: None, msg: Down::Ping(seq) });
        let now = Instant::now();
        let timeout = self.plan.ping_timeout;
        if late > self.plan.ping_interval {
            for seen in &mut self.nodes.last_seen {
                *seen = (*seen + late).min(now);
            }
        }
        for node in 0..self.plan.nodes.len() {
            if !self.nodes.lost[node] && now.duration_since(self.nodes.last_seen[node]) > timeout {
                let reason = format!("no ping reply for {:.0} s", timeout.as_secs_f64());
                self.node_lost(node as u32, &reason);
            }
        }
    }

    fn node_lost(&mut self, node: u32, reason: &str) {
        let Some(&already) = self.nodes.lost.get(node as usize) else { return };
        // Nothing more comes from the node: its exited ranks will never be settled.
        self.sup.policy_mut().never_settled(self.nodes.ranks(node));
        if already {
            return;
        }
        self.nodes.lost[node as usize] = true;
        let shown_as = self.nodes.shown_as(node);
        let (name, ranks) = (self.nodes.name(node), self.nodes.ranks(node));
        self.sup.decide(|policy, now| policy.node_lost(&shown_as, name, reason, ranks, now));
    }

    /// Hands a node's fence or name request to the job-wide PMI root, and its answers down.
    fn pass_to_pmi_root(&mut self, input: RootInput) {
        for output in self.pmi_root.handle(input) {
            let envelope = match output {
                RootOutput::FenceDown { epoch, pairs } => {
                    Envelope { to: None, msg: Down::FenceDone { epoch, pairs } }
                }
                RootOutput::NameDown { node, id, reply } => {
                    Envelope { to: Some(node), msg: Down::Name { id, reply } }
                }
            };
            let _ = self.down.send(envelope);
        }
    }
}

/// Sends our stdin to the node of the rank that reads it, or to every node (`--input`).
fn forward_stdin(mode: InputMode, node_of_rank: &[u32], down: UnboundedSender<Envelope>) {
    let node = match mode {
        InputMode::None => return,
        InputMode::All => None,
        InputMode::Rank(rank) => match node_of_rank.get(rank as usize) {
            Some(&node) => Some(node),
            None => return,
        },
    };
    let _ = std::thread::Builder::new().name("gangway-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    if down
                        .send(Envelope { to: node, msg: Down::Input(buf[..k].to_vec()) })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = down.send(Envelope { to: node, msg: Down::InputEnd });
    });
}
