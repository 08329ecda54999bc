//! The controller's I/O: the state-directory lock, the local socket and the TCP port, one task
//! per connection, and the one task that owns the [`Cluster`] and the [`Store`]. Messages that
//! arrive together are handled together and committed in one transaction before any reply.
//! The TCP port's encrypted links (agents, users' tokens, vouched sessions) are in [`links`].

mod links;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gangway_link::accept;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::mpsc::{self, UnboundedSender, unbounded_channel};

use super::config::Config;
use super::disk::Disk;
use super::effects::{ConnId, Effect, Effects};
use super::limits::{
    self, Closer, Gate, INPUT_QUEUE, LineError, OUTBOUND_BYTES, OUTBOUND_MESSAGES, Outbox,
    OutboxRx, discard_line, read_line_bounded,
};
use super::state::{Caller, Cluster, Mono};
use super::store::{Store, StoreError};
use crate::auth::{AuthError, Key};
use crate::exit_code;
use crate::protocol::{FromAgent, Reply, Request, ToAgent};

/// Why the controller could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the state directory {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another controller already runs on {} (its lock is held{}); stop it first, or give this one another state_dir",
        dir.display(), holder.as_ref().map(|p| format!(" by pid {p}")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, holder: Option<String> },
    #[error(transparent)]
    Key(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Limits how many messages one pass takes before committing, so replies never wait long.
const BATCH: usize = 1024;

/// Something for the owner task.
#[derive(Debug)]
enum Input {
    Client {
        conn: ConnId,
        caller: Caller,
        request: Box<Request>,
    },
    /// An answer the connection task made itself (a malformed request, a token): queued behind
    /// the owner's replies, so that one bounded queue holds everything a client is sent.
    Say {
        conn: ConnId,
        reply: Reply,
    },
    ClientGone {
        conn: ConnId,
    },
    Agent {
        conn: ConnId,
        node: String,
        msg: FromAgent,
    },
    AgentGone {
        conn: ConnId,
    },
    /// May this node's agent vouch for this uid? (Asked before a relayed session is served.)
    Vouch {
        node: String,
        uid: u32,
        answer: tokio::sync::oneshot::Sender<Result<(), (u8, String)>>,
    },
}

/// What a connection task sends out: a message already in JSON (serialized by the owner, so
/// that the outbound queue can count its bytes), or the end.
#[derive(Debug)]
enum Outbound {
    Message(String),
    Close,
}

impl Outbound {
    fn reply(r: &Reply) -> Outbound {
        Outbound::Message(serde_json::to_string(r).unwrap_or_default())
    }

    fn to_agent(m: &ToAgent) -> Outbound {
        Outbound::Message(serde_json::to_string(m).unwrap_or_default())
    }

    fn bytes(&self) -> usize {
        match self {
            Outbound::Message(m) => m.len() + 1,
            Outbound::Close => 0,
        }
    }
}

type Register = UnboundedSender<(ConnId, Outbox<Outbound>)>;

/// What every connection task needs: the key, the owner's queues, and the limits.
#[derive(Debug, Clone)]
struct Shared {
    key: Key,
    input: mpsc::Sender<Input>,
    reg: Register,
    gate: Gate,
    /// The largest request after authentication.
    request_bytes: usize,
    auth_timeout: Duration,
    /// Who the per-user connection limit does not apply to.
    admins: Vec<String>,
    controller_uid: u32,
}

impl Shared {
    fn exempt(&self, uid: u32, user: &str) -> bool {
        uid == 0 || uid == self.controller_uid || self.admins.iter().any(|a| a == user)
    }

    /// A new connection's outbound queue, registered with the owner.
    fn outbox(&self, conn: ConnId) -> OutboxRx<Outbound> {
        let (tx, rx) = limits::outbox(OUTBOUND_MESSAGES, OUTBOUND_BYTES);
        let _ = self.reg.send((conn, tx));
        rx
    }
}

/// Holds the state directory's lock while the controller lives.
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the state directory's lock (creating the directory), or says who holds it.
pub fn lock_state_dir(dir: &Path) -> Result<StateLock, ServerError> {
    use std::io::Write;
    std::fs::create_dir_all(dir)
        .map_err(|source| ServerError::StateDir { path: dir.to_owned(), source })?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let path = dir.join("controller.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| ServerError::StateDir { path: path.clone(), source })?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = writeln!(lock, "{}", std::process::id());
            Ok(StateLock { _lock: lock })
        }
        Err(_) => Err(ServerError::Locked {
            dir: dir.to_owned(),
            holder: std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()),
        }),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Liveness's clock: monotonic milliseconds since the controller started (never wall time,
/// which can jump; see docs/cluster.md, "Fencing").
fn mono_since(origin: tokio::time::Instant) -> Mono {
    Mono(origin.elapsed().as_millis() as u64)
}

/// Runs the controller until it is killed. `ready` is called once it listens.
pub async fn run(config: Config, ready: impl FnOnce(&Config)) -> Result<(), ServerError> {
    let _lock = lock_state_dir(&config.state_dir)?;
    let key = Key::load(&config.key_file)?;
    let mut store = Store::open(&config.state_dir)?;
    let (nodes, jobs, next_id) = store.load()?;
    let njobs = jobs.iter().filter(|j| !j.state.is_final()).count();
    let mut cluster = Cluster::new(
        config.clone(),
        nix::unistd::getuid().as_raw(),
        nodes,
        jobs,
        next_id,
        now_ms(),
    );
    cluster.set_signer(key.clone());
    tracing::info!(cluster = %config.cluster, active_jobs = njobs, "state loaded");

    let unix = bind_unix(&config.socket)?;
    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen { what: config.listen.to_string(), source })?;
    // Every node counts as heard now: until this moment its agent's connections were refused,
    // which let it keep its lease (docs/cluster.md, "Fencing").
    let origin = tokio::time::Instant::now();
    cluster.listening(mono_since(origin));
    tracing::info!(socket = %config.socket.display(), listen = %config.listen, "listening");
    let mut disk = Disk::new(&config.state_dir, &config.limits);
    ready(&config);

    let (input_tx, mut input_rx) = mpsc::channel::<Input>(INPUT_QUEUE);
    let (reg_tx, mut reg_rx) = unbounded_channel::<(ConnId, Outbox<Outbound>)>();
    let shared = Shared {
        key: key.clone(),
        input: input_tx,
        reg: reg_tx,
        gate: Gate::new(config.limits.clone()),
        request_bytes: limits::request_bytes(&config.limits),
        auth_timeout: config.limits.auth_timeout,
        admins: config.admins.clone(),
        controller_uid: nix::unistd::getuid().as_raw(),
    };
    let ids = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    {
        let (shared, ids) = (shared.clone(), ids.clone());
        tokio::spawn(accept::serve(unix, "the controller's local socket", move |stream| {
            let conn = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(serve_unix(conn, stream, shared.clone()));
        }));
    }
    {
        let (shared, ids) = (shared.clone(), ids.clone());
        tokio::spawn(accept::serve(tcp, "the controller's TCP port", move |stream| {
            let conn = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            tokio::spawn(links::serve_tcp(conn, stream, shared.clone()));
        }));
    }
    drop(shared);

    let mut outs: HashMap<ConnId, Outbox<Outbound>> = HashMap::new();
    // Replies and agent messages whose changes are not on disk yet (the state disk is full).
    let mut held = Effects::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut effects = Effects::new();
        // Answers that only read the state: they go out even while a commit waits for space.
        let mut reads = Effects::new();
        let mut inputs = Vec::new();
        let mut ticked = false;
        tokio::select! {
            Some(i) = input_rx.recv() => inputs.push(i),
            _ = ticker.tick() => {
                effects.append(cluster.tick(now_ms(), mono_since(origin)));
                ticked = true;
            }
        }
        while inputs.len() < BATCH {
            match input_rx.try_recv() {
                Ok(i) => inputs.push(i),
                Err(_) => break,
            }
        }
        while let Ok((conn, tx)) = reg_rx.try_recv() {
            outs.insert(conn, tx);
        }
        let now = now_ms();
        // Taken after the messages arrived: a node is never thought heard earlier than it was.
        let mono = mono_since(origin);
        for input in inputs {
            match input {
                Input::Client { conn, mut caller, request } => {
                    caller.admin = cluster.is_admin(caller.uid, &caller.user);
                    let (fx, at_once) = client_request(
                        &mut cluster,
                        &store,
                        (&config, &disk),
                        conn,
                        &caller,
                        *request,
                        now,
                    );
                    if at_once { reads.append(fx) } else { effects.append(fx) }
                }
                Input::Say { conn, reply } => reads.to_client(conn, reply),
                Input::ClientGone { conn } => {
                    outs.remove(&conn);
                    effects.append(cluster.client_gone(conn, now));
                }
                Input::Agent { conn, node, msg } => {
                    effects.append(cluster.from_agent(conn, &node, msg, now, mono))
                }
                Input::AgentGone { conn } => {
                    outs.remove(&conn);
                    cluster.agent_gone(conn, now);
                }
                Input::Vouch { node, uid, answer } => {
                    let _ = answer.send(cluster.may_vouch(&node, uid));
                }
            }
        }
        effects.append(cluster.schedule(now));
        // Heartbeat acknowledgements report nothing stored: like read-only answers they leave at
        // once, so a slow or full disk never runs the agents' leases out (docs/cluster.md,
        // "Fencing").
        let (acks, effects) = effects
            .split_off(|e| matches!(e, Effect::ToAgentConn { msg: ToAgent::Ack { .. }, .. }));
        for e in reads.into_iter().chain(acks) {
            deliver(&mut outs, &cluster, e);
        }
        // Nothing that reports a change leaves before the change is on disk. A full disk holds
        // the changes and their effects (retried every tick) instead of stopping the controller.
        held.append(effects);
        if ticked {
            disk.tick();
        }
        if disk.commit(&mut store, cluster.take_dirty()) {
            for e in std::mem::take(&mut held) {
                deliver(&mut outs, &cluster, e);
            }
        }
    }
}

