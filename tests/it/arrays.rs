//! Job arrays on a virtual cluster, through the Slurm-named commands: an unchanged Slurm-style
//! script with `#SBATCH --array=1-6%2` writing `out_%A_%a.txt`, its tasks' variables, the
//! throttle checked from the tasks' own start and end times, the compact queue line,
//! `scancel` of one task (pending, running) and of the whole array, and a `kill -9` of the
//! controller while tasks run and wait: every task runs, once. Real controller, agents.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::controlled::{Managed, text};
use crate::support::wait_until;

/// A Slurm command through PATH (its name picks it), in `cwd`.
fn slurm(m: &Managed, path: &str, cwd: &Path, command: &str, args: &[&str]) -> String {
    let out = Command::new(command)
        .env("PATH", path)
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .env_remove("SLURM_JOB_ID")
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{command} {args:?}: {t}\n{}", m.logs());
    t
}

/// The queue's lines (`squeue -h -o %i|%T`), as `(id, state)`.
fn queue(m: &Managed, path: &str) -> Vec<(String, String)> {
    slurm(m, path, &m.dir, "squeue", &["-h", "-r", "-o", "%i|%T"])
        .lines()
        .filter_map(|l| l.split_once('|').map(|(a, b)| (a.to_string(), b.to_string())))
        .collect()
}

/// Whether anything of array `id` is still in the queue.
fn array_active(m: &Managed, path: &str, id: u64) -> bool {
    queue(m, path).iter().any(|(label, _)| label.starts_with(&format!("{id}_")))
}

fn submit(m: &Managed, path: &str, work: &Path, script: &str) -> u64 {
    std::fs::write(work.join("job.sh"), script).unwrap();
    let t = slurm(m, path, work, "sbatch", &["job.sh"]);
    t.trim().strip_prefix("Submitted batch job ").unwrap().parse().unwrap()
}

