//! Runs tests of the current test binary again inside `tests/cluster/v2vm`: a qemu VM whose
//! kernel has every controller (memory, cpuset, pids, ...) on cgroup2, for the v2 limits this
//! host cannot give (it binds them to v1). The VM sees the host's files, so the binary re-runs
//! itself there as root with `GANGWAY_IN_V2VM=1`; the tests it runs must not skip then.
//! Without the VM (not root, no qemu or kernel image) the caller skips loudly, and
//! `GANGWAY_REQUIRE_V2VM=1` (CI) makes that a failure. Shared by `containment/tests/*.rs` and
//! `tests/it` (through `#[path]`).

use std::path::Path;
use std::process::Command;

/// Set (by the harness) in the VM's environment.
const INSIDE: &str = "GANGWAY_IN_V2VM";

/// Whether this process runs inside the VM, where a test must run rather than skip.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Panics inside the VM (a skip there would pass the v2 tests without running them); outside,
/// prints the loud skip line and returns.
pub fn skip_outside(why: &str) {
    assert!(!inside(), "in the v2 VM this must run, yet: {why}");
    eprintln!("SKIPPED {why}");
}

/// Runs `tests` (exact names) of this binary in the VM, one at a time: their output, or `None`
/// when the VM cannot run here (skipped loudly; a failure under `GANGWAY_REQUIRE_V2VM`).
pub fn rerun_in_vm(repo: &Path, tests: &[&str]) -> Option<String> {
    let harness = repo.join("tests/cluster/v2vm");
    let me = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(&harness)
        .args(["--timeout", "600", "--"])
        .arg(me)
        .args(["--exact", "--test-threads=1", "--nocapture"])
        .args(tests)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", harness.display()));
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        let why = text.lines().filter(|l| l.contains("SKIP")).collect::<Vec<_>>().join("; ");
        assert!(
            std::env::var_os("GANGWAY_REQUIRE_V2VM").is_none(),
            "GANGWAY_REQUIRE_V2VM is set but the v2 VM cannot run here: {why}"
        );
        eprintln!("SKIPPED the cgroup v2 tests in a VM: {why}");
        return None;
    }
    eprintln!("{text}");
    assert!(out.status.success(), "in the v2 VM: {}\n{text}", out.status);
    let passed = format!("test result: ok. {} passed; 0 failed", tests.len());
    assert!(text.contains(&passed), "expected '{passed}' from the VM:\n{text}");
    Some(text)
}
