//! Fork/exec of one local rank: its own process group, its PMI socket, its environment.
//!
//! Ranks are started the way `posix_spawn` does it (a vfork-style clone: no page tables copied,
//! no copy-on-write faults afterwards), but with a parent-death signal, which `posix_spawn`
//! cannot set. An exec failure comes back through a close-on-exec pipe, the exit through a pidfd.
//! A rank of a cgroup v2 run starts inside its cgroup (`clone3`), rather than joining it by a
//! write between fork and exec.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use gangway_topology::{CpuSet, NodeSet};

use crate::exit_status::RankStatus;

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
    /// Write straight to the launcher's stdout/stderr instead of through pipes.
    pub direct_output: bool,
    /// A descriptor the rank must inherit (its end of the PMI socket pair).
    pub inherit_fd: Option<RawFd>,
    /// Run only on these CPUs (OS indexes).
    pub cpus: Option<&'a CpuSet>,
    /// Allocate memory only on these NUMA nodes.
    pub mem_nodes: Option<&'a NodeSet>,
    /// `cgroup.procs` files of the cgroup to join before exec (`run_cgroup.rs`); empty: none.
    pub cgroup: &'a [RawFd],
    /// The cgroup v2 directory to start the rank in (`clone3`), so that it writes none of
    /// `cgroup`; those writes remain the way in where the kernel refuses that.
    pub cgroup_dir: Option<RawFd>,
}

/// A started rank: its pid, the launcher's ends of its stdio, and a handle to await its end.
#[derive(Debug)]
pub struct RankProcess {
    pub pid: u32,
    pub stdin: Option<pipe::Sender>,
    /// `None` with direct output.
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pub exit: ExitWatch,
}

/// How a rank's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEnd {
    /// It ran and ended with this status.
    Status(RankStatus),
    /// It could not run the program: a set-up step or exec itself failed with this errno.
    ExecFailed { step: SetupStep, errno: i32 },
}

/// The steps between fork and exec, to say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum SetupStep {
    ProcessGroup = 1,
    ParentDeathSignal,
    Stdio,
    PmiSocket,
    WorkingDirectory,
    CpuBinding,
    MemoryBinding,
    Cgroup,
    Exec,
}

impl SetupStep {
    fn from_code(code: i32) -> SetupStep {
        use SetupStep::*;
        [
            ProcessGroup,
            ParentDeathSignal,
            Stdio,
            PmiSocket,
            WorkingDirectory,
            CpuBinding,
            MemoryBinding,
            Cgroup,
        ]
        .into_iter()
        .find(|s| *s as i32 == code)
        .unwrap_or(Exec)
    }
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SetupStep::ProcessGroup => "start a process group",
            SetupStep::ParentDeathSignal => "set the parent-death signal",
            SetupStep::Stdio => "connect stdin/stdout/stderr",
            SetupStep::PmiSocket => "keep the PMI socket open",
            SetupStep::WorkingDirectory => "change to the working directory",
            SetupStep::CpuBinding => "bind to its CPUs",
            SetupStep::MemoryBinding => "bind its memory",
            SetupStep::Cgroup => "join the run's cgroup",
            SetupStep::Exec => "execute the program",
        })
    }
}

/// Awaits the end of one rank process.
#[derive(Debug)]
pub struct ExitWatch {
    pid: libc::pid_t,
    pidfd: AsyncFd<OwnedFd>,
    exec_error: OwnedFd,
}

impl ExitWatch {
    /// Waits for the process to end and reaps it.
    pub async fn wait(self) -> io::Result<ProcessEnd> {
        loop {
            let mut ready = self.pidfd.readable().await?;
            let mut status: libc::c_int = 0;
            // SAFETY: plain waitpid on our own child; `status` is a valid out-pointer.
            let reaped = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if reaped == 0 {
                ready.clear_ready();
                continue;
            }
            if reaped < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((step, errno)) = read_exec_error(&self.exec_error) {
                return Ok(ProcessEnd::ExecFailed { step, errno });
            }
            return Ok(ProcessEnd::Status(RankStatus::from_wait_status(status)));
        }
    }
}

fn read_exec_error(fd: &OwnedFd) -> Option<(SetupStep, i32)> {
    let mut buf = [0i32; 2];
    // SAFETY: reading into a local buffer from a descriptor we own.
    let n =
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)) };
    (n == 8).then(|| (SetupStep::from_code(buf[0]), buf[1]))
}

