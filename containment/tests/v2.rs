//! The cgroup v2 features that need no controller, on this machine's real cgroup2 mount: device
//! programs (the kernel refuses `open` of a denied device node) and starting a process inside
//! its cgroup (`clone3` with `CLONE_INTO_CGROUP`). Needs root and a cgroup2 mount; each test
//! skips with a loud message without them, and removes the cgroups it made, also on failure.

#![expect(clippy::unwrap_used, reason = "a test helper that cannot set up should stop loudly")]

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gangway_containment::bpf::attach_device_policy;
use gangway_containment::device_program::{DeviceKind, DevicePolicy, DeviceRule};
use gangway_containment::devices::device_node;
use gangway_containment::{
    Base, Containment, Limits, RootConfig, Version, clone_into, job_cgroup, step_cgroup,
};
use nix::errno::Errno;

mod in_vm;

const BUDGET: Duration = Duration::from_secs(5);

/// The cgroup2 mount, or `None` (and a loud message) when not root or there is none.
fn cgroup2(test: &str) -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        in_vm::skip_outside(&format!("{test}: needs root to create cgroups and load BPF programs"));
        return None;
    }
    let mounts = gangway_containment::mounts::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
    );
    let found = mounts.into_iter().find(|m| m.version == Version::V2).map(|m| m.point);
    if found.is_none() {
        in_vm::skip_outside(&format!("{test}: no cgroup2 file system is mounted here"));
    }
    found
}

/// A cgroup2 directory made for one test, removed when dropped (it holds no process by then:
/// the children the tests put there have exited and been reaped).
struct TestDir(PathBuf);

impl TestDir {
    fn new(mount: &Path, test: &str) -> Self {
        let dir = mount.join(format!("gangway-test-{test}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.0) {
            eprintln!("cleaning {}: {e}", self.0.display());
        }
    }
}

/// Opens each of `devices` for reading from a child that first joins the cgroup through
/// `procs` (its `cgroup.procs`, open for writing): what each open gave (`Ok` or the errno).
fn opens_from_inside(procs: RawFd, devices: &[&CStr]) -> Vec<Result<(), Errno>> {
    let (read, write) = nix::unistd::pipe().unwrap();
    // SAFETY: the child makes async-signal-safe calls only (write, open, close, _exit) on
    // values made before the fork.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => unsafe {
            let mut report = [0i32; 8];
            if libc::write(procs, c"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(2);
            }
            for (slot, device) in report.iter_mut().zip(devices) {
                let fd = libc::open(device.as_ptr(), libc::O_RDONLY);
                *slot = if fd < 0 { *libc::__errno_location() } else { 0 };
                libc::close(fd);
            }
            libc::write(write.as_raw_fd(), report.as_ptr().cast(), std::mem::size_of_val(&report));
            libc::_exit(0)
        },
        nix::unistd::ForkResult::Parent { child } => {
            drop(write);
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0), "the probe child");
            let mut bytes = [0u8; 32];
            let n = nix::unistd::read(&read, &mut bytes).unwrap();
            assert_eq!(n, 32);
            bytes
                .chunks(4)
                .take(devices.len())
                .map(|c| match i32::from_ne_bytes(c.try_into().unwrap()) {
                    0 => Ok(()),
                    errno => Err(Errno::from_raw(errno)),
                })
                .collect()
        }
    }
}

