//! A job never runs twice at once. Batch jobs append timestamped ticks (wall clock, node,
//! attempt, every ~100 ms) to a shared file; then their node is partitioned past the lost
//! timeout, or its agent is SIGKILLed, or SIGSTOPped for 10 s. Each time the job is requeued,
//! completes exactly once, and the ticks of its attempts never overlap. A restarted agent ends
//! what its previous life left; jobs outlive a controller that is down longer than the lost
//! timeout. A start stuck before its exec (its output a FIFO nobody reads) neither stops the
//! heartbeats nor holds up other jobs, and one that completes after its attempt was fenced or
//! released is killed at once. Figures (the largest overlap) are printed for the closing note:
//! `--nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::controlled::{Managed, Setup, text};
use crate::support::{Live, host_children, wait_until};

/// Ticks a job writes: `first` lines in its first attempt, `later` in the others, then `DONE`.
/// With `orphaned`, the loop runs in a background subshell of the script (a process that
/// outlives the script's own shell, as a daemonised tool would).
fn tick_script(log: &Path, first: u32, later: u32, orphaned: bool) -> String {
    let lines = format!(
        "ticks={later}; [ $GANGWAY_RESTART_COUNT -gt 0 ] || ticks={first}; i=0; while [ $i -lt $ticks ]; do echo \"$(date +%s.%N) $(hostname) $GANGWAY_RESTART_COUNT\" >> {log}; i=$((i+1)); sleep 0.1; done; echo \"DONE $GANGWAY_RESTART_COUNT\" >> {log}",
        log = log.display()
    );
    if orphaned { format!("( {lines} ) & wait") } else { lines }
}

/// A one-CPU batch job ticking into its own log (`first`/`later` ticks, see [`tick_script`]);
/// `FENCE_MARK` in its environment names it.
fn submit_ticker(m: &Managed, log: &Path, mark: &str, ticks: (u32, u32), orphaned: bool) -> u64 {
    let out = m
        .cli()
        .env("FENCE_MARK", mark)
        .args(["batch", "--parsable", "-n", "1", "-o", "/dev/null", "--wrap"])
        .arg(tick_script(log, ticks.0, ticks.1, orphaned))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A tick log: the time of every tick per attempt, and how many attempts said DONE.
#[derive(Debug, Default)]
struct Ticks {
    /// Attempt (restart count) → (node, tick times).
    attempts: BTreeMap<u32, (String, Vec<f64>)>,
    done: usize,
}

fn read_ticks(log: &Path) -> Ticks {
    let mut t = Ticks::default();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["DONE", _] => t.done += 1,
            [time, node, attempt] => {
                let (Ok(time), Ok(attempt)) = (time.parse::<f64>(), attempt.parse::<u32>()) else {
                    continue;
                };
                let e = t.attempts.entry(attempt).or_insert_with(|| (node.to_string(), Vec::new()));
                e.1.push(time);
            }
            _ => {}
        }
    }
    t
}

impl std::fmt::Display for Ticks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (a, (node, t)) in &self.attempts {
            let (first, last) = (t.first().unwrap_or(&0.0), t.last().unwrap_or(&0.0));
            write!(f, "attempt {} on {node}: {} ticks {first:.3}..{last:.3}; ", a + 1, t.len())?;
        }
        write!(f, "{} DONE", self.done)
    }
}

impl Ticks {
    /// The shortest time between one attempt's last tick and the next attempt's first.
    fn min_gap(&self) -> Option<f64> {
        let mut spans: Vec<(f64, f64)> =
            self.attempts.values().filter_map(|(_, v)| Some((*v.first()?, *v.last()?))).collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        spans.windows(2).map(|w| w[1].0 - w[0].1).reduce(f64::min)
    }

    /// The longest time two attempts ticked at once (0: each began after the one before ended).
    fn max_overlap(&self) -> f64 {
        let spans: Vec<(f64, f64)> =
            self.attempts.values().filter_map(|(_, v)| Some((*v.first()?, *v.last()?))).collect();
        let mut worst = 0.0f64;
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                worst = worst.max(a.1.min(b.1) - a.0.max(b.0));
            }
        }
        worst
    }
}

