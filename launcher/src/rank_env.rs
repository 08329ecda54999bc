//! The environment each rank starts with: the `--export` policy plus the job's own variables.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Which of the launcher's environment variables reach the ranks (`--export`, as in srun).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPolicy {
    /// Pass the whole environment (`ALL`), or only the named variables.
    pub all: bool,
    /// Variables to pass by name (taken from the launcher's environment when present).
    pub names: Vec<String>,
    /// Variables given a value on the command line (`NAME=value`).
    pub values: Vec<(String, String)>,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy { all: true, names: Vec::new(), values: Vec::new() }
    }
}

/// An `--export` value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--export '{value}': {problem} (examples: ALL, NONE, ALL,OMP_NUM_THREADS=4, PATH,HOME)")]
pub struct ExportError {
    value: String,
    problem: String,
}

impl std::str::FromStr for ExportPolicy {
    type Err = ExportError;

    fn from_str(value: &str) -> Result<Self, ExportError> {
        let fail = |problem: String| ExportError { value: value.to_string(), problem };
        let mut policy = ExportPolicy { all: false, names: Vec::new(), values: Vec::new() };
        for (i, item) in value.split(',').enumerate() {
            let item = item.trim();
            match item {
                "" => return Err(fail(format!("item {} is empty", i + 1))),
                "ALL" => policy.all = true,
                "NONE" | "NIL" => {}
                _ => {
                    let (name, val) = match item.split_once('=') {
                        Some((n, v)) => (n, Some(v)),
                        None => (item, None),
                    };
                    if !is_variable_name(name) {
                        return Err(fail(format!("'{name}' is not a variable name")));
                    }
                    match val {
                        Some(v) => policy.values.push((name.to_string(), v.to_string())),
                        None => policy.names.push(name.to_string()),
                    }
                }
            }
        }
        Ok(policy)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Variables that belong to a launcher: never inherited from an outer job, always set by us.
///
/// An inherited `PMI_FD` or `PMI_VERSION` from an enclosing launcher would point MPI at the
/// wrong socket or at the slow hostname exchange, so these are dropped even under `ALL`.
fn is_launcher_owned(name: &[u8]) -> bool {
    name.starts_with(b"PMI_")
        || name.starts_with(b"PMIX_")
        || name.starts_with(b"GANGWAY_")
        || name == b"MPI_LOCALRANKID"
        || name == b"MPI_LOCALNRANKS"
}

/// The part of every rank's environment that does not depend on the rank.
pub fn base_environment(
    policy: &ExportPolicy,
    launcher_env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = launcher_env
        .into_iter()
        .filter(|(name, _)| !is_launcher_owned(name.as_bytes()))
        // As srun's --export=NONE: the job's SLURM_* variables still reach the tasks.
        .filter(|(name, _)| {
            policy.all
                || name.as_bytes().starts_with(b"SLURM_")
                || policy.names.iter().any(|n| n.as_bytes() == name.as_bytes())
        })
        .collect();
    for (name, value) in &policy.values {
        env.retain(|(n, _)| n.as_os_str() != OsStr::new(name));
        env.push((name.into(), value.into()));
    }
    env
}

/// What a rank needs to know about its place in the job.
#[derive(Debug, Clone)]
pub struct RankIdentity<'a> {
    pub job_id: &'a str,
    pub rank: u32,
    pub size: u32,
    pub local_rank: u32,
    pub local_size: u32,
    pub node_id: u32,
    pub nnodes: u32,
    pub nodelist: &'a str,
    /// The global ranks on this node (Slurm's `SLURM_GTIDS`).
    pub node_ranks: &'a [u32],
}

/// The job variables of one rank (PMI connection variables are added by the PMI server).
pub fn rank_variables(id: &RankIdentity<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("GANGWAY_JOB_ID", id.job_id.to_string()),
        ("GANGWAY_RANK", id.rank.to_string()),
        ("GANGWAY_SIZE", id.size.to_string()),
        ("GANGWAY_LOCAL_RANK", id.local_rank.to_string()),
        ("GANGWAY_LOCAL_SIZE", id.local_size.to_string()),
        ("GANGWAY_NODE_ID", id.node_id.to_string()),
        ("GANGWAY_NNODES", id.nnodes.to_string()),
        ("GANGWAY_NODELIST", id.nodelist.to_string()),
        ("MPI_LOCALRANKID", id.local_rank.to_string()),
        ("MPI_LOCALNRANKS", id.local_size.to_string()),
        ("PMI_RANK", id.rank.to_string()),
        ("PMI_SIZE", id.size.to_string()),
    ]
}

/// The variable that holds a task's own pid (Slurm's), filled in by the started process.
pub const TASK_PID: &str = "SLURM_TASK_PID";

/// Its value until then: room for any pid (`/proc/sys/kernel/pid_max` is at most 2^22).
pub const TASK_PID_SLOT: &str = "0000000000";

