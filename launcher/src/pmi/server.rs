//! Socket side of the PMI service on one node: a task per rank connection, one task owning state.
//!
//! Connection tasks only frame bytes; the state task owns [`NodePmi`] (and, for a job that fits
//! on this node, the [`RootPmi`]) and answers every request, so no state is shared or locked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

pub use super::events::{PmiEvent, ToRoot};
use super::node::{JobInfo, NodeInput, NodeOutput, NodePmi, ReqId};
use super::peer;
use super::pmix::{MpiKind, PmixNode, PmixServer};
use super::pmix_root::PmixDown;
use super::root::{RootInput, RootOutput, RootPmi};
use super::wire::{self, Decoder, Framed, Protocol, Request};

/// How long a closed PMI socket waits for its rank's exit before counting as "left without
/// finalize" on its own (a rank may close the socket and live on).
const EXIT_AFTER_EOF_GRACE: Duration = Duration::from_secs(1);

/// Requests one connection may have waiting for replies before it is read no further. PMI
/// clients wait for each reply (a threaded PMI-2 client, one per thread); a rank that does not
/// must not make the service queue its requests without bound.
const MAX_IN_FLIGHT: usize = 64;

/// The variable that tells MPICH (4.2 and later) which PMI to use; a user's own setting wins.
pub const MPICH_PMI_VERSION: &str = "MPIR_CVAR_PMI_VERSION";

/// How ranks reach the PMI service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum PmiMode {
    /// An inherited socket (`PMI_FD`): no connect, no handshake. The default.
    #[default]
    Fd,
    /// A TCP port (`PMI_PORT` + `PMI_ID`, with the PMI-1 initack handshake).
    Port,
}

enum ToState {
    FromRoot(NodeInput),
    FromRootPmix(PmixDown),
    /// The job is over: let go of the PMIx server, then say so.
    Close(tokio::sync::oneshot::Sender<()>),
    Register {
        rank: u32,
        conn: UnboundedSender<ToConn>,
    },
    Request {
        rank: u32,
        framed: Framed,
    },
    Gone {
        rank: u32,
    },
    Broken {
        rank: Option<u32>,
        reason: String,
    },
    RankExited {
        rank: u32,
    },
}

enum ToConn {
    Bytes(Vec<u8>),
    /// The rank's process has exited: read what it left in the socket, then report it gone.
    Drain,
}

/// The PMI service of one node, as seen by the supervisor.
#[derive(Debug)]
pub struct PmiServer {
    to_state: UnboundedSender<ToState>,
    /// Events for the supervisor.
    pub events: UnboundedReceiver<PmiEvent>,
    child_ends: HashMap<u32, OwnedFd>,
    port: Option<SocketAddr>,
    jobid: String,
    /// Whether the ranks get the PMI-1/2 service.
    serves_pmi: bool,
    /// This node's PMIx server, when the job has one.
    pmix: Option<Arc<PmixServer>>,
}

