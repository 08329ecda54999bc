//! The cgroup of a local `gangway run`: as root (or with a delegated cgroup subtree) the run's
//! ranks join one cgroup before they exec, confined to the run's CPUs and `--mem`, and
//! everything in it is killed when the run ends, whatever escaped the ranks' process groups.
//!
//! A launcher killed with SIGKILL cannot clean up, so a small watcher process does: forked
//! before any rank starts, outside the cgroup (the launcher's own sweep of what its ranks left
//! behind spares it, [`RunCgroup::watcher`]), it waits for the launcher's end of a pipe to
//! close and then kills whatever is left in the cgroup and removes it, and the gangway root
//! where that sits below the launcher's own cgroup and no other run uses it (at the top of a
//! hierarchy the root stays). The launcher's normal end kills what outlived its ranks itself,
//! at once, and leaves the removal to the watcher: its `rmdir`s are off the run's path. As a
//! second line, each run sweeps the cgroups of runs whose launcher is gone (a watcher killed
//! too). A watcher rather than only that sweep: a sweep runs at the *next* start, which may never
//! come, while a setsid daemon would run on meanwhile.
//!
//! On v1, where every `cgroup.procs` write costs a migration (about 0.3 ms each here, more
//! under load, and the launcher waits for each rank's exec), the launcher joins the run's
//! freezer and cpuset hierarchies itself once, after forking the watcher, and its ranks
//! inherit them; each rank joins only the memory hierarchy, and only with `--mem` (the
//! launcher stays out of that one: the OOM killer must never pick it). The cgroup is made
//! only in those hierarchies: a run reports no CPU time or peak memory, only an OOM kill. At
//! the end the launcher leaves again only when something else is still inside (freezing the
//! cgroup would freeze the launcher); the usual end finds nothing but itself there. On v2
//! each rank starts inside the cgroup (`clone3` with `CLONE_INTO_CGROUP`), or, where the
//! kernel refuses that, joins it by one write.
//!
//! Without permission (an ordinary user) nothing changes and nothing is said unless the run
//! asked for `--mem`, which then cannot be enforced. `GANGWAY_NO_CGROUPS=1` turns it off.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use gangway_containment::{Base, Containment, ContainmentError, Join, Limits, Version, mib};
use gangway_topology::{CpuSet, Placement};

/// How long killing the run's cgroup may take.
const KILL_BUDGET: Duration = Duration::from_secs(5);

/// A run's cgroup, from its creation to its removal.
#[derive(Debug)]
pub struct RunCgroup {
    containment: Containment,
    path: String,
    memory: Option<u64>,
    /// Its `cgroup.procs` files: each rank writes itself into them before it execs.
    join: Vec<OwnedFd>,
    /// Its directory on v2, where the ranks start instead where the kernel can (`spawn.rs`).
    clone_target: Option<OwnedFd>,
    /// Where the launcher joined the cgroup itself (v1: all but memory), the files it writes
    /// to leave again before the kill at the end; empty: it did not join.
    leave: Vec<OwnedFd>,
    /// Our end of the watcher's pipe: closing it wakes the watcher, so it is closed only by
    /// our exit, however that happens (never by a drop).
    watcher: Option<OwnedFd>,
    /// The watcher's pid: our child, which must outlive us.
    watcher_pid: Option<i32>,
}

/// What a run's cgroup recorded once it was emptied.
#[derive(Debug)]
pub struct RunUsage {
    /// Set when the kernel's OOM killer struck: the message naming the limit.
    pub out_of_memory: Option<String>,
}

