//! Containment on this machine's real cgroups: limits enforced by the kernel, everything killed,
//! usage read back. Needs root; each test skips with a loud message when not root or when the
//! kernel cannot do what it checks. Each test has its own gangway root (below this process's
//! own cgroups), removed at the end even when the test fails.

#![expect(clippy::unwrap_used, reason = "a test helper that cannot set up should stop loudly")]

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gangway_containment::{
    Base, Containment, Join, Limits, RootConfig, Version, job_cgroup, step_cgroup,
};

mod in_vm;

const BUDGET: Duration = Duration::from_secs(5);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A C program from `examples/bin`, built once (`make -C examples c`).
fn program(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let lock_path = repo_root().join("target").join("examples.lock");
        let _ = std::fs::create_dir_all(lock_path.parent().unwrap());
        let lock = std::fs::File::create(&lock_path).unwrap();
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        let status = Command::new("make")
            .args(["-s", "-C"])
            .arg(repo_root().join("examples"))
            .arg("c")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "make -C examples c failed");
    });
    repo_root().join("examples/bin").join(name)
}

/// A gangway root for one test, removed (with everything in it) when dropped.
struct TestRoot(Containment);

impl Drop for TestRoot {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_root(BUDGET) {
            eprintln!("cleaning the test's cgroups: {e}");
        }
    }
}

impl std::ops::Deref for TestRoot {
    type Target = Containment;
    fn deref(&self) -> &Containment {
        &self.0
    }
}

fn root_name(test: &str) -> String {
    format!("gangway-test-{test}-{}", std::process::id())
}

/// Containment as `discover` picks it on this machine, or `None` (and a loud message) when
/// not root.
fn contained(test: &str) -> Option<TestRoot> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED {test}: needs root to create cgroups (run the suite as root)");
        return None;
    }
    match Containment::discover(&RootConfig::new(root_name(test), Base::Own)) {
        Ok(c) => {
            // The VM exists to run these on v2: a v1 pick there would test v1 twice.
            assert!(!in_vm::inside() || c.version() == Version::V2, "{test}: v1 in the v2 VM");
            Some(TestRoot(c))
        }
        Err(e) => panic!("root, yet containment is unavailable: {e}"),
    }
}

/// A child that joins `path` before it execs (as the launcher's ranks do).
fn spawn_in(c: &Containment, path: &str, cmd: &mut Command) -> Child {
    let files: Vec<OwnedFd> = c.backend().join_files(path, Join::All).unwrap();
    let fds: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the hook only calls the async-signal-safe `join` on descriptors kept open here.
    unsafe {
        cmd.pre_exec(move || gangway_containment::join(&fds).map_err(std::io::Error::from));
    }
    let child = cmd.spawn().unwrap();
    drop(files);
    child
}

#[expect(clippy::disallowed_methods, reason = "plain test threads: no async runtime to stall")]
fn nap(d: Duration) {
    std::thread::sleep(d);
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for this purpose: it runs nothing and holds no memory.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

#[test]
fn over_its_memory_limit_a_program_is_oom_killed_and_the_kill_is_reported() {
    let Some(c) = contained("oom") else { return };
    let step = step_cgroup(1, 0);
    let limit = 100 << 20;
    let notes = c.create(&step, &Limits::new().memory(limit)).unwrap();
    let mut child =
        spawn_in(&c, &step, Command::new(program("hog")).arg("300").stdout(Stdio::piped()));
    let status = child.wait().unwrap();
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?} {out} (notes: {notes:?})");
    assert!(!out.contains("touched"), "it touched 300 MiB under a 100 MiB limit: {out}");
    let (used, _) = c.finish(&step, BUDGET).unwrap();
    assert!(used.oom_kills >= 1, "{used:?}");
    let msg = used.out_of_memory("step 0 of job 1", Some(limit)).unwrap();
    eprintln!("{msg}");
    assert!(msg.contains("step 0 of job 1") && msg.contains("100 MiB"), "{msg}");
    // The limit held: the peak stayed at it (swap off, so nothing went to swap either).
    let peak = used.peak_memory.unwrap();
    assert!(peak <= limit + (1 << 20), "peak {peak} over the limit {limit}");
}