impl PmiServer {
    /// Starts the service for `local_ranks` of the job. Must run inside a tokio runtime.
    ///
    /// `remote_root`: where fences and name requests go when this node is not the whole job;
    /// `None` answers them here (a job on one node). `mpi` says which services the ranks get;
    /// `namespace` describes the job to a PMIx server. Without libpmix, `MpiKind::Pmix` fails
    /// here (the error names the package) and `MpiKind::Auto` serves PMI-1/2 alone.
    pub async fn start(
        job: JobInfo,
        node_id: u32,
        local_ranks: Vec<u32>,
        mode: PmiMode,
        remote_root: Option<UnboundedSender<ToRoot>>,
        mpi: MpiKind,
        namespace: gangway_pmix::Namespace,
    ) -> std::io::Result<PmiServer> {
        let (to_state, state_rx) = unbounded_channel();
        let (events_tx, events) = unbounded_channel();
        let jobid = job.jobid.clone();
        let mut child_ends = HashMap::new();
        let mut port = None;
        let (pmix, pmix_events) = match mpi.serves_pmix() {
            false => (None, None),
            true => match PmixServer::start(namespace) {
                Ok((server, events)) => (Some(server), Some(events)),
                Err(e) if mpi == MpiKind::Pmix => {
                    return Err(std::io::Error::other(format!(
                        "no PMIx server for --mpi=pmix: {e}"
                    )));
                }
                Err(gangway_pmix::PmixError::Unavailable(e)) => {
                    tracing::debug!(target: "gangway::pmix", "PMI-1/2 only: {e}");
                    (None, None)
                }
                Err(e) => {
                    let _ = events_tx.send(PmiEvent::Warning {
                        message: format!("no PMIx server on node {node_id}, PMI-1/2 only: {e}"),
                    });
                    (None, None)
                }
            },
        };
        match mode {
            _ if !mpi.serves_pmi() => {}
            PmiMode::Fd => {
                for &rank in &local_ranks {
                    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
                    ours.set_nonblocking(true)?;
                    let ours = UnixStream::from_std(ours)?;
                    child_ends.insert(rank, OwnedFd::from(theirs));
                    let (conn_tx, conn_rx) = unbounded_channel();
                    let _ = to_state.send(ToState::Register { rank, conn: conn_tx });
                    tokio::spawn(connection(
                        ours,
                        Unidentified::Known(rank),
                        conn_rx,
                        to_state.clone(),
                    ));
                }
            }
            PmiMode::Port => {
                // Loopback only: the ranks are on this node.
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
                port = Some(listener.local_addr()?);
                tokio::spawn(accept_loop(listener, to_state.clone(), events_tx.clone()));
            }
        }
        let pmix_node = pmix
            .clone()
            .map(|server| PmixNode::new(server, remote_root.clone(), events_tx.clone()));
        let state = StateTask::new(job, node_id, local_ranks, events_tx, remote_root, pmix_node);
        tokio::spawn(state.run(state_rx, pmix_events));
        Ok(PmiServer {
            to_state,
            events,
            child_ends,
            port,
            jobid,
            serves_pmi: mpi.serves_pmi(),
            pmix,
        })
    }

    /// The PMIx variables of one rank's environment (none without a PMIx server). A rank that
    /// cannot be registered fails the job: it would start as a singleton.
    pub fn pmix_env(&self, rank: u32) -> Vec<(String, String)> {
        let Some(pmix) = &self.pmix else { return Vec::new() };
        let mut env = pmix.rank_env(rank).unwrap_or_else(|e| {
            let reason = format!("cannot register rank {rank} with the PMIx server: {e}");
            let _ = self.to_state.send(ToState::Broken { rank: Some(rank), reason });
            Vec::new()
        });
        if self.serves_pmi {
            // MPICH 4.2 and later abort in MPI_Init when they find both PMI-1/2 and PMIx
            // variables ("Auto-detection of PMI version failed"); told which, they take PMI-1,
            // the path they take without PMIx. Older MPICH and Open MPI ignore the variable.
            env.push((MPICH_PMI_VERSION.into(), "1".into()));
        }
        env
    }

    /// Hands the node a PMIx message from the job's root.
    pub fn from_root_pmix(&self, msg: PmixDown) {
        let _ = self.to_state.send(ToState::FromRootPmix(msg));
    }