/// A process's command line, word by word.
fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The host pid of node `i`'s agent: the child of the `nsenter` this test started.
fn agent_pid(m: &Managed, i: usize) -> i32 {
    let nsenter = m.agents[&i].id() as i32;
    let found =
        host_children(nsenter).into_iter().find(|p| cmdline(*p).iter().any(|a| a == "agent"));
    found.unwrap_or_else(|| panic!("no agent under nsenter {nsenter}"))
}

/// The host pid of an agent's fencer (its child `gangway fence`), if it has one.
fn fencer_pid(agent: i32) -> Option<i32> {
    host_children(agent).into_iter().find(|p| cmdline(*p).get(1).is_some_and(|a| a == "fence"))
}

/// Live processes whose environment holds every one of `vars`.
fn processes_with(vars: &[(&str, &str)]) -> Vec<i32> {
    let wanted: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if crate::support::process_state(pid).is_some_and(|s| s != 'Z')
            && wanted.iter().all(|w| vars.contains(&w.as_bytes()))
        {
            found.push(pid);
        }
    }
    found
}

fn node_index(node: &str) -> usize {
    node.trim_start_matches("node").parse().unwrap()
}

fn node_of(m: &Managed, id: u64) -> String {
    m.job(id)["nodes"][0].as_str().unwrap_or_default().to_string()
}

/// Two tickers running (both with a few ticks written): their logs, and the node of the first.
fn two_tickers(m: &Managed, mark: &str) -> (Vec<(u64, PathBuf)>, String) {
    let jobs: Vec<(u64, PathBuf)> = (0..2)
        .map(|k| {
            let log = m.dir.join(format!("ticks-{k}.log"));
            (submit_ticker(m, &log, mark, (50, 50), false), log)
        })
        .collect();
    wait_until("both tickers ticking", Duration::from_secs(30), || {
        jobs.iter()
            .all(|(_, log)| read_ticks(log).attempts.get(&0).is_some_and(|(_, t)| t.len() >= 3))
    });
    let node = node_of(m, jobs[0].0);
    (jobs, node)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Partition,
    KillAgent,
    StopAgent,
}

/// Runs `fault` on the node of the first of two tickers, and checks what users care about.
fn fault_run(fault: Fault) {
    let Some(mut m) = Managed::up(3) else { return };
    let mark = format!("{}-{fault:?}", m.vc.prefix);
    let (jobs, node) = two_tickers(&m, &mark);
    let i = node_index(&node);
    let victims: Vec<u64> =
        jobs.iter().map(|(id, _)| *id).filter(|id| node_of(&m, *id) == node).collect();
    let agent = Pid::from_raw(agent_pid(&m, i));
    match fault {
        Fault::Partition => assert!(m.vc.ctl(&["partition", &node]).status.success()),
        Fault::KillAgent => kill(agent, Signal::SIGKILL).unwrap(),
        Fault::StopAgent => kill(agent, Signal::SIGSTOP).unwrap(),
    }
    let stopped = std::time::Instant::now();
    wait_until("the victims requeued and running elsewhere", Duration::from_secs(30), || {
        victims.iter().all(|id| {
            let j = m.job(*id);
            j["attempt"].as_u64().unwrap_or(0) >= 2 && j["state"] != "PENDING"
        })
    });
    // The fault lasts while the new attempts run a while (as a long partition would).
    wait_until("the new attempts ticking", Duration::from_secs(30), || {
        jobs.iter()
            .filter(|(id, _)| victims.contains(id))
            .all(|(_, log)| read_ticks(log).attempts.range(1..).any(|(_, (_, t))| t.len() >= 10))
    });
    match fault {
        Fault::Partition => assert!(m.vc.ctl(&["heal", &node]).status.success()),
        Fault::KillAgent => m.start_agent(i),
        Fault::StopAgent => {
            std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
            kill(agent, Signal::SIGCONT).unwrap();
        }
    }
    m.wait_done(&jobs.iter().map(|(id, _)| *id).collect::<Vec<_>>(), Duration::from_secs(60));
    let ticks: Vec<Ticks> = jobs.iter().map(|(_, log)| read_ticks(log)).collect();
    let worst = ticks.iter().map(Ticks::max_overlap).fold(0.0f64, f64::max);
    let gap = ticks.iter().filter_map(Ticks::min_gap).reduce(f64::min).unwrap_or(0.0);
    eprintln!(
        "fencing {fault:?}: max overlap of two attempts' ticks {worst:.3} s over {} jobs ({} requeued); smallest gap from an attempt's last tick to the next's first {gap:.3} s",
        jobs.len(),
        victims.len()
    );
    for ((id, _), t) in jobs.iter().zip(&ticks) {
        let j = m.job(*id);
        assert_eq!(j["state"], "COMPLETED", "job {id}: {j}\n{t}");
        assert_eq!(t.done, 1, "job {id} completed exactly once: {t}");
        if victims.contains(id) {
            assert!(j["attempt"].as_u64().unwrap_or(0) >= 2, "{j}");
            assert_eq!(t.attempts[&0].0, node, "attempt 1 ran on the victim: {t}");
            assert!(t.attempts.len() >= 2, "requeued: {t}");
        }
    }
    assert!(worst <= 0.0, "attempts ran at once for {worst:.3} s\n{}", m.logs());
    // The node comes back and takes work again.
    m.wait_idle(3);
}

