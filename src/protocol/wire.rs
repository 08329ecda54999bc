//! The encrypted links between gangway's parts, as both ends speak them: the cleartext preamble
//! that says who connects (and so which key the link uses), and JSON messages over
//! `gangway_link` (one message per Noise message).
//!
//! | preamble | who connects | key |
//! |---|---|---|
//! | `AGENT <node>` | a node's agent, its link to the controller | [`Key::agent_psk`] |
//! | `VOUCH <node>` | a node's agent, relaying a local user's session | [`Key::agent_psk`] |
//! | `USER <uid> <expiry>` | a command over TCP with a user's token | [`Key::user_psk`] |
//!
//! The preamble is the handshake's prologue: a preamble edited on the way (another node, another
//! uid, a later expiry) makes the handshake fail.

use gangway_link::{LinkError, Opener, Psk, Sealer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::job_id::JobId;
use crate::auth::Key;

/// Longest preamble line read before the handshake (what an unauthenticated peer can make us
/// buffer).
pub const PREAMBLE_MAX: usize = 256;

/// Who a connection to the controller's TCP port says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    Agent { node: String },
    Vouch { node: String },
    User { uid: u32, expiry: u64 },
}

impl Preamble {
    /// Parses a preamble line (without its newline).
    pub fn parse(line: &str) -> Result<Preamble, String> {
        let words: Vec<&str> = line.split(' ').collect();
        let node_ok = |n: &str| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match words.as_slice() {
            ["AGENT", node] if node_ok(node) => Ok(Preamble::Agent { node: node.to_string() }),
            ["VOUCH", node] if node_ok(node) => Ok(Preamble::Vouch { node: node.to_string() }),
            ["USER", uid, expiry] => match (uid.parse(), expiry.parse()) {
                (Ok(uid), Ok(expiry)) => Ok(Preamble::User { uid, expiry }),
                _ => Err("USER needs a numeric uid and expiry".into()),
            },
            _ => Err(
                "expected USER, AGENT or VOUCH first (is this a gangway command of another version?)"
                    .into(),
            ),
        }
    }

    /// The line as sent (without its newline); also the handshake's prologue.
    pub fn line(&self) -> String {
        match self {
            Preamble::Agent { node } => format!("AGENT {node}"),
            Preamble::Vouch { node } => format!("VOUCH {node}"),
            Preamble::User { uid, expiry } => format!("USER {uid} {expiry}"),
        }
    }

    /// The key a link with this preamble runs on.
    pub fn psk(&self, key: &Key) -> Psk {
        match self {
            Preamble::Agent { .. } | Preamble::Vouch { .. } => key.agent_psk(),
            Preamble::User { uid, expiry } => key.user_psk(*uid, *expiry),
        }
    }
}

/// The first message on a `VOUCH` link: the local caller the agent vouches for, as the kernel
/// told it (`SO_PEERCRED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Vouch {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// The job the caller's process belongs to, when the agent can tell (its session is one of
    /// the job's); for the controller's log.
    pub job: Option<JobId>,
}

/// Why a message could not be had.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("a message that is not what this side expects: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Connects the initiator's side: sends the preamble line, then runs the handshake bound to it.
pub async fn initiate<S>(
    stream: &mut S,
    preamble: &Preamble,
    key: &Key,
) -> Result<(Sealer, Opener), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let line = preamble.line();
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    gangway_link::tokio_io::initiate(stream, &preamble.psk(key), line.as_bytes()).await
}

/// Sends one message as JSON.
pub async fn send<W, T>(w: &mut W, sealer: &mut Sealer, msg: &T) -> Result<(), LinkError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    // Our own messages always serialize; an empty body would be refused by the peer.
    let body = serde_json::to_vec(msg).unwrap_or_default();
    gangway_link::tokio_io::send(w, sealer, &body).await
}

/// Receives one JSON message; `None` when the peer closed the link between messages.
pub async fn recv<R, T>(r: &mut R, opener: &mut Opener) -> Result<Option<T>, WireError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    match gangway_link::tokio_io::recv(r, opener).await? {
        Some(body) => Ok(Some(serde_json::from_slice(&body)?)),
        None => Ok(None),
    }
}

/// Reads and drops what the peer still sends, until it closes (or a few seconds pass), after an
/// error was sent: closing a socket with unread data resets the connection, and the peer could
/// lose the error before reading it.
pub async fn drain<R: AsyncRead + Unpin>(r: &mut R) {
    let mut sink = tokio::io::sink();
    let mut limited = tokio::io::AsyncReadExt::take(r, DRAIN_MAX);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::io::copy(&mut limited, &mut sink),
    )
    .await;
}

/// The most [`drain`] reads.
const DRAIN_MAX: u64 = 64 << 20;

