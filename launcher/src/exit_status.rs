//! How a process ended, and the one rule that turns that into an exit code: its own code, or
//! 128 + the signal that killed it, the way a shell reports a command.
//!
//! Ranks (`spawn`), commands started on nodes (`bootstrap`) and the agent's batch scripts all
//! read their wait status through here, so a signal is never reported one way in one place and
//! another way elsewhere.

use std::os::unix::process::ExitStatusExt;

/// How a rank process (or any other process gangway waits for) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RankStatus {
    Exited(i32),
    Signaled(i32),
}

impl RankStatus {
    /// The status `waitpid` wrote for a process that ended (not one merely stopped).
    pub fn from_wait_status(status: libc::c_int) -> RankStatus {
        if libc::WIFSIGNALED(status) {
            RankStatus::Signaled(libc::WTERMSIG(status))
        } else {
            RankStatus::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// The end of a `std`/`tokio` child; `None` for a status that is neither an exit nor a
    /// killing signal (a stopped process, which `wait` does not report).
    pub fn of(status: std::process::ExitStatus) -> Option<RankStatus> {
        match (status.code(), status.signal()) {
            (Some(code), _) => Some(RankStatus::Exited(code)),
            (None, Some(signal)) => Some(RankStatus::Signaled(signal)),
            (None, None) => None,
        }
    }

    /// Whether this counts as success.
    pub fn success(self) -> bool {
        self == RankStatus::Exited(0)
    }

    /// The status as a shell would report it: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            RankStatus::Exited(code) => code,
            RankStatus::Signaled(sig) => 128 + sig,
        }
    }

    /// [`Self::shell_code`] as a process exit code.
    pub fn exit_code(self) -> u8 {
        exit_byte(self.shell_code())
    }
}

impl std::fmt::Display for RankStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RankStatus::Exited(code) => write!(f, "exited with code {code}"),
            RankStatus::Signaled(sig) => {
                write!(f, "exited with signal {}", crate::signals::describe(*sig))
            }
        }
    }
}

/// What `exit(code)` would leave of a code: its low 8 bits.
pub fn exit_byte(code: i32) -> u8 {
    (code & 0xff) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_as_a_shell_reports_them() {
        assert_eq!(RankStatus::Exited(3).exit_code(), 3);
        assert_eq!(RankStatus::Signaled(libc::SIGSEGV).exit_code(), 139);
        assert_eq!(RankStatus::Exited(256 + 7).exit_code(), 7);
        assert_eq!(RankStatus::Exited(-1).exit_code(), 255);
        // 0x8b00: exited with 139 (a shell passing on a crash); 0x000b: killed by SIGSEGV.
        assert_eq!(RankStatus::from_wait_status(0x8b00), RankStatus::Exited(139));
        assert_eq!(RankStatus::from_wait_status(libc::SIGSEGV), RankStatus::Signaled(11));
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(RankStatus::of(killed), Some(RankStatus::Signaled(libc::SIGKILL)));
        assert_eq!(
            RankStatus::of(std::process::ExitStatus::from_raw(0)),
            Some(RankStatus::Exited(0))
        );
        // A stopped process (0x137f: stopped by SIGSTOP) has ended in neither way.
        assert_eq!(RankStatus::of(std::process::ExitStatus::from_raw(0x137f)), None);
    }
}
