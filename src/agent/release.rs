//! Ending a released job's sessions on this node: SIGTERM, SIGKILL after the grace, and the
//! word that nothing of them is left, which the controller waits for before it starts the job's
//! next attempt (docs/cluster.md, "When a node dies").
//!
//! The sessions are looked at every [`POLL`] through the grace, so a job that ends on SIGTERM is
//! confirmed gone at once rather than a whole grace later; after SIGKILL, until every process is
//! gone (one in uninterruptible sleep dies only when it wakes).

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, sleep};

use super::leftovers;
use super::sessions::{self, SessionRef};

/// How often the sessions are looked at while they end.
const POLL: Duration = Duration::from_millis(50);

/// How long to wait between looks, at most, for processes that outlive SIGKILL.
const POLL_MAX: Duration = Duration::from_secs(1);

/// Whether no process of `list` is left (zombies do not count: they run nothing).
fn gone(list: &[SessionRef]) -> bool {
    sessions::signal_all(list, None).iter().all(|(_, n)| *n == 0)
}

/// Ends `list` (sessions of `job`): TERM (and CONT, for stopped ones) now, KILL once `grace` is
/// over, then forgets their spool records and stops the fencer guarding them; returns once
/// nothing of them is left.
pub(super) async fn end(
    list: Vec<SessionRef>,
    grace: Duration,
    spool: PathBuf,
    fencer: Option<UnboundedSender<String>>,
) {
    sessions::signal_all(&list, Some(Signal::SIGTERM));
    sessions::signal_all(&list, Some(Signal::SIGCONT));
    let kill_at = Instant::now() + grace;
    loop {
        if gone(&list) {
            break;
        }
        let now = Instant::now();
        if now >= kill_at {
            sessions::signal_all(&list, Some(Signal::SIGKILL));
            break;
        }
        sleep(POLL.min(kill_at - now)).await;
    }
    let mut wait = POLL;
    while !gone(&list) {
        sleep(wait).await;
        wait = (wait * 2).min(POLL_MAX);
    }
    for s in &list {
        leftovers::forget(&spool, *s);
        if let Some(tx) = &fencer {
            let _ = tx.send(format!("unguard {}\n", s.sid));
        }
    }
}
