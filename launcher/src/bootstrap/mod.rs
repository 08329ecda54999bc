//! Starting one command on one node: the `Bootstrap` trait, the host spec, the handle to a running
//! remote command, and the error kinds every transport maps its failures onto.
//!
//! Three transports, one file each, chosen once and passed as a value: [`ssh::Ssh2Bootstrap`]
//! (libssh2 in-process), [`openssh::OpenSshBootstrap`] (the system `ssh` binary) and
//! [`local::LocalBootstrap`] (plain spawn). Every transport runs its blocking work on its own OS
//! threads and hands results to async code through tokio channels, so a `current_thread` runtime
//! is never blocked once [`start_async`] is used.

pub mod agent;
pub mod local;
pub mod openssh;
pub mod ssh;
pub mod ssh_config;

mod child;
mod error;
mod quote;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use child::exit_of;
pub use error::{BootstrapError, HostKeyId};
pub use quote::{remote_command_line, shell_quote};

/// Connect timeout used when neither the caller nor an ssh config sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Capacity, in chunks, of the stdout and stderr channels of a [`RemoteCommand`].
const OUTPUT_CHANNEL_CHUNKS: usize = 64;

/// Starts a command on a node.
pub trait Bootstrap: Send + Sync + fmt::Debug {
    /// Starts `argv` on the host; Ok once the remote command runs, Err within the connect timeout.
    ///
    /// This blocks the calling thread for up to the connect timeout: from async code use
    /// [`start_async`], which runs it on a thread of its own.
    fn start(&self, target: &HostSpec, argv: &[String]) -> Result<RemoteCommand, BootstrapError>;
}

/// Runs [`Bootstrap::start`] on a fresh OS thread and awaits it, so many nodes can be started in
/// parallel from one `current_thread` runtime without blocking it.
pub async fn start_async(
    bootstrap: Arc<dyn Bootstrap>,
    target: HostSpec,
    argv: Vec<String>,
) -> Result<RemoteCommand, BootstrapError> {
    let (tx, rx) = oneshot::channel();
    let name = format!("bootstrap {}", target.host);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _ = tx.send(bootstrap.start(&target, &argv));
        })
        .map_err(|source| BootstrapError::Spawn { what: "a bootstrap thread".into(), source })?;
    rx.await.map_err(|_| BootstrapError::Internal {
        reason: "the bootstrap thread ended without an answer".into(),
    })?
}

/// Where to start a command: `[user@]host[:port]`, with `[v6addr]:port` for IPv6 literals.
///
/// `user` and `port` given here win over an ssh config; unset, the config (or the defaults:
/// the local user name, port 22) decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostSpec {
    /// Host name, alias from an ssh config, or address.
    pub host: String,
    /// Remote user name.
    pub user: Option<String>,
    /// TCP port of the node's sshd.
    pub port: Option<u16>,
}

impl HostSpec {
    /// A spec for `host` with no user or port.
    pub fn new(host: impl Into<String>) -> HostSpec {
        HostSpec { host: host.into(), user: None, port: None }
    }
}

impl FromStr for HostSpec {
    type Err = BootstrapError;

    fn from_str(spec: &str) -> Result<HostSpec, BootstrapError> {
        let bad = |reason: &str| BootstrapError::InvalidHostSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec.is_empty() {
            return Err(bad("it is empty"));
        }
        if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains white space or control characters"));
        }
        let (user, rest) = match spec.rsplit_once('@') {
            Some(("", _)) => return Err(bad("the user name before '@' is empty")),
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) =
                inner.split_once(']').ok_or_else(|| bad("'[' without a closing ']'"))?;
            match after {
                "" => (addr, None),
                p => (
                    addr,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("expected ':port' after ']'"))?),
                ),
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 literal: its colons are not a port separator.
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host name is empty"));
        }
        // A leading '-' would be read as an option by the ssh binary.
        if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(bad("a host or user name may not start with '-'"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
                Ok(n) => Some(n),
            },
        };
        Ok(HostSpec { host: host.to_string(), user, port })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let v6 = self.host.contains(':');
        match (self.port, v6) {
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (name without `SIG`, e.g. `TERM`, or a number).
    Signal(String),
    /// We asked it to end ([`RemoteCommand::terminate`]) and the transport reported no status.
    Terminated,
    /// The connection to the node broke before an exit status arrived.
    ConnectionLost(String),
}

