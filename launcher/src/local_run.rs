//! `gangway run` on this machine: the job's output, PMI service and signal handlers, its ranks
//! (started by [`crate::ranks`]), and the supervisor's loop until the job ends.

use std::time::Duration;

use gangway_topology::Placement;
use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep_until};

use crate::exit_status::RankStatus;
use crate::input;
use crate::job::{JobReport, JobSpec, LaunchError};
use crate::output::{self, OutputSink};
use crate::output_routes::OutputRoutes;
use crate::pmi::mapping::process_mapping;
use crate::pmi::node::JobInfo;
use crate::pmi::pmix::pmix_namespace;
use crate::pmi::server::PmiServer;
use crate::rank_env;
use crate::ranks::{self, ExitReport, NodeLaunch};
use crate::run_cgroup::RunCgroup;
use crate::signals::{self, CaughtSignals};
use crate::spawn::ProcessEnd;
use crate::supervisor::Supervisor;
use crate::supervisor::policy::{StopPolicy, StopRules};
use crate::supervisor::report::job_report;
use crate::supervisor::signaller::ProcessGroups;

/// How long to wait for output after the last rank exited (only an escaped process can delay it).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Runs the job on this machine and waits for it to end.
/// `placement` (from [`crate::binding::plan`]) says where each rank runs; `None`: unbound.
/// `cgroup`: the run's cgroup ([`crate::run_cgroup`]), which each rank joins; `None`: none.
pub async fn run_local(
    spec: JobSpec,
    placement: Option<Placement>,
    cgroup: Option<&RunCgroup>,
) -> Result<JobReport, LaunchError> {
    // The subreaper comes just before the ranks: only what they leave behind comes to us.
    ranks::prepare_descriptors();
    let cgroup_fds = cgroup.map(|c| c.join_fds()).unwrap_or_default();
    let cgroup_dir = cgroup.and_then(|c| c.clone_target());

    let n = spec.ntasks;
    let mut routes = OutputRoutes::open(&spec, None)?;
    let sink = OutputSink::start(std::mem::take(&mut routes.files));
    let Some(out) = sink.sender() else {
        return Err(LaunchError::Setup {
            what: "the output thread",
            source: std::io::Error::other("thread spawn failed"),
        });
    };

    let job = JobInfo {
        kvsname: format!("kvs_{}_0", spec.job_id),
        jobid: spec.job_id.clone(),
        size: n,
        universe_size: n,
        appnum: 0,
        process_mapping: process_mapping(&vec![0; n as usize]),
    };
    let namespace = pmix_namespace(&spec.job_id, vec![spec.host.clone()], vec![0; n as usize], 0);
    let mut pmi =
        PmiServer::start(job, 0, (0..n).collect(), spec.pmi_mode, None, spec.mpi, namespace)
            .await
            .map_err(|source| LaunchError::Setup { what: "the PMI service", source })?;
    let mut caught = CaughtSignals::install()
        .map_err(|source| LaunchError::Setup { what: "signal handlers", source })?;

    let base_env = rank_env::base_environment(&spec.export, std::env::vars_os());
    let started = std::time::Instant::now();
    let all_ranks: Vec<u32> = (0..n).collect();
    let launch = NodeLaunch {
        program: &spec.program,
        argv0: &spec.argv0,
        args: &spec.args,
        cwd: spec.cwd.as_deref(),
        base_env: &base_env,
        job_id: &spec.job_id,
        size: n,
        node_id: 0,
        nnodes: 1,
        nodelist: &spec.host,
        ranks: &all_ranks,
        placement: placement.as_ref(),
        cpus_per_task: spec.cpus_per_task,
        input: spec.input,
        inherit_stdin: input::can_inherit_stdin(spec.input),
        // A lone unlabelled rank writes where we would: hand it our stdout/stderr (a terminal
        // stays a terminal for it, and nothing needs forwarding).
        direct_output: n == 1 && !spec.label && spec.output.is_none() && spec.error.is_none(),
        output: &|rank| routes.rank_output(rank),
        sink: out.clone(),
        exit_report: ExitReport::AtOnce,
        cgroup: &cgroup_fds,
        cgroup_dir,
        gpu_numbering: None,
    };
    let spared: Vec<i32> = cgroup.and_then(|c| c.watcher()).into_iter().collect();
    ranks::become_subreaper();
    let mut node_ranks = match ranks::start(launch, &mut pmi).await {
        Ok(node_ranks) => node_ranks,
        Err(failed) => {
            ranks::kill_leftovers(&spared).await;
            // The writer thread ends only when every sender is gone.
            drop(out);
            sink.finish();
            return Err(LaunchError::Spawn {
                rank: failed.rank,
                program: spec.program.clone(),
                source: failed.source,
            });
        }
    };
    input::forward(std::mem::take(&mut node_ranks.stdin).into_iter().map(|(_, p)| p).collect());
    let say = |msg: String| {
        let _ = out.send((output::STDERR, format!("gangway: {msg}\n").into_bytes()));
    };
    if spec.verbose {
        say(format!(
            "job {}: started {n} rank(s) of {} in {:.1} ms",
            spec.job_id,
            spec.program.display(),
            started.elapsed().as_secs_f64() * 1e3
        ));
    }

    let rules = StopRules {
        kill_grace: spec.kill_grace,
        kill_on_bad_exit: spec.kill_on_bad_exit,
        time_limit: spec.time_limit,
        job_id: spec.job_id.clone(),
        program: spec.program.clone(),
    };
    let mut policy = StopPolicy::new(n as usize, rules, Instant::now());
    for &(rank, pid) in &node_ranks.pids {
        policy.set_pid(rank, pid);
    }
    let mut sup = Supervisor::new(policy, ProcessGroups, &say);

    while sup.running() {
        let timer = sup.next_timer();
        tokio::select! {
            Some((rank, end)) = node_ranks.exits.recv() => {
                // Waiting itself failed: count it as a failed rank rather than hang.
                let end = end.unwrap_or(ProcessEnd::Status(RankStatus::Exited(-1)));
                sup.decide(|policy, now| policy.rank_ended(rank, end, now));
                pmi.rank_exited(rank);
            }
            Some(event) = pmi.events.recv() => sup.decide(|policy, now| policy.pmi_event(event, now)),
            sig = caught.recv() => {
                if sig == Signal::SIGCONT {
                    // Else a SIGTSTP the ranks have not run to take yet is discarded.
                    let live: Vec<u32> = sup.policy().ranks().iter().filter(|r| r.running).filter_map(|r| r.pid).collect();
                    signals::wait_taken(&live, Signal::SIGTSTP, signals::TAKE_LIMIT).await;
                }
                sup.decide(|policy, now| policy.signal_caught(sig, now))
            }
            _ = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => sup.tick(),
        }
    }

    if spec.verbose {
        say(sup.policy().summary(started.elapsed()));
    }
    let leftovers = ranks::kill_leftovers(&spared).await;
    if leftovers > 0 && spec.verbose {
        say(format!("killed {leftovers} leftover process(es) the ranks had started"));
    }
    node_ranks.drain_output(OUTPUT_DRAIN).await;
    let report = job_report(sup.policy(), &spec.program);
    pmi.close().await;
    drop(sup);
    drop(out);
    sink.finish();
    Ok(report)
}
