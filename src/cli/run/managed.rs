//! `gangway run` with a controller: a step inside the current allocation (`GANGWAY_JOB_ID`
//! set), or a job of its own (allocate, run one step over all of it, release). The step's
//! proxies are started by the nodes' agents, with the credential the controller signed.

use gangway_launcher::nodes::Node;
use gangway_launcher::proxy::protocol::{BootstrapConfig, LauncherKind};
use gangway_launcher::proxy::root::ClusterPlan;

use super::launch::run_plan;
use super::request::RunRequest;
use crate::cli::allocation::{wait_for_grant, wait_granted};
use crate::cli::error::{CliError, refused};
use crate::cli::flag_values::{MemorySize, NodeRange};
use crate::cli::shape::JobShape;
use crate::cli::submission::{command_name, submit_dir, submit_host, submitter_umask};
use crate::client::Client;
use crate::exit_code;
use crate::protocol::{
    JobId, JobKind, Reply, Request, StepGrant, StepMemory, StepRequest, Submission,
};

fn command_line(request: &RunRequest) -> String {
    let mut words = vec![request.spec.argv0.to_string_lossy().into_owned()];
    words.extend(request.spec.args.iter().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Asks for a step on the connection and waits until it is granted.
fn ask_step(
    client: &mut Client,
    request: &RunRequest,
    job: JobId,
    ntasks: Option<u32>,
) -> Result<StepGrant, CliError> {
    let step = StepRequest {
        job,
        ntasks,
        nodes: request.layout.nodes,
        ntasks_per_node: request.layout.tasks_per_node,
        cpus_per_task: request.spec.cpus_per_task,
        command: command_line(request),
        nodelist: request.cluster.nodelist.names().to_vec(),
        memory: step_memory(request.cluster.mem, request.cluster.mem_per_cpu),
    };
    client.send(&Request::Step(step))?;
    let mut said = false;
    loop {
        match refused(client.recv()?)? {
            Reply::Step(grant) => return Ok(grant),
            Reply::Waiting { .. } if !said => {
                eprintln!("gangway: step waiting for CPUs of job {job} held by its other steps");
                said = true;
            }
            Reply::Ended { id, state, reason } => {
                return Err(CliError::JobEnded(format!("job {id} ended: {state} ({reason})")));
            }
            _ => {}
        }
    }
}

/// A step's own memory from its `--mem`/`--mem-per-cpu` (the controller works out each
/// node's limit). 0 is Slurm's "all of the job's memory": no limit of the step's own.
fn step_memory(mem: Option<MemorySize>, per_cpu: Option<MemorySize>) -> Option<StepMemory> {
    let memory = match (mem, per_cpu) {
        (Some(m), _) => StepMemory::PerNode(m.bytes()),
        (None, Some(m)) => StepMemory::PerCpu(m.bytes()),
        (None, None) => return None,
    };
    (memory.on_node(1) > 0).then_some(memory)
}

/// Runs the step's ranks through the agents; `job_env` (a job of its own's `GANGWAY_*`
/// variables) reaches every rank, and its `GANGWAY_MPI` (the cluster's `mpi_default`) picks the
/// MPI kind when the user chose none.
fn launch(
    mut request: RunRequest,
    grant: &StepGrant,
    job_env: &[(String, String)],
) -> Result<u8, CliError> {
    if !request.mpi_given
        && let Some((_, kind)) = job_env.iter().find(|(k, _)| k == "GANGWAY_MPI")
    {
        request.spec.mpi = kind.parse().map_err(|e| {
            CliError::Usage(format!("the cluster's default MPI kind GANGWAY_MPI={kind}: {e}"))
        })?;
    }
    request.spec.export.values.extend(job_env.iter().cloned());
    let counts: Vec<u32> = grant.nodes.iter().map(|n| n.ntasks).collect();
    let slurm = std::env::var_os("SLURM_JOB_ID").is_some()
        || job_env.iter().any(|(k, _)| k == "SLURM_JOB_ID");
    if slurm {
        request.spec.export.values.extend(step_variables(
            grant,
            &counts,
            request.spec.cpus_per_task,
        ));
    }
    let total: u32 = counts.iter().sum();
    request.spec.ntasks = total;
    request.spec.job_id = grant.job.to_string();
    let node_of_rank: Vec<u32> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, n)| std::iter::repeat_n(i as u32, *n as usize))
        .collect();
    let nodes: Vec<Node> = grant
        .nodes
        .iter()
        .map(|n| Node {
            name: n.name.clone(),
            user: None,
            port: Some(n.port),
            slots: Some(n.ntasks),
            max_slots: None,
        })
        .collect();
    let bootstrap = BootstrapConfig {
        kind: LauncherKind::Agent,
        config_file: None,
        identity_files: Vec::new(),
        host_key_policy: None,
        connect_timeout_ms: None,
        agent_credential: Some(grant.credential.clone()),
        agent_hosts: grant.nodes.iter().map(|n| (n.name.clone(), n.addr.clone())).collect(),
        agent_link_key: Some(grant.link_key.clone()),
    };
    let plan = ClusterPlan {
        nodes,
        node_of_rank,
        bootstrap,
        proxy_path: "gangway".into(),
        tree_width: request.tree_width,
        ping_interval: request.ping_interval,
        ping_timeout: request.ping_timeout,
        binding: request.binding.clone(),
    };
    run_plan(request.spec, plan)
}

