//! One scheduling pass of the gang allocator over a simulated 10,000-node cluster
//! (2 sockets × 64 cores × 2 threads per node), half busy, with a realistic pending queue.
//! The figure to watch is the time per decision: the target is well under a millisecond.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gangway_scheduler::allocator::Decision;
use gangway_scheduler::{
    Bytes, ClusterBuilder, ClusterState, JobRequest, MemoryRequest, PartitionLimits, PendingJob,
    Timestamp, schedule,
};

const NODES: usize = 10_000;

/// The cluster with its first half running a mix of jobs (so packing has partly used nodes to
/// consider), as a previous pass left it.
fn busy_cluster() -> ClusterState {
    let limits =
        PartitionLimits::new().max_time(Duration::from_secs(7 * 86_400)).default_partition();
    let mut state = ClusterBuilder::new()
        .nodes(NODES)
        .shape(2, 64, 2)
        .memory_per_numa(256 << 30)
        .partition("batch", limits)
        .build()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    // Fill: 3,000 jobs of 4 nodes × 128 cores and 6,000 one-node jobs of 32 cores.
    let mut running = Vec::new();
    for id in 0..3_000u64 {
        running.push(PendingJob {
            id: 1_000_000 + id,
            request: JobRequest::new().nodes(1, 1).ntasks(32),
        });
    }
    for id in 0..1_000u64 {
        running.push(PendingJob {
            id: 2_000_000 + id,
            request: JobRequest::new().nodes(4, 4).ntasks_per_node(64).cpus_per_task(2),
        });
    }
    for d in schedule(&state, &running) {
        if let Decision::Start(s) = d {
            state.allocate(&s).unwrap_or_else(|e| panic!("allocate: {e}"));
        }
    }
    state
}

/// 1,000 pending jobs: mostly small, some wide, a few that must wait.
fn queue() -> Vec<PendingJob> {
    (0..1_000u64)
        .map(|id| {
            let request = match id % 10 {
                0..=4 => JobRequest::new().ntasks(1 + (id % 16) as u32),
                5 | 6 => JobRequest::new()
                    .ntasks(8)
                    .cpus_per_task(4)
                    .memory(MemoryRequest::PerCpu(Bytes::gib(1))),
                7 => JobRequest::new().nodes(16, 16).ntasks_per_node(128),
                8 => JobRequest::new().nodes(2, 8).ntasks(256).exclusive(),
                _ => JobRequest::new().nodes(64, 64).ntasks_per_node(32).cpus_per_task(4),
            };
            let request = request.priority((id % 3) as u32).submitted(Timestamp(id));
            PendingJob { id, request }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let state = busy_cluster();
    let pending = queue();
    let decisions = schedule(&state, &pending);
    let started = decisions.iter().filter(|d| matches!(d, Decision::Start(_))).count();
    eprintln!("{} decisions, {started} starts", decisions.len());
    let mut group = c.benchmark_group("allocator");
    group.sample_size(10);
    group.throughput(Throughput::Elements(pending.len() as u64));
    group.bench_function("schedule 1000 pending on 10000 nodes", |b| {
        b.iter(|| schedule(black_box(&state), black_box(&pending)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
