//! Scenario and property tests of the strict-priority pass and of submission checks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gangway_topology::CpuSet;
use proptest::prelude::*;

use crate::allocator::Decision;
use crate::*;

const GIB: Bytes = Bytes::gib(1);

fn cluster(nodes: usize) -> ClusterState {
    ClusterBuilder::new().nodes(nodes).shape(2, 8, 2).build().unwrap()
}

fn job(id: JobId, request: JobRequest) -> PendingJob {
    PendingJob { id, request: request.submitted(Timestamp(id)) }
}

fn starts(decisions: &[Decision]) -> Vec<&JobStart> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Start(s) => Some(s),
            Decision::Wait { .. } => None,
        })
        .collect()
}

fn reason_of(decisions: &[Decision], job: JobId) -> Option<PendingReason> {
    decisions.iter().find_map(|d| match d {
        Decision::Wait { job: j, reason } if *j == job => Some(*reason),
        _ => None,
    })
}

/// Applies every start, failing the test if a CPU or GPU would be handed out twice.
fn apply(state: &mut ClusterState, decisions: &[Decision]) {
    for s in starts(decisions) {
        state.allocate(s).unwrap();
    }
}

#[test]
fn three_node_job_never_starts_on_two_free_nodes() {
    let mut state = cluster(3);
    state.set_health("node3", NodeHealth::Up, None).unwrap();
    // Fill node3 completely, leaving 2 free nodes.
    let first = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node3"]).ntasks(16))]);
    apply(&mut state, &first);
    let d = schedule(&state, &[job(2, JobRequest::new().nodes(3, 3))]);
    assert_eq!(reason_of(&d, 2), Some(PendingReason::Resources));
    state.release(1);
    let d = schedule(&state, &[job(2, JobRequest::new().nodes(3, 3))]);
    let s = starts(&d);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].nodes.len(), 3);
    assert!(s[0].nodes.iter().all(|g| g.tasks.len() == 1));
}

#[test]
fn twenty_small_jobs_pack_cores_without_sharing() {
    let mut state = cluster(2);
    let pending: Vec<PendingJob> =
        (1..=20).map(|id| job(id, JobRequest::new().ntasks(1))).collect();
    let d = schedule(&state, &pending);
    let s = starts(&d);
    assert_eq!(s.len(), 20);
    // 16 cores on node1 first (packing), then node2.
    let on_node1 = s.iter().filter(|s| s.nodes[0].node == "node1").count();
    assert_eq!(on_node1, 16);
    let mut seen = HashSet::new();
    for st in &s {
        for g in &st.nodes {
            assert_eq!(g.cpus.len(), 2, "one core = 2 threads");
            for cpu in g.cpus.iter() {
                assert!(seen.insert((g.node.clone(), cpu)), "cpu {cpu} on {} twice", g.node);
            }
        }
    }
    apply(&mut state, &d);
    assert_eq!(state.node("node1").unwrap().state(), NodeState::Allocated);
    assert_eq!(state.node("node2").unwrap().state(), NodeState::Mixed);
}

#[test]
fn small_job_goes_to_partly_used_node() {
    let mut state = cluster(3);
    let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node2"]).ntasks(4))]);
    apply(&mut state, &d);
    let d = schedule(&state, &[job(2, JobRequest::new().ntasks(4))]);
    assert_eq!(starts(&d)[0].nodes[0].node, "node2");
}

#[test]
fn tasks_stay_inside_a_numa_node() {
    let state = ClusterBuilder::new().nodes(1).shape(2, 8, 1).numa_per_package(2).build().unwrap();
    let topo = Arc::clone(state.nodes()[0].topology());
    let d = schedule(&state, &[job(1, JobRequest::new().ntasks(4).cpus_per_task(4))]);
    let s = starts(&d);
    for t in &s[0].nodes[0].tasks {
        let numa = topo.numa_nodes.iter().filter(|n| n.cpuset.intersects(&t.cpus)).count();
        assert_eq!(numa, 1, "task {:?} spans NUMA nodes", t.cpus);
    }
}