/// A rank's whole environment: the base, its job variables, its PMI connection, its binding.
///
/// `OMP_NUM_THREADS` follows `--cpus-per-task` unless the user set it.
pub fn rank_environment(
    base: &[(OsString, OsString)],
    id: &RankIdentity<'_>,
    pmi: &[(String, String)],
    binding: Option<&gangway_topology::Binding>,
    cpus_per_task: u32,
    gpu_numbering: Option<&gangway_topology::CpuSet>,
) -> Vec<(OsString, OsString)> {
    let mut env = base.to_vec();
    let mut extra: Vec<(&str, String)> = rank_variables(id);
    extra.extend(pmi.iter().map(|(name, value)| (name.as_str(), value.clone())));
    let mut gpu_vars = Vec::new();
    if let Some(b) = binding {
        extra.push(("GANGWAY_CPUS", b.cpus.to_list_string()));
        extra.push(("GANGWAY_MEM_NODES", b.mem_nodes.to_list_string()));
        if !b.gpus.is_empty() {
            // CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES and GANGWAY_GPUS, numbered 0.. over
            // the job's GPUs where its cgroup hides the others (`gpu_numbering`).
            use gangway_containment::gpu::{Numbering, task_env};
            gpu_vars = match gpu_numbering {
                Some(job) => task_env(&b.gpus, job, Numbering::WithinJob),
                None => task_env(&b.gpus, &b.gpus.iter().copied().collect(), Numbering::Machine),
            };
        }
    }
    extra.extend(gpu_vars.iter().map(|(name, value)| (name.as_str(), value.clone())));
    // Inside a job that has Slurm's variables (a gangway job with `slurm_env`, or a Slurm
    // allocation), each task gets Slurm's task variables too.
    if env.iter().any(|(n, _)| n == "SLURM_JOB_ID") {
        extra.push(("SLURM_PROCID", id.rank.to_string()));
        extra.push(("SLURM_LOCALID", id.local_rank.to_string()));
        extra.push(("SLURM_NODEID", id.node_id.to_string()));
        let gtids: Vec<String> = id.node_ranks.iter().map(u32::to_string).collect();
        extra.push(("SLURM_GTIDS", gtids.join(",")));
        // The task's own pid, which only the started process knows: spawn.rs writes it here.
        extra.push((TASK_PID, TASK_PID_SLOT.to_string()));
    }
    if !env.iter().any(|(n, _)| n == "OMP_NUM_THREADS") {
        extra.push(("OMP_NUM_THREADS", cpus_per_task.to_string()));
    }
    for (name, value) in extra {
        env.retain(|(n, _)| n.as_os_str() != name);
        env.push((name.into(), value.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(a, b)| (OsString::from(a), OsString::from(b))).collect()
    }

    fn names(env: &[(OsString, OsString)]) -> Vec<String> {
        env.iter()
            .map(|(n, v)| format!("{}={}", n.to_string_lossy(), v.to_string_lossy()))
            .collect()
    }

    #[test]
    fn all_passes_everything_but_launcher_variables() {
        let out = base_environment(
            &ExportPolicy::default(),
            env(&[
                ("PATH", "/bin"),
                ("PMI_FD", "3"),
                ("PMI_VERSION", "2"),
                ("GANGWAY_RANK", "7"),
                ("HOME", "/h"),
            ]),
        );
        assert_eq!(names(&out), ["PATH=/bin", "HOME=/h"]);
    }

    #[test]
    fn list_without_all_passes_only_named() {
        let policy: ExportPolicy = "PATH,FOO=bar".parse().unwrap();
        let out =
            base_environment(&policy, env(&[("PATH", "/bin"), ("HOME", "/h"), ("FOO", "old")]));
        assert_eq!(names(&out), ["PATH=/bin", "FOO=bar"]);
    }

    #[test]
    fn all_with_overrides_and_none() {
        let policy: ExportPolicy = "ALL,OMP_NUM_THREADS=4".parse().unwrap();
        let out = base_environment(&policy, env(&[("PATH", "/bin"), ("OMP_NUM_THREADS", "1")]));
        assert_eq!(names(&out), ["PATH=/bin", "OMP_NUM_THREADS=4"]);
        let none: ExportPolicy = "NONE".parse().unwrap();
        assert!(base_environment(&none, env(&[("PATH", "/bin")])).is_empty());
    }

    #[test]
    fn values_may_contain_equals() {
        let policy: ExportPolicy = "A=b=c".parse().unwrap();
        assert_eq!(policy.values, [("A".to_string(), "b=c".to_string())]);
    }

    #[test]
    fn bad_export_values_name_the_problem() {
        assert!(
            "ALL,,X".parse::<ExportPolicy>().unwrap_err().to_string().contains("item 2 is empty")
        );
        assert!("1X=2".parse::<ExportPolicy>().unwrap_err().to_string().contains("'1X'"));
        assert!("A B".parse::<ExportPolicy>().unwrap_err().to_string().contains("'A B'"));
    }

    #[test]
    fn a_tasks_gpus_are_numbered_within_the_job_where_its_cgroup_hides_the_others() {
        let id = RankIdentity {
            job_id: "7",
            rank: 1,
            size: 2,
            local_rank: 1,
            local_size: 2,
            node_id: 0,
            nnodes: 1,
            nodelist: "n1",
            node_ranks: &[0, 1],
        };
        let binding = gangway_topology::Binding { gpus: vec![3], ..Default::default() };
        let var = |env: &[(OsString, OsString)], name: &str| {
            env.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_string_lossy().into_owned())
        };
        let job: gangway_topology::CpuSet = "1,3".parse().unwrap();
        let env = rank_environment(&[], &id, &[], Some(&binding), 1, Some(&job));
        assert_eq!(var(&env, "CUDA_VISIBLE_DEVICES").as_deref(), Some("1"), "{env:?}");
        assert_eq!(var(&env, "ROCR_VISIBLE_DEVICES").as_deref(), Some("1"));
        assert_eq!(var(&env, "GANGWAY_GPUS").as_deref(), Some("3"), "machine indexes");
        let env = rank_environment(&[], &id, &[], Some(&binding), 1, None);
        assert_eq!(var(&env, "CUDA_VISIBLE_DEVICES").as_deref(), Some("3"));
    }
}
