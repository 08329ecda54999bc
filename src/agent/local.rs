//! The agent's local socket (default `<spool>/agent.sock`): any user of this node may connect;
//! the kernel says who they are (`SO_PEERCRED`), and the agent relays their session to the
//! controller over a new encrypted link that vouches for them (`VOUCH <node>`, then their uid
//! and gid). Jobs get this socket as `GANGWAY_CONTROLLER`, so `gangway run`, `batch`, `queue` or
//! `cancel` inside a job reach the controller as the job's user, with no secret in the job's
//! environment, as munge lets Slurm's commands do.
//!
//! Each connection holds a descriptor here and a link to the controller; a user may hold at most
//! `--max-connections-per-user` of them at once ([`Slots`]), so one user cannot run the agent out
//! of descriptors for everyone else. Root is not counted (it holds the cluster key anyway).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use super::process;
use crate::auth::Key;
use crate::exit_code;
use crate::protocol::wire::{self, Preamble, Vouch};
use crate::protocol::{JobId, Reply};

/// The largest request line relayed (a batch script's text travels in one).
pub const LINE_MAX: usize = gangway_link::DEFAULT_MESSAGE_LIMIT;

/// What the relay needs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub controller: String,
    pub key: Key,
    pub node: String,
    /// Open connections one user may hold (`--max-connections-per-user`; 0: no limit).
    pub max_per_user: usize,
}

/// The default of `gangway agent --max-connections-per-user`, the controller's default too.
pub const DEFAULT_MAX_PER_USER: usize = 128;

/// Open local connections per uid, and the limit.
#[derive(Debug, Clone)]
pub struct Slots {
    open: Arc<Mutex<HashMap<u32, usize>>>,
    limit: usize,
}

/// A connection's place under its user's limit; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Slots,
    uid: Option<u32>,
}

impl Slots {
    pub fn new(limit: usize) -> Slots {
        Slots { open: Arc::default(), limit }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, usize>> {
        // Nothing panics while holding it; a poisoned lock still holds consistent counts.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more connection of `uid`, or how many it holds already (at the limit).
    pub fn take(&self, uid: u32) -> Result<Slot, usize> {
        if uid == 0 || self.limit == 0 {
            return Ok(Slot { slots: self.clone(), uid: None });
        }
        let mut open = self.lock();
        let n = open.entry(uid).or_default();
        if *n >= self.limit {
            return Err(*n);
        }
        *n += 1;
        Ok(Slot { slots: self.clone(), uid: Some(uid) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(uid) = self.uid else { return };
        let mut open = self.slots.lock();
        if let Some(n) = open.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&uid);
            }
        }
    }
}

/// A question for the agent's owner task: which job, if any, has this session?
#[derive(Debug)]
pub struct JobQuery {
    pub sid: u32,
    pub answer: oneshot::Sender<Option<JobId>>,
}

/// Listens on `path`, replacing a stale socket but never a live one (another agent's).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        // Users must reach the socket by name; they need not list the directory.
        let mode = std::fs::metadata(dir)?.permissions().mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::other("another agent already answers on this socket"));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    // Anyone may connect: the kernel's word on who they are is what gets vouched for.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Serves the socket for as long as the agent lives.
pub async fn serve(listener: UnixListener, opts: LocalOptions, jobs: UnboundedSender<JobQuery>) {
    let slots = Slots::new(opts.max_per_user);
    let opts = Arc::new(opts);
    gangway_link::accept::serve(listener, "agent socket", move |stream| {
        let (opts, jobs, slots) = (opts.clone(), jobs.clone(), slots.clone());
        tokio::spawn(async move { relay(stream, &opts, &jobs, &slots).await });
    })
    .await;
}