#[test]
fn priority_then_submit_time_order() {
    let state = cluster(1);
    let pending = vec![
        job(1, JobRequest::new().ntasks(16)),
        job(2, JobRequest::new().ntasks(16).priority(5)),
        job(3, JobRequest::new().ntasks(16).priority(5)),
    ];
    let d = schedule(&state, &pending);
    let order: Vec<JobId> = d.iter().map(Decision::job).collect();
    assert_eq!(order, vec![2, 3, 1]);
    assert!(matches!(d[0], Decision::Start(_)));
    assert_eq!(reason_of(&d, 3), Some(PendingReason::Resources));
    // Job 1 would fit nowhere either, but it is behind job 3 for the same node.
    assert_eq!(reason_of(&d, 1), Some(PendingReason::Resources));
}

#[test]
fn lower_priority_job_waits_for_priority_not_backfilled() {
    let mut state = cluster(2);
    let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node1"]).ntasks(8))]);
    apply(&mut state, &d);
    // Job 2 needs both whole nodes: blocked. Job 3 would fit on node2, but node2 is kept
    // for job 2 (strict priority).
    let pending = vec![
        job(2, JobRequest::new().nodes(2, 2).ntasks_per_node(16).priority(10)),
        job(3, JobRequest::new().ntasks(1)),
    ];
    let d = schedule(&state, &pending);
    assert_eq!(reason_of(&d, 2), Some(PendingReason::Resources));
    assert_eq!(reason_of(&d, 3), Some(PendingReason::Priority));
}

#[test]
fn blocked_job_leaves_other_partitions_alone() {
    let state = ClusterBuilder::new()
        .nodes(2)
        .partition_of("a", 0..1, PartitionLimits::new())
        .partition_of("b", 1..2, PartitionLimits::new())
        .build()
        .unwrap();
    let pending = vec![
        job(1, JobRequest::new().partition("a").ntasks(16)),
        job(2, JobRequest::new().partition("a").ntasks(16).priority(1)),
        job(3, JobRequest::new().partition("b").ntasks(4)),
    ];
    let d = schedule(&state, &pending);
    assert_eq!(reason_of(&d, 1), Some(PendingReason::Resources));
    assert_eq!(starts(&d).len(), 2);
}

#[test]
fn held_and_time_limit_and_node_down_reasons() {
    let mut state = ClusterBuilder::new()
        .nodes(2)
        .partition("batch", PartitionLimits::new().max_time(Duration::from_secs(3600)))
        .build()
        .unwrap();
    state.set_health("node2", NodeHealth::Down, Some("not responding".into())).unwrap();
    assert_eq!(state.node("node2").unwrap().state(), NodeState::Down);
    assert_eq!(state.node("node2").unwrap().reason(), Some("not responding"));
    let pending = vec![
        job(1, JobRequest::new().held()),
        job(2, JobRequest::new().time_limit(Duration::from_secs(7200))),
        job(3, JobRequest::new().nodes(2, 2)),
        job(4, JobRequest::new().nodelist(&["node2"])),
        job(5, JobRequest::new().time_limit(Duration::from_secs(60))),
    ];
    let d = schedule(&state, &pending);
    assert_eq!(reason_of(&d, 1), Some(PendingReason::Held));
    assert_eq!(reason_of(&d, 2), Some(PendingReason::PartitionTimeLimit));
    assert_eq!(reason_of(&d, 3), Some(PendingReason::NodeDown));
    assert_eq!(reason_of(&d, 4), Some(PendingReason::NodeDown));
    let s = starts(&d);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].time_limit, Some(Duration::from_secs(60)));
    for health in [NodeHealth::Drained, NodeHealth::Suspect] {
        state.set_health("node2", health, None).unwrap();
        let d = schedule(&state, &[job(3, JobRequest::new().nodes(2, 2))]);
        assert_eq!(reason_of(&d, 3), Some(PendingReason::NodeDown));
    }
}