/// One client request: its effects, and whether they may leave at once (a read-only answer, or
/// a refusal: nothing changed) rather than after the next commit.
///
/// While a commit waits for disk space, a request that would change the state is refused with
/// exit code 119 instead of being carried out and held with its reply: what the controller holds
/// then grows only with what its agents report (bounded by the jobs they run), never with what
/// clients send. `done` still goes through (one per connection, which it closes).
fn client_request(
    cluster: &mut Cluster,
    store: &Store,
    (config, disk): (&Config, &Disk),
    conn: ConnId,
    caller: &Caller,
    request: Request,
    now: u64,
) -> (Effects, bool) {
    if let Some(reply) = refuse_submission(&request, config, disk) {
        return (Effects::reply_and_close(conn, reply), true);
    }
    let read_only = is_read_only(&request);
    if !read_only
        && !matches!(request, Request::Done { .. })
        && let Err(no_room) = disk.holding()
    {
        let reply = Reply::Error { code: exit_code::NO_NEW_WORK, message: no_room.to_string() };
        return (Effects::reply(conn, reply), true);
    }
    (handle_request(cluster, store, conn, caller, request, now), read_only)
}

/// Requests whose answer only reads the state (and may leave while a commit waits for space).
fn is_read_only(r: &Request) -> bool {
    matches!(
        r,
        Request::Queue
            | Request::History { .. }
            | Request::Nodes
            | Request::ShowJob { .. }
            | Request::ShowNode { .. }
    )
}

