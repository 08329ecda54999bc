//! The Slurm-named commands on a virtual cluster: a batch script written like an HPC centre's
//! template (reads `SLURM_*`, calls `srun` for an MPICH program across three nodes) submitted
//! through the `sbatch` symlink, and squeue/sinfo/scontrol/scancel/sacct against the running
//! cluster. Real controller, agents, MPICH.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::controlled::{Managed, text};
use crate::support::{Live, ofi_hello, wait_until};

/// `command args` (an `-i` report) until `line` has come twice, then Ctrl-C: it must end by
/// that signal, as Slurm's commands do. Its output lines.
fn iterated(m: &Managed, path: &str, command: &str, args: &[&str], line: &str) -> Vec<String> {
    let live = Live::start(&mut slurm_command(m, path, command, args));
    live.expect(line, 2);
    live.signal(nix::sys::signal::Signal::SIGINT);
    let (status, lines, stderr) = live.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGINT),
        "{command} {args:?}: {status:?} {stderr}"
    );
    lines
}

fn slurm_command(m: &Managed, path: &str, command: &str, args: &[&str]) -> Command {
    let mut c = m.cli();
    c.env("PATH", path).env_remove("SLURM_JOB_ID");
    // The symlink's name is what picks the command: run it through PATH, as a user would.
    let mut sh = Command::new(command);
    sh.envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(&m.dir)
        .args(args)
        .stdin(Stdio::null());
    sh
}

fn slurm(m: &Managed, path: &str, command: &str, args: &[&str]) -> std::process::Output {
    slurm_command(m, path, command, args).output().unwrap()
}

