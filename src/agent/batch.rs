//! Batch scripts: written to the spool as the job's user, started in their own session under
//! the job's identity, CPUs and umask with their output files, never without a lease, on the
//! spawner's threads (`spawner.rs`: the owner task goes on meanwhile, and a script that starts
//! after its job was fenced or released is killed at once); how one ended comes back as an
//! [`Event::ScriptEnded`].

use std::collections::HashMap;
use std::path::PathBuf;

use gangway_launcher::exit_status::RankStatus;
use gangway_launcher::signals::describe;
use tokio::sync::mpsc::UnboundedSender;

use super::cgroups::Part;
use super::events::Event;
use super::fence::{self, Fencing};
use super::jobs::{Answered, LocalJob, ScriptEnd, answered};
use super::options::AgentOptions;
use super::process::{self, BatchOutput, RunAs};
use super::spawner::{Answer, Join, Owner, Start};
use crate::protocol::{FromAgent, JobId, JobLaunch};

/// Where attempt `attempt` of `job`'s script is kept.
pub(super) fn script_path(opts: &AgentOptions, job: JobId, attempt: u32) -> PathBuf {
    opts.spool.join(format!("job{job}.{attempt}.script"))
}

/// Takes a job this node runs a part of; on its first node, asks the spawner to start its batch
/// script (the answer comes as an [`Event::ScriptStarted`], to [`script_started`]).
pub(super) fn start_job(
    launch: JobLaunch,
    owner: Owner<'_>,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    fencing: &mut Fencing,
) {
    let Owner { opts, ev_tx, spawner } = owner;
    let (job, attempt) = (launch.job, launch.attempt);
    if let Some(old) = jobs.get(&job) {
        if old.launch.attempt == attempt {
            return; // already known (a resync after reconnecting)
        }
        if let Some(old) = jobs.remove(&job) {
            release_local(&old, opts, reports, fencing);
        }
    }
    let mut local = LocalJob::new(launch);
    let Some(batch) = local.launch.batch.clone() else {
        // A job without a script (run, alloc) exists for its steps, whose first launch waits
        // for both cgroups, made off the owner task meanwhile.
        if opts.cgroups.is_some() {
            super::steps::prepare_next(&mut local, 0, opts, ev_tx, true);
        }
        jobs.insert(job, local);
        return;
    };
    // Never a script without a lease: the controller may already count this node lost.
    if let Err(why) = fencing.may_start() {
        tracing::warn!(job, reason = %why, "batch script not started");
        fence::mark_fenced_new(&mut local, &why, reports);
        jobs.insert(job, local);
        return;
    }
    let path = script_path(opts, job, attempt);
    let run_as = RunAs::for_job(
        &local.launch.user,
        local.launch.uid,
        local.launch.gid,
        &local.launch.cwd,
        &local.launch.cpus,
        local.launch.umask,
    );
    if let Err(e) =
        write_script(&path, &batch.script, run_as.ids.as_ref().map(|(u, g, _)| (*u, *g)))
    {
        let why = format!("cannot write the script to {}: {e}", path.display());
        not_started(job, jobs, reports, local, why);
        return;
    }
    if !process::dir_exists(&local.launch.cwd) {
        let why =
            format!("the submit directory {} does not exist on {}", local.launch.cwd, opts.name);
        not_started(job, jobs, reports, local, why);
        return;
    }
    let mut env = local.launch.env.clone();
    // This node's agent socket: commands in the script reach the controller as the job's
    // user, vouched for by this agent, with no secret in the environment.
    env.push(("GANGWAY_CONTROLLER".into(), opts.socket.display().to_string()));
    env.push(("GANGWAY_JOB_CPUS".into(), local.launch.cpus.to_string()));
    let confined = opts.cgroups.as_ref().is_some_and(|c| c.confines_devices());
    env.extend(super::cgroups::gpu_env(&local.launch, &opts.topology, confined));
    let out = BatchOutput {
        output: batch.output.clone(),
        error: batch.error.clone(),
        // Slurm's default: a requeued attempt appends to what the earlier ones wrote.
        truncate: batch.append.map_or(attempt == 1, |append| !append),
        marker: batch.marker.clone(),
    };
    let mut program = script_program(&batch.script, &path);
    program.1.extend(batch.args.iter().cloned());
    if env.iter().any(|(k, _)| k == "SLURM_JOB_ID") {
        program = with_task_pid(program);
    }
    // The job's cgroup and its `batch` part are made on the spawner thread, just before the
    // fork (a step launched meanwhile waits for them: `making_cgroup`). A batch job's first
    // step is made at its launch, its next ones ahead: many scripts start no step, and a
    // cgroup made for nothing still costs the kernel its making and removal (each under the
    // global cgroup lock).
    let join = match opts.cgroups.clone() {
        Some(cgroups) => {
            let job_limits = cgroups.job_limits(&local.launch, &opts.topology);
            let limits = cgroups.part_limits(&local.launch, &opts.topology, None);
            local.making_cgroup = Some(Vec::new());
            let made = ev_tx.clone();
            Join::Make(Box::new(move || {
                cgroups.create_job_with(job, attempt, &job_limits);
                let join =
                    cgroups.make_part(job, attempt, Part::Batch, &limits).unwrap_or_default();
                // Before the fork, whose `open` of the output files may block for long.
                let _ = made.send(Event::JobCgroupMade { job, attempt });
                join
            }))
        }
        None => Join::Ready(Vec::new()),
    };
    let start = Start {
        program: program.0,
        args: program.1,
        env,
        run_as,
        batch: Some(out),
        piped: false,
        join,
        what: "the batch script",
        job,
        began: std::time::Instant::now(),
    };
    let answer = spawner.spawn(start);
    let tx = ev_tx.clone();
    tokio::spawn(async move {
        let answer = answer.await;
        let _ = tx.send(Event::ScriptStarted { job, attempt, answer });
    });
    local.starting += 1;
    jobs.insert(job, local);
}

