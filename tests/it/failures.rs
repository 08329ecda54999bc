//! Jobs that fail: every way a rank can go wrong ends the job cleanly, once, with the right code.

use crate::support::{gangway, program, run};

#[test]
fn segfault_is_reported_once_with_its_signal() {
    let segv = program("segv");
    let out = run(gangway().args(["run", "-n", "4"]).arg(&segv).arg("2"));
    assert_eq!(out.code(), 128 + 11, "{}", out.stderr);
    let reports: Vec<&str> = out.stderr.lines().filter(|l| l.contains("exited with")).collect();
    assert_eq!(reports.len(), 1, "expected one report:\n{}", out.stderr);
    assert!(reports[0].starts_with("gangway: rank 2 (pid "), "{}", reports[0]);
    assert!(reports[0].ends_with("exited with signal 11 (SIGSEGV)"), "{}", reports[0]);
}

#[test]
fn non_zero_exit_stops_the_others() {
    // Rank 2 fails at once; without the stop the others would sleep 30 s and hit the hard limit.
    let out = run(gangway().args([
        "run",
        "-n",
        "3",
        "sh",
        "-c",
        r#"[ "$GANGWAY_RANK" = 2 ] && exit 5; exec sleep 30"#,
    ]));
    assert_eq!(out.code(), 5, "{}", out.stderr);
    assert!(out.stderr.contains("rank 2 (pid "), "{}", out.stderr);
    assert!(out.stderr.contains("exited with code 5"), "{}", out.stderr);
    assert!(out.stderr.contains("stopping the other ranks"), "{}", out.stderr);
}

#[test]
fn without_kill_on_bad_exit_the_others_finish() {
    let script = r#"[ "$GANGWAY_RANK" = 0 ] && exit 3; sleep 0.3; echo "rank $GANGWAY_RANK done""#;
    let out = run(gangway().args(["run", "-n", "3", "--kill-on-bad-exit=0", "sh", "-c", script]));
    assert_eq!(out.code(), 3);
    assert_eq!(out.sorted_lines(), ["rank 1 done", "rank 2 done"]);
}

#[test]
fn rank_leaving_mpi_without_finalize_fails_the_job_instead_of_hanging() {
    let prog = program("mpi_no_finalize");
    // Exit code 3: the rank's own failure is the cause.
    let out = run(gangway().args(["run", "-n", "3"]).arg(&prog).args(["1", "3"]));
    assert_eq!(out.code(), 3, "{}", out.stderr);
    // Exit code 0 without finalize: only the PMI service can tell something is wrong.
    let out = run(gangway().args(["run", "-n", "3"]).arg(&prog).args(["1", "0"]));
    assert_eq!(out.code(), 120, "{}", out.stderr);
    assert!(out.stderr.contains("rank 1") && out.stderr.contains("finalize"), "{}", out.stderr);
}

#[test]
fn rank_that_never_joins_the_barrier_fails_the_job() {
    // Rank 1 is not an MPI program: rank 0 would wait for it in MPI_Init forever.
    let hello = program("hello");
    let script = format!(r#"[ "$GANGWAY_RANK" = 0 ] && exec {} ; exit 0"#, hello.display());
    let out = run(gangway().args(["run", "-n", "2", "sh", "-c", &script]));
    assert_eq!(out.code(), 120, "{}", out.stderr);
    assert!(out.stderr.contains("rank 1"), "{}", out.stderr);
}

#[test]
fn time_limit_stops_the_job() {
    let out =
        run(gangway().args(["run", "-n", "2", "-t", "0:01", "--kill-grace", "0.2", "sleep", "30"]));
    assert_eq!(out.code(), 124, "{}", out.stderr);
    assert!(out.stderr.contains("reached its time limit (00:00:01)"), "{}", out.stderr);
}

#[test]
fn missing_and_non_executable_programs() {
    let out = run(gangway().args(["run", "-n", "2", "no-such-program-gw"]));
    assert_eq!(out.code(), 127);
    assert!(out.stderr.contains("'no-such-program-gw' not found in PATH"), "{}", out.stderr);
    let dir = crate::support::scratch();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "not a program").unwrap();
    let out = run(gangway().arg("run").arg(&data));
    assert_eq!(out.code(), 126);
    assert!(out.stderr.contains("not an executable file"), "{}", out.stderr);
}

#[test]
fn non_mpi_programs_run_without_pmi() {
    let out = run(gangway().args(["run", "-n", "3", "sh", "-c", "echo rank $GANGWAY_RANK"]));
    out.assert_success();
    assert_eq!(out.sorted_lines(), ["rank 0", "rank 1", "rank 2"]);
    assert!(
        out.stderr.is_empty(),
        "no PMI warning for programs that never use PMI: {}",
        out.stderr
    );
}