/// Everything the child needs, prepared before the fork: after it only async-signal-safe
/// calls on these values are allowed (no allocation, no locks).
struct ChildPlan {
    path: CString,
    /// Owns what `argv_ptrs` points to.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// Owns what `envp_ptrs` points to.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// Where the child writes its pid, NUL-terminated, inside the task-pid variable's buffer
    /// (owned by `spawn_rank`'s `task_pid`, alive until the child has exec'd).
    task_pid_digits: Option<*mut u8>,
    cwd: Option<CString>,
    stdin: Option<RawFd>,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
    inherit_fd: Option<RawFd>,
    error_pipe: RawFd,
    cpus: Option<libc::cpu_set_t>,
    /// Node mask words and the `maxnode` argument of set_mempolicy.
    mem_nodes: Option<(Vec<libc::c_ulong>, libc::c_ulong)>,
    launcher_pid: libc::pid_t,
    mask: libc::sigset_t,
    cgroup: Vec<RawFd>,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "argument or variable contains a NUL byte")
    })
}

fn cpu_mask(cpus: &CpuSet) -> libc::cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET only writes inside it.
    unsafe {
        let mut mask: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus.iter() {
            if (cpu as usize) < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu as usize, &mut mask);
            }
        }
        mask
    }
}

fn split((r, w): (OwnedFd, OwnedFd)) -> (Option<OwnedFd>, Option<OwnedFd>) {
    (Some(r), Some(w))
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes sure descriptors 0, 1 and 2 are open, so that no pipe created later lands on them
/// (a child's `dup2` onto 0-2 would otherwise clobber it). Call once at start-up.
pub fn ensure_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries; opening /dev/null onto a free slot takes that slot.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

/// Starts a rank. It leads a new process group, so signals and the final kill reach
/// everything it starts, and it dies with the launcher (parent-death signal).
pub fn spawn_rank(rank: RankCommand<'_>) -> io::Result<RankProcess> {
    let (out_r, out_w) = if rank.direct_output { (None, None) } else { split(cloexec_pipe()?) };
    let (err_r, err_w) = if rank.direct_output { (None, None) } else { split(cloexec_pipe()?) };
    let (stdin_child, stdin_parent): (Option<OwnedFd>, Option<OwnedFd>) = match rank.stdin {
        StdinSetup::Inherit => (None, None),
        StdinSetup::Pipe => {
            let (r, w) = cloexec_pipe()?;
            (Some(r), Some(w))
        }
        StdinSetup::Null => {
            let null = std::fs::File::open("/dev/null")?;
            (Some(OwnedFd::from(null)), None)
        }
    };
    let (error_r, error_w) = cloexec_pipe()?;

    let argv: Vec<CString> = std::iter::once(rank.argv0)
        .chain(rank.args)
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    // The task-pid variable's value is written by the child itself (its pid is known only
    // there): a buffer of its own with room for any pid, pointed at from envp like the rest.
    let is_task_pid = |k: &OsString, v: &OsString| {
        k.as_bytes() == crate::rank_env::TASK_PID.as_bytes()
            && v.as_bytes() == crate::rank_env::TASK_PID_SLOT.as_bytes()
    };
    let mut task_pid = rank.env.iter().any(|(k, v)| is_task_pid(k, v)).then(|| {
        let mut kv = format!("{}={}", crate::rank_env::TASK_PID, crate::rank_env::TASK_PID_SLOT)
            .into_bytes();
        kv.push(0);
        kv
    });
    let task_pid_kv: Option<*mut u8> = task_pid.as_mut().map(|kv| kv.as_mut_ptr());
    let envp: Vec<CString> = rank
        .env
        .iter()
        .filter(|(k, v)| !is_task_pid(k, v))
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<io::Result<_>>()?;
    let mut plan = ChildPlan {
        path: cstring(rank.program.as_os_str().as_bytes())?,
        argv_ptrs: argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
        _argv: argv,
        envp_ptrs: envp
            .iter()
            .map(|e| e.as_ptr())
            .chain(task_pid_kv.map(|kv| kv.cast_const().cast()))
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
        // SAFETY: the buffer holds the name, '=' and the slot: the offset stays inside it.
        task_pid_digits: task_pid_kv
            .map(|kv| unsafe { kv.add(crate::rank_env::TASK_PID.len() + 1) }),
        _envp: envp,
        cwd: rank.cwd.map(|d| cstring(d.as_os_str().as_bytes())).transpose()?,
        stdin: stdin_child.as_ref().map(|fd| fd.as_raw_fd()),
        stdout: out_w.as_ref().map(|fd| fd.as_raw_fd()),
        stderr: err_w.as_ref().map(|fd| fd.as_raw_fd()),
        inherit_fd: rank.inherit_fd,
        error_pipe: error_w.as_raw_fd(),
        cpus: rank.cpus.map(cpu_mask),
        mem_nodes: rank.mem_nodes.filter(|n| !n.is_empty()).map(|nodes| {
            let words: Vec<libc::c_ulong> =
                nodes.to_words().into_iter().map(|w| w as libc::c_ulong).collect();
            // The kernel counts one bit less than it is told (libnuma passes bits + 1 too).
            let maxnode = (words.len() * 64 + 1) as libc::c_ulong;
            (words, maxnode)
        }),
        launcher_pid: std::process::id() as libc::pid_t,
        cgroup: rank.cgroup.to_vec(),
        // SAFETY: an all-zero sigset_t is a valid value to be overwritten below.
        mask: unsafe { std::mem::zeroed() },
    };

    let pid = clone_child(&mut plan, rank.cgroup, rank.cgroup_dir)?;
    drop((out_w, err_w, stdin_child, error_w));

    // SAFETY: pidfd_open on our own, not yet reaped child returns a descriptor we own.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let err = io::Error::last_os_error();
        // SAFETY: kill and reap our own child so it does not linger.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(err);
    }
    // SAFETY: the syscall returned a fresh descriptor; the OwnedFd moved into the AsyncFd keeps
    // it open and unchanged for as long as the AsyncFd lives.
    let pidfd = unsafe { AsyncFd::register(OwnedFd::from_raw_fd(pidfd as RawFd)) }
        .map_err(io::Error::from)?;
    Ok(RankProcess {
        pid: pid as u32,
        stdin: stdin_parent.map(pipe::Sender::from_owned_fd).transpose()?,
        stdout: out_r.map(pipe::Receiver::from_owned_fd).transpose()?,
        stderr: err_r.map(pipe::Receiver::from_owned_fd).transpose()?,
        exit: ExitWatch { pid, pidfd, exec_error: error_r },
    })
}