/// Relays between a stream of JSON lines (a local client, or the controller's request loop) and
/// a link whose messages are those lines without their newlines, until either side ends.
/// Lines over `max_line` bytes end the relay.
pub fn spawn_relay<LR, LW, NR, NW>(
    lines_rd: LR,
    mut lines_wr: LW,
    mut net_rd: NR,
    mut net_wr: NW,
    mut sealer: Sealer,
    mut opener: Opener,
    max_line: usize,
) -> Relay
where
    LR: AsyncRead + Unpin + Send + 'static,
    LW: AsyncWrite + Unpin + Send + 'static,
    NR: AsyncRead + Unpin + Send + 'static,
    NW: AsyncWrite + Unpin + Send + 'static,
{
    opener.set_limit(max_line);
    let down = tokio::spawn(async move {
        loop {
            match gangway_link::tokio_io::recv(&mut net_rd, &mut opener).await {
                Ok(Some(mut msg)) => {
                    msg.push(b'\n');
                    if lines_wr.write_all(&msg).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "relay: the link ended");
                    break;
                }
            }
        }
        let _ = lines_wr.shutdown().await;
    });
    let up = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut rd = tokio::io::BufReader::new(lines_rd);
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = max_line as u64 + 1;
            match tokio::io::AsyncReadExt::take(&mut rd, limit).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            } else if line.len() > max_line {
                tracing::warn!(limit = max_line, "relay: a request line over the limit; closing");
                break;
            }
            if gangway_link::tokio_io::send(&mut net_wr, &mut sealer, &line).await.is_err() {
                break;
            }
        }
        let _ = net_wr.shutdown().await;
    });
    Relay { down, up }
}

/// The two tasks of a relay: link → lines, lines → link.
#[derive(Debug)]
pub struct Relay {
    pub down: tokio::task::JoinHandle<()>,
    pub up: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Ends both directions now.
    pub fn abort(&self) {
        self.down.abort();
        self.up.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles_round_trip_and_refuse_anything_else() {
        for p in [
            Preamble::Agent { node: "node1".into() },
            Preamble::Vouch { node: "n-2.example_x".into() },
            Preamble::User { uid: 1000, expiry: 1_900_000_000 },
        ] {
            assert_eq!(Preamble::parse(&p.line()), Ok(p));
        }
        for bad in [
            "",
            "TOKEN u.0.abc",
            "AGENT",
            "AGENT a b",
            "AGENT a\tb",
            "USER root 5",
            "USER 0",
            "VOUCH ../x",
        ] {
            assert!(Preamble::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_preamble_picks_its_key() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let user = Preamble::User { uid: 5, expiry: 9 };
        assert_eq!(user.psk(&k), k.user_token(5, 9).psk);
        assert_eq!(Preamble::Agent { node: "a".into() }.psk(&k), k.agent_psk());
        assert_ne!(user.psk(&k), k.agent_psk());
    }

    #[tokio::test]
    async fn the_relay_turns_lines_into_messages_and_back_and_stops_at_long_lines() {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let psk = Psk([6; 32]);
        // lines (client) <-> relay <-> link <-> far end
        let (client, relay_lines) = tokio::io::duplex(1 << 16);
        let (relay_net, mut far) = tokio::io::duplex(1 << 16);
        let psk2 = psk.clone();
        let far_end = tokio::spawn(async move {
            let (s, mut o) =
                gangway_link::tokio_io::respond(&mut far, &psk2, b"").await.expect("handshake");
            let a = gangway_link::tokio_io::recv(&mut far, &mut o).await.expect("a").expect("a");
            let b = gangway_link::tokio_io::recv(&mut far, &mut o).await.expect("b").expect("b");
            (far, s, o, a, b)
        });
        let mut relay_net = relay_net;
        let (sealer, opener) =
            gangway_link::tokio_io::initiate(&mut relay_net, &psk, b"").await.expect("link");
        let (lr, lw) = tokio::io::split(relay_lines);
        let (nr, nw) = tokio::io::split(relay_net);
        let _relay = spawn_relay(lr, lw, nr, nw, sealer, opener, 64);
        let (cr, mut cw) = tokio::io::split(client);
        cw.write_all(b"{\"a\":1}\n{\"b\":2}\n").await.expect("write");
        let (mut far, mut s, _o, a, b) = far_end.await.expect("far end");
        assert_eq!((a.as_slice(), b.as_slice()), (&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]));
        gangway_link::tokio_io::send(&mut far, &mut s, b"{\"ok\":true}").await.expect("reply");
        let mut cr = tokio::io::BufReader::new(cr);
        let mut line = String::new();
        cr.read_line(&mut line).await.expect("reply line");
        assert_eq!(line, "{\"ok\":true}\n");
        // A line over the limit ends the relay: the far end sees the link close.
        cw.write_all(&[b'x'; 100]).await.expect("write");
        cw.write_all(b"\n").await.expect("write");
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.expect("read");
        assert!(rest.is_empty(), "nothing of the long line was sent");
    }

    #[tokio::test]
    async fn json_messages_over_a_link() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let k2 = k.clone();
        let server = tokio::spawn(async move {
            let line = gangway_link::tokio_io::read_preamble(&mut b, PREAMBLE_MAX)
                .await
                .expect("read")
                .expect("a line");
            let p = Preamble::parse(&line).expect("parses");
            let (_s, mut o) = gangway_link::tokio_io::respond(&mut b, &p.psk(&k2), line.as_bytes())
                .await
                .expect("handshake");
            let v: Vouch = recv(&mut b, &mut o).await.expect("message").expect("some");
            (p, v)
        });
        let v = Vouch { uid: 1001, gid: 1001, pid: 42, job: Some(7) };
        let (mut s, _o) =
            initiate(&mut a, &Preamble::Vouch { node: "node1".into() }, &k).await.expect("link");
        send(&mut a, &mut s, &v).await.expect("send");
        let (p, got) = server.await.expect("server");
        assert_eq!(p, Preamble::Vouch { node: "node1".into() });
        assert_eq!(got, v);
    }
}