/// Slurm's step variables, for a job with Slurm's variables (docs/slurm.md).
fn step_variables(grant: &StepGrant, counts: &[u32], cpus_per_task: u32) -> Vec<(String, String)> {
    let names: Vec<&str> = grant.nodes.iter().map(|n| n.name.as_str()).collect();
    let nodelist =
        gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","));
    let counts: Vec<usize> = counts.iter().map(|c| *c as usize).collect();
    let total: usize = counts.iter().sum();
    [
        ("SLURM_STEP_ID", grant.step.to_string()),
        ("SLURM_STEPID", grant.step.to_string()),
        ("SLURM_STEP_NODELIST", nodelist),
        ("SLURM_STEP_NUM_NODES", names.len().to_string()),
        ("SLURM_STEP_NUM_TASKS", total.to_string()),
        ("SLURM_STEP_TASKS_PER_NODE", crate::controller::slurm_env::compress_counts(&counts)),
        ("SLURM_NTASKS", total.to_string()),
        ("SLURM_NPROCS", total.to_string()),
        ("SLURM_CPUS_PER_TASK", cpus_per_task.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// After a step lost a node: the new attempt number once the controller has requeued the
/// job, or `None` if it ended instead (or said nothing within the time a loss takes).
fn wait_requeued(client: &mut Client) -> Option<u32> {
    client.set_timeout(Some(std::time::Duration::from_secs(60)));
    let attempt = loop {
        match client.recv() {
            Ok(Reply::Requeued { attempt, .. }) => break Some(attempt),
            Ok(Reply::Ended { .. }) | Err(_) => break None,
            Ok(_) => {}
        }
    };
    client.set_timeout(None);
    attempt
}

/// `gangway run` inside job `job`: a step on (part of) its allocation.
pub fn run_in_job(request: RunRequest, job: JobId) -> Result<u8, CliError> {
    if let Some(flag) = request.cluster.extras.given() {
        return Err(CliError::Usage(format!(
            "{flag} is for a job of its own: a step of job {job} runs under the job's (give it to sbatch or salloc)"
        )));
    }
    let mut client = Client::connect()?;
    let grant = ask_step(&mut client, &request, job, request.ntasks_given)?;
    let code = launch(request, &grant, &[]);
    // The step's exit code for the record (sacct's step lines); closing the connection gives
    // the step's CPUs back either way.
    let reported = match &code {
        Ok(code) => *code,
        Err(e) => exit_code::for_error(e),
    };
    let _ = client.call(&Request::Done { exit_code: i32::from(reported) });
    drop(client);
    code
}

/// The shape of a job of its own, straight from the checked flags.
fn job_shape(request: &RunRequest) -> JobShape {
    let flags = &request.cluster;
    // With --oversubscribe (more ranks than CPUs) ask for one CPU per node and let the ranks
    // share it.
    let tasks = !request.binding.oversubscribe;
    JobShape {
        nodes: request.layout.nodes.map(NodeRange::exactly),
        ntasks: tasks.then_some(request.spec.ntasks),
        ntasks_per_node: request.layout.tasks_per_node.filter(|_| tasks),
        cpus_per_task: Some(request.spec.cpus_per_task),
        mem_per_node: flags.mem,
        mem_per_cpu: flags.mem_per_cpu,
        gpus_per_task: (request.binding.gpus_per_task > 0).then_some(request.binding.gpus_per_task),
        gpu_type: flags.gpu_type.clone(),
        exclusive: flags.exclusive,
        partition: flags.partition.clone(),
        time: flags.time,
        nodelist: flags.nodelist.clone(),
        exclude: flags.exclude.clone(),
        account: flags.account.clone(),
        qos: flags.qos.clone(),
        nice: flags.nice,
        dependency: flags.dependency.clone(),
        kill_on_invalid_dep: flags.kill_on_invalid_dep,
    }
}

/// `gangway run` outside any allocation: a job of its own.
pub fn run_as_job(request: RunRequest) -> Result<u8, CliError> {
    let flags = &request.cluster;
    let shape = job_shape(&request);
    let sub = Submission {
        kind: JobKind::Run,
        name: flags.job_name.clone().unwrap_or_else(|| command_name(&request.spec.argv0, "run")),
        shape: shape.to_protocol(),
        cwd: submit_dir(),
        env: vec![submit_host()],
        script: None,
        args: Vec::new(),
        command: command_line(&request),
        output: None,
        error: None,
        requeue: flags.requeue,
        hold: false,
        umask: Some(submitter_umask()),
        // Held by this connection: a second connection could not take the job over anyway.
        idempotency_key: None,
        end_handling: flags.extras.end_handling(),
        constraint: flags.extras.constraint.clone(),
        begin: None,
        comment: None,
        dependency: shape.dependency.clone(),
        kill_on_invalid_dep: shape.kill_on_invalid_dep,
        array: None,
    };
    let mut client = Client::connect()?;
    let mut grant = wait_for_grant(&mut client, sub, !request.spec.verbose)?;
    let requeue = request.cluster.requeue;
    let code = loop {
        if request.spec.verbose {
            let names: Vec<&str> = grant.nodes.iter().map(|n| n.name.as_str()).collect();
            eprintln!(
                "gangway: job {} attempt {} on {}",
                grant.job,
                grant.attempt,
                names.join(",")
            );
        }
        let step = ask_step(&mut client, &request, grant.job, Some(request.spec.ntasks))?;
        let result = launch(request.clone(), &step, &grant.env);
        if !(requeue && matches!(result, Ok(exit_code::NODE_LOST))) {
            break result;
        }
        // The controller requeues the job once it declares the node lost; wait for that.
        match wait_requeued(&mut client) {
            Some(attempt) => {
                eprintln!(
                    "gangway: job {} requeued after a node was lost: attempt {attempt}",
                    grant.job
                );
                grant = wait_granted(&mut client, !request.spec.verbose)?;
            }
            None => break result,
        }
    };
    let reported = match &code {
        Ok(code) => *code,
        Err(e) => exit_code::for_error(e),
    };
    let _ = client.call(&Request::Done { exit_code: i32::from(reported) });
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_memory_comes_from_its_flags_and_zero_is_the_jobs() {
        let size = |s: &str| Some(s.parse::<MemorySize>().expect("size"));
        assert_eq!(step_memory(size("50M"), None), Some(StepMemory::PerNode(50 << 20)));
        assert_eq!(step_memory(None, size("1G")), Some(StepMemory::PerCpu(1 << 30)));
        assert_eq!(step_memory(None, None), None);
        assert_eq!(step_memory(size("0"), None), None, "--mem=0: all of the job's");
        assert_eq!(step_memory(None, size("0")), None);
    }
}
