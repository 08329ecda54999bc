//! Starting a process directly inside a cgroup v2 directory: `clone3` with
//! `CLONE_INTO_CGROUP` (Linux 5.7). The child is in its cgroup from its first instruction, and
//! nobody writes to `cgroup.procs` after the fork (a migration the kernel would otherwise make
//! for each process started). Only v2 has it; v1 and older kernels join by that write
//! ([`crate::join`]).
//!
//! glibc has no `clone3` wrapper, and the raw call with `CLONE_VM` (the vfork-style spawn of
//! ranks: no page tables copied) starts the child on the new stack at the instruction after
//! the system call, with no frame to return into: the child must not leave that spot before it
//! calls its entry function. That is a dozen instructions of assembly below, the only unsafe
//! part besides the call's arguments; the entry function then runs as it would under
//! `clone(2)`. Other architectures are refused like an old kernel, and their callers join by
//! the write.
//!
//! A kernel (or a seccomp filter: container runtimes answer `clone3` with `ENOSYS` so that
//! libc falls back) that refuses the call is asked once: [`CloneError::Refused`] comes back
//! the first time, for the caller to say so, and [`available`] is false from then on.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

/// `linux/sched.h`; libc's constant is an `int`, too narrow for bit 33.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

static REFUSED: AtomicBool = AtomicBool::new(false);

/// Why [`vfork_into`] started no process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloneError {
    /// This kernel (or this build: not x86-64) cannot start a process in a cgroup: join by
    /// writing `cgroup.procs` instead. Returned once per process.
    #[error(
        "clone3 with CLONE_INTO_CGROUP refused ({0}): processes join their cgroup by a write to cgroup.procs"
    )]
    Refused(Errno),
    /// The clone failed for another reason (no memory, the pids limit, a cgroup that takes no
    /// process).
    #[error("clone3 into the cgroup failed: {0}")]
    Failed(Errno),
}

/// Whether [`vfork_into`] is worth trying: false once the kernel refused it.
pub fn available() -> bool {
    !REFUSED.load(Ordering::Relaxed)
}

/// The errors that mean the kernel has no `clone3` (`ENOSYS`), no `CLONE_INTO_CGROUP`
/// (`EINVAL`: an unknown flag) or a shorter `clone_args` (`E2BIG`: before 5.7).
fn is_refusal(errno: Errno) -> bool {
    matches!(errno, Errno::ENOSYS | Errno::EINVAL | Errno::E2BIG)
}

/// Clones a child that shares this process's memory and runs `entry(arg)` on `stack`, inside
/// the cgroup v2 directory `cgroup`; this thread waits until the child has exec'd or exited
/// (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does). A return from `entry` ends the child
/// with that status. Returns the child's pid.
///
/// # Safety
/// As for `clone(CLONE_VM | CLONE_VFORK)`: `entry` runs in the child on the caller's memory and
/// may make async-signal-safe calls only; `arg` stays valid until this returns; `stack` is
/// used by nobody else meanwhile; signals should be blocked around the call (the child shares
/// the handlers' memory until it resets them).
pub unsafe fn vfork_into(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    stack: &mut [u8],
    cgroup: BorrowedFd<'_>,
) -> Result<libc::pid_t, CloneError> {
    if !available() {
        return Err(CloneError::Refused(Errno::ENOSYS));
    }
    // SAFETY: passed on from the caller.
    let ret = unsafe { clone3_vfork(entry, arg, stack, cgroup) };
    if ret >= 0 {
        return Ok(ret as libc::pid_t);
    }
    let errno = Errno::from_raw((-ret) as i32);
    if is_refusal(errno) {
        REFUSED.store(true, Ordering::Relaxed);
        return Err(CloneError::Refused(errno));
    }
    Err(CloneError::Failed(errno))
}

/// The raw call: the child's pid, or minus the errno.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    stack: &mut [u8],
    cgroup: BorrowedFd<'_>,
) -> i64 {
    use std::os::fd::AsRawFd;
    // The kernel starts the child with its stack pointer at `stack + stack_size`: aligned to
    // 16 bytes, so that `call` leaves it as the ABI expects at the entry function.
    let base = stack.as_mut_ptr() as u64;
    let top = (base + stack.len() as u64) & !15;
    // SAFETY: clone_args is plain integers; all-zero is "nothing asked".
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.stack = base;
    args.stack_size = top - base;
    args.cgroup = cgroup.as_raw_fd() as u64;
    let ret: i64;
    // SAFETY: the parent leaves the block with rax holding the result (rcx and r11 are what
    // `syscall` clobbers). The child leaves it never: on its own stack it calls
    // entry(arg) (held in r12/r13, which it inherits) and exits with what entry returned.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &raw const args,
            in("rsi") std::mem::size_of::<libc::clone_args>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_vfork(
    _entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
    _stack: &mut [u8],
    _cgroup: BorrowedFd<'_>,
) -> i64 {
    -(libc::ENOSYS as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kernel_without_the_call_is_a_refusal() {
        assert!(is_refusal(Errno::ENOSYS));
        assert!(is_refusal(Errno::EINVAL));
        assert!(is_refusal(Errno::E2BIG));
        // A cgroup that takes no process, or no memory: a failure to report, not to hide
        // behind a write that would fail the same way.
        assert!(!is_refusal(Errno::EBUSY));
        assert!(!is_refusal(Errno::EAGAIN));
        assert!(!is_refusal(Errno::EBADF));
    }
}