/// The refusal of a submission the controller cannot take: a script over `max_script_size`,
/// or no room on the state disk (exit code 119).
fn refuse_submission(request: &Request, config: &Config, disk: &Disk) -> Option<Reply> {
    let Request::Submit(sub) = request else { return None };
    if let Some(Err(message)) = sub.idempotency_key.as_deref().map(super::idempotency::check_key) {
        return Some(Reply::Error { code: exit_code::USAGE, message });
    }
    let script = sub.script.as_ref().map_or(0, |s| s.len() as u64);
    let max = config.limits.max_script_size;
    if script > max {
        return Some(Reply::Error {
            code: exit_code::USAGE,
            message: format!(
                "the script is {}, over this cluster's limit of {} (max_script_size in the controller's configuration); keep data in files the script reads",
                super::disk::human(script),
                super::disk::human(max)
            ),
        });
    }
    let incoming = serde_json::to_string(sub).map_or(0, |t| t.len() as u64);
    disk.admit(incoming)
        .err()
        .map(|e| Reply::Error { code: exit_code::NO_NEW_WORK, message: e.to_string() })
}

/// Sends one effect; a connection that cannot take it (its queue is full: it does not read)
/// is closed and forgotten, never waited for.
fn deliver(outs: &mut HashMap<ConnId, Outbox<Outbound>>, cluster: &Cluster, e: Effect) {
    let (conn, msg) = match e {
        Effect::ToClient { conn, reply } => (conn, Outbound::reply(&reply)),
        Effect::ToAgentConn { conn, msg } => (conn, Outbound::to_agent(&msg)),
        Effect::CloseClient { conn } | Effect::CloseAgent { conn } => (conn, Outbound::Close),
        Effect::ToAgent { node, msg } => match cluster.agent_conn(&node) {
            Some(conn) => (conn, Outbound::to_agent(&msg)),
            None => {
                tracing::debug!(%node, ?msg, "agent not connected; it resyncs when it registers");
                return;
            }
        },
    };
    if let Some(out) = outs.get(&conn) {
        let bytes = msg.bytes();
        if out.push(msg, bytes).is_err() {
            tracing::warn!(
                conn,
                queued = out.queued(),
                "disconnecting a connection that does not read what it is sent"
            );
            outs.remove(&conn);
        }
    }
}

