//! A minimal PMIx host, for tests and for trying an MPI program under the server before the
//! launcher integration: `gangway-pmix-host -n 4 [--timeout S] [--pmix-events-only] -- ./prog`.
//!
//! `--nodes K --node I --root SOCKET --nspace NAME` makes it one of K "nodes" of a job on this
//! machine (block layout): it starts only its own ranks and sends each fence's data to the
//! Unix socket SOCKET, whose owner (a test, playing the launcher's root) answers with every
//! node's data concatenated. That is the multi-node fence path, without a second machine.
//!
//! It owns the server's events the way the launcher's supervisor will: one task, a `select!`
//! over PMIx events, rank exits and a deadline. A rank that exits before finalize, aborts, or
//! is reported lost stops the job (every rank is killed). With `--pmix-events-only`, rank
//! exits are not used to decide that, so only PMIx's own view of the clients can stop a job
//! (what the lost-client test checks). Progress goes to stderr, prefixed `pmix-host:`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gangway_pmix::{Event, Namespace, Proc, Published, Server, Status};
use tokio::sync::mpsc::unbounded_channel;

struct Args {
    ranks: u32,
    timeout: Duration,
    pmix_events_only: bool,
    nodes: u32,
    node: u32,
    root: Option<PathBuf>,
    nspace: Option<String>,
    command: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        ranks: 1,
        timeout: Duration::from_secs(60),
        pmix_events_only: false,
        nodes: 1,
        node: 0,
        root: None,
        nspace: None,
        command: vec![],
    };
    let number = |v: Option<String>, what: &str| -> Result<u32, String> {
        v.and_then(|n| n.parse().ok()).ok_or(format!("{what} needs a number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => {
                out.ranks = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("-n needs a positive number of ranks")?
            }
            "--timeout" => {
                let s: u64 =
                    args.next().and_then(|n| n.parse().ok()).ok_or("--timeout needs seconds")?;
                out.timeout = Duration::from_secs(s);
            }
            "--pmix-events-only" => out.pmix_events_only = true,
            "--nodes" => out.nodes = number(args.next(), "--nodes")?.max(1),
            "--node" => out.node = number(args.next(), "--node")?,
            "--root" => out.root = Some(args.next().ok_or("--root needs a socket path")?.into()),
            "--nspace" => out.nspace = Some(args.next().ok_or("--nspace needs a name")?),
            "--" => {
                out.command = args.by_ref().collect();
                break;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !out.ranks.is_multiple_of(out.nodes) || out.node >= out.nodes {
        return Err("-n must be a multiple of --nodes, and --node less than --nodes".into());
    }
    if out.nodes > 1 && out.root.is_none() {
        return Err("--nodes needs --root".into());
    }
    if out.command.is_empty() {
        return Err(
            "usage: gangway-pmix-host -n N [--timeout S] [--pmix-events-only] -- prog args".into(),
        );
    }
    Ok(out)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if rc == 0 { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "localhost".into() }
}

/// How the job ended, the first reason that happened.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Aborted { rank: u32, status: i32 },
    Failed(String),
    TimedOut,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pmix-host: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pmix-host: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("gangway-pmix-host-{}", std::process::id()));
    let code = rt.block_on(run(args, dir.clone()));
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::from(code)
}

