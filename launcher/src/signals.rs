//! Signals the launcher catches and passes on to every rank's process group.

use std::future::poll_fn;
use std::task::Poll;

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

/// Signals that reach every rank when the launcher receives them.
pub const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
    Signal::SIGTSTP,
];

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

    #[test]
    fn describes_signals() {
        assert_eq!(describe(11), "11 (SIGSEGV)");
        assert_eq!(describe(9), "9 (SIGKILL)");
        assert_eq!(describe(99), "99");
    }
}
