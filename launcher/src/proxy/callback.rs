//! The proxies' call-back links: a proxy started on a node (over SSH or through an agent)
//! connects back to its parent (the launcher, or the proxy above it in the tree), and every
//! message between them then travels encrypted and authenticated.
//!
//! The key is the job's random [`Psk`], which reaches each proxy in its start line (over the
//! already secure session that started it) and nowhere else. A connection runs the Noise
//! handshake of `gangway_link` with that key, then carries one postcard message per link
//! message; the first is the proxy's [`Up::Hello`].
//!
//! The listening side hands every connection to a task of its own and gives it
//! [`HANDSHAKE_TIMEOUT`] to prove the key and say hello, so a connection that sends nothing,
//! garbage or the wrong key only costs itself: it can neither delay nor fail a launch.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gangway_link::{Opener, Psk, Sealer, tokio_io};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::timeout;

use super::protocol::{Envelope, FrameError, MAX_FRAME, PROTOCOL_VERSION, Up};

/// How long a connection to a call-back port has to finish the handshake and say hello.
/// Proxies do it in a round trip; anything slower is not a healthy proxy of this job.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on the hello (node id, version, host name): nothing bigger is read from a peer that
/// has not yet said who it is.
const HELLO_LIMIT: usize = 4096;

/// Bound into every handshake, so that a key could never be reused across another gangway link.
const PROLOGUE: &[u8] = b"gangway proxy call-back";

/// The receiving half of a call-back link.
#[derive(Debug)]
pub struct LinkReader {
    half: OwnedReadHalf,
    opener: Opener,
}

impl LinkReader {
    /// The next message; [`FrameError::Closed`] when the peer closed the link between messages.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        match tokio_io::recv(&mut self.half, &mut self.opener).await? {
            Some(body) => {
                postcard::from_bytes(&body).map_err(|e| FrameError::Decode(e.to_string()))
            }
            None => Err(FrameError::Closed),
        }
    }
}

/// The sending half of a call-back link.
#[derive(Debug)]
pub struct LinkWriter {
    half: OwnedWriteHalf,
    sealer: Sealer,
}

impl LinkWriter {
    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let body = postcard::to_allocvec(msg).map_err(|e| FrameError::Decode(e.to_string()))?;
        tokio_io::send(&mut self.half, &mut self.sealer, &body).await?;
        Ok(())
    }
}

fn split(stream: TcpStream, sealer: Sealer, opener: Opener) -> (LinkReader, LinkWriter) {
    let (half, write) = stream.into_split();
    (LinkReader { half, opener }, LinkWriter { half: write, sealer })
}

/// A proxy that called back, proved the job's key and said hello.
#[derive(Debug)]
pub struct Caller {
    pub node_id: u32,
    pub hostname: String,
    pub reader: LinkReader,
    pub writer: LinkWriter,
}

/// What a call-back connection turned out to be.
#[derive(Debug)]
pub enum Arrival {
    Proxy(Caller),
    /// A proxy of this job (it holds the key) but of another gangway version.
    WrongVersion {
        version: u32,
    },
}

