//! `gangway run` as root puts its ranks in a cgroup (`launcher/src/run_cgroup.rs`): `--mem`
//! is a limit the kernel enforces, a rank cannot widen its CPUs beyond the run's, and nothing a
//! rank started outlives the run, not even after `kill -9` of the launcher. Skipped loudly when
//! not root. The same tests run again on cgroup v2 in a VM (`tests/cluster/v2vm`).

use std::time::Duration;

use gangway_containment::{Base, Containment, RootConfig, Version};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

#[path = "../../containment/tests/in_vm/mod.rs"]
mod in_vm;

fn root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED {test}: the run's cgroup needs root (run the suite as root)");
    }
    root
}

#[test]
fn a_run_over_its_mem_limit_is_oom_killed_and_says_so() {
    if !root("oom") {
        return;
    }
    let out =
        run(gangway().args(["run", "-v", "-n", "1", "--mem=100M"]).arg(program("hog")).arg("300"));
    assert_eq!(out.code(), 128 + 9, "{}", out.stderr);
    assert!(!out.stdout.contains("touched"), "300 MiB under --mem=100M: {}", out.stdout);
    assert!(
        out.stderr.contains("ran out of memory") && out.stderr.contains("limit of 100 MiB"),
        "{}",
        out.stderr
    );
    // `-v` names the run's cgroup; its watcher removes it once the launcher has exited.
    let name = out
        .stderr
        .split_whitespace()
        .find(|w| w.starts_with("run_"))
        .unwrap_or_else(|| panic!("-v names no cgroup: {}", out.stderr))
        .to_string();
    let base = match Containment::choose_version().unwrap() {
        Version::V1 => Base::Own,
        Version::V2 => Base::Top,
    };
    let runs = Containment::discover(&RootConfig::new("gangway", base)).unwrap();
    let start = std::time::Instant::now();
    while runs.backend().exists(&name) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!runs.backend().exists(&name), "the watcher left {name}");
    if in_vm::inside() {
        // Alone in the VM (one test at a time), so any run's cgroup left is this one's.
        assert!(out.stderr.contains("cgroup v2 at /sys/fs/cgroup/gangway"), "{}", out.stderr);
        // The rank started in its cgroup by clone3 (a refusal would say so once).
        assert!(!out.stderr.contains("clone3"), "{}", out.stderr);
        // The run's watcher removes it once the launcher has exited: wait for that.
        let runs_left = || -> Vec<String> {
            let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup/gangway") else { return Vec::new() };
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("run_"))
                .collect()
        };
        let start = std::time::Instant::now();
        while !runs_left().is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(runs_left().is_empty(), "left: {:?}", runs_left());
        eprintln!("v2 run: {}", out.stderr.trim());
    }
    // Under the limit the same program runs.
    let ok = run(gangway().args(["run", "-n", "1", "--mem=300M"]).arg(program("hog")).arg("200"));
    ok.assert_success();
    assert!(!ok.stderr.contains("out of memory"), "{}", ok.stderr);
}

#[test]
fn mem_zero_is_no_limit_mem_per_cpu_counts_the_ranks_and_cgroups_turned_off_say_so() {
    if !root("mem=0") {
        return;
    }
    // Slurm's --mem=0, all of the node's memory: no limit (a 0-byte limit let no rank exec: 127).
    run(gangway().args(["run", "-n", "1", "--mem=0", "true"])).assert_success();
    // --mem-per-cpu times the run's CPUs (2 ranks x 1): 100 MiB, which two ranks of 80 exceed.
    let per_cpu = run(gangway()
        .args(["run", "-n", "2", "--cpu-bind=none", "--mem-per-cpu=50M"])
        .arg(program("hog"))
        .arg("80"));
    assert_eq!(per_cpu.code(), 128 + 9, "{}", per_cpu.stderr);
    assert!(per_cpu.stderr.contains("limit of 100 MiB"), "{}", per_cpu.stderr);
    // Turned off, --mem cannot be enforced: the run says so, and the program runs unconfined.
    let off = run(gangway()
        .env("GANGWAY_NO_CGROUPS", "1")
        .args(["run", "-n", "1", "--mem=100M"])
        .arg(program("hog"))
        .arg("150"));
    off.assert_success();
    assert!(
        off.stderr.contains("--mem not enforced") && off.stderr.contains("GANGWAY_NO_CGROUPS=1"),
        "{}",
        off.stderr
    );
}