#[test]
fn partition_default_time_applies() {
    let limits = PartitionLimits::new().default_time(Duration::from_secs(600));
    let state = ClusterBuilder::new().partition("batch", limits).build().unwrap();
    let d = schedule(&state, &[job(1, JobRequest::new())]);
    assert_eq!(starts(&d)[0].time_limit, Some(Duration::from_secs(600)));
}

#[test]
fn exclusive_takes_whole_idle_nodes() {
    let mut state = cluster(2);
    let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node1"]))]);
    apply(&mut state, &d);
    let d = schedule(&state, &[job(2, JobRequest::new().exclusive())]);
    let s = starts(&d);
    let g = &s[0].nodes[0];
    assert_eq!(g.node, "node2", "node1 is partly used");
    assert_eq!(g.cpus.len(), 32);
    assert_eq!(g.memory, state.node("node2").unwrap().total_memory());
    apply(&mut state, &d);
    assert_eq!(state.node("node2").unwrap().state(), NodeState::Allocated);
    // Nothing shares an exclusive node, and exclusive jobs need an untouched node.
    let d = schedule(&state, &[job(3, JobRequest::new().nodelist(&["node2"]))]);
    assert_eq!(reason_of(&d, 3), Some(PendingReason::Resources));
    let d = schedule(&state, &[job(4, JobRequest::new().exclusive())]);
    assert_eq!(reason_of(&d, 4), Some(PendingReason::Resources));
}

#[test]
fn memory_is_accounted() {
    // 2 NUMA nodes × 16 GiB = 32 GiB per node.
    let mut state = cluster(1);
    let d = schedule(
        &state,
        &[
            job(1, JobRequest::new().memory(MemoryRequest::PerNode(Bytes::gib(20)))),
            job(2, JobRequest::new().ntasks(2).memory(MemoryRequest::PerCpu(GIB))),
            job(3, JobRequest::new().memory(MemoryRequest::PerNode(Bytes::gib(20)))),
        ],
    );
    let s = starts(&d);
    assert_eq!(s.len(), 2);
    assert_eq!(reason_of(&d, 3), Some(PendingReason::Resources));
    // Job 2: two tasks of one core (2 CPUs each) at 1 GiB per CPU.
    assert_eq!(s[1].nodes[0].memory, Bytes::gib(4));
    apply(&mut state, &d);
    assert_eq!(state.node("node1").unwrap().allocated_memory(), Bytes::gib(24));
    state.release(1);
    assert_eq!(state.node("node1").unwrap().allocated_memory(), Bytes::gib(4));
}

#[test]
fn gpus_are_accounted_and_near_their_tasks() {
    let mut state = ClusterBuilder::new().nodes(1).gpus_per_package(2).build().unwrap();
    let topo = Arc::clone(state.nodes()[0].topology());
    let d = schedule(&state, &[job(1, JobRequest::new().ntasks(3).gpus_per_task(1))]);
    let s = starts(&d);
    assert_eq!(s[0].nodes[0].gpus.len(), 3);
    for t in &s[0].nodes[0].tasks {
        let gpu = t.gpus.first().unwrap();
        let near = topo.gpus.iter().find(|g| g.index == gpu).unwrap();
        assert!(near.cpuset.intersects(&t.cpus) || t.gpus.len() == 1);
    }
    apply(&mut state, &d);
    let d = schedule(&state, &[job(2, JobRequest::new().ntasks(2).gpus_per_task(1))]);
    assert_eq!(reason_of(&d, 2), Some(PendingReason::Resources));
    let d = schedule(&state, &[job(3, JobRequest::new().gpus_per_task(1))]);
    let s = starts(&d);
    assert_eq!(s[0].nodes[0].gpus.len(), 1);
    assert!(!s[0].nodes[0].gpus.intersects(state.node("node1").unwrap().allocated_gpus()));
}

