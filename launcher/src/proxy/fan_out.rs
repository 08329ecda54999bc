//! Starting the proxies of some subtrees, as the launcher does for the top of the tree and
//! every proxy for the nodes below it: one bootstrap session per subtree with the start line on
//! its stdin ([`start_sessions`]), then each proxy's call-back with the job's key, its link and
//! its `Start` message ([`join`]), and the routes that carry later messages down ([`Links`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gangway_link::Psk;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use super::callback::{Arrival, CallbackListener, HANDSHAKE_TIMEOUT, link_child};
use super::protocol::{Down, Envelope, PROTOCOL_VERSION, Subtree, Up};
use crate::bootstrap::{self, Bootstrap, BootstrapError, HostSpec, RemoteCommand};

/// The first line a proxy reads on stdin: the job's call-back key and where to call back.
/// It travels only inside the session that starts the proxy (SSH, or an agent's step link).
pub fn start_line(key: &Psk, parent: SocketAddr) -> String {
    format!("{} {parent}\n", key.to_hex())
}

/// The command line that starts a proxy for `node_id` on another node.
pub fn proxy_argv(proxy_path: &str, node_id: u32) -> Vec<String> {
    vec![proxy_path.to_string(), "proxy".into(), "--node".into(), node_id.to_string()]
}

/// Why a proxy that was started did not join: the words after "the proxy on X", with what
/// the call-back port saw instead (a hint at a firewall, another version or a stray client).
pub fn never_called_back(refused: usize, other_version: Option<u32>) -> String {
    let mut why = "never called back".to_string();
    if let Some(v) = other_version {
        why.push_str(&format!(
            " (a proxy of protocol {v} did, this gangway speaks {PROTOCOL_VERSION}: install the same gangway version on every node)"
        ));
    } else if refused > 0 {
        why.push_str(&format!(
            " ({refused} other connection(s) to the call-back port were refused: no valid key or no greeting within {} s)",
            HANDSHAKE_TIMEOUT.as_secs()
        ));
    }
    why
}

/// Starts a proxy for each of `subtrees`, all at once, and writes each its start line (call
/// back on `port`, at our address as that node sees it). Results come by subtree index, in
/// the order the sessions started or failed.
pub async fn start_sessions(
    bootstrap: &Arc<dyn Bootstrap>,
    subtrees: &[Subtree],
    proxy_path: &str,
    key: &Psk,
    port: u16,
) -> Vec<(usize, Result<RemoteCommand, BootstrapError>)> {
    let mut starting = JoinSet::new();
    for (i, sub) in subtrees.iter().enumerate() {
        let host = HostSpec { host: sub.host.clone(), user: sub.user.clone(), port: sub.port };
        let argv = proxy_argv(proxy_path, sub.job.node_id);
        let bootstrap = Arc::clone(bootstrap);
        starting.spawn(async move { (i, bootstrap::start_async(bootstrap, host, argv).await) });
    }
    let mut started = Vec::with_capacity(subtrees.len());
    while let Some(Ok((i, result))) = starting.join_next().await {
        if let Ok(cmd) = &result
            && let Some(stdin) = &cmd.stdin
        {
            let back = SocketAddr::new(cmd.local_addr.ip(), port);
            let _ = stdin.write(start_line(key, back).into_bytes());
        }
        started.push((i, result));
    }
    started
}

/// The links to the proxies that joined, and how to reach every node below them.
#[derive(Debug, Default)]
pub struct Links {
    /// By subtree index; `None` for a proxy that never called back.
    pub links: Vec<Option<UnboundedSender<Envelope>>>,
    /// Node id → the subtree holding it.
    route: HashMap<u32, usize>,
}

impl Links {
    /// Passes a message on to the subtree(s) it is meant for.
    pub fn forward(&self, envelope: &Envelope) {
        match envelope.to {
            None => {
                for link in self.links.iter().flatten() {
                    let _ = link.send(envelope.clone());
                }
            }
            Some(id) => {
                if let Some(Some(link)) = self.route.get(&id).and_then(|i| self.links.get(*i)) {
                    let _ = link.send(envelope.clone());
                }
            }
        }
    }
}

/// What the call-back port saw while the proxies joined.
#[derive(Debug)]
pub struct Joined {
    pub links: Links,
    /// Connections that failed the handshake or said nothing in time.
    pub refused: usize,
    /// A protocol version other than ours that a proxy of this job spoke, if any.
    pub other_version: Option<u32>,
}

/// Waits until `deadline` for the proxies of `started` (indexes into `subtrees`) to call back.
/// Each that does gets its link (its messages come out of `up`; a broken link becomes an
/// [`Up::Lost`] for its whole subtree, `lost` saying why) and its `Start` message.
/// `wrong_version` hears of every proxy of another version (`true` the first time).
pub async fn join(
    listener: &mut CallbackListener,
    subtrees: &[Subtree],
    started: impl IntoIterator<Item = usize>,
    deadline: Instant,
    up: &UnboundedSender<Up>,
    lost: impl Fn(&Subtree) -> String,
    mut wrong_version: impl FnMut(u32, bool),
) -> Joined {
    let mut pending: HashMap<u32, usize> =
        started.into_iter().map(|i| (subtrees[i].job.node_id, i)).collect();
    let mut links = Links { links: vec![None; subtrees.len()], route: HashMap::new() };
    let mut other_version = None;
    while !pending.is_empty() {
        let caller = match timeout_at(deadline, listener.next()).await {
            Ok(Some(Arrival::Proxy(caller))) => caller,
            Ok(Some(Arrival::WrongVersion { version })) => {
                wrong_version(version, other_version.replace(version).is_none());
                continue;
            }
            _ => break,
        };
        // Only an expected node, once: a second call-back for one node (only a holder of the
        // key could make it) is ignored.
        let Some(i) = pending.remove(&caller.node_id) else {
            continue;
        };
        let sub = &subtrees[i];
        for id in sub.node_ids() {
            links.route.insert(id, i);
        }
        let link = link_child(caller.reader, caller.writer, sub.node_ids(), up.clone(), lost(sub));
        let _ = link
            .send(Envelope { to: Some(caller.node_id), msg: Down::Start(Box::new(sub.clone())) });
        links.links[i] = Some(link);
    }
    Joined { links, refused: listener.refused(), other_version }
}
