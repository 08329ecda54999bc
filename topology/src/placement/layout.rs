//! One node's available CPUs cut into units (cores, or hardware threads) in socket → NUMA →
//! core order, with the domain tables the distributions need, built once per node shape.

use super::request::{CpuUnit, PlacementNode, PlacementRequest};
use crate::cpuset::{CpuSet, NodeSet};
use crate::model::Topology;
use crate::options::{CpuBind, Hint, MemBind};

/// A node's available CPUs cut into units, with the domain tables block/cyclic need.
///
/// Built once per node shape and request, so it holds only what the request's binding uses:
/// per-unit CPU sets are not stored (a unit is a core's available CPUs or one CPU of it), and
/// only the domain table of the binding level is filled.
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub(super) avail: CpuSet,
    /// GPUs (indexes) the job may use; `None`: all of the node's.
    pub(super) gpus: Option<CpuSet>,
    /// Units in socket → NUMA → core order.
    pub(super) units: Vec<Unit>,
    /// Per unit: [start, end) of its NUMA run (within its socket) in `units`.
    pub(super) numa_run: Vec<(u32, u32)>,
    /// Sockets: [start, end) in `units`.
    pub(super) sockets: Vec<(u32, u32)>,
    /// Available CPUs of each core (model index): what a core unit stands for.
    pub(super) core_cpus: Vec<CpuSet>,
    /// Available CPUs of each domain of the binding level (L3 cache, NUMA node or package,
    /// model indexes; [`Unit::domain`] points here); empty for the other bindings.
    pub(super) domain_cpus: Vec<CpuSet>,
    /// NUMA nodes holding available CPUs: cpuset, OS index, memory may be bound there. Nodes
    /// without available CPUs cannot meet a rank's CPUs (always a subset of `avail`).
    pub(super) numa: Vec<(CpuSet, u32, bool)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Unit {
    pub(super) core: u32,
    pub(super) socket: u32,
    pub(super) numa: u32,
    pub(super) package: u32,
    /// Domain of the binding level (index into [`Layout::domain_cpus`]) or [`NONE`].
    pub(super) domain: u32,
    /// The CPU (OS index) of a thread unit; [`NONE`] for a core unit (all of `core_cpus`).
    pub(super) cpu: u32,
}

pub(super) const NONE: u32 = u32::MAX;

impl Unit {
    const EMPTY: Self =
        Unit { core: NONE, socket: 0, numa: NONE, package: NONE, domain: NONE, cpu: NONE };
}

impl Layout {
    pub(super) fn build(
        topo: &Topology,
        extra: Option<&CpuSet>,
        gpus: Option<&CpuSet>,
        req: &PlacementRequest,
        unit: CpuUnit,
    ) -> Self {
        let mut avail = topo.allowed_cpuset.intersection(&topo.online_cpuset);
        if avail.is_empty() {
            // Hand-built models may leave `online_cpuset` empty; the allowed set still holds.
            avail = topo.allowed_cpuset.clone();
        }
        if let Some(e) = extra {
            avail &= e;
        }
        let nomt = req.hint == Hint::Nomultithread;
        // Filled in place: collecting sets returned by value copied each through the stack.
        let mut core_cpus: Vec<CpuSet> = vec![CpuSet::new(); topo.cores.len()];
        for (dst, core) in core_cpus.iter_mut().zip(&topo.cores) {
            if !nomt {
                // Word-wise AND: the common case, and the hot loop of building a layout.
                dst.assign_intersection(&core.cpuset, &avail);
                continue;
            }
            // One thread per core: the core's first available PU in logical order.
            if let Some(os) = core
                .pus
                .iter()
                .filter_map(|&p| topo.pus.get(p as usize))
                .map(|pu| pu.os_index)
                .find(|&os| avail.contains(os))
            {
                dst.insert(os);
            }
        }
        // The domain table of the binding level only: a real machine lists hundreds of L1/L2
        // caches that core or thread binding never looks at.
        let level: fn(&crate::model::Core) -> Option<u32> = match req.cpu_bind {
            CpuBind::L3 => |c| c.l3,
            CpuBind::Numa => |c| c.numa,
            CpuBind::Sockets => |c| c.package,
            _ => |_| None,
        };
        let restrict = |s: &CpuSet| s.intersection(&avail);
        let domain_cpus: Vec<CpuSet> = match req.cpu_bind {
            CpuBind::L3 => topo.caches.iter().map(|c| restrict(&c.cpuset)).collect(),
            CpuBind::Numa => topo.numa_nodes.iter().map(|n| restrict(&n.cpuset)).collect(),
            CpuBind::Sockets => topo.packages.iter().map(|p| restrict(&p.cpuset)).collect(),
            _ => Vec::new(),
        };
        // Exact count first, then every unit written into its slot: pushing a `Unit` kept it
        // alive across the vector's grow call, so it went through the stack and stalled.
        let count: usize = match unit {
            CpuUnit::Core => core_cpus.iter().filter(|s| !s.is_empty()).count(),
            CpuUnit::Thread => core_cpus.iter().map(CpuSet::len).sum(),
        };
        let mut units: Vec<Unit> = vec![Unit::EMPTY; count];
        let mut slots = units.iter_mut();
        for (ci, (core, cpus)) in topo.cores.iter().zip(&core_cpus).enumerate() {
            if cpus.is_empty() {
                continue;
            }
            let u = Unit {
                core: ci as u32,
                socket: 0,
                numa: core.numa.unwrap_or(NONE),
                package: core.package.unwrap_or(NONE),
                domain: level(core).unwrap_or(NONE),
                cpu: NONE,
            };
            match unit {
                CpuUnit::Core => {
                    if let Some(slot) = slots.next() {
                        *slot = u;
                    }
                }
                CpuUnit::Thread => {
                    // CPUs first: `zip` pulls from its first iterator before the second,
                    // so no slot is taken once the core's CPUs run out.
                    for (cpu, slot) in cpus.iter().zip(slots.by_ref()) {
                        *slot = Unit { cpu, ..u };
                    }
                }
            }
        }
        if !units.is_sorted_by_key(|u| (u.package, u.numa)) {
            // Stable: keeps core order inside each (package, NUMA) pair.
            units.sort_by_key(|u| (u.package, u.numa));
        }
        // Sockets: maximal stretches of one package.
        let mut sockets = Vec::new();
        let mut i = 0usize;
        while let Some(package) = units.get(i).map(|u| u.package) {
            let start = i;
            while let Some(u) = units.get_mut(i)
                && u.package == package
            {
                u.socket = sockets.len() as u32;
                i += 1;
            }
            sockets.push((start as u32, i as u32));
        }
        let mut numa_run = Vec::with_capacity(units.len());
        // NUMA runs: maximal stretches of one (package, NUMA) pair.
        let mut i = 0usize;
        while let Some(first) = units.get(i).copied() {
            let start = i;
            while units.get(i).is_some_and(|u| u.package == first.package && u.numa == first.numa) {
                i += 1;
            }
            numa_run.resize(i, (start as u32, i as u32));
        }
        let numa = topo
            .numa_nodes
            .iter()
            .filter(|n| n.cpuset.intersects(&avail))
            .map(|n| (n.cpuset.clone(), n.os_index, topo.allowed_nodeset.contains(n.os_index)))
            .collect();
        Layout {
            avail,
            gpus: gpus.cloned(),
            units,
            numa_run,
            sockets,
            core_cpus,
            domain_cpus,
            numa,
        }
    }