impl RemoteExit {
    /// True for `Code(0)`.
    pub fn success(&self) -> bool {
        *self == RemoteExit::Code(0)
    }
}

impl fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteExit::Code(c) => write!(f, "exit code {c}"),
            RemoteExit::Signal(s) => write!(f, "killed by signal {s}"),
            RemoteExit::Terminated => f.write_str("terminated"),
            RemoteExit::ConnectionLost(why) => write!(f, "connection lost: {why}"),
        }
    }
}

/// The writing end of a remote command's stdin. Dropping it (or [`RemoteStdin::close`]) sends EOF.
#[derive(Debug)]
pub struct RemoteStdin {
    tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    wake: Option<Arc<child::WakePipe>>,
}

impl RemoteStdin {
    /// Queues `data` for the remote stdin without blocking. Err once the command's stdin is gone.
    pub fn write(&self, data: Vec<u8>) -> Result<(), BootstrapError> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(data).is_ok());
        if let Some(w) = &self.wake {
            w.wake();
        }
        if sent { Ok(()) } else { Err(BootstrapError::StdinClosed) }
    }

    /// Sends EOF to the remote stdin.
    pub fn close(self) {}
}

impl Drop for RemoteStdin {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = &self.wake {
            w.wake();
        }
    }
}

/// Asks a transport to stop its command; called at most once per command.
type Terminate = Box<dyn Fn() + Send + Sync>;

/// A command running on a node.
///
/// Output arrives as chunks (not lines) on `stdout` and `stderr`; consume both, or drop the
/// receiver you do not want (its data is then discarded): a full channel holds the transport's
/// reader back, which is how flow control reaches the remote side. `wait`/`finish` give the end.
pub struct RemoteCommand {
    /// The name the command was started on (the host spec's host, as given).
    pub host: String,
    /// Our address as the node sees this connection: where a proxy on it must call back.
    pub local_addr: SocketAddr,
    /// The node's address and port on this connection.
    pub peer_addr: SocketAddr,
    /// Chunks of the command's standard output; closed at its EOF.
    pub stdout: mpsc::Receiver<Vec<u8>>,
    /// Chunks of the command's standard error; closed at its EOF.
    pub stderr: mpsc::Receiver<Vec<u8>>,
    /// The command's standard input; `None` once taken.
    pub stdin: Option<RemoteStdin>,
    program: String,
    exit: watch::Receiver<Option<RemoteExit>>,
    terminate: Terminate,
}

impl fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCommand")
            .field("host", &self.host)
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("program", &self.program)
            .field("exit", &*self.exit.borrow())
            .finish_non_exhaustive()
    }
}

impl RemoteCommand {
    /// Waits for the command to end (cancel-safe: call again after a dropped future).
    pub async fn wait(&mut self) -> RemoteExit {
        let got = match self.exit.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        // None: the transport thread is gone without a word; treat it as a broken connection.
        got.or_else(|| self.exit.borrow().clone())
            .unwrap_or_else(|| RemoteExit::ConnectionLost("the transport thread ended".into()))
    }

    /// The exit status if the command has ended, without waiting.
    pub fn try_exit(&self) -> Option<RemoteExit> {
        self.exit.borrow().clone()
    }

