//! Killing everything in a cgroup, whatever it did to get away from its parent: freeze the
//! cgroup (no task runs, so none can fork while the list is read), SIGKILL every process in
//! it and its sub-cgroups, thaw (a frozen task dies only once thawed on v1), and repeat until
//! it is empty or the budget is spent. Where the kernel has `cgroup.kill` (v2, Linux 5.14)
//! one write does all of it.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Cgroups, ContainmentError};

/// How long one freeze may take before the round goes ahead without it.
const FREEZE_WAIT: Duration = Duration::from_millis(200);
/// How long a round waits for its killed processes to leave the cgroup.
const ROUND_WAIT: Duration = Duration::from_millis(100);

/// What a kill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KillReport {
    /// Processes found and killed (with `cgroup.kill`: those there just before it).
    pub killed: usize,
    /// Rounds until the cgroup was empty.
    pub rounds: u32,
    /// The kernel's `cgroup.kill` did it.
    pub at_once: bool,
}

/// Waits a little, on a plain thread: callers in async code run this on a blocking thread.
#[expect(
    clippy::disallowed_methods,
    reason = "containment's calls are blocking by design (the agent runs them with \
              spawn_blocking, the launcher after its runtime's work is done)"
)]
pub(crate) fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// Every process in `path` and its sub-cgroups.
pub(crate) fn processes_below(cg: &dyn Cgroups, path: &str) -> Vec<u32> {
    let mut pids = cg.processes(path);
    for child in cg.children(path) {
        pids.extend(processes_below(cg, &join(path, &child)));
    }
    pids
}

pub(crate) fn join(path: &str, child: &str) -> String {
    if path.is_empty() { child.to_string() } else { format!("{path}/{child}") }
}

fn wait_empty(cg: &dyn Cgroups, path: &str, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if processes_below(cg, path).is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        pause(Duration::from_millis(1));
    }
}

pub(crate) fn kill_all(
    cg: &dyn Cgroups,
    path: &str,
    budget: Duration,
) -> Result<KillReport, ContainmentError> {
    let start = Instant::now();
    let mut report = KillReport::default();
    let before = processes_below(cg, path).len();
    if before == 0 {
        // The usual end: nothing outlived the part. Freezing an empty cgroup would only cost
        // its writes and waits.
        return Ok(report);
    }
    if cg.kill_at_once(path)? {
        report.at_once = true;
        report.killed = before;
        report.rounds = 1;
        if wait_empty(cg, path, budget) {
            return Ok(report);
        }
    }
    loop {
        report.rounds += 1;
        cg.set_frozen(path, true, FREEZE_WAIT)?;
        let pids = processes_below(cg, path);
        for &pid in &pids {
            if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                report.killed += 1;
            }
        }
        cg.set_frozen(path, false, FREEZE_WAIT)?;
        if pids.is_empty() || wait_empty(cg, path, ROUND_WAIT) {
            return Ok(report);
        }
        if start.elapsed() >= budget {
            return Err(ContainmentError::Survivors {
                path: path.to_string(),
                left: processes_below(cg, path).len(),
                rounds: report.rounds,
            });
        }
    }
}

/// Removes `path` and its sub-cgroups, deepest first.
pub(crate) fn remove_tree(cg: &dyn Cgroups, path: &str) -> Result<(), ContainmentError> {
    for child in cg.children(path) {
        remove_tree(cg, &join(path, &child))?;
    }
    cg.remove(path)
}