#[test]
fn an_hpc_centre_template_runs_unchanged_through_sbatch_and_srun() {
    let Some((hello, lib)) = ofi_hello() else { return };
    let Some(m) = Managed::up_as(3, Some("core:4 pu:1")) else { return };
    let path = m.slurm_path();
    let work = m.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        r#"#!/bin/bash
#SBATCH --job-name=hybrid
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=2
#SBATCH --time=00:10:00
#SBATCH --output=slurm-%j.out

# what a site's `module load mpich` would set
export LD_LIBRARY_PATH={lib}
export MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp

cd $SLURM_SUBMIT_DIR
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
echo "job=$SLURM_JOB_ID id2=$SLURM_JOBID name=$SLURM_JOB_NAME nodelist=$SLURM_JOB_NODELIST nnodes=$SLURM_JOB_NUM_NODES"
echo "ntasks=$SLURM_NTASKS tpn=$SLURM_TASKS_PER_NODE ntpn=$SLURM_NTASKS_PER_NODE cpt=$SLURM_CPUS_PER_TASK cpn=$SLURM_JOB_CPUS_PER_NODE"
echo "part=$SLURM_JOB_PARTITION cluster=$SLURM_CLUSTER_NAME restarts=${{SLURM_RESTART_COUNT:-0}} nodeid=$SLURM_NODEID host=$SLURM_SUBMIT_HOST"
echo "pwd=$(pwd) submit=$SLURM_SUBMIT_DIR omp=$OMP_NUM_THREADS"
srun --mpi=pmi2 {hello}
srun -l --exact bash -c 'echo "task $SLURM_PROCID local $SLURM_LOCALID node $SLURM_NODEID step $SLURM_STEP_ID of $SLURM_STEP_NUM_TASKS omp $OMP_NUM_THREADS on $(hostname)"' | sort
"#,
        lib = lib.display(),
        hello = hello.display()
    );
    std::fs::write(work.join("job.sh"), script).unwrap();
    let out = {
        let mut c = Command::new("sbatch");
        c.env("PATH", &path)
            .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
            .current_dir(&work)
            .arg("job.sh")
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let id: u64 = t.trim().strip_prefix("Submitted batch job ").unwrap().parse().unwrap();
    m.wait_done(&[id], Duration::from_secs(90));
    let printed = std::fs::read_to_string(work.join(format!("slurm-{id}.out"))).unwrap_or_default();
    let expect = [
        format!("job={id} id2={id} name=hybrid nodelist=node[1-3] nnodes=3"),
        "ntasks=6 tpn=2(x3) ntpn=2 cpt=2 cpn=4(x3)".to_string(),
        format!("part=batch cluster=it restarts=0 nodeid=0 host={}", hostname()),
        format!("pwd={w} submit={w} omp=2", w = work.display()),
        "allreduce sum = 21 (expected 21)".to_string(),
    ];
    for e in &expect {
        assert!(printed.contains(e.as_str()), "missing {e:?} in:\n{printed}\n{}", m.logs());
    }
    for r in 0..6 {
        assert!(
            printed.contains(&format!("hello from rank {r} of 6 on node{}", r / 2 + 1)),
            "{printed}"
        );
        // Step 0 was the MPI program; this one is step 1.
        let line = format!(
            "{r}: task {r} local {} node {} step 1 of 6 omp 2 on node{}",
            r % 2,
            r / 2,
            r / 2 + 1
        );
        assert!(printed.contains(&line), "missing {line:?} in:\n{printed}");
    }
    assert_eq!(m.job(id)["state"], "COMPLETED", "{printed}");

    // sacct: the job and its batch script, parsable.
    let out = slurm(
        &m,
        &path,
        "sacct",
        &[
            "-j",
            &id.to_string(),
            "-P",
            "--format",
            "JobID,JobName,State,ExitCode,NodeList,AllocCPUS",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(
        t,
        format!(
            "JobID|JobName|State|ExitCode|NodeList|AllocCPUS\n{id}|hybrid|COMPLETED|0:0|node[1-3]|12\n{id}.batch|batch|COMPLETED|0:0|node1|4\n{id}.0|{hello}|COMPLETED|0:0|node[1-3]|12\n{id}.1|bash|COMPLETED|0:0|node[1-3]|12\n",
            hello = hello.file_name().unwrap().to_string_lossy()
        )
    );
}

fn hostname() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

#[test]
fn squeue_sinfo_scontrol_scancel_and_sacct_against_a_running_cluster() {
    let Some(m) = Managed::up(2) else { return };
    let path = m.slurm_path();
    let out = slurm(
        &m,
        &path,
        "sbatch",
        &["--parsable", "-N", "1", "-J", "sleeper", "--wrap", "sleep 60"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    wait_until("the job running", Duration::from_secs(20), || {
        let out = slurm(&m, &path, "squeue", &["-h", "-j", &id.to_string(), "-o", "%T"]);
        String::from_utf8_lossy(&out.stdout).trim() == "RUNNING"
    });
    let out = slurm(&m, &path, "squeue", &["-o", "%i|%j|%T|%D|%R", "-u", "root"]);
    assert_eq!(
        text(&out),
        format!("JOBID|NAME|STATE|NODES|NODELIST(REASON)\n{id}|sleeper|RUNNING|1|node1\n")
    );
    let out = slurm(&m, &path, "squeue", &[]);
    let t = text(&out);
    assert!(
        t.starts_with(
            "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)\n"
        ),
        "{t}"
    );
    assert!(t.contains(&format!("{id:>18}     batch  sleeper     root  R ")), "{t}");
    let out = slurm(&m, &path, "squeue", &["-t", "PD", "-h"]);
    assert_eq!(text(&out), "");

    let out = slurm(&m, &path, "sinfo", &[]);
    let t = text(&out);
    assert!(t.contains("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST"), "{t}");
    assert!(
        t.contains("batch        up   infinite      1    mix node1")
            || t.contains("batch        up   infinite      1  alloc node1"),
        "{t}"
    );
    assert!(t.contains("batch        up   infinite      1   idle node2"), "{t}");
    let out = slurm(&m, &path, "sinfo", &["-N", "-h", "-o", "%N %t"]);
    let t = text(&out);
    assert!(t.contains("node2 idle"), "{t}");
    let out = slurm(&m, &path, "sinfo", &["-N", "-h", "-S", "-N", "-o", "%N"]);
    assert_eq!(text(&out), "node2\nnode1\n");
    let out = slurm(&m, &path, "sinfo", &["-N", "-n", "node2", "-O", "NodeList:9,StateLong"]);
    assert_eq!(text(&out), "NODELIST STATE\nnode2    idle\n");
    // -h: no date line; each report still ends with a blank line, as Slurm's.
    let sinfo = ["-i", "1", "-h", "-N", "-n", "node2", "-o", "%N"];
    let lines = iterated(&m, &path, "sinfo", &sinfo, "node2");
    assert!(lines.len() >= 4 && lines.chunks(2).all(|r| r == ["node2", ""]), "{lines:?}");

    let out = slurm(&m, &path, "scontrol", &["show", "job", &id.to_string()]);
    let t = text(&out);
    assert!(t.starts_with(&format!("JobId={id} JobName=sleeper\n")), "{t}");
    assert!(t.contains("JobState=RUNNING") && t.contains("NodeList=node1"), "{t}");
    let out = slurm(&m, &path, "scontrol", &["show", "partition"]);
    assert!(text(&out).contains("PartitionName=batch\n"), "{}", text(&out));

    // Requeued: ended on its node, then running again as its second attempt.
    let out = slurm(&m, &path, "scontrol", &["requeue", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the second attempt running", Duration::from_secs(20), || {
        let out = slurm(&m, &path, "scontrol", &["show", "job", &id.to_string()]);
        let t = text(&out);
        t.contains("JobState=RUNNING") && t.contains("Restarts=1")
    });

    // Unsupported, refused by name before anything is asked.
    let out = slurm(&m, &path, "scancel", &["--bogus", &id.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("scancel: error: unrecognized option '--bogus'"), "{}", text(&out));
    let out = slurm(&m, &path, "sbatch", &["--licenses=matlab:1", "--wrap", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("--licenses is a Slurm option gangway does not support yet"),
        "{}",
        text(&out)
    );

    // A held job: renamed and given a shorter limit with scontrol, then released and cancelled.
    let out = slurm(
        &m,
        &path,
        "sbatch",
        &["--parsable", "-H", "-N", "1", "-J", "later", "--wrap", "sleep 60"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let held = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = slurm(
        &m,
        &path,
        "scontrol",
        &["update", &format!("JobId={held}"), "TimeLimit=5", "JobName=renamed"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = slurm(&m, &path, "squeue", &["-h", "-j", &held, "-o", "%j %l %T"]);
    assert_eq!(text(&out), "renamed 5:00 PENDING\n");
    let out = slurm(&m, &path, "scontrol", &["update", &format!("JobId={held}"), "Partition=nope"]);
    assert_eq!(out.status.code(), Some(121), "{}", text(&out));

    // Sorted as Slurm sorts: by default pending (PD) before running (R); -S as asked.
    let out = slurm(&m, &path, "squeue", &["-h", "-o", "%i|%t"]);
    assert_eq!(text(&out), format!("{held}|PD\n{id}|R\n"));
    let out = slurm(&m, &path, "squeue", &["-h", "-S", "-t,i", "-o", "%i|%t"]);
    assert_eq!(text(&out), format!("{id}|R\n{held}|PD\n"));
    // Every second until interrupted: each report dated and followed by a blank line; SIGINT
    // ends it as it ends Slurm's squeue.
    let lines = iterated(&m, &path, "squeue", &["-i", "1", "-S", "i", "-o", "%i|%t"], "JOBID|ST");
    // A bad filter is the same every time: refused once, not reported every second.
    let out = slurm(&m, &path, "squeue", &["-i", "1", "-w", "node[3-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("node[3-"), "{}", text(&out));
    assert!(lines.len() >= 10 && lines.len().is_multiple_of(5), "{lines:?}");
    for report in lines.chunks(5) {
        let date = report[0].split(' ').collect::<Vec<_>>();
        assert!(date.len() == 5 && date[3].len() == 8, "Slurm's date line: {lines:?}");
        let want = ["JOBID|ST".to_string(), format!("{id}|R"), format!("{held}|PD"), String::new()];
        assert_eq!(report[1..], want, "{lines:?}");
    }
    let out = slurm(&m, &path, "scancel", &[&held]);
    assert!(out.status.success(), "{}", text(&out));

    // scancel by name and state: silent, and the job ends CANCELLED.
    let out = slurm(&m, &path, "scancel", &["-n", "sleeper", "-t", "RUNNING"]);
    assert!(out.status.success() && text(&out).is_empty(), "{}", text(&out));
    m.wait_done(&[id], Duration::from_secs(20));
    let out =
        slurm(&m, &path, "sacct", &["-j", &id.to_string(), "-X", "-n", "-P", "-o", "JobID,State"]);
    // As Slurm's: who cancelled it, by uid.
    assert_eq!(text(&out), format!("{id}|CANCELLED by {}\n", nix::unistd::getuid()));
    // -D: its first attempt too, which the requeue ended; -L (all clusters) is this one.
    let out = slurm(
        &m,
        &path,
        "sacct",
        &[
            "-j",
            &id.to_string(),
            "-D",
            "-L",
            "-X",
            "-n",
            "-P",
            "-o",
            "JobID,State,Restarts,NodeList",
        ],
    );
    let t = text(&out);
    let attempts: Vec<&str> = t.lines().collect();
    assert_eq!(attempts.len(), 2, "{t}");
    assert_eq!(attempts[0], format!("{id}|REQUEUED|0|node1"), "{t}");
    let uid = nix::unistd::getuid();
    assert!(attempts[1].starts_with(&format!("{id}|CANCELLED by {uid}|1|node")), "{t}");
    let out = slurm(&m, &path, "sacct", &["-j", &id.to_string(), "--units=X"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--units=X: write one of K, M, G, T, P"), "{}", text(&out));

    // srun outside any job: a job of its own; salloc: a shell holding nodes, srun inside a step.
    let out = slurm(&m, &path, "srun", &["-N", "2", "-n", "2", "-l", "hostname"]);
    let mut lines: Vec<String> = text(&out).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["0: node1", "1: node2"], "{}", text(&out));
    let inside = "echo nodes=$SLURM_JOB_NUM_NODES list=$SLURM_NODELIST; srun -l sh -c 'echo $SLURM_PROCID/$SLURM_STEP_NUM_TASKS' | sort";
    let out = slurm(&m, &path, "salloc", &["-N", "2", "-Q", "--", "sh", "-c", inside]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nodes=2 list=node[1-2]\n0: 0/2\n1: 1/2\n",
        "{}",
        text(&out)
    );

    // SLURM_TASK_PID: the batch script's own pid.
    let out = slurm(
        &m,
        &path,
        "sbatch",
        &["--parsable", "-o", "taskpid.out", "--wrap", "echo \"$SLURM_TASK_PID $$\""],
    );
    assert!(out.status.success(), "{}", text(&out));
    let job: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    m.wait_done(&[job], Duration::from_secs(20));
    let printed = std::fs::read_to_string(m.dir.join("taskpid.out")).unwrap_or_default();
    let pids: Vec<&str> = printed.split_whitespace().collect();
    assert!(
        pids.len() == 2 && pids[0] == pids[1] && pids[0].parse::<u32>().is_ok(),
        "{printed:?}\n{}",
        m.logs()
    );
}

#[test]
fn mpiexec_hydra_inside_a_job_starts_its_proxies_through_gangways_srun() {
    let Some(m) = Managed::up(3) else { return };
    let path = m.slurm_path();
    // Hydra sees SLURM_JOBID, reads the nodes from SLURM_NODELIST and runs `srun ... proxy`.
    let script = "mpiexec.hydra -n 3 hostname | sort";
    let out = slurm(&m, &path, "sbatch", &["--parsable", "-N", "3", "-n", "3", "--wrap", script]);
    assert!(out.status.success(), "{}", text(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    m.wait_done(&[id], Duration::from_secs(60));
    assert_eq!(m.output_of(id), "node1\nnode2\nnode3\n", "{}", m.logs());
    assert_eq!(m.job(id)["state"], "COMPLETED");
}

#[test]
fn open_mpi_mpirun_inside_a_job_starts_its_daemons_on_the_right_nodes_through_srun() {
    let found = Command::new("mpirun").arg("--version").stdout(Stdio::null()).status();
    if !found.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: no mpirun (apt-get install openmpi-bin)");
        return;
    }
    let Some(m) = Managed::up(3) else { return };
    let path = m.slurm_path();
    // mpirun runs `srun --nodelist=node2,node3 ... orted`: the step must land on those nodes.
    let script = "mpirun --allow-run-as-root -n 3 hostname > o.txt 2>&1; echo rc=$?; sort o.txt";
    let out = slurm(&m, &path, "sbatch", &["--parsable", "-N", "3", "-n", "3", "--wrap", script]);
    assert!(out.status.success(), "{}", text(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    m.wait_done(&[id], Duration::from_secs(60));
    assert_eq!(m.output_of(id), "rc=0\nnode1\nnode2\nnode3\n", "{}", m.logs());
}

#[test]
fn srun_and_salloc_jobs_take_signal_mail_constraint_and_open_mode() {
    let mail_dir = crate::support::scratch();
    let mailed = mail_dir.path().join("mailed");
    let program = mail_dir.path().join("mail");
    std::fs::write(&program, format!("#!/bin/sh\necho \"$*\" >> {}\n", mailed.display())).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let setup = crate::controlled::Setup {
        config: format!(
            "mail_program = \"{}\"\n[node.node2]\nfeatures = [\"ib\"]\n",
            program.display()
        ),
        ..Default::default()
    };
    let Some(m) = Managed::up_with(2, setup) else { return };
    let path = m.slurm_path();
    // The trap ends the wait; the task says when, and where it ran.
    let task = "trap 'echo USR1 on $(hostname) after $SECONDS s' USR1; sleep 20 & wait; echo done";

    // srun, a job of its own: on the node with the feature, warned 3 s before its 6 s limit,
    // mailed at its end, its output appended to across two runs.
    for _ in 0..2 {
        let out = slurm(
            &m,
            &path,
            "srun",
            &["-C", "ib", "-t", "0:06", "--signal=USR1@3", "--mail-type=END"]
                .into_iter()
                .chain(["--mail-user=ann@example.org", "--open-mode=append", "-o", "srun.out"])
                .chain(["bash", "-c", task])
                .collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{}\n{}", text(&out), m.logs());
    }
    let printed = std::fs::read_to_string(m.dir.join("srun.out")).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 4, "two runs appended: {printed}");
    for pair in lines.chunks(2) {
        let secs: u64 = pair[0]
            .strip_prefix("USR1 on node2 after ")
            .and_then(|s| s.strip_suffix(" s"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{printed}"));
        assert!((2..=5).contains(&secs), "warned 3 s before the 6 s limit: {printed}");
        assert_eq!(pair[1], "done", "{printed}");
    }
    wait_until("two end mails", Duration::from_secs(5), || {
        std::fs::read_to_string(&mailed).unwrap_or_default().lines().count() == 2
    });
    let mails = std::fs::read_to_string(&mailed).unwrap();
    assert!(
        mails.lines().all(|l| l.contains("Ended") && l.ends_with("ann@example.org")),
        "{mails}"
    );

    // salloc: the same warning reaches the steps running in the allocation.
    std::fs::write(m.dir.join("task.sh"), task).unwrap();
    let inside = format!("srun bash {}", m.dir.join("task.sh").display());
    let out = slurm(
        &m,
        &path,
        "salloc",
        &["-Q", "--constraint=ib", "-t", "0:06", "--signal=R:USR1@3", "--", "sh", "-c", &inside],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("USR1 on node2 after "), "{}", text(&out));

    // B: has no batch shell to reach; a step refuses the job's own flags by name.
    let out = slurm(&m, &path, "srun", &["--signal=B:USR1@3", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("B: signals a batch job's shell"), "{}", text(&out));
    let mut step = Command::new("srun");
    step.env("PATH", &path)
        .env("GANGWAY_JOB_ID", "999")
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .args(["--signal=USR1@3", "true"])
        .stdin(Stdio::null());
    let out = step.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--signal is for a job of its own"), "{}", text(&out));
}
