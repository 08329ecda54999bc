//! A command running on a node, as every transport hands it over: [`RemoteCommand`] (output
//! chunks, stdin, the exit as [`RemoteExit`], a way to stop it), and the halves a transport's
//! threads keep to feed it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::error::BootstrapError;
use super::wake::WakePipe;

/// Capacity, in chunks, of the stdout and stderr channels of a [`RemoteCommand`].
const OUTPUT_CHANNEL_CHUNKS: usize = 64;

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
    /// To the transport's writer thread; `None` once closed.
    pub(super) tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    /// Wakes the transport's thread when it polls rather than blocks on `tx`.
    pub(super) wake: Option<Arc<WakePipe>>,
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
