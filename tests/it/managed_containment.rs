//! Managed jobs in the agents' cgroups (`src/agent/cgroups.rs`): a step over its job's `--mem`
//! (or its own) is OOM-killed, named with its limit (a `run` job ends `OUT_OF_MEMORY`), a rank
//! widening its affinity stays in the job's grant, a `setsid` daemon a job leaves is gone after
//! the job, after a cancel and after `kill -9` of the agent (its fencer empties the job
//! cgroups), and what a step used is shown by `show job` and `history`. A `gangway run` job's
//! one step runs in the job's cgroup itself.
//! On virtual clusters, as root (skipped loudly otherwise).

use std::process::Stdio;
use std::time::Duration;

use crate::controlled::{Managed, text};
use crate::support::{host_children, program, wait_until};

const MIB: f64 = (1u64 << 20) as f64;

/// The daemon the jobs leave: `spawn_children` (started with `setsid`) forks a child, a
/// setsid child and a double-forked orphan, none in the job's session (so no session-based
/// kill reaches them), all ignoring SIGTERM; these are their names.
const DAEMON_COMMS: [&str; 4] = ["gw-spawner", "gw-pgroup-kid", "gw-setsid-kid", "gw-orphan"];

fn daemon_script(then: &str) -> String {
    format!(
        "#!/bin/sh\nsetsid {} /tmp/daemon-pids --ignore-term --lifetime 120 >/dev/null 2>&1 &\nsleep 1\n{then}\n",
        program("spawn_children").display()
    )
}

/// How many of the daemon's processes live on node1.
fn daemons(m: &Managed) -> usize {
    let out = m.vc.ctl(&["exec", "node1", "ps", "-e", "-o", "stat=,comm="]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with('Z')
                && l.split_whitespace().nth(1).is_some_and(|c| DAEMON_COMMS.contains(&c))
        })
        .count()
}

fn submit_script(m: &Managed, name: &str, script: &str, args: &[&str]) -> u64 {
    let path = m.dir.join(name);
    std::fs::write(&path, script).unwrap();
    let mut all: Vec<&str> = args.to_vec();
    let p = path.display().to_string();
    all.push(&p);
    m.submit(&all)
}

