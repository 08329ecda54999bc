//! The `gangway` commands' connection to the controller: the local socket (the caller is known
//! by its credentials) or TCP with a token, one JSON request and reply per line.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::controller::config::DEFAULT_SOCKET;
use crate::exit_code;
use crate::protocol::{Reply, Request};

/// Why the controller could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the controller at {target}: {reason}. Is `gangway controller` running? Set GANGWAY_CONTROLLER to its socket path or HOST:PORT"
    )]
    Unreachable { target: String, reason: String },
    #[error(
        "the controller at {target} needs a token over TCP: set GANGWAY_TOKEN (ask `gangway token` on the controller's machine)"
    )]
    NoToken { target: String },
    #[error("the connection to the controller broke: {0}")]
    Broken(String),
    #[error("the controller sent something unreadable: {0}")]
    Garbled(String),
}

impl ClientError {
    /// The exit code a command ends with for this error.
    pub fn exit_code(&self) -> u8 {
        exit_code::NO_CONTROLLER
    }
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

/// A connection to the controller.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<Box<dyn ReadStream>>,
    writer: Box<dyn ReadStream>,
    pub target: String,
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
        let stream: Box<dyn ReadStream> = if target.starts_with('/') {
            Box::new(UnixStream::connect(target).map_err(unreachable)?)
        } else {
            let token = std::env::var("GANGWAY_JOB_TOKEN")
                .ok()
                .or_else(|| std::env::var("GANGWAY_TOKEN").ok())
                .or_else(|| {
                    let home = std::env::var_os("HOME")?;
                    std::fs::read_to_string(PathBuf::from(home).join(".config/gangway/token")).ok()
                })
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| ClientError::NoToken { target: target.to_string() })?;
            let mut s = TcpStream::connect(target).map_err(unreachable)?;
            let _ = s.set_nodelay(true);
            s.write_all(format!("TOKEN {}\n", token.trim()).as_bytes()).map_err(unreachable)?;
            Box::new(s)
        };
        let writer = stream.duplicate().map_err(unreachable)?;
        Ok(Client { reader: BufReader::new(stream), writer, target: target.to_string() })
    }

    /// Sends a request.
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let mut line =
            serde_json::to_string(request).map_err(|e| ClientError::Garbled(e.to_string()))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(|e| ClientError::Broken(e.to_string()))
    }

    /// The next reply (blocking).
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(ClientError::Broken("the controller closed the connection".into())),
            Ok(_) => serde_json::from_str(line.trim_end())
                .map_err(|e| ClientError::Garbled(format!("{e}: {line}"))),
            Err(e) => Err(ClientError::Broken(e.to_string())),
        }
    }

    /// One request, one reply.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.send(request)?;
        self.recv()
    }

    /// Bounds how long [`Client::recv`] blocks (`None`: forever).
    pub fn set_timeout(&self, limit: Option<std::time::Duration>) {
        self.writer.set_timeout(limit);
    }

    /// A handle that closes the connection from another thread.
    pub fn closer(&self) -> Option<Box<dyn ReadStream>> {
        self.writer.duplicate().ok()
    }
}

/// Connects, asks, and turns the answer into an exit code: prints errors, hands the rest over.
pub fn ask(request: &Request) -> Result<Reply, u8> {
    let mut client = Client::connect().map_err(|e| {
        eprintln!("gangway: error: {e}");
        e.exit_code()
    })?;
    match client.call(request) {
        Ok(Reply::Error { code, message }) => {
            for line in message.lines() {
                eprintln!("gangway: error: {line}");
            }
            Err(code)
        }
        Ok(reply) => Ok(reply),
        Err(e) => {
            eprintln!("gangway: error: {e}");
            Err(e.exit_code())
        }
    }
}