    /// Ends the service once the job is over: the PMIx server (if any) deregisters the job,
    /// stops, and its directory is removed before this returns.
    pub async fn close(self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.to_state.send(ToState::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The descriptor the rank must inherit (`PMI_FD` mode); drop it after the fork.
    pub fn take_child_end(&mut self, rank: u32) -> Option<OwnedFd> {
        self.child_ends.remove(&rank)
    }

    /// The PMI variables of one rank's environment; `child_fd` is from [`Self::take_child_end`].
    pub fn rank_env(&self, rank: u32, child_fd: Option<RawFd>) -> Vec<(&'static str, String)> {
        if !self.serves_pmi {
            return Vec::new();
        }
        let mut env = vec![("PMI_JOBID", self.jobid.clone())];
        if let Some(fd) = child_fd {
            env.push(("PMI_FD", fd.to_string()));
        }
        if let Some(addr) = self.port {
            env.push(("PMI_PORT", addr.to_string()));
            env.push(("PMI_ID", rank.to_string()));
        }
        env
    }

    /// Hands the node what the remote root says: a completed fence or a name-service answer.
    pub fn from_root(&self, input: NodeInput) {
        let _ = self.to_state.send(ToState::FromRoot(input));
    }

    /// Tells the service a rank's process has exited.
    pub fn rank_exited(&self, rank: u32) {
        let _ = self.to_state.send(ToState::RankExited { rank });
    }
}

/// At most this many refused uids are named in the job's output (an attacker who opens
/// connections in a loop must not flood it).
const MAX_REFUSAL_WARNINGS: usize = 8;

/// Serves `PMI_PORT`. Every user on the node can see the port, so a connection is let in only
/// when its socket belongs to the launcher's own uid (the ranks'); others are closed unread.
async fn accept_loop(
    listener: TcpListener,
    to_state: UnboundedSender<ToState>,
    events: UnboundedSender<PmiEvent>,
) {
    let me = nix::unistd::geteuid().as_raw();
    let mut warned: HashSet<Option<u32>> = HashSet::new();
    gangway_link::accept::serve(listener, "PMI port", move |stream| {
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            return;
        };
        // A read of the kernel's socket table: quick, and done before anything is read.
        let owner = peer::owner(peer, local).ok().flatten();
        if owner != Some(me) {
            if warned.len() < MAX_REFUSAL_WARNINGS && warned.insert(owner) {
                let who = owner.map_or("a process that could not be identified".into(), |u| {
                    format!("uid {u}")
                });
                let _ = events.send(PmiEvent::Warning {
                    message: format!(
                        "refused a connection to the job's PMI port {local} from {who}: only \
                         the job's own ranks (uid {me}) may connect"
                    ),
                });
            }
            return;
        }
        let _ = stream.set_nodelay(true);
        let (conn_tx, conn_rx) = unbounded_channel();
        tokio::spawn(connection(stream, Unidentified::Pending(conn_tx), conn_rx, to_state.clone()));
    })
    .await;
}

/// A `PMI_PORT` connection's rank is unknown until its initack or fullinit; until then its
/// reply channel waits here to be registered.
enum Unidentified {
    Known(u32),
    Pending(UnboundedSender<ToConn>),
}

/// Frames one rank's socket: requests go to the state task, replies come back as bytes.
async fn connection<S>(
    mut stream: S,
    identity: Unidentified,
    mut replies: UnboundedReceiver<ToConn>,
    to_state: UnboundedSender<ToState>,
) where
    S: AsyncRead + AsyncWrite + AsRawFd + Unpin,
{
    let mut conn = Conn { decoder: Decoder::new(), identity, to_state, in_flight: 0 };
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = false;
    loop {
        tokio::select! {
            // A rank that sends faster than it reads its replies waits in its own socket
            // buffer, not in our memory.
            read = stream.read(&mut buf), if conn.in_flight < MAX_IN_FLIGHT => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                conn.decoder.push(&buf[..n]);
                match conn.forward_requests() {
                    Ok(early) => {
                        if !early.is_empty() && stream.write_all(&early).await.is_err() {
                            break;
                        }
                    }
                    // Stop reading, but still report the rank gone below: its exit must be
                    // settled like any other.
                    Err(()) => break,
                }
            }
            msg = replies.recv() => match msg {
                Some(ToConn::Bytes(bytes)) => {
                    conn.in_flight = conn.in_flight.saturating_sub(1);
                    if stream.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(ToConn::Drain) => {
                    drain_now(&stream, &mut buf, &mut conn.decoder);
                    let _ = conn.forward_requests();
                    drained = true;
                    break;
                }
                None => return,
            }
        }
    }
    drop(stream);
    if !drained {
        // A crashing rank's socket closes a moment before its exit is seen. Waiting for the
        // exit lets the crash itself, not the missing finalize, be reported as the cause.
        let exited = async {
            while let Some(msg) = replies.recv().await {
                if matches!(msg, ToConn::Drain) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(EXIT_AFTER_EOF_GRACE, exited).await;
    }
    if let Unidentified::Known(rank) = conn.identity {
        let _ = conn.to_state.send(ToState::Gone { rank });
    }
}

struct Conn {
    decoder: Decoder,
    identity: Unidentified,
    to_state: UnboundedSender<ToState>,
    /// Requests passed on and not yet answered.
    in_flight: usize,
}

impl Conn {
    /// Passes every complete request on. Returns bytes to answer directly (a PMI-2 init line
    /// that arrives before the rank has said who it is), or `Err` when the connection is done.
    fn forward_requests(&mut self) -> Result<Vec<u8>, ()> {
        let mut early = Vec::new();
        loop {
            let framed = match self.decoder.next_request() {
                Ok(None) => return Ok(early),
                Ok(Some(framed)) => framed,
                Err(error) => {
                    let who = match self.identity {
                        Unidentified::Known(r) => format!("rank {r}"),
                        Unidentified::Pending(_) => "a process on PMI_PORT".into(),
                    };
                    let rank = match self.identity {
                        Unidentified::Known(r) => Some(r),
                        Unidentified::Pending(_) => None,
                    };
                    let reason = format!("{who} sent a malformed PMI message: {error}");
                    let _ = self.to_state.send(ToState::Broken { rank, reason });
                    return Err(());
                }
            };
            if let Unidentified::Pending(conn) = &self.identity {
                match identity(&framed.request) {
                    Some(rank) => {
                        let _ = self.to_state.send(ToState::Register { rank, conn: conn.clone() });
                        self.identity = Unidentified::Known(rank);
                    }
                    None if matches!(framed.request, Request::Init { .. }) => {
                        early.extend(wire::encode(
                            &init_reply(&framed.request),
                            framed.protocol,
                            None,
                        ));
                        continue;
                    }
                    None => {
                        let reason = "a process connected to PMI_PORT without identifying itself \
                                      (no initack or fullinit first)"
                            .to_string();
                        let _ = self.to_state.send(ToState::Broken { rank: None, reason });
                        return Err(());
                    }
                }
            }
            if let Unidentified::Known(rank) = self.identity {
                self.in_flight += 1;
                let _ = self.to_state.send(ToState::Request { rank, framed });
            }
        }
    }
}

/// Reads whatever is already in the socket without waiting (bypassing the reactor, which may
/// not have seen it yet): a rank's last words before it exited.
fn drain_now<S: AsRawFd>(stream: &S, buf: &mut [u8], decoder: &mut Decoder) {
    use nix::sys::socket::{MsgFlags, recv};
    while let Ok(n) = recv(stream.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
    }
}

fn identity(request: &Request) -> Option<u32> {
    match request {
        Request::Initack { id } => Some(*id),
        Request::FullInit { rank: Some(rank), .. } => Some(*rank),
        _ => None,
    }
}

struct Pending {
    rank: u32,
    protocol: Protocol,
    thrid: Option<String>,
}

/// Owns the node's PMI state and the local root.
struct StateTask {
    node: NodePmi,
    /// The job's root when it is here; otherwise fences and names go `upstream`.
    root: Option<RootPmi>,
    upstream: Option<UnboundedSender<ToRoot>>,
    conns: HashMap<u32, UnboundedSender<ToConn>>,
    pending: HashMap<ReqId, Pending>,
    next_id: ReqId,
    spoke: HashSet<u32>,
    gone: HashSet<u32>,
    /// Ranks whose process exit was reported, and those already reported settled.
    exited: HashSet<u32>,
    settled: HashSet<u32>,
    size: u32,
    events: UnboundedSender<PmiEvent>,
    pmix: Option<PmixNode>,
}

impl StateTask {
    fn new(
        job: JobInfo,
        node_id: u32,
        local_ranks: Vec<u32>,
        events: UnboundedSender<PmiEvent>,
        upstream: Option<UnboundedSender<ToRoot>>,
        pmix: Option<PmixNode>,
    ) -> Self {
        let size = job.size;
        StateTask {
            node: NodePmi::new(job, node_id, local_ranks),
            root: if upstream.is_none() { Some(RootPmi::new(1)) } else { None },
            upstream,
            conns: HashMap::new(),
            pending: HashMap::new(),
            next_id: 0,
            spoke: HashSet::new(),
            gone: HashSet::new(),
            exited: HashSet::new(),
            settled: HashSet::new(),
            size,
            events,
            pmix,
        }
    }

    async fn run(
        mut self,
        mut rx: UnboundedReceiver<ToState>,
        mut pmix_events: Option<UnboundedReceiver<gangway_pmix::Event>>,
    ) {
        loop {
            let upcall = async {
                match &mut pmix_events {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                // Upcalls first: a rank's PMIx finalize must be seen before its exit, and the
                // rank cannot exit before its finalize is answered from here.
                biased;
                Some(event) = upcall => {
                    if let Some(pmix) = &mut self.pmix {
                        pmix.handle(event);
                    }
                    continue;
                }
                msg = rx.recv() => msg,
            };
            let Some(msg) = msg else { break };
            match msg {
                ToState::Close(done) => {
                    // Replies still pending answer an error as they go; the ranks are gone.
                    drop(self.pmix.take());
                    drop(pmix_events.take());
                    let _ = done.send(());
                    return;
                }
                ToState::FromRootPmix(msg) => {
                    if let Some(pmix) = &mut self.pmix {
                        pmix.from_root(msg);
                    }
                }
                ToState::FromRoot(input) => {
                    let out = self.node.handle(input);
                    self.apply(out);
                }
                ToState::Register { rank, conn } => {
                    self.conns.insert(rank, conn);
                }
                ToState::Request { rank, framed } => self.request(rank, framed),
                ToState::Gone { rank } => self.gone(rank),
                ToState::Broken { rank, reason } => {
                    let _ = self.events.send(PmiEvent::Failed { rank, reason });
                }
                ToState::RankExited { rank } => {
                    self.exited.insert(rank);
                    if self.gone.contains(&rank) {
                        self.settle(rank);
                        continue;
                    }
                    // The connection reads the rank's last words, then reports it gone.
                    match self.conns.get(&rank) {
                        Some(conn) if conn.send(ToConn::Drain).is_ok() => {}
                        _ => self.gone(rank),
                    }
                }
            }
        }
    }

    fn request(&mut self, rank: u32, framed: Framed) {
        if rank >= self.size {
            let _ = self.events.send(PmiEvent::Failed {
                rank: None,
                reason: format!(
                    "a process claimed PMI rank {rank}, but the job has {} ranks",
                    self.size
                ),
            });
            return;
        }
        if self.spoke.insert(rank) {
            let _ = self.events.send(PmiEvent::Connected { rank });
        }
        tracing::debug!(target: "gangway::pmi", "rank {rank} -> {:?}", framed.request);
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, Pending { rank, protocol: framed.protocol, thrid: framed.thrid });
        let out = self.node.handle(NodeInput::Request { id, rank, request: framed.request });
        self.apply(out);
    }

    fn gone(&mut self, rank: u32) {
        if self.gone.insert(rank) {
            let out = self.node.handle(NodeInput::RankGone { rank });
            self.apply(out);
        }
        if self.exited.contains(&rank) {
            self.settle(rank);
        }
    }

    fn settle(&mut self, rank: u32) {
        if self.settled.insert(rank) {
            if let Some(pmix) = &mut self.pmix {
                pmix.rank_gone(rank);
            }
            let _ = self.events.send(PmiEvent::Settled { rank });
        }
    }

    fn apply(&mut self, outputs: Vec<NodeOutput>) {
        let mut queue: VecDeque<NodeOutput> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                NodeOutput::Reply { id, reply } => {
                    if let Some(p) = self.pending.remove(&id)
                        && let Some(conn) = self.conns.get(&p.rank)
                    {
                        tracing::debug!(target: "gangway::pmi", "rank {} <- {reply:?}", p.rank);
                        let bytes = wire::encode(&reply, p.protocol, p.thrid.as_deref());
                        let _ = conn.send(ToConn::Bytes(bytes));
                    }
                }
                NodeOutput::FenceUp { epoch, pairs } => {
                    tracing::debug!(target: "gangway::pmi", "fence {epoch}: {} new key(s)", pairs.len());
                    match (&mut self.root, &self.upstream) {
                        (Some(root), _) => {
                            let down = root.handle(RootInput::FenceUp { node: 0, epoch, pairs });
                            queue.extend(self.route_down(down));
                        }
                        (None, Some(up)) => {
                            let _ = up.send(ToRoot::Fence { epoch, pairs });
                        }
                        (None, None) => {}
                    }
                }
                NodeOutput::NameUp { id, rank: _, request } => {
                    match (&mut self.root, &self.upstream) {
                        (Some(root), _) => {
                            let down = root.handle(RootInput::NameUp { node: 0, id, request });
                            queue.extend(self.route_down(down));
                        }
                        (None, Some(up)) => {
                            let _ = up.send(ToRoot::Name { id, request });
                        }
                        (None, None) => {}
                    }
                }
                NodeOutput::Abort { rank, code, message } => {
                    let _ = self.events.send(PmiEvent::Abort { rank, code, message });
                }
                NodeOutput::Failed { rank, reason } => {
                    let _ = self
                        .events
                        .send(PmiEvent::Failed { rank: Some(rank), reason: reason.to_string() });
                }
                NodeOutput::Finalized { rank } => {
                    let _ = self.events.send(PmiEvent::Finalized { rank });
                }
                NodeOutput::Warning { rank: _, message } => {
                    let _ = self.events.send(PmiEvent::Warning { message });
                }
            }
        }
    }

    fn route_down(&mut self, outputs: Vec<RootOutput>) -> Vec<NodeOutput> {
        let mut result = Vec::new();
        for output in outputs {
            let input = match output {
                RootOutput::FenceDown { epoch, pairs } => NodeInput::FenceDown { epoch, pairs },
                RootOutput::NameDown { node: _, id, reply } => NodeInput::NameDown { id, reply },
            };
            result.extend(self.node.handle(input));
        }
        result
    }
}

/// The answer to an init line, which needs no state: it only echoes the client's version.
fn init_reply(request: &Request) -> wire::Reply {
    match request {
        Request::Init { version, subversion } => {
            wire::Reply::InitResponse { version: *version, subversion: *subversion }
        }
        _ => wire::Reply::UnknownCommand { cmd: "init".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    fn job(size: u32) -> JobInfo {
        JobInfo {
            kvsname: "kvs_t_0".into(),
            jobid: "t".into(),
            size,
            universe_size: size,
            appnum: 0,
            process_mapping: None,
        }
    }

    fn namespace(size: u32) -> gangway_pmix::Namespace {
        gangway_pmix::Namespace::new("t", vec!["h".into()], vec![0; size as usize], 0)
    }

    /// A rank that leaves without finalize is reported failed before it is reported settled,
    /// whatever the timing: the supervisor relies on that order.
    #[tokio::test]
    async fn an_exit_without_finalize_is_failed_then_settled() {
        let mut pmi =
            PmiServer::start(job(1), 0, vec![0], PmiMode::Fd, None, MpiKind::Pmi2, namespace(1))
                .await
                .unwrap();
        let fd = pmi.take_child_end(0).unwrap();
        let rank = std::os::unix::net::UnixStream::from(fd);
        let mut reader = BufReader::new(rank.try_clone().unwrap());
        (&rank).write_all(b"cmd=init pmi_version=1 pmi_subversion=1\n").unwrap();
        let mut line = String::new();
        let rank = tokio::task::spawn_blocking(move || {
            reader.read_line(&mut line).unwrap();
            rank
        })
        .await
        .unwrap();
        drop(rank);
        pmi.rank_exited(0);
        let mut events = Vec::new();
        while let Some(e) = pmi.events.recv().await {
            let last = matches!(e, PmiEvent::Settled { .. });
            events.push(e);
            if last {
                break;
            }
        }
        assert!(matches!(events[0], PmiEvent::Connected { rank: 0 }), "{events:?}");
        assert!(matches!(events[1], PmiEvent::Failed { rank: Some(0), .. }), "{events:?}");
        assert_eq!(events[2], PmiEvent::Settled { rank: 0 }, "{events:?}");
    }

    /// A rank that never spoke PMI is settled at its exit, with nothing to report.
    #[tokio::test]
    async fn a_silent_rank_is_settled_at_its_exit() {
        let mut pmi = PmiServer::start(
            job(2),
            0,
            vec![0, 1],
            PmiMode::Port,
            None,
            MpiKind::Pmi2,
            namespace(2),
        )
        .await
        .unwrap();
        pmi.rank_exited(1);
        assert_eq!(pmi.events.recv().await, Some(PmiEvent::Settled { rank: 1 }));
    }
}