#[test]
fn managed_jobs_are_held_to_their_memory_and_cpus_and_accounted() {
    let Some(m) = Managed::up(1) else { return };
    let bin = m.gangway_bin();
    // Over --mem: the step's rank is OOM-killed with a message naming the step and the limit
    // in the job's output; the step is marked, and the job ends as its script does (failed:
    // `gangway run` said 137), as in Slurm.
    let id = m.submit(&[
        "-n",
        "1",
        "--mem=100M",
        "--wrap",
        &format!("{} run {} 300", bin.display(), program("hog").display()),
    ]);
    m.wait_done(&[id], Duration::from_secs(60));
    let out = m.output_of(id);
    // The step's report can reach the controller a moment after the job's end (its proxy may
    // exit after its launcher, the script and the job ended).
    let step_oom = |job: &serde_json::Value| {
        job["usage"].as_array().is_some_and(|u| {
            u.iter().any(|u| {
                u["part"] == "step 0"
                    && u["out_of_memory"].as_str().is_some_and(|m| m.contains("100 MiB"))
            })
        })
    };
    wait_until("the step's OOM report", Duration::from_secs(10), || step_oom(&m.job(id)));
    let job = m.job(id);
    assert_eq!(job["state"], "FAILED", "{job}\n{out}\n{}", m.logs());
    assert!(!out.contains("touched"), "300 MiB under --mem=100M: {out}");
    assert!(
        out.contains("step 0 of job")
            && out.contains("ran out of memory")
            && out.contains("limit of 100 MiB"),
        "the job's output names the step and the limit: {out}"
    );

    // Under its limit the same program's peak is accounted, within 10% of 200 MiB.
    let id = m.submit(&[
        "-n",
        "1",
        "--mem=400M",
        "--wrap",
        &format!("{} run {} 200", bin.display(), program("hog").display()),
    ]);
    m.wait_done(&[id], Duration::from_secs(60));
    let job = m.job(id);
    assert_eq!(job["state"], "COMPLETED", "{job}\n{}", m.output_of(id));
    let usage = job["usage"].as_array().cloned().unwrap_or_default();
    let step = usage
        .iter()
        .find(|u| u["part"] == "step 0")
        .unwrap_or_else(|| panic!("no step 0 usage: {job}"));
    let peak = step["peak_memory"].as_u64().unwrap_or(0) as f64 / MIB;
    assert!((180.0..=220.0).contains(&peak), "step peak {peak:.1} MiB for 200 MiB: {job}");
    // The job's own figure arrives with its release.
    wait_until("the job's usage", Duration::from_secs(10), || {
        m.job(id)["usage"].as_array().is_some_and(|u| u.iter().any(|u| u["part"] == "job"))
    });
    let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
    let max_memory = |line: &str| -> f64 {
        let v = line.split("MaxMemory=").nth(1).unwrap_or_default();
        v.split_whitespace().next().unwrap_or_default().parse().unwrap_or(0.0)
    };
    let job_line = shown.lines().find(|l| l.trim_start().starts_with("TotalCPU=")).unwrap_or("");
    assert!((180.0..=240.0).contains(&max_memory(job_line)), "{shown}");
    let step_line = shown.lines().find(|l| l.contains("Step=step 0")).unwrap_or("");
    assert!((180.0..=220.0).contains(&max_memory(step_line)), "{shown}");
    assert!(shown.contains("Efficiency: CPU "), "{shown}");
    let history = text(&m.cli_out(&["history"]));
    let row = history.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or("");
    assert!(row.contains("MiB"), "history shows the peak: {history}");
    eprintln!("accounted:\n{shown}{history}");

    // A rank widening its affinity to every CPU stays on the job's one CPU.
    let id = m.submit(&[
        "-n",
        "1",
        "--wrap",
        &format!("{} run {} 200", bin.display(), program("widen").display()),
    ]);
    m.wait_done(&[id], Duration::from_secs(60));
    let out = m.output_of(id);
    let job = m.job(id);
    let granted = job["cpu_map"][0][1].as_str().unwrap_or_default().to_string();
    let field = |label: &str| {
        out.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).unwrap_or("").to_string()
    };
    assert_eq!(field("allowed"), granted, "widened beyond the grant: {out}");
    assert_eq!(field("ran"), granted, "{out}");

    // A `gangway run` job of its own: its one step runs in the job's cgroup itself (no step
    // cgroup made and removed on the launch path), held to --mem and named as a step is.
    let hog = program("hog").display().to_string();
    let out = m.cli_out(&["run", "-v", "-n", "1", "--mem=100M", &hog, "300"]);
    let said = text(&out);
    assert!(!out.status.success(), "300 MiB under --mem=100M: {said}");
    // The agent tells the OOM kill on the step's link after the proxy's exit: the launcher
    // waits for it after a failed rank and prints it (it printed only the rank's SIGKILL).
    assert!(
        said.contains("step 0 of job")
            && said.contains("ran out of memory")
            && said.contains("limit of 100 MiB"),
        "the launcher's stderr names the step and the limit: {said}"
    );
    let id: u64 = said
        .split("gangway: job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("-v names the job: {said}"));
    wait_until("the run job out of memory", Duration::from_secs(10), || {
        m.job(id)["state"] == "OUT_OF_MEMORY"
    });
    let reason = m.job(id)["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("step 0") && reason.contains("100 MiB"), "{reason}");
    let history = m.cli_out(&["history"]);
    assert!(text(&history).contains("OUT_OF_MEMORY"), "{}", text(&history));
    let out = m.cli_out(&["run", "-n", "1", "cat", "/proc/self/cgroup"]);
    let own = text(&out);
    for hierarchy in [":memory:", ":freezer:"] {
        let line = own.lines().find(|l| l.contains(hierarchy)).unwrap_or_default();
        assert!(line.contains("/job_") && !line.contains("step_"), "{hierarchy} {own}");
    }
}

/// A step's own `--mem` (`srun --mem` in a job) is its limit inside the job's: over it the
/// step is OOM-killed and named with its limit while the script goes on (in a cgroup made at
/// its launch, and in one made ahead and narrowed), more than the job has is refused, and
/// under it the step runs. The job ends as its script did (Slurm's rule:
/// the state comes from the batch script; the step's line says OUT_OF_MEMORY).
#[test]
fn a_steps_own_memory_is_its_limit_within_the_jobs() {
    let Some(m) = Managed::up(1) else { return };
    let (bin, hog) = (m.gangway_bin().display().to_string(), program("hog").display().to_string());
    let script = format!(
        "#!/bin/sh\n{bin} run -n 1 --mem=50M {hog} 100; echo \"over rc=$?\"\n\
         {bin} run -n 1 --mem=500M true; echo \"refused rc=$?\"\n\
         {bin} run -n 1 --mem-per-cpu=150M {hog} 100; echo \"under rc=$?\"\n\
         {bin} run -n 1 --mem=50M {hog} 100; echo \"narrowed rc=$?\"\n"
    );
    let id = submit_script(&m, "stepmem.sh", &script, &["-n", "1", "--mem=300M"]);
    m.wait_done(&[id], Duration::from_secs(60));
    let out = m.output_of(id);
    let logs = || format!("{out}\n{}\n{}", m.job(id), m.logs());
    assert!(out.contains("over rc=137"), "100 MiB under the step's 50M: {}", logs());
    assert!(
        out.contains(&format!("step 0 of job {id} on node1 ran out of memory"))
            && out.contains("limit of 50 MiB"),
        "the step and ITS limit are named: {}",
        logs()
    );
    assert!(out.contains("refused rc=121"), "{}", logs());
    assert!(
        out.contains("memory required by the step is not available")
            && out.contains(&format!("job {id} has 300 MiB there")),
        "{}",
        logs()
    );
    assert!(out.contains("under rc=0"), "{}", logs());
    // Step 2's cgroup was made ahead with the job's limits: its launch narrows it to 50M.
    assert!(
        out.contains("narrowed rc=137")
            && out.contains(&format!("step 2 of job {id} on node1 ran out of memory")),
        "{}",
        logs()
    );
    assert_eq!(out.matches("touched 100 MiB").count(), 1, "only the step under its limit: {out}");
    let job = m.job(id);
    assert_eq!(job["state"], "COMPLETED", "the script went on and ended well: {job}");
    let path = m.slurm_path();
    let sacct = || {
        let out = std::process::Command::new("sacct")
            .env("PATH", &path)
            .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
            .env_remove("SLURM_JOB_ID")
            .args(["-j", &id.to_string(), "-P", "-n", "--format", "JobID,State"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        text(&out)
    };
    // The step's report may reach the controller a moment after the job's end.
    wait_until("the steps' OOM in sacct", Duration::from_secs(10), || {
        let lines = sacct();
        lines.contains(&format!("{id}.0|OUT_OF_MEMORY"))
            && lines.contains(&format!("{id}.2|OUT_OF_MEMORY"))
    });
    let lines = sacct();
    assert!(lines.contains(&format!("{id}|COMPLETED")), "{lines}");
    assert!(lines.contains(&format!("{id}.1|COMPLETED")), "{lines}");
    assert_eq!(
        m.job(id)["state"],
        "COMPLETED",
        "a late OOM report of a step leaves the job as it ended"
    );
}

#[test]
fn nothing_a_managed_job_leaves_outlives_it() {
    let Some(mut m) = Managed::up(1) else { return };
    // A job that ends leaving a setsid daemon: gone with the job.
    let id = submit_script(&m, "leave.sh", &daemon_script("exit 0"), &["-n", "1"]);
    wait_until("the daemon running", Duration::from_secs(30), || {
        daemons(&m) >= 3 || m.job(id)["state"] != "RUNNING"
    });
    m.wait_done(&[id], Duration::from_secs(30));
    wait_until("the daemon left by an ended job killed", Duration::from_secs(10), || {
        daemons(&m) == 0
    });

    // Cancelled while its daemon runs: gone.
    let id = submit_script(&m, "cancel.sh", &daemon_script("sleep 120"), &["-n", "1"]);
    wait_until("the daemon running", Duration::from_secs(30), || daemons(&m) >= 3);
    assert!(m.cli_out(&["cancel", &id.to_string()]).status.success());
    m.wait_done(&[id], Duration::from_secs(30));
    wait_until("the daemon of a cancelled job killed", Duration::from_secs(10), || {
        daemons(&m) == 0
    });

    // `kill -9` of the agent: its fencer kills the job's session and empties the job's
    // cgroup, so the daemon that left the session does not outlive the agent either (before
    // the fencer did, it lived until the restarted agent's sweep).
    let id = submit_script(&m, "agent.sh", &daemon_script("sleep 120"), &["-n", "1"]);
    wait_until("the daemon running", Duration::from_secs(30), || daemons(&m) >= 3);
    let nsenter = m.agents[&1].id() as i32;
    let agent = host_children(nsenter)
        .into_iter()
        .find(|p| cmdline(*p).iter().any(|a| a == "agent"))
        .expect("the agent under its nsenter");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    if let Some(mut old) = m.agents.remove(&1) {
        let _ = old.wait();
    }
    wait_until("the fencer emptied the job's cgroup", Duration::from_secs(10), || daemons(&m) == 0);
    m.start_agent(1);
    let _ = m.cli_out(&["cancel", &id.to_string()]);
    m.wait_done(&[id], Duration::from_secs(30));
    let _ = m.cli().args(["queue"]).stdin(Stdio::null()).output();
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn a_managed_job_is_told_its_gpus() {
    // A two-socket hwloc export with two GPUs (a stand-in model: its CPUs are not this
    // machine's, so only the GPU grant matters here).
    let xml =
        crate::support::repo_root().join("topology/tests/data/32em64t-2n8c2t-pci-normalio.xml");
    let setup = crate::controlled::Setup {
        agent_args: vec!["--topology-xml".into(), xml.display().to_string()],
        ..Default::default()
    };
    let Some(m) = Managed::up_with(1, setup) else { return };
    // The job's variables, then a step whose two tasks take one GPU each: the proxy places
    // them among the job's GPUs as its agent told it (on the agent's model), none shared.
    // (`--cpu-bind=none`: the stand-in model's CPUs are not all this machine's.)
    let step = format!(
        "{} run -n 2 --gpus-per-task=1 --gpu-bind=closest --cpu-bind=none sh -c 'echo TASK GPUS=$GANGWAY_GPUS CUDA=$CUDA_VISIBLE_DEVICES'",
        m.gangway_bin().display()
    );
    let id = m.submit(&[
        "-n",
        "2",
        "--gpus-per-task=1",
        "--wrap",
        &format!(
            "echo CUDA=$CUDA_VISIBLE_DEVICES ROCR=$ROCR_VISIBLE_DEVICES GANGWAY_GPUS=$GANGWAY_GPUS; {step}"
        ),
    ]);
    m.wait_done(&[id], Duration::from_secs(30));
    let out = m.output_of(id);
    let job_gpus: Vec<String> = out
        .lines()
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("GANGWAY_GPUS=")))
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    let mut task_gpus: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("TASK "))
        .map(|l| {
            let gpus = l.split_whitespace().find_map(|w| w.strip_prefix("GPUS=")).unwrap_or("");
            let cuda = l.split_whitespace().find_map(|w| w.strip_prefix("CUDA=")).unwrap_or("");
            assert_eq!(gpus, cuda, "numbered by the machine's index here (no device nodes): {l}");
            gpus.to_string()
        })
        .collect();
    task_gpus.sort();
    let mut want = job_gpus.clone();
    want.sort();
    assert_eq!(task_gpus, want, "one GPU each, the job's, none shared: {out}\n{}", m.logs());
    let line = out.lines().find(|l| l.starts_with("CUDA=")).unwrap_or_default();
    let gpus = line.split_whitespace().next().unwrap_or_default().trim_start_matches("CUDA=");
    let list: Vec<&str> = gpus.split(',').filter(|g| !g.is_empty()).collect();
    assert_eq!(list.len(), 2, "two tasks with one GPU each: {out}\n{}", m.logs());
    assert!(line.contains(&format!("ROCR={gpus}")) && line.contains("GANGWAY_GPUS="), "{out}");
}

/// What a job's script used is reported when the script ends; with the controller killed at
/// that moment the report waits in the agent and is sent again once the agent has registered
/// with the restarted controller (`src/agent/usage.rs`), so `show job` still has it.
#[test]
fn usage_reported_while_the_controller_is_away_is_not_lost() {
    let Some(mut m) = Managed::up(1) else { return };
    let flag = m.dir.join("usage-flag");
    let script = format!(
        "#!/bin/sh\n{} run -n 1 true\nwhile [ ! -e {f} ]; do sleep 0.05; done\n",
        m.gangway_bin().display(),
        f = flag.display()
    );
    let id = submit_script(&m, "away.sh", &script, &["-n", "1"]);
    let parts = |m: &Managed| -> Vec<String> {
        let job = m.job(id);
        let usage = job["usage"].as_array().cloned().unwrap_or_default();
        usage.iter().filter_map(|u| u["part"].as_str().map(String::from)).collect()
    };
    wait_until("the step's usage", Duration::from_secs(30), || {
        parts(&m).iter().any(|p| p == "step 0")
    });
    m.kill_controller();
    // The script ends (and its figures are read) while no controller listens; back within
    // the agent's lease, so the job is not fenced meanwhile.
    std::fs::write(&flag, "").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    m.start_controller();
    m.wait_done(&[id], Duration::from_secs(30));
    assert_eq!(m.job(id)["state"], "COMPLETED", "{}\n{}", m.job(id), m.logs());
    wait_until("the script's usage", Duration::from_secs(10), || {
        parts(&m).iter().any(|p| p == "batch")
    });
    let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
    assert!(shown.contains("Step=batch") && shown.contains("Step=step 0"), "{shown}");
}
