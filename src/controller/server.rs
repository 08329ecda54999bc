//! The controller's I/O: the state-directory lock, the local socket and the TCP port, one task
//! per connection, and the one task that owns the [`Cluster`] and the [`Store`]. Messages that
//! arrive together are handled together and committed in one transaction before any reply.
//! The TCP port's encrypted links (agents, users' tokens, vouched sessions) are in [`links`].

mod links;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::cluster::{Caller, Cluster, ConnId, Effect};
use super::config::Config;
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

/// What a connection task sends out.
#[derive(Debug)]
enum Outbound {
    Reply(Reply),
    ToAgent(ToAgent),
    Close,
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
    tracing::info!(socket = %config.socket.display(), listen = %config.listen, "listening");
    ready(&config);

    let (input_tx, mut input_rx) = unbounded_channel::<Input>();
    let (reg_tx, mut reg_rx) = unbounded_channel::<(ConnId, UnboundedSender<Outbound>)>();
    let ids = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    {
        let (input_tx, reg_tx, ids, key) =
            (input_tx.clone(), reg_tx.clone(), ids.clone(), key.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = unix.accept().await {
                let conn = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(serve_unix(
                    conn,
                    stream,
                    key.clone(),
                    input_tx.clone(),
                    reg_tx.clone(),
                ));
            }
        });
    }
    {
        let (input_tx, reg_tx, ids, key) =
            (input_tx.clone(), reg_tx.clone(), ids.clone(), key.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let conn = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                tokio::spawn(links::serve_tcp(
                    conn,
                    stream,
                    key.clone(),
                    input_tx.clone(),
                    reg_tx.clone(),
                ));
            }
        });
    }
    drop(input_tx);

    let mut outs: HashMap<ConnId, UnboundedSender<Outbound>> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut effects: Vec<Effect> = Vec::new();
        let mut inputs = Vec::new();
        tokio::select! {
            Some(i) = input_rx.recv() => inputs.push(i),
            _ = ticker.tick() => effects.extend(cluster.tick(now_ms())),
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
        for input in inputs {
            match input {
                Input::Client { conn, mut caller, request } => {
                    caller.admin = cluster.is_admin(caller.uid, &caller.user);
                    effects.extend(handle_request(
                        &mut cluster,
                        &store,
                        conn,
                        &caller,
                        *request,
                        now,
                    ))
                }
                Input::ClientGone { conn } => {
                    outs.remove(&conn);
                    effects.extend(cluster.client_gone(conn, now));
                }
                Input::Agent { conn, node, msg } => {
                    effects.extend(cluster.from_agent(conn, &node, msg, now))
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
        effects.extend(cluster.schedule(now));
        // Nothing leaves before what it reports is on disk.
        let dirty = cluster.take_dirty();
        if let Err(e) = store.write(&dirty) {
            tracing::error!(error = %e, "cannot commit; stopping so that no reply claims an unsaved change");
            return Err(e.into());
        }
        for e in effects {
            match e {
                Effect::ToClient { conn, reply } => send(&outs, conn, Outbound::Reply(reply)),
                Effect::ToAgentConn { conn, msg } => send(&outs, conn, Outbound::ToAgent(msg)),
                Effect::CloseClient { conn } | Effect::CloseAgent { conn } => {
                    send(&outs, conn, Outbound::Close)
                }
                Effect::ToAgent { node, msg } => match cluster.agent_conn(&node) {
                    Some(conn) => send(&outs, conn, Outbound::ToAgent(msg)),
                    None => {
                        tracing::debug!(%node, ?msg, "agent not connected; it resyncs when it registers")
                    }
                },
            }
        }
    }
}

fn send(outs: &HashMap<ConnId, UnboundedSender<Outbound>>, conn: ConnId, msg: Outbound) {
    if let Some(tx) = outs.get(&conn) {
        let _ = tx.send(msg);
    }
}

fn handle_request(
    cluster: &mut Cluster,
    store: &Store,
    conn: ConnId,
    caller: &Caller,
    request: Request,
    now: u64,
) -> Vec<Effect> {
    let reply = |r: Reply| vec![Effect::ToClient { conn, reply: r }];
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
            let (r, mut fx) = cluster.cancel(caller, &ids, signal, user.as_deref(), now);
            fx.push(Effect::ToClient { conn, reply: r });
            fx
        }
        Request::Hold { ids } => reply(cluster.set_held(caller, &ids, true, now)),
        Request::Release { ids } => reply(cluster.set_held(caller, &ids, false, now)),
        Request::Drain { nodes, reason } => {
            reply(cluster.set_drain(caller, &nodes, Some(reason), now))
        }
        Request::Resume { nodes } => reply(cluster.set_drain(caller, &nodes, None, now)),
        Request::Step(step) => cluster.step(conn, caller, step, now),
        // Answered by the connection's task (the key stays out of the owner task's hands).
        Request::Token { .. } => Vec::new(),
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

async fn serve_unix(
    conn: ConnId,
    stream: UnixStream,
    key: Key,
    input: UnboundedSender<Input>,
    reg: UnboundedSender<(ConnId, UnboundedSender<Outbound>)>,
) {
    let Ok(cred) = stream.peer_cred() else { return };
    let caller = caller_for(cred.uid(), cred.gid());
    let (rd, wr) = stream.into_split();
    serve_client(conn, caller, BufReader::new(rd), wr, input, reg, Some(key)).await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_client<R, W>(
    conn: ConnId,
    caller: Caller,
    mut rd: BufReader<R>,
    mut wr: W,
    input: UnboundedSender<Input>,
    reg: UnboundedSender<(ConnId, UnboundedSender<Outbound>)>,
    tokens: Option<Key>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = unbounded_channel::<Outbound>();
    let _ = reg.send((conn, tx.clone()));
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Outbound::Reply(r) => {
                    let mut line = serde_json::to_string(&r).unwrap_or_default();
                    line.push('\n');
                    if wr.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Outbound::Close => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Outbound::ToAgent(_) => {}
            }
        }
    });
    let mut line = String::new();
    loop {
        line.clear();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let request: Request = match serde_json::from_str(line.trim_end()) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Outbound::Reply(Reply::Error {
                    code: exit_code::USAGE,
                    message: format!("malformed request: {e}"),
                }));
                continue;
            }
        };
        if let Request::Token { valid_secs } = request {
            // Answered here: the key stays out of the owner task's hands.
            let _ = tx.send(Outbound::Reply(issue_token(tokens.as_ref(), &caller, valid_secs)));
            continue;
        }
        if input
            .send(Input::Client { conn, caller: caller.clone(), request: Box::new(request) })
            .is_err()
        {
            break;
        }
    }
    let _ = input.send(Input::ClientGone { conn });
    drop(tx);
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