    /// Adds to `numa` the NUMA nodes local to `cpus` (a subset of `avail`), and to `mem` those
    /// of them memory is bound to under `mem_bind`: one pass over the few NUMA nodes.
    pub(super) fn add_numa_of(
        &self,
        cpus: &CpuSet,
        mem_bind: MemBind,
        numa: &mut NodeSet,
        mem: &mut NodeSet,
    ) {
        let local = mem_bind == MemBind::Local;
        for (set, os, bindable) in &self.numa {
            if set.intersects(cpus) {
                numa.insert(*os);
                if local && *bindable {
                    mem.insert(*os);
                }
            }
        }
    }

    /// Adds to `out` the CPUs the units stand for.
    pub(super) fn add_unit_cpus(&self, units: &[u32], out: &mut CpuSet) {
        for &u in units {
            let Some(unit) = self.units.get(u as usize) else { continue };
            if unit.cpu != NONE {
                out.insert(unit.cpu);
            } else if let Some(s) = self.core_cpus.get(unit.core as usize) {
                *out |= s;
            }
        }
    }

    /// The CPUs the units stand for: what GPU nearness looks at.
    pub(super) fn unit_cpus(&self, units: &[u32]) -> CpuSet {
        let mut out = CpuSet::new();
        self.add_unit_cpus(units, &mut out);
        out
    }
}

/// Remembers the last node's layout: identical nodes (same model by reference, same
/// allocation) come back to back in big clusters.
#[derive(Default)]
pub(super) struct LayoutCache {
    pub(super) key: Option<(*const Topology, Option<CpuSet>, Option<CpuSet>)>,
    pub(super) layout: Layout,
}

impl LayoutCache {
    pub(super) fn get<N: PlacementNode>(
        &mut self,
        n: &N,
        req: &PlacementRequest,
        unit: CpuUnit,
    ) -> &Layout {
        self.get_fresh(n, req, unit).0
    }

    /// The layout, and whether it had to be built (a different node shape than the last).
    pub(super) fn get_fresh<N: PlacementNode>(
        &mut self,
        n: &N,
        req: &PlacementRequest,
        unit: CpuUnit,
    ) -> (&Layout, bool) {
        let topo = n.topology();
        let ptr: *const Topology = topo;
        let hit = match &self.key {
            Some((p, a, g)) => {
                std::ptr::eq(*p, ptr)
                    && a.as_ref() == n.available()
                    && g.as_ref() == n.available_gpus()
            }
            None => false,
        };
        if !hit {
            self.layout = Layout::build(topo, n.available(), n.available_gpus(), req, unit);
            self.key = Some((ptr, n.available().cloned(), n.available_gpus().cloned()));
        }
        (&self.layout, !hit)
    }
}
