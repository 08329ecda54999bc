//! The agent transport: a node's `gangway agent` starts the step's proxy, authorised by a step
//! credential the controller signed (no SSH inside a managed cluster).
//!
//! The exchange on one TCP connection: we send one request line in clear (the credential is
//! signed, not secret); the agent answers `ok` or `error <why>` in clear; then a Noise handshake
//! (`gangway_link`) on the step's link key, which the controller gave the launcher and the agent
//! derives from the credential, so an eavesdropper or a replayed credential gets nowhere. On the
//! encrypted link the agent's first message is `ok` or `error <why>` (it knows the job or not);
//! then our messages are the proxy's stdin (its start line holds the job's call-back key), and
//! the agent's are frames: `e<bytes>` (the proxy's stderr) and a last `x <code>` or `s <signal>`
//! when it ends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use gangway_link::{Opener, Psk};

use serde::{Deserialize, Serialize};

use super::error::BootstrapError;
use super::host::HostSpec;
use super::remote::{Feed, RemoteCommand, RemoteExit, RemoteStdin, Started, feed};
use super::transport::{Bootstrap, DEFAULT_CONNECT_TIMEOUT, check_argv};

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
pub const LAUNCH_VERSION: u32 = 2;

/// Longest clear answer line from an agent.
const ANSWER_MAX: usize = 4096;

/// Starts proxies through the nodes' agents.
#[derive(Debug, Clone)]
pub struct AgentBootstrap {
    /// The step credential, presented to every agent.
    pub credential: String,
    /// The step's link key (from the controller's step grant).
    pub link_key: Psk,
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
        let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
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
        let line = serde_json::to_string(&request)
            .map_err(|e| BootstrapError::Internal { reason: e.to_string() })?;
        let io = |e: std::io::Error| agent_err(Some(addr), format!("talking to the agent: {e}"));
        stream.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        let refused =
            |why: &str| agent_err(Some(addr), format!("the gangway agent refused: {why}"));
        match read_line(&mut stream).map_err(io)?.as_deref() {
            Some("ok") => {}
            None | Some("") => {
                return Err(agent_err(Some(addr), "the agent closed the connection".into()));
            }
            Some(other) => return Err(refused(other.strip_prefix("error ").unwrap_or(other))),
        }
        let link = |e: gangway_link::LinkError| {
            agent_err(Some(addr), format!("the secure link to the agent failed: {e}"))
        };
        let (sealer, mut opener) =
            gangway_link::blocking::initiate(&mut stream, &self.link_key, line.as_bytes())
                .map_err(link)?;
        let first = gangway_link::blocking::recv(&mut stream, &mut opener).map_err(link)?;
        match first.as_deref() {
            Some(b"ok") => {}
            None => return Err(agent_err(Some(addr), "the agent closed the connection".into())),
            Some(other) => {
                let text = String::from_utf8_lossy(other);
                return Err(refused(text.strip_prefix("error ").unwrap_or(&text)));
            }
        }
        stream.set_read_timeout(None).map_err(io)?;
        let (feed_halves, receivers) = feed();
        let reader = stream.try_clone().map_err(io)?;
        std::thread::Builder::new()
            .name(format!("agent {host} frames"))
            .spawn(move || read_frames(reader, opener, feed_halves))
            .map_err(|source| BootstrapError::Spawn { what: "an agent reader".into(), source })?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut to_stdin = stream.try_clone().map_err(io)?;
        let mut sealer = sealer;
        std::thread::Builder::new()
            .name(format!("agent {host} stdin"))
            .spawn(move || {
                while let Ok(data) = rx.recv() {
                    if gangway_link::blocking::send(&mut to_stdin, &mut sealer, &data).is_err() {
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

/// One `\n`-ended clear line, a byte at a time (what follows it is the handshake's); `None` at
/// end of stream or past [`ANSWER_MAX`].
fn read_line(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < ANSWER_MAX {
        if stream.read(&mut b)? == 0 {
            return Ok(None);
        }
        if b[0] == b'\n' {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
        line.push(b[0]);
    }
    Ok(None)
}

/// How the agent's frames read.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    Stderr(&'a [u8]),
    Exit(RemoteExit),
}

fn parse_frame(msg: &[u8]) -> Result<Frame<'_>, String> {
    match msg.split_first() {
        Some((b'e', data)) => Ok(Frame::Stderr(data)),
        Some((b'x', rest)) => std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .map(|c| Frame::Exit(RemoteExit::Code(c)))
            .ok_or_else(|| format!("bad exit frame {:?}", String::from_utf8_lossy(msg))),
        Some((b's', rest)) => {
            Ok(Frame::Exit(RemoteExit::Signal(String::from_utf8_lossy(rest).trim().to_string())))
        }
        _ => Err(format!("bad frame from the agent: {:?}", String::from_utf8_lossy(msg))),
    }
}

/// Reads the agent's frames until the exit frame or the end of the link.
fn read_frames(mut reader: TcpStream, mut opener: Opener, feed: Feed) {
    let end = loop {
        let msg = match gangway_link::blocking::recv(&mut reader, &mut opener) {
            Ok(Some(m)) => m,
            Ok(None) => break RemoteExit::ConnectionLost("the agent closed the connection".into()),
            Err(e) => break RemoteExit::ConnectionLost(e.to_string()),
        };
        match parse_frame(&msg) {
            Ok(Frame::Stderr(data)) => {
                let _ = feed.stderr.blocking_send(data.to_vec());
            }
            Ok(Frame::Exit(exit)) => break exit,
            Err(why) => break RemoteExit::ConnectionLost(why),
        }
    };
    drop(feed.stdout);
    drop(feed.stderr);
    let _ = feed.exit.send(Some(end));
}

/// The agent's side of a frame: the proxy's stderr bytes.
pub fn stderr_frame(data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(b'e');
    frame.extend_from_slice(data);
    frame
}

/// The agent's last frame: how the proxy ended.
pub fn exit_frame(exit: &RemoteExit) -> Vec<u8> {
    match exit {
        RemoteExit::Code(c) => format!("x {c}").into_bytes(),
        RemoteExit::Signal(s) => format!("s {s}").into_bytes(),
        _ => b"x 255".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        assert_eq!(parse_frame(&stderr_frame(b"oops\n")), Ok(Frame::Stderr(b"oops\n")));
        assert_eq!(parse_frame(&stderr_frame(b"")), Ok(Frame::Stderr(b"")));
        for exit in [RemoteExit::Code(0), RemoteExit::Code(3), RemoteExit::Signal("KILL".into())] {
            assert_eq!(parse_frame(&exit_frame(&exit)), Ok(Frame::Exit(exit.clone())));
        }
        assert!(parse_frame(b"").is_err());
        assert!(parse_frame(b"x nope").is_err());
        assert!(parse_frame(b"?").is_err());
    }
}
