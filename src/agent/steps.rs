//! Step proxies: a launcher's request with a credential the launch port checked becomes a
//! `gangway proxy` run as the job's user on the step's CPUs, its stdin, stderr and exit relayed
//! over the launcher's encrypted link.

use std::collections::HashMap;
use std::path::PathBuf;

use gangway_launcher::bootstrap::agent::{exit_frame, stderr_frame};
use gangway_launcher::bootstrap::{RemoteExit, exit_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;

use super::cgroups::{NodeCgroups, Part};
use super::events::Event;
use super::fence::Fencing;
use super::jobs::LocalJob;
use super::launch::StepLaunch;
use super::options::AgentOptions;
use super::process::{self, RunAs};
use crate::protocol::JobId;

/// Starts a step's proxy, or refuses the launcher (the job is not here, its attempt is over,
/// or it may not run now).
pub(super) fn start_proxy(
    step: StepLaunch,
    opts: &AgentOptions,
    jobs: &mut HashMap<JobId, LocalJob>,
    ev_tx: &UnboundedSender<Event>,
    fencing: &mut Fencing,
) {
    let StepLaunch { credential: c, node_id, stream, sealer, opener } = step;
    let refuse = |stream: tokio::net::TcpStream, mut sealer: gangway_link::Sealer, why: String| {
        tokio::spawn(async move {
            let mut stream = stream;
            tracing::warn!(reason = %why, "step launch refused");
            let msg = format!("error {why}");
            let _ = gangway_link::tokio_io::send(&mut stream, &mut sealer, msg.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    };
    let Some(job) = jobs.get_mut(&c.job) else {
        let why = format!(
            "job {} does not run on this node (it ended, or the step came too late)",
            c.job
        );
        refuse(stream, sealer, why);
        return;
    };
    if job.launch.attempt != c.attempt || job.launch.uid != c.uid {
        let why =
            format!("the credential is for attempt {} of job {}, which is over", c.attempt, c.job);
        refuse(stream, sealer, why);
        return;
    }
    if let Some(why) = job.fenced.clone().or_else(|| fencing.may_start().err()) {
        refuse(stream, sealer, format!("job {} cannot run here now: {why}", c.job));
        return;
    }
    let Some(cpus) = c.nodes.get(node_id as usize).map(|(_, cpus)| cpus.clone()) else {
        // The launch port checked that the credential names this node: not reached.
        refuse(stream, sealer, format!("the credential names no node {node_id}"));
        return;
    };
    let run_as = RunAs::for_job(&job.launch.user, c.uid, c.gid, "/", &cpus, job.launch.umask);
    let mut env: Vec<(String, String)> = job
        .launch
        .env
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "PATH" | "HOME" | "USER" | "LOGNAME" | "LANG" | "TMPDIR" | "XDG_CACHE_HOME"
            ) || k.starts_with("GANGWAY_")
        })
        .cloned()
        .collect();
    // A proxy needs a home (its cached machine model lives there) even when the job's
    // environment has none.
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid)) {
        for (k, v) in
            [("HOME", u.dir.display().to_string()), ("USER", u.name.clone()), ("LOGNAME", u.name)]
        {
            if !env.iter().any(|(e, _)| e == k) {
                env.push((k.to_string(), v));
            }
        }
    }
    if !env.iter().any(|(e, _)| e == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env.push(("GANGWAY_STEP_ID".into(), c.step.to_string()));
    env.push(("GANGWAY_STEP_CPUS".into(), cpus.to_string()));
    // The job's GPUs here; its ranks inherit them (or get their share with --gpus-per-task).
    let confined = opts.cgroups.as_ref().is_some_and(|c| c.confines_devices());
    for (k, v) in super::cgroups::gpu_env(&job.launch, &opts.topology, confined) {
        env.retain(|(e, _)| *e != k);
        env.push((k, v));
    }
    // The proxy hands it to its ranks: their commands reach the controller through this agent.
    env.retain(|(k, _)| k != "GANGWAY_CONTROLLER");
    env.push(("GANGWAY_CONTROLLER".into(), opts.socket.display().to_string()));
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("gangway"));
    let args = vec!["proxy".to_string(), "--node".to_string(), node_id.to_string()];
    let cgroups = opts.cgroups.clone();
    let join = cgroups
        .as_ref()
        .and_then(|cg| cg.enter(&job.launch, &opts.topology, Part::Step(c.step), Some(&cpus)))
        .unwrap_or_default();
    let spawned = match process::spawn(&exe, &args, &env, &run_as, None, true, &join) {
        Ok(s) => s,
        Err(e) => {
            refuse(stream, sealer, format!("cannot start the proxy: {e}"));
            return;
        }
    };
    let sid = spawned.pid;
    fencing.guard(c.job, c.attempt, sid);
    job.sessions.push(sid);
    let (job_id, tx) = (c.job, ev_tx.clone());
    let end = StepEnd {
        cgroups: cgroups.filter(|_| !join.is_empty()),
        job: c.job,
        attempt: c.attempt,
        step: c.step,
        limit: job.launch.memory,
        error_output: job.launch.error_output.clone(),
        tx: tx.clone(),
    };
    tokio::spawn(async move {
        relay_proxy(spawned.child, stream, sealer, opener, end).await;
        let _ = tx.send(Event::ProxyEnded { job: job_id, sid });
    });
}