fn handle_request(
    cluster: &mut Cluster,
    store: &Store,
    conn: ConnId,
    caller: &Caller,
    request: Request,
    now: u64,
) -> Effects {
    let reply = |r: Reply| Effects::reply(conn, r);
    match request {
        Request::Submit(sub) => cluster.submit(conn, caller, *sub, now),
        Request::Queue => reply(Reply::Jobs { jobs: cluster.queue() }),
        Request::History { limit } => reply(Reply::Jobs { jobs: cluster.history(limit) }),
        Request::Nodes => reply(Reply::Nodes { nodes: cluster.nodes(now) }),
        Request::ShowJob { id } => match cluster.job_info(id) {
            Some(mut info) => {
                match store.events_of(id) {
                    Ok(events) => info.events = events,
                    Err(e) => tracing::warn!(job = id, error = %e, "cannot read the job's events"),
                }
                reply(Reply::Job(Box::new(info)))
            }
            None => reply(Reply::Error {
                code: exit_code::FAILURE,
                message: format!("job {id} does not exist"),
            }),
        },
        Request::ShowNode { name } => match cluster.node_info(&name, now) {
            Some(info) => reply(Reply::Node(Box::new(info))),
            None => reply(Reply::Error {
                code: exit_code::FAILURE,
                message: format!("node '{name}' does not exist; see `gangway nodes`"),
            }),
        },
        Request::Cancel { ids, signal, user } => {
            let signal = match signal.as_deref().map(parse_signal).transpose() {
                Ok(s) => s,
                Err(message) => return reply(Reply::Error { code: exit_code::USAGE, message }),
            };
            cluster.cancel(conn, caller, &ids, signal, user.as_deref(), now)
        }
        Request::Hold { ids } => cluster.set_held(conn, caller, &ids, true, now),
        Request::Release { ids } => cluster.set_held(conn, caller, &ids, false, now),
        Request::Drain { nodes, reason } => {
            cluster.set_drain(conn, caller, &nodes, Some(reason), now)
        }
        Request::Resume { nodes } => cluster.set_drain(conn, caller, &nodes, None, now),
        Request::Step(step) => cluster.step(conn, caller, step, now),
        // Answered by the connection's task (the key stays out of the owner task's hands).
        Request::Token { .. } => Effects::new(),
        Request::Done { exit_code } => cluster.done(conn, exit_code, now),
    }
}