    /// Waits for the end and turns the failures that are the bootstrap's business into errors:
    /// 127 (program not found), 126 (not executable), a lost connection. Any other exit is Ok.
    pub async fn finish(&mut self) -> Result<RemoteExit, BootstrapError> {
        let exit = self.wait().await;
        match &exit {
            RemoteExit::Code(127) => Err(BootstrapError::ProgramNotFound {
                host: self.host.clone(),
                program: self.program.clone(),
            }),
            RemoteExit::Code(126) => Err(BootstrapError::NotExecutable {
                host: self.host.clone(),
                program: self.program.clone(),
            }),
            RemoteExit::ConnectionLost(reason) => Err(BootstrapError::ConnectionLost {
                host: self.host.clone(),
                addr: Some(self.peer_addr),
                reason: reason.clone(),
            }),
            _ => Ok(exit),
        }
    }

    /// Asks the command to end, without waiting: local commands get SIGTERM (their process
    /// group); over ssh2 the channel is closed and over openssh the `ssh` client is killed, so
    /// the remote command sees EOF on stdin (a proxy must exit on it) and SIGPIPE on output.
    pub fn terminate(&self) {
        (self.terminate)();
    }
}

/// The halves a transport thread keeps to feed a [`RemoteCommand`].
#[derive(Debug)]
pub(crate) struct Feed {
    pub stdout: mpsc::Sender<Vec<u8>>,
    pub stderr: mpsc::Sender<Vec<u8>>,
    pub exit: watch::Sender<Option<RemoteExit>>,
}

/// The receiving halves, turned into a [`RemoteCommand`] by [`Receivers::into_command`].
#[derive(Debug)]
pub(crate) struct Receivers {
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
    exit: watch::Receiver<Option<RemoteExit>>,
}

pub(crate) fn feed() -> (Feed, Receivers) {
    let (out_tx, out_rx) = mpsc::channel(OUTPUT_CHANNEL_CHUNKS);
    let (err_tx, err_rx) = mpsc::channel(OUTPUT_CHANNEL_CHUNKS);
    let (exit_tx, exit_rx) = watch::channel(None);
    (
        Feed { stdout: out_tx, stderr: err_tx, exit: exit_tx },
        Receivers { stdout: out_rx, stderr: err_rx, exit: exit_rx },
    )
}

/// Everything a transport knows once its command runs.
pub(crate) struct Started {
    pub host: String,
    pub program: String,
    pub local_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub stdin: RemoteStdin,
    pub terminate: Terminate,
}

impl Receivers {
    pub(crate) fn into_command(self, s: Started) -> RemoteCommand {
        RemoteCommand {
            host: s.host,
            local_addr: s.local_addr,
            peer_addr: s.peer_addr,
            stdout: self.stdout,
            stderr: self.stderr,
            stdin: Some(s.stdin),
            program: s.program,
            exit: self.exit,
            terminate: s.terminate,
        }
    }
}

/// The first stdout line the wrapper script prints on the node, before anything of the command.
/// It starts with a control character so no program's own output is mistaken for it.
pub(crate) const MARKER: &str = "\u{1e}gangway-bootstrap";

/// What the first line of the wrapper said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MarkerLine {
    /// The program exists and is being exec'd; `SSH_CONNECTION` as the node saw it.
    Running { ssh_connection: String },
    /// `command -v` did not find the program.
    Missing,
}

pub(crate) fn parse_marker(line: &str) -> Option<MarkerLine> {
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(MARKER)?;
    let rest = rest.strip_prefix(' ')?;
    if rest == "missing" {
        return Some(MarkerLine::Missing);
    }
    let conn = rest.strip_prefix("ok")?;
    Some(MarkerLine::Running { ssh_connection: conn.trim().to_string() })
}

/// Parses `SSH_CONNECTION` (`client_ip client_port server_ip server_port`) into
/// (our address as the node sees it, the node's address).
pub fn parse_ssh_connection(value: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut it = value.split_whitespace();
    let cip: IpAddr = it.next()?.parse().ok()?;
    let cport: u16 = it.next()?.parse().ok()?;
    let sip: IpAddr = it.next()?.parse().ok()?;
    let sport: u16 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((SocketAddr::new(cip, cport), SocketAddr::new(sip, sport)))
}

