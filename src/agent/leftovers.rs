//! What a killed agent may leave behind, and the sweep that ends it: every job session the agent
//! starts is recorded in its spool (`sessions/<sid>-<start>`: job, attempt, session), and a
//! starting agent kills every recorded session its previous life left, before it registers, and
//! reports those attempts as fenced. The spool is locked, so two agents never sweep each
//! other's jobs.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::sessions::{self, SessionRef};
use crate::protocol::JobId;

/// One recorded session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub job: JobId,
    pub attempt: u32,
    pub session: SessionRef,
}

impl Record {
    /// The record's text: `job attempt sid start`.
    pub fn to_line(&self) -> String {
        format!("{} {} {} {}\n", self.job, self.attempt, self.session.sid, self.session.start)
    }

    /// Reads [`Record::to_line`]'s text back.
    pub fn parse(text: &str) -> Option<Record> {
        let mut f = text.split_whitespace().map(str::parse::<u64>);
        let mut next = || f.next()?.ok();
        let (job, attempt, sid, start) = (next()?, next()?, next()?, next()?);
        Some(Record {
            job,
            attempt: u32::try_from(attempt).ok()?,
            session: SessionRef { sid: u32::try_from(sid).ok()?, start },
        })
    }
}

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot use the spool directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another agent already uses the spool {}{}: stop it first, or give this one another --spool",
        path.display(), holder.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked { path: PathBuf, holder: Option<String> },
}

/// The spool's lock, held while the agent lives.
#[derive(Debug)]
pub struct SpoolLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

fn records_dir(spool: &Path) -> PathBuf {
    spool.join("sessions")
}

fn record_path(spool: &Path, s: SessionRef) -> PathBuf {
    records_dir(spool).join(format!("{}-{}", s.sid, s.start))
}

/// Takes the spool's lock (creating the directories), or says who holds it.
pub fn lock(spool: &Path) -> Result<SpoolLock, SpoolError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SpoolError::Io { path, source }
    };
    std::fs::create_dir_all(records_dir(spool)).map_err(io(spool))?;
    let path = spool.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = writeln!(lock, "{}", std::process::id());
            Ok(SpoolLock { _lock: lock })
        }
        Err(_) => Err(SpoolError::Locked {
            path: spool.to_owned(),
            holder: std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()),
        }),
    }
}

/// Records a session just started.
pub fn record(spool: &Path, r: &Record) -> std::io::Result<()> {
    std::fs::write(record_path(spool, r.session), r.to_line())
}

/// Forgets a session (its processes are gone, or were just killed).
pub fn forget(spool: &Path, s: SessionRef) {
    let _ = std::fs::remove_file(record_path(spool, s));
}

/// Kills every session the spool records (a previous life's), forgets them, and returns the
/// attempts they belonged to. Unreadable records are removed with a warning.
pub fn sweep(spool: &Path) -> Vec<(JobId, u32)> {
    let Ok(dir) = std::fs::read_dir(records_dir(spool)) else { return Vec::new() };
    let mut records = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        match std::fs::read_to_string(&path).ok().as_deref().and_then(Record::parse) {
            Some(r) => records.push(r),
            None => tracing::warn!(record = %path.display(), "unreadable session record removed"),
        }
        let _ = std::fs::remove_file(&path);
    }
    let sessions: Vec<SessionRef> = records.iter().map(|r| r.session).collect();
    for (s, killed) in sessions::signal_all(&sessions, Some(Signal::SIGKILL)) {
        if killed > 0 {
            tracing::warn!(
                session = s.sid,
                processes = killed,
                "killed what a previous agent left"
            );
        }
    }
    let attempts: BTreeSet<(JobId, u32)> = records.iter().map(|r| (r.job, r.attempt)).collect();
    attempts.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let r = Record { job: 7, attempt: 2, session: SessionRef { sid: 4242, start: 99 } };
        assert_eq!(Record::parse(&r.to_line()), Some(r));
        assert_eq!(Record::parse("7 2 4242"), None);
        assert_eq!(Record::parse("7 x 4242 99"), None);
        assert_eq!(Record::parse("7 2 99999999999 99"), None);
    }

    #[test]
    fn the_sweep_kills_recorded_sessions_and_reports_their_attempts() {
        use std::os::unix::process::CommandExt;
        let spool = tempfile::tempdir().expect("tempdir");
        let _lock = lock(spool.path()).expect("locks");
        let e = lock(spool.path()).expect_err("a second agent is refused").to_string();
        assert!(e.contains("another agent already uses the spool"), "{e}");
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
        }
        let mut child = cmd.spawn().expect("sleep starts");
        let session = sessions::identify(child.id()).expect("leads its session");
        record(spool.path(), &Record { job: 3, attempt: 1, session }).expect("recorded");
        // A stale record whose pid was reused by someone else: nothing is hit for it.
        let stale = SessionRef { sid: std::process::id(), start: 1 };
        record(spool.path(), &Record { job: 4, attempt: 2, session: stale }).expect("recorded");
        assert_eq!(sweep(spool.path()), vec![(3, 1), (4, 2)]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().expect("reaped").signal(), Some(libc::SIGKILL));
        assert_eq!(sweep(spool.path()), vec![], "records are forgotten");
    }
}