/// Relays one local session to the controller, or answers why it cannot.
async fn relay(
    mut stream: UnixStream,
    opts: &LocalOptions,
    jobs: &UnboundedSender<JobQuery>,
    slots: &Slots,
) {
    let Ok(cred) = stream.peer_cred() else { return };
    let (uid, gid) = (cred.uid(), cred.gid());
    // Held until the session ends: counted from before the controller is even called.
    let _slot = match slots.take(uid) {
        Ok(slot) => slot,
        Err(open) => {
            refuse(&mut stream, exit_code::NO_NEW_WORK, too_many(uid, open, opts)).await;
            return;
        }
    };
    let me = nix::unistd::geteuid();
    if !me.is_root() && uid != me.as_raw() {
        // A non-root agent runs every job as itself: speaking for another user would hand them
        // this agent's uid.
        let message = format!(
            "the agent of {} does not run as root, so it speaks only for uid {me}, not {uid}",
            opts.node
        );
        refuse(&mut stream, exit_code::PERMISSION_DENIED, message).await;
        return;
    }
    let pid = cred.pid().unwrap_or(0);
    let job = job_of(pid, jobs).await;
    let link = async {
        let mut tcp = TcpStream::connect(&opts.controller).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let preamble = Preamble::Vouch { node: opts.node.clone() };
        let (mut sealer, opener) =
            wire::initiate(&mut tcp, &preamble, &opts.key).await.map_err(|e| e.to_string())?;
        let vouch = Vouch { uid, gid, pid, job };
        wire::send(&mut tcp, &mut sealer, &vouch).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((tcp, sealer, opener))
    };
    let (tcp, sealer, opener) = match tokio::time::timeout(Duration::from_secs(10), link).await {
        Ok(Ok(l)) => l,
        Ok(Err(why)) => {
            let message = format!(
                "the agent of {} cannot reach the controller at {}: {why}",
                opts.node, opts.controller
            );
            refuse(&mut stream, exit_code::NO_CONTROLLER, message).await;
            return;
        }
        Err(_) => {
            let message = format!(
                "the agent of {} got no answer from the controller at {}",
                opts.node, opts.controller
            );
            refuse(&mut stream, exit_code::NO_CONTROLLER, message).await;
            return;
        }
    };
    let (local_rd, local_wr) = stream.into_split();
    let (net_rd, net_wr) = tcp.into_split();
    let relay = wire::spawn_relay(local_rd, local_wr, net_rd, net_wr, sealer, opener, LINE_MAX);
    // Once the controller has ended the session (done, or refused: too many connections), the
    // local side ends too: a caller holding it open would otherwise hold the agent's descriptors.
    let _ = relay.down.await;
    relay.up.abort();
}

/// The refusal of a user at the limit.
fn too_many(uid: u32, open: usize, opts: &LocalOptions) -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name);
    format!(
        "too many connections: {user} already has {open} connections open to the agent of {}, its limit (gangway agent --max-connections-per-user {}); close some (finished `gangway alloc`/`run` commands) or ask an administrator to raise it",
        opts.node, opts.max_per_user
    )
}

/// The job whose session `pid` is in, if the owner task knows one.
async fn job_of(pid: i32, jobs: &UnboundedSender<JobQuery>) -> Option<JobId> {
    let sid = process::session_of(pid)?;
    let (answer, rx) = oneshot::channel();
    jobs.send(JobQuery { sid, answer }).ok()?;
    tokio::time::timeout(Duration::from_secs(2), rx).await.ok()?.ok()?
}

/// Answers the caller's first request with an error, in the local socket's own format.
async fn refuse(stream: &mut UnixStream, code: u8, message: String) {
    tracing::warn!(%message, "local session refused");
    let mut line = serde_json::to_string(&Reply::Error { code, message }).unwrap_or_default();
    line.push('\n');
    let _ = stream.write_all(line.as_bytes()).await;
    let _ = stream.shutdown().await;
    wire::drain(stream).await;
}

/// The default socket of an agent whose spool is `spool`.
pub fn default_path(spool: &Path) -> PathBuf {
    spool.join("agent.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_holds_at_most_the_limit_and_root_is_not_counted() {
        let slots = Slots::new(2);
        let a1 = slots.take(1000).expect("first");
        let _a2 = slots.take(1000).expect("second");
        assert_eq!(slots.take(1000).err(), Some(2), "the third is over the limit");
        let _b = slots.take(1001).expect("another user is not affected");
        let _root: Vec<Slot> = (0..10).map(|_| slots.take(0).expect("root")).collect();
        drop(a1);
        let _a3 = slots.take(1000).expect("a place came free");
        assert!(Slots::new(0).take(1000).is_ok(), "0: no limit");
    }

    #[test]
    fn the_refusal_names_the_flag_and_the_limit() {
        let opts = LocalOptions {
            controller: "head:7717".into(),
            key: Key::from_bytes(&[7; 32]),
            node: "node2".into(),
            max_per_user: 4,
        };
        let text = too_many(4_000_000, 4, &opts);
        assert!(text.contains("--max-connections-per-user 4"), "{text}");
        assert!(text.contains("uid 4000000") && text.contains("node2"), "{text}");
    }
}
