//! Bad command lines: a clear message naming the flag, exit code 2, nothing started.

use crate::support::{gangway, run};

fn usage_error(args: &[&str], expect: &str) {
    let out = run(gangway().args(args));
    assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
    assert!(out.stderr.contains(expect), "{args:?}: expected '{expect}' in:\n{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_flags_name_the_problem() {
    usage_error(&["run", "-n", "0", "true"], "-n/--ntasks must be at least 1");
    usage_error(&["run", "-n", "x", "true"], "invalid value 'x'");
    usage_error(&["run", "--time=1:99", "true"], "seconds must be 0-59");
    usage_error(&["run", "-n", "2", "--input", "5", "true"], "--input 5: the job has 2 rank(s)");
    usage_error(&["run", "--input", "some", "true"], "--input 'some'");
    usage_error(&["run", "--export", "ALL,,X", "true"], "item 2 is empty");
    usage_error(&["run", "--kill-grace", "soon", "true"], "--kill-grace");
    usage_error(&["run", "-o", "out-%q", "true"], "unknown '%q'");
    usage_error(&["run", "-D", "/no/such/dir", "true"], "--chdir '/no/such/dir': not a directory");
    usage_error(&["run", "-K=maybe", "true"], "--kill-on-bad-exit 'maybe'");
    usage_error(&["run"], "PROGRAM");
    usage_error(&["run", "-G", "3", "-n", "4", "true"], "--gpus: 3 GPU(s) do not split evenly");
    usage_error(&["batch", "-N1", "-n4", "--gres=gpu:1", "--wrap", "true"], "--gres: 1 GPU(s)");
}

#[test]
fn help_has_examples_and_exit_codes() {
    let out = run(gangway().args(["run", "--help"]));
    out.assert_success();
    assert!(out.stdout.contains("gangway run -n 4 ./hello"));
    assert!(out.stdout.contains("124 time limit"));
}

#[test]
fn a_bad_signal_is_refused_before_any_controller_is_asked() {
    // A socket nobody serves: asking it would end with 116 ("cannot reach the controller").
    let missing = std::env::temp_dir().join(format!("gangway-none-{}.sock", std::process::id()));
    let out = run(gangway()
        .args(["cancel", "--signal", "BOGUS", "1"])
        .env("GANGWAY_CONTROLLER", &missing));
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--signal BOGUS: no such signal"), "{}", out.stderr);
    assert!(!out.stderr.contains("cannot reach"), "{}", out.stderr);
    // The same command with a signal that exists does go to the (missing) controller.
    let out = run(gangway()
        .args(["cancel", "--signal", "USR1", "1"])
        .env("GANGWAY_CONTROLLER", &missing));
    assert_eq!(out.code(), 116, "{}", out.stderr);
}