/// A call-back port: accepts connections for as long as it lives, each handshaken on its own.
#[derive(Debug)]
pub struct CallbackListener {
    port: u16,
    arrivals: UnboundedReceiver<Arrival>,
    refused: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl CallbackListener {
    /// Listens on every interface (proxies call back on whichever address reached them).
    pub async fn bind(psk: Psk) -> std::io::Result<CallbackListener> {
        let listener = TcpListener::bind(("0.0.0.0", 0)).await?;
        let port = listener.local_addr()?.port();
        let (tx, arrivals) = unbounded_channel();
        let refused = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&refused);
        let psk = Arc::new(psk);
        let accept = tokio::spawn(async move {
            gangway_link::accept::serve(listener, "proxy call-back", move |stream| {
                let (tx, psk, counted) = (tx.clone(), Arc::clone(&psk), Arc::clone(&counted));
                tokio::spawn(async move {
                    let peer = stream.peer_addr().ok();
                    match timeout(HANDSHAKE_TIMEOUT, greet(stream, &psk)).await {
                        Ok(Ok(arrival)) => {
                            let _ = tx.send(arrival);
                        }
                        Ok(Err(e)) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(?peer, error = %e, "call-back connection refused");
                        }
                        Err(_) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(?peer, "call-back connection said nothing in time");
                        }
                    }
                });
            })
            .await;
        });
        Ok(CallbackListener { port, arrivals, refused, accept })
    }

    /// The port proxies are told to call back on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next proxy that called back (`None` only if the accept loop is gone).
    pub async fn next(&mut self) -> Option<Arrival> {
        self.arrivals.recv().await
    }

    /// How many connections failed the handshake or said nothing in time, so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for CallbackListener {
    /// Closes the port: once every proxy has called back, nobody else has business there.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn greet(mut stream: TcpStream, psk: &Psk) -> Result<Arrival, FrameError> {
    let _ = stream.set_nodelay(true);
    let (sealer, mut opener) = tokio_io::respond(&mut stream, psk, PROLOGUE).await?;
    opener.set_limit(HELLO_LIMIT);
    let (mut reader, writer) = split(stream, sealer, opener);
    let body = match tokio_io::recv(&mut reader.half, &mut reader.opener).await? {
        Some(body) => body,
        None => return Err(FrameError::Closed),
    };
    match postcard::from_bytes::<Up>(&body) {
        Ok(Up::Hello { version, node_id, hostname }) if version == PROTOCOL_VERSION => {
            reader.opener.set_limit(MAX_FRAME);
            Ok(Arrival::Proxy(Caller { node_id, hostname, reader, writer }))
        }
        Ok(Up::Hello { version, .. }) => Ok(Arrival::WrongVersion { version }),
        // Another version's hello may not decode as ours, but every version starts it with the
        // variant index 0 and then its protocol version.
        _ => match postcard::take_from_bytes::<(u32, u32)>(&body) {
            Ok(((0, version), _)) if version != PROTOCOL_VERSION => {
                Ok(Arrival::WrongVersion { version })
            }
            _ => Err(FrameError::Decode("the first message was not a hello".into())),
        },
    }
}

/// The proxy's side: connects to its parent at `parent`, proves the key and says hello.
/// Returns the link and this end's address (the node's address as its parent sees it).
pub async fn call_back(
    parent: SocketAddr,
    psk: &Psk,
    node_id: u32,
    connect_timeout: Duration,
) -> Result<(LinkReader, LinkWriter, IpAddr), CallBackError> {
    let connect = async {
        let mut stream = TcpStream::connect(parent).await.map_err(CallBackError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sealer, opener) = tokio_io::initiate(&mut stream, psk, PROLOGUE)
            .await
            .map_err(|e| CallBackError::Link(e.into()))?;
        Ok::<_, CallBackError>((stream, sealer, opener))
    };
    let (stream, sealer, mut opener) = timeout(connect_timeout, connect)
        .await
        .map_err(|_| CallBackError::Connect(std::io::ErrorKind::TimedOut.into()))??;
    opener.set_limit(MAX_FRAME);
    let address =
        stream.local_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let (reader, mut writer) = split(stream, sealer, opener);
    let hostname =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    writer
        .send(&Up::Hello { version: PROTOCOL_VERSION, node_id, hostname })
        .await
        .map_err(CallBackError::Link)?;
    Ok((reader, writer, address))
}

/// Why a proxy could not call back.
#[derive(Debug, thiserror::Error)]
pub enum CallBackError {
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Link(FrameError),
}

