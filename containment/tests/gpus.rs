//! GPUs per task from a real machine's topology (hwloc XML of a two-socket machine with an
//! NVIDIA and an AMD card, both attached to NUMA node 1): assigned per task without overlap,
//! closest first, and exported.

#![expect(clippy::unwrap_used, reason = "helpers outside #[test] fns fail the test by panicking")]

use gangway_containment::gpu::{GpuBind, GpuRequest, Numbering, assign, task_env};
use gangway_topology::{CpuSet, Topology};

fn machine() -> Topology {
    // The topology crate's copy of the export: one copy of the data in the repository.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topology/tests/data/32em64t-2n8c2t-pci-normalio.xml"
    );
    Topology::from_xml_file(path).unwrap()
}

fn near(t: &Topology, gpu: u32, cpus: &CpuSet) -> bool {
    t.gpus.iter().find(|g| g.index == gpu).unwrap().cpuset.intersects(cpus)
}

#[test]
fn tasks_get_their_own_gpus_the_near_ones_first_and_see_them_in_their_environment() {
    let t = machine();
    assert_eq!(t.gpus.len(), 2, "{:#?}", t.gpus);
    let job: CpuSet = t.gpus.iter().map(|g| g.index).collect();
    let numa0 = t.numa_nodes[0].cpuset.clone();
    let numa1 = t.numa_nodes[1].cpuset.clone();
    assert!(t.gpus.iter().all(|g| g.cpuset.intersects(&numa1) && !g.cpuset.intersects(&numa0)));
    let req = GpuRequest { per_task: 1, bind: GpuBind::Closest };

    // A task far from every GPU first, then one next to them: the near one still gets a near
    // GPU, and not the far task's.
    let tasks = vec![numa0.clone(), numa1.clone()];
    let got = assign(&t, &job, &tasks, req).unwrap();
    eprintln!("tasks {tasks:?} got {got:?}");
    assert_ne!(got[0], got[1], "two tasks share a GPU: {got:?}");
    assert!(near(&t, got[1][0], &numa1), "{got:?}");

    // Two tasks on the GPUs' node: one GPU each.
    let halves: Vec<CpuSet> = vec!["8-15".parse().unwrap(), "24-31".parse().unwrap()];
    let got = assign(&t, &job, &halves, req).unwrap();
    assert_ne!(got[0], got[1], "{got:?}");
    for (task, gpus) in got.iter().enumerate() {
        let env = task_env(gpus, &job, Numbering::Machine);
        eprintln!("task {task}: {env:?}");
        let cuda = env.iter().find(|(k, _)| k == "CUDA_VISIBLE_DEVICES").unwrap();
        assert_eq!(cuda.1, gpus[0].to_string());
        assert!(env.iter().any(|(k, v)| k == "ROCR_VISIBLE_DEVICES" && *v == cuda.1));
    }

    // Three tasks cannot each have their own of two GPUs.
    let three = vec![numa0.clone(), numa1.clone(), numa0];
    let e = assign(&t, &job, &three, req).unwrap_err();
    assert!(e.to_string().contains("the job holds 2 here"), "{e}");
}
