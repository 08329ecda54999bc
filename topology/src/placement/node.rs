//! One node's ranks on its units: block, cyclic and fcyclic assignment, widening to the binding
//! level, memory binding and GPUs.

use std::sync::Arc;

use super::error::PlacementError;
use super::explicit::place_explicit;
use super::layout::{Layout, NONE, Unit};
use super::outcome::{Binding, Placement, RankPlacement};
use super::request::PlacementRequest;
use super::spread::NodeRanks;
use crate::cpuset::CpuSet;
use crate::gpu::GpuChooser;
use crate::model::Topology;
use crate::options::{CpuBind, SocketDistribution};

#[derive(Default)]
pub(super) struct Scratch {
    /// Units of each rank of the node, `c` per rank.
    pub(super) assigned: Vec<u32>,
    pub(super) used: Vec<bool>,
    pub(super) cursor: Vec<u32>,
    pub(super) per_socket: Vec<u32>,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per node in the hot loop; a context struct would only rename these"
)]
pub(super) fn place_node(
    req: &PlacementRequest,
    topo: &Topology,
    layout: &Layout,
    node: u32,
    k: u32,
    ranks: &NodeRanks<'_>,
    scratch: &mut Scratch,
    out: &mut Placement,
) -> Result<(), PlacementError> {
    let c = req.cpus_per_task;
    let total = layout.units.len() as u64;
    let need = u64::from(k) * u64::from(c);
    let explicit = matches!(req.cpu_bind, CpuBind::MapCpu(_) | CpuBind::MaskCpu(_));
    let over = need > total;
    if over && !req.oversubscribe && !explicit {
        return Err(PlacementError::NotEnoughCpus {
            tasks: k,
            cpus_per_task: c,
            need,
            unit: out.cpu_unit,
            scope: format!("node {node}"),
            allows: "allows",
            available: total,
        });
    }
    if let Some(tps) = req.tasks_per_socket {
        let max = u64::from(tps) * layout.sockets.len() as u64;
        if u64::from(k) > max {
            return Err(PlacementError::TasksPerSocket {
                per_socket: tps,
                node,
                sockets: layout.sockets.len(),
                tasks: k,
            });
        }
    }

    if explicit {
        return place_explicit(req, topo, layout, node, k, ranks, out);
    }

    // Pick units for every rank.
    scratch.assigned.clear();
    if over {
        // Oversubscribed: deal units round-robin (only used for GPU nearness); binding relaxed.
        for i in 0..need {
            scratch.assigned.push((i % total.max(1)) as u32);
        }
        out.oversubscribed = true;
        out.binding_relaxed = true;
        out.notes.push(format!(
            "node {node}: {k} tasks x {c} cpus need {need} {}, it allows {total}; oversubscribed \
             (--oversubscribe), binding relaxed to all {} available CPUs",
            out.cpu_unit,
            layout.avail.len()
        ));
    } else {
        let ok = match req.distribution.socket {
            SocketDistribution::Block => {
                assign_block(layout, k, c, req.tasks_per_socket, true, scratch)
                    || assign_block(layout, k, c, req.tasks_per_socket, false, scratch)
            }
            SocketDistribution::Cyclic => {
                assign_cyclic(layout, k, c, req.tasks_per_socket, scratch)
            }
            SocketDistribution::Fcyclic => assign_fcyclic(layout, k, c, scratch),
        };
        if !ok {
            return Err(PlacementError::TasksPerSocket {
                per_socket: req.tasks_per_socket.unwrap_or(0),
                node,
                sockets: layout.sockets.len(),
                tasks: k,
            });
        }
    }

    // GPUs chosen while building ranks, by the one GPU-affinity rule.
    let mut chooser = GpuChooser::new(topo, layout.gpus.as_ref());
    let have_gpus = chooser.available_count();
    if req.gpus_per_task > 0 {
        let need_gpus = u64::from(k) * u64::from(req.gpus_per_task);
        if need_gpus > have_gpus as u64 && (!req.oversubscribe || have_gpus == 0) {
            return Err(PlacementError::NotEnoughGpus {
                per_task: req.gpus_per_task,
                need: need_gpus,
                tasks: k,
                node,
                have: have_gpus,
            });
        }
    }

    let unbound = over || req.cpu_bind == CpuBind::None;
    let gpus_per_rank = req.gpus_per_task > 0 && have_gpus > 0;
    // Unbound ranks all get the node's available CPUs; without per-rank GPUs their bindings
    // are equal, so they share one.
    let mut shared: Option<Arc<Binding>> = None;
    let all_cores: CpuSet =
        if unbound { layout.units.iter().map(|u| u.core).collect() } else { CpuSet::new() };
    let assigned = &scratch.assigned;
    let mut bind = |local: u32| -> Arc<Binding> {
        let lo = (local * c) as usize;
        let units = assigned.get(lo..lo + c as usize).unwrap_or(&[]);
        match &shared {
            Some(b) => Arc::clone(b),
            None => {
                // Allocate an empty binding and fill it where it lives (`Arc::default` builds
                // in place): building it on the stack and moving it in cost a 224-byte copy
                // per rank that stalled on store forwarding (the sets were just written word
                // by word), a tenth of the time of a node.
                let mut arc = Arc::<Binding>::default();
                if let Some(b) = Arc::get_mut(&mut arc) {
                    b.oversubscribed = over;
                    b.unbound = unbound;
                    if gpus_per_rank {
                        b.gpus = chooser.pick(&layout.unit_cpus(units), req.gpus_per_task);
                    }
                    if unbound {
                        b.cpus.clone_from(&layout.avail);
                        b.cores.clone_from(&all_cores);
                    } else {
                        for &u in units {
                            if let Some(unit) = layout.units.get(u as usize) {
                                b.cores.insert(unit.core);
                            }
                        }
                        match req.cpu_bind {
                            CpuBind::Threads => layout.add_unit_cpus(units, &mut b.cpus),
                            CpuBind::Cores => {
                                widen(units, layout, |u| u.core, &layout.core_cpus, &mut b.cpus)
                            }
                            CpuBind::L3 | CpuBind::Numa | CpuBind::Sockets => {
                                widen(units, layout, |u| u.domain, &layout.domain_cpus, &mut b.cpus)
                            }
                            _ => b.cpus.clone_from(&layout.avail),
                        }
                    }
                    layout.add_numa_of(&b.cpus, req.mem_bind, &mut b.numa, &mut b.mem_nodes);
                }
                if unbound && !gpus_per_rank {
                    shared = Some(Arc::clone(&arc));
                }
                arc
            }
        }
    };
    // `extend` over a range writes each record straight into the vector; `push` staged it on
    // the stack in 4-byte halves and reloaded it in 8-byte words, a store-forwarding stall per
    // rank.
    out.ranks.extend((0..k).map(|local| RankPlacement {
        rank: ranks.get(local),
        node,
        local_rank: local,
        binding: bind(local),
    }));
    Ok(())
}