#[test]
fn a_partitioned_node_fences_its_jobs_before_they_run_elsewhere() {
    fault_run(Fault::Partition);
}

#[test]
fn a_killed_agent_takes_its_jobs_with_it_before_they_run_elsewhere() {
    fault_run(Fault::KillAgent);
}

#[test]
fn a_stopped_agent_is_fenced_before_its_jobs_run_elsewhere() {
    fault_run(Fault::StopAgent);
}

#[test]
fn a_restarted_agent_ends_what_its_previous_life_left() {
    let Some(mut m) = Managed::up(3) else { return };
    let mark = format!("{}-leftover", m.vc.prefix);
    let log = m.dir.join("ticks-leftover.log");
    // The first attempt would tick for half a minute: longer than the sweep may take.
    let id = submit_ticker(&m, &log, &mark, (300, 20), true);
    wait_until("the ticker ticking", Duration::from_secs(30), || {
        read_ticks(&log).attempts.get(&0).is_some_and(|(_, t)| t.len() >= 3)
    });
    let node = node_of(&m, id);
    let agent = agent_pid(&m, node_index(&node));
    // Both at once: stopped first, so that neither sees the other die and kills the job.
    let fencer = fencer_pid(agent).map(Pid::from_raw);
    let agent = Pid::from_raw(agent);
    for sig in [Signal::SIGSTOP, Signal::SIGKILL] {
        for p in fencer.iter().chain([&agent]) {
            kill(*p, sig).unwrap();
        }
    }
    let first = [("FENCE_MARK", mark.as_str()), ("GANGWAY_RESTART_COUNT", "0")];
    std::thread::sleep(Duration::from_millis(500));
    let left = processes_with(&first);
    assert!(!left.is_empty(), "the killed agent left its job running (the case to sweep)");
    m.start_agent(node_index(&node));
    wait_until("the leftovers gone", Duration::from_secs(20), || processes_with(&first).is_empty());
    m.wait_done(&[id], Duration::from_secs(60));
    let t = read_ticks(&log);
    let j = m.job(id);
    assert_eq!(j["state"], "COMPLETED", "{j}\n{t}");
    assert_eq!(t.done, 1, "completed exactly once: {t}");
    assert!(j["attempt"].as_u64().unwrap_or(0) >= 2, "{j}");
    let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
    assert!(shown.contains("fenced it"), "{shown}");
    eprintln!(
        "fencing leftovers: {} processes left by the killed agent, all ended by its successor; overlap {:.3} s",
        left.len(),
        t.max_overlap()
    );
    assert!(t.max_overlap() <= 0.0, "{t}");
}

#[test]
fn jobs_outlive_a_controller_down_longer_than_the_lost_timeout() {
    let Some(mut m) = Managed::up(3) else { return };
    let mark = format!("{}-ctl", m.vc.prefix);
    let log = m.dir.join("ticks-ctl.log");
    let id = submit_ticker(&m, &log, &mark, (50, 50), false);
    wait_until("the ticker ticking", Duration::from_secs(30), || {
        read_ticks(&log).attempts.get(&0).is_some_and(|(_, t)| t.len() >= 3)
    });
    m.kill_controller();
    // Longer than lost_timeout (2 s): the agents keep their leases only because no controller
    // listens (their connections are refused, not timed out).
    std::thread::sleep(Duration::from_secs(3));
    m.start_controller();
    m.wait_done(&[id], Duration::from_secs(60));
    let t = read_ticks(&log);
    let j = m.job(id);
    assert_eq!(j["state"], "COMPLETED", "{j}\n{t}\n{}", m.logs());
    assert_eq!(j["attempt"], 1, "never fenced nor requeued: {j}");
    assert_eq!((t.done, t.attempts.len()), (1, 1), "{t}");
}