fn procs_file(dir: &Path) -> OwnedFd {
    OwnedFd::from(std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")).unwrap())
}

/// A program allowing /dev/zero and denying the rest of major 1 (/dev/null, /dev/full among
/// them): a child in the cgroup cannot open /dev/null, can open /dev/zero and /dev/tty's
/// neighbours of other majors; once the program is detached it opens /dev/null again.
#[test]
fn a_device_program_denies_what_it_names_and_nothing_else() {
    let Some(mount) = cgroup2("device program") else { return };
    let dir = TestDir::new(&mount, "bpf");
    let null = device_node(Path::new("/dev/null")).unwrap();
    let zero = device_node(Path::new("/dev/zero")).unwrap();
    assert_eq!((null.major, zero.major), (1, 1), "memory devices are major 1 on Linux");
    let policy = DevicePolicy {
        rules: vec![
            DeviceRule {
                kind: Some(DeviceKind::Char),
                major: Some(1),
                minor: Some(zero.minor as u32),
                allow: true,
            },
            DeviceRule { kind: Some(DeviceKind::Char), major: Some(1), minor: None, allow: false },
        ],
        default_allow: true,
    };
    let attached = attach_device_policy(&policy, &dir.0).unwrap();
    let procs = procs_file(&dir.0);
    let devices = [c"/dev/null", c"/dev/zero", c"/dev/full", c"/dev/urandom", c"/dev/ptmx"];
    let seen = opens_from_inside(procs.as_raw_fd(), &devices);
    eprintln!("with the program: {seen:?}");
    assert_eq!(seen[0], Err(Errno::EPERM), "/dev/null is denied");
    assert_eq!(seen[1], Ok(()), "/dev/zero is allowed by the first rule");
    assert_eq!(seen[2], Err(Errno::EPERM), "/dev/full (1:7) is denied by the wildcard");
    assert_eq!(seen[3], Err(Errno::EPERM), "/dev/urandom (1:9) is denied by the wildcard");
    assert_eq!(seen[4], Ok(()), "/dev/ptmx (5:2), another major, falls to the default");
    // This process, outside the cgroup, is not confined.
    assert!(std::fs::File::open("/dev/null").is_ok());

    attached.detach().unwrap();
    let seen = opens_from_inside(procs.as_raw_fd(), &devices);
    eprintln!("detached: {seen:?}");
    assert!(seen.iter().all(Result::is_ok), "{seen:?}");
}

/// Through the v2 backend: a job whose limits deny /dev/null (standing in for a GPU it was
/// not granted) gets a program, and its step, made without a denial of its own, is confined
/// by it too (the kernel runs the ancestors' programs); a step that denies the same node again
/// gets no second program, and one that denies another gets its own.
#[test]
fn a_jobs_denied_devices_stay_denied_in_its_steps() {
    let Some(mount) = cgroup2("v2 device limits") else { return };
    let root = format!("gangway-test-v2dev-{}", std::process::id());
    let c = Containment::v2_at(&mount, &RootConfig::new(&root, Base::Top)).unwrap();
    struct Cleanup<'a>(&'a Containment);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if let Err(e) = self.0.remove_root(BUDGET) {
                eprintln!("cleaning the test's cgroups: {e}");
            }
        }
    }
    let _cleanup = Cleanup(&c);
    assert!(c.backend().confines_devices(), "root loads device programs");
    let null = device_node(Path::new("/dev/null")).unwrap();
    let full = device_node(Path::new("/dev/full")).unwrap();
    let job = job_cgroup(30);
    let notes = c.create(&job, &Limits::new().deny(null)).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let devices = [c"/dev/null", c"/dev/full", c"/dev/zero"];
    for (step, limits, full_denied) in [
        (step_cgroup(30, 0), Limits::new(), false),
        (step_cgroup(30, 1), Limits::new().deny(null), false),
        (step_cgroup(30, 2), Limits::new().deny(full), true),
    ] {
        let notes = c.create(&step, &limits).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let procs = c.backend().join_files(&step, gangway_containment::Join::All).unwrap();
        let seen = opens_from_inside(procs[0].as_raw_fd(), &devices);
        eprintln!("{step}: {seen:?}");
        assert_eq!(seen[0], Err(Errno::EPERM), "{step}: the job's denial holds");
        assert_eq!(seen[1].is_err(), full_denied, "{step}: /dev/full");
        assert_eq!(seen[2], Ok(()), "{step}: /dev/zero");
    }
    let at = |path: &str| programs_on(&mount.join(&root).join(path));
    assert_eq!(at(&job), 1, "the job's");
    assert_eq!(at(&step_cgroup(30, 1)), 0, "no second program for step 1");
    assert_eq!(at(&step_cgroup(30, 2)), 1, "step 2's own");
    c.finish(&job, BUDGET).unwrap();
}

/// How many device programs are attached to the cgroup itself, as `bpftool` would list them;
/// read here from the kernel's answer to BPF_PROG_QUERY.
fn programs_on(dir: &Path) -> u32 {
    let cgroup = std::fs::File::open(dir).unwrap();
    #[repr(C)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
    }
    let mut query = Query {
        target_fd: cgroup.as_fd().as_raw_fd() as u32,
        attach_type: 6,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: 0,
        prog_cnt: 0,
    };
    // SAFETY: BPF_PROG_QUERY (16) fills the struct passed with its size.
    let r =
        unsafe { libc::syscall(libc::SYS_bpf, 16, &raw mut query, std::mem::size_of::<Query>()) };
    assert!(r >= 0, "BPF_PROG_QUERY: {}", std::io::Error::last_os_error());
    query.prog_cnt
}

