//! `gangway simulate`: the shipped sample replays with every key scripts rely on, a plot is
//! drawn, and a malformed trace is refused naming its line.

use crate::support::{gangway, run};

const MACHINE: [&str; 4] = ["--nodes", "16", "--synthetic", "pack:2 core:8 pu:1"];

fn sample() -> String {
    format!("{}/examples/workloads/sample.swf", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn replays_the_sample_with_json_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("run.svg");
    let trace = sample();
    let mut args = vec![trace.as_str(), "--json", "--plot", plot.to_str().unwrap()];
    args.extend(MACHINE);
    let out = run(gangway().arg("simulate").args(&args));
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for key in [
        "jobs",
        "utilisation",
        "mean_wait_s",
        "median_wait_s",
        "p95_wait_s",
        "mean_bounded_slowdown",
        "backfilled",
        "decisions",
        "p99_decision_us",
        "max_pass_ms",
        "wall_s",
    ] {
        assert!(v.get(key).is_some_and(|x| x.is_number()), "{key} missing in {}", out.stdout);
    }
    assert_eq!(v["jobs"], 3000);
    assert_eq!(v["completed"], 3000);
    assert_eq!(v["backfill"], "easy");
    let u = v["utilisation"].as_f64().unwrap();
    assert!(u > 0.3 && u <= 1.0, "{u}");
    assert!(v["backfilled"].as_u64().unwrap() > 0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Queue length"));
}

#[test]
fn backfill_modes_and_generated_workloads() {
    for mode in ["none", "easy", "conservative"] {
        let mut args = vec!["simulate", "--generate", "300", "--seed", "5", "--backfill", mode];
        args.extend(MACHINE);
        let out = run(gangway().args(&args));
        out.assert_success();
        assert!(out.stdout.contains(&format!("backfill {mode}")), "{}", out.stdout);
        assert!(out.stdout.contains("300 completed"), "{}", out.stdout);
    }
}

#[test]
fn a_malformed_trace_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.swf");
    std::fs::write(&bad, "; header\n1 0 10 100 4 -1 -1 4 200 -1 1 3 1 -1 -1 -1 -1 -1\n2 5 x\n")
        .unwrap();
    let mut args = vec!["simulate", bad.to_str().unwrap()];
    args.extend(MACHINE);
    let out = run(gangway().args(&args));
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("line 3: expected 18 fields, found 3"), "{}", out.stderr);
    let out = run(gangway().args([
        "simulate",
        "--generate",
        "5",
        "--nodes",
        "2",
        "--synthetic",
        "pack:1 core:2 pu:1",
        "--backfill",
        "sometimes",
    ]));
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("use none, easy or conservative"), "{}", out.stderr);
}
