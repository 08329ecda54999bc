//! The hardware model: machine → packages → NUMA nodes → caches → cores → PUs, plus OS devices
//! and GPUs with their locality. Stored as flat vectors linked by index (placement walks them
//! in tight loops); every other part of gangway sees only this model, never hwloc.

use serde::{Deserialize, Serialize};

use crate::cpuset::{CpuSet, NodeSet};
use crate::error::TopologyError;
use crate::gpu_type::GpuType;

/// Where a model came from; shown by `gangway topology` and kept in JSON exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum TopologySource {
    /// Discovered on the running machine.
    Machine,
    /// Loaded from an hwloc XML export at this path.
    XmlFile(String),
    /// Built by hwloc from a synthetic description such as `pack:2 core:4 pu:2`.
    Synthetic(String),
    /// Built directly in Rust (tests, simulated clusters) from this shape description.
    Built(String),
}

/// One node's hardware. Indexes stored in the fields (`Core::package`, `Core::pus`, ...) are
/// positions in the corresponding vectors, which equal hwloc's logical indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Where the model came from.
    pub source: TopologySource,
    /// Total memory of all NUMA nodes, bytes.
    pub total_memory: u64,
    /// Processor packages (sockets), in logical order.
    pub packages: Vec<Package>,
    /// NUMA nodes (memory banks), in logical order; some may have no CPUs.
    pub numa_nodes: Vec<NumaNode>,
    /// Data and unified CPU caches of every level.
    pub caches: Vec<Cache>,
    /// Cores, in logical order (a PU with no core above it gets a core of its own).
    pub cores: Vec<Core>,
    /// Processing units (hardware threads), in logical order.
    pub pus: Vec<Pu>,
    /// GPUs, one per physical device (hwloc may show several OS devices for one card).
    pub gpus: Vec<Gpu>,
    /// Every OS device hwloc reported (GPUs, NICs, disks, ...).
    pub devices: Vec<OsDevice>,
    /// Every CPU the OS knows of, including offline and disallowed ones.
    pub complete_cpuset: CpuSet,
    /// CPUs that are online (present in the tree).
    pub online_cpuset: CpuSet,
    /// CPUs this process may use (cgroup/cpuset restrictions applied).
    pub allowed_cpuset: CpuSet,
    /// NUMA nodes this process may allocate memory on.
    pub allowed_nodeset: NodeSet,
}

/// A processor package (socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// OS index, when the OS reports one.
    pub os_index: Option<u32>,
    /// PUs of the package (OS indexes).
    pub cpuset: CpuSet,
    /// Cores of the package (indexes into [`Topology::cores`]).
    pub cores: Vec<u32>,
    /// NUMA nodes whose CPUs lie inside this package (indexes into [`Topology::numa_nodes`]).
    pub numa_nodes: Vec<u32>,
}

/// A NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// OS index (what `mbind`/`set_mempolicy` take).
    pub os_index: u32,
    /// Local memory, bytes (0 when unknown).
    pub memory: u64,
    /// Memory kind when hwloc knows it (`DRAM`, `MCDRAM`, `HBM`, ...).
    pub subtype: Option<String>,
    /// CPUs local to this node (OS indexes); empty for CPU-less memory.
    pub cpuset: CpuSet,
    /// Cores local to this node (indexes into [`Topology::cores`]).
    pub cores: Vec<u32>,
}

/// Kind of a CPU cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// Holds data and instructions.
    Unified,
    /// Data only.
    Data,
    /// Instructions only.
    Instruction,
}

/// A CPU cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cache {
    /// 1 for L1, 2 for L2, ...
    pub level: u8,
    /// What the cache holds.
    pub kind: CacheKind,
    /// Size in bytes (0 when unknown).
    pub size: u64,
    /// CPUs sharing the cache (OS indexes).
    pub cpuset: CpuSet,
    /// Cores sharing the cache (indexes into [`Topology::cores`]).
    pub cores: Vec<u32>,
}