#[test]
fn node_range_and_tasks_per_node() {
    let state = cluster(4);
    let d = schedule(&state, &[job(1, JobRequest::new().nodes(2, 4).ntasks(40))]);
    let s = starts(&d);
    assert_eq!(s[0].nodes.len(), 3, "fewest nodes that hold 40 tasks of 16 per node");
    let total: usize = s[0].nodes.iter().map(|g| g.tasks.len()).sum();
    assert_eq!(total, 40);
    let d = schedule(&state, &[job(2, JobRequest::new().nodes(2, 2).ntasks_per_node(3))]);
    let s = starts(&d);
    assert!(s[0].nodes.iter().all(|g| g.tasks.len() == 3));
}

#[test]
fn excluded_nodes_are_avoided() {
    let state = cluster(3);
    let mut request = JobRequest::new().exclude(&["node1"]);
    request.excluded_after_failure = vec!["node2".into()];
    assert!(validate(&state, &request).is_ok());
    let d = schedule(&state, &[job(1, request)]);
    assert_eq!(starts(&d)[0].nodes[0].node, "node3", "a node the job lost is avoided");
    let d = schedule(&state, &[job(1, JobRequest::new().exclude(&["node1", "node3"]))]);
    assert_eq!(starts(&d)[0].nodes[0].node, "node2");
    let request = JobRequest::new().exclude(&["node1", "node2", "node3"]);
    assert!(matches!(validate(&state, &request), Err(Rejection::TooManyNodes { .. })));
}

#[test]
fn nodes_lost_once_are_used_again_when_nothing_else_is_left() {
    // The whole cluster stalled: the job lost every node it could use, one after another.
    let state = cluster(2);
    let mut request = JobRequest::new().exclude(&["node1"]);
    request.excluded_after_failure = vec!["node2".into()];
    assert!(validate(&state, &request).is_ok(), "not unsatisfiable: node2 is back");
    let d = schedule(&state, &[job(1, request)]);
    assert_eq!(starts(&d)[0].nodes[0].node, "node2");
    let mut request = JobRequest::new().nodes(2, 2);
    request.excluded_after_failure = vec!["node1".into(), "node2".into()];
    let d = schedule(&state, &[job(2, request)]);
    assert_eq!(starts(&d)[0].nodes.len(), 2);
    // While a node it has not lost can take it, that one is used.
    let mut request = JobRequest::new();
    request.excluded_after_failure = vec!["node1".into()];
    let d = schedule(&state, &[job(3, request)]);
    assert_eq!(starts(&d)[0].nodes[0].node, "node2");
}