/// Puts the run in a cgroup if this process may create one. `Ok(None)`: turned off.
/// An `Unavailable` error is for the caller to mention (once) only when it matters.
pub fn enter(
    job_id: &str,
    placement: Option<&Placement>,
    memory: Option<u64>,
) -> Result<Option<RunCgroup>, ContainmentError> {
    if std::env::var_os("GANGWAY_NO_CGROUPS").is_some_and(|v| v == "1") {
        return Ok(None);
    }
    // Under this process's own cgroups on v1, so what confines the launcher still confines
    // its ranks; at the top on v2, the only place it can hand controllers down without a
    // delegated subtree (a cgroup holding processes, as ours does, cannot).
    let containment = Containment::discover_by("gangway", |version| match version {
        Version::V1 => Base::Own,
        Version::V2 => Base::Top,
    })?;
    containment.sweep(&|name| !name.starts_with("run_") || launcher_alive(name), KILL_BUDGET);
    let path =
        format!("run_{}_{}", std::process::id(), start_time(std::process::id()).unwrap_or(0));
    let mut limits = Limits::new();
    if let Some(p) = placement {
        let cpus = p.ranks.iter().fold(CpuSet::new(), |all, r| all.union(&r.binding.cpus));
        if !cpus.is_empty() {
            limits = limits.cpus(cpus);
        }
    }
    if let Some(bytes) = memory {
        limits = limits.memory(bytes);
    }
    let notes = containment.create_for(&path, &limits, Join::EnforcingButMemory(&limits))?;
    for note in notes {
        eprintln!("gangway: warning: run {job_id}: {note}");
    }
    let (watcher, watcher_pid) = start_watcher(&containment, &path).unzip();
    let backend = containment.backend();
    let (join, leave) = match containment.version() {
        Version::V1 => {
            // The launcher first, after the watcher's fork (the watcher stays out), so that
            // its ranks inherit all but the memory hierarchy.
            let mine = Join::EnforcingButMemory(&limits);
            let leave = backend.leave_files(mine)?;
            let own = backend.join_files(&path, mine)?;
            gangway_containment::join(&own.iter().map(AsRawFd::as_raw_fd).collect::<Vec<_>>())
                .map_err(|e| ContainmentError::Io {
                    path: path.clone().into(),
                    what: "join (the launcher)",
                    source: e.into(),
                })?;
            (backend.join_files(&path, Join::Memory(&limits))?, leave)
        }
        Version::V2 => (backend.join_files(&path, Join::Enforcing(&limits))?, Vec::new()),
    };
    let clone_target = backend.clone_target(&path)?;
    Ok(Some(RunCgroup {
        containment,
        path,
        memory,
        join,
        clone_target,
        leave,
        watcher,
        watcher_pid,
    }))
}

impl RunCgroup {
    /// The watcher's pid, for the launcher's kill of what its ranks left behind to spare: it
    /// is our child until we exit, and must outlive us.
    pub fn watcher(&self) -> Option<i32> {
        self.watcher_pid
    }

