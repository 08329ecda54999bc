//! `gangway run`: checks the flags ([`request`]), then runs the ranks where they belong: through
//! a controller ([`managed`]) inside an allocation or when one is configured, else on this
//! machine or on the nodes given, through the launcher ([`launch`]).

pub mod launch;
pub mod managed;
pub mod request;

use std::io::Write;

use gangway_launcher::binding::{self, BindingError, Machine};
use gangway_launcher::nodes::{self, NodeSource, Source};
use gangway_launcher::proxy::root::ClusterPlan;

pub use request::{ClusterFlags, LauncherArg, PmiArg, RunArgs, RunRequest};

use super::error::CliError;
use super::flag_values::MemorySize;

/// A step takes GPUs among its job's: a type it names must be the job's (`job_type`, from
/// `GANGWAY_GPU_TYPE`), whose GPUs are all of it.
fn step_gpu_type(request: &RunRequest, job_type: Option<&String>) -> Result<(), CliError> {
    let Some(t) = &request.cluster.gpu_type else { return Ok(()) };
    match job_type {
        Some(j) if j == t.as_str() => Ok(()),
        Some(j) => Err(CliError::Usage(format!(
            "GPU type '{t}': the job's GPUs are of type '{j}', and a step takes the job's; give \
             a count alone or {j}:N"
        ))),
        None => Err(CliError::Usage(format!(
            "GPU type '{t}': the job asked for no GPU type, and a step takes the job's GPUs as \
             they are; give a count alone (or submit the job with --gres=gpu:{t}:N)"
        ))),
    }
}

/// Runs `gangway run` to the end; returns the ranks' exit code.
pub fn main(args: RunArgs) -> Result<u8, CliError> {
    if args.verbose > 1 {
        // Only now: setting up logging must not cost the ordinary launch anything.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new("gangway=debug"))
            .with_target(false)
            .without_time()
            .try_init();
    }
    let request = args.into_request()?;
    let env: std::collections::HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let explicit_nodes =
        request.node_request.hosts.is_some() || request.node_request.hostfile.is_some();
    if !explicit_nodes && !request.dry_run {
        if let Some(job) = env.get("GANGWAY_JOB_ID").and_then(|j| j.parse::<u64>().ok()) {
            if request.cluster.dependency.is_some() {
                return Err(CliError::Usage(format!(
                    "--dependency: a step of job {job} starts within it at once; give the dependency to the job (batch/alloc)"
                )));
            }
            step_gpu_type(&request, env.get("GANGWAY_GPU_TYPE"))?;
            return managed::run_in_job(request, job);
        }
        if crate::client::target().is_some() {
            return managed::run_as_job(request);
        }
    }
    if let Some(t) = &request.cluster.gpu_type {
        return Err(CliError::Usage(format!(
            "GPU type '{t}': a run on given nodes or this machine takes their GPUs by count; give \
             --gpus-per-task=N (types are for jobs a controller places)"
        )));
    }
    if request.cluster.dependency.is_some() {
        return Err(CliError::Usage(
            "--dependency needs a controller (jobs to wait for); a local run starts at once".into(),
        ));
    }
    let source = nodes::select_source(&request.node_request, &env)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if !matches!(source, Source::Local(_)) && request.machine == Machine::Local {
        return run_on_nodes(request, source.as_dyn());
    }
    if request.spec.mpi.serves_pmix() && !request.dry_run {
        // SAFETY: a local run has one thread until its runtime starts, later on.
        unsafe { gangway_launcher::pmi::pmix::prefer_cached_topology() };
    }
    let placement =
        binding::plan(request.spec.ntasks, &request.binding, &request.machine, request.dry_run)
            .map_err(|e| match e {
                BindingError::Placement(_) => CliError::CannotPlace(e.to_string()),
                // A machine named on the command line is the user's to fix; this one's is not.
                BindingError::Topology(_) if request.machine != Machine::Local => {
                    CliError::Usage(e.to_string())
                }
                BindingError::Topology(_) => CliError::LaunchFailed(e.to_string()),
            })?;
    if request.dry_run {
        print_map(&request, placement.as_ref());
        return Ok(crate::exit_code::SUCCESS);
    }
    let spec = request.spec;
    if spec.verbose
        && let Some(p) = &placement
    {
        for note in &p.notes {
            eprintln!("gangway: {note}");
        }
    }
    let cpus = spec.ntasks.saturating_mul(spec.cpus_per_task);
    let limit = memory_limit(request.cluster.mem, request.cluster.mem_per_cpu, cpus);
    launch::run_local(spec, placement, limit)
}