/// Clones the rank's process: inside the cgroup directory `into` where there is one and the
/// kernel can (`clone3`, `gangway_containment::clone_into`), the child then writing none of
/// `join`; else by `clone(2)`, the child joining by those writes (said once when the kernel
/// refused the first).
///
/// vfork semantics (shared memory, launcher thread paused until the child has exec'd): no
/// page tables are copied and no copy-on-write faults follow, which a plain fork pays per
/// rank. Signals stay blocked across the clone so that no launcher handler runs in the
/// child before it has put every handler back to the default.
fn clone_child(
    plan: &mut ChildPlan,
    join: &[RawFd],
    into: Option<RawFd>,
) -> io::Result<libc::pid_t> {
    use gangway_containment::clone_into::{self, CloneError};
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: blocks every signal in this thread, saving the mask for the child and for the
    // restore below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut plan.mask);
    }
    let mut cloned = None;
    if let Some(dir) = into.filter(|_| clone_into::available()) {
        plan.cgroup.clear();
        let arg = (&raw const *plan).cast_mut().cast();
        // SAFETY: the child runs `child_entry` on its own stack and only makes
        // async-signal-safe calls on the plan, which outlives it because this thread is
        // suspended until the child has exec'd or exited (CLONE_VFORK); `dir` is the caller's
        // open descriptor.
        match unsafe {
            clone_into::vfork_into(child_entry, arg, &mut stack, BorrowedFd::borrow_raw(dir))
        } {
            Ok(pid) => cloned = Some(Ok(pid)),
            Err(refused @ CloneError::Refused(_)) => eprintln!("gangway: note: {refused}"),
            Err(failed) => cloned = Some(Err(io::Error::other(failed))),
        }
        plan.cgroup = join.to_vec();
    }
    let cloned = cloned.unwrap_or_else(|| {
        // SAFETY: as above; the stack's top is aligned to 16 bytes as the ABI wants.
        let pid = unsafe {
            let top = stack.as_mut_ptr().add(stack.len());
            let top = top.sub(top as usize % 16);
            libc::clone(
                child_entry,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw const *plan).cast_mut().cast(),
            )
        };
        if pid < 0 { Err(io::Error::last_os_error()) } else { Ok(pid) }
    });
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut()) };
    cloned
}