#[test]
fn a_program_that_widens_its_affinity_still_runs_only_on_its_grant() {
    let Some(c) = contained("cpuset") else { return };
    let mine = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpus: Vec<u32> = (0..nix::sched::CpuSet::count())
        .filter(|&c| mine.is_set(c).unwrap_or(false))
        .map(|c| c as u32)
        .collect();
    let Some(&last) = cpus.last().filter(|_| cpus.len() >= 2) else {
        in_vm::skip_outside(&format!(
            "cpuset: needs at least 2 CPUs, this process may use {cpus:?}"
        ));
        return;
    };
    let grant: gangway_topology::CpuSet = std::iter::once(last).collect();
    let step = step_cgroup(2, 0);
    c.create(&step, &Limits::new().cpus(grant.clone())).unwrap();
    // The program holds still after widening, so its status can be read while it lives.
    let mut child =
        spawn_in(&c, &step, Command::new(program("widen")).arg("400").stdout(Stdio::piped()));
    let pid = child.id();
    nap(Duration::from_millis(100));
    let status_text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let allowed_line =
        status_text.lines().find(|l| l.starts_with("Cpus_allowed_list:")).map(str::to_string);
    assert!(child.wait().unwrap().success());
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    let field = |label: &str| {
        out.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).unwrap_or("").to_string()
    };
    eprintln!("grant {last}; {out}; /proc status: {allowed_line:?}");
    assert_eq!(field("allowed"), last.to_string(), "{out}");
    assert_eq!(field("ran"), last.to_string(), "{out}");
    if let Some(line) = allowed_line {
        assert_eq!(line.split_whitespace().nth(1), Some(&*last.to_string()), "{line}");
    }
}

#[test]
fn setsid_daemons_double_forks_and_term_ignorers_are_gone_after_the_kill() {
    let Some(c) = contained("escape") else { return };
    let step = step_cgroup(3, 0);
    c.create(&step, &Limits::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let mut child = spawn_in(
        &c,
        &step,
        Command::new(program("spawn_children"))
            .arg(&pidfile)
            .args(["--ignore-term", "--exit", "--lifetime", "60"])
            .stdout(Stdio::null()),
    );
    // The rank exits at once, leaving its descendants behind.
    assert!(child.wait().unwrap().success());
    let until = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() && Instant::now() < until {
        nap(Duration::from_millis(5));
    }
    let text = std::fs::read_to_string(&pidfile).unwrap();
    let left: Vec<(String, u32)> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(label, _)| *label != "rank")
        .map(|(label, pid)| (label.to_string(), pid.parse().unwrap()))
        .collect();
    assert_eq!(left.len(), 3, "{text}");
    assert!(left.iter().all(|(_, pid)| alive(*pid)), "{left:?} should run before the kill");
    let in_cgroup = c.backend().processes(&step);
    assert!(left.iter().all(|(_, p)| in_cgroup.contains(p)), "{left:?} vs {in_cgroup:?}");
    let killed = c.kill(&step, BUDGET).unwrap();
    eprintln!("kill: {killed:?}");
    let until = Instant::now() + Duration::from_secs(2);
    while left.iter().any(|(_, p)| alive(*p)) && Instant::now() < until {
        nap(Duration::from_millis(5));
    }
    let survivors: Vec<_> = left.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(survivors.is_empty(), "survived the kill: {survivors:?}");
    assert_eq!(killed.killed, 3, "{killed:?}");
    c.finish(&step, BUDGET).unwrap();
}

#[test]
fn peak_memory_of_a_200_mib_program_is_reported_within_ten_percent() {
    let Some(c) = contained("peak") else { return };
    let step = step_cgroup(4, 0);
    c.create(&step, &Limits::new()).unwrap();
    let mut child =
        spawn_in(&c, &step, Command::new(program("hog")).arg("200").stdout(Stdio::null()));
    assert!(child.wait().unwrap().success());
    let (used, _) = c.finish(&step, BUDGET).unwrap();
    let peak = used.peak_memory.unwrap() as f64 / f64::from(1 << 20);
    eprintln!("peak memory of hog 200: {peak:.1} MiB ({} {:?})", c.version(), used);
    assert!((200.0..=220.0).contains(&peak), "peak {peak:.1} MiB, expected 200 MiB + at most 10%");
}