/// A rank started by `clone_into::vfork_into` reads its own `/proc/self/cgroup` as its very
/// first act: it is in the cgroup already, with nobody having written its pid anywhere.
#[test]
fn a_process_cloned_into_a_cgroup_is_there_from_its_first_instruction() {
    let Some(mount) = cgroup2("clone into cgroup") else { return };
    let dir = TestDir::new(&mount, "clone");
    let target = std::fs::File::open(&dir.0).unwrap();

    struct Seen {
        bytes: [u8; 4096],
        len: isize,
    }
    extern "C" fn first_act(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the parent's `Seen`, alive and untouched while the parent waits
        // (CLONE_VFORK); open, read and close are async-signal-safe.
        unsafe {
            let seen = &mut *arg.cast::<Seen>();
            let fd = libc::open(c"/proc/self/cgroup".as_ptr(), libc::O_RDONLY);
            seen.len = libc::read(fd, seen.bytes.as_mut_ptr().cast(), seen.bytes.len());
            libc::close(fd);
        }
        7
    }
    let mut seen = Seen { bytes: [0; 4096], len: -1 };
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the entry makes async-signal-safe calls only, on `seen`, which outlives the
    // call; the stack is the child's alone. This test installs no signal handler.
    let pid = unsafe {
        clone_into::vfork_into(first_act, (&raw mut seen).cast(), &mut stack, target.as_fd())
    };
    let pid = match pid {
        Ok(pid) => pid,
        Err(clone_into::CloneError::Refused(e)) => {
            in_vm::skip_outside(&format!(
                "clone into cgroup: this kernel refuses clone3 into a cgroup ({e})"
            ));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 7),
        "the entry's return is the child's exit status"
    );
    assert!(seen.len > 0, "the child could not read /proc/self/cgroup");
    let text = String::from_utf8_lossy(&seen.bytes[..seen.len as usize]).into_owned();
    let v2_line = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let want = format!("/{}", dir.0.strip_prefix(&mount).unwrap().display());
    assert_eq!(v2_line, want, "the child's first look at its cgroups: {text}");
    // And this process is where it was.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(!own.contains(&want), "{own}");
}

/// A descriptor that is no cgroup2 directory is an error to report, not a kernel without the
/// call: the caller must not fall back to joining by a write, and later spawns still try.
#[test]
fn a_clone_into_what_is_no_cgroup_fails_and_is_no_refusal() {
    if cgroup2("clone into no cgroup").is_none() {
        return;
    }
    let not_a_cgroup = std::fs::File::open(std::env::temp_dir()).unwrap();
    extern "C" fn never(_: *mut libc::c_void) -> libc::c_int {
        99
    }
    let mut stack = vec![0u8; 16 * 1024];
    // SAFETY: the entry touches nothing; no child starts when the kernel refuses the cgroup.
    let result = unsafe {
        clone_into::vfork_into(never, std::ptr::null_mut(), &mut stack, not_a_cgroup.as_fd())
    };
    match result {
        Err(clone_into::CloneError::Failed(e)) => eprintln!("as expected: {e}"),
        Err(clone_into::CloneError::Refused(e)) => {
            in_vm::skip_outside(&format!(
                "clone into no cgroup: this kernel refuses clone3 into a cgroup ({e})"
            ));
            return;
        }
        Ok(pid) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            panic!("a child started in {}", std::env::temp_dir().display());
        }
    }
    assert!(clone_into::available(), "a failure is no refusal");
}

/// Every test above, again in a VM whose kernel has every controller on cgroup2
/// (`tests/cluster/v2vm`), where `/sys/fs/cgroup` is the v2 root itself, controllers enabled,
/// as on a v2 machine (here they run on a bare cgroup2 mount beside the v1 hierarchies).
#[test]
fn the_v2_tests_pass_in_a_vm_with_every_controller_on_cgroup2() {
    if in_vm::inside() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tests = [
        "a_device_program_denies_what_it_names_and_nothing_else",
        "a_jobs_denied_devices_stay_denied_in_its_steps",
        "a_process_cloned_into_a_cgroup_is_there_from_its_first_instruction",
        "a_clone_into_what_is_no_cgroup_fails_and_is_no_refusal",
    ];
    let Some(out) = in_vm::rerun_in_vm(repo, &tests) else { return };
    for line in [
        "with the program: [Err(EPERM), Ok(()), Err(EPERM), Err(EPERM), Ok(())]",
        "job_30/step_2: [Err(EPERM), Err(EPERM), Ok(())]",
    ] {
        assert!(out.contains(line), "no '{line}' from the VM");
    }
}
