//! The agent's link to the controller: `AGENT <node>`, a handshake on the cluster key, then
//! JSON messages both ways, encrypted (see [`crate::protocol::wire`]): the registration, its answer, and
//! whatever follows, until the link breaks.

use std::net::SocketAddr;
use std::time::Duration;

use gangway_link::{LinkError, Opener, Sealer};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::events::Event;
use super::fence::Held;
use super::lease::Boot;
use super::options::AgentOptions;
use crate::protocol::wire::{self, Preamble, WireError};
use crate::protocol::{FromAgent, Registration, ToAgent};

/// Why no link could be had.
pub(super) enum ConnectError {
    /// For good: the controller said no (another key, an unknown node, another version).
    Refused(String),
    /// For now: try again later.
    Unreachable(String),
    /// For now, and the connection was refused: no controller process listens there now (which
    /// lets the lease run on, see docs/cluster.md, "Fencing").
    NoListener(String),
}

/// A registered connection, before its tasks start.
pub(super) struct Pending {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    sealer: Sealer,
    opener: Opener,
    pub heartbeat: Duration,
    /// The lease an acknowledged heartbeat grants, and when the registration left.
    pub lease: Duration,
    pub registered_at: Boot,
}

/// A running link: messages for the controller go into `out`.
pub(super) struct Link {
    pub out: UnboundedSender<FromAgent>,
    pub heartbeat: Duration,
    /// The task reading the controller's messages (aborted when the agent gives up the link).
    pub reader: tokio::task::JoinHandle<()>,
}

impl Pending {
    /// Starts the link's tasks: what the controller sends becomes events, and
    /// [`Event::ControllerGone`] when the link ends.
    pub fn start(self, events: UnboundedSender<Event>) -> Link {
        let Pending { mut rd, mut wr, mut sealer, mut opener, heartbeat, .. } = self;
        let (out, mut out_rx) = unbounded_channel::<FromAgent>();
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if wire::send(&mut wr, &mut sealer, &msg).await.is_err() {
                    break;
                }
            }
        });
        let reader = tokio::spawn(async move {
            loop {
                match wire::recv::<_, ToAgent>(&mut rd, &mut opener).await {
                    Ok(Some(msg)) => {
                        if events.send(Event::FromController(msg)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(WireError::Malformed(e)) => {
                        tracing::warn!(error = %e, "malformed controller message ignored")
                    }
                    Err(WireError::Link(e)) => {
                        tracing::error!(error = %e, "the controller link broke; reconnecting");
                        break;
                    }
                }
            }
            let _ = events.send(Event::ControllerGone);
        });
        Link { out, heartbeat, reader }
    }
}

/// Connects, proves the key, registers, and waits for the welcome.
pub(super) async fn connect(
    opts: &AgentOptions,
    topology: &str,
    port: u16,
    held: Held,
) -> Result<Pending, ConnectError> {
    let Held { running, fenced, releasing } = held;
    let unreachable = |e: String| ConnectError::Unreachable(e);
    let mut stream =
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&opts.controller))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ConnectError::NoListener(e.to_string()),
                _ => unreachable(e.to_string()),
            })?;
    let _ = stream.set_nodelay(true);
    let local: Option<SocketAddr> = stream.local_addr().ok();
    let preamble = Preamble::Agent { node: opts.name.clone() };
    let handshake = wire::initiate(&mut stream, &preamble, &opts.key);
    let (mut sealer, mut opener) = match tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
    {
        Err(_) => return Err(unreachable("no answer to the handshake".into())),
        Ok(Ok(link)) => link,
        // The controller hangs up on a handshake with another key; a network that breaks shows
        // as an I/O error instead.
        Ok(Err(LinkError::Refused | LinkError::WrongKey)) => {
            return Err(ConnectError::Refused(
                "the controller hung up on the handshake: the agent and the controller do not share the same key (is --key-file the controller's key_file?)".into(),
            ));
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
    };
    let addr = opts
        .address
        .clone()
        .or_else(|| local.map(|a| a.ip().to_string()))
        .unwrap_or_else(|| opts.name.clone());
    let reg = FromAgent::Register(Registration {
        version: crate::protocol::VERSION,
        gangway_version: env!("CARGO_PKG_VERSION").to_string(),
        name: opts.name.clone(),
        topology: topology.to_string(),
        addr,
        port,
        running,
        root: nix::unistd::geteuid().is_root(),
        uid: Some(nix::unistd::geteuid().as_raw()),
        fenced,
        releasing,
    });
    let (mut rd, mut wr) = stream.into_split();
    // Before it leaves: the welcome's lease counts from no later than the controller heard it.
    let registered_at = Boot::now();
    wire::send(&mut wr, &mut sealer, &reg).await.map_err(|e| unreachable(e.to_string()))?;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        wire::recv::<_, ToAgent>(&mut rd, &mut opener),
    )
    .await
    .map_err(|_| unreachable("no answer to the registration".into()))?;
    match answer {
        Ok(Some(ToAgent::Welcome { lease_ms: 0, .. })) => Err(ConnectError::Refused(
            "the controller grants no lease (an older gangway); install the same gangway everywhere"
                .into(),
        )),
        Ok(Some(ToAgent::Welcome { heartbeat_ms, lease_ms })) => Ok(Pending {
            rd,
            wr,
            sealer,
            opener,
            heartbeat: Duration::from_millis(heartbeat_ms.max(50)),
            lease: Duration::from_millis(lease_ms),
            registered_at,
        }),
        Ok(Some(ToAgent::Refused { reason })) => Err(ConnectError::Refused(reason)),
        Ok(Some(other)) => Err(unreachable(format!("unexpected first message {other:?}"))),
        Ok(None) => Err(unreachable("the controller closed the connection".into())),
        Err(e) => Err(unreachable(e.to_string())),
    }
}
