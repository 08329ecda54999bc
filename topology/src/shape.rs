//! `Shape`: builds regular machine models directly in Rust, without hwloc, for tests, benches
//! and simulated clusters (10,000 nodes sharing one model).

use serde::{Deserialize, Serialize};

use crate::cpuset::{CpuSet, NodeSet};
use crate::error::TopologyError;
use crate::model::{Cache, CacheKind, Core, Gpu, NumaNode, Package, Pu, Topology, TopologySource};

/// How PU OS indexes are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PuNumbering {
    /// Siblings of a core are consecutive: core 0 has PUs 0,1 (AMD/most ARM style).
    #[default]
    Sequential,
    /// Siblings are one core-count apart: core 0 has PUs 0 and N (Intel/Linux style).
    Interleaved,
}

/// A regular machine: every package alike, every NUMA node alike, every core alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Packages (sockets).
    pub packages: u32,
    /// NUMA nodes per package.
    pub numa_per_package: u32,
    /// L3 caches per NUMA node (0: no L3 in the model).
    pub l3_per_numa: u32,
    /// Cores per NUMA node (must divide evenly among its L3 caches).
    pub cores_per_numa: u32,
    /// PUs per core.
    pub pus_per_core: u32,
    /// GPUs per package, attached to the package's first NUMA node.
    pub gpus_per_package: u32,
    /// The model of every GPU (e.g. "Tesla K40m"; `None`: unknown, untyped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    /// Memory of each NUMA node, bytes.
    pub memory_per_numa: u64,
    /// PU OS numbering.
    pub numbering: PuNumbering,
    /// Restricts the allowed CPUs (OS indexes); `None` allows all.
    pub allowed: Option<CpuSet>,
}

impl Shape {
    /// `packages` × `cores_per_package` × `pus_per_core`, one NUMA node and one L3 per package.
    pub fn new(packages: u32, cores_per_package: u32, pus_per_core: u32) -> Self {
        Self {
            packages,
            numa_per_package: 1,
            l3_per_numa: 1,
            cores_per_numa: cores_per_package,
            pus_per_core,
            gpus_per_package: 0,
            gpu_model: None,
            memory_per_numa: 16 << 30,
            numbering: PuNumbering::Sequential,
            allowed: None,
        }
    }

    /// A description like `pack:2 numa:1 l3:1 core:64 pu:2 gpu:0`.
    pub fn description(&self) -> String {
        format!(
            "pack:{} numa:{} l3:{} core:{} pu:{} gpu:{}{}",
            self.packages,
            self.numa_per_package,
            self.l3_per_numa,
            self.cores_per_numa,
            self.pus_per_core,
            self.gpus_per_package,
            match self.numbering {
                PuNumbering::Sequential => "",
                PuNumbering::Interleaved => " interleaved",
            }
        )
    }

