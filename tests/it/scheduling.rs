//! The scheduler in the controller, end to end on a virtual cluster: backfill beside a wide
//! job's reservation, QOS preemption with requeue (the preempted job completes exactly once),
//! an account over its CPU quota waiting with its reason, and `gangway reconfigure`.

use std::time::Duration;

use crate::controlled::{Managed, Setup, text};
use crate::support::wait_until;

fn up(nodes: usize, config: &str) -> Option<Managed> {
    Managed::up_with(nodes, Setup { config: config.into(), ..Setup::default() })
}

fn ms(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[test]
fn a_small_job_backfills_while_a_wide_one_waits_for_its_reservation() {
    let Some(m) = up(2, "") else { return };
    // Node 1 is busy for ~6 s, though its limit says up to a minute.
    let first = m.submit(&["-N", "1", "-n", "2", "-t", "1", "--wrap", "sleep 6"]);
    wait_until("the first job running", Duration::from_secs(20), || {
        m.job(first)["state"] == "RUNNING"
    });
    let wide = m.submit(&["-N", "2", "-n", "4", "-t", "1", "--wrap", "date +%s%3N"]);
    wait_until("the wide job's reservation", Duration::from_secs(10), || {
        m.job(wide)["sched"]["expected_start"].is_u64()
    });
    let reserved = ms(&m.job(wide)["sched"]["expected_start"]);
    let shown = text(&m.cli_out(&["queue", "--start"]));
    assert!(shown.contains("SCHEDNODES") && shown.contains(&wide.to_string()), "{shown}");
    let explained = text(&m.cli_out(&["show", "job", &wide.to_string()]));
    eprintln!("$ gangway queue --start\n{shown}$ gangway show job {wide}\n{explained}");
    // Fits on node 2 and ends before the reservation: starts at once, ahead of the wide job.
    let small = m.submit(&["-n", "2", "-t", "0:20", "--wrap", "date +%s%3N; sleep 2"]);
    m.wait_done(&[first, wide, small], Duration::from_secs(60));
    let (f, w, s) = (m.job(first), m.job(wide), m.job(small));
    for j in [&f, &w, &s] {
        assert_eq!(j["state"], "COMPLETED", "{j}");
    }
    let (small_start, wide_start) = (ms(&s["start_time"]), ms(&w["start_time"]));
    assert!(small_start < wide_start, "the small job went first: {s}\n{w}");
    assert!(
        wide_start <= reserved,
        "the wide job started by its reservation: {wide_start} > {reserved}"
    );
    let small_events = text(&m.cli_out(&["show", "job", &small.to_string()]));
    assert!(small_events.contains("(backfilled)"), "{small_events}");
    eprintln!(
        "backfill: first {first} start {}, wide {wide} reserved {reserved} started {wide_start} ({} ms early), small {small} started {small_start} ({} ms before the wide one)",
        ms(&f["start_time"]),
        reserved.saturating_sub(wide_start),
        wide_start - small_start
    );
}

const QOS: &str = r#"
[[qos]]
name = "low"
preempt_mode = "requeue"
grace = "2s"

[[qos]]
name = "high"
priority = 100
preempt = ["low"]
"#;

#[test]
fn a_high_qos_job_preempts_a_low_one_which_is_requeued_and_completes_once() {
    let Some(m) = up(2, QOS) else { return };
    let low = m.submit(&[
        "-N",
        "2",
        "-n",
        "4",
        "--qos",
        "low",
        "--wrap",
        "echo RUN $GANGWAY_RESTART_COUNT; sleep 8; echo DONE",
    ]);
    wait_until("the low job running", Duration::from_secs(20), || m.job(low)["state"] == "RUNNING");
    let high = m.submit(&["-n", "2", "--qos", "high", "--wrap", "echo HIGH"]);
    m.wait_done(&[low, high], Duration::from_secs(90));
    let (l, h) = (m.job(low), m.job(high));
    assert_eq!(h["state"], "COMPLETED", "{h}");
    assert_eq!(l["state"], "COMPLETED", "{l}");
    assert_eq!(l["attempt"], 2, "{l}");
    let out = m.output_of(low);
    assert_eq!(out.matches("DONE").count(), 1, "completed exactly once: {out}");
    assert!(out.contains("RUN 0") && out.contains("RUN 1"), "{out}");
    assert!(out.contains(&format!("after preemption by job {high}")), "{out}");
    let shown = text(&m.cli_out(&["show", "job", &low.to_string()]));
    assert!(shown.contains(&format!("preempted by job {high}")), "{shown}");
    eprintln!("$ gangway show job {low}\n{shown}$ cat gangway-{low}.out\n{out}");
    assert!(ms(&h["end_time"]) <= ms(&l["start_time"]), "attempt 2 after the high job: {h}\n{l}");
    eprintln!(
        "preemption: low {low} attempt {} (DONE x{}), high {high} ran {}..{}, low's attempt 2 from {}",
        l["attempt"],
        out.matches("DONE").count(),
        ms(&h["start_time"]),
        ms(&h["end_time"]),
        ms(&l["start_time"])
    );
}

const QUOTA: &str = r#"
[[account]]
name = "physics"
users = ["root"]
[account.limits]
cpus = 2
"#;

#[test]
fn an_account_over_its_quota_waits_with_the_reason_and_starts_when_it_frees() {
    let Some(mut m) = up(2, QUOTA) else { return };
    let a = m.submit(&["-n", "2", "--wrap", "sleep 3"]);
    let b = m.submit(&["-n", "2", "--wrap", "true"]);
    wait_until("the second job's reason", Duration::from_secs(10), || {
        m.job(b)["reason"] == "AccountCpuLimit"
    });
    assert_eq!(m.job(a)["state"], "RUNNING");
    let queue = text(&m.cli_out(&["queue"]));
    assert!(queue.contains("(AccountCpuLimit)"), "{queue}");
    eprintln!("$ gangway queue\n{queue}");
    m.wait_done(&[a, b], Duration::from_secs(30));
    let (ja, jb) = (m.job(a), m.job(b));
    assert_eq!(jb["state"], "COMPLETED", "{jb}");
    assert!(ms(&jb["start_time"]) >= ms(&ja["end_time"]), "{ja}\n{jb}");
    let share = text(&m.cli_out(&["share"]));
    assert!(share.contains("physics") && share.contains("root"), "{share}");
    // Fair-share usage is durable: a killed controller comes back with it.
    let usage_of_root = |m: &Managed| {
        let out = m.cli_out(&["share", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.iter().find(|r| r["user"] == "root").and_then(|r| r["usage"].as_f64()).unwrap_or(0.0)
    };
    let before = usage_of_root(&m);
    assert!(before > 0.0, "{share}");
    m.kill_controller();
    m.start_controller();
    let after = usage_of_root(&m);
    assert!(
        after > 0.0 && after <= before * 1.001,
        "usage {before} before the restart, {after} after"
    );
    eprintln!("usage of root in physics: {before:.3} before kill -9, {after:.3} after the restart");
    eprintln!(
        "quota: job {a} ended {}, job {b} waited (AccountCpuLimit) and started {}\n{share}",
        ms(&ja["end_time"]),
        ms(&jb["start_time"])
    );
}

#[test]
fn reconfigure_refuses_a_bad_file_and_applies_a_good_one() {
    let Some(m) = up(1, QUOTA) else { return };
    let path = m.dir.join("gangway.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let refused = m.cli_out(&["batch", "--account", "chemistry", "--wrap", "true"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("unknown account 'chemistry'"), "{}", text(&refused));
    let bad = format!("{original}\n[[account]]\nname = \"chemistry\"\nparent = \"nowhere\"\n");
    std::fs::write(&path, &bad).unwrap();
    let out = m.cli_out(&["reconfigure"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("line") && text(&out).contains("nothing changed"),
        "{}",
        text(&out)
    );
    let still = m.cli_out(&["batch", "--account", "chemistry", "--wrap", "true"]);
    assert_eq!(still.status.code(), Some(2), "nothing changed: {}", text(&still));
    let good = format!("{original}\n[[account]]\nname = \"chemistry\"\nusers = [\"root\"]\n");
    std::fs::write(&path, &good).unwrap();
    let out = m.cli_out(&["reconfigure"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = m.submit(&["--account", "chemistry", "--wrap", "true"]);
    m.wait_done(&[id], Duration::from_secs(20));
    assert_eq!(m.job(id)["sched"].get("account"), None, "over: no longer in the books");
    assert_eq!(m.job(id)["state"], "COMPLETED");
    eprintln!(
        "reconfigure: bad file -> {}; good file -> {}",
        text(&m.cli_out(&["show", "job", &id.to_string()])).lines().next().unwrap_or(""),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}
