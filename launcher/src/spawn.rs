//! Fork/exec of one local rank: its own process group, its PMI socket, its environment.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

/// How a rank's standard input is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinSetup {
    /// The launcher's own stdin, shared (only when it is not a terminal).
    Inherit,
    /// A pipe the launcher writes forwarded input into.
    Pipe,
    /// /dev/null.
    Null,
}

/// Everything needed to start one rank.
#[derive(Debug)]
pub struct RankCommand<'a> {
    pub program: &'a Path,
    pub argv0: &'a OsString,
    pub args: &'a [OsString],
    pub cwd: Option<&'a Path>,
    pub env: Vec<(OsString, OsString)>,
    pub stdin: StdinSetup,
    /// A descriptor the rank must inherit (its end of the PMI socket pair).
    pub inherit_fd: Option<RawFd>,
}

/// Starts a rank. It leads a new process group, so signals and the final kill reach
/// everything it starts, and it dies with the launcher (parent-death signal).
pub fn spawn_rank(rank: RankCommand<'_>) -> std::io::Result<Child> {
    let mut cmd = Command::new(rank.program);
    cmd.arg0(rank.argv0)
        .args(rank.args)
        .env_clear()
        .envs(rank.env)
        .process_group(0)
        .stdin(match rank.stdin {
            StdinSetup::Inherit => Stdio::inherit(),
            StdinSetup::Pipe => Stdio::piped(),
            StdinSetup::Null => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = rank.cwd {
        cmd.current_dir(dir);
    }
    let launcher_pid = std::process::id() as libc::pid_t;
    let inherit_fd = rank.inherit_fd;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, fcntl, _exit) on values copied in before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The launcher may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != launcher_pid {
                libc::_exit(1);
            }
            if let Some(fd) = inherit_fd
                && libc::fcntl(fd, libc::F_SETFD, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Why a program cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("'{0}' not found in PATH; give a path (./{0}) or add its directory to PATH")]
    NotInPath(String),
    #[error("'{0}' does not exist")]
    Missing(PathBuf),
    #[error("'{0}' is not an executable file (check its permissions: chmod +x)")]
    NotExecutable(PathBuf),
}

/// Finds the program the way a shell would, so a typo fails before any rank starts.
///
/// Relative paths are taken from the ranks' working directory, where exec will look.
pub fn resolve_program(
    program: &str,
    cwd: Option<&Path>,
    path_var: Option<OsString>,
) -> Result<PathBuf, ProgramError> {
    if program.contains('/') {
        let path = match cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        return check_executable(path);
    }
    let path_var = path_var.unwrap_or_default();
    let mut found_but_not_executable = None;
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join(program);
        match check_executable(candidate) {
            Ok(path) => return Ok(path),
            Err(ProgramError::NotExecutable(p)) => {
                found_but_not_executable.get_or_insert(p);
            }
            Err(_) => {}
        }
    }
    match found_but_not_executable {
        Some(p) => Err(ProgramError::NotExecutable(p)),
        None => Err(ProgramError::NotInPath(program.to_string())),
    }
}

fn check_executable(path: PathBuf) -> Result<PathBuf, ProgramError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&path) {
        Err(_) => Err(ProgramError::Missing(path)),
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(path),
        Ok(_) => Err(ProgramError::NotExecutable(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_a_shell() {
        let path = Some(OsString::from("/nonexistent:/bin:/usr/bin"));
        assert!(resolve_program("true", None, path.clone()).unwrap().ends_with("true"));
        assert!(matches!(
            resolve_program("no-such-program-xyz", None, path.clone()),
            Err(ProgramError::NotInPath(_))
        ));
        assert!(matches!(
            resolve_program("./nope", None, path.clone()),
            Err(ProgramError::Missing(_))
        ));
        let data = std::env::temp_dir().join(format!("gangway-spawn-test-{}", std::process::id()));
        std::fs::write(&data, "data").unwrap();
        let result = resolve_program(data.to_str().unwrap(), None, path);
        std::fs::remove_file(&data).unwrap();
        assert!(matches!(result, Err(ProgramError::NotExecutable(_))));
        assert!(resolve_program("bin/true", Some(Path::new("/usr")), None).is_ok());
    }
}
