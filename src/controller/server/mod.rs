//! The controller's I/O: the state-directory lock, the local socket and the TCP port, one task
//! per connection, and the one task that owns the [`Cluster`] and the [`Store`]. Messages that
//! arrive together are handled together and committed in one transaction before any reply.
//! The TCP port's encrypted links (agents, users' tokens, vouched sessions) are in `links`;
//! a command's connection in `clients`; a request's dispatch to the handlers in `requests`;
//! what the tasks exchange in `peers`.

mod clients;
mod links;
mod peers;
mod requests;

pub use clients::MAX_TOKEN_SECS;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gangway_link::accept;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc::{self, unbounded_channel};

use super::config::Config;
use super::disk::Disk;
use super::effects::{ConnId, Effect, Effects};
use super::limits::{self, Gate, INPUT_QUEUE, Outbox};
use super::state::{Cluster, Mono};
use super::store::{Store, StoreError};
use crate::auth::{AuthError, Key};
use crate::protocol::ToAgent;
use clients::serve_unix;
use peers::{Encoded, Input, NewOutbox, Outbound, Shared, ToAgentConn, ToClient};
use requests::client_request;

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
    #[error("cannot catch SIGHUP (which reloads the scheduling policy): {source}")]
    Signal {
        #[source]
        source: std::io::Error,
    },
}

/// Limits how many messages one pass takes before committing, so replies never wait long.
const BATCH: usize = 1024;

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
    // Fair share remembers past usage across restarts (decayed from when it was stored).
    cluster.restore_usage(&store.load_usage()?);
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
    let (outboxes_tx, mut outboxes_rx) = unbounded_channel::<NewOutbox>();
    let shared = Shared {
        key: key.clone(),
        input: input_tx,
        outboxes: outboxes_tx,
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

    let mut outs = Outboxes::default();
    // Replies and agent messages whose changes are not on disk yet (the state disk is full).
    let mut held = Effects::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // SIGHUP reloads the scheduling policy, as `gangway reconfigure` does.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| ServerError::Signal { source })?;
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
            Some(()) = hangups.recv() => {
                let loaded = Config::load(&config.path).map_err(|e| e.to_string());
                match cluster.reload(loaded, "SIGHUP", now_ms()) {
                    Ok(message) => tracing::info!(%message, "reconfigured on SIGHUP"),
                    Err(message) => tracing::error!(%message, "SIGHUP: reconfiguration refused"),
                }
            }
        }
        while inputs.len() < BATCH {
            match input_rx.try_recv() {
                Ok(i) => inputs.push(i),
                Err(_) => break,
            }
        }
        while let Ok(new) = outboxes_rx.try_recv() {
            outs.add(new);
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
                    outs.clients.remove(&conn);
                    effects.append(cluster.client_gone(conn, now));
                }
                Input::Agent { conn, node, msg } => {
                    effects.append(cluster.from_agent(conn, &node, msg, now, mono))
                }
                Input::AgentGone { conn } => {
                    outs.agents.remove(&conn);
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
            outs.deliver(&cluster, e);
        }
        // Nothing that reports a change leaves before the change is on disk. A full disk holds
        // the changes and their effects (retried every tick) instead of stopping the controller.
        held.append(effects);
        if ticked {
            disk.tick();
        }
        if disk.commit(&mut store, cluster.take_dirty()) {
            for e in std::mem::take(&mut held) {
                outs.deliver(&cluster, e);
            }
        }
    }
}

/// The outbound queues of the connections the owner knows, one map per kind of peer.
#[derive(Debug, Default)]
struct Outboxes {
    clients: HashMap<ConnId, Outbox<ToClient>>,
    agents: HashMap<ConnId, Outbox<ToAgentConn>>,
}

impl Outboxes {
    fn add(&mut self, new: NewOutbox) {
        match new {
            NewOutbox::Client(conn, tx) => self.clients.insert(conn, tx).map(drop),
            NewOutbox::Agent(conn, tx) => self.agents.insert(conn, tx).map(drop),
        };
    }

    /// Sends one effect; a connection that cannot take it (its queue is full: it does not
    /// read) is closed and forgotten, never waited for.
    fn deliver(&mut self, cluster: &Cluster, e: Effect) {
        match e {
            Effect::ToClient { conn, reply } => {
                push(&mut self.clients, conn, Outbound::Message(Encoded::new(&reply)))
            }
            Effect::CloseClient { conn } => push(&mut self.clients, conn, Outbound::Close),
            Effect::ToAgentConn { conn, msg } => {
                push(&mut self.agents, conn, Outbound::Message(Encoded::new(&msg)))
            }
            Effect::CloseAgent { conn } => push(&mut self.agents, conn, Outbound::Close),
            Effect::Mail { to, subject } => {
                if let Some(program) = &cluster.config().mail_program {
                    crate::controller::mail::send(program, to, subject);
                }
            }
            Effect::ToAgent { node, msg } => match cluster.agent_conn(&node) {
                Some(conn) => push(&mut self.agents, conn, Outbound::Message(Encoded::new(&msg))),
                None => {
                    tracing::debug!(%node, ?msg, "agent not connected; it resyncs when it registers")
                }
            },
        }
    }
}

/// Queues `msg` for `conn`, or forgets a connection whose queue is full.
fn push<M>(outs: &mut HashMap<ConnId, Outbox<Outbound<M>>>, conn: ConnId, msg: Outbound<M>) {
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