#[test]
fn an_array_script_runs_unchanged_under_its_throttle_cancels_and_survives_a_controller_kill() {
    let Some(mut m) = Managed::up_as(2, Some("core:4 pu:1")) else { return };
    let path = m.slurm_path();
    let work: PathBuf = m.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let id = submit(
        &m,
        &path,
        &work,
        r#"#!/bin/bash
#SBATCH --job-name=sweep
#SBATCH --array=1-6%2
#SBATCH --output=out_%A_%a.txt
#SBATCH --time=00:05:00
echo "array=$SLURM_ARRAY_JOB_ID task=$SLURM_ARRAY_TASK_ID job=$SLURM_JOB_ID count=$SLURM_ARRAY_TASK_COUNT min=$SLURM_ARRAY_TASK_MIN max=$SLURM_ARRAY_TASK_MAX step=$SLURM_ARRAY_TASK_STEP gw=$GANGWAY_ARRAY_TASK_ID"
echo "start $(date +%s.%N)"
sleep 1
echo "end $(date +%s.%N)"
"#,
    );
    // Eight cores are free, but two tasks run at once; the rest wait as one line.
    let lines = slurm(&m, &path, &m.dir, "squeue", &["-h", "-o", "%i"]);
    assert!(
        lines
            .lines()
            .any(|l| l.trim().starts_with(&format!("{id}_[")) && l.trim().ends_with("-6%2]")),
        "{lines}"
    );
    wait_until("the array's six tasks", Duration::from_secs(60), || !array_active(&m, &path, id));
    let mut spans = Vec::new();
    let mut task_ids = Vec::new();
    for i in 1..=6 {
        let out = std::fs::read_to_string(work.join(format!("out_{id}_{i}.txt")))
            .unwrap_or_else(|e| panic!("out_{id}_{i}.txt: {e}\n{}", m.logs()));
        let first = out.lines().next().unwrap_or_default();
        let job: u64 = first
            .split_whitespace()
            .find_map(|w| w.strip_prefix("job="))
            .and_then(|j| j.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert_eq!(
            first,
            format!("array={id} task={i} job={job} count=6 min=1 max=6 step=1 gw={i}"),
            "{out}"
        );
        task_ids.push(job);
        let time = |key: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {out}"))
        };
        spans.push((time("start "), time("end ")));
    }
    task_ids.sort_unstable();
    task_ids.dedup();
    assert_eq!(task_ids.len(), 6, "each task its own job id: {task_ids:?}");
    assert!(!task_ids.contains(&id), "{task_ids:?}");
    // From the tasks' own clocks: never more than two at once, and two did run together.
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0);
    assert_eq!(most, 2, "{spans:?}");
    // sacct lists the finished tasks by array and index.
    let acct = slurm(
        &m,
        &path,
        &m.dir,
        "sacct",
        &["-j", &id.to_string(), "-X", "-P", "-n", "--format", "JobID,State"],
    );
    let want: String = (1..=6).map(|i| format!("{id}_{i}|COMPLETED\n")).collect();
    assert_eq!(acct, want);
    let shown = slurm(&m, &path, &m.dir, "scontrol", &["show", "job", &format!("{id}_4")]);
    assert!(shown.contains(&format!("ArrayJobId={id} ArrayTaskId=4")), "{shown}");
    assert!(shown.contains("COMPLETED"), "{shown}");

    // A long array, one at a time: a pending task and the running one cancelled by index,
    // then the whole array.
    let id = submit(
        &m,
        &path,
        &work,
        "#!/bin/sh\n#SBATCH --array=0-3%1\n#SBATCH -o long_%A_%a.txt\necho task $SLURM_ARRAY_TASK_ID\nexec sleep 60\n",
    );
    let running = |task: &str| {
        queue(&m, &path).iter().any(|(l, s)| *l == format!("{id}_{task}") && s == "RUNNING")
    };
    wait_until("task 0 running", Duration::from_secs(20), || running("0"));
    slurm(&m, &path, &m.dir, "scancel", &[&format!("{id}_2")]);
    slurm(&m, &path, &m.dir, "scancel", &[&format!("{id}_0")]);
    wait_until("task 1 in task 0's place", Duration::from_secs(20), || running("1"));
    let lines: Vec<String> = queue(&m, &path).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, [format!("{id}_3"), format!("{id}_1")], "task 2 never starts");
    slurm(&m, &path, &m.dir, "scancel", &[&id.to_string()]);
    wait_until("the array gone", Duration::from_secs(20), || !array_active(&m, &path, id));
    let acct = slurm(
        &m,
        &path,
        &m.dir,
        "sacct",
        &["-j", &id.to_string(), "-X", "-P", "-n", "--format", "JobID,State"],
    );
    // The two that never started: one line, as sacct shows them.
    // As Slurm's sacct: the throttle in the id, who cancelled them by uid.
    let by = format!("CANCELLED by {}", nix::unistd::getuid());
    assert_eq!(acct, format!("{id}_[2-3%1]|{by}\n{id}_0|{by}\n{id}_1|{by}\n"));
    assert!(!work.join(format!("long_{id}_2.txt")).exists());
    assert!(!work.join(format!("long_{id}_3.txt")).exists());

    // kill -9 of the controller with two tasks running and four waiting: every task runs
    // exactly once (each appends its index to one file).
    let id = submit(
        &m,
        &path,
        &work,
        "#!/bin/sh\n#SBATCH --array=0-5%2\n#SBATCH -o k_%A_%a.txt\necho $SLURM_ARRAY_TASK_ID >> ran.txt\nsleep 2\n",
    );
    wait_until("two tasks running", Duration::from_secs(20), || {
        queue(&m, &path)
            .iter()
            .filter(|(l, s)| l.starts_with(&format!("{id}_")) && s == "RUNNING")
            .count()
            == 2
    });
    m.kill_controller();
    m.start_controller();
    wait_until("the array done after the restart", Duration::from_secs(60), || {
        !array_active(&m, &path, id)
    });
    let ran = std::fs::read_to_string(work.join("ran.txt")).unwrap_or_default();
    let mut indexes: Vec<&str> = ran.lines().collect();
    indexes.sort_unstable();
    assert_eq!(indexes, ["0", "1", "2", "3", "4", "5"], "{ran}\n{}", m.logs());
    let acct = slurm(
        &m,
        &path,
        &m.dir,
        "sacct",
        &["-j", &id.to_string(), "-X", "-P", "-n", "--format", "JobID,State"],
    );
    let want: String = (0..6).map(|i| format!("{id}_{i}|COMPLETED\n")).collect();
    assert_eq!(acct, want);
}
