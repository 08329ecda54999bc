//! Signals reach every rank; Ctrl-C twice stops the job; no process outlives `gangway run`.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{
    Live, gangway, is_alive, process_group, process_state, processes_with_env, program,
    read_pidfile, scratch, wait_until,
};

#[test]
fn forwarded_signals_reach_every_rank() {
    let live = Live::start(gangway().args(["run", "-n", "3"]).arg(program("signals")));
    for rank in 0..3 {
        live.expect(&format!("rank {rank} ready"), 1);
    }
    for sig in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGCONT]
    {
        live.signal(sig);
        for rank in 0..3 {
            live.expect(&format!("rank {rank} got {}", sig.as_str()), 1);
        }
    }
    // One SIGINT is forwarded, not acted upon.
    live.signal(Signal::SIGINT);
    for rank in 0..3 {
        live.expect(&format!("rank {rank} got SIGINT"), 1);
    }
    std::thread::sleep(Duration::from_millis(1100));
    // SIGTERM: the ranks exit 0 by themselves, so the job succeeds.
    live.signal(Signal::SIGTERM);
    let (status, lines, stderr) = live.finish();
    assert!(status.success(), "{status:?} {stderr}");
    for rank in 0..3 {
        assert!(lines.contains(&format!("rank {rank} got SIGTERM")), "{lines:?}");
    }
}

#[test]
fn ctrl_z_stops_the_ranks_and_the_launcher_and_fg_resumes_them() {
    // `sleep` keeps SIGTSTP's default action, so its state shows whether it was stopped.
    let live = Live::start(gangway().args(["run", "-n", "2", "sleep", "30"]));
    let pid = live.pid();
    let mut ranks = Vec::new();
    wait_until("both ranks started", Duration::from_secs(10), || {
        ranks = children_running(pid, "sleep");
        ranks.len() == 2 && ranks.iter().all(|r| process_state(*r) == Some('S'))
    });
    live.signal(Signal::SIGTSTP);
    wait_until("launcher and ranks stopped", Duration::from_secs(10), || {
        process_state(pid) == Some('T') && ranks.iter().all(|r| process_state(*r) == Some('T'))
    });
    live.signal(Signal::SIGCONT);
    wait_until("launcher and ranks running again", Duration::from_secs(10), || {
        process_state(pid) != Some('T') && ranks.iter().all(|r| process_state(*r) == Some('S'))
    });
    live.signal(Signal::SIGTERM);
    let (status, _, stderr) = live.finish();
    assert_eq!(status.code(), Some(128 + 15), "{stderr}");
}