async fn run(args: Args, dir: PathBuf) -> u8 {
    let (server, mut events) = match Server::start(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pmix-host: {e}");
            return 2;
        }
    };
    let nspace =
        args.nspace.clone().unwrap_or_else(|| format!("gangway-host-{}", std::process::id()));
    let (nodes, per_node) = (args.nodes, args.ranks / args.nodes);
    // Distinct names for the pretend nodes: Open MPI must not think they share memory.
    let names = if nodes == 1 {
        vec![hostname()]
    } else {
        (0..nodes).map(|i| format!("{}-node{i}", hostname())).collect()
    };
    let rank_nodes = (0..args.ranks).map(|r| r / per_node).collect();
    let mut ns = Namespace::new(&nspace, names, rank_nodes, args.node);
    ns.session_dir = Some(dir.join("session"));
    let mut root = match &args.root {
        Some(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => Some(Root::new(stream)),
            Err(e) => {
                eprintln!("pmix-host: cannot reach the root at {}: {e}", path.display());
                return 2;
            }
        },
        None => None,
    };
    if let Err(e) = server.register_namespace(&ns) {
        eprintln!("pmix-host: {e}");
        return 2;
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let (exit_tx, mut exits) = unbounded_channel();
    let mut pids = Vec::new();
    for rank in ns.local_ranks() {
        let proc = Proc::new(&nspace, rank);
        let env = server.register_client(&proc, uid, gid).and_then(|()| server.setup_fork(&proc));
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                eprintln!("pmix-host: rank {rank}: {e}");
                kill_all(&pids);
                return 2;
            }
        };
        let mut cmd = tokio::process::Command::new(&args.command[0]);
        cmd.args(&args.command[1..]).envs(env).process_group(0).kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("pmix-host: cannot start {}: {e}", args.command[0]);
                kill_all(&pids);
                return 2;
            }
        };
        pids.extend(child.id());
        let tx = exit_tx.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send((rank, status));
        });
    }
    let mut host = Host { finalized: vec![false; args.ranks as usize], ..Host::default() };
    let mut statuses: HashMap<u32, String> = HashMap::new();
    let deadline = tokio::time::sleep(args.timeout);
    tokio::pin!(deadline);
    let mut dmodex_checked = false;
    while statuses.len() < pids.len() {
        tokio::select! {
            Some(ev) = events.recv() => {
                let ev = match (ev, &mut root) {
                    (Event::Fence { procs, collect_data, data, reply, .. }, Some(root)) => {
                        eprintln!(
                            "pmix-host: fence of {} proc(s), collect={collect_data}, {} bytes, to the root",
                            procs.len(),
                            data.len()
                        );
                        if let Err(e) = root.fence_up(data, reply).await {
                            host.end.get_or_insert(End::Failed(format!("the root is gone: {e}")));
                            kill_all(&pids);
                        }
                        continue;
                    }
                    (ev, _) => ev,
                };
                if host.handle(ev) {
                    kill_all(&pids);
                }
            }
            Some(frame) = async { root.as_mut()?.frames.recv().await }, if root.is_some() => {
                let done = root.as_mut().map(|r| r.fence_down(frame));
                if let Some(Err(e)) = done {
                    host.end.get_or_insert(End::Failed(format!("the root is gone: {e}")));
                    kill_all(&pids);
                    root = None;
                } else if !dmodex_checked {
                    // What a remote node's direct-modex request would be answered with: the
                    // blob of this node's first rank, which it put before the fence.
                    dmodex_checked = true;
                    check_dmodex(&server, Proc::new(&nspace, ns.local_ranks()[0]));
                }
            }
            Some((rank, status)) = exits.recv() => {
                let ok = matches!(&status, Ok(s) if s.success());
                let text = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("unknown ({e})"),
                };
                eprintln!("pmix-host: rank {rank} exited: {text}");
                statuses.insert(rank, text.clone());
                let early = !host.finalized[rank as usize] || !ok;
                if early && !args.pmix_events_only && host.end.is_none() {
                    host.end = Some(End::Failed(format!("rank {rank} ended ({text}) without finalize")));
                    kill_all(&pids);
                }
            }
            () = &mut deadline, if host.end != Some(End::TimedOut) => {
                host.end.get_or_insert(End::TimedOut);
                kill_all(&pids);
            }
        }
    }
    // Drop the finalized job before the server goes.
    let _ = server.deregister_namespace(&nspace);
    if let Err(e) = server.finalize() {
        eprintln!("pmix-host: {e}");
    }
    match host.end {
        None => {
            eprintln!("pmix-host: job ended: all {} ranks finalized and exited", pids.len());
            0
        }
        Some(End::Aborted { rank, status }) => {
            eprintln!("pmix-host: job ended: rank {rank} called abort with status {status}");
            u8::try_from(status).unwrap_or(1).max(1)
        }
        Some(End::Failed(why)) => {
            eprintln!("pmix-host: job ended: {why}");
            1
        }
        Some(End::TimedOut) => {
            eprintln!("pmix-host: job ended: timed out");
            124
        }
    }
}

/// This node's link to the root (`--root`): each fence's data goes up as one frame, and the
/// root's frame with every node's data comes down and answers the oldest waiting fence.
/// Frames: one kind byte (1 up, 2 down), a little-endian u32 length, the bytes. A reader task
/// owns the receiving half, so a frame is never cut in two by the select loop.
struct Root {
    writer: tokio::net::unix::OwnedWriteHalf,
    frames: tokio::sync::mpsc::UnboundedReceiver<std::io::Result<Vec<u8>>>,
    waiting: std::collections::VecDeque<gangway_pmix::ModexReply>,
}

impl Root {
    fn new(stream: tokio::net::UnixStream) -> Root {
        let (mut reader, writer) = stream.into_split();
        let (tx, frames) = unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            loop {
                let mut head = [0u8; 5];
                let frame = async {
                    reader.read_exact(&mut head).await?;
                    if head[0] != 2 {
                        return Err(std::io::Error::other("unexpected frame from the root"));
                    }
                    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    let mut data = vec![0u8; len];
                    reader.read_exact(&mut data).await?;
                    Ok(data)
                }
                .await;
                let failed = frame.is_err();
                if tx.send(frame).is_err() || failed {
                    return;
                }
            }
        });
        Root { writer, frames, waiting: Default::default() }
    }

    async fn fence_up(
        &mut self,
        data: Vec<u8>,
        reply: gangway_pmix::ModexReply,
    ) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
        let mut frame = vec![1u8];
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&data);
        self.waiting.push_back(reply);
        self.writer.write_all(&frame).await
    }

    /// Answers the oldest waiting fence with a frame from the root.
    fn fence_down(&mut self, frame: std::io::Result<Vec<u8>>) -> std::io::Result<()> {
        let data = frame?;
        let reply =
            self.waiting.pop_front().ok_or(std::io::Error::other("a fence nobody entered"))?;
        eprintln!("pmix-host: fence released with {} bytes from every node", data.len());
        reply.data(data);
        Ok(())
    }
}