/// Serves one link to a proxy below: down messages sent to the returned channel are written
/// to it, and everything it sends comes out of `up`; when it breaks, `up` gets a `Lost` for its
/// whole subtree, with `lost` ("its connection dropped") as the reason.
pub fn link_child(
    mut from_child: LinkReader,
    mut to_child: LinkWriter,
    node_ids: Vec<u32>,
    up: UnboundedSender<Up>,
    lost: String,
) -> UnboundedSender<Envelope> {
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    tokio::spawn(async move {
        while let Some(env) = rx.recv().await {
            if to_child.send(&env).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match from_child.recv::<Up>().await {
                Ok(msg) => {
                    if up.send(msg).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let reason = format!("{lost} ({e})");
                    let _ = up.send(Up::Lost { node_ids, reason });
                    return;
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::protocol::{Down, Stream};
    use tokio::io::AsyncWriteExt;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    fn here(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_proxy_calls_back_and_messages_flow_both_ways() {
        rt().block_on(async {
            let key = Psk::random();
            let mut listener = CallbackListener::bind(key.clone()).await.expect("bind");
            let port = listener.port();
            let proxy = tokio::spawn(async move {
                let (mut rd, mut wr, _) = call_back(here(port), &key, 7, Duration::from_secs(5))
                    .await
                    .expect("call back");
                let env: Envelope = rd.recv().await.expect("down");
                assert!(matches!(env.msg, Down::Ping(3)));
                let out =
                    Up::Output { rank: 1, stream: Stream::Stdout, bytes: vec![b'x'; 100_000] };
                wr.send(&out).await.expect("up");
            });
            let Some(Arrival::Proxy(caller)) = listener.next().await else { panic!("no caller") };
            assert_eq!(caller.node_id, 7);
            let (up_tx, mut up_rx) = unbounded_channel();
            let down = link_child(caller.reader, caller.writer, vec![7], up_tx, "gone".into());
            down.send(Envelope { to: None, msg: Down::Ping(3) }).expect("send");
            match up_rx.recv().await {
                Some(Up::Output { rank: 1, bytes, .. }) => assert_eq!(bytes.len(), 100_000),
                other => panic!("{other:?}"),
            }
            proxy.await.expect("proxy");
            // The proxy's end closed: its subtree is reported lost.
            assert!(matches!(up_rx.recv().await, Some(Up::Lost { .. })));
        });
    }

    /// Idle, garbage and wrong-key connections made first do not hold up a real proxy, and are
    /// counted as refused.
    #[test]
    fn idle_garbage_and_wrong_key_connections_do_not_delay_a_proxy() {
        rt().block_on(async {
            let key = Psk::random();
            let mut listener = CallbackListener::bind(key.clone()).await.expect("bind");
            let port = listener.port();
            let mut idle = Vec::new();
            for _ in 0..12 {
                idle.push(TcpStream::connect(here(port)).await.expect("idle"));
            }
            let mut garbage = TcpStream::connect(here(port)).await.expect("garbage");
            garbage.write_all(&[0xff; 4096]).await.expect("write");
            let wrong = call_back(here(port), &Psk::random(), 1, Duration::from_secs(5)).await;
            assert!(wrong.is_err(), "a wrong key must not get a link");
            let started = tokio::time::Instant::now();
            let real = tokio::spawn(async move {
                call_back(here(port), &key, 2, Duration::from_secs(5)).await.map(|_| ())
            });
            let Some(Arrival::Proxy(caller)) = listener.next().await else { panic!("no caller") };
            assert_eq!(caller.node_id, 2);
            real.await.expect("join").expect("the real proxy called back");
            // Liveness only: the idle connections ahead of it each get the whole timeout.
            assert!(started.elapsed() < HANDSHAKE_TIMEOUT, "{:?}", started.elapsed());
            drop(idle);
        });
    }

    #[test]
    fn another_version_is_named() {
        rt().block_on(async {
            let key = Psk::random();
            let mut listener = CallbackListener::bind(key.clone()).await.expect("bind");
            let mut stream = TcpStream::connect(here(listener.port())).await.expect("connect");
            let (sealer, opener) =
                tokio_io::initiate(&mut stream, &key, PROLOGUE).await.expect("handshake");
            let (_rd, mut wr) = split(stream, sealer, opener);
            // A future hello: same leading fields, more after them.
            wr.send(&(0u32, PROTOCOL_VERSION + 1, "extra", 5u64)).await.expect("send");
            match listener.next().await {
                Some(Arrival::WrongVersion { version }) => {
                    assert_eq!(version, PROTOCOL_VERSION + 1)
                }
                other => panic!("{other:?}"),
            }
        });
    }
}
