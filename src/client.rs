//! The `gangway` commands' connection to the controller, one JSON request or reply at a time:
//! a local socket (the controller's, or a node's agent, which vouches for us; the kernel tells
//! either who we are), checked to be served by root or by ourselves; or TCP with a user's token,
//! where the token is proved in an encrypted handshake and never sent (see [`crate::protocol::wire`]).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use gangway_link::{LinkError, Opener, Sealer};

use crate::auth::UserToken;
use crate::controller::config::DEFAULT_SOCKET;
use crate::protocol::wire::Preamble;
use crate::protocol::{Reply, Request};

/// Why the controller could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the controller at {target}: {reason}. Is `gangway controller` running? Set GANGWAY_CONTROLLER to its socket path or HOST:PORT"
    )]
    Unreachable { target: String, reason: String },
    #[error(
        "the controller at {target} needs a token over TCP: set GANGWAY_TOKEN or write ~/.config/gangway/token (run `gangway token` on a cluster node or the controller's machine)"
    )]
    NoToken { target: String },
    #[error("{source}: fix GANGWAY_TOKEN or ~/.config/gangway/token")]
    BadToken {
        #[source]
        source: crate::auth::AuthError,
    },
    #[error(
        "the controller at {target} refused your token (made with another cluster key, edited, or not a gangway token): get a new one with `gangway token`"
    )]
    TokenRefused { target: String },
    #[error(
        "the socket {target} is served by uid {uid}, neither root nor you: refusing to talk to it (someone else's process may be impersonating the controller); check GANGWAY_CONTROLLER"
    )]
    Impostor { target: String, uid: u32 },
    #[error("the connection to the controller broke: {0}")]
    Broken(String),
    #[error("the controller sent something unreadable: {0}")]
    Garbled(String),
}

/// Where the controller is, from `GANGWAY_CONTROLLER` or the default socket.
pub fn target() -> Option<String> {
    if let Ok(t) = std::env::var("GANGWAY_CONTROLLER")
        && !t.is_empty()
    {
        return Some(t);
    }
    PathBuf::from(DEFAULT_SOCKET).exists().then(|| DEFAULT_SOCKET.to_string())
}

/// A stream both halves of a [`Client`] can use.
pub trait ReadStream: std::io::Read + std::io::Write + Send + std::fmt::Debug {
    /// A second handle on the same connection.
    fn duplicate(&self) -> std::io::Result<Box<dyn ReadStream>>;
    /// Closes both directions (wakes a blocked reader).
    fn close(&self);
    /// Bounds how long a read blocks (`None`: forever).
    fn set_timeout(&self, limit: Option<std::time::Duration>);
}

impl ReadStream for UnixStream {
    fn duplicate(&self) -> std::io::Result<Box<dyn ReadStream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn set_timeout(&self, limit: Option<std::time::Duration>) {
        let _ = self.set_read_timeout(limit);
    }
}

impl ReadStream for TcpStream {
    fn duplicate(&self) -> std::io::Result<Box<dyn ReadStream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn set_timeout(&self, limit: Option<std::time::Duration>) {
        let _ = self.set_read_timeout(limit);
    }
}

/// The sending half of a connection.
#[derive(Debug)]
pub struct ClientTx {
    stream: Box<dyn ReadStream>,
    /// Set on TCP: each request is one encrypted message.
    sealer: Option<Sealer>,
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct ClientRx {
    reader: BufReader<Box<dyn ReadStream>>,
    opener: Option<Opener>,
}

/// A connection to the controller.
#[derive(Debug)]
pub struct Client {
    tx: ClientTx,
    rx: ClientRx,
    pub target: String,
}

impl ClientTx {
    /// Sends a request.
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Garbled(e.to_string()))?;
        let broken = |e: String| ClientError::Broken(e);
        match &mut self.sealer {
            Some(sealer) => gangway_link::blocking::send(&mut self.stream, sealer, &body)
                .map_err(|e| broken(e.to_string())),
            None => {
                let mut line = body;
                line.push(b'\n');
                self.stream.write_all(&line).map_err(|e| broken(e.to_string()))
            }
        }
    }

    /// Closes the connection (wakes a reader blocked on the other half).
    pub fn close(&self) {
        self.stream.close();
    }
}

