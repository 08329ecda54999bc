//! A command's connection, local or bridged from a TCP link: the per-user connection limit,
//! one request per JSON line (bounded), replies written from the connection's outbound queue,
//! and tokens (answered here, so the key stays out of the owner task's hands).

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::peers::{Input, Outbound, Shared, ToClient, caller_for};
use crate::auth::Key;
use crate::controller::disk::human;
use crate::controller::effects::ConnId;
use crate::controller::limits::{
    self, Closer, LineError, OutboxRx, discard_line, read_line_bounded,
};
use crate::controller::state::Caller;
use crate::exit_code;
use crate::protocol::{Reply, Request};

pub(super) async fn serve_unix(conn: ConnId, stream: UnixStream, shared: Shared) {
    let Ok(cred) = stream.peer_cred() else { return };
    let caller = caller_for(cred.uid(), cred.gid());
    let (rd, mut wr) = stream.into_split();
    let Some(_slot) = user_slot(&shared, &caller, &mut wr).await else { return };
    let tokens = Some(shared.key.clone());
    serve_client(conn, caller, BufReader::new(rd), wr, shared, tokens).await;
}

/// The caller's place under the per-user connection limit, or `None` after telling it why not.
pub(super) async fn user_slot<W: tokio::io::AsyncWrite + Unpin>(
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
pub(super) async fn refuse<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, code: u8, message: &str) {
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
async fn write_lines<W>(mut wr: W, mut out: OutboxRx<ToClient>)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut closer = out.closer();
    while let Some(msg) = out.recv().await {
        match msg {
            Outbound::Message(reply) => {
                let mut line = reply.into_text();
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
pub(super) async fn serve_client<R, W>(
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
    let out = shared.client_outbox(conn);
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
                    human(limit as u64),
                    human(limits::ENVELOPE_BYTES as u64)
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