/// A core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Core {
    /// OS index, when the OS reports one.
    pub os_index: Option<u32>,
    /// Package holding the core, if the machine has packages.
    pub package: Option<u32>,
    /// First NUMA node local to the core.
    pub numa: Option<u32>,
    /// Last-level-3 cache over the core (index into [`Topology::caches`]).
    pub l3: Option<u32>,
    /// PUs of the core (indexes into [`Topology::pus`]).
    pub pus: Vec<u32>,
    /// PUs of the core (OS indexes).
    pub cpuset: CpuSet,
}

/// A processing unit (hardware thread).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pu {
    /// OS index: the CPU number the kernel uses.
    pub os_index: u32,
    /// Core holding the PU (index into [`Topology::cores`]).
    pub core: u32,
    /// Whether this process may run on it.
    pub allowed: bool,
}

/// Kind of an OS device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Display/compute GPU (DRM card, NVML, RSMI, ...).
    Gpu,
    /// Compute co-processor (CUDA, OpenCL, ...).
    CoProcessor,
    /// Network interface.
    Network,
    /// InfiniBand / OpenFabrics HCA.
    OpenFabrics,
    /// Disk or other storage.
    Storage,
    /// DMA engine.
    Dma,
    /// Anything else.
    Other,
}

/// An OS device (what hwloc calls an OS device) with its locality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsDevice {
    /// OS name (`eth0`, `cuda0`, `card1`, `mlx5_0`).
    pub name: String,
    /// Kind of device.
    pub kind: DeviceKind,
    /// Finer kind when hwloc knows it (`CUDA`, `OpenCL`, `Disk`, ...).
    pub subtype: Option<String>,
    /// PCI bus id `dddd:bb:dd.f` of the device holding it, if on PCI.
    pub pci_bus_id: Option<String>,
    /// CPUs close to the device.
    pub cpuset: CpuSet,
    /// NUMA nodes close to the device (OS indexes).
    pub numa_nodes: NodeSet,
}

/// A GPU: one physical device, whatever number of OS devices name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Index as `CUDA_VISIBLE_DEVICES`/`ROCR_VISIBLE_DEVICES` count them (order of discovery).
    pub index: u32,
    /// OS names of the device (`card0`, `cuda0`, `nvml0`, ...).
    pub names: Vec<String>,
    /// PCI bus id, if known.
    pub pci_bus_id: Option<String>,
    /// CPUs close to the GPU.
    pub cpuset: CpuSet,
    /// NUMA nodes close to the GPU (OS indexes).
    pub numa_nodes: NodeSet,
    /// The model hwloc reports (`GPUModel`, else the PCI device's name), e.g. "Tesla K40m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The type a site's configuration names this model (`[gpu_types]`), over the derived one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<GpuType>,
}

impl Gpu {
    /// The type users ask for (`--gres=gpu:k40m:1`): the configured one, else derived from the
    /// model ([`GpuType::of_model`]); `None`: the GPU can only be asked for untyped.
    pub fn gpu_type(&self) -> Option<GpuType> {
        self.type_name.clone().or_else(|| self.model.as_deref().and_then(GpuType::of_model))
    }
}

/// Counts of allowed objects, comparable with `hwloc-calc -N TYPE all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Packages with at least one allowed PU.
    pub packages: usize,
    /// NUMA nodes with at least one allowed PU.
    pub numa_nodes: usize,
    /// Cores with at least one allowed PU.
    pub cores: usize,
    /// Allowed PUs.
    pub pus: usize,
    /// GPUs.
    pub gpus: usize,
    /// OS devices.
    pub os_devices: usize,
}

impl Topology {
    /// Cores of NUMA node `numa` (index into [`Topology::numa_nodes`]); empty if out of range.
    pub fn cores_of_numa(&self, numa: usize) -> &[u32] {
        self.numa_nodes.get(numa).map_or(&[], |n| &n.cores)
    }

    /// Cores of package `package`; empty if out of range.
    pub fn cores_of_package(&self, package: usize) -> &[u32] {
        self.packages.get(package).map_or(&[], |p| &p.cores)
    }

    /// PUs of core `core` (indexes into [`Topology::pus`]); empty if out of range.
    pub fn pus_of_core(&self, core: usize) -> &[u32] {
        self.cores.get(core).map_or(&[], |c| &c.pus)
    }