/// What ends with a step's proxy: its cgroup (what is left killed, what it used read).
struct StepEnd {
    cgroups: Option<NodeCgroups>,
    job: JobId,
    attempt: u32,
    step: u32,
    limit: Option<u64>,
    /// The job's error output (batch jobs), where an OOM kill is told.
    error_output: Option<String>,
    tx: UnboundedSender<Event>,
}

impl StepEnd {
    /// Reads what the step used (its processes are gone, or about to be killed) and sends it
    /// to the owner task. If the OOM killer struck the step, a batch job's error output is
    /// told, and for other jobs the message is returned (for the launcher's stderr).
    async fn report(&self) -> Option<String> {
        let cgroups = self.cgroups.clone()?;
        let (job, attempt, step, limit) = (self.job, self.attempt, self.step, self.limit);
        let usage = tokio::task::spawn_blocking(move || {
            cgroups.read_part(job, attempt, Part::Step(step), limit)
        })
        .await
        .ok()??;
        let oom = usage.out_of_memory.clone();
        let _ = self.tx.send(Event::Used { job, attempt, usage });
        // The launcher may be gone by now (its rank's end came first, through the proxy), so
        // the job's error output hears of it from here.
        match (&self.error_output, oom) {
            (Some(path), Some(message)) => {
                super::cgroups::append_error(path, &message);
                None
            }
            (_, oom) => oom,
        }
    }

    /// Kills what is left in the step's cgroup and removes it: after the exit frame, off the
    /// launcher's path.
    async fn remove(self) {
        let Some(cgroups) = self.cgroups else { return };
        let (job, attempt, step, limit) = (self.job, self.attempt, self.step, self.limit);
        let _ = tokio::task::spawn_blocking(move || {
            cgroups.finish_part(job, attempt, Part::Step(step), limit)
        })
        .await;
    }
}

/// Relays a proxy's pipes over its launcher's link: the link's messages to the proxy's stdin
/// (the launcher's start line first, which holds the job's call-back key), and the proxy's
/// stderr and how it ended back, as frames. Before the exit frame the step's cgroup is read:
/// its figures reach the controller ahead of anything the step's end causes, and an OOM kill
/// is told (the job's error output, or the launcher's stderr). After it, what is left in the
/// cgroup is killed and the cgroup removed, off the launcher's path.
async fn relay_proxy(
    mut child: tokio::process::Child,
    stream: tokio::net::TcpStream,
    mut sealer: gangway_link::Sealer,
    mut opener: gangway_link::Opener,
    end: StepEnd,
) {
    use gangway_link::tokio_io::{recv, send};
    let (mut net_rd, mut net_wr) = stream.into_split();
    let _ = send(&mut net_wr, &mut sealer, b"ok").await;
    let stdin = child.stdin.take();
    let to_stdin = tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        while let Ok(Some(data)) = recv(&mut net_rd, &mut opener).await {
            if stdin.write_all(&data).await.is_err() {
                break;
            }
        }
        // Dropping stdin tells the proxy its launcher is gone: it ends its ranks and exits.
    });
    let mut linked = true;
    if let Some(mut err) = child.stderr.take() {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match err.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Keep draining the pipe after the launcher went away, so the proxy never
                    // blocks on a full stderr.
                    if linked {
                        linked =
                            send(&mut net_wr, &mut sealer, &stderr_frame(&buf[..n])).await.is_ok();
                    }
                }
            }
        }
    }
    let exit = child.wait().await.map(exit_of).unwrap_or(RemoteExit::Code(255));
    if let Some(message) = end.report().await
        && linked
    {
        let line = format!("gangway: error: {message}\n");
        linked = send(&mut net_wr, &mut sealer, &stderr_frame(line.as_bytes())).await.is_ok();
    }
    if linked {
        let _ = send(&mut net_wr, &mut sealer, &exit_frame(&exit)).await;
    }
    let _ = net_wr.shutdown().await;
    to_stdin.abort();
    end.remove().await;
}
