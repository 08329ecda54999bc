//! Starting a job's processes on this node: as the job's user (when the agent is root), in its
//! own session, on the job's CPUs, with the job's environment and its submitter's umask; and
//! ending a job's sessions.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use gangway_topology::CpuSet;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Who a job's processes run as, and where.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// `None`: the agent's own user (a non-root agent runs everything as itself).
    pub ids: Option<(u32, u32, Vec<u32>)>,
    pub cwd: String,
    /// The CPUs to bind to, when this machine has them (a stand-in topology may not).
    pub cpus: Option<CpuSet>,
    /// The submitter's umask, set before anything is created (the batch output included).
    pub umask: u32,
}

impl RunAs {
    /// The identity for a job of `user` (`uid`, `gid`): the user's own, with their
    /// supplementary groups, when the agent is root.
    pub fn for_job(user: &str, uid: u32, gid: u32, cwd: &str, cpus: &CpuSet, umask: u32) -> RunAs {
        let ids = nix::unistd::geteuid().is_root().then(|| {
            let groups = CString::new(user)
                .ok()
                .and_then(|u| nix::unistd::getgrouplist(&u, nix::unistd::Gid::from_raw(gid)).ok())
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_else(|| vec![gid]);
            (uid, gid, groups)
        });
        RunAs { ids, cwd: cwd.to_string(), cpus: usable_cpus(cpus), umask: umask & 0o777 }
    }
}

/// The granted CPUs if this machine has all of them (else a stand-in topology granted them).
fn usable_cpus(want: &CpuSet) -> Option<CpuSet> {
    let have = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()?;
    let ok = !want.is_empty() && want.iter().all(|c| have.is_set(c as usize).unwrap_or(false));
    ok.then(|| want.clone())
}

/// Output for a batch script: opened by the child, as the user, so the files are theirs.
#[derive(Debug, Clone)]
pub struct BatchOutput {
    pub output: String,
    pub error: Option<String>,
    /// Truncate (first attempt) or append (a requeued one, after this marker line).
    pub truncate: bool,
    pub marker: Option<String>,
}

/// A spawned process (a session leader).
#[derive(Debug)]
pub struct Spawned {
    pub child: tokio::process::Child,
    pub pid: u32,
}

