//! Placement cost on a 2-socket, 128-core, 2-thread node and on 10,000 such nodes (the
//! allocator's scale). Target: under 10 µs per node-level placement.

#![expect(clippy::unwrap_used, reason = "a bench that cannot build its input should stop loudly")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gangway_topology::{CpuBind, PlacementRequest, Shape, Topology, place};

fn requests() -> Vec<(&'static str, PlacementRequest)> {
    let r = |ntasks, cpus, bind: &str, dist: &str| PlacementRequest {
        ntasks,
        cpus_per_task: cpus,
        cpu_bind: bind.parse::<CpuBind>().unwrap(),
        distribution: dist.parse().unwrap(),
        ..PlacementRequest::default()
    };
    vec![
        ("128x1-core-block:cyclic", r(128, 1, "core", "block:cyclic")),
        ("256x1-threads-block:block", r(256, 1, "threads", "block:block")),
        ("16x8-core-block:block", r(16, 8, "core", "block:block")),
        ("2x64-socket-block:cyclic", r(2, 64, "socket", "block:cyclic")),
    ]
}

fn node() -> Topology {
    Shape::new(2, 64, 2).build().unwrap()
}

fn one_node(c: &mut Criterion) {
    let built = node();
    let synthetic = Topology::from_synthetic("pack:2 core:64 pu:2").unwrap();
    let mut g = c.benchmark_group("one-node");
    for (name, req) in requests() {
        g.bench_with_input(BenchmarkId::new("built", name), &req, |b, req| {
            b.iter(|| place(black_box(req), &[&built]).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("hwloc-synthetic", name), &req, |b, req| {
            b.iter(|| place(black_box(req), &[&synthetic]).unwrap())
        });
    }
    g.finish();
}

fn ten_thousand_nodes(c: &mut Criterion) {
    const NODES: u32 = 10_000;
    let t = node();
    let nodes = vec![&t; NODES as usize];
    let mut g = c.benchmark_group("10000-nodes");
    g.sample_size(10);
    // Throughput in nodes: criterion's "elem/s" inverted is the time per node-level placement.
    g.throughput(Throughput::Elements(u64::from(NODES)));
    for (name, mut req) in requests() {
        req.ntasks *= NODES;
        g.bench_with_input(BenchmarkId::from_parameter(name), &req, |b, req| {
            b.iter(|| place(black_box(req), &nodes).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, one_node, ten_thousand_nodes);
criterion_main!(benches);
