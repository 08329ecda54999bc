//! Signals the launcher catches and passes on to every rank's process group, and the care a
//! forwarded SIGCONT needs: Linux discards a stop signal still pending in a process when SIGCONT
//! is sent to it, even one the process catches. A rank that had not yet run since it was sent the
//! SIGTSTP (a busy machine) would never see it if the SIGCONT followed at once, so a SIGCONT is
//! forwarded only once the ranks have taken the SIGTSTP ([`wait_taken`]).

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

/// Signals that reach every rank when the launcher receives them. When several arrived at once
/// they are taken in this order: SIGTSTP before SIGCONT, so that a stop and the continue that
/// followed it leave the ranks running.
pub const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTSTP,
    Signal::SIGCONT,
];

/// How long a SIGCONT waits for the ranks to take a SIGTSTP sent before it. They take it as soon
/// as they run with it unblocked; this only bounds the wait for one that cannot (uninterruptible
/// sleep, or a rank that keeps SIGTSTP blocked).
pub const TAKE_LIMIT: Duration = Duration::from_secs(1);

/// Whether a `/proc/<pid>/status` text shows `sig` pending, for the thread or the process: sent
/// and not taken yet. Blocked or not: a program may block it for a moment (a critical section)
/// and take it right after, and a SIGCONT meanwhile would discard it all the same.
pub fn pending_in(status: &str, sig: Signal) -> bool {
    let bit = 1u64 << (sig as i32 - 1);
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigPnd:") | mask("ShdPnd:")) & bit != 0
}

/// Waits until none of `pids` has `sig` pending, for at most `limit`: until the ranks have been
/// scheduled, usually a few milliseconds. Callers forward a SIGCONT right after.
pub async fn wait_taken(pids: &[u32], sig: Signal, limit: Duration) {
    let give_up = tokio::time::Instant::now() + limit;
    let pending = |pid: &u32| match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => pending_in(&status, sig),
        // Gone: nothing to wait for. Unreadable for another reason: keep waiting (bounded).
        Err(e) => e.kind() != std::io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ESRCH),
    };
    while pids.iter().any(pending) && tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The launcher's handlers for [`FORWARDED`], as one stream.
#[derive(Debug)]
pub struct CaughtSignals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl CaughtSignals {
    /// Installs the handlers; from now on these signals no longer have their default effect.
    pub fn install() -> std::io::Result<Self> {
        let streams = FORWARDED
            .iter()
            .map(|&sig| Ok((sig, signal(SignalKind::from_raw(sig as i32))?)))
            .collect::<std::io::Result<_>>()?;
        Ok(CaughtSignals { streams })
    }

    /// The next caught signal.
    pub async fn recv(&mut self) -> Signal {
        poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready(*sig);
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// `11 (SIGSEGV)`, the way exit reports name a signal.
pub fn describe(signal: i32) -> String {
    match Signal::try_from(signal) {
        Ok(sig) => format!("{signal} ({})", sig.as_str()),
        Err(_) => format!("{signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn pending_signals_are_read_from_proc_status() {
        let status = |pnd: &str, shd: &str, blk: &str| {
            format!("Name:\tsignals\nSigQ:\t1/63\nSigPnd:\t{pnd}\nShdPnd:\t{shd}\nSigBlk:\t{blk}\n")
        };
        let none = "0000000000000000";
        // SIGTSTP is 20: bit 19.
        let tstp = "0000000000080000";
        assert!(pending_in(&status(none, tstp, none), Signal::SIGTSTP), "sent to the process");
        assert!(pending_in(&status(tstp, none, none), Signal::SIGTSTP), "sent to the thread");
        assert!(pending_in(&status(none, tstp, tstp), Signal::SIGTSTP), "blocked for a moment");
        assert!(!pending_in(&status(none, none, none), Signal::SIGTSTP));
        assert!(!pending_in(&status(none, tstp, none), Signal::SIGCONT));
        assert!(!pending_in("garbage", Signal::SIGTSTP));
    }

    #[test]
    fn a_signal_still_pending_is_waited_for() {
        use nix::sys::signal::kill;
        use nix::unistd::Pid;
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = Pid::from_raw(child.id() as i32);
        // A stopped process takes nothing: the SIGTSTP stays pending until it runs.
        kill(pid, Signal::SIGSTOP).expect("stop");
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|s| {
                s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T'))
            })
        };
        while !stopped() {
            // The sleep is made inside the runtime: tokio's timers need one.
            rt().block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        }
        kill(pid, Signal::SIGTSTP).expect("tstp");
        let started = Instant::now();
        rt().block_on(wait_taken(&[child.id()], Signal::SIGTSTP, Duration::from_millis(300)));
        let waited = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        assert!(waited >= Duration::from_millis(300), "gave up waiting after {waited:?}");
    }

    #[test]
    fn waiting_for_a_signal_to_be_taken_ends() {
        // Our own process has nothing pending: no wait; a pid that does not exist: none either.
        let started = Instant::now();
        let pids = [std::process::id(), u32::MAX];
        rt().block_on(wait_taken(&pids, Signal::SIGTSTP, Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn describes_signals() {
        assert_eq!(describe(11), "11 (SIGSEGV)");
        assert_eq!(describe(9), "9 (SIGKILL)");
        assert_eq!(describe(99), "99");
    }
}
