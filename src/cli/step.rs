//! `gangway run` with a controller: a step inside the current allocation (`GANGWAY_JOB_ID`
//! set), or a job of its own (allocate, run one step over all of it, release). The step's
//! proxies are started by the nodes' agents, with the credential the controller signed.

use gangway_launcher::nodes::Node;
use gangway_launcher::proxy::protocol::{BootstrapConfig, LauncherKind};
use gangway_launcher::proxy::root::ClusterPlan;

use super::run::{RunRequest, run_plan};
use super::shape::{ShapeArgs, parse_memory};
use crate::client::{Client, ClientError};
use crate::exit_code;
use crate::protocol::{JobId, JobKind, Reply, Request, StepGrant, StepRequest, Submission};

fn connect() -> Result<Client, u8> {
    Client::connect().map_err(|e| {
        eprintln!("gangway: error: {e}");
        e.exit_code()
    })
}

fn broken(e: ClientError) -> u8 {
    eprintln!("gangway: error: {e}");
    e.exit_code()
}

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
) -> Result<StepGrant, u8> {
    let step = StepRequest {
        job,
        ntasks,
        nodes: request.layout.nodes,
        ntasks_per_node: request.layout.tasks_per_node,
        cpus_per_task: request.spec.cpus_per_task,
        command: command_line(request),
    };
    client.send(&Request::Step(step)).map_err(broken)?;
    let mut said = false;
    loop {
        match client.recv().map_err(broken)? {
            Reply::Step(grant) => return Ok(grant),
            Reply::Waiting { .. } if !said => {
                eprintln!("gangway: step waiting for CPUs of job {job} held by its other steps");
                said = true;
            }
            Reply::Error { code, message } => {
                for l in message.lines() {
                    eprintln!("gangway: error: {l}");
                }
                return Err(code);
            }
            Reply::Ended { id, state, reason } => {
                eprintln!("gangway: job {id} ended: {state} ({reason})");
                return Err(exit_code::JOB_ENDED);
            }
            _ => {}
        }
    }
}

/// Runs the step's ranks through the agents; `job_env` (a job of its own's `GANGWAY_*`
/// variables) reaches every rank.
fn launch(mut request: RunRequest, grant: &StepGrant, job_env: &[(String, String)]) -> u8 {
    request.spec.export.values.extend(job_env.iter().cloned());
    let counts: Vec<u32> = grant.nodes.iter().map(|n| n.ntasks).collect();
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
pub fn run_in_job(request: RunRequest, job: JobId) -> u8 {
    let mut client = match connect() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let grant = match ask_step(&mut client, &request, job, request.ntasks_given) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let code = launch(request, &grant, &[]);
    // Closing the connection gives the step's CPUs back.
    drop(client);
    code
}

/// `gangway run` outside any allocation: a job of its own.
pub fn run_as_job(request: RunRequest) -> u8 {
    let flags = &request.cluster;
    let shape_args = ShapeArgs {
        nodes: request.layout.nodes.map(|n| n.to_string()),
        ntasks: Some(request.spec.ntasks),
        ntasks_per_node: request.layout.tasks_per_node,
        cpus_per_task: Some(request.spec.cpus_per_task),
        mem: flags.mem.clone(),
        partition: flags.partition.clone(),
        time: flags.time.clone(),
        nodelist: flags.nodelist.clone(),
        exclude: flags.exclude.clone(),
        exclusive: flags.exclusive,
        gpus_per_task: (request.binding.gpus_per_task > 0).then_some(request.binding.gpus_per_task),
        ..ShapeArgs::default()
    };
    if let Some(m) = &flags.mem
        && let Err(e) = parse_memory(m)
    {
        eprintln!("gangway: error: --mem={m}: {e}");
        return exit_code::USAGE;
    }
    let mut shape = match shape_args.to_shape() {
        Ok(s) => s,
        Err(m) => {
            eprintln!("gangway: error: {m}");
            return exit_code::USAGE;
        }
    };
    if request.binding.oversubscribe {
        // More ranks than CPUs: ask for one CPU per node and let the ranks share it.
        shape.ntasks = None;
        shape.ntasks_per_node = None;
    }
    let sub = Submission {
        kind: JobKind::Run,
        name: flags.job_name.clone().unwrap_or_else(|| {
            std::path::Path::new(&request.spec.argv0)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into())
        }),
        shape,
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "/".into()),
        env: Vec::new(),
        script: None,
        args: Vec::new(),
        command: command_line(&request),
        output: None,
        error: None,
        requeue: flags.requeue,
        hold: false,
        umask: Some(super::batch::submitter_umask()),
        // Held by this connection: a second connection could not take the job over anyway.
        idempotency_key: None,
    };
    let mut client = match connect() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut grant = match super::alloc::wait_for_grant(&mut client, sub, !request.spec.verbose) {
        Ok(g) => g,
        Err(code) => return code,
    };
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
        let step = match ask_step(&mut client, &request, grant.job, Some(request.spec.ntasks)) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let code = launch(request.clone(), &step, &grant.env);
        if !(requeue && code == exit_code::NODE_LOST) {
            break code;
        }
        // The controller requeues the job once it declares the node lost; wait for that.
        match wait_requeued(&mut client) {
            Some(attempt) => {
                eprintln!(
                    "gangway: job {} requeued after a node was lost: attempt {attempt}",
                    grant.job
                );
                grant = match super::alloc::wait_granted(&mut client, !request.spec.verbose) {
                    Ok(g) => g,
                    Err(code) => return code,
                };
            }
            None => break code,
        }
    };
    let _ = client.call(&Request::Done { exit_code: i32::from(code) });
    code
}
