//! A job's session on this node, named so that a reused pid is never hit: the session id (its
//! leader's pid) and the leader's start time from `/proc/<pid>/stat`; and killing every process
//! of recorded sessions.
//!
//! Why the pair is enough: Linux keeps a pid number allocated while any process still uses it
//! as its session id, so while one process of the session lives, no new process can get the
//! leader's pid. If `/proc/<sid>` shows a process with another start time, the recorded
//! session is over (every member gone, the pid reused) and nothing is signalled.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A session this agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionRef {
    /// The session id: its leader's pid.
    pub sid: u32,
    /// The leader's start time, in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

/// The fields of `/proc/<pid>/stat` that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub session: u32,
    pub start: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); session is field 6, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn stat_of(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// The session `pid` leads, read right after it was started (None: it is already gone, or it
/// leads no session).
pub fn identify(pid: u32) -> Option<SessionRef> {
    let stat = stat_of(pid)?;
    (stat.session == pid).then_some(SessionRef { sid: pid, start: stat.start })
}

/// Sends `signal` (None: only counts) to every live process of each of `sessions` (one pass over
/// `/proc`). Returns, per session, how many processes were signalled; a session with none is over.
pub fn signal_all(sessions: &[SessionRef], signal: Option<Signal>) -> Vec<(SessionRef, usize)> {
    let mut counts: Vec<(SessionRef, usize)> = Vec::with_capacity(sessions.len());
    for s in sessions {
        // A leader's pid that now belongs to a process started at another time: reused, so
        // the session has no member left (see the module comment).
        let reused = stat_of(s.sid).is_some_and(|st| st.start != s.start);
        if !reused {
            counts.push((*s, 0));
        }
    }
    if counts.is_empty() {
        return sessions.iter().map(|s| (*s, 0)).collect();
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Some(stat) = stat_of(pid) else { continue };
            if stat.state == 'Z' {
                continue;
            }
            if let Some((_, n)) = counts.iter_mut().find(|(s, _)| s.sid == stat.session) {
                let Ok(raw) = i32::try_from(pid) else { continue };
                if kill(Pid::from_raw(raw), signal).is_ok() {
                    *n += 1;
                }
            }
        }
    }
    sessions
        .iter()
        .map(|s| (*s, counts.iter().find(|(c, _)| c == s).map(|(_, n)| *n).unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_whatever_the_command_name() {
        let line = b"4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10\n";
        let st = parse_stat(line).expect("parses");
        assert_eq!(st, ProcStat { state: 'S', session: 4242, start: 987654 });
        assert!(parse_stat(b"4242 (short) S 1").is_none());
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn a_live_session_is_found_and_a_reused_pid_is_never_hit() {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
        }
        let mut child = cmd.spawn().expect("sleep starts");
        let pid = child.id();
        let me = identify(pid).expect("it leads its session");
        // The same pid with another start time is someone else: left alone.
        let impostor = SessionRef { sid: pid, start: me.start + 1 };
        assert_eq!(signal_all(&[impostor], Some(Signal::SIGKILL)), vec![(impostor, 0)]);
        assert!(child.try_wait().expect("wait").is_none(), "the impostor record hit nothing");
        assert_eq!(signal_all(&[me], None), vec![(me, 1)], "counted");
        assert_eq!(signal_all(&[me], Some(Signal::SIGKILL)), vec![(me, 1)]);
        let status = child.wait().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(signal_all(&[me], None), vec![(me, 0)], "over");
    }
}
