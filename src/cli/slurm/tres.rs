//! Slurm's TRES strings for a job's GPUs (`TresPerTask`, `TresPerNode`), as `scontrol show job`,
//! `gangway show job` and `squeue %b` print them (pure).

use crate::protocol::JobInfo;

/// The GPUs each task asks for, as Slurm's `TresPerTask`: `gres/gpu:k40m:1`, `gres/gpu:2`.
pub fn per_task(j: &JobInfo) -> Option<String> {
    let gpus = j.shape.gpus_per_task.filter(|g| *g > 0)?;
    Some(match &j.shape.gpu_type {
        Some(t) => format!("gres/gpu:{t}:{gpus}"),
        None => format!("gres/gpu:{gpus}"),
    })
}

/// The GPUs each node of the job holds, as Slurm's `TresPerNode` (`squeue %b`): its tasks'
/// GPUs when they spread evenly over its nodes, else per task.
pub fn per_node(j: &JobInfo) -> Option<String> {
    let gpus = j.shape.gpus_per_task.filter(|g| *g > 0)?;
    let nodes =
        if j.nodes.is_empty() { j.shape.min_nodes.unwrap_or(1) } else { j.nodes.len() as u32 };
    let per_node = match j.shape.ntasks_per_node {
        Some(t) => Some(t),
        None => (nodes > 0 && j.ntasks.is_multiple_of(nodes)).then(|| j.ntasks / nodes),
    };
    let Some(tasks) = per_node else { return per_task(j) };
    let count = gpus.saturating_mul(tasks);
    Some(match &j.shape.gpu_type {
        Some(t) => format!("gres/gpu:{t}:{count}"),
        None => format!("gres/gpu:{count}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shape;

    #[test]
    fn gpus_show_per_task_and_per_node_as_slurm_prints_them() {
        let shape = Shape {
            ntasks: Some(4),
            min_nodes: Some(2),
            gpus_per_task: Some(1),
            gpu_type: Some("k40m".parse().unwrap()),
            ..Shape::default()
        };
        let job =
            JobInfo { ntasks: 4, shape, ..crate::cli::array_rows::test_line(7, "PENDING", None) };
        assert_eq!(per_task(&job).as_deref(), Some("gres/gpu:k40m:1"));
        assert_eq!(per_node(&job).as_deref(), Some("gres/gpu:k40m:2"));
        let untyped = JobInfo { shape: Shape { gpu_type: None, ..job.shape.clone() }, ..job };
        assert_eq!(per_task(&untyped).as_deref(), Some("gres/gpu:1"));
        assert_eq!(per_node(&untyped).as_deref(), Some("gres/gpu:2"));
        let none = JobInfo { shape: Shape::default(), ..untyped };
        assert_eq!((per_task(&none), per_node(&none)), (None, None));
    }
}
