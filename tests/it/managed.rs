//! The controller and agents on a virtual cluster: batch, alloc and run jobs, gang semantics,
//! CPU packing, requeue after a node is killed, a controller restart, and bad input.
//! Real SQLite, real agents in the node namespaces, real MPICH.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::controlled::{Managed, text};
use crate::support::{gangway, ofi_hello, wait_until};

#[test]
fn batch_alloc_and_run_jobs_on_three_nodes() {
    let Some(m) = Managed::up(3) else { return };
    // A batch job on all three nodes, whose script runs a step with gangway run.
    let bin = m.gangway_bin();
    let id = m.submit(&["-N", "3", "-n", "3", "--wrap", &format!("echo script on $(hostname) job $GANGWAY_JOB_ID nodes $GANGWAY_NODELIST; {} run hostname | sort", bin.display())]);
    m.wait_done(&[id], Duration::from_secs(30));
    let out = m.output_of(id);
    assert!(out.contains(&format!("script on node1 job {id} nodes node[1-3]")), "{out}");
    for n in ["node1", "node2", "node3"] {
        assert!(out.lines().any(|l| l == n), "step ran on {n}: {out}");
    }
    assert_eq!(m.job(id)["state"], "COMPLETED", "{}", m.logs());

    // An interactive allocation with two steps.
    let script =
        format!("{b} run -l hostname | sort; {b} run -N 2 -n 2 hostname | sort", b = bin.display());
    let out = m
        .cli()
        .args(["alloc", "-N", "3", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("0: node1") && t.contains("1: node2") && t.contains("2: node3"), "{t}");
    assert!(t.contains("granted job"), "{t}");

    // An allocation cancelled under its command: the command is hung up on, alloc says why.
    let held = m
        .cli()
        .args(["alloc", "-N", "1", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the allocation running", Duration::from_secs(20), || {
        let out = m.cli_out(&["queue", "--json"]);
        let q: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        q.iter().any(|j| j["kind"] == "alloc" && j["state"] == "RUNNING")
    });
    let out = m.cli_out(&["cancel", "--user", "root"]);
    assert!(out.status.success(), "{}", text(&out));
    let done = crate::support::wait_bounded(held);
    assert_eq!(done.code(), 118, "{}", done.stderr);
    assert!(done.stderr.contains("CANCELLED (cancelled by root)"), "{}", done.stderr);

    // A run job of its own.
    let out = m
        .cli()
        .args(["run", "-N", "3", "-n", "6", "hostname"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let mut lines: Vec<&str> = t.lines().collect();
    lines.sort();
    assert_eq!(lines, ["node1", "node1", "node2", "node2", "node3", "node3"], "{t}");
}

#[test]
fn an_allocation_whose_command_ignores_the_hangup_is_killed_after_its_grace() {
    let Some(m) = Managed::up(1) else { return };
    // exec: one process, so the kill after the grace leaves nothing behind.
    let held = m
        .cli()
        .args(["alloc", "-N", "1", "-Q", "--", "sh", "-c", "trap '' HUP; exec sleep 60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the allocation running", Duration::from_secs(20), || {
        let out = m.cli_out(&["queue", "--json"]);
        let q: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        q.iter().any(|j| j["kind"] == "alloc" && j["state"] == "RUNNING")
    });
    let cancelled = Instant::now();
    assert!(m.cli_out(&["cancel", "--user", "root"]).status.success());
    let done = crate::support::wait_bounded(held);
    let took = cancelled.elapsed();
    assert_eq!(done.code(), 118, "{}", done.stderr);
    assert!(done.stderr.contains("CANCELLED (cancelled by root)"), "{}", done.stderr);
    // The hang-up was ignored: killed after the 2 s grace, not at once and not after the sleep.
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn mpi_program_in_a_batch_job_across_nodes() {
    let Some((hello, lib)) = ofi_hello() else { return };
    let Some(m) = Managed::up(3) else { return };
    let script = format!(
        "#!/bin/sh\n#SBATCH -N 3\n#SBATCH --ntasks=6\nexport LD_LIBRARY_PATH={}\nexport MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp\n{} run {}\n",
        lib.display(),
        m.gangway_bin().display(),
        hello.display()
    );
    let path = m.dir.join("mpi.sh");
    std::fs::write(&path, script).unwrap();
    let id = m.submit(&[path.to_str().unwrap()]);
    m.wait_done(&[id], Duration::from_secs(60));
    let out = m.output_of(id);
    for r in 0..6 {
        assert!(out.contains(&format!("hello from rank {r} of 6 on node{}", r / 2 + 1)), "{out}");
    }
    assert!(out.contains("allreduce sum = 21 (expected 21)"), "{out}");
    assert_eq!(m.job(id)["exit_code"], 0, "{out}");
}

#[test]
fn a_gang_never_starts_on_fewer_nodes_and_cpus_are_never_shared() {
    let Some(m) = Managed::up(3) else { return };
    let out = m.cli_out(&["drain", "node3", "--reason", "test"]);
    assert!(out.status.success(), "{}", text(&out));
    let big = m.submit(&["-N", "3", "--wrap", "true"]);
    std::thread::sleep(Duration::from_secs(1));
    let j = m.job(big);
    assert_eq!(j["state"], "PENDING", "{j}");
    assert_eq!(j["reason"], "NodeDown", "{j}");
    assert!(m.output_of(big).is_empty());
    assert!(m.cli_out(&["resume", "node3"]).status.success());
    m.wait_done(&[big], Duration::from_secs(20));
    assert_eq!(m.job(big)["state"], "COMPLETED");

    // 20 one-core jobs on 3 two-core nodes: each records its node, CPUs and run time.
    let ids: Vec<u64> = (0..20)
        .map(|_| m.submit(&["-n", "1", "--wrap", "echo $(hostname) $(grep Cpus_allowed_list /proc/self/status | cut -f2) $(date +%s.%N); sleep 0.6; date +%s.%N"]))
        .collect();
    m.wait_done(&ids, Duration::from_secs(90));
    let mut spans: HashMap<(String, String), Vec<(f64, f64)>> = HashMap::new();
    for id in &ids {
        let out = m.output_of(*id);
        let mut lines = out.lines();
        let first: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        let end: f64 = lines.next().unwrap_or("0").trim().parse().unwrap_or(0.0);
        assert_eq!(first.len(), 3, "job {id}: {out}");
        assert!(!first[1].contains(',') && !first[1].contains('-'), "one CPU each: {out}");
        spans
            .entry((first[0].to_string(), first[1].to_string()))
            .or_default()
            .push((first[2].parse().unwrap(), end));
    }
    for (cpu, mut s) in spans {
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in s.windows(2) {
            assert!(w[1].0 >= w[0].1, "CPU {cpu:?} held by two jobs at once: {s:?}");
        }
    }
}

#[test]
fn killing_a_node_requeues_its_jobs_which_complete_exactly_once() {
    // Nodes of 4 cores (stand-ins: the agents report them), so all 10 jobs run at once.
    let Some(mut m) = Managed::up_as(3, Some("core:4 pu:1")) else { return };
    let ids: Vec<u64> = (0..10)
        .map(|_| {
            m.submit(&[
                "-n",
                "1",
                "--wrap",
                "echo RUN $GANGWAY_RESTART_COUNT on $(hostname); sleep 3; echo DONE",
            ])
        })
        .collect();
    wait_until("ten jobs running", Duration::from_secs(20), || {
        ids.iter().filter(|id| m.job(**id)["state"] == "RUNNING").count() == 10
    });
    let on_node2: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| m.job(*id)["nodes"] == serde_json::json!(["node2"]))
        .collect();
    assert!(!on_node2.is_empty());
    let killed = Instant::now();
    let out = m.vc.ctl(&["kill", "node2"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("node2 down", Duration::from_secs(10), || {
        m.nodes_json().iter().any(|n| n["name"] == "node2" && n["state"] == "down")
    });
    let detected = killed.elapsed();
    wait_until("the lost jobs running again", Duration::from_secs(20), || {
        on_node2.iter().all(|id| m.job(*id)["state"] != "PENDING" && m.job(*id)["attempt"] == 2)
    });
    let rerun = killed.elapsed();
    eprintln!("node2 lost after {detected:?}; its jobs running again after {rerun:?}");
    m.wait_done(&ids, Duration::from_secs(60));
    for id in &ids {
        let out = m.output_of(*id);
        let j = m.job(*id);
        assert_eq!(j["state"], "COMPLETED", "job {id}: {j}\n{out}");
        assert_eq!(out.matches("DONE").count(), 1, "job {id} completed once: {out}");
        if on_node2.contains(id) {
            assert_eq!(j["attempt"], 2, "{j}");
            let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
            assert!(shown.contains("requeue attempt 2 after node2 was lost"), "{shown}");
            assert!(
                out.contains("RUN 0 on node2")
                    && out.contains("requeued (attempt 2)")
                    && out.contains("RUN 1 on node"),
                "{out}"
            );
            assert!(!out.contains("RUN 1 on node2"), "the lost node is avoided: {out}");
        } else {
            assert_eq!(out.matches("RUN").count(), 1, "{out}");
        }
    }
    // The node comes back, registers, and is idle again.
    let _ = Command::new(crate::support::repo_root().join("tests/cluster/vcluster"))
        .args(["up", "3", "--prefix", &m.vc.prefix])
        .output();
    m.start_agent(2);
    m.wait_idle(3);
}

#[test]
fn a_killed_controller_restarts_without_losing_or_repeating_jobs() {
    let Some(mut m) = Managed::up(3) else { return };
    let ids: Vec<u64> = (0..50)
        .map(|i| {
            m.submit(&["-n", "1", "--wrap", &format!("echo START {i}; sleep 0.4; echo END {i}")])
        })
        .collect();
    // One look at the whole queue per poll: a sweep of 50 `show job` calls took longer than the
    // last jobs ran once starts no longer waited for each other, and saw none of them running.
    wait_until("some jobs running", Duration::from_secs(20), || {
        let out = m.cli_out(&["queue", "--json"]);
        let q: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        q.iter().any(|j| j["state"] == "RUNNING" && ids.contains(&j["id"].as_u64().unwrap_or(0)))
    });
    m.kill_controller();
    std::thread::sleep(Duration::from_millis(500));
    m.start_controller();
    m.wait_done(&ids, Duration::from_secs(120));
    for (i, id) in ids.iter().enumerate() {
        let out = m.output_of(*id);
        assert_eq!(out.matches(&format!("START {i}\n")).count(), 1, "job {id}: {out}");
        assert_eq!(out.matches(&format!("END {i}\n")).count(), 1, "job {id}: {out}");
        assert_eq!(m.job(*id)["state"], "COMPLETED", "job {id}");
    }
    // A second controller on the same state directory refuses to start.
    let out = Command::new(m.gangway_bin())
        .args(["controller", "--config"])
        .arg(m.dir.join("gangway.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("another controller already runs"), "{}", text(&out));
}

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let Some(m) = Managed::up(1) else { return };
    let kept = m.submit(&["-H", "--wrap", "true"]);
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["batch".into(), "--time=1:99".into(), "--wrap".into(), "true".into()],
            2,
            "seconds must be 0-59",
        ),
        (
            vec!["batch".into(), "-N".into(), "4".into(), "--wrap".into(), "true".into()],
            121,
            "has only 1 nodes",
        ),
        (
            vec!["batch".into(), "-c".into(), "64".into(), "--wrap".into(), "true".into()],
            121,
            "--cpus-per-task=64",
        ),
        (
            vec!["batch".into(), "/nonexistent/job.sh".into()],
            2,
            "cannot read the script /nonexistent/job.sh",
        ),
        (vec!["cancel".into(), "999".into()], 1, "job 999 does not exist"),
    ];
    for (args, code, needle) in cases {
        let out = m.cli().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
    let script = m.dir.join("bad.sh");
    std::fs::write(&script, "#!/bin/sh\n#SBATCH --nodes=1\n#SBATCH --frobnicate=3\ntrue\n")
        .unwrap();
    let out = m.cli().args(["batch"]).arg(&script).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.sh:3") && text(&out).contains("frobnicate"), "{}", text(&out));

    // Another user may not cancel root's job.
    let out = Command::new("runuser")
        .args(["-u", "gwtest", "--"])
        .arg(m.gangway_bin())
        .args(["cancel", &kept.to_string()])
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(117), "{}", text(&out));
    assert!(text(&out).contains("belongs to root"), "{}", text(&out));

    // An agent with the wrong key, or for a node the configuration lacks, is refused clearly.
    let wrong = m.dir.join("wrong.key");
    let _ = gangway().arg("keygen").arg(&wrong).output().unwrap();
    let right = m.dir.join("key");
    let cases = [
        // Sockets of their own: node1's agent answers on the default one.
        (
            &wrong,
            [
                "--port",
                "7719",
                "--name",
                "node1",
                "--socket",
                "/tmp/wrong1.sock",
                "--spool",
                "/tmp/spool-b",
            ],
            "do not share the same key",
        ),
        (
            &right,
            [
                "--port",
                "7720",
                "--name",
                "node9",
                "--socket",
                "/tmp/wrong2.sock",
                "--spool",
                "/tmp/spool-c",
            ],
            "node 'node9' is in no partition",
        ),
    ];
    for (key, extra, needle) in cases {
        // Bounded: an agent that is never answered would retry forever.
        let child = m
            .agent_command(1, key)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let done = crate::support::wait_bounded(child);
        assert_eq!(done.code(), 1, "{extra:?}: {}", done.stderr);
        assert!(done.stderr.contains(needle), "{extra:?}: {}", done.stderr);
    }

    // Nothing was lost: the held job is still there, the node still idle and registered.
    assert_eq!(m.job(kept)["state"], "PENDING");
    assert_eq!(m.job(kept)["reason"], "Held");
    assert!(m.cli_out(&["release", &kept.to_string()]).status.success());
    m.wait_done(&[kept], Duration::from_secs(20));
    assert_eq!(m.job(kept)["state"], "COMPLETED");
}

#[test]
fn jobs_run_as_their_user_in_the_submit_directory() {
    let Some(m) = Managed::up(1) else { return };
    let home = m.dir.join("gwtest-work");
    std::fs::create_dir_all(&home).unwrap();
    let status = Command::new("chown").arg("gwtest:").arg(&home).status().unwrap();
    assert!(status.success());
    let uid = String::from_utf8(Command::new("id").args(["-u", "gwtest"]).output().unwrap().stdout)
        .unwrap();
    let groups =
        String::from_utf8(Command::new("id").args(["-G", "gwtest"]).output().unwrap().stdout)
            .unwrap();
    let out = Command::new("runuser")
        .args(["-u", "gwtest", "--"])
        .arg(m.gangway_bin())
        .args(["batch", "--parsable", "--wrap", "id -u; id -G; pwd"])
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .current_dir(&home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    m.wait_done(&[id], Duration::from_secs(20));
    let file = home.join(format!("gangway-{id}.out"));
    let got = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines, [uid.trim(), groups.trim(), home.to_str().unwrap()], "{got}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().uid().to_string(),
        uid.trim(),
        "the output file is the user's"
    );
    assert_eq!(m.job(id)["user"], "gwtest");
}

#[test]
fn a_run_job_with_requeue_runs_again_elsewhere_when_its_node_dies() {
    let Some(m) = Managed::up(3) else { return };
    let script =
        "echo RUN $GANGWAY_RESTART_COUNT $(hostname); [ $GANGWAY_RESTART_COUNT -gt 0 ] || sleep 60";
    let child = m
        .cli()
        .args(["run", "--requeue", "-N", "1", "-n", "1", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut node = String::new();
    wait_until("the job running", Duration::from_secs(20), || {
        let out = m.cli_out(&["queue", "--json"]);
        let q: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(n) =
            q.iter().find(|j| j["state"] == "RUNNING").and_then(|j| j["nodes"][0].as_str())
        {
            node = n.to_string();
        }
        !node.is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(m.vc.ctl(&["kill", &node]).status.success());
    let done = crate::support::wait_bounded(child);
    assert_eq!(done.code(), 0, "{}{}", done.stdout, done.stderr);
    let runs: Vec<&str> = done.stdout.lines().filter(|l| l.starts_with("RUN")).collect();
    assert_eq!(runs.len(), 2, "{}", done.stdout);
    assert_eq!(runs[0], format!("RUN 0 {node}"));
    assert!(runs[1].starts_with("RUN 1 node") && !runs[1].ends_with(&node), "{runs:?}");
    assert!(done.stderr.contains("requeued after a node was lost: attempt 2"), "{}", done.stderr);
}
