//! The exit codes of `gangway`, as named constants (documented in docs/exit-codes.md).
//!
//! When a rank fails, `gangway run` exits with that rank's own code (or 128 + the signal that
//! killed it), the way a shell reports a command; its own failures use the codes below. A
//! command's failure ([`CliError`]) becomes its code here, in [`for_error`], and nowhere else.

use gangway_launcher::exit_status::exit_byte;
use gangway_launcher::job::{JobEnd, JobReport, LaunchError};
use gangway_launcher::spawn::ProgramError;

use crate::cli::error::{CliError, RefusalKind};

/// Every rank exited 0.
pub const SUCCESS: u8 = 0;
/// A request the controller refused or could not carry out for another reason (a job that does
/// not exist or has ended, a configuration the controller or an agent cannot use).
pub const FAILURE: u8 = 1;
/// The command line was wrong (unknown flag, bad value); nothing was started.
pub const USAGE: u8 = 2;
/// The controller cannot be reached (not running, wrong address, refused the token or key).
pub const NO_CONTROLLER: u8 = 116;
/// The caller may not do this (another user's job, an administrator's command).
pub const PERMISSION_DENIED: u8 = 117;
/// The job was cancelled, or lost a node, before or while the command ran (`alloc`, `run`).
pub const JOB_ENDED: u8 = 118;
/// The controller cannot take new work now: its state disk is (nearly) full, or the caller
/// holds as many connections as it may. Running jobs and queries carry on; try again later.
pub const NO_NEW_WORK: u8 = 119;
/// The ranks could not wire up: a PMI protocol violation, or a rank left without finalize.
pub const PMI_FAILED: u8 = 120;
/// The ranks do not fit the CPUs as asked (binding, CPUs per task, GPUs); nothing was started.
pub const CANNOT_PLACE: u8 = 121;
/// A node of a multi-node job was lost while it ran (no ping reply, or its connection dropped).
pub const NODE_LOST: u8 = 122;
/// The job reached its `--time` limit and was stopped (as `timeout(1)` reports it).
pub const TIME_LIMIT: u8 = 124;
/// gangway could not start the job (an output file, a socket, a fork failed).
pub const LAUNCH_FAILED: u8 = 125;
/// The program exists but is not executable.
pub const NOT_EXECUTABLE: u8 = 126;
/// The program was not found.
pub const NOT_FOUND: u8 = 127;
/// The job was stopped by a second Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// The exit code for a job that ran.
pub fn for_report(report: &JobReport) -> u8 {
    match &report.end {
        JobEnd::Success => SUCCESS,
        JobEnd::RankFailed { status, .. } => status.exit_code(),
        // An aborted job must never look successful, even with MPI_Abort(comm, 0).
        JobEnd::Aborted { code, .. } => match exit_byte(*code) {
            0 => 1,
            c => c,
        },
        JobEnd::PmiFailed { .. } => PMI_FAILED,
        JobEnd::ExecFailed { errno, .. } => match *errno {
            libc::ENOENT => NOT_FOUND,
            libc::EACCES | libc::ENOEXEC | libc::EISDIR => NOT_EXECUTABLE,
            _ => LAUNCH_FAILED,
        },
        JobEnd::TimeLimit => TIME_LIMIT,
        JobEnd::Interrupted => INTERRUPTED,
        JobEnd::NodeLost { .. } => NODE_LOST,
        JobEnd::NodeStartFailed { .. } => LAUNCH_FAILED,
    }
}

/// The exit code a command ends with when it fails.
pub fn for_error(error: &CliError) -> u8 {
    match error {
        CliError::Usage(_) => USAGE,
        CliError::Client(_) => NO_CONTROLLER,
        CliError::Refused(refusal) => for_refusal(refusal.kind),
        CliError::UnexpectedReply(_) | CliError::Failed(_) => FAILURE,
        CliError::JobEnded(_) => JOB_ENDED,
        CliError::CannotPlace(_) => CANNOT_PLACE,
        CliError::Program(e) | CliError::Launch(LaunchError::Program(e)) => for_program(e),
        CliError::Launch(_) | CliError::LaunchFailed(_) | CliError::Proxy(_) => LAUNCH_FAILED,
        CliError::Spawn { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => NOT_FOUND,
            _ => NOT_EXECUTABLE,
        },
    }
}

fn for_program(error: &ProgramError) -> u8 {
    match error {
        ProgramError::NotExecutable(_) => NOT_EXECUTABLE,
        ProgramError::NotInPath(_) | ProgramError::Missing(_) => NOT_FOUND,
    }
}

fn for_refusal(kind: RefusalKind) -> u8 {
    match kind {
        RefusalKind::Usage => USAGE,
        RefusalKind::PermissionDenied => PERMISSION_DENIED,
        RefusalKind::NoNewWork => NO_NEW_WORK,
        RefusalKind::CannotPlace => CANNOT_PLACE,
        RefusalKind::JobEnded => JOB_ENDED,
        RefusalKind::Failure => FAILURE,
        RefusalKind::Other(code) => code,
    }
}

impl RefusalKind {
    /// The kind of a refusal from the exit code the controller's reply carries.
    pub fn of_code(code: u8) -> RefusalKind {
        match code {
            USAGE => RefusalKind::Usage,
            PERMISSION_DENIED => RefusalKind::PermissionDenied,
            NO_NEW_WORK => RefusalKind::NoNewWork,
            CANNOT_PLACE => RefusalKind::CannotPlace,
            JOB_ENDED => RefusalKind::JobEnded,
            FAILURE => RefusalKind::Failure,
            other => RefusalKind::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_launcher::exit_status::RankStatus;

    fn report(end: JobEnd) -> JobReport {
        JobReport { end, ranks: vec![], warnings: vec![] }
    }

    #[test]
    fn rank_codes_pass_through_like_a_shell() {
        let failed = |status| report(JobEnd::RankFailed { rank: 1, pid: 2, status });
        assert_eq!(for_report(&failed(RankStatus::Exited(3))), 3);
        assert_eq!(for_report(&failed(RankStatus::Signaled(11))), 139);
        assert_eq!(for_report(&report(JobEnd::Aborted { rank: 0, code: 7 })), 7);
        assert_eq!(for_report(&report(JobEnd::Aborted { rank: 0, code: 256 })), 1);
        assert_eq!(for_report(&report(JobEnd::Success)), SUCCESS);
        assert_eq!(for_report(&report(JobEnd::TimeLimit)), TIME_LIMIT);
    }

    #[test]
    fn a_refusal_ends_with_the_code_the_controller_sent() {
        for code in [FAILURE, USAGE, PERMISSION_DENIED, NO_NEW_WORK, CANNOT_PLACE, JOB_ENDED, 7] {
            let refusal = crate::cli::error::Refusal {
                kind: RefusalKind::of_code(code),
                message: String::new(),
            };
            assert_eq!(for_error(&CliError::Refused(refusal)), code);
        }
        assert_eq!(RefusalKind::of_code(PERMISSION_DENIED), RefusalKind::PermissionDenied);
    }

    #[test]
    fn programs_that_cannot_run_keep_a_shells_codes() {
        let missing = ProgramError::NotInPath("x".into());
        assert_eq!(for_error(&CliError::Program(missing)), NOT_FOUND);
        let denied = LaunchError::Program(ProgramError::NotExecutable("x".into()));
        assert_eq!(for_error(&CliError::Launch(denied)), NOT_EXECUTABLE);
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let spawn = CliError::Spawn { program: "x".into(), source: other };
        assert_eq!(for_error(&spawn), NOT_EXECUTABLE);
    }
}
