//! Running a checked job to its end, on this machine or across nodes, and turning how it went
//! into an exit code (for `run` without a controller and for steps through one).

use std::io::Write;

use gangway_launcher::job::{JobReport, JobSpec, LaunchError};
use gangway_launcher::proxy::root::ClusterPlan;
use gangway_topology::Placement;

use crate::cli::error::CliError;
use crate::exit_code;

/// A launcher's runtime: one thread is plenty and starts fastest; nothing here is CPU-bound.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::LaunchFailed(format!("cannot start the runtime: {e}")))
}

/// Runs a job's ranks on this machine to their end; returns their exit code. `memory`
/// (`--mem`) is the run's limit when it gets a cgroup.
pub fn run_local(
    spec: JobSpec,
    placement: Option<Placement>,
    memory: Option<u64>,
) -> Result<u8, CliError> {
    // Before the runtime: the cgroup's watcher is forked, which wants one thread.
    let cgroup = enter_cgroup(&spec, placement.as_ref(), memory);
    let runtime = runtime()?;
    let job_id = spec.job_id.clone();
    let result =
        runtime.block_on(gangway_launcher::local_run::run_local(spec, placement, cgroup.as_ref()));
    if let Some(cgroup) = cgroup {
        match cgroup.finish(&format!("run {job_id}")) {
            Ok(used) => {
                if let Some(message) = used.out_of_memory {
                    eprintln!("gangway: error: {message}");
                }
            }
            Err(e) => eprintln!("gangway: warning: the run's cgroup: {e}"),
        }
    }
    finish(result)
}

/// The local run's cgroup (`run_cgroup.rs`), when this process may make one. Unavailable or
/// turned off is said only when it matters: `--mem` was asked for, or `-v`.
fn enter_cgroup(
    spec: &JobSpec,
    placement: Option<&Placement>,
    memory: Option<u64>,
) -> Option<gangway_launcher::run_cgroup::RunCgroup> {
    match gangway_launcher::run_cgroup::enter(&spec.job_id, placement, memory) {
        Ok(Some(cgroup)) => {
            if spec.verbose {
                eprintln!("gangway: run {}: cgroup {}", spec.job_id, cgroup.describe());
            }
            Some(cgroup)
        }
        // Turned off (GANGWAY_NO_CGROUPS=1): said when it matters, as the unavailable case is.
        Ok(None) => {
            if memory.is_some() {
                eprintln!(
                    "gangway: warning: --mem not enforced, running unconfined: cgroups turned off (GANGWAY_NO_CGROUPS=1)"
                );
            } else if spec.verbose {
                eprintln!("gangway: running unconfined: cgroups turned off (GANGWAY_NO_CGROUPS=1)");
            }
            None
        }
        Err(e) if e.is_unavailable() && memory.is_none() && !spec.verbose => None,
        Err(e) => {
            let what = if memory.is_some() { "--mem not enforced, " } else { "" };
            eprintln!("gangway: warning: {what}running unconfined: {e}");
            None
        }
    }
}

/// Runs a job across the plan's nodes to its end; returns its ranks' exit code.
pub fn run_plan(spec: JobSpec, plan: ClusterPlan) -> Result<u8, CliError> {
    let runtime = runtime()?;
    finish(runtime.block_on(gangway_launcher::proxy::root::run_cluster(spec, plan)))
}

/// Prints a finished job's warnings and returns its exit code; a job that could not start is
/// an error.
fn finish(result: Result<JobReport, LaunchError>) -> Result<u8, CliError> {
    let report = result?;
    let mut stderr = std::io::stderr().lock();
    for warning in &report.warnings {
        let _ = writeln!(stderr, "gangway: warning: {warning}");
    }
    Ok(exit_code::for_report(&report))
}
