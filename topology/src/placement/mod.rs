//! Rank placement: pure functions from a [`PlacementRequest`] and node models to each rank's
//! node, CPU set, NUMA/memory node set and GPUs. No I/O, no clocks, no panics.
//!
//! How it works, per node: the node's available CPUs are cut into *units* (cores, or hardware
//! threads with `--cpu-bind=threads`/`--hint=multithread`), ordered socket → NUMA node → core.
//! Each rank takes `cpus_per_task` units following the within-node distribution, then its CPU set
//! is widened to the binding level (core, L3, NUMA node, socket). Block and cyclic keep a rank's
//! units inside one NUMA node, then one socket, whenever the rank fits there.
//!
//! The pieces, one concern each: `request` (what to place, and on what), `outcome` (what was
//! decided) and `error`; `spread` puts ranks on nodes, `layout` cuts one node's CPUs into
//! units, `node` places one node's ranks on them (block, cyclic, fcyclic), `explicit` follows
//! `--cpu-bind=map_cpu/mask_cpu`; each rank's GPUs come from the crate's one GPU-affinity rule
//! ([`crate::GpuChooser`]), which the scheduler's grants use too. This file holds [`place`],
//! which runs them in order.

mod error;
mod explicit;
mod layout;
mod node;
mod outcome;
mod request;
mod spread;

pub use error::PlacementError;
pub use outcome::{Binding, Placement, RankPlacement};
pub use request::{AllocatedNode, CpuUnit, NodeSpec, PlacementNode, PlacementRequest};

use crate::options::CpuBind;
use layout::LayoutCache;
use node::{Scratch, place_node};
use request::cpu_unit;
use spread::{check_map_len, node_counts, rank_order};

/// Places `req.ntasks` ranks on `nodes`.
///
/// Ranks are spread over nodes by `req.distribution.node` (block: balanced contiguous ranges,
/// or `tasks_per_node` per node in order; cyclic; plane), then placed within each node.
/// Identical nodes (the same `&Topology` and allocation, back to back) share the per-node
/// preparation, so 10,000 nodes with one model cost little more than the per-rank work.
pub fn place<N: PlacementNode>(
    req: &PlacementRequest,
    nodes: &[N],
) -> Result<Placement, PlacementError> {
    if req.ntasks == 0 {
        return Err(PlacementError::NoTasks);
    }
    if req.cpus_per_task == 0 {
        return Err(PlacementError::ZeroCpusPerTask);
    }
    if req.tasks_per_node == Some(0) {
        return Err(PlacementError::ZeroTasksPerNode);
    }
    if req.tasks_per_socket == Some(0) {
        return Err(PlacementError::ZeroTasksPerSocket);
    }
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if let CpuBind::MapCpu(_) = req.cpu_bind
        && req.cpus_per_task > 1
    {
        return Err(PlacementError::MapCpuWithCpusPerTask(req.cpus_per_task));
    }
    let unit = cpu_unit(req);

    // Capacity of every node (ranks it can hold without oversubscribing).
    let mut cache = LayoutCache::default();
    let mut units_per_node: Vec<u32> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let layout = cache.get(n, req, unit);
        if layout.units.is_empty() {
            return Err(PlacementError::NoCpus { node: i as u32 });
        }
        units_per_node.push(layout.units.len() as u32);
    }
    let counts = node_counts(req, &units_per_node, unit)?;

    if let CpuBind::MapCpu(v) = &req.cpu_bind {
        check_map_len("map_cpu", "CPUs", v.len(), &counts)?;
    }
    if let CpuBind::MaskCpu(v) = &req.cpu_bind {
        check_map_len("mask_cpu", "masks", v.len(), &counts)?;
    }

    // Rank numbers per node, by the node distribution.
    let first_ranks = rank_order(req, &counts);

    let mut placement = Placement {
        ranks: Vec::with_capacity(req.ntasks as usize),
        tasks_per_node: counts.clone(),
        cpu_bind: req.cpu_bind.clone(),
        distribution: req.distribution,
        mem_bind: req.mem_bind,
        cpu_unit: unit,
        oversubscribed: false,
        binding_relaxed: false,
        notes: Vec::new(),
    };
    let mut scratch = Scratch::default();
    // The previous node's ranks (start in `placement.ranks`, count) when it was placed cleanly.
    let mut last: Option<(usize, u32)> = None;
    for (i, n) in nodes.iter().enumerate() {
        let k = counts.get(i).copied().unwrap_or(0);
        if k == 0 {
            continue;
        }
        let (layout, rebuilt) = cache.get_fresh(n, req, unit);
        let ranks = first_ranks.ranks_of(i);
        // Same model, same allocation, same rank count as the node before: the placement is
        // the same up to rank and node numbers, so copy it (the 10,000-identical-nodes case).
        if let Some((start, prev_k)) = last
            && !rebuilt
            && prev_k == k
            && start + k as usize <= placement.ranks.len()
        {
            // Clone the records in bulk, then renumber them in place: building each record
            // and pushing it staged it through the stack (a store-forwarding stall per rank).
            let from = placement.ranks.len();
            placement.ranks.extend_from_within(start..start + k as usize);
            let copied = placement.ranks.get_mut(from..).unwrap_or_default();
            for (local, r) in (0u32..).zip(copied) {
                r.rank = ranks.get(local);
                r.node = i as u32;
            }
            last = Some((from, k));
            continue;
        }
        let start = placement.ranks.len();
        let notes = placement.notes.len();
        place_node(req, n.topology(), layout, i as u32, k, &ranks, &mut scratch, &mut placement)?;
        // Oversubscribed nodes carry a note each; place them afresh so every note is written.
        last = (placement.notes.len() == notes).then_some((start, k));
    }
    if !placement.ranks.is_sorted_by_key(|r| r.rank) {
        placement.ranks.sort_unstable_by_key(|r| r.rank);
    }
    Ok(placement)
}
