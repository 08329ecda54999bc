//! The agent transport: a node's `gangway agent` starts the step's proxy, authorised by a step
//! credential the controller signed (no SSH inside a managed cluster).
//!
//! The exchange on one TCP connection: we send one request line; the agent answers `ok` or
//! `error <why>`; from then on our bytes are the proxy's stdin (the agent hands the socket to it)
//! and the agent sends frames: `e <len>\n<bytes>` (the proxy's stderr) and a last `x <code>` or
//! `s <signal>` when it ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Bootstrap, BootstrapError, DEFAULT_CONNECT_TIMEOUT, Feed, HostSpec, RemoteCommand, RemoteExit,
    RemoteStdin, Started, check_argv, feed,
};

/// The agents' default port for step launches.
pub const DEFAULT_AGENT_PORT: u16 = 7718;

/// The request line: which proxy of which step to start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LaunchRequest {
    /// Protocol version, so a mismatch is named instead of misread.
    pub version: u32,
    /// The credential the controller signed for this step (opaque here).
    pub credential: String,
    /// The proxy's node id within the step.
    pub node_id: u32,
}

/// The version of [`LaunchRequest`] this build speaks.
pub const LAUNCH_VERSION: u32 = 1;

/// Starts proxies through the nodes' agents.
#[derive(Debug, Clone)]
pub struct AgentBootstrap {
    /// The step credential, presented to every agent.
    pub credential: String,
    /// Node name -> the address its agent listens on (names may not resolve here).
    pub hosts: std::collections::HashMap<String, String>,
    pub connect_timeout: Option<Duration>,
}

impl Bootstrap for AgentBootstrap {
    fn start(&self, target: &HostSpec, argv: &[String]) -> Result<RemoteCommand, BootstrapError> {
        check_argv(argv)?;
        // The agent runs its own gangway; only the node id of the command line matters to it.
        let node_id = argv
            .iter()
            .position(|a| a == "--node")
            .and_then(|i| argv.get(i + 1))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| BootstrapError::InvalidArgument {
                reason: "the agent transport only starts gangway proxies (no --node N)".into(),
            })?;
        let host = target.host.clone();
        let port = target.port.unwrap_or(DEFAULT_AGENT_PORT);
        let agent_err = |addr: Option<SocketAddr>, reason: String| BootstrapError::Agent {
            host: host.clone(),
            addr,
            reason,
        };
        let reach = self.hosts.get(&host).cloned().unwrap_or_else(|| host.clone());
        let addr = (reach.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| BootstrapError::Unresolvable {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| BootstrapError::Unresolvable {
                host: host.clone(),
                reason: "no address".into(),
            })?;
        let timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            agent_err(
                Some(addr),
                format!(
                    "cannot reach the gangway agent: {e}; is `gangway agent` running on the node?"
                ),
            )
        })?;
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().map_err(|e| agent_err(Some(addr), e.to_string()))?;
        let request =
            LaunchRequest { version: LAUNCH_VERSION, credential: self.credential.clone(), node_id };
        let mut line = serde_json::to_string(&request)
            .map_err(|e| BootstrapError::Internal { reason: e.to_string() })?;
        line.push('\n');
        let io = |e: std::io::Error| agent_err(Some(addr), format!("talking to the agent: {e}"));
        (&stream).write_all(line.as_bytes()).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
        let mut answer = String::new();
        reader.read_line(&mut answer).map_err(io)?;
        match answer.trim_end() {
            "ok" => {}
            "" => return Err(agent_err(Some(addr), "the agent closed the connection".into())),
            other => {
                let why = other.strip_prefix("error ").unwrap_or(other);
                return Err(agent_err(Some(addr), format!("the gangway agent refused: {why}")));
            }
        }
        stream.set_read_timeout(None).map_err(io)?;
        let (feed_halves, receivers) = feed();
        std::thread::Builder::new()
            .name(format!("agent {host} frames"))
            .spawn(move || read_frames(reader, feed_halves))
            .map_err(|source| BootstrapError::Spawn { what: "an agent reader".into(), source })?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut to_stdin = stream.try_clone().map_err(io)?;
        std::thread::Builder::new()
            .name(format!("agent {host} stdin"))
            .spawn(move || {
                while let Ok(data) = rx.recv() {
                    if to_stdin.write_all(&data).is_err() {
                        return;
                    }
                }
                let _ = to_stdin.shutdown(Shutdown::Write);
            })
            .map_err(|source| BootstrapError::Spawn { what: "an agent writer".into(), source })?;
        let closer = stream;
        Ok(receivers.into_command(Started {
            host: target.host.clone(),
            program: argv[0].clone(),
            local_addr,
            peer_addr: addr,
            stdin: RemoteStdin { tx: Some(tx), wake: None },
            terminate: Box::new(move || {
                let _ = closer.shutdown(Shutdown::Both);
            }),
        }))
    }
}

/// Reads the agent's frames until the exit frame or the end of the connection.
fn read_frames(mut reader: BufReader<TcpStream>, feed: Feed) {
    let mut header = String::new();
    let end = loop {
        header.clear();
        match reader.read_line(&mut header) {
            Ok(0) => break RemoteExit::ConnectionLost("the agent closed the connection".into()),
            Err(e) => break RemoteExit::ConnectionLost(e.to_string()),
            Ok(_) => {}
        }
        let (kind, value) = header.trim_end().split_once(' ').unwrap_or((header.trim_end(), ""));
        match kind {
            "e" => {
                // Agents send at most 16 KiB at a time; anything far bigger is not a frame.
                let Some(len) = value.parse::<usize>().ok().filter(|l| *l <= 1 << 20) else {
                    break RemoteExit::ConnectionLost(format!(
                        "bad frame from the agent: {header:?}"
                    ));
                };
                let mut data = vec![0; len];
                if reader.read_exact(&mut data).is_err() {
                    break RemoteExit::ConnectionLost("the agent closed mid-frame".into());
                }
                let _ = feed.stderr.blocking_send(data);
            }
            "x" => match value.parse() {
                Ok(code) => break RemoteExit::Code(code),
                Err(_) => break RemoteExit::ConnectionLost(format!("bad exit frame {header:?}")),
            },
            "s" => break RemoteExit::Signal(value.to_string()),
            _ => break RemoteExit::ConnectionLost(format!("bad frame from the agent: {header:?}")),
        }
    };
    drop(feed.stdout);
    drop(feed.stderr);
    let _ = feed.exit.send(Some(end));
}

/// The agent's side of a frame: the proxy's stderr bytes.
pub fn stderr_frame(data: &[u8]) -> Vec<u8> {
    let mut frame = format!("e {}\n", data.len()).into_bytes();
    frame.extend_from_slice(data);
    frame
}

/// The agent's last frame: how the proxy ended.
pub fn exit_frame(exit: &RemoteExit) -> Vec<u8> {
    match exit {
        RemoteExit::Code(c) => format!("x {c}\n").into_bytes(),
        RemoteExit::Signal(s) => format!("s {s}\n").into_bytes(),
        _ => b"x 255\n".to_vec(),
    }
}