/// Adds to `out` the available CPUs of the domains (core, L3, NUMA node, package) holding
/// `units`; a unit outside any such domain (no L3 in the model) adds its own core.
pub(super) fn widen(
    units: &[u32],
    layout: &Layout,
    domain: impl Fn(&Unit) -> u32,
    sets: &[CpuSet],
    out: &mut CpuSet,
) {
    let mut last = None;
    for &u in units {
        let Some(unit) = layout.units.get(u as usize) else { continue };
        let d = domain(unit);
        // Units come grouped by domain, so skipping repeats avoids most redundant unions.
        if d != NONE && last == Some(d) {
            continue;
        }
        last = Some(d);
        match sets.get(d as usize) {
            Some(s) => *out |= s,
            None => {
                if let Some(s) = layout.core_cpus.get(unit.core as usize) {
                    *out |= s;
                }
            }
        }
    }
}

/// Block: consecutive units. With `aligned`, a rank that does not fit in the rest of its NUMA
/// node (or socket) starts at the next one when it would fit there.
pub(super) fn assign_block(
    layout: &Layout,
    k: u32,
    c: u32,
    tps: Option<u32>,
    aligned: bool,
    s: &mut Scratch,
) -> bool {
    s.assigned.clear();
    s.per_socket.clear();
    s.per_socket.resize(layout.sockets.len(), 0);
    let total = layout.units.len() as u32;
    let mut cur = 0u32;
    for _ in 0..k {
        loop {
            if cur >= total {
                return false;
            }
            let Some(unit) = layout.units.get(cur as usize) else { return false };
            let sock = unit.socket as usize;
            let (ss, se) = layout.sockets.get(sock).copied().unwrap_or((cur, total));
            if tps.is_some_and(|t| s.per_socket.get(sock).copied().unwrap_or(0) >= t) {
                cur = se;
                continue;
            }
            if aligned {
                let (ns, ne) = layout.numa_run.get(cur as usize).copied().unwrap_or((cur, total));
                if ne - cur >= c {
                    break;
                }
                if ne - ns >= c {
                    cur = ne;
                    continue;
                }
                // This NUMA node is too small for any rank: a later one, in this socket or
                // the next, may still hold the rank whole, which beats spanning NUMA nodes.
                if let Some(next) = next_numa_fit(layout, ne, total, c) {
                    cur = next;
                    continue;
                }
                if se - cur >= c {
                    break;
                }
                if se - ss >= c {
                    cur = se;
                    continue;
                }
            }
            if total - cur < c {
                return false;
            }
            break;
        }
        if let Some(unit) = layout.units.get(cur as usize)
            && let Some(n) = s.per_socket.get_mut(unit.socket as usize)
        {
            *n += 1;
        }
        s.assigned.extend(cur..cur + c);
        cur += c;
    }
    true
}