fn check_dmodex(server: &Server, proc: Proc) {
    match server.dmodex_request(&proc) {
        Ok(answer) => {
            tokio::spawn(async move {
                match answer.await {
                    Ok(Ok(blob)) => {
                        eprintln!("pmix-host: direct modex of {proc}: {} bytes", blob.len())
                    }
                    Ok(Err(status)) => {
                        eprintln!("pmix-host: direct modex of {proc} failed: {status}")
                    }
                    Err(_) => eprintln!("pmix-host: direct modex of {proc}: no answer"),
                }
            });
        }
        Err(e) => eprintln!("pmix-host: {e}"),
    }
}

fn kill_all(pids: &[u32]) {
    for &pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: signalling a process group we created; a gone group is harmless (ESRCH).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

#[derive(Default)]
struct Host {
    finalized: Vec<bool>,
    end: Option<End>,
    published: HashMap<String, Published>,
    waiting_lookups: Vec<(Vec<String>, gangway_pmix::LookupReply)>,
}

impl Host {
    /// Handles one event; true when the job must be stopped.
    fn handle(&mut self, ev: Event) -> bool {
        match ev {
            Event::ClientConnected { proc } => eprintln!("pmix-host: connected {proc}"),
            Event::ClientFinalized { proc, reply } => {
                eprintln!("pmix-host: finalized {proc}");
                if let Some(f) = self.finalized.get_mut(proc.rank as usize) {
                    *f = true;
                }
                reply.ok();
            }
            Event::ClientLost { proc } => {
                eprintln!("pmix-host: client lost {proc}");
                let finalized = self.finalized.get(proc.rank as usize).copied().unwrap_or(true);
                if !finalized && self.end.is_none() {
                    self.end = Some(End::Failed(format!(
                        "PMIx lost rank {} before it finalized",
                        proc.rank
                    )));
                    return true;
                }
            }
            Event::Abort { proc, status, message, reply, .. } => {
                eprintln!("pmix-host: abort from {proc}: status {status}, {message:?}");
                reply.ok();
                if self.end.is_none() {
                    self.end = Some(End::Aborted { rank: proc.rank, status });
                }
                return true;
            }
            Event::Fence { procs, collect_data, local_status, data, reply } => {
                eprintln!(
                    "pmix-host: fence of {} proc(s), collect={collect_data}, {} bytes, local status {}",
                    procs.len(),
                    data.len(),
                    local_status
                );
                // One node: this node's contribution is everyone's.
                reply.data(data);
            }
            Event::DirectModex { proc, reply } => {
                eprintln!("pmix-host: direct modex for {proc}: not found (single node)");
                reply.fail(Status::NOT_FOUND);
            }
            Event::Publish { proc, data, reply, .. } => {
                if data.iter().any(|d| self.published.contains_key(&d.key)) {
                    reply.fail(Status::BAD_PARAM);
                } else {
                    for d in data {
                        eprintln!("pmix-host: {proc} published {}", d.key);
                        let p = Published {
                            publisher: proc.clone(),
                            key: d.key.clone(),
                            value: d.value,
                        };
                        self.published.insert(d.key, p);
                    }
                    reply.ok();
                    self.retry_lookups();
                }
            }
            Event::Lookup { keys, wait, reply, .. } => {
                let found: Vec<Published> =
                    keys.iter().filter_map(|k| self.published.get(k).cloned()).collect();
                if wait && found.len() < keys.len() {
                    self.waiting_lookups.push((keys, reply));
                } else {
                    reply.found(found);
                }
            }
            Event::Unpublish { proc, keys, reply } => {
                let before = self.published.len();
                self.published
                    .retain(|k, p| p.publisher != proc || !(keys.is_empty() || keys.contains(k)));
                if self.published.len() < before {
                    reply.ok()
                } else {
                    reply.fail(Status::NOT_FOUND)
                }
            }
            Event::SpawnRefused { proc, commands } => eprintln!(
                "pmix-host: {proc} asked to spawn {commands:?}: MPI_Comm_spawn is not supported"
            ),
        }
        false
    }

    fn retry_lookups(&mut self) {
        let waiting = std::mem::take(&mut self.waiting_lookups);
        for (keys, reply) in waiting {
            if keys.iter().all(|k| self.published.contains_key(k)) {
                let found = keys.iter().filter_map(|k| self.published.get(k).cloned()).collect();
                reply.found(found);
            } else {
                self.waiting_lookups.push((keys, reply));
            }
        }
    }
}