/// Checks argv before any connection is made: non-empty, no NUL bytes (they cannot cross exec).
pub(crate) fn check_argv(argv: &[String]) -> Result<&str, BootstrapError> {
    let program = argv.first().ok_or_else(|| BootstrapError::InvalidArgument {
        reason: "no command to start (argv is empty)".into(),
    })?;
    if program.is_empty() {
        return Err(BootstrapError::InvalidArgument { reason: "the program name is empty".into() });
    }
    if let Some(bad) = argv.iter().find(|a| a.contains('\0')) {
        return Err(BootstrapError::InvalidArgument {
            reason: format!("argument {bad:?} contains a NUL byte"),
        });
    }
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> HostSpec {
        s.parse().expect("valid spec")
    }

    #[test]
    fn host_spec_forms() {
        assert_eq!(spec("node1"), HostSpec::new("node1"));
        let s = spec("alice@node2:2222");
        assert_eq!(
            (s.host.as_str(), s.user.as_deref(), s.port),
            ("node2", Some("alice"), Some(2222))
        );
        assert_eq!(spec("[fe80::1]:22").host, "fe80::1");
        assert_eq!(spec("[fe80::1]:22").port, Some(22));
        assert_eq!(spec("bob@[::1]").host, "::1");
        assert_eq!(spec("::1").host, "::1");
        assert_eq!(spec("::1").port, None);
        assert_eq!(spec("a@b@c").user.as_deref(), Some("a@b"));
        for s in ["alice@node2:2222", "[::1]:22", "node1", "u@[fe80::1]:8"] {
            assert_eq!(spec(s).to_string(), s);
        }
    }

    #[test]
    fn host_spec_rejects() {
        for bad in [
            "",
            "@h",
            "u@",
            "h:",
            "h:0",
            "h:70000",
            "h:x",
            "-oProxyCommand=x",
            "-x@h",
            "a b",
            "[::1",
            "[::1]x",
            ":22",
        ] {
            let err = bad.parse::<HostSpec>().expect_err(bad);
            assert!(err.to_string().contains("host"), "{bad}: {err}");
        }
    }

    #[test]
    fn marker_lines() {
        assert_eq!(
            parse_marker("\u{1e}gangway-bootstrap ok 10.0.0.254 4711 10.0.0.2 22\n"),
            Some(MarkerLine::Running { ssh_connection: "10.0.0.254 4711 10.0.0.2 22".into() })
        );
        assert_eq!(parse_marker("\u{1e}gangway-bootstrap missing"), Some(MarkerLine::Missing));
        assert_eq!(parse_marker("gangway-bootstrap ok"), None);
        assert_eq!(parse_marker("hello"), None);
    }

    #[test]
    fn ssh_connection_variable() {
        let (l, p) = parse_ssh_connection("10.77.0.254 51234 10.77.0.2 22").expect("parses");
        assert_eq!(l.to_string(), "10.77.0.254:51234");
        assert_eq!(p.to_string(), "10.77.0.2:22");
        let (l, _) = parse_ssh_connection("fe80::1 1 fe80::2 22").expect("v6");
        assert_eq!(l.to_string(), "[fe80::1]:1");
        assert!(parse_ssh_connection("").is_none());
        assert!(parse_ssh_connection("1.2.3.4 x 1.2.3.5 22").is_none());
        assert!(parse_ssh_connection("1.2.3.4 1 1.2.3.5 22 9").is_none());
    }

    #[test]
    fn argv_checks() {
        assert!(check_argv(&[]).is_err());
        assert!(check_argv(&[String::new()]).is_err());
        assert!(check_argv(&["a".into(), "b\0".into()]).is_err());
        assert_eq!(check_argv(&["true".into()]).ok(), Some("true"));
    }
}
