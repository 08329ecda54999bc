//! The controller's TCP connections, all encrypted (see [`crate::protocol::wire`]): the preamble picks the
//! key and the handshake proves the peer holds it, before anything else is read. Agents then get
//! their message loop; commands — with a user's own token (`USER`), or relayed by a node's agent
//! that vouches for a local user (`VOUCH`) — are bridged to the same request loop as the local
//! socket, so they are served exactly as local commands are.

use std::time::Duration;

use gangway_link::{Opener, Sealer};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::clients::serve_client;
use super::peers::{Input, Outbound, Shared, caller_for};
use crate::auth::{Key, show_time, unix_now};
use crate::controller::effects::ConnId;
use crate::exit_code;
use crate::protocol::wire::{self, PREAMBLE_MAX, Preamble, Relay, Vouch, WireError};
use crate::protocol::{FromAgent, Reply, ToAgent};

/// How long a client that has gone may take to read its last replies.
const LAST_REPLIES_TIME: Duration = Duration::from_secs(10);

/// Serves one TCP connection until it ends.
pub(super) async fn serve_tcp(conn: ConnId, mut stream: TcpStream, shared: Shared) {
    let peer = stream.peer_addr().ok();
    let host = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    // Until the handshake proves who it is, the connection holds one of a few places, for
    // `auth_timeout` at most; a newer connection may take its place (see `limits::Gate`).
    let mut pending = shared.gate.pending(host);
    let preamble_and_handshake = async {
        let line = gangway_link::tokio_io::read_preamble(&mut stream, PREAMBLE_MAX)
            .await
            .ok()
            .flatten()?;
        let preamble = match Preamble::parse(&line) {
            Ok(p) => p,
            Err(why) => return Some(Err(why)),
        };
        let psk = preamble.psk(&shared.key);
        match gangway_link::tokio_io::respond(&mut stream, &psk, line.as_bytes()).await {
            Ok(link) => Some(Ok((preamble, link))),
            Err(e) => {
                tracing::warn!(?peer, preamble = %line, error = %e, "link refused");
                None
            }
        }
    };
    let outcome = tokio::select! {
        got = tokio::time::timeout(shared.auth_timeout, preamble_and_handshake) => got.ok().flatten(),
        _ = &mut pending.evicted => {
            tracing::debug!(?peer, "unauthenticated connection closed to make room for a newer one");
            None
        }
    };
    drop(pending);
    let (preamble, (mut sealer, opener)) = match outcome {
        Some(Ok(linked)) => linked,
        Some(Err(why)) => {
            // In clear: nothing is known about the peer, and nothing secret is said.
            tracing::warn!(?peer, %why, "connection refused before the handshake");
            let reply = Reply::Error { code: exit_code::NO_CONTROLLER, message: why };
            let _ = stream.write_all(clear_line(&reply).as_bytes()).await;
            let _ = stream.shutdown().await;
            wire::drain(&mut stream).await;
            return;
        }
        None => return,
    };
    match preamble {
        Preamble::Agent { node } => serve_agent(conn, node, stream, sealer, opener, shared).await,
        Preamble::User { uid, expiry } => {
            if expiry <= unix_now() {
                let message = format!(
                    "your token (uid {uid}) expired at {}; get a new one with `gangway token` on a cluster node or the controller's machine",
                    show_time(expiry)
                );
                let reply = Reply::Error { code: exit_code::NO_CONTROLLER, message };
                let _ = wire::send(&mut stream, &mut sealer, &reply).await;
                let _ = stream.shutdown().await;
                wire::drain(&mut stream).await;
                return;
            }
            let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.gid.as_raw())
                .unwrap_or(uid);
            // No token for token holders: a token that could renew itself would never expire.
            bridge(conn, caller_for(uid, gid), stream, sealer, opener, None, shared).await;
        }
        Preamble::Vouch { node } => serve_vouched(conn, node, stream, sealer, opener, shared).await,
    }
}

fn clear_line(reply: &Reply) -> String {
    let mut line = serde_json::to_string(reply).unwrap_or_default();
    line.push('\n');
    line
}

/// A session an agent relays for a local user: the first message says who (as the kernel told
/// the agent); the owner task checks that this node's agent may vouch for that uid.
async fn serve_vouched(
    conn: ConnId,
    node: String,
    mut stream: TcpStream,
    mut sealer: Sealer,
    mut opener: Opener,
    shared: Shared,
) {
    let vouch = match tokio::time::timeout(
        shared.auth_timeout,
        wire::recv::<_, Vouch>(&mut stream, &mut opener),
    )
    .await
    {
        Ok(Ok(Some(v))) => v,
        _ => return,
    };
    let (answer, verdict) = tokio::sync::oneshot::channel();
    if shared.input.send(Input::Vouch { node: node.clone(), uid: vouch.uid, answer }).await.is_err()
    {
        return;
    }
    let stopping = |_| (exit_code::NO_CONTROLLER, "the controller is stopping".to_string());
    if let Ok(Err((code, why))) | Err((code, why)) = verdict.await.map_err(stopping) {
        tracing::warn!(%node, uid = vouch.uid, %why, "vouch refused");
        let reply = Reply::Error { code, message: why };
        let _ = wire::send(&mut stream, &mut sealer, &reply).await;
        let _ = stream.shutdown().await;
        wire::drain(&mut stream).await;
        return;
    }
    tracing::debug!(%node, uid = vouch.uid, pid = vouch.pid, job = ?vouch.job, "vouched session");
    let caller = caller_for(vouch.uid, vouch.gid);
    let tokens = Some(shared.key.clone());
    bridge(conn, caller, stream, sealer, opener, tokens, shared).await;
}