#[test]
fn rejections_name_problem_and_fix() {
    let state = ClusterBuilder::new()
        .nodes(4)
        .partition("batch", PartitionLimits::new().max_time(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let msg = |r: JobRequest| validate(&state, &r).unwrap_err().to_string();
    assert_eq!(
        msg(JobRequest::new().nodes(5, 5)),
        "--nodes=5 but partition 'batch' has only 4 nodes; lower --nodes or choose a bigger \
         partition with --partition"
    );
    assert_eq!(
        msg(JobRequest::new().cpus_per_task(17)),
        "--cpus-per-task=17 is more than any node of partition 'batch' has (the largest has \
         16 cores); lower --cpus-per-task"
    );
    assert_eq!(
        msg(JobRequest::new().time_limit(Duration::from_secs(7200))),
        "--time=2:00:00 is over partition 'batch''s limit of 1:00:00; lower --time to at most \
         1:00:00 or choose another partition with --partition"
    );
    assert_eq!(
        msg(JobRequest::new().partition("gpu")),
        "unknown partition 'gpu'; use --partition with one of: batch"
    );
    assert_eq!(
        msg(JobRequest::new().nodelist(&["node1", "nodeX"])),
        "--nodelist names unknown nodes: nodeX; check the names with `gangway nodes`"
    );
    assert!(msg(JobRequest::new().nodes(2, 2).ntasks(65)).contains("do not fit partition"));
    assert!(msg(JobRequest::new().nodes(3, 1)).contains("minimum is above the maximum"));
    assert!(msg(JobRequest::new().nodes(3, 3).ntasks(2)).contains("lower --nodes"));
    assert!(msg(JobRequest::new().gpus_per_task(1)).starts_with(
        "1 GPUs per task is more than any node of partition 'batch' has (the most is 0); ask \
         for fewer (--gpus-per-task, --gres, --gpus, --gpus-per-node)"
    ));
    assert!(
        msg(JobRequest::new().memory(MemoryRequest::PerNode(Bytes::gib(64)))).contains("--mem")
    );
    assert!(msg(JobRequest::new().nodelist(&["node1"]).exclude(&["node1"])).contains("remove"));
    assert!(msg(JobRequest::new().ntasks(0)).contains("--ntasks"));
    assert!(validate(&state, &JobRequest::new().nodes(4, 4).ntasks(64)).is_ok());
    assert!(validate(&ClusterState::new(), &JobRequest::new()).is_err());
}

#[test]
fn a_named_node_that_cannot_hold_a_task_is_named_with_what_it_lacks() {
    // node1 has GPUs, node2 none: -w node2 with a GPU per task can never run, though the
    // partition as a whole could hold the task.
    let mut state = ClusterBuilder::new().nodes(1).gpus_per_package(1).build().unwrap();
    let plain = ClusterBuilder::new().nodes(1).build().unwrap();
    state.add_node("node2", Arc::clone(plain.nodes()[0].topology())).unwrap();
    state.add_partition("mixed", &["node1", "node2"], PartitionLimits::new()).unwrap();
    let msg = |r: JobRequest| validate(&state, &r.partition("mixed")).unwrap_err().to_string();
    assert_eq!(
        msg(JobRequest::new().nodelist(&["node2"]).gpus_per_task(1)),
        "--nodelist names node2, which cannot hold one task of this job even when it is idle: it \
         has 0 GPUs, a task needs 1; drop node2 from --nodelist or ask for less"
    );
    assert!(
        msg(JobRequest::new().nodelist(&["node1"]).cpus_per_task(17))
            .contains("more than any node of partition 'mixed'")
    );
    assert!(
        validate(
            &state,
            &JobRequest::new().partition("mixed").nodelist(&["node1"]).gpus_per_task(1)
        )
        .is_ok()
    );
}

#[test]
fn allocate_refuses_a_cpu_twice() {
    let mut state = cluster(1);
    let d = schedule(&state, &[job(1, JobRequest::new())]);
    apply(&mut state, &d);
    let mut again = starts(&d)[0].clone();
    again.job = 2;
    let err = state.allocate(&again).unwrap_err();
    assert!(err.to_string().contains("job 1 holds them"), "{err}");
}

#[test]
fn schedule_is_deterministic() {
    let state = cluster(8);
    let pending: Vec<PendingJob> = (0..40)
        .map(|id| {
            job(id, JobRequest::new().ntasks(1 + (id as u32 * 7) % 20).priority((id % 3) as u32))
        })
        .collect();
    let mut reversed = pending.clone();
    reversed.reverse();
    assert_eq!(schedule(&state, &pending), schedule(&state, &reversed));
}

proptest! {
    #[test]
    fn no_cpu_is_ever_granted_twice(
        jobs in prop::collection::vec((1u32..4, 1u32..24, 1u32..5, any::<bool>(), 0u32..3), 1..30),
        rounds in 1usize..4,
    ) {
        let mut state = ClusterBuilder::new().nodes(4).shape(2, 4, 2).gpus_per_package(1).build().unwrap();
        let mut next = 0u64;
        for _ in 0..rounds {
            let pending: Vec<PendingJob> = jobs
                .iter()
                .map(|&(nodes, ntasks, cpus, exclusive, gpus)| {
                    next += 1;
                    let mut r = JobRequest::new().nodes(1, nodes).ntasks(ntasks.max(nodes)).cpus_per_task(cpus).priority(ntasks % 3);
                    if exclusive { r = r.exclusive(); }
                    if gpus > 0 && cpus < 3 { r = r.gpus_per_task(1); }
                    job(next, r)
                })
                .collect();
            let decisions = schedule(&state, &pending);
            prop_assert_eq!(decisions.len(), pending.len());
            // allocate() refuses any CPU or GPU already held: it must never fail.
            for s in starts(&decisions) {
                prop_assert!(!s.nodes.is_empty());
                prop_assert!(state.allocate(s).is_ok());
            }
            // Release some to mix freed and held resources.
            for id in (next - pending.len() as u64 + 1..=next).step_by(2) {
                state.release(id);
            }
        }
        for node in state.nodes() {
            let mut seen = CpuSet::new();
            for a in node.allocations() {
                prop_assert!(!seen.intersects(&a.cpus));
                seen |= &a.cpus;
            }
        }
    }
}

/// Regression: the allocator and placement once had a GPU rule each, so the GPUs a job was
/// granted and the GPUs its ranks were bound to could differ. Binding the granted CPUs with the
/// granted GPUs available must give every task exactly the GPUs it was granted.
#[test]
fn gpus_granted_are_the_gpus_bound() {
    use gangway_topology::{
        AllocatedNode, CpuBind, Distribution, NodeDistribution, PlacementRequest,
        SocketDistribution, place,
    };
    let mut state =
        ClusterBuilder::new().nodes(1).shape(2, 8, 1).gpus_per_package(2).build().unwrap();
    // Something already holds a core and a GPU near socket 0, so the choice is not trivial.
    let first = schedule(&state, &[job(1, JobRequest::new().gpus_per_task(1))]);
    apply(&mut state, &first);
    let d =
        schedule(&state, &[job(2, JobRequest::new().ntasks(3).cpus_per_task(2).gpus_per_task(1))]);
    let grant = &starts(&d)[0].nodes[0];
    let topo = Arc::clone(state.nodes()[0].topology());
    let request = PlacementRequest {
        ntasks: 3,
        cpus_per_task: 2,
        gpus_per_task: 1,
        distribution: Distribution {
            node: NodeDistribution::Block,
            socket: SocketDistribution::Block,
        },
        cpu_bind: CpuBind::Cores,
        ..PlacementRequest::default()
    };
    let node = [AllocatedNode {
        topology: &topo,
        cpus: Some(grant.cpus.clone()),
        gpus: Some(grant.gpus.clone()),
    }];
    let bound = place(&request, &node).unwrap();
    for (task, rank) in grant.tasks.iter().zip(&bound.ranks) {
        assert_eq!(task.cpus, rank.binding.cpus);
        let gpus: CpuSet = rank.binding.gpus.iter().copied().collect();
        assert_eq!(task.gpus, gpus);
    }
    assert!(!grant.gpus.intersects(state.node("node1").unwrap().allocated_gpus()));
}

#[test]
fn a_gangs_nodes_are_in_partition_order_whichever_was_chosen_first() {
    let mut state = cluster(3);
    let d = schedule(&state, &[job(1, JobRequest::new().nodelist(&["node2"]).ntasks(4))]);
    apply(&mut state, &d);
    // The partly used node2 is taken first, yet the job's nodes (and rank 0) read as Slurm's.
    let d = schedule(&state, &[job(2, JobRequest::new().nodes(3, 3).ntasks(3))]);
    let nodes: Vec<&str> = starts(&d)[0].nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(nodes, ["node1", "node2", "node3"]);
}