impl ClientRx {
    /// The next reply (blocking).
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        let closed = || ClientError::Broken("the controller closed the connection".into());
        match &mut self.opener {
            Some(opener) => match gangway_link::blocking::recv(&mut self.reader, opener) {
                Ok(Some(body)) => serde_json::from_slice(&body).map_err(|e| {
                    ClientError::Garbled(format!("{e}: {}", String::from_utf8_lossy(&body)))
                }),
                Ok(None) => Err(closed()),
                Err(e) => Err(ClientError::Broken(e.to_string())),
            },
            None => {
                let mut line = String::new();
                match self.reader.read_line(&mut line) {
                    Ok(0) => Err(closed()),
                    Ok(_) => serde_json::from_str(line.trim_end())
                        .map_err(|e| ClientError::Garbled(format!("{e}: {line}"))),
                    Err(e) => Err(ClientError::Broken(e.to_string())),
                }
            }
        }
    }

    /// Bounds how long [`ClientRx::recv`] blocks (`None`: forever).
    pub fn set_timeout(&self, limit: Option<std::time::Duration>) {
        self.reader.get_ref().set_timeout(limit);
    }
}

impl Client {
    /// Connects to the controller (see [`target`]).
    pub fn connect() -> Result<Client, ClientError> {
        let target = target().ok_or_else(|| ClientError::Unreachable {
            target: DEFAULT_SOCKET.into(),
            reason: "no such socket".into(),
        })?;
        Client::connect_to(&target)
    }

    /// Connects to a socket path or HOST:PORT.
    pub fn connect_to(target: &str) -> Result<Client, ClientError> {
        let unreachable = |e: std::io::Error| ClientError::Unreachable {
            target: target.to_string(),
            reason: e.to_string(),
        };
        let (stream, sealer, opener): (Box<dyn ReadStream>, _, _) = if target.starts_with('/') {
            let s = UnixStream::connect(target).map_err(unreachable)?;
            check_server(&s, target)?;
            (Box::new(s), None, None)
        } else {
            let token = user_token(target)?;
            let mut s = TcpStream::connect(target).map_err(unreachable)?;
            let _ = s.set_nodelay(true);
            let preamble = Preamble::User { uid: token.uid, expiry: token.expiry };
            let line = preamble.line();
            s.write_all(format!("{line}\n").as_bytes()).map_err(unreachable)?;
            let (sealer, opener) =
                gangway_link::blocking::initiate(&mut s, &token.psk, line.as_bytes()).map_err(
                    |e| match e {
                        LinkError::Refused | LinkError::WrongKey => {
                            ClientError::TokenRefused { target: target.to_string() }
                        }
                        other => ClientError::Unreachable {
                            target: target.to_string(),
                            reason: other.to_string(),
                        },
                    },
                )?;
            (Box::new(s), Some(sealer), Some(opener))
        };
        let writer = stream.duplicate().map_err(unreachable)?;
        Ok(Client {
            tx: ClientTx { stream: writer, sealer },
            rx: ClientRx { reader: BufReader::new(stream), opener },
            target: target.to_string(),
        })
    }

    /// Sends a request.
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        self.tx.send(request)
    }

    /// The next reply (blocking).
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        self.rx.recv()
    }

    /// One request, one reply.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.send(request)?;
        self.recv()
    }

    /// Bounds how long [`Client::recv`] blocks (`None`: forever).
    pub fn set_timeout(&self, limit: Option<std::time::Duration>) {
        self.rx.set_timeout(limit);
    }

    /// The two halves, for a reader thread beside a writer.
    pub fn split(self) -> (ClientTx, ClientRx) {
        (self.tx, self.rx)
    }
}

/// The user's token: `GANGWAY_TOKEN`, else `~/.config/gangway/token`.
fn user_token(target: &str) -> Result<UserToken, ClientError> {
    let text = std::env::var("GANGWAY_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            std::fs::read_to_string(PathBuf::from(home).join(".config/gangway/token")).ok()
        })
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ClientError::NoToken { target: target.to_string() })?;
    text.parse().map_err(|source| ClientError::BadToken { source })
}

/// Refuses a socket whose server is neither root nor us: whoever else listens there could read
/// our scripts and answer in the controller's name.
fn check_server(stream: &UnixStream, target: &str) -> Result<(), ClientError> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| ClientError::Unreachable {
            target: target.to_string(),
            reason: format!("cannot tell who serves the socket: {e}"),
        })?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(ClientError::Impostor { target: target.to_string(), uid: cred.uid() })
    }
}