/// A rank that ticks into `log` (time, node, restart count: its first argument) from a
/// background subshell that ignores SIGTERM, so that only a SIGKILL (after the agent's grace)
/// ends it: in its first attempt it ticks until killed, in later ones `later` times and ends.
fn stubborn_rank(dir: &Path, log: &Path, later: u32) -> PathBuf {
    let path = dir.join("stubborn-rank.sh");
    let text = format!(
        "#!/bin/sh\ntrap '' TERM\nticks=1000000; [ \"$1\" -gt 0 ] && ticks={later}\n( i=0; while [ $i -lt $ticks ]; do echo \"$(date +%s.%N) $(hostname) $1\" >> {log}; i=$((i+1)); sleep 0.1; done ) &\nwait\n",
        log = log.display()
    );
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Per node and attempt: the first and last tick.
fn spans_by_node(log: &Path) -> BTreeMap<(u32, String), (f64, f64)> {
    let mut spans: BTreeMap<(u32, String), (f64, f64)> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [time, node, attempt] = w[..] else { continue };
        let (Ok(time), Ok(attempt)) = (time.parse::<f64>(), attempt.parse::<u32>()) else {
            continue;
        };
        let e = spans.entry((attempt, node.to_string())).or_insert((time, time));
        e.0 = e.0.min(time);
        e.1 = e.1.max(time);
    }
    spans
}

/// A 3-node batch job whose step's ranks ignore SIGTERM loses one node. The surviving nodes
/// end the attempt (SIGTERM, then SIGKILL after a 3 s grace); the requeued attempt starts only
/// once both have confirmed nothing of it is left, so no tick of the new attempt comes before
/// the last tick of the old one, on any node.
#[test]
fn a_requeued_multi_node_job_starts_again_only_once_its_surviving_nodes_ended_it() {
    let setup = Setup { agent_kill_grace: Some("3s"), ..Setup::default() };
    let Some(m) = Managed::up_with(4, setup) else { return };
    let log = m.dir.join("ticks-multinode.log");
    let rank = stubborn_rank(&m.dir, &log, 20);
    let script = m.dir.join("multinode.sh");
    // Steps' ranks do not see the batch job's GANGWAY_RESTART_COUNT: pass it on.
    let body = format!(
        "#!/bin/sh\n{} run {} \"$GANGWAY_RESTART_COUNT\"\n",
        m.gangway_bin().display(),
        rank.display()
    );
    std::fs::write(&script, body).unwrap();
    let id = m.submit(&["-N", "3", "-n", "3", "-o", "/dev/null", script.to_str().unwrap()]);
    wait_until("every rank of attempt 1 ticking", Duration::from_secs(30), || {
        spans_by_node(&log).keys().filter(|(a, _)| *a == 0).count() == 3
    });
    let nodes: Vec<String> = m.job(id)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    // Not the script's node: the survivors include the batch script and the launcher.
    let victim = nodes[2].clone();
    let killed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let out = m.vc.ctl(&["kill", &victim]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the job requeued", Duration::from_secs(30), || {
        m.job(id)["attempt"].as_u64().unwrap_or(0) >= 2
    });
    let waiting = m.job(id);
    m.wait_done(&[id], Duration::from_secs(60));
    let j = m.job(id);
    let spans = spans_by_node(&log);
    let old: Vec<(&String, f64)> =
        spans.iter().filter(|((a, _), _)| *a == 0).map(|((_, n), s)| (n, s.1)).collect();
    let first_new =
        spans.iter().filter(|((a, _), _)| *a > 0).map(|(_, s)| s.0).fold(f64::INFINITY, f64::min);
    let last_old = old.iter().map(|(_, t)| *t).fold(0.0f64, f64::max);
    let figures: Vec<String> = old
        .iter()
        .map(|(n, t)| format!("{n} last tick of attempt 1 at kill{:+.3} s", t - killed))
        .collect();
    eprintln!(
        "requeue of a 3-node job that lost {victim}: {}; first tick of attempt 2 at kill{:+.3} s; gap after the old attempt's last tick {:.3} s (reason while waiting: {})",
        figures.join(", "),
        first_new - killed,
        first_new - last_old,
        waiting["reason"]
    );
    assert_eq!(j["state"], "COMPLETED", "{j}\n{spans:?}\n{}", m.logs());
    assert_eq!(j["attempt"], 2, "{j}");
    assert_eq!(old.len(), 3, "{spans:?}");
    assert!(first_new.is_finite(), "attempt 2 ticked: {spans:?}");
    assert!(
        first_new > last_old,
        "attempt 2 ticked {:.3} s before attempt 1's last tick\n{spans:?}",
        last_old - first_new
    );
    let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
    assert!(shown.contains("released"), "{shown}");
}

