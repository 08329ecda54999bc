//! The `bpf()` system call, for device programs only: loading a [`DevicePolicy`]'s
//! instructions (`BPF_PROG_LOAD`) and attaching it to a cgroup v2 directory
//! (`BPF_PROG_ATTACH`, `BPF_CGROUP_DEVICE`). libc has the call's number but not its attribute
//! structs; the two used are laid out here as `linux/bpf.h` has them (the kernel accepts a
//! shorter struct than its own and reads the rest as zero).
//!
//! Attached with `BPF_F_ALLOW_MULTI`: the kernel runs the programs of the cgroup and of each
//! ancestor that has one, and a device is usable only if all of them allow it; so a job's
//! program keeps confining its steps, and a step may add its own. An attachment made by
//! `BPF_PROG_ATTACH` outlives the descriptors (unlike a `bpf_link`): it stays until it is
//! detached or the cgroup is removed, which is how a job's cgroup ends anyway.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::ContainmentError;
use crate::device_program::{DevicePolicy, Insn};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`/`BPF_PROG_DETACH`, up to `attach_flags`.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// A loaded device program attached to a cgroup. Dropping it closes the descriptors and
/// leaves the program attached (see the module doc); [`AttachedProgram::detach`] takes it off.
#[derive(Debug)]
pub struct AttachedProgram {
    program: OwnedFd,
    cgroup: OwnedFd,
}

impl AttachedProgram {
    /// Takes the program off its cgroup: its tasks may use every device again (as far as the
    /// programs of the cgroup's ancestors allow).
    pub fn detach(self) -> Result<(), ContainmentError> {
        let attr = ProgAttach {
            target_fd: self.cgroup.as_raw_fd() as u32,
            attach_bpf_fd: self.program.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: 0,
        };
        bpf(BPF_PROG_DETACH, &attr).map(drop).map_err(|source| ContainmentError::Devices {
            what: "detach the device program",
            why: source.to_string(),
        })
    }
}

/// Loads `policy` and attaches it to the cgroup v2 directory `dir`: from then on every task
/// in it (and in its sub-cgroups) opens a device node only if the policy allows it.
pub fn attach_device_policy(
    policy: &DevicePolicy,
    dir: &Path,
) -> Result<AttachedProgram, ContainmentError> {
    let cgroup =
        std::fs::File::open(dir).map(OwnedFd::from).map_err(|e| ContainmentError::Devices {
            what: "open the cgroup",
            why: format!("{}: {e}", dir.display()),
        })?;
    let program = load(policy)?;
    let attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &attr).map_err(|e| ContainmentError::Devices {
        what: "attach the device program",
        why: match e.raw_os_error() {
            // An ancestor attached its own program without allowing others below it.
            Some(libc::EPERM) => format!(
                "{e} (to {}: an ancestor's device program may forbid programs below it, or \
                 this process lacks CAP_SYS_ADMIN)",
                dir.display()
            ),
            _ => format!("{e} (to {})", dir.display()),
        },
    })?;
    Ok(AttachedProgram { program, cgroup })
}

/// Whether this process may load a device program at all (root, or CAP_BPF with
/// CAP_SYS_ADMIN, and a kernel with cgroup BPF): one allow-all program, loaded and dropped.
pub fn can_load_device_programs() -> bool {
    load(&DevicePolicy::denying(&[])).is_ok()
}

fn load(policy: &DevicePolicy) -> Result<OwnedFd, ContainmentError> {
    let insns: Vec<Insn> = policy.instructions();
    // The verifier says why it refuses a program in its log: kept for the error.
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..15].copy_from_slice(b"gangway_devices");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"Dual MIT/GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    match bpf(BPF_PROG_LOAD, &attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(ContainmentError::Devices {
                what: "load the device program",
                why: if verifier.is_empty() { e.to_string() } else { format!("{e}: {verifier}") },
            })
        }
    }
}

/// One `bpf()` call with `attr` (a `#[repr(C)]` prefix of `union bpf_attr`).
fn bpf<T>(command: libc::c_int, attr: &T) -> std::io::Result<libc::c_int> {
    // SAFETY: `attr` is a live, initialised struct laid out as the command's part of
    // `union bpf_attr`, and its size is passed with it; the pointers it holds (instructions,
    // license, log) are alive for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, command, std::ptr::from_ref(attr), std::mem::size_of::<T>())
    };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as libc::c_int) }
}