/// `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|sig| sig as i32)
            .map_err(|_| format!("--signal {s}: no such signal"));
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("--signal {s}: no such signal (e.g. TERM, USR1, 10)"))
}

fn bind_unix(path: &Path) -> Result<UnixListener, ServerError> {
    let listen_err = |source| ServerError::Listen { what: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(listen_err)?;
    }
    if path.exists() {
        // A socket someone answers on belongs to a live controller (another state dir).
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(listen_err(std::io::Error::other(
                "a controller already answers on this socket",
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(listen_err)?;
    // Anyone may talk to it: the peer's credentials say who they are.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    Ok(l)
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn caller_for(uid: u32, gid: u32) -> Caller {
    let user = user_name(uid);
    Caller { uid, gid, admin: false, user }
}

async fn serve_unix(conn: ConnId, stream: UnixStream, shared: Shared) {
    let Ok(cred) = stream.peer_cred() else { return };
    let caller = caller_for(cred.uid(), cred.gid());
    let (rd, mut wr) = stream.into_split();
    let Some(_slot) = user_slot(&shared, &caller, &mut wr).await else { return };
    let tokens = Some(shared.key.clone());
    serve_client(conn, caller, BufReader::new(rd), wr, shared, tokens).await;
}

/// The caller's place under the per-user connection limit, or `None` after telling it why not.
async fn user_slot<W: tokio::io::AsyncWrite + Unpin>(
    shared: &Shared,
    caller: &Caller,
    wr: &mut W,
) -> Option<limits::UserSlot> {
    let exempt = shared.exempt(caller.uid, &caller.user);
    match shared.gate.user(caller.uid, &caller.user, exempt) {
        Ok(slot) => Some(slot),
        Err(e) => {
            tracing::warn!(user = %caller.user, limit = e.limit, "connection refused: over the per-user limit");
            refuse(wr, exit_code::NO_NEW_WORK, &e.to_string()).await;
            None
        }
    }
}

/// Writes one error reply and closes (a connection that is refused before it is served).
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, code: u8, message: &str) {
    let reply = Reply::Error { code, message: message.to_string() };
    let mut line = serde_json::to_string(&reply).unwrap_or_default();
    line.push('\n');
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(line.as_bytes())).await;
    let _ = wr.shutdown().await;
}

/// Sends `input` to the owner, waiting while its queue is full (the back-pressure on a client
/// that floods requests); `false` if the connection must end instead.
async fn to_owner(shared: &Shared, closer: &mut Closer, input: Input) -> bool {
    tokio::select! {
        sent = shared.input.send(input) => sent.is_ok(),
        _ = closer.closed() => false,
    }
}

/// Writes a connection's outbound queue to `wr`, one JSON message per line, until the queue
/// ends or the owner closes the connection (also in the middle of a write that does not
/// progress: a client that does not read).
async fn write_lines<W>(mut wr: W, mut out: OutboxRx<Outbound>)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut closer = out.closer();
    while let Some(msg) = out.recv().await {
        match msg {
            Outbound::Message(mut line) => {
                line.push('\n');
                tokio::select! {
                    w = wr.write_all(line.as_bytes()) => if w.is_err() { return },
                    _ = closer.closed() => return,
                }
            }
            Outbound::Close => {
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
}

/// Serves a command's requests (one JSON line each) until it goes. `tokens`: the key, when
/// this caller may ask for a token.
async fn serve_client<R, W>(
    conn: ConnId,
    caller: Caller,
    mut rd: BufReader<R>,
    wr: W,
    shared: Shared,
    tokens: Option<Key>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let out = shared.outbox(conn);
    let mut closer = out.closer();
    let writer = tokio::spawn(write_lines(wr, out));
    let mut line = Vec::new();
    loop {
        let got = tokio::select! {
            got = read_line_bounded(&mut rd, &mut line, shared.request_bytes) => got,
            _ = closer.closed() => break,
        };
        match got {
            Ok(true) => {}
            Ok(false) | Err(LineError::Io(_)) => break,
            Err(LineError::TooLong { limit }) => {
                tracing::warn!(user = %caller.user, limit, "request over the size limit; closing the connection");
                let message = format!(
                    "the request is over this controller's limit of {} (max_script_size plus {} for the rest of a submission); the connection is closed",
                    super::disk::human(limit as u64),
                    super::disk::human(limits::ENVELOPE_BYTES as u64)
                );
                let reply = Reply::Error { code: exit_code::USAGE, message };
                if to_owner(&shared, &mut closer, Input::Say { conn, reply }).await {
                    // Read (and drop) the rest of the line, so that a client still sending it
                    // finishes and reads the answer; bounded in time, constant in memory.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), discard_line(&mut rd)).await;
                }
                break;
            }
        }
        let request: Request = match serde_json::from_slice(line.trim_ascii_end()) {
            Ok(r) => r,
            Err(e) => {
                let reply = Reply::Error {
                    code: exit_code::USAGE,
                    message: format!("malformed request: {e}"),
                };
                if !to_owner(&shared, &mut closer, Input::Say { conn, reply }).await {
                    break;
                }
                continue;
            }
        };
        if let Request::Token { valid_secs } = request {
            // Answered here: the key stays out of the owner task's hands.
            let reply = issue_token(tokens.as_ref(), &caller, valid_secs);
            if !to_owner(&shared, &mut closer, Input::Say { conn, reply }).await {
                break;
            }
            continue;
        }
        let input = Input::Client { conn, caller: caller.clone(), request: Box::new(request) };
        if !to_owner(&shared, &mut closer, input).await {
            break;
        }
    }
    let _ = shared.input.send(Input::ClientGone { conn }).await;
    let _ = writer.await;
}

/// The longest a token may be valid for.
pub const MAX_TOKEN_SECS: u64 = 366 * 86400;

/// A token for the caller, valid for `valid_secs`; `key` is `None` on links that may not ask.
fn issue_token(key: Option<&Key>, caller: &Caller, valid_secs: u64) -> Reply {
    let Some(key) = key else {
        return Reply::Error {
            code: exit_code::PERMISSION_DENIED,
            message: "a token cannot be renewed with a token (it would never expire); run `gangway token` on a cluster node or the controller's machine".into(),
        };
    };
    if valid_secs == 0 || valid_secs > MAX_TOKEN_SECS {
        return Reply::Error {
            code: exit_code::USAGE,
            message: format!(
                "--valid: a token is valid between 1 second and {} days",
                MAX_TOKEN_SECS / 86400
            ),
        };
    }
    let expiry = crate::auth::unix_now().saturating_add(valid_secs);
    Reply::Token { token: key.user_token(caller.uid, expiry).to_string(), expiry }
}

#[cfg(test)]
mod tests {
    use super::super::state::Dirty;
    use super::*;
    use crate::protocol::Submission;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "cluster = \"t\"\nstate_dir = \"{}\"\nkey_file = \"/nonexistent\"\nmin_free_space = \"0\"\nstate_reserve = \"0\"\n[[partition]]\nname = \"batch\"\nnodes = \"n[1-2]\"\ndefault = true\n",
            dir.display()
        );
        Config::parse(&text, Path::new("t.toml")).expect("config")
    }

    fn held_job() -> Request {
        let sub: Submission = serde_json::from_value(serde_json::json!({
            "kind": "batch", "name": "t", "shape": {
                "min_nodes": null, "max_nodes": null, "ntasks": null, "ntasks_per_node": null,
                "cpus_per_task": null, "mem_per_node": null, "mem_per_cpu": null,
                "gpus_per_task": null, "exclusive": false, "partition": null,
                "time_limit_secs": null, "nodelist": [], "exclude": []},
            "cwd": "/", "env": [], "script": "#!/bin/sh\ntrue\n", "command": "t",
            "output": null, "error": null, "requeue": true, "hold": true
        }))
        .expect("submission");
        Request::Submit(Box::new(sub))
    }

    fn is_119(fx: &Effects) -> bool {
        matches!(
            fx.first(),
            Some(Effect::ToClient { reply: Reply::Error { code: exit_code::NO_NEW_WORK, .. }, .. })
        )
    }

    /// A client that keeps sending requests while the state disk is full (here: 10,000 holds and
    /// releases) makes the controller hold nothing more: each is refused at once with 119.
    #[test]
    fn while_a_commit_waits_for_space_changes_are_refused_at_once_not_held() {
        let dir = tempfile::tempdir().expect("dir");
        let config = config(dir.path());
        let mut store = Store::open(dir.path()).expect("store");
        let mut disk = Disk::new(dir.path(), &config.limits);
        let mut cluster = Cluster::new(config.clone(), 0, Vec::new(), Vec::new(), 1, 0);
        let root = Caller { uid: 0, gid: 0, user: "root".into(), admin: true };
        let ask = |cluster: &mut Cluster, disk: &Disk, store: &Store, r: Request| {
            client_request(cluster, store, (&config, disk), 7, &root, r, 1)
        };
        let (fx, at_once) = ask(&mut cluster, &disk, &store, held_job());
        assert!(!at_once && !is_119(&fx), "{fx:?}");
        assert!(disk.commit(&mut store, cluster.take_dirty()));

        // The disk fills: a change cannot be committed, and is held with its reply.
        store.cap_pages(Some(0));
        let (fx, at_once) = ask(&mut cluster, &disk, &store, Request::Release { ids: vec![1] });
        assert!(!at_once, "the first change is taken, its reply held: {fx:?}");
        let mut dirty = cluster.take_dirty();
        dirty.events[0].detail = "x".repeat(64 << 10);
        assert!(!disk.commit(&mut store, dirty), "the database cannot grow");

        let mut held = Effects::new();
        for i in 0..10_000 {
            let ids = vec![1];
            let r = if i % 2 == 0 { Request::Hold { ids } } else { Request::Release { ids } };
            let (fx, at_once) = ask(&mut cluster, &disk, &store, r);
            assert!(at_once && is_119(&fx), "request {i}: {fx:?}");
            if !at_once {
                held.append(fx);
            }
        }
        assert!(held.is_empty());
        let dirty = cluster.take_dirty();
        assert!(dirty.jobs.is_empty() && dirty.events.is_empty(), "nothing changed: {dirty:?}");
        // Queries are still answered, and a submission is refused (and its connection closed).
        let (fx, at_once) = ask(&mut cluster, &disk, &store, Request::Queue);
        assert!(at_once && matches!(fx[..], [Effect::ToClient { reply: Reply::Jobs { .. }, .. }]));
        let (fx, at_once) = ask(&mut cluster, &disk, &store, held_job());
        assert!(at_once && is_119(&fx) && matches!(fx[1], Effect::CloseClient { conn: 7 }));

        // Space returns: the held change commits, and changes are taken again.
        store.cap_pages(None);
        assert!(disk.commit(&mut store, Dirty::default()));
        let (fx, at_once) = ask(&mut cluster, &disk, &store, Request::Hold { ids: vec![1] });
        assert!(!at_once && !is_119(&fx), "{fx:?}");
    }
}
