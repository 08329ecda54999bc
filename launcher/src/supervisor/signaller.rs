//! How the supervisor's signals reach the ranks: straight to their process groups when they run
//! here, or as one message to the proxies when they run on other nodes (`proxy::root` has that
//! one, so the supervisor knows nothing of the proxy protocol).

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::policy::RankState;

/// Delivers a signal to a job's running ranks.
pub trait Signaller {
    /// Sends `signal` to every rank of `ranks` still running; returns how many it reached.
    fn signal(&self, signal: Signal, ranks: &[RankState]) -> usize;
}

/// Ranks that are processes of this machine, each leading its own process group.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessGroups;

impl Signaller for ProcessGroups {
    fn signal(&self, signal: Signal, ranks: &[RankState]) -> usize {
        let running = ranks.iter().filter(|r| r.running).filter_map(|r| r.pid);
        // The group, not the pid: whatever a rank started gets the signal too.
        running.filter(|pid| killpg(Pid::from_raw(*pid as i32), signal).is_ok()).count()
    }
}
