//! The `SLURM_*` variables a job's script or allocation sees beside the `GANGWAY_*` ones, so
//! that scripts written for Slurm run unchanged (docs/slurm.md lists them). Pure: built from
//! the job and its grant; `slurm_env = false` in the configuration leaves them out.

use super::state::Job;

/// Counts as Slurm compresses them: `2(x3),1` for 2, 2, 2, 1.
pub fn compress_counts(counts: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < counts.len() {
        let run = counts[i..].iter().take_while(|c| **c == counts[i]).count();
        parts.push(if run > 1 { format!("{}(x{run})", counts[i]) } else { counts[i].to_string() });
        i += run;
    }
    parts.join(",")
}

/// The job-wide variables (per-node ones, `SLURM_NODEID` and `SLURM_CPUS_ON_NODE`, are added
/// where each node's launch is built).
pub fn job_variables(job: &Job, nodelist: &str, cluster: &str) -> Vec<(String, String)> {
    let shape = &job.sub.shape;
    let nnodes = job.granted.len().to_string();
    let tasks: Vec<usize> = job.granted.iter().map(|g| g.tasks.len()).collect();
    let cpus: Vec<usize> = job.granted.iter().map(|g| g.cpus.len()).collect();
    let ntasks = job.ntasks().to_string();
    let mut vars: Vec<(&str, String)> = vec![
        ("SLURM_JOB_ID", job.id.to_string()),
        ("SLURM_JOBID", job.id.to_string()),
        ("SLURM_JOB_NAME", job.sub.name.clone()),
        ("SLURM_JOB_USER", job.user.clone()),
        ("SLURM_JOB_UID", job.uid.to_string()),
        ("SLURM_JOB_GID", job.gid.to_string()),
        ("SLURM_JOB_NODELIST", nodelist.to_string()),
        ("SLURM_NODELIST", nodelist.to_string()),
        ("SLURM_JOB_NUM_NODES", nnodes.clone()),
        ("SLURM_NNODES", nnodes),
        ("SLURM_NTASKS", ntasks.clone()),
        ("SLURM_NPROCS", ntasks),
        ("SLURM_TASKS_PER_NODE", compress_counts(&tasks)),
        ("SLURM_JOB_CPUS_PER_NODE", compress_counts(&cpus)),
        ("SLURM_SUBMIT_DIR", job.sub.cwd.clone()),
        ("SLURM_JOB_PARTITION", job.partition.clone()),
        ("SLURM_CLUSTER_NAME", cluster.to_string()),
        ("SLURM_JOB_NUM_TASKS", job.ntasks().to_string()),
    ];
    // As Slurm: only once the job was requeued (a script tests `-n "$SLURM_RESTART_COUNT"`).
    if job.attempt > 1 {
        vars.push(("SLURM_RESTART_COUNT", (job.attempt - 1).to_string()));
    }
    // As Slurm: these only when the job asked (scripts test them with ${VAR:-default}).
    if let Some(c) = shape.cpus_per_task {
        vars.push(("SLURM_CPUS_PER_TASK", c.to_string()));
    }
    if let Some(n) = shape.ntasks_per_node {
        vars.push(("SLURM_NTASKS_PER_NODE", n.to_string()));
    }
    if let Some(b) = shape.mem_per_node {
        vars.push(("SLURM_MEM_PER_NODE", (b >> 20).to_string()));
    }
    if let Some(b) = shape.mem_per_cpu {
        vars.push(("SLURM_MEM_PER_CPU", (b >> 20).to_string()));
    }
    if let Some(g) = shape.gpus_per_task {
        vars.push(("SLURM_GPUS_PER_TASK", g.to_string()));
    }
    if let Some(d) = &job.sub.dependency {
        vars.push(("SLURM_JOB_DEPENDENCY", d.to_string()));
    }
    if let Some(host) = job.sub.env.iter().find(|(k, _)| k == SUBMIT_HOST).map(|(_, v)| v) {
        vars.push(("SLURM_SUBMIT_HOST", host.clone()));
    }
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The variable the submitting command records its host name in (`SLURM_SUBMIT_HOST` is made
/// from it).
pub const SUBMIT_HOST: &str = "GANGWAY_SUBMIT_HOST";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_compress_as_slurm_prints_them() {
        assert_eq!(compress_counts(&[2, 2, 2]), "2(x3)");
        assert_eq!(compress_counts(&[4, 2, 2, 1]), "4,2(x2),1");
        assert_eq!(compress_counts(&[]), "");
    }
}

#[cfg(test)]
mod launch_tests {
    use crate::controller::scenario::{batch, cluster, root};

    fn value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_started_job_gets_slurms_variables_beside_gangways() {
        let mut c = cluster();
        let mut sub = batch(3, 6);
        sub.shape.cpus_per_task = Some(1);
        sub.env.push((super::SUBMIT_HOST.into(), "login1".into()));
        c.submit(1, &root(), sub, 0);
        c.schedule(0);
        let launch = c.launch_for(1, "n2").expect("a launch for n2");
        let env = &launch.env;
        for (name, want) in [
            ("SLURM_JOB_ID", "1"),
            ("SLURM_JOBID", "1"),
            ("SLURM_JOB_NODELIST", "n[1-3]"),
            ("SLURM_JOB_NUM_NODES", "3"),
            ("SLURM_NTASKS", "6"),
            ("SLURM_TASKS_PER_NODE", "2(x3)"),
            ("SLURM_CPUS_PER_TASK", "1"),
            ("SLURM_JOB_PARTITION", "batch"),
            ("SLURM_CLUSTER_NAME", "t"),
            ("SLURM_SUBMIT_DIR", "/tmp"),
            ("SLURM_SUBMIT_HOST", "login1"),
            ("SLURM_NODEID", "1"),
            ("GANGWAY_JOB_ID", "1"),
        ] {
            assert_eq!(value(env, name), Some(want), "{name}");
        }
        assert_eq!(value(env, "SLURM_NTASKS_PER_NODE"), None, "not asked for");
        assert_eq!(value(env, "SLURM_RESTART_COUNT"), None, "never requeued");
        assert_eq!(value(env, "GANGWAY_RESTART_COUNT"), Some("0"));
    }

    #[test]
    fn slurm_env_false_leaves_them_out() {
        let mut config = crate::controller::scenario::config();
        config.slurm_env = false;
        let mut c = crate::controller::state::Cluster::new(config, 0, Vec::new(), Vec::new(), 1, 0);
        c.listening(crate::controller::state::Mono(0));
        let reg = crate::controller::scenario::registration("n1");
        c.from_agent(
            101,
            "n1",
            crate::protocol::FromAgent::Register(reg),
            0,
            crate::controller::state::Mono(0),
        );
        c.submit(1, &root(), batch(1, 1), 0);
        c.schedule(0);
        let launch = c.launch_for(1, "n1").expect("a launch");
        assert!(launch.env.iter().all(|(k, _)| !k.starts_with("SLURM_")), "{:?}", launch.env);
        assert!(launch.env.iter().any(|(k, _)| k == "GANGWAY_JOB_ID"));
    }
}