/// Start of the first NUMA run in `[from, end)` (a run boundary) holding at least `c` units.
pub(super) fn next_numa_fit(layout: &Layout, mut from: u32, end: u32, c: u32) -> Option<u32> {
    while from < end {
        let (_, e) = layout.numa_run.get(from as usize).copied()?;
        let e = e.min(end);
        if e - from >= c {
            return Some(from);
        }
        from = e.max(from + 1);
    }
    None
}

/// Start of `c` consecutive units inside one socket from `cur`, preferring a NUMA-aligned run.
pub(super) fn chunk_in_socket(layout: &Layout, mut cur: u32, end: u32, c: u32) -> Option<u32> {
    let start = cur;
    while end.saturating_sub(cur) >= c {
        let (ns, ne) = layout.numa_run.get(cur as usize).copied().unwrap_or((cur, end));
        let ne = ne.min(end);
        if ne - cur >= c || ne - ns < c {
            return Some(cur);
        }
        cur = ne;
    }
    (end.saturating_sub(start) >= c).then_some(start)
}

/// Cyclic: rank by rank round-robin over sockets, each rank's units from one socket; ranks that
/// fit in no socket take the first free units anywhere.
pub(super) fn assign_cyclic(
    layout: &Layout,
    k: u32,
    c: u32,
    tps: Option<u32>,
    s: &mut Scratch,
) -> bool {
    let ns = layout.sockets.len();
    s.assigned.clear();
    s.used.clear();
    s.used.resize(layout.units.len(), false);
    s.cursor.clear();
    s.cursor.extend(layout.sockets.iter().map(|&(a, _)| a));
    s.per_socket.clear();
    s.per_socket.resize(ns, 0);
    let mut next = 0usize;
    for _ in 0..k {
        let mut placed = false;
        for step in 0..ns {
            let sock = (next + step) % ns;
            if tps.is_some_and(|t| s.per_socket.get(sock).copied().unwrap_or(0) >= t) {
                continue;
            }
            let (Some(&(_, end)), Some(&cur)) = (layout.sockets.get(sock), s.cursor.get(sock))
            else {
                continue;
            };
            if let Some(start) = chunk_in_socket(layout, cur, end, c) {
                for u in start..start + c {
                    if let Some(f) = s.used.get_mut(u as usize) {
                        *f = true;
                    }
                }
                s.assigned.extend(start..start + c);
                if let Some(x) = s.cursor.get_mut(sock) {
                    *x = start + c;
                }
                if let Some(x) = s.per_socket.get_mut(sock) {
                    *x += 1;
                }
                next = sock + 1;
                placed = true;
                break;
            }
        }
        if !placed {
            // Larger than any socket's free run: first free units in order.
            let mut got = 0;
            for (u, f) in s.used.iter_mut().enumerate() {
                if got == c {
                    break;
                }
                if !*f {
                    *f = true;
                    s.assigned.push(u as u32);
                    got += 1;
                }
            }
            if got < c {
                return false;
            }
        }
    }
    true
}

/// Fcyclic: unit by unit round-robin over sockets.
pub(super) fn assign_fcyclic(layout: &Layout, k: u32, c: u32, s: &mut Scratch) -> bool {
    let ns = layout.sockets.len();
    s.assigned.clear();
    s.cursor.clear();
    s.cursor.extend(layout.sockets.iter().map(|&(a, _)| a));
    let mut next = 0usize;
    for _ in 0..u64::from(k) * u64::from(c) {
        let mut took = false;
        for step in 0..ns {
            let sock = (next + step) % ns;
            let (Some(&(_, end)), Some(cur)) = (layout.sockets.get(sock), s.cursor.get_mut(sock))
            else {
                continue;
            };
            if *cur < end {
                s.assigned.push(*cur);
                *cur += 1;
                next = sock + 1;
                took = true;
                break;
            }
        }
        if !took {
            return false;
        }
    }
    true
}