#[test]
fn a_rank_widening_its_affinity_stays_on_the_runs_cpus() {
    if !root("affinity") {
        return;
    }
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        in_vm::skip_outside("affinity: needs 2 CPUs");
        return;
    }
    // One rank, bound to one core: the run's cgroup holds that core's CPUs only.
    let out = run(gangway().args(["run", "-n", "1"]).arg(program("widen")).arg("200"));
    out.assert_success();
    let field = |label: &str| {
        out.stdout.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).unwrap_or("")
    };
    let allowed = field("allowed");
    assert!(!allowed.is_empty() && !allowed.contains(','), "widened to {allowed}: {}", out.stdout);
    assert_eq!(field("ran"), allowed, "{}", out.stdout);
}

#[test]
fn a_setsid_daemon_is_gone_after_kill_9_of_the_launcher() {
    if !root("kill -9") {
        return;
    }
    let dir = scratch();
    let pidfile = dir.path().join("pids");
    let live = Live::start(
        gangway().args(["run", "-n", "1"]).arg(program("spawn_children")).arg(&pidfile).args([
            "--ignore-term",
            "--lifetime",
            "60",
        ]),
    );
    wait_until("pid file", Duration::from_secs(20), || read_pidfile(&pidfile).len() == 4);
    let pids = read_pidfile(&pidfile);
    kill(Pid::from_raw(live.pid()), Signal::SIGKILL).unwrap();
    // The watcher kills the cgroup: the setsid child and the double-forked orphan too, which
    // neither the ranks' parent-death signal nor any process group reaches.
    let gone = || pids.iter().all(|(_, p)| !is_alive(*p));
    let start = std::time::Instant::now();
    while !gone() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<_> = pids.iter().filter(|(_, p)| is_alive(*p)).cloned().collect();
    drop(live);
    for (_, pid) in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "outlived the launcher's kill -9: {left:?}");
}

#[test]
fn the_next_run_sweeps_the_cgroup_of_a_run_whose_launcher_and_watcher_are_gone() {
    use gangway_containment::{Join, Limits};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    if !root("sweep") {
        return;
    }
    // Where `gangway run` keeps its runs (launcher/src/run_cgroup.rs), with a run whose
    // launcher (pid 0: none) is gone, holding a setsid daemon.
    let base = match Containment::choose_version().unwrap() {
        Version::V1 => Base::Own,
        Version::V2 => Base::Top,
    };
    let runs = Containment::discover(&RootConfig::new("gangway", base)).unwrap();
    let dead = "run_0_0";
    runs.create(dead, &Limits::new()).unwrap();
    let files = runs.backend().join_files(dead, Join::All).unwrap();
    let fds: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = std::process::Command::new("setsid");
    cmd.args(["sleep", "60"]).stdout(std::process::Stdio::null());
    // SAFETY: the hook only calls the async-signal-safe `join` on descriptors kept open here.
    unsafe {
        cmd.pre_exec(move || gangway_containment::join(&fds).map_err(std::io::Error::from));
    }
    let mut daemon = cmd.spawn().unwrap();
    drop(files);
    let pid = daemon.id() as i32;
    assert!(runs.backend().processes(dead).contains(&(pid as u32)));
    run(gangway().args(["run", "-n", "1", "true"])).assert_success();
    // Killed, the daemon is our zombie until we reap it.
    let start = std::time::Instant::now();
    while is_alive(pid) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = !is_alive(pid);
    let swept = !runs.backend().children("").contains(&dead.to_string());
    if !swept || !killed {
        let _ = runs.finish(dead, Duration::from_secs(5));
    }
    let _ = daemon.wait();
    assert!(killed, "the dead run's daemon survived the next run's sweep");
    assert!(swept, "the next run left the dead run's cgroup");
}

/// The tests above, again as root in a VM whose kernel has memory, cpuset and pids on cgroup2
/// (`tests/cluster/v2vm`): there `gangway run` takes the v2 path (`clone3` into the run's
/// cgroup, `memory.max`, `cgroup.kill`), which this host (v1) never does.
#[test]
fn the_local_run_tests_pass_in_a_vm_with_every_controller_on_cgroup2() {
    if in_vm::inside() {
        return;
    }
    // Built here: in the VM the repository is a read-only overlay, and compiling is slow there.
    program("hog");
    let tests = [
        "containment::a_run_over_its_mem_limit_is_oom_killed_and_says_so",
        "containment::a_rank_widening_its_affinity_stays_on_the_runs_cpus",
        "containment::a_setsid_daemon_is_gone_after_kill_9_of_the_launcher",
        "containment::the_next_run_sweeps_the_cgroup_of_a_run_whose_launcher_and_watcher_are_gone",
    ];
    let Some(out) = in_vm::rerun_in_vm(&repo_root(), &tests) else { return };
    assert!(out.contains("ran out of memory"), "no OOM message from the VM");
}
