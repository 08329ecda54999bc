//! The controller's I/O: the state-directory lock, the local socket and the TCP port, one task
//! per connection, and the one task that owns the [`Cluster`] and the [`Store`]. Messages that
//! arrive together are handled together and committed in one transaction before any reply.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::cluster::{Caller, Cluster, ConnId, Effect};
use super::config::Config;
use super::store::{Store, StoreError};
use crate::auth::{AuthError, Key, Session, TokenSubject};
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
    Client { conn: ConnId, caller: Caller, request: Box<Request> },
    ClientGone { conn: ConnId },
    Agent { conn: ConnId, node: String, msg: FromAgent },
    AgentGone { conn: ConnId },
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
                tokio::spawn(serve_tcp(
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
                    if let Some(job) = caller.job.and_then(|j| cluster.job(j)) {
                        caller.uid = job.uid;
                        caller.gid = job.gid;
                        caller.user = job.user.clone();
                    }
                    caller.admin =
                        caller.job.is_none() && cluster.is_admin(caller.uid, &caller.user);
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
        Request::Token => match caller.job {
            Some(_) => reply(Reply::Error {
                code: exit_code::PERMISSION_DENIED,
                message: "a job token cannot ask for a user token".into(),
            }),
            None => Vec::new(),
        },
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

fn caller_for(uid: u32, gid: u32, job: Option<crate::protocol::JobId>) -> Caller {
    let user = user_name(uid);
    Caller { uid, gid, admin: false, user, job }
}

async fn serve_unix(
    conn: ConnId,
    stream: UnixStream,
    key: Key,
    input: UnboundedSender<Input>,
    reg: UnboundedSender<(ConnId, UnboundedSender<Outbound>)>,
) {
    let Ok(cred) = stream.peer_cred() else { return };
    let caller = caller_for(cred.uid(), cred.gid(), None);
    let (rd, wr) = stream.into_split();
    serve_client(conn, caller, BufReader::new(rd), wr, input, reg, key).await;
}

async fn serve_tcp(
    conn: ConnId,
    stream: TcpStream,
    key: Key,
    input: UnboundedSender<Input>,
    reg: UnboundedSender<(ConnId, UnboundedSender<Outbound>)>,
) {
    let peer = stream.peer_addr().ok();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut first = String::new();
    match tokio::time::timeout(Duration::from_secs(10), rd.read_line(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let first = first.trim_end();
    if let Some(nonce) = first.strip_prefix("AGENT ") {
        serve_agent(conn, nonce.to_string(), rd, wr, key, input, reg).await;
        return;
    }
    let Some(token) = first.strip_prefix("TOKEN ") else {
        let _ = wr
            .write_all(
                b"{\"error\":{\"code\":116,\"message\":\"expected TOKEN or AGENT first\"}}\n",
            )
            .await;
        return;
    };
    let caller = match key.check_token(token) {
        Some(TokenSubject::User(uid)) => {
            let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.gid.as_raw())
                .unwrap_or(uid);
            caller_for(uid, gid, None)
        }
        Some(TokenSubject::Job(job)) => {
            // The job's owner, limited to that job; the owner task fills in uid/gid.
            Caller {
                uid: u32::MAX,
                gid: u32::MAX,
                user: String::new(),
                admin: false,
                job: Some(job),
            }
        }
        None => {
            tracing::warn!(?peer, "client with a bad token");
            let reply = Reply::Error { code: exit_code::NO_CONTROLLER, message: "the controller refused the token (GANGWAY_TOKEN): ask `gangway token` on the controller's machine for yours".into() };
            let mut line = serde_json::to_string(&reply).unwrap_or_default();
            line.push('\n');
            let _ = wr.write_all(line.as_bytes()).await;
            return;
        }
    };
    serve_client(conn, caller, rd, wr, input, reg, key).await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_client<R, W>(
    conn: ConnId,
    caller: Caller,
    mut rd: BufReader<R>,
    mut wr: W,
    input: UnboundedSender<Input>,
    reg: UnboundedSender<(ConnId, UnboundedSender<Outbound>)>,
    key: Key,
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
        if let Request::Token = request
            && caller.job.is_none()
        {
            // Answered here: the key stays out of the owner task's hands.
            let token = key.user_token(caller.uid);
            let _ = tx.send(Outbound::Reply(Reply::Token { token }));
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

async fn serve_agent<R, W>(
    conn: ConnId,
    agent_nonce: String,
    mut rd: BufReader<R>,
    mut wr: W,
    key: Key,
    input: UnboundedSender<Input>,
    reg: UnboundedSender<(ConnId, UnboundedSender<Outbound>)>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mine = crate::auth::nonce();
    if wr.write_all(format!("CONTROLLER {mine}\n").as_bytes()).await.is_err() {
        return;
    }
    let mut recv = Session::controller(key.clone(), &agent_nonce, &mine);
    let mut sendr = Session::controller(key, &agent_nonce, &mine);
    let mut line = String::new();
    // The first message must be a registration that authenticates.
    match tokio::time::timeout(Duration::from_secs(10), rd.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let node = match recv.open(line.trim_end()).map(serde_json::from_str::<FromAgent>) {
        Ok(Ok(FromAgent::Register(r))) => {
            let name = r.name.clone();
            let (tx, mut rx) = unbounded_channel::<Outbound>();
            let _ = reg.send((conn, tx));
            if input
                .send(Input::Agent { conn, node: name.clone(), msg: FromAgent::Register(r) })
                .is_err()
            {
                return;
            }
            tokio::spawn(async move {
                while let Some(out) = rx.recv().await {
                    match out {
                        Outbound::ToAgent(m) => {
                            let body = serde_json::to_string(&m).unwrap_or_default();
                            let mut line = sendr.seal(&body);
                            line.push('\n');
                            if wr.write_all(line.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Outbound::Close => {
                            let _ = wr.shutdown().await;
                            return;
                        }
                        Outbound::Reply(_) => {}
                    }
                }
            });
            name
        }
        Ok(_) => {
            let _ = wr.write_all(b"ERROR the first message must be a registration\n").await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "agent refused");
            let _ = wr.write_all(format!("ERROR {e}\n").as_bytes()).await;
            return;
        }
    };
    loop {
        line.clear();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match recv.open(line.trim_end()).map(serde_json::from_str::<FromAgent>) {
            Ok(Ok(msg)) => {
                if input.send(Input::Agent { conn, node: node.clone(), msg }).is_err() {
                    break;
                }
            }
            Ok(Err(e)) => tracing::warn!(%node, error = %e, "malformed agent message ignored"),
            Err(e) => {
                tracing::warn!(%node, error = %e, "agent message failed authentication; dropping the connection");
                break;
            }
        }
    }
    let _ = input.send(Input::AgentGone { conn });
}