/// Serves a command's link with the request loop of local commands, through an in-memory pipe
/// of JSON lines (so the same limits apply: per user, request size, outbound queue). `tokens`:
/// the key, when this caller may ask for a token.
async fn bridge(
    conn: ConnId,
    caller: crate::controller::state::Caller,
    mut stream: TcpStream,
    mut sealer: Sealer,
    opener: Opener,
    tokens: Option<Key>,
    shared: Shared,
) {
    let exempt = shared.exempt(caller.uid, &caller.user);
    let _slot = match shared.gate.user(caller.uid, &caller.user, exempt) {
        Ok(slot) => slot,
        Err(e) => {
            tracing::warn!(user = %caller.user, limit = e.limit, "connection refused: over the per-user limit");
            let reply = Reply::Error { code: exit_code::NO_NEW_WORK, message: e.to_string() };
            let _ = wire::send(&mut stream, &mut sealer, &reply).await;
            let _ = stream.shutdown().await;
            wire::drain(&mut stream).await;
            return;
        }
    };
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (ours_rd, ours_wr) = tokio::io::split(ours);
    let (theirs_rd, theirs_wr) = tokio::io::split(theirs);
    let (net_rd, net_wr) = stream.into_split();
    let relay = wire::spawn_relay(
        ours_rd,
        ours_wr,
        net_rd,
        net_wr,
        sealer,
        opener,
        gangway_link::DEFAULT_MESSAGE_LIMIT,
    );
    serve_client(conn, caller, BufReader::new(theirs_rd), theirs_wr, shared, tokens).await;
    // The last replies drain through the relay; a peer that does not read them is cut off.
    let Relay { mut up, down } = relay;
    if tokio::time::timeout(LAST_REPLIES_TIME, &mut up).await.is_err() {
        tracing::debug!("a client did not read its last replies");
        up.abort();
    }
    down.abort();
}

/// A node's agent: its registration (which must name the node its preamble named), then its
/// messages until the link ends.
async fn serve_agent(
    conn: ConnId,
    node: String,
    stream: TcpStream,
    mut sealer: Sealer,
    mut opener: Opener,
    shared: Shared,
) {
    let (mut rd, mut wr) = stream.into_split();
    let first =
        tokio::time::timeout(shared.auth_timeout, wire::recv::<_, FromAgent>(&mut rd, &mut opener))
            .await;
    let registration = match first {
        Ok(Ok(Some(FromAgent::Register(r)))) if r.name == node => r,
        Ok(Ok(Some(FromAgent::Register(r)))) => {
            let reason = format!(
                "the agent registers as node '{}' but connected as '{node}'; install the same gangway everywhere",
                r.name
            );
            let _ = wire::send(&mut wr, &mut sealer, &ToAgent::Refused { reason }).await;
            return;
        }
        Ok(Ok(Some(_))) => {
            let reason = "the first message must be a registration".to_string();
            let _ = wire::send(&mut wr, &mut sealer, &ToAgent::Refused { reason }).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(%node, error = %e, "agent refused");
            return;
        }
        Ok(Ok(None)) | Err(_) => return,
    };
    let mut out = shared.agent_outbox(conn);
    let msg = FromAgent::Register(registration);
    if shared.input.send(Input::Agent { conn, node: node.clone(), msg }).await.is_err() {
        return;
    }
    let mut closer = out.closer();
    let mut writer_closer = out.closer();
    tokio::spawn(async move {
        // Messages arrive as JSON already (the owner counts their bytes); sealed here.
        while let Some(o) = out.recv().await {
            match o {
                Outbound::Message(body) => {
                    let body = body.into_text();
                    let sent = gangway_link::tokio_io::send(&mut wr, &mut sealer, body.as_bytes());
                    tokio::select! {
                        s = sent => if s.is_err() { return },
                        _ = writer_closer.closed() => return,
                    }
                }
                Outbound::Close => {
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
    });
    loop {
        let got = tokio::select! {
            got = wire::recv::<_, FromAgent>(&mut rd, &mut opener) => got,
            _ = closer.closed() => break,
        };
        match got {
            Ok(Some(msg)) => {
                if shared.input.send(Input::Agent { conn, node: node.clone(), msg }).await.is_err()
                {
                    break;
                }
            }
            Ok(None) => break,
            Err(WireError::Malformed(e)) => {
                tracing::warn!(%node, error = %e, "malformed agent message ignored")
            }
            Err(WireError::Link(e)) => {
                tracing::warn!(%node, error = %e, "agent link broken; dropping the connection");
                break;
            }
        }
    }
    let _ = shared.input.send(Input::AgentGone { conn }).await;
}