/// A local run's memory limit from `--mem`, or `--mem-per-cpu` times the run's CPUs (ranks
/// times `-c`). `--mem=0` is Slurm's "all of the node's memory": no limit, as a managed job
/// with it gets; a limit of 0 bytes let no rank even exec (each ended 127, which reads as
/// "program not found").
fn memory_limit(mem: Option<MemorySize>, per_cpu: Option<MemorySize>, cpus: u32) -> Option<u64> {
    let per_cpu = per_cpu.map(|m| m.bytes().saturating_mul(u64::from(cpus)));
    mem.map(MemorySize::bytes).or(per_cpu).filter(|&bytes| bytes > 0)
}

/// A job across nodes: the layout, then the proxies.
fn run_on_nodes(request: RunRequest, source: &dyn NodeSource) -> Result<u8, CliError> {
    let all = source.nodes().map_err(|e| CliError::Usage(e.to_string()))?;
    let slots: Vec<Option<u32>> = all.iter().map(|n| n.slots).collect();
    let node_of_rank = gangway_launcher::layout::layout(&request.layout, &slots)
        .map_err(|e| CliError::CannotPlace(e.to_string()))?;
    let used = node_of_rank.iter().max().map(|m| *m as usize + 1).unwrap_or(1);
    let nodes: Vec<_> = all.into_iter().take(used).collect();
    if request.dry_run {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "{} ranks on {} node(s) from {}",
            node_of_rank.len(),
            nodes.len(),
            source.describe()
        );
        let _ = writeln!(stdout, "rank  node");
        for (rank, node) in node_of_rank.iter().enumerate() {
            let _ = writeln!(stdout, "{rank:<5} {}", nodes[*node as usize].name);
        }
        return Ok(crate::exit_code::SUCCESS);
    }
    let plan = ClusterPlan {
        nodes,
        node_of_rank,
        bootstrap: request.bootstrap,
        proxy_path: request.proxy_path,
        tree_width: request.tree_width,
        ping_interval: request.ping_interval,
        ping_timeout: request.ping_timeout,
        binding: request.binding,
    };
    launch::run_plan(request.spec, plan)
}

/// `--dry-run`: the rank map as a table or JSON, nothing launched.
fn print_map(request: &RunRequest, placement: Option<&gangway_topology::Placement>) {
    let mut stdout = std::io::stdout().lock();
    let text = match placement {
        Some(p) if request.json => p.to_json(),
        Some(p) => {
            let host = match &request.machine {
                Machine::Local => request.spec.host.clone(),
                _ => "node0".to_string(),
            };
            gangway_topology::render_map(p, &[host.as_str()])
        }
        None if request.json => format!("{{\"ranks\":{},\"bound\":false}}", request.spec.ntasks),
        None => format!(
            "{} rank(s) on {}, not bound (more ranks than CPUs, or --cpu-bind=none)\n",
            request.spec.ntasks, request.spec.host
        ),
    };
    let _ = writeln!(stdout, "{}", text.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_zero_is_no_limit_and_mem_per_cpu_counts_the_runs_cpus() {
        let size = |s: &str| Some(s.parse::<MemorySize>().unwrap());
        assert_eq!(memory_limit(size("0"), None, 4), None);
        assert_eq!(memory_limit(size("0G"), None, 4), None);
        assert_eq!(memory_limit(None, None, 4), None);
        assert_eq!(memory_limit(size("100M"), None, 4), Some(100 << 20));
        assert_eq!(memory_limit(size("1K"), None, 4), Some(1024));
        // --mem-per-cpu: times the run's CPUs; 0 is no limit as well.
        assert_eq!(memory_limit(None, size("50M"), 4), Some(200 << 20));
        assert_eq!(memory_limit(None, size("0"), 4), None);
    }
}
