//! What a started job's nodes and holder are told: each node's [`JobLaunch`] (environment,
//! CPUs, the batch script with its output paths and requeue marker) and the holder's
//! [`Grant`]. Pure reads of the state.
//!
//! The site's default `--mpi` (`mpi_default`) travels as `GANGWAY_MPI` in both, unless the
//! job's own environment already names one (`gangway batch --mpi`, or the submitter's
//! `GANGWAY_MPI`): the script's steps read it as their default, as they would the user's.

use super::state::{Cluster, GrantedNode, Job};
use crate::protocol::{BatchLaunch, Grant, GrantNode, JobId, JobKind, JobLaunch};

impl Cluster {
    /// The variables every process of a job gets.
    fn job_env(&self, job: &Job) -> Vec<(String, String)> {
        let names = job.nodes();
        let nodelist =
            gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","));
        let tasks_per_node: Vec<String> =
            job.granted.iter().map(|g| g.tasks.len().to_string()).collect();
        // No secret among them: commands inside the job reach the controller through their
        // node's agent, which vouches for their uid (see agent::local).
        let mut slurm = if self.config.slurm_env {
            super::slurm_env::job_variables(job, &nodelist, &self.config.cluster)
        } else {
            Vec::new()
        };
        // The account and QOS the scheduler charged the job to (the user's default when it
        // named none).
        if self.config.slurm_env
            && let Some(status) = self.sched.job(job.id)
        {
            slurm.push(("SLURM_JOB_ACCOUNT".into(), status.account.clone()));
            slurm.push(("SLURM_JOB_QOS".into(), status.qos.clone()));
        }
        let mut env = vec![
            ("GANGWAY_JOB_ID".to_string(), job.id.to_string()),
            ("GANGWAY_JOB_NAME".into(), job.sub.name.clone()),
            ("GANGWAY_JOB_NODELIST".into(), nodelist.clone()),
            ("GANGWAY_NODELIST".into(), nodelist),
            ("GANGWAY_JOB_NUM_NODES".into(), names.len().to_string()),
            ("GANGWAY_NNODES".into(), names.len().to_string()),
            ("GANGWAY_NTASKS".into(), job.ntasks().to_string()),
            ("GANGWAY_TASKS_PER_NODE".into(), tasks_per_node.join(",")),
            ("GANGWAY_CPUS_PER_TASK".into(), job.sub.shape.cpus_per_task.unwrap_or(1).to_string()),
            ("GANGWAY_JOB_PARTITION".into(), job.partition.clone()),
            ("GANGWAY_SUBMIT_DIR".into(), job.sub.cwd.clone()),
            ("GANGWAY_RESTART_COUNT".into(), (job.attempt - 1).to_string()),
            ("GANGWAY_CLUSTER_NAME".into(), self.config.cluster.clone()),
        ];
        // What a step inside the job checks a typed `--gpus-per-task` against: the job's GPUs
        // are all of this type.
        if let Some(t) =
            job.sub.shape.gpu_type.as_ref().filter(|_| job.sub.shape.gpus_per_task > Some(0))
        {
            env.push(("GANGWAY_GPU_TYPE".into(), t.to_string()));
        }
        env.extend(slurm);
        env.extend(self.array_variables(job));
        env
    }

    pub(super) fn launch_for(&self, id: JobId, node: &str) -> Option<JobLaunch> {
        let job = self.jobs.get(&id)?;
        let g = job.granted.iter().find(|g| g.node == node)?;
        let first = job.granted.first().map(|f| f.node == node).unwrap_or(false);
        let mut env: Vec<(String, String)> = job.sub.env.clone();
        env.extend(self.job_env(job));
        env.extend(self.mpi_default_for(job));
        let node_id = job.granted.iter().position(|x| x.node == node).unwrap_or(0).to_string();
        if self.config.slurm_env {
            env.push(("SLURM_NODEID".into(), node_id.clone()));
            env.push(("SLURM_CPUS_ON_NODE".into(), g.cpus.len().to_string()));
            // As Slurm: the machine's indexes of the job's GPUs here, whatever numbering
            // `CUDA_VISIBLE_DEVICES` uses (GANGWAY_GPUS is the same list).
            if !g.gpus.is_empty() {
                let gpus: Vec<String> = g.gpus.iter().map(|i| i.to_string()).collect();
                env.push(("SLURM_JOB_GPUS".into(), gpus.join(",")));
            }
        }
        env.push(("GANGWAY_NODEID".into(), node_id));
        if self.config.slurm_env && first && job.sub.kind == JobKind::Batch {
            // Slurm runs the script as task 0 of its batch step. (`SLURM_TASK_PID`, its pid, is
            // not set: the agent starts the script.) Steps the script starts set their own.
            for name in ["SLURM_PROCID", "SLURM_LOCALID", "SLURM_GTIDS"] {
                env.push((name.into(), "0".into()));
            }
        }
        let batch = (first && job.sub.kind == JobKind::Batch).then(|| {
            let task = task_ids(job);
            let vars = gangway_launcher::output::BatchPatternVars {
                job_id: &id.to_string(),
                job_name: &job.sub.name,
                user: &job.user,
                first_node: node,
                array: task.as_ref().map(|(a, i)| (a.as_str(), i.as_str())),
            };
            let expand = |p: &str| {
                let path = gangway_launcher::output::expand_batch_pattern(p, &vars).unwrap_or_else(|_| p.to_string());
                if path.starts_with('/') { path } else { format!("{}/{path}", job.sub.cwd.trim_end_matches('/')) }
            };
            let output = expand(job.sub.output.as_deref().unwrap_or(default_output(job)));
            BatchLaunch {
                script: self.script_of(job).unwrap_or_default(),
                args: job.sub.args.clone(),
                output,
                error: job.sub.error.as_deref().map(expand),
                marker: (job.attempt > 1).then(|| {
                    format!(
                        "gangway: job {id} requeued (attempt {}), after {}; starting again on {node}",
                        job.attempt,
                        match &job.requeued_for {
                            Some(why) => why.clone(),
                            None if job.excluded.is_empty() => "a node failure".to_string(),
                            None => format!("losing {}", job.excluded.join(",")),
                        }
                    )
                }),
                time_limit: job.time_limit,
                append: job.sub.end_handling.append,
            }
        });
        Some(JobLaunch {
            job: id,
            attempt: job.attempt,
            name: job.sub.name.clone(),
            user: job.user.clone(),
            uid: job.uid,
            gid: job.gid,
            cpus: g.cpus.clone(),
            batch,
            env,
            cwd: job.sub.cwd.clone(),
            umask: job.sub.umask.unwrap_or(crate::protocol::DEFAULT_UMASK) & 0o777,
            memory: memory_limit(job, g),
            gpus: g.gpus.clone(),
            error_output: self.error_output(job),
            one_step: job.sub.kind == crate::protocol::JobKind::Run,
        })
    }

    /// Where a batch job's errors go (its `--error`, else its `--output`), for every node:
    /// an agent that sees a step of it killed by the OOM killer says so there.
    fn error_output(&self, job: &Job) -> Option<String> {
        if job.sub.kind != JobKind::Batch {
            return None;
        }
        let first = job.granted.first()?;
        let id = job.id.to_string();
        let task = task_ids(job);
        let vars = gangway_launcher::output::BatchPatternVars {
            job_id: &id,
            job_name: &job.sub.name,
            user: &job.user,
            first_node: &first.node,
            array: task.as_ref().map(|(a, i)| (a.as_str(), i.as_str())),
        };
        let pattern =
            job.sub.error.as_deref().or(job.sub.output.as_deref()).unwrap_or(default_output(job));
        let path = gangway_launcher::output::expand_batch_pattern(pattern, &vars)
            .unwrap_or_else(|_| pattern.to_string());
        Some(if path.starts_with('/') {
            path
        } else {
            format!("{}/{path}", job.sub.cwd.trim_end_matches('/'))
        })
    }

    pub(super) fn grant_of(&self, id: JobId) -> Option<Grant> {
        let job = self.jobs.get(&id)?;
        let nodes = job
            .granted
            .iter()
            .map(|g| {
                let rec = self.nodes.get(&g.node);
                GrantNode {
                    name: g.node.clone(),
                    addr: rec.and_then(|r| r.addr.clone()).unwrap_or_else(|| g.node.clone()),
                    port: rec.map(|r| r.port).unwrap_or(0),
                    cpus: g.cpus.clone(),
                    ntasks: g.tasks.len() as u32,
                    // A job's own step runs under the job's limit.
                    memory: None,
                }
            })
            .collect();
        Some(Grant {
            job: id,
            attempt: job.attempt,
            nodes,
            ntasks: job.ntasks(),
            cpus_per_task: job.sub.shape.cpus_per_task.unwrap_or(1),
            env: self.job_env(job).into_iter().chain(self.mpi_default_for(job)).collect(),
        })
    }

    /// `GANGWAY_MPI` with the site's default, for a job whose environment names no MPI kind.
    fn mpi_default_for(&self, job: &Job) -> Option<(String, String)> {
        let kind = self.config.mpi_default?;
        let chosen = job.sub.env.iter().any(|(k, _)| k == "GANGWAY_MPI");
        (!chosen).then(|| ("GANGWAY_MPI".to_string(), kind.to_string()))
    }
}

/// An array task's array job id and index, as text for its output patterns (`%A`, `%a`).
fn task_ids(job: &Job) -> Option<(String, String)> {
    job.task.map(|t| (t.array.to_string(), t.index.to_string()))
}

/// Where a batch job's output goes by default: `gangway-%j.out`, or `gangway-%A_%a.out` for
/// an array's task, as Slurm names them.
fn default_output(job: &Job) -> &'static str {
    if job.task.is_some() {
        gangway_launcher::output::DEFAULT_ARRAY_OUTPUT
    } else {
        gangway_launcher::output::DEFAULT_BATCH_OUTPUT
    }
}

/// A job's memory limit on one of its nodes, bytes (`None`: none). The grant's memory is a
/// limit only when the job asked for memory: otherwise it is the scheduler's estimate, and the
/// job may use what the node has.
pub(crate) fn memory_limit(job: &Job, g: &GrantedNode) -> Option<u64> {
    (job.sub.shape.mem_per_node.is_some() || job.sub.shape.mem_per_cpu.is_some())
        .then_some(g.memory)
        .filter(|m| *m > 0)
}