/// A batch job that named its node (`-w node2`) loses it: it is requeued but never avoids it,
/// waits `NodeDown` while the node is away (not forever after: it once did), and runs again
/// there, once, when the node's agent is back.
#[test]
fn a_job_that_named_its_lost_node_runs_there_again_when_it_returns() {
    let Some(mut m) = Managed::up(2) else { return };
    let log = m.dir.join("ticks-named.log");
    let out = m
        .cli()
        .args(["batch", "--parsable", "-w", "node2", "-n", "1", "-o", "/dev/null", "--wrap"])
        .arg(tick_script(&log, 300, 10, false))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    wait_until("the job ticking on node2", Duration::from_secs(30), || {
        read_ticks(&log).attempts.get(&0).is_some_and(|(_, t)| t.len() >= 3)
    });
    assert_eq!(node_of(&m, id), "node2");
    kill(Pid::from_raw(agent_pid(&m, 2)), Signal::SIGKILL).unwrap();
    wait_until("the job requeued", Duration::from_secs(30), || {
        m.job(id)["attempt"].as_u64().unwrap_or(0) >= 2
    });
    // Away for a while: it waits for its node, nowhere else.
    std::thread::sleep(Duration::from_secs(2));
    let waiting = m.job(id);
    assert_eq!(
        (waiting["state"].as_str(), waiting["reason"].as_str()),
        (Some("PENDING"), Some("NodeDown")),
        "{waiting}"
    );
    let back = std::time::Instant::now();
    m.start_agent(2);
    m.wait_done(&[id], Duration::from_secs(60));
    let t = read_ticks(&log);
    let j = m.job(id);
    eprintln!(
        "-w after the node returned: completed there {:.1} s after its agent was restarted; {t}",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(j["state"], "COMPLETED", "{j}\n{t}");
    assert_eq!(j["nodes"][0], "node2", "{j}");
    assert_eq!(t.done, 1, "{t}");
    assert!(t.attempts.values().all(|(n, _)| n == "node2"), "{t}");
    assert!(t.max_overlap() <= 0.0, "{t}");
}

/// Node `i`'s agent and its fencer: what stops when the node stalls.
fn node_processes(m: &Managed, i: usize) -> Vec<Pid> {
    let agent = agent_pid(m, i);
    std::iter::once(agent).chain(fencer_pid(agent)).map(Pid::from_raw).collect()
}

/// Both nodes of a two-node cluster stall in turn, each longer than the lost timeout: the job
/// loses the first, is requeued to the second, loses it too. Avoiding the nodes it lost would
/// leave it nowhere to run (it stayed pending `Unsatisfiable` for good, after both nodes were
/// back): once both return, it runs on one of them and completes, once.
#[test]
fn a_job_that_lost_every_node_runs_again_when_they_return() {
    let Some(m) = Managed::up(2) else { return };
    let log = m.dir.join("ticks-both-lost.log");
    // Every attempt ticks until the test says `go` (the earlier ones are fenced before), then
    // ticks five more times and ends.
    let go = m.dir.join("both-lost.go");
    let tick = format!(
        "echo \"$(date +%s.%N) $(hostname) $GANGWAY_RESTART_COUNT\" >> {log}; sleep 0.1",
        log = log.display()
    );
    let script = format!(
        "while [ ! -e {go} ]; do {tick}; done; for i in 1 2 3 4 5; do {tick}; done; echo \"DONE $GANGWAY_RESTART_COUNT\" >> {log}",
        go = go.display(),
        log = log.display()
    );
    let id = m.submit(&["-n", "1", "-o", "/dev/null", "--wrap", &script]);
    // Under load an attempt may be fenced before this test stalls anything: any attempt will do.
    wait_until("the job ticking", Duration::from_secs(60), || {
        !read_ticks(&log).attempts.is_empty() && m.job(id)["state"] == "RUNNING"
    });
    let first = node_index(&node_of(&m, id));
    let (first, second) = (node_processes(&m, first), node_processes(&m, 3 - first));
    let stalled = std::time::Instant::now();
    for p in &first {
        kill(*p, Signal::SIGSTOP).unwrap();
    }
    let before = m.job(id)["attempt"].as_u64().unwrap_or(1);
    wait_until("the next attempt placed", Duration::from_secs(20), || {
        m.job(id)["attempt"].as_u64() > Some(before) && m.job(id)["state"] == "RUNNING"
    });
    for p in &second {
        kill(*p, Signal::SIGSTOP).unwrap();
    }
    // Longer than the lost timeout (2 s) for each.
    std::thread::sleep(
        Duration::from_millis(2600)
            .max(Duration::from_millis(4600).saturating_sub(stalled.elapsed())),
    );
    for p in first.iter().chain(&second) {
        kill(*p, Signal::SIGCONT).unwrap();
    }
    let lost_both = before + 1;
    wait_until("the job running again", Duration::from_secs(30), || {
        m.job(id)["attempt"].as_u64() > Some(lost_both) && m.job(id)["state"] == "RUNNING"
    });
    std::fs::write(&go, "").unwrap();
    m.wait_done(&[id], Duration::from_secs(30));
    let t = read_ticks(&log);
    let j = m.job(id);
    let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
    eprintln!("both nodes lost in turn: {t}");
    assert_eq!(j["state"], "COMPLETED", "{j}\n{t}\n{shown}\n{}", m.logs());
    assert_eq!(t.done, 1, "{t}");
    assert!(j["attempt"].as_u64() >= Some(3), "{shown}");
    assert!(shown.contains("lost"), "{shown}");
}

/// A batch script whose start blocks longer than the lost timeout, for a real reason: its output
/// file is a FIFO that nobody reads yet, so the child's `open` waits before its exec, as an
/// output on a hung file server would. The agent starts processes on its spawner's threads, so
/// its heartbeats go on meanwhile: the node is never lost or fenced, another job starts and ends
/// on it while the start is stuck, a step of the stuck job waits for the job's cgroup (made with
/// the script's start) and runs in it, and once the FIFO is read the job runs once, in its
/// first attempt. (When the agent forked on its runtime thread, no heartbeat left during the
/// start: the lease ran out, the node was lost, the job fenced and requeued, over and over.)
#[test]
fn a_slow_process_start_neither_stops_heartbeats_nor_fences_the_node() {
    let Some(m) = Managed::up_as(1, Some("core:4 pu:1")) else { return };
    let fifo = m.dir.join("slow-start.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let fifo_arg = fifo.display().to_string();
    let slow = m.submit(&[
        "-n",
        "1",
        "-o",
        &fifo_arg,
        "--wrap",
        "echo ran $GANGWAY_RESTART_COUNT; sleep 2",
    ]);
    wait_until("the slow job placed", Duration::from_secs(20), || {
        m.job(slow)["state"] == "RUNNING"
    });
    let stuck = std::time::Instant::now();
    // Another job on the same node while the first one's start is stuck.
    let other = m.submit(&["-n", "1", "-o", "/dev/null", "--wrap", "true"]);
    let (state, ran_in) = loop {
        let j = m.job(other);
        if j["state"] == "COMPLETED" || stuck.elapsed() > Duration::from_secs(15) {
            break (j["state"].clone(), stuck.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(state, "COMPLETED", "another job ran while the start was stuck\n{}", m.logs());
    // The start stays stuck for three lost timeouts (2 s each); the node stays up throughout.
    let mut states = std::collections::BTreeSet::new();
    while stuck.elapsed() < Duration::from_secs(6) {
        for n in m.nodes_json() {
            states.insert(n["state"].as_str().unwrap_or_default().to_string());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A step of the stuck job, launched from outside: the job's cgroup was made before the
    // script's fork, so the step runs (in its part of it) while the script's start is still
    // stuck, and ends before the script has even begun.
    let step_cmd = ["run", "cat", "/proc/self/cgroup"];
    let step = Live::start(m.cli().env("GANGWAY_JOB_ID", slow.to_string()).args(step_cmd));
    let cgroups_on = !m.cgroup_dirs(1).is_empty();
    let (status, cgroups, stderr) = step.finish();
    let step_in = stuck.elapsed();
    let held = stuck.elapsed();
    let before = m.job(slow);
    assert_eq!(
        (before["state"].as_str(), before["attempt"].as_u64()),
        (Some("RUNNING"), Some(1)),
        "the stuck job was neither fenced nor requeued: {before}\n{}",
        m.logs()
    );
    assert!(
        states.iter().all(|s| s != "down" && s != "suspect"),
        "the node stayed up: {states:?}\n{}",
        m.logs()
    );
    // Read the FIFO: the child's `open` returns, the script runs and writes its one line.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(&reader));
    });
    let output = rx.recv_timeout(Duration::from_secs(20)).expect("the script wrote and ended");
    m.wait_done(&[slow], Duration::from_secs(20));
    let j = m.job(slow);
    let shown = text(&m.cli_out(&["show", "job", &slow.to_string()]));
    let log = std::fs::read_to_string(m.dir.join("agent1.log")).unwrap_or_default();
    let took: Option<u64> = log
        .lines()
        .filter(|l| l.contains("starting the batch script took this long"))
        .find_map(|l| l.split("took_ms=").nth(1)?.split_whitespace().next()?.parse().ok());
    eprintln!(
        "slow start: held {:.1} s (the agent's figure: {took:?} ms); another job on the node completed {:.2} s into it; node states seen meanwhile {states:?}; output {output:?}; a step of it ended {:.1} s into it",
        held.as_secs_f64(),
        ran_in.as_secs_f64(),
        step_in.as_secs_f64()
    );
    assert!(
        took.is_some_and(|t| t >= 5500),
        "the start was stuck for real, as long as the test held it: {took:?}\n{log}"
    );
    assert_eq!(j["state"], "COMPLETED", "{j}\n{shown}\n{}", m.logs());
    assert_eq!(j["attempt"], 1, "never fenced nor requeued: {shown}");
    assert_eq!(output.unwrap_or_default(), "ran 0\n", "ran once, in its first attempt");
    assert!(!shown.contains("fenced") && !shown.contains("requeue"), "{shown}");
    // It ended before the FIFO was read, so before the script could start: had it waited for
    // the script, its launcher would have given up on its proxy (5 s) and failed.
    assert!(status.success(), "the step of the stuck job: {status}: {stderr}");
    if cgroups_on {
        let part = format!("job_{slow}.1/step_");
        assert!(cgroups.iter().any(|l| l.contains(&part)), "the step ran in its part: {cgroups:?}");
    }
}

/// Agents without cgroups: a fencer or a release then ends only the sessions its agent knows
/// of, so what a late start's answer does is all that stops its process.
fn without_cgroups() -> Setup {
    Setup { agent_args: vec!["--no-cgroups".into()], ..Setup::default() }
}

/// A batch job whose start blocks until `fifo` (its output) is opened for reading; its script
/// waits a second, then appends `ran <restart count>` to `marker`. `FENCE_MARK=mark` names
/// its processes.
fn submit_stuck(m: &Managed, fifo: &Path, marker: &Path, mark: &str) -> u64 {
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let script = format!("sleep 1; echo ran $GANGWAY_RESTART_COUNT >> {}", marker.display());
    let out = m
        .cli()
        .env("FENCE_MARK", mark)
        .args(["batch", "--parsable", "-n", "1", "-o"])
        .arg(fifo)
        .args(["--wrap", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    wait_until("the stuck job placed", Duration::from_secs(20), || m.job(id)["state"] == "RUNNING");
    // The agent has the launch by now, its start stuck in the child's `open`.
    std::thread::sleep(Duration::from_millis(500));
    id
}

/// Opens `fifo` for reading and writing, which never blocks: every start stuck opening it
/// goes on, and later ones do not stick. Held until dropped.
fn unblock(fifo: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().read(true).write(true).open(fifo).unwrap()
}

/// A job requeued while its script's start is stuck: its agent confirms the old attempt gone
/// only once the start has answered and its process is ended, so the new attempt waits
/// (`PreviousAttempt`) until then, and is the only one that runs. (It started at once, beside
/// the stuck one, when a release did not wait for starts in flight. The released attempt's
/// script file is removed at its release, so a late script's shell fails by itself; the agent
/// kills the late process at once all the same, which a step's proxy needs, and logs it.)
#[test]
fn a_release_is_confirmed_only_once_a_start_in_flight_has_answered_and_was_killed() {
    let Some(m) = Managed::up_with(1, without_cgroups()) else { return };
    let (fifo, marker) = (m.dir.join("released.fifo"), m.dir.join("released.marker"));
    let mark = format!("{}-released", m.vc.prefix);
    let id = submit_stuck(&m, &fifo, &marker, &mark);
    m.slurm_path();
    let out = std::process::Command::new(m.dir.join("slurm-bin/scontrol"))
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .args(["requeue", &id.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_secs(1));
    let waiting = m.job(id);
    let unblocked =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let _open = unblock(&fifo);
    m.wait_done(&[id], Duration::from_secs(30));
    // Attempt 2 ran its second before it wrote; a survivor of attempt 1, started before it,
    // would have written by now as well.
    std::thread::sleep(Duration::from_millis(300));
    let j = m.job(id);
    let released = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[1] == "released")
        .and_then(|e| e[0].as_u64())
        .unwrap_or(0) as u128;
    let log = std::fs::read_to_string(m.dir.join("agent1.log")).unwrap_or_default();
    eprintln!(
        "released while starting: attempt 1 confirmed gone {} ms after its start was unblocked; waited as {}",
        released.saturating_sub(unblocked),
        waiting["reason"]
    );
    assert_eq!(
        (waiting["state"].as_str(), waiting["attempt"].as_u64()),
        (Some("PENDING"), Some(2)),
        "{waiting}"
    );
    assert!(
        waiting["reason"].as_str().is_some_and(|r| r.starts_with("PreviousAttempt")),
        "attempt 2 waited for the stuck start of attempt 1: {waiting}\n{}",
        m.logs()
    );
    assert!(released >= unblocked, "confirmed before the start answered: {j}");
    assert_eq!(j["state"], "COMPLETED", "{j}\n{}", m.logs());
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(ran, "ran 1\n", "only attempt 2 ran: {ran:?}");
    assert!(log.contains("a process started after its job was released"), "{log}");
}

/// A node cut off while a script's start is stuck: its lease runs out, the job is fenced with
/// its start in flight, and when the start answers (still cut off) the script is killed at
/// once: it never writes, and the attempt that runs after the node is back is the only one.
#[test]
fn a_start_answered_after_its_job_was_fenced_is_killed_at_once() {
    let Some(m) = Managed::up_with(1, without_cgroups()) else { return };
    let (fifo, marker) = (m.dir.join("fenced.fifo"), m.dir.join("fenced.marker"));
    let mark = format!("{}-fenced", m.vc.prefix);
    let id = submit_stuck(&m, &fifo, &marker, &mark);
    assert!(m.vc.ctl(&["partition", "node1"]).status.success());
    // Past the lease (the lost timeout, 2 s, less the margin).
    std::thread::sleep(Duration::from_secs(3));
    let open = unblock(&fifo);
    let first = [("FENCE_MARK", mark.as_str()), ("GANGWAY_RESTART_COUNT", "0")];
    wait_until("the late script gone", Duration::from_secs(5), || {
        processes_with(&first).is_empty()
    });
    // Longer than the script's wait before it writes: a survivor would have written by now.
    std::thread::sleep(Duration::from_millis(1500));
    let early = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(m.vc.ctl(&["heal", "node1"]).status.success());
    m.wait_done(&[id], Duration::from_secs(30));
    drop(open);
    let j = m.job(id);
    let log = std::fs::read_to_string(m.dir.join("agent1.log")).unwrap_or_default();
    assert_eq!(early, "", "the fenced attempt's script never ran\n{log}");
    assert!(log.contains("a process started after its job was fenced"), "{log}");
    assert_eq!(j["state"], "COMPLETED", "{j}\n{}", m.logs());
    assert!(j["attempt"].as_u64() >= Some(2), "{j}");
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "one attempt ran: {ran:?}");
    assert!(ran.starts_with("ran ") && ran != "ran 0\n", "{ran:?}");
}