/// A job's record is gone (released, or replaced by a newer attempt): its sessions are ended,
/// and its starts still in flight are waited for before the release is confirmed.
pub(super) fn release_local(
    old: &LocalJob,
    opts: &AgentOptions,
    reports: &mut Vec<FromAgent>,
    fencing: &mut Fencing,
) {
    let (job, attempt) = (old.launch.job, old.launch.attempt);
    for _ in 0..old.starting {
        fencing.await_start(job, attempt);
    }
    let cgroups = opts.cgroups.clone().map(|c| (c, old.launch.memory));
    reports.extend(fencing.release(job, attempt, opts.kill_grace, cgroups));
}

/// A batch script that could not be started: its job ends here with `message`.
fn not_started(
    job: JobId,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    mut local: LocalJob,
    message: String,
) {
    tracing::warn!(job, %message, "batch script not started");
    local.ended = Some((1, Some(message)));
    reports.extend(local.end_report());
    jobs.insert(job, local);
}

/// The spawner answered the start of attempt `attempt` of `job`'s script: the script is guarded
/// and watched, or, if its attempt was fenced or released meanwhile, killed at once.
pub(super) fn script_started(
    (job, attempt, answer): (JobId, u32, Answer),
    owner: Owner<'_>,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    fencing: &mut Fencing,
) {
    let Owner { opts, ev_tx, .. } = owner;
    let verdict = answered(jobs.get(&job), attempt, fencing.may_start());
    let mut held = Vec::new();
    if verdict != Answered::Gone
        && let Some(j) = jobs.get_mut(&job)
    {
        j.starting = j.starting.saturating_sub(1);
        held = j.making_cgroup.take().unwrap_or_default();
    }
    script_answered(verdict, (job, attempt, answer), opts, jobs, reports, ev_tx, fencing);
    // The job's cgroup is made (or the job will not run): the steps that still wait (the
    // cgroup's own event did not come first) go on, or are refused saying why.
    for step in held {
        super::steps::start_proxy(step, owner, jobs, fencing);
    }
}

/// The job's cgroup is made (`Event::JobCgroupMade`): the step launches that waited for it go
/// on (or are refused saying why), while the script's start may still be in flight.
pub(super) fn job_cgroup_made(
    (job, attempt): (JobId, u32),
    owner: Owner<'_>,
    jobs: &mut HashMap<JobId, LocalJob>,
    fencing: &mut Fencing,
) {
    let held = jobs
        .get_mut(&job)
        .filter(|j| j.launch.attempt == attempt)
        .and_then(|j| j.making_cgroup.take())
        .unwrap_or_default();
    for step in held {
        super::steps::start_proxy(step, owner, jobs, fencing);
    }
}