#[test]
#[expect(clippy::zombie_processes, reason = "reaped with wait4, for its rusage")]
fn cpu_time_is_accounted_as_the_kernel_counts_it_for_the_process() {
    let Some(c) = contained("cputime") else { return };
    let step = step_cgroup(5, 0);
    c.create(&step, &Limits::new()).unwrap();
    let child =
        spawn_in(&c, &step, Command::new(program("widen")).arg("500").stdout(Stdio::null()));
    // The process's own CPU time, from the kernel, to compare the cgroup's figure with.
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 reaps our own child and fills both outputs.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, child.id() as i32);
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let own = tv(usage.ru_utime) + tv(usage.ru_stime);
    let (used, _) = c.finish(&step, BUDGET).unwrap();
    let total = used.user + used.system;
    eprintln!(
        "500 ms spin: cgroup user {:?} system {:?}, the process's rusage {own:?}",
        used.user, used.system
    );
    assert!(own >= Duration::from_millis(20), "the spin got no CPU at all: {own:?}");
    let diff = total.abs_diff(own);
    assert!(diff <= Duration::from_millis(30) + own / 10, "cgroup {total:?} vs rusage {own:?}");
}

#[test]
fn a_denied_device_node_cannot_be_opened() {
    let Some(c) = contained("devices") else { return };
    if c.version() != Version::V1 {
        eprintln!(
            "SKIPPED devices: device rules need the v1 devices controller (v2's device program: \
             --test v2)"
        );
        return;
    }
    let zero = gangway_containment::devices::device_node(Path::new("/dev/zero")).unwrap();
    let step = step_cgroup(6, 0);
    let notes = c.create(&step, &Limits::new().deny(zero)).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let out = spawn_in(
        &c,
        &step,
        Command::new("sh")
            .args(["-c", "head -c 1 /dev/zero >/dev/null && echo opened; head -c 1 /dev/urandom >/dev/null && echo other"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .wait_with_output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("opened"), "/dev/zero was opened: {stdout}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert!(stdout.contains("other"), "other devices stay open: {stdout} {stderr}");
    c.finish(&step, BUDGET).unwrap();
}

#[test]
fn the_pids_limit_stops_forks() {
    let Some(c) = contained("pids") else { return };
    let step = step_cgroup(7, 0);
    c.create(&step, &Limits::new().pids(4)).unwrap();
    let forker = "import os, time\nn = 0\nfor i in range(8):\n    try:\n        pid = os.fork()\n    except OSError:\n        continue\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint('forked', n, flush=True)\ntime.sleep(30)\n";
    let mut child = spawn_in(
        &c,
        &step,
        Command::new("/usr/bin/python3")
            .args(["-c", forker])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let tasks = c.backend().processes(&step).len();
    c.finish(&step, BUDGET).unwrap();
    let _ = child.wait();
    eprintln!("under pids.max 4: {} (processes in the cgroup: {tasks})", line.trim());
    // The forker itself plus 3 children: the 4th fork and later ones fail.
    assert_eq!(line.trim(), "forked 3");
    assert_eq!(tasks, 4);
}

#[test]
fn the_sweep_removes_orphaned_jobs_and_keeps_live_ones() {
    let Some(c) = contained("sweep") else { return };
    let mut sleepers = Vec::new();
    for job in [10, 11] {
        let step = step_cgroup(job, 0);
        c.create(&job_cgroup(job), &Limits::new()).unwrap();
        c.create(&step, &Limits::new()).unwrap();
        sleepers.push(spawn_in(
            &c,
            &step,
            Command::new("setsid").args(["sleep", "60"]).stdout(Stdio::null()),
        ));
    }
    let pids: Vec<u32> = sleepers.iter().map(Child::id).collect();
    let report = c.sweep(&|name| name == job_cgroup(11), BUDGET);
    for s in &mut sleepers {
        let _ = s.try_wait();
    }
    eprintln!("{report:?}");
    assert_eq!(report.removed, vec![job_cgroup(10)]);
    assert!(report.failed.is_empty());
    assert!(!alive(pids[0]), "the orphan's process survived the sweep");
    assert!(alive(pids[1]), "the live job's process was killed");
    assert_eq!(c.backend().children(""), vec![job_cgroup(11)]);
    let step = step_cgroup(11, 0);
    assert!(c.backend().exists(&job_cgroup(11)) && c.backend().exists(&step));
    assert!(!c.backend().exists(&job_cgroup(10)) && !c.backend().exists(&step_cgroup(10, 0)));
    c.finish(&job_cgroup(11), BUDGET).unwrap();
    assert!(!c.backend().exists(&job_cgroup(11)) && !c.backend().exists(&step));
    for mut s in sleepers {
        let _ = s.wait();
    }
}

/// The v2 backend on this machine's cgroup2 mount. Killing (`cgroup.kill`), freezing and CPU
/// time need no controller and are checked wherever cgroup2 is mounted; the limits need the
/// memory, cpuset and pids controllers in the v2 hierarchy, checked when the kernel offers them
/// there, skipped loudly (saying why) when they are bound to v1.
#[test]
fn v2_backend_kills_everything_and_enforces_what_the_kernel_gives_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED v2: needs root to create cgroups");
        return;
    }
    let mounts = gangway_containment::mounts::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
    );
    let Some(unified) = mounts.iter().find(|m| m.version == Version::V2) else {
        eprintln!("SKIPPED v2: no cgroup2 file system is mounted here");
        return;
    };
    let c = TestRoot(
        Containment::v2_at(&unified.point, &RootConfig::new(root_name("v2"), Base::Own)).unwrap(),
    );
    eprintln!("v2 backend: {}", c.backend().location());

    let step = step_cgroup(20, 0);
    c.create(&step, &Limits::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let mut child = spawn_in(
        &c,
        &step,
        Command::new(program("spawn_children"))
            .arg(&pidfile)
            .args(["--ignore-term", "--exit", "--lifetime", "60"])
            .stdout(Stdio::null()),
    );
    assert!(child.wait().unwrap().success());
    let until = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() && Instant::now() < until {
        nap(Duration::from_millis(5));
    }
    let left: Vec<u32> = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("rank "))
        .filter_map(|l| l.split_once(' ')?.1.parse().ok())
        .collect();
    assert_eq!(left.len(), 3);
    let killed = c.kill(&step, BUDGET).unwrap();
    eprintln!("v2 kill: {killed:?}");
    nap(Duration::from_millis(50));
    assert!(left.iter().all(|p| !alive(*p)), "survived the v2 kill: {left:?}");
    let (used, _) = c.finish(&step, BUDGET).unwrap();
    eprintln!("v2 usage: {used:?}");

    let offered = std::fs::read_to_string(unified.point.join("cgroup.controllers")).unwrap();
    let wanted = ["memory", "cpuset", "pids"];
    if wanted.iter().all(|w| offered.split_whitespace().any(|o| o == *w)) {
        let step = step_cgroup(20, 1);
        let limit = 100 << 20;
        let notes = c.create(&step, &Limits::new().memory(limit).pids(64)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let status =
            spawn_in(&c, &step, Command::new(program("hog")).arg("300").stdout(Stdio::null()))
                .wait()
                .unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
        let (used, _) = c.finish(&step, BUDGET).unwrap();
        assert!(used.oom_kills >= 1, "{used:?}");
        eprintln!("v2 OOM: {:?}", used.out_of_memory("step 1 of job 20", Some(limit)));
        return;
    }
    assert!(
        !in_vm::inside(),
        "the v2 VM offers only [{}] at {}",
        offered.trim(),
        unified.point.display()
    );
    // Can a fresh cgroup2 mount get them? In a private mount namespace (nothing the host sees
    // changes), unmount the v1 hierarchies holding them and mount cgroup2 anew.
    let probe = "for c in memory cpuset pids; do umount /sys/fs/cgroup/$c 2>/dev/null; done; \
                 d=$(mktemp -d); mount -t cgroup2 none \"$d\" && cat \"$d/cgroup.controllers\"; \
                 umount \"$d\"; rmdir \"$d\"";
    let fresh = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", probe])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("(unshare failed: {e})"));
    let v1_holders: Vec<String> = mounts
        .iter()
        .filter(|m| m.controllers.iter().any(|c| wanted.contains(&&**c)))
        .map(|m| m.point.display().to_string())
        .collect();
    eprintln!(
        "SKIPPED v2 enforcement (memory limit, cpuset, pids): the cgroup2 hierarchy at {} offers \
         only [{}], and a fresh cgroup2 mount in a private mount namespace with the v1 \
         hierarchies unmounted there offers [{fresh}]: memory, cpuset and pids stay bound to the \
         v1 hierarchies the host mounts ({}). The kernel gives a controller to one hierarchy at a \
         time and keeps a v1 hierarchy alive while any mount of it or any cgroup in it exists, so \
         only unmounting the host's own v1 hierarchies (disturbing every process on it) would \
         free them. Checked here on v2: creation, joining before exec, cgroup.kill of a setsid \
         daemon, a double-forked orphan and a SIGTERM-ignorer, cpu.stat, removal.",
        unified.point.display(),
        offered.trim(),
        v1_holders.join(", ")
    );
}

/// Every test above that applies to v2, again in a VM whose kernel gives memory, cpuset and
/// pids to cgroup2 (`tests/cluster/v2vm`): there `discover` picks the v2 backend (`contained`
/// checks it), so the OOM kill and its message, the cpuset, `pids.max`, the kill of escaped
/// processes, the peak memory and the sweep run on v2 for real. The v1-only tests (device
/// rules, per-hierarchy creation) are left out; v2's device program: `--test v2`.
#[test]
fn the_v2_tests_pass_in_a_vm_with_every_controller_on_cgroup2() {
    if in_vm::inside() {
        return;
    }
    // Built here: in the VM the repository is a read-only overlay, and compiling is slow there.
    program("hog");
    let tests = [
        "a_program_that_widens_its_affinity_still_runs_only_on_its_grant",
        "cpu_time_is_accounted_as_the_kernel_counts_it_for_the_process",
        "over_its_memory_limit_a_program_is_oom_killed_and_the_kill_is_reported",
        "peak_memory_of_a_200_mib_program_is_reported_within_ten_percent",
        "setsid_daemons_double_forks_and_term_ignorers_are_gone_after_the_kill",
        "the_pids_limit_stops_forks",
        "the_sweep_removes_orphaned_jobs_and_keeps_live_ones",
        "v2_backend_kills_everything_and_enforces_what_the_kernel_gives_it",
    ];
    let Some(out) = in_vm::rerun_in_vm(&repo_root(), &tests) else { return };
    for line in [
        "step 0 of job 1 ran out of memory: the kernel's OOM killer killed a process at its \
         memory limit of 100 MiB",
        "peak memory of hog 200: ",
        "under pids.max 4: forked 3",
        "v2 backend: cgroup v2 at /sys/fs/cgroup/",
        "v2 OOM: Some(\"step 1 of job 20 ran out of memory",
    ] {
        assert!(out.contains(line), "no '{line}' from the VM");
    }
}

#[test]
fn a_v1_cgroup_is_made_only_in_the_hierarchies_its_processes_join() {
    let Some(c) = contained("only") else { return };
    if c.version() != Version::V1 {
        eprintln!("SKIPPED a_v1_cgroup_is_made_only...: v2 has one hierarchy");
        return;
    }
    c.create("plain", &Limits::new()).unwrap();
    c.create("limited", &Limits::new().pids(8)).unwrap();
    let location = c.backend().location();
    let roots: Vec<&str> = location.split(": ").nth(1).unwrap_or_default().split(", ").collect();
    let mut seen = Vec::new();
    for root in roots {
        let Some(kind) = root.strip_prefix("/sys/fs/cgroup/").and_then(|r| r.split('/').next())
        else {
            continue;
        };
        let has = |path: &str| Path::new(root).join(path).is_dir();
        // The freezer (the kill) and the accounting ones always; pids only with a limit.
        let always = ["freezer", "cpuacct", "memory"].contains(&kind);
        assert_eq!(has("plain"), always, "{kind}: {location}");
        assert_eq!(has("limited"), always || kind == "pids", "{kind}: {location}");
        seen.push(kind.to_string());
    }
    assert!(seen.iter().any(|k| k == "pids"), "a pids hierarchy to check: {location}");
    let mut child = spawn_in(&c, "plain", Command::new("sleep").arg("60").stdout(Stdio::null()));
    // `Join::All` joined the three it was made in, and no missing one failed the spawn.
    assert_eq!(c.backend().processes("plain"), vec![child.id()]);
    c.finish("plain", BUDGET).unwrap();
    let _ = child.wait();
    assert!(!c.backend().exists("plain"));
    c.finish("limited", BUDGET).unwrap();
}