    /// The PU with this OS index.
    pub fn pu_by_os_index(&self, os_index: u32) -> Option<(usize, &Pu)> {
        self.pus.iter().enumerate().find(|(_, p)| p.os_index == os_index)
    }

    /// Allowed PUs of a core as a set of OS indexes.
    pub fn allowed_pus_of_core(&self, core: usize) -> CpuSet {
        self.cores
            .get(core)
            .map_or_else(CpuSet::new, |c| c.cpuset.intersection(&self.allowed_cpuset))
    }

    /// NUMA nodes (OS indexes) whose CPUs intersect `cpus` and which memory may be bound to.
    pub fn local_numa_nodes(&self, cpus: &CpuSet) -> NodeSet {
        self.numa_nodes
            .iter()
            .filter(|n| n.cpuset.intersects(cpus) && self.allowed_nodeset.contains(n.os_index))
            .map(|n| n.os_index)
            .collect()
    }

    /// Counts of allowed objects (what `hwloc-calc -N TYPE all` prints).
    pub fn counts(&self) -> Counts {
        let a = &self.allowed_cpuset;
        Counts {
            packages: self.packages.iter().filter(|p| p.cpuset.intersects(a)).count(),
            numa_nodes: self.numa_nodes.iter().filter(|n| n.cpuset.intersects(a)).count(),
            cores: self.cores.iter().filter(|c| c.cpuset.intersects(a)).count(),
            pus: self.pus.iter().filter(|p| p.allowed).count(),
            gpus: self.gpus.len(),
            os_devices: self.devices.len(),
        }
    }

    /// Serializes the model as JSON (what `gangway topology --json` prints and agents send).
    pub fn to_json(&self) -> String {
        // Serializing plain structs with string keys cannot fail; fall back to an empty object
        // rather than panic if serde ever disagrees.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a model written by [`Topology::to_json`], checking that its indexes are coherent.
    pub fn from_json(text: &str) -> Result<Self, TopologyError> {
        let t: Self = serde_json::from_str(text).map_err(|e| TopologyError::Json(e.to_string()))?;
        t.validate()?;
        Ok(t)
    }

    /// Checks that every index stored in the model points inside its vector and that PU/core
    /// links agree, so placement can trust them.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let bad = |what: String| Err(TopologyError::Inconsistent(what));
        let (np, nn, nc, nk) =
            (self.packages.len(), self.numa_nodes.len(), self.cores.len(), self.caches.len());
        for (i, c) in self.cores.iter().enumerate() {
            if c.package.is_some_and(|p| p as usize >= np) {
                return bad(format!("core {i} names package {:?} of {np}", c.package));
            }
            if c.numa.is_some_and(|p| p as usize >= nn) {
                return bad(format!("core {i} names NUMA node {:?} of {nn}", c.numa));
            }
            if c.l3.is_some_and(|p| p as usize >= nk) {
                return bad(format!("core {i} names cache {:?} of {nk}", c.l3));
            }
            for &p in &c.pus {
                match self.pus.get(p as usize) {
                    Some(pu) if pu.core as usize == i => {}
                    _ => return bad(format!("core {i} lists PU {p} which is not its own")),
                }
            }
        }
        for (i, p) in self.pus.iter().enumerate() {
            if p.core as usize >= nc {
                return bad(format!("PU {i} names core {} of {nc}", p.core));
            }
        }
        let lists = self
            .packages
            .iter()
            .map(|p| &p.cores)
            .chain(self.numa_nodes.iter().map(|n| &n.cores))
            .chain(self.caches.iter().map(|c| &c.cores));
        for l in lists {
            if let Some(c) = l.iter().find(|&&c| c as usize >= nc) {
                return bad(format!("a core list names core {c} of {nc}"));
            }
        }
        if let Some(n) =
            self.packages.iter().flat_map(|p| &p.numa_nodes).find(|&&n| n as usize >= nn)
        {
            return bad(format!("a package names NUMA node {n} of {nn}"));
        }
        Ok(())
    }
}