    /// The descriptors a rank writes `0` to before it execs.
    pub fn join_fds(&self) -> Vec<RawFd> {
        self.join.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// The cgroup's directory a rank starts in, where the backend has one (v2).
    pub fn clone_target(&self) -> Option<RawFd> {
        self.clone_target.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Kills whatever outlived the ranks in the cgroup and reads whether the OOM killer struck.
    /// The cgroup is removed by the watcher once this process has exited (by this process
    /// when there is no watcher).
    pub fn finish(self, what: &str) -> Result<RunUsage, ContainmentError> {
        let watched = self.watcher.is_some();
        let backend = self.containment.backend();
        let me = std::process::id();
        let outlived = backend.processes(&self.path).into_iter().any(|pid| pid != me);
        if outlived || !watched {
            // Out of it first: the kill freezes the cgroup. If this process cannot leave,
            // the watcher does the rest once it has exited.
            let leave: Vec<RawFd> = self.leave.iter().map(AsRawFd::as_raw_fd).collect();
            gangway_containment::join(&leave).map_err(|e| ContainmentError::Io {
                path: self.path.clone().into(),
                what: "leave (the launcher)",
                source: e.into(),
            })?;
            self.containment.kill(&self.path, KILL_BUDGET)?;
        }
        let out_of_memory = match self.memory {
            Some(_) => self.containment.usage(&self.path)?.out_of_memory(what, self.memory),
            None => None,
        };
        if !watched {
            remove(&self.containment, &self.path);
        }
        Ok(RunUsage { out_of_memory })
    }

    /// Where the cgroup is, for `-v`.
    pub fn describe(&self) -> String {
        let limit = self.memory.map(|m| format!(", memory limit {}", mib(m))).unwrap_or_default();
        format!("{} in {}{limit}", self.path, self.containment.backend().location())
    }
}

impl Drop for RunCgroup {
    /// Keeps the watcher's pipe open until this process exits: closed now, it would wake the
    /// watcher, which kills the cgroup this process is still in.
    fn drop(&mut self) {
        if let Some(pipe) = self.watcher.take() {
            let _ = pipe.into_raw_fd();
        }
    }
}

/// The start time (clock ticks since boot, `/proc/<pid>/stat` field 22) of a process: with
/// its pid, it names one process for good (a pid alone is reused).
fn start_time(pid: u32) -> Option<u64> {
    let stat = gangway_containment::kernel_file::read(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command: state is field 3, start time field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the launcher that made `run_<pid>_<start>` is still running.
fn launcher_alive(name: &str) -> bool {
    let mut parts = name.trim_start_matches("run_").splitn(2, '_');
    let (Some(pid), Some(start)) = (parts.next(), parts.next()) else { return true };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else { return true };
    start_time(pid) == Some(start)
}

/// Removes the run's cgroup, then the gangway root where it sits below this process's own
/// cgroup and no other run's cgroup is in it (one that appears meanwhile makes it again with
/// its `mkdir`). At the top of a hierarchy the root stays for the next run, as an agent's does.
fn remove(containment: &Containment, path: &str) {
    let backend = containment.backend();
    let _ = backend.remove(path);
    backend.remove_nested_root();
}

/// Forks the watcher (see the module doc): our end of its pipe and its pid. `None` when it
/// cannot (the cgroup is then swept at a later run if this launcher dies by SIGKILL).
///
/// Forked once, not twice to make it nobody's child: the middle process had to be reaped
/// before this process became its ranks' subreaper, and on a loaded machine that wait for it
/// to be scheduled, fork and exit was on the run's path.
fn start_watcher(containment: &Containment, path: &str) -> Option<(OwnedFd, i32)> {
    // After a fork only the forking thread exists in the child: with other threads around, one
    // could hold the allocator's lock forever there.
    let threads = gangway_containment::kernel_file::read("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse::<u32>().ok())?;
    if threads != 1 {
        return None;
    }
    // Close-on-exec: a rank (or its daemon) holding the write end would keep the watcher
    // asleep after the launcher died.
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    // This process as a pidfd (Linux 5.3), readable once it has wholly exited: the pipe closes
    // earlier, while it is still leaving its cgroup.
    // SAFETY: a plain system call; a descriptor it returns is ours alone.
    let me = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id(), 0) };
    // SAFETY: a new descriptor nobody else owns.
    let me = (me >= 0).then(|| unsafe { OwnedFd::from_raw_fd(me as RawFd) });
    // SAFETY: single-threaded (checked above), so the children may run any code.
    match unsafe { nix::unistd::fork() }.ok()? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(read);
            Some((write, child.as_raw()))
        }
        nix::unistd::ForkResult::Child => {
            drop(write);
            watch(containment, path, read, me)
        }
    }
}

/// The watcher: its own session (a Ctrl-C to the launcher's terminal group is not for it), no
/// stdio of the launcher's (a test harness waits for those pipes to close), nothing but the
/// pipe (and the launcher's pidfd) open; when the pipe closes and the launcher is gone, kill
/// and remove the cgroup, then exit.
///
/// It waits for the launcher to be wholly gone (the pipe closes while the launcher is still
/// leaving its cgroup, which is then busy for a moment), and works at the lowest priority:
/// its clean-up is off every job's path.
fn watch(containment: &Containment, path: &str, pipe: OwnedFd, launcher: Option<OwnedFd>) -> ! {
    let _ = nix::unistd::setsid();
    // SAFETY: plain descriptor calls in our own process; only the pipe (moved to 3), the
    // launcher's pidfd (moved to 4) and the standard descriptors (onto /dev/null) stay open.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        libc::dup2(pipe.as_raw_fd(), 3);
        let launcher = launcher.map(|l| libc::dup2(l.as_raw_fd(), 4) == 4).unwrap_or(false);
        libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
        let mut byte = 0u8;
        // Nobody writes: the read ends at EOF, when the launcher's end is closed.
        while libc::read(3, (&raw mut byte).cast(), 1) < 0
            && *libc::__errno_location() == libc::EINTR
        {}
        if launcher {
            let mut gone = libc::pollfd { fd: 4, events: libc::POLLIN, revents: 0 };
            while libc::poll(&raw mut gone, 1, -1) < 0 && *libc::__errno_location() == libc::EINTR {
            }
        }
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
    if containment.backend().exists(path) {
        let _ = containment.kill(path, KILL_BUDGET);
        remove(containment, path);
    }
    // SAFETY: ends the watcher without running the launcher's exit handlers.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_alive_while_its_launcher_pid_has_the_same_start_time() {
        let me = std::process::id();
        let start = start_time(me).expect("our own /proc stat");
        assert!(launcher_alive(&format!("run_{me}_{start}")));
        // Same pid, another start time: the pid was reused, the launcher is gone.
        assert!(!launcher_alive(&format!("run_{me}_{}", start + 1)));
        assert!(!launcher_alive("run_0_0"));
        // Names the launcher did not make are never swept as dead runs.
        assert!(launcher_alive("run_x"));
    }
}