/// [`script_started`] once the verdict is known.
fn script_answered(
    verdict: Answered,
    (job, attempt, answer): (JobId, u32, Answer),
    opts: &AgentOptions,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    let spawned = match (verdict, answer) {
        (Answered::Gone, answer) => {
            let pid = answer.as_ref().ok().map(|s| s.pid);
            let cgroups = opts.cgroups.clone().map(|c| (c, None));
            reports.extend(fencing.late_start(job, attempt, pid, cgroups));
            return;
        }
        (Answered::Fenced, Ok(spawned)) => {
            fencing.fence_started(job, attempt, spawned.pid);
            return;
        }
        (Answered::Fenced, Err(_)) => return,
        (Answered::Refused(why), answer) => {
            if let Ok(spawned) = answer {
                fencing.fence_started(job, attempt, spawned.pid);
            }
            fence::mark_fenced(jobs, job, attempt, &why, reports);
            return;
        }
        (Answered::Keep, Err(e)) => {
            let Some(local) = jobs.remove(&job) else { return };
            let output = local.launch.batch.as_ref().map(|b| b.output.clone()).unwrap_or_default();
            let why = format!("cannot start the script on {}: {e} (output {output})", opts.name);
            not_started(job, jobs, reports, local, why);
            return;
        }
        (Answered::Keep, Ok(spawned)) => spawned,
    };
    let Some(local) = jobs.get_mut(&job) else { return };
    let sid = spawned.pid;
    fencing.guard(job, attempt, sid);
    // First: the script's session is the job's first (a step launched from elsewhere may have
    // started while the script's start was in flight).
    local.sessions.insert(0, sid);
    let tx = ev_tx.clone();
    let mut child = spawned.child;
    let limit = local.launch.memory;
    let cgroups = opts.cgroups.clone();
    let batch = local.launch.batch.as_ref();
    let error_file = batch.map(|b| b.error.clone().unwrap_or_else(|| b.output.clone()));
    tokio::spawn(async move {
        let status = child.wait().await;
        // What the script left in its part is killed now (the job ends with it), and what it
        // used goes ahead of its end, so the controller has both.
        let mut oom = None;
        if let Some(cgroups) = cgroups {
            let used = tokio::task::spawn_blocking(move || {
                cgroups.finish_part(job, attempt, Part::Batch, limit)
            })
            .await;
            if let Ok(Some(usage)) = used {
                oom = usage.out_of_memory.clone();
                let _ = tx.send(Event::Used { job, attempt, usage });
            }
        }
        if let (Some(message), Some(file)) = (&oom, &error_file) {
            super::cgroups::append_error(file, message);
        }
        let (code, message) = match status {
            Ok(s) => match RankStatus::of(s) {
                Some(end @ RankStatus::Signaled(n)) => {
                    (end.shell_code(), Some(format!("the script was killed by {}", describe(n))))
                }
                Some(end) => (end.shell_code(), None),
                None => (1, None),
            },
            Err(e) => (1, Some(e.to_string())),
        };
        let message = oom.or(message);
        let _ = tx.send(Event::ScriptEnded(ScriptEnd { job, attempt, sid, code, message }));
    });
}

/// A script with `#!` runs as itself; one without runs under `/bin/sh`, as sbatch does.
fn script_program(text: &str, path: &std::path::Path) -> (PathBuf, Vec<String>) {
    if text.starts_with("#!") {
        (path.to_owned(), Vec::new())
    } else {
        (PathBuf::from("/bin/sh"), vec![path.display().to_string()])
    }
}

/// Slurm's `SLURM_TASK_PID` in a batch script is the script's own pid, known only once it
/// runs: a `/bin/sh` sets it to its `$$` and execs the script in its place (the same pid).
fn with_task_pid((program, args): (PathBuf, Vec<String>)) -> (PathBuf, Vec<String>) {
    let set = r#"SLURM_TASK_PID=$$; export SLURM_TASK_PID; exec "$0" "$@""#;
    let mut words = vec!["-c".to_string(), set.to_string(), program.display().to_string()];
    words.extend(args);
    (PathBuf::from("/bin/sh"), words)
}

fn write_script(
    path: &std::path::Path,
    text: &str,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_pid_is_the_scripts_own_pid_and_its_words_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for (text, name) in [
            ("#!/bin/sh\necho \"$SLURM_TASK_PID $$ $0 $1|$2\"\n", "with-shebang.sh"),
            ("echo \"$SLURM_TASK_PID $$ $0 $1|$2\"\n", "plain.sh"),
        ] {
            let path = dir.path().join(name);
            write_script(&path, text, None).unwrap();
            let mut program = script_program(text, &path);
            program.1.extend(["a b".to_string(), String::new()]);
            let (program, args) = with_task_pid(program);
            let out = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let words: Vec<&str> = text.trim().splitn(3, ' ').collect();
            assert_eq!(words.len(), 3, "{text}");
            assert!(words[0].parse::<u32>().is_ok_and(|p| p > 1), "{text}");
            assert_eq!(words[0], words[1], "SLURM_TASK_PID is the script's $$: {text}");
            assert_eq!(words[2], format!("{} a b|", path.display()), "{text}");
        }
    }
}
