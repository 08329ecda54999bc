//! Job dependencies end to end on a virtual cluster, driven the way a Slurm user writes a
//! pipeline: `jid=$(sbatch --parsable a.sh)`, then `sbatch -d afterok:$jid b.sh` and the rest,
//! through the `sbatch`/`squeue`/`scontrol` symlinks. The controller is killed (-9) and started
//! again while the pipeline waits; what the scripts printed, and in which order, is checked.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::controlled::{Managed, text};

/// Runs `script` with bash in `work`, the Slurm-named commands first on its PATH.
fn shell(m: &Managed, work: &Path, script: &str) -> Output {
    let path = m.slurm_path();
    Command::new("bash")
        .args(["-c", script])
        .env("PATH", path)
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .env_remove("SLURM_JOB_ID")
        .env_remove("GANGWAY_JOB_ID")
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The ids in `Submitted batch job N` lines, in order.
fn submitted(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Submitted batch job ")?.trim().parse().ok())
        .collect()
}

#[test]
fn a_slurm_pipeline_waits_for_afterok_never_runs_afternotok_and_keeps_singletons_apart() {
    let Some(mut m) = Managed::up_as(1, Some("core:4 pu:1")) else { return };
    let work = m.dir.join("pipeline");
    std::fs::create_dir_all(&work).unwrap();
    let write = |name: &str, body: &str| std::fs::write(work.join(name), body).unwrap();
    write(
        "a.sh",
        "#!/bin/bash\n#SBATCH -t 5\necho \"a start $SLURM_JOB_ID\" >> order.log\nsleep 4\necho 'a end' >> order.log\n",
    );
    write(
        "b.sh",
        "#!/bin/bash\necho \"b $SLURM_JOB_ID ran after $SLURM_JOB_DEPENDENCY\" >> order.log\n",
    );
    write("c.sh", "#!/bin/bash\necho 'c ran, it never should' >> order.log\n");
    write(
        "solo.sh",
        "#!/bin/bash\n#SBATCH -J solo\n#SBATCH -d singleton\necho \"start $SLURM_JOB_ID\" >> solo.log\nsleep 1\necho \"end $SLURM_JOB_ID\" >> solo.log\n",
    );
    let out = shell(
        &m,
        &work,
        r#"set -e
jid=$(sbatch --parsable a.sh)
echo "Submitted batch job $jid"
sbatch -d afterok:$jid b.sh
sbatch --dependency=afternotok:$jid c.sh
sbatch -d afternotok:$jid --kill-on-invalid-dep=yes -J doomed c.sh
for i in 1 2 3; do sbatch solo.sh; done
sbatch --test-only b.sh
"#,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}\n{}", m.logs());
    let ids = submitted(&t);
    let [a, b, c, doomed, ref solos @ ..] = ids[..] else { panic!("{t}") };
    assert_eq!(solos.len(), 3, "{t}");
    // Slurm's --test-only line, and nothing submitted by it (the next id is still free).
    let next = solos[2] + 1;
    let line = format!("sbatch: Job {next} to start at ");
    assert!(
        t.lines().any(|l| l.starts_with(&line)
            && l.ends_with("using 1 processors on nodes node1 in partition batch")),
        "{t}"
    );
    // Unknown jobs are refused, with the id named.
    let refused = shell(&m, &work, "sbatch -d afterok:99999 b.sh");
    assert!(!refused.status.success());
    assert!(text(&refused).contains("job 99999 does not exist"), "{}", text(&refused));

    // b waits for a with the reason Slurm gives; a controller killed with -9 and started
    // again still knows it.
    let reason = shell(&m, &work, &format!("squeue -h -j {b} -o %r"));
    assert_eq!(text(&reason).trim(), "Dependency", "{}", m.logs());
    m.kill_controller();
    m.start_controller();
    m.wait_done(&[a, b, doomed], Duration::from_secs(40));
    m.wait_done(solos, Duration::from_secs(30));

    let order = std::fs::read_to_string(work.join("order.log")).unwrap_or_default();
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(
        lines,
        [format!("a start {a}"), "a end".into(), format!("b {b} ran after afterok:{a}")],
        "{order}\n{}",
        m.logs()
    );
    assert_eq!(m.job(b)["state"], "COMPLETED");
    // afternotok of a job that succeeded: pending for good, or cancelled when asked to be.
    let c_state = shell(&m, &work, &format!("squeue -h -j {c} -o '%T %r'"));
    assert_eq!(text(&c_state).trim(), "PENDING DependencyNeverSatisfied");
    let shown = text(&shell(&m, &work, &format!("scontrol show job {c}")));
    assert!(shown.contains(&format!("Dependency=afternotok:{a}(failed)")), "{shown}");
    let d = m.job(doomed);
    assert_eq!(
        (d["state"].as_str(), d["reason"].as_str()),
        (Some("CANCELLED"), Some("DependencyNeverSatisfied"))
    );

    // singleton: one `solo` of this user at a time, in submission order.
    let solo = std::fs::read_to_string(work.join("solo.log")).unwrap_or_default();
    let expected: Vec<String> =
        solos.iter().flat_map(|s| [format!("start {s}"), format!("end {s}")]).collect();
    assert_eq!(solo.lines().collect::<Vec<_>>(), expected, "{solo}");
    // srun as a job of its own takes -d too: at once after a job that completed, cancelled
    // (exit code 118) when it never can be met and --kill-on-invalid-dep says so.
    let ran = shell(&m, &work, &format!("srun -d afterok:{a} -J after-a echo srun ran"));
    assert_eq!(text(&ran).trim(), "srun ran", "{}", text(&ran));
    let never = shell(&m, &work, &format!("srun -d afternotok:{a} --kill-on-invalid-dep=yes true"));
    assert_eq!(never.status.code(), Some(118), "{}", text(&never));
    assert!(text(&never).contains("DependencyNeverSatisfied"), "{}", text(&never));
    let test_only = shell(&m, &work, "salloc --test-only -n 2");
    assert!(
        text(&test_only).contains("using 2 processors on nodes node1 in partition batch"),
        "{}",
        text(&test_only)
    );
    let cancelled = m.cli_out(&["cancel", &c.to_string()]);
    assert!(cancelled.status.success(), "{}", text(&cancelled));
}

/// `afterok` on a whole array and `aftercorr` task by task, as a Slurm user chains arrays:
/// the order is read from the timestamps the scripts themselves wrote.
#[test]
fn afterok_waits_for_every_task_and_aftercorr_for_each_partner() {
    let Some(m) = Managed::up_as(1, Some("core:4 pu:1")) else { return };
    let work = m.dir.join("arrays");
    std::fs::create_dir_all(&work).unwrap();
    let write = |name: &str, body: &str| std::fs::write(work.join(name), body).unwrap();
    // Task i runs i seconds, so task 1 ends first and 3 last.
    let stamp = "$(date +%s%N)";
    write(
        "a.sh",
        &format!(
            "#!/bin/bash\nsleep $SLURM_ARRAY_TASK_ID\necho \"a $SLURM_ARRAY_TASK_ID {stamp}\" >> t.log\n"
        ),
    );
    write("b.sh", &format!("#!/bin/bash\necho \"b 0 {stamp}\" >> t.log\n"));
    write("c.sh", &format!("#!/bin/bash\necho \"c $SLURM_ARRAY_TASK_ID {stamp}\" >> t.log\n"));
    let out = shell(
        &m,
        &work,
        r#"set -e
A=$(sbatch --parsable --array=1-3 a.sh)
echo "Submitted batch job $A"
sbatch -d afterok:$A b.sh
sbatch -d aftercorr:$A --array=1-3 c.sh
"#,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}\n{}", m.logs());
    let [_, b, c] = submitted(&t)[..] else { panic!("{t}") };
    crate::support::wait_until("b and c's tasks", Duration::from_secs(40), || {
        [b, c].iter().all(|id| m.job(*id)["state"] == "COMPLETED")
    });
    let log = std::fs::read_to_string(work.join("t.log")).unwrap_or_default();
    let at = |who: &str, i: u32| -> u128 {
        let prefix = format!("{who} {i} ");
        let line = log.lines().find(|l| l.starts_with(&prefix));
        line.and_then(|l| l[prefix.len()..].trim().parse().ok())
            .unwrap_or_else(|| panic!("{who} {i}: {log}"))
    };
    let last_a = (1..=3).map(|i| at("a", i)).max().unwrap();
    assert!(at("b", 0) > last_a, "b ran before every task of a ended:\n{log}");
    for i in 1..=3 {
        assert!(at("c", i) > at("a", i), "c_{i} ran before a_{i} ended:\n{log}");
    }
    // Task by task, not all at the end: c_1 ran before a_3 ended.
    assert!(at("c", 1) < at("a", 3), "aftercorr waited for the whole array:\n{log}");
}
