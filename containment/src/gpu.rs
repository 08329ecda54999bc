//! The variables that tell a task which GPUs it sees (pure). Which GPUs those are is decided
//! by placement (the topology crate's one GPU-affinity rule, `GpuChooser`, nearest the task's
//! CPUs first), the same rule the scheduler's grants follow.

use gangway_topology::CpuSet;

/// How the GPU numbers in `CUDA_VISIBLE_DEVICES` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// The machine's GPU indexes (the job can see every GPU's device node).
    Machine,
    /// 0.. over the job's own GPUs: where the devices controller hides the others, the
    /// runtimes number only what they can open.
    WithinJob,
}

/// The variables that tell a task its GPUs: `CUDA_VISIBLE_DEVICES` and
/// `ROCR_VISIBLE_DEVICES` (numbered as `numbering` says), and `GANGWAY_GPUS` (always the
/// machine's indexes, for logs and tools).
pub fn task_env(task: &[u32], job: &CpuSet, numbering: Numbering) -> Vec<(String, String)> {
    let job_order: Vec<u32> = job.iter().collect();
    let visible: Vec<String> = task
        .iter()
        .map(|g| match numbering {
            Numbering::Machine => g.to_string(),
            Numbering::WithinJob => job_order
                .iter()
                .position(|j| j == g)
                .map(|p| p.to_string())
                .unwrap_or_else(|| g.to_string()),
        })
        .collect();
    let list = |v: Vec<String>| v.join(",");
    let machine: Vec<String> = task.iter().map(u32::to_string).collect();
    vec![
        ("CUDA_VISIBLE_DEVICES".into(), list(visible.clone())),
        ("ROCR_VISIBLE_DEVICES".into(), list(visible)),
        ("GANGWAY_GPUS".into(), list(machine)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_told_its_gpus_in_the_numbering_the_runtimes_see() {
        let job: CpuSet = "1,3".parse().unwrap();
        let env = task_env(&[1, 3], &job, Numbering::WithinJob);
        assert_eq!(env[0], ("CUDA_VISIBLE_DEVICES".into(), "0,1".into()));
        assert_eq!(env[1], ("ROCR_VISIBLE_DEVICES".into(), "0,1".into()));
        assert_eq!(env[2], ("GANGWAY_GPUS".into(), "1,3".into()));
        assert_eq!(task_env(&[3], &job, Numbering::Machine)[1].1, "3");
        assert_eq!(task_env(&[3], &job, Numbering::WithinJob)[1].1, "1");
    }
}