    /// Builds the model.
    pub fn build(&self) -> Result<Topology, TopologyError> {
        let s = self;
        if s.packages == 0
            || s.numa_per_package == 0
            || s.cores_per_numa == 0
            || s.pus_per_core == 0
        {
            return Err(TopologyError::Shape(format!(
                "{}: packages, NUMA nodes, cores and PUs must be at least 1",
                s.description()
            )));
        }
        if s.l3_per_numa > 0 && !s.cores_per_numa.is_multiple_of(s.l3_per_numa) {
            return Err(TopologyError::Shape(format!(
                "{}: {} cores per NUMA node do not split evenly over {} L3 caches",
                s.description(),
                s.cores_per_numa,
                s.l3_per_numa
            )));
        }
        let total_cores =
            u64::from(s.packages) * u64::from(s.numa_per_package) * u64::from(s.cores_per_numa);
        let total_pus = total_cores * u64::from(s.pus_per_core);
        if total_pus > 1 << 20 {
            return Err(TopologyError::Shape(format!("{}: more than 2^20 PUs", s.description())));
        }
        let total_cores = total_cores as u32;
        let os_of = |core: u32, thread: u32| match s.numbering {
            PuNumbering::Sequential => core * s.pus_per_core + thread,
            PuNumbering::Interleaved => core + thread * total_cores,
        };
        let complete = CpuSet::with_first(total_pus as u32);
        let allowed =
            s.allowed.as_ref().map_or_else(|| complete.clone(), |a| a.intersection(&complete));
        let mut t = Topology {
            source: TopologySource::Built(s.description()),
            total_memory: 0,
            packages: Vec::new(),
            numa_nodes: Vec::new(),
            caches: Vec::new(),
            cores: Vec::new(),
            pus: Vec::new(),
            gpus: Vec::new(),
            devices: Vec::new(),
            complete_cpuset: complete.clone(),
            online_cpuset: complete,
            allowed_cpuset: allowed,
            allowed_nodeset: NodeSet::new(),
        };
        let cores_per_l3 = s.cores_per_numa.checked_div(s.l3_per_numa).unwrap_or(0);
        for p in 0..s.packages {
            let mut package = Package {
                os_index: Some(p),
                cpuset: CpuSet::new(),
                cores: vec![],
                numa_nodes: vec![],
            };
            for _ in 0..s.numa_per_package {
                let numa_index = t.numa_nodes.len() as u32;
                let mut numa = NumaNode {
                    os_index: numa_index,
                    memory: s.memory_per_numa,
                    subtype: None,
                    cpuset: CpuSet::new(),
                    cores: vec![],
                };
                for c in 0..s.cores_per_numa {
                    let core_index = t.cores.len() as u32;
                    if cores_per_l3 > 0 && c % cores_per_l3 == 0 {
                        t.caches.push(Cache {
                            level: 3,
                            kind: CacheKind::Unified,
                            size: 32 << 20,
                            cpuset: CpuSet::new(),
                            cores: vec![],
                        });
                    }
                    let l3 = (cores_per_l3 > 0).then(|| t.caches.len() as u32 - 1);
                    let mut core = Core {
                        os_index: Some(core_index - p * s.numa_per_package * s.cores_per_numa),
                        package: Some(p),
                        numa: Some(numa_index),
                        l3,
                        pus: vec![],
                        cpuset: CpuSet::new(),
                    };
                    for th in 0..s.pus_per_core {
                        let os = os_of(core_index, th);
                        core.pus.push(t.pus.len() as u32);
                        core.cpuset.insert(os);
                        t.pus.push(Pu {
                            os_index: os,
                            core: core_index,
                            allowed: t.allowed_cpuset.contains(os),
                        });
                    }
                    if let Some(cache) = l3.and_then(|i| t.caches.get_mut(i as usize)) {
                        cache.cpuset |= &core.cpuset;
                        cache.cores.push(core_index);
                    }
                    numa.cpuset |= &core.cpuset;
                    numa.cores.push(core_index);
                    package.cpuset |= &core.cpuset;
                    package.cores.push(core_index);
                    t.cores.push(core);
                }
                package.numa_nodes.push(numa_index);
                t.total_memory += numa.memory;
                if numa.cpuset.intersects(&t.allowed_cpuset) {
                    t.allowed_nodeset.insert(numa.os_index);
                }
                t.numa_nodes.push(numa);
            }
            for g in 0..s.gpus_per_package {
                let first_numa = package.numa_nodes.first().copied().unwrap_or(0);
                let numa = t.numa_nodes.get(first_numa as usize);
                let index = t.gpus.len() as u32;
                t.gpus.push(Gpu {
                    index,
                    names: vec![format!("gpu{index}")],
                    pci_bus_id: Some(format!("0000:{:02x}:{:02x}.0", 0x10 + p, g)),
                    cpuset: numa.map_or_else(CpuSet::new, |n| n.cpuset.clone()),
                    numa_nodes: std::iter::once(first_numa).collect(),
                    model: s.gpu_model.clone(),
                    type_name: None,
                });
            }
            t.packages.push(package);
        }
        t.validate()?;
        Ok(t)
    }
}