/// Starts `program args` for a job. With `batch`, stdout/stderr go to its files; with
/// `piped`, its stdin and stderr are pipes (a proxy's, relayed to its launcher's link).
/// `join`: the `cgroup.procs` of its cgroup (`cgroups.rs`), which the child writes itself
/// into before it execs, still as root.
pub fn spawn(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    run_as: &RunAs,
    batch: Option<&BatchOutput>,
    piped: bool,
    join: &[OwnedFd],
) -> std::io::Result<Spawned> {
    let join: Vec<RawFd> = join.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    if piped {
        cmd.stdin(std::process::Stdio::piped());
    } else {
        cmd.stdin(std::process::Stdio::null());
    }
    if batch.is_some() {
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    } else {
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    }
    cmd.kill_on_drop(false);
    let cwd = CString::new(run_as.cwd.as_bytes()).map_err(std::io::Error::other)?;
    let fallback_cwd = c"/";
    let ids = run_as.ids.clone();
    let cpus = run_as.cpus.clone();
    let umask = run_as.umask as libc::mode_t;
    let files = match batch {
        Some(b) => Some((
            CString::new(b.output.as_bytes()).map_err(std::io::Error::other)?,
            b.error
                .as_ref()
                .map(|e| CString::new(e.as_bytes()))
                .transpose()
                .map_err(std::io::Error::other)?,
            b.truncate,
            b.marker.clone().map(|m| format!("{m}\n").into_bytes()),
        )),
        None => None,
    };
    // The agent's pid, for the child to check it was not orphaned before its death signal was set.
    let agent = std::process::id() as libc::pid_t;
    let mut cpu_mask = nix::sched::CpuSet::new();
    if let Some(c) = &cpus {
        for cpu in c.iter() {
            let _ = cpu_mask.set(cpu as usize);
        }
    }
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (write to the cgroup files, setsid, umask, setgroups, setgid, setuid, prctl, getppid,
    // chdir, open, dup2, write, sched_setaffinity) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // First, and as root: a v2 move needs write access to the cgroups' files, and
            // whatever the process runs from here on starts inside.
            gangway_containment::join(&join).map_err(std::io::Error::from)?;
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Before the output files are created, and inherited by all the job starts.
            libc::umask(umask);
            if let Some((uid, gid, groups)) = &ids
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // Set after the identity change, which clears it: if the agent dies before its
            // fencer guards this session, the leader dies with it (the agent spawns from its
            // spawner threads, which live as long as the agent: `spawner.rs`).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != agent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            if libc::chdir(cwd.as_ptr()) != 0 && libc::chdir(fallback_cwd.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if cpus.is_some() {
                let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &cpu_mask);
            }
            if let Some((out, err, truncate, marker)) = &files {
                // Appending even on a first attempt, which truncates: the agent adds its own
                // lines (a step's OOM kill) through another open, and a script writing at its
                // own offset would overwrite them.
                let mode = libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_CLOEXEC
                    | libc::O_APPEND
                    | if *truncate { libc::O_TRUNC } else { 0 };
                // 0666 less the submitter's umask, as the file would be had they made it.
                let fd = libc::open(out.as_ptr(), mode, 0o666);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(m) = marker {
                    let _ = libc::write(fd, m.as_ptr().cast(), m.len());
                }
                libc::dup2(fd, 1);
                match err {
                    Some(e) => {
                        let efd = libc::open(e.as_ptr(), mode, 0o666);
                        if efd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::dup2(efd, 2);
                    }
                    None => {
                        libc::dup2(fd, 2);
                    }
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    Ok(Spawned { child, pid })
}

/// Says so when starting a job's process took long enough to matter. Starts run on the
/// agent's spawner threads (`spawner.rs`), so heartbeats go on meanwhile; the line says where a
/// slow start's time went. `ready`: the part before the fork (waiting for the spawner, making
/// the cgroup), `took`: the whole start (the rest is the fork, the child's join and its exec).
pub fn warn_if_slow(
    what: &str,
    job: crate::protocol::JobId,
    ready: std::time::Duration,
    took: std::time::Duration,
) {
    if took >= std::time::Duration::from_millis(250) {
        tracing::warn!(
            job,
            took_ms = took.as_millis() as u64,
            ready_ms = ready.as_millis() as u64,
            "starting {what} took this long"
        );
    }
}

/// The session a process is in (`None`: no such process).
pub fn session_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = String::from_utf8_lossy(&stat[close + 1..]).into_owned();
    // state ppid pgrp session ...
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Sends `signal` to every process of the session `sid` (a job's script or proxy and all it
/// started, whatever process groups they made). Returns how many were signalled.
pub fn signal_session(sid: u32, signal: Signal) -> usize {
    signal_session_members(sid, signal, true)
}

/// [`signal_session`] without its leader: a step's proxy, which the signal would end (it
/// handles none of what `--signal` sends) while its tasks, who are meant to get it, carry on.
pub fn signal_session_but_leader(sid: u32, signal: Signal) -> usize {
    signal_session_members(sid, signal, false)
}

fn signal_session_members(sid: u32, signal: Signal, leader_too: bool) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut n = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read(entry.path().join("stat")) else { continue };
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let Some(close) = stat.iter().rposition(|b| *b == b')') else { continue };
        let rest = String::from_utf8_lossy(&stat[close + 1..]);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state ppid pgrp session ...
        if fields.get(3).and_then(|s| s.parse::<u32>().ok()) == Some(sid)
            && (leader_too || pid as u32 != sid)
            && kill(Pid::from_raw(pid), signal).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Appends `line` to the standard error of process `pid` (a batch script's error file), through
/// `/proc`: the file the script really writes to, reached without following a path the job's
/// user could have replaced with a link.
pub fn append_to_stderr(pid: u32, line: &str) {
    use std::io::Write;
    let path = format!("/proc/{pid}/fd/2");
    let file = std::fs::OpenOptions::new().append(true).open(&path);
    if let Err(e) = file.and_then(|mut f| f.write_all(format!("{line}\n").as_bytes())) {
        tracing::warn!(pid, error = %e, "cannot write the job's notice to its error output");
    }
}

/// Whether `path` names an existing directory (a job's cwd may not exist on this node).
pub fn dir_exists(path: &str) -> bool {
    Path::new(std::ffi::OsStr::from_bytes(path.as_bytes())).is_dir()
}