/// Caught SIGTSTP and SIGCONT reach a program that handles them, once the launcher runs again.
#[test]
fn tstp_and_cont_are_forwarded_to_programs_that_catch_them() {
    let live = Live::start(gangway().args(["run", "-n", "2"]).arg(program("signals")));
    live.expect("rank 0 ready", 1);
    live.expect("rank 1 ready", 1);
    live.signal(Signal::SIGTSTP);
    let pid = live.pid();
    wait_until("launcher stopped", Duration::from_secs(10), || process_state(pid) == Some('T'));
    live.signal(Signal::SIGCONT);
    for rank in 0..2 {
        live.expect(&format!("rank {rank} got SIGTSTP"), 1);
        live.expect(&format!("rank {rank} got SIGCONT"), 1);
    }
    live.signal(Signal::SIGTERM);
    let (status, _, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
}

/// The launcher's children running `comm` (as root it has one more: its cgroup's watcher).
fn children_running(pid: i32, comm: &str) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|child: &i32| {
            std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

#[test]
fn second_ctrl_c_within_a_second_stops_the_job() {
    let live = Live::start(gangway().args(["run", "-n", "2"]).arg(program("signals")));
    live.expect("rank 0 ready", 1);
    live.expect("rank 1 ready", 1);
    live.signal(Signal::SIGINT);
    live.expect("rank 0 got SIGINT", 1);
    live.signal(Signal::SIGINT);
    let (status, lines, stderr) = live.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted twice; stopping the job"), "{stderr}");
    // The stop is SIGTERM first: the ranks saw it and exited by themselves.
    assert!(lines.contains(&"rank 0 got SIGTERM".to_string()), "{lines:?}");
}

#[test]
fn ranks_that_ignore_sigterm_are_killed_after_the_grace_period() {
    let live = Live::start(
        gangway()
            .args(["run", "-n", "2", "--kill-grace", "300ms"])
            .arg(program("signals"))
            .arg("--ignore-term"),
    );
    live.expect("rank 0 ready", 1);
    live.expect("rank 1 ready", 1);
    // Signals sent back to back may arrive as one; wait for the first to be forwarded.
    live.signal(Signal::SIGINT);
    live.expect("rank 0 got SIGINT", 1);
    live.signal(Signal::SIGINT);
    let (status, lines, stderr) = live.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    // The ranks ignored SIGTERM, so only the SIGKILL after the grace period ended them.
    assert!(!lines.iter().any(|l| l.contains("exiting")), "{lines:?}");
}

/// Starts `spawn_children` ranks and returns every pid they report (rank and descendants).
fn start_family(extra: &[&str]) -> (Live, tempfile::TempDir, Vec<(String, i32)>) {
    let dir = scratch();
    let pidfile = dir.path().join("pids-%r");
    let live = Live::start(
        gangway().args(["run", "-n", "2"]).arg(program("spawn_children")).arg(&pidfile).args(extra),
    );
    let mut pids = Vec::new();
    for rank in 0..2 {
        let path = dir.path().join(format!("pids-{rank}"));
        wait_until("pid file", Duration::from_secs(20), || read_pidfile(&path).len() == 4);
        pids.extend(read_pidfile(&path).into_iter().map(|(l, p)| (format!("{rank}:{l}"), p)));
    }
    (live, dir, pids)
}

fn assert_all_gone(pids: &[(String, i32)], job_id: i32) {
    wait_until("every descendant gone", Duration::from_secs(5), || {
        pids.iter().all(|(_, p)| !is_alive(*p))
    });
    let left = processes_with_env("GANGWAY_JOB_ID", &job_id.to_string());
    assert!(left.is_empty(), "processes of job {job_id} outlived it: {left:?}");
}

#[test]
fn each_rank_leads_its_own_process_group() {
    let (live, _dir, pids) = start_family(&[]);
    for (label, pid) in &pids {
        if label.ends_with(":rank") {
            assert_eq!(process_group(*pid), Some(*pid), "{label}");
            assert_ne!(process_group(*pid), process_group(live.pid()));
        }
    }
}

#[test]
fn no_orphans_after_kill_9_of_a_rank() {
    let (live, _dir, pids) = start_family(&["--ignore-term"]);
    let job = live.pid();
    let rank1 = pids.iter().find(|(l, _)| l == "1:rank").unwrap().1;
    kill(Pid::from_raw(rank1), Signal::SIGKILL).unwrap();
    let (status, _, stderr) = live.finish();
    assert_eq!(status.code(), Some(128 + 9), "{stderr}");
    assert!(
        stderr.contains("rank 1 (pid") && stderr.contains("exited with signal 9 (SIGKILL)"),
        "{stderr}"
    );
    assert_all_gone(&pids, job);
}

#[test]
fn no_orphans_after_kill_9_of_a_ranks_children() {
    let (live, _dir, pids) = start_family(&[]);
    let job = live.pid();
    for (label, pid) in &pids {
        if label.ends_with("setsid-child") || label.ends_with("pgroup-child") {
            kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
        }
    }
    // The ranks go on; the job is then stopped the usual way.
    std::thread::sleep(Duration::from_millis(200));
    assert!(pids.iter().filter(|(l, _)| l.ends_with(":rank")).all(|(_, p)| is_alive(*p)));
    // The first Ctrl-C (forwarded) already ends these ranks: SIGINT's default action.
    live.signal(Signal::SIGINT);
    let (status, _, stderr) = live.finish();
    assert_eq!(status.code(), Some(128 + 2), "{stderr}");
    assert_all_gone(&pids, job);
}

#[test]
fn no_orphans_when_ranks_exit_leaving_descendants() {
    let (live, _dir, pids) = start_family(&["--exit"]);
    let job = live.pid();
    let (status, _, stderr) = live.finish();
    assert!(status.success(), "{stderr}");
    assert_all_gone(&pids, job);
}

#[test]
fn ranks_die_with_the_launcher_even_on_kill_9() {
    let (live, _dir, pids) = start_family(&[]);
    kill(Pid::from_raw(live.pid()), Signal::SIGKILL).unwrap();
    let ranks: Vec<(String, i32)> =
        pids.iter().filter(|(l, _)| l.ends_with(":rank")).cloned().collect();
    wait_until("ranks gone after the launcher was killed", Duration::from_secs(5), || {
        ranks.iter().all(|(_, p)| !is_alive(*p))
    });
    drop(live);
    // Without a cgroup (not root) descendants that left the rank's process group cannot be
    // tracked once the launcher is gone (as root the run's watcher kills them:
    // containment.rs); end them ourselves, by pid, so the test leaves nothing behind.
    for (_, pid) in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}
