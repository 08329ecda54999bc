//! Which GPUs each task of a job sees, and the variables that tell it (pure).
//!
//! The choice is the topology crate's one GPU-affinity rule ([`GpuChooser`]), so a task's
//! GPUs here are the ones placement and the scheduler's grants would pick for the same CPUs.
//! With `--gpus-per-task` every task gets its own GPUs (none shared while the job holds
//! enough); `--gpu-bind=closest` picks those nearest the task's CPUs (same NUMA node first);
//! without either, every task sees all of the job's GPUs.

use gangway_topology::{CpuSet, GpuChooser, Topology};

use crate::ContainmentError;

/// `--gpu-bind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuBind {
    /// In the order of the model, whatever the task's CPUs.
    #[default]
    None,
    /// Nearest the task's CPUs first.
    Closest,
}

/// What a job's tasks ask of its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuRequest {
    /// `--gpus-per-task`; 0: every task sees all the job's GPUs (or `Closest` picks one set
    /// per task from its CPUs, as many as the job has divided among the tasks).
    pub per_task: u32,
    pub bind: GpuBind,
}

/// How the GPU numbers in `CUDA_VISIBLE_DEVICES` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// The machine's GPU indexes (the job can see every GPU's device node).
    Machine,
    /// 0.. over the job's own GPUs: where the devices controller hides the others, the
    /// runtimes number only what they can open.
    WithinJob,
}

/// Each task's GPUs (indexes as in [`gangway_topology::Gpu::index`]), by task. `job` is what
/// the job holds on this node; `tasks` the CPUs of each of its tasks here.
pub fn assign(
    topology: &Topology,
    job: &CpuSet,
    tasks: &[CpuSet],
    request: GpuRequest,
) -> Result<Vec<Vec<u32>>, ContainmentError> {
    let mut chooser = GpuChooser::new(topology, Some(job));
    let have = chooser.available_count();
    let per_task = match (request.per_task, request.bind) {
        (0, GpuBind::None) => {
            let all: Vec<u32> = job.iter().collect();
            return Ok(vec![all; tasks.len()]);
        }
        (0, GpuBind::Closest) => (have / tasks.len().max(1)).max(1) as u32,
        (n, _) => n,
    };
    let need = tasks.len() * per_task as usize;
    if need > have {
        return Err(ContainmentError::NotEnoughGpus { tasks: tasks.len(), per_task, have });
    }
    let nowhere = CpuSet::new();
    Ok(tasks
        .iter()
        .map(|cpus| {
            let near = if request.bind == GpuBind::Closest { cpus } else { &nowhere };
            let mut picked = chooser.pick(near, per_task);
            picked.sort_unstable();
            picked
        })
        .collect())
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
    use gangway_topology::Shape;

    fn four_gpus_two_sockets() -> Topology {
        let mut shape = Shape::new(2, 4, 1);
        shape.gpus_per_package = 2;
        shape.build().unwrap()
    }

    fn all_gpus(t: &Topology) -> CpuSet {
        t.gpus.iter().map(|g| g.index).collect()
    }

    #[test]
    fn closest_gives_each_task_the_gpus_of_its_socket_without_overlap() {
        let t = four_gpus_two_sockets();
        let tasks: Vec<CpuSet> =
            ["0-1", "2-3", "4-5", "6-7"].iter().map(|s| s.parse().unwrap()).collect();
        let req = GpuRequest { per_task: 1, bind: GpuBind::Closest };
        let got = assign(&t, &all_gpus(&t), &tasks, req).unwrap();
        let mut flat: Vec<u32> = got.iter().flatten().copied().collect();
        flat.sort_unstable();
        assert_eq!(flat, vec![0, 1, 2, 3], "{got:?}");
        for (task, gpus) in tasks.iter().zip(&got) {
            let gpu = t.gpus.iter().find(|g| g.index == gpus[0]).unwrap();
            assert!(gpu.cpuset.intersects(task), "task {task} got far GPU {gpu:?}");
        }
    }

    #[test]
    fn without_gpus_per_task_every_task_sees_the_job() {
        let t = four_gpus_two_sockets();
        let job: CpuSet = "1,3".parse().unwrap();
        let got = assign(&t, &job, &[CpuSet::new(), CpuSet::new()], GpuRequest::default()).unwrap();
        assert_eq!(got, vec![vec![1, 3], vec![1, 3]]);
        let env = task_env(&got[0], &job, Numbering::WithinJob);
        assert_eq!(env[0], ("CUDA_VISIBLE_DEVICES".into(), "0,1".into()));
        assert_eq!(env[2], ("GANGWAY_GPUS".into(), "1,3".into()));
        assert_eq!(task_env(&[3], &job, Numbering::Machine)[1].1, "3");
        assert_eq!(task_env(&[3], &job, Numbering::WithinJob)[1].1, "1");
    }

    #[test]
    fn too_few_gpus_for_the_tasks_is_an_error() {
        let t = four_gpus_two_sockets();
        let job: CpuSet = "0-2".parse().unwrap();
        let req = GpuRequest { per_task: 2, bind: GpuBind::None };
        let e = assign(&t, &job, &[CpuSet::new(), CpuSet::new()], req).unwrap_err();
        assert!(e.to_string().contains("2 GPUs per task for 2 tasks"), "{e}");
    }
}
