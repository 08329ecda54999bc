//! Plumbing shared by the transports that run a local child process (`local`, `openssh`): reader,
//! writer and waiter threads that bridge the child's pipes to tokio channels.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::error::BootstrapError;
use super::remote::{Feed, Receivers, RemoteExit, RemoteStdin, feed};
use crate::exit_status::RankStatus;

/// How much of a child's stderr is kept for turning an early failure into an error message.
const STDERR_KEEP: usize = 16 * 1024;
const READ_CHUNK: usize = 32 * 1024;

/// The child's stderr as far as it has been read, and whether it reached EOF.
#[derive(Debug, Default)]
pub(crate) struct StderrCopy {
    state: Mutex<(Vec<u8>, bool)>,
    done: Condvar,
}

impl StderrCopy {
    /// Waits until EOF or `deadline`, then returns what was kept.
    pub(crate) fn wait_text(&self, deadline: Instant) -> String {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !g.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self.done.wait_timeout(g, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        String::from_utf8_lossy(&g.0).into_owned()
    }
}

/// A child process with its pipes bridged to channels.
pub(crate) struct RunningChild {
    pub pid: u32,
    pub receivers: Receivers,
    /// The first stdout line when started with `first_line`: `Some(line)`, or `None` at EOF.
    pub first_line: Option<std::sync::mpsc::Receiver<Option<String>>>,
    pub stderr_copy: Arc<StderrCopy>,
    pub exit: watch::Receiver<Option<RemoteExit>>,
    pub stdin: RemoteStdin,
    /// True once the child is reaped: its pid may then belong to someone else.
    reaped: Arc<Mutex<bool>>,
}

impl RunningChild {
    /// SIGTERM to the child's process group, unless it is already reaped.
    pub(crate) fn terminator(&self) -> Box<dyn Fn() + Send + Sync> {
        let reaped = Arc::clone(&self.reaped);
        let pid = self.pid;
        Box::new(move || {
            let gone = reaped.lock().unwrap_or_else(PoisonError::into_inner);
            if !*gone && let Ok(p) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(p), Signal::SIGTERM);
            }
        })
    }

    /// Waits up to `deadline` for the exit status without an async runtime.
    pub(crate) fn wait_exit_blocking(&self, deadline: Instant) -> Option<RemoteExit> {
        loop {
            if let Some(e) = self.exit.borrow().clone() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "only Bootstrap::start waits here, which blocks by contract (async callers go through start_async, on a thread of its own)"
            )]
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Maps a wait status onto a [`RemoteExit`] (signals by name, `TERM`).
pub fn exit_of(status: ExitStatus) -> RemoteExit {
    match RankStatus::of(status) {
        Some(RankStatus::Exited(code)) => RemoteExit::Code(code),
        Some(RankStatus::Signaled(n)) => RemoteExit::Signal(signal_name(n)),
        None => RemoteExit::ConnectionLost(format!("unknown wait status {status}")),
    }
}

/// `TERM` for 15; the number when the signal has no name here.
pub(crate) fn signal_name(n: i32) -> String {
    Signal::try_from(n)
        .map_or_else(|_| n.to_string(), |s| s.as_str().trim_start_matches("SIG").to_string())
}

/// Spawns `cmd` in its own process group with piped stdio and starts the bridge threads.
/// With `first_line`, stdout's first line is handed over separately (the wrapper's marker).
pub(crate) fn spawn(
    mut cmd: Command,
    what: &str,
    first_line: bool,
) -> Result<RunningChild, BootstrapError> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child =
        cmd.spawn().map_err(|source| BootstrapError::Spawn { what: what.to_string(), source })?;
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(BootstrapError::Internal { reason: "piped stdio missing after spawn".into() });
    };
    let (Feed { stdout: out_tx, stderr: err_tx, exit: exit_tx }, receivers) = feed();
    let exit_rx = exit_tx.subscribe();
    let reaped = Arc::new(Mutex::new(false));
    let stderr_copy = Arc::new(StderrCopy::default());
    let spawn_err =
        |source| BootstrapError::Spawn { what: format!("an I/O thread for {what}"), source };

    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let line_tx = first_line.then_some(line_tx);
    std::thread::Builder::new()
        .name("bootstrap-stdout".into())
        .spawn(move || pump_stdout(stdout, out_tx, line_tx))
        .map_err(spawn_err)?;

    let copy = Arc::clone(&stderr_copy);
    std::thread::Builder::new()
        .name("bootstrap-stderr".into())
        .spawn(move || pump_stderr(stderr, err_tx, &copy))
        .map_err(spawn_err)?;

    let (in_tx, in_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::Builder::new()
        .name("bootstrap-stdin".into())
        .spawn(move || {
            let mut stdin = stdin;
            for chunk in in_rx {
                if stdin.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
        .map_err(spawn_err)?;

    let reaped2 = Arc::clone(&reaped);
    std::thread::Builder::new()
        .name("bootstrap-wait".into())
        .spawn(move || {
            // Wait without reaping first, so `terminate` can never signal a recycled pid: the
            // flag flips under the lock before the pid is released by the real wait below.
            if let Ok(p) = i32::try_from(pid) {
                let _ =
                    waitid(Id::Pid(Pid::from_raw(p)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
            }
            let mut gone = reaped2.lock().unwrap_or_else(PoisonError::into_inner);
            let exit = match child.wait() {
                Ok(status) => exit_of(status),
                Err(e) => RemoteExit::ConnectionLost(format!("waiting for the child failed: {e}")),
            };
            *gone = true;
            drop(gone);
            exit_tx.send_replace(Some(exit));
        })
        .map_err(spawn_err)?;

    Ok(RunningChild {
        pid,
        receivers,
        first_line: first_line.then_some(line_rx),
        stderr_copy,
        exit: exit_rx,
        stdin: RemoteStdin { tx: Some(in_tx), wake: None },
        reaped,
    })
}

fn pump_stdout(
    mut out: impl Read,
    tx: mpsc::Sender<Vec<u8>>,
    mut first: Option<std::sync::mpsc::Sender<Option<String>>>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut line = Vec::new();
    let mut open = true;
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut data = &buf[..n];
        if let Some(f) = &first {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&data[..=i]);
                    let _ = f.send(Some(String::from_utf8_lossy(&line).into_owned()));
                    first = None;
                    data = &data[i + 1..];
                }
                None if line.len() + data.len() > 4096 => {
                    // No marker line this long: hand over what there is, it will not parse.
                    line.extend_from_slice(data);
                    let _ = f.send(Some(String::from_utf8_lossy(&line).into_owned()));
                    first = None;
                    continue;
                }
                None => {
                    line.extend_from_slice(data);
                    continue;
                }
            }
        }
        // A dropped receiver means "discard": keep reading so the child never blocks on us.
        if open && !data.is_empty() && tx.blocking_send(data.to_vec()).is_err() {
            open = false;
        }
    }
    if let Some(f) = first {
        let _ = f.send(None);
    }
}

fn pump_stderr(mut err: impl Read, tx: mpsc::Sender<Vec<u8>>, copy: &StderrCopy) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut open = true;
    loop {
        let n = match err.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        {
            let mut g = copy.state.lock().unwrap_or_else(PoisonError::into_inner);
            let room = STDERR_KEEP.saturating_sub(g.0.len());
            g.0.extend_from_slice(&buf[..n.min(room)]);
        }
        if open && tx.blocking_send(buf[..n].to_vec()).is_err() {
            open = false;
        }
    }
    copy.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
    copy.done.notify_all();
}