/// `MPOL_BIND` from the kernel's mempolicy.h: allocate only on the given nodes.
const MPOL_BIND: libc::c_int = 2;

/// Stack of the child between clone and exec: it only runs `child_main`.
const CHILD_STACK: usize = 64 * 1024;

extern "C" fn child_entry(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` points to the parent's ChildPlan, alive while the parent is suspended.
    unsafe { child_main(&*(plan as *const ChildPlan)) }
}

/// The child between clone and exec. Never returns.
///
/// # Safety
/// Only async-signal-safe calls on memory prepared before the fork.
unsafe fn child_main(plan: &ChildPlan) -> ! {
    // SAFETY: every call below is async-signal-safe and uses pre-built values. The sigaction
    // calls change only the child's own handler table (no CLONE_SIGHAND).
    unsafe {
        let fail = |plan: &ChildPlan, step: SetupStep| -> ! {
            let report = [step as i32, *libc::__errno_location()];
            libc::write(plan.error_pipe, report.as_ptr().cast(), std::mem::size_of_val(&report));
            libc::_exit(127)
        };
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for sig in crate::signals::FORWARDED {
            libc::sigaction(sig as libc::c_int, &default, std::ptr::null_mut());
        }
        // The Rust runtime ignores SIGPIPE, and an ignored signal stays ignored across exec:
        // `yes | head` in a rank would print errors instead of ending quietly.
        libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
        libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            fail(plan, SetupStep::ProcessGroup);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            fail(plan, SetupStep::ParentDeathSignal);
        }
        // The launcher may have died before the prctl; then nobody would ever kill us.
        if libc::getppid() != plan.launcher_pid {
            libc::_exit(1);
        }
        if let Some(fd) = plan.stdin
            && libc::dup2(fd, 0) < 0
        {
            fail(plan, SetupStep::Stdio);
        }
        if let Some(fd) = plan.stdout
            && libc::dup2(fd, 1) < 0
        {
            fail(plan, SetupStep::Stdio);
        }
        if let Some(fd) = plan.stderr
            && libc::dup2(fd, 2) < 0
        {
            fail(plan, SetupStep::Stdio);
        }
        if let Some(fd) = plan.inherit_fd
            && libc::fcntl(fd, libc::F_SETFD, 0) != 0
        {
            fail(plan, SetupStep::PmiSocket);
        }
        // Joined before anything of the program runs, so nothing it starts is outside.
        for &fd in &plan.cgroup {
            if libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                fail(plan, SetupStep::Cgroup);
            }
        }
        if let Some(dir) = &plan.cwd
            && libc::chdir(dir.as_ptr()) != 0
        {
            fail(plan, SetupStep::WorkingDirectory);
        }
        if let Some(mask) = &plan.cpus
            && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), mask) != 0
        {
            fail(plan, SetupStep::CpuBinding);
        }
        if let Some((words, maxnode)) = &plan.mem_nodes
            && libc::syscall(libc::SYS_set_mempolicy, MPOL_BIND, words.as_ptr(), *maxnode) != 0
        {
            fail(plan, SetupStep::MemoryBinding);
        }
        if let Some(digits) = plan.task_pid_digits {
            write_pid(digits, libc::getpid());
        }
        libc::execve(plan.path.as_ptr(), plan.argv_ptrs.as_ptr(), plan.envp_ptrs.as_ptr());
        fail(plan, SetupStep::Exec)
    }
}

/// Writes `pid` in decimal at `at`, then a NUL: at most 11 bytes, which the slot holds.
///
/// # Safety
/// `at` points to at least 11 writable bytes. Async-signal-safe: no allocation.
unsafe fn write_pid(at: *mut u8, pid: libc::pid_t) {
    let mut digits = [0u8; 10];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    // SAFETY: the caller gives 11 bytes; len <= 10.
    unsafe {
        for (i, d) in digits[..len].iter().rev().enumerate() {
            *at.add(i) = *d;
        }
        *at.add(len) = 0;
    }
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

    fn command<'a>(
        program: &'a Path,
        argv0: &'a OsString,
        args: &'a [OsString],
    ) -> RankCommand<'a> {
        RankCommand {
            program,
            argv0,
            args,
            cwd: Some(Path::new("/")),
            env: vec![("GW_TEST".into(), "yes".into())],
            stdin: StdinSetup::Null,
            direct_output: false,
            inherit_fd: None,
            cpus: None,
            mem_nodes: None,
            cgroup: &[],
            cgroup_dir: None,
        }
    }

    #[tokio::test]
    async fn runs_a_program_in_its_own_group_and_reports_its_end() {
        use tokio::io::AsyncReadExt;
        let sh = PathBuf::from("/bin/sh");
        let argv0 = OsString::from("sh");
        let args = [
            OsString::from("-c"),
            OsString::from("echo $GW_TEST $(pwd) $(ps -o pgid= $$); exit 3"),
        ];
        let mut p = spawn_rank(command(&sh, &argv0, &args)).unwrap();
        let mut out = String::new();
        p.stdout.as_mut().unwrap().read_to_string(&mut out).await.unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&words[..2], ["yes", "/"]);
        assert_eq!(words[2], p.pid.to_string(), "the rank leads its process group");
        assert_eq!(p.exit.wait().await.unwrap(), ProcessEnd::Status(RankStatus::Exited(3)));
    }

    #[tokio::test]
    async fn exec_failure_comes_back_as_errno() {
        let dir = std::env::temp_dir().join(format!("gangway-noexec-{}", std::process::id()));
        std::fs::write(&dir, "\x7fELF garbage").unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let argv0 = OsString::from("x");
        let p = spawn_rank(command(&dir, &argv0, &[])).unwrap();
        let end = p.exit.wait().await.unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(end, ProcessEnd::ExecFailed { step: SetupStep::Exec, errno: libc::ENOEXEC });
    }

    /// On cgroup v2 a rank starts in its cgroup's directory and writes none of its join files:
    /// given the `cgroup.procs` of another cgroup as well, it is still in the first. Without
    /// the directory the same files are how it joins (it ends up in the other). Needs root and
    /// a cgroup2 mount; skipped loudly without them.
    #[tokio::test]
    async fn a_v2_rank_starts_inside_its_cgroup_and_joins_by_no_write() {
        use std::os::fd::AsRawFd;
        use tokio::io::AsyncReadExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED v2 rank start: needs root to create cgroups");
            return;
        }
        let mounts = gangway_containment::mounts::parse_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        );
        let Some(mount) = mounts
            .into_iter()
            .find(|m| m.version == gangway_containment::Version::V2)
            .map(|m| m.point)
        else {
            eprintln!("SKIPPED v2 rank start: no cgroup2 file system is mounted here");
            return;
        };
        struct Dirs(Vec<PathBuf>);
        impl Drop for Dirs {
            fn drop(&mut self) {
                for d in &self.0 {
                    let _ = std::fs::remove_dir(d);
                }
            }
        }
        let name = |which: &str| format!("gangway-test-spawn-{which}-{}", std::process::id());
        let dirs = Dirs(vec![mount.join(name("into")), mount.join(name("joined"))]);
        for d in &dirs.0 {
            std::fs::create_dir(d).unwrap();
        }
        let into = std::fs::File::open(&dirs.0[0]).unwrap();
        let other =
            std::fs::OpenOptions::new().write(true).open(dirs.0[1].join("cgroup.procs")).unwrap();
        let cat = PathBuf::from("/bin/cat");
        let argv0 = OsString::from("cat");
        let args = [OsString::from("/proc/self/cgroup")];
        let join = [other.as_raw_fd()];
        for (dir, expect) in [(Some(into.as_raw_fd()), name("into")), (None, name("joined"))] {
            let mut rank = command(&cat, &argv0, &args);
            rank.cgroup = &join;
            rank.cgroup_dir = dir;
            let mut p = spawn_rank(rank).unwrap();
            let mut out = String::new();
            p.stdout.as_mut().unwrap().read_to_string(&mut out).await.unwrap();
            assert_eq!(p.exit.wait().await.unwrap(), ProcessEnd::Status(RankStatus::Exited(0)));
            let v2 = out.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default();
            assert_eq!(v2, format!("/{expect}"), "cgroup_dir {dir:?}: {out}");
        }
    }
}
