//! Discovery through hwloc (the `hwlocality` binding): the running machine, an XML export, or a
//! synthetic description, all turned into the same [`Topology`] model. Nothing outside this
//! module touches hwloc.
//!
//! `hwlocality` rather than `hwloc2`: the latter panics when asked for NUMA nodes, which hwloc 2.x
//! keeps at a virtual depth; `hwlocality` handles memory objects and exposes the I/O filters.

use std::collections::HashMap;
use std::path::Path;

use hwlocality::object::TopologyObject;
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::{CacheType, OSDeviceType, ObjectType};
use hwlocality::topology::builder::{BuildFlags, TopologyBuilder, TypeFilter};

use crate::cpuset::{CpuSet, NodeSet};
use crate::error::TopologyError;
use crate::model::{
    Cache, CacheKind, Core, DeviceKind, Gpu, NumaNode, OsDevice, Package, Pu, Topology,
    TopologySource,
};

impl Topology {
    /// Discovers the running machine (with PCI/OS devices, so GPUs show up).
    ///
    /// Takes tens of milliseconds (hwloc reads sysfs and PCI); when only a CPU count is needed,
    /// [`crate::available_cpus`] answers in microseconds.
    pub fn discover() -> Result<Self, TopologyError> {
        let builder = base_builder().map_err(TopologyError::Discovery)?;
        let topo = builder.build().map_err(|e| TopologyError::Discovery(e.to_string()))?;
        Ok(convert(&topo, TopologySource::Machine))
    }

    /// This machine as an hwloc 2.x XML export, for programs that would otherwise discover it
    /// themselves (Open MPI reads it through PMIx as `PMIX_HWLOC_XML_V2`). Only the CPUs this
    /// process may use, as hwloc's own default discovery sees them, with important I/O.
    pub fn discover_xml() -> Result<String, TopologyError> {
        let builder = TopologyBuilder::new()
            .with_io_type_filter(TypeFilter::KeepImportant)
            .map_err(|e| TopologyError::Discovery(e.to_string()))?;
        let topo = builder.build().map_err(|e| TopologyError::Discovery(e.to_string()))?;
        let xml = topo
            .export_xml(hwlocality::topology::export::xml::XMLExportFlags::empty())
            .map_err(|e| TopologyError::Discovery(format!("XML export: {e}")))?;
        Ok(xml.as_str().to_owned())
    }

    /// Loads an hwloc XML export (what `lstopo file.xml` writes; `HWLOC_XMLFILE` equivalent).
    pub fn from_xml_file(path: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let path = path.as_ref();
        let xml_err = |reason: String| TopologyError::Xml { path: path.to_owned(), reason };
        // hwloc's own message for a missing file is "invalid"; say what is really wrong.
        let meta = std::fs::metadata(path).map_err(|e| xml_err(e.to_string()))?;
        if !meta.is_file() {
            return Err(xml_err("not a regular file".to_owned()));
        }
        let builder = base_builder()
            .map_err(xml_err)?
            .from_xml_file(path)
            .map_err(|_| xml_err("hwloc could not parse it as a topology XML export".to_owned()))?;
        let topo = builder.build().map_err(|e| xml_err(e.to_string()))?;
        Ok(convert(&topo, TopologySource::XmlFile(path.display().to_string())))
    }

    /// Loads an hwloc XML export held in memory (e.g. sent by an agent).
    pub fn from_xml_str(xml: &str) -> Result<Self, TopologyError> {
        let xml_err = |reason: String| TopologyError::Xml { path: "<memory>".into(), reason };
        let builder = base_builder()
            .map_err(xml_err)?
            .from_xml(xml)
            .map_err(|e| xml_err(format!("hwloc could not parse it: {e}")))?;
        let topo = builder.build().map_err(|e| xml_err(e.to_string()))?;
        Ok(convert(&topo, TopologySource::XmlFile("<memory>".to_owned())))
    }

    /// Builds a machine from an hwloc synthetic description such as `pack:2 numa:2 core:8 pu:2`.
    pub fn from_synthetic(description: &str) -> Result<Self, TopologyError> {
        let syn_err = |reason: String| TopologyError::Synthetic {
            description: description.to_owned(),
            reason,
        };
        if description.trim().is_empty() {
            return Err(syn_err("empty description".to_owned()));
        }
        let builder = base_builder()
            .map_err(syn_err)?
            .from_synthetic(description)
            .map_err(|e| syn_err(format!("hwloc rejected it ({e})")))?;
        let topo = builder.build().map_err(|e| syn_err(e.to_string()))?;
        Ok(convert(&topo, TopologySource::Synthetic(description.to_owned())))
    }
}

/// Number of CPUs this process may run on, without building a topology: the cheap path for
/// callers that need only a count (default `-n`, thread pools).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn base_builder() -> Result<TopologyBuilder, String> {
    // Keep disallowed PUs in the tree so the model can say "16 PUs, 10 allowed" and placement
    // can refuse disallowed CPUs by name; keep important I/O so GPUs and NICs appear.
    TopologyBuilder::new()
        .with_flags(BuildFlags::INCLUDE_DISALLOWED)
        .map_err(|e| e.to_string())?
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(|e| e.to_string())
}

fn to_set<I, B>(iter: I) -> CpuSet
where
    I: IntoIterator<Item = B>,
    B: Into<usize>,
{
    iter.into_iter().map(|i| i.into() as u32).collect()
}

fn obj_cpuset(o: &TopologyObject) -> CpuSet {
    o.cpuset().map_or_else(CpuSet::new, |s| to_set(s.iter_set()))
}

fn obj_nodeset(o: &TopologyObject) -> NodeSet {
    o.nodeset().map_or_else(NodeSet::new, |s| to_set(s.iter_set()))
}

fn os_index(o: &TopologyObject) -> Option<u32> {
    o.os_index().and_then(|i| u32::try_from(i).ok())
}

fn cstr(s: Option<&std::ffi::CStr>) -> Option<String> {
    s.map(|c| c.to_string_lossy().into_owned())
}

fn convert(topo: &hwlocality::Topology, source: TopologySource) -> Topology {
    let mut t = Topology {
        source,
        total_memory: 0,
        packages: Vec::new(),
        numa_nodes: Vec::new(),
        caches: Vec::new(),
        cores: Vec::new(),
        pus: Vec::new(),
        gpus: Vec::new(),
        devices: Vec::new(),
        complete_cpuset: to_set(topo.complete_cpuset().iter_set()),
        online_cpuset: to_set(topo.cpuset().iter_set()),
        allowed_cpuset: to_set(topo.allowed_cpuset().iter_set()),
        allowed_nodeset: to_set(topo.allowed_nodeset().iter_set()),
    };

    for p in topo.objects_with_type(ObjectType::Package) {
        t.packages.push(Package {
            os_index: os_index(p),
            cpuset: obj_cpuset(p),
            cores: Vec::new(),
            numa_nodes: Vec::new(),
        });
    }
    for n in topo.objects_with_type(ObjectType::NUMANode) {
        let memory = match n.attributes() {
            Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map_or(0, |m| m.get()),
            _ => 0,
        };
        t.total_memory += memory;
        t.numa_nodes.push(NumaNode {
            os_index: os_index(n).unwrap_or(t.numa_nodes.len() as u32),
            memory,
            subtype: cstr(n.subtype()),
            cpuset: obj_cpuset(n),
            cores: Vec::new(),
        });
    }

    // Caches: map (type, hwloc logical index) to our index so cores can point at their L3.
    let mut cache_index: HashMap<(ObjectType, usize), u32> = HashMap::new();
    let cache_types = [
        (ObjectType::L1Cache, 1),
        (ObjectType::L2Cache, 2),
        (ObjectType::L3Cache, 3),
        (ObjectType::L4Cache, 4),
        (ObjectType::L5Cache, 5),
        (ObjectType::L1ICache, 1),
        (ObjectType::L2ICache, 2),
        (ObjectType::L3ICache, 3),
    ];
    for (ty, level) in cache_types {
        for c in topo.objects_with_type(ty) {
            let (size, kind) = match c.attributes() {
                Some(ObjectAttributes::Cache(a)) => (
                    a.size().map_or(0, |s| s.get()),
                    match a.cache_type() {
                        CacheType::Data => CacheKind::Data,
                        CacheType::Instruction => CacheKind::Instruction,
                        _ => CacheKind::Unified,
                    },
                ),
                _ => (0, CacheKind::Unified),
            };
            cache_index.insert((ty, c.logical_index()), t.caches.len() as u32);
            t.caches.push(Cache { level, kind, size, cpuset: obj_cpuset(c), cores: Vec::new() });
        }
    }

    // Cores in PU order, so a PU without a core above it (some exports, synthetic `pu`-only
    // descriptions) gets a core of its own at the right place.
    let mut core_of_hwloc: HashMap<usize, u32> = HashMap::new();
    for pu in topo.objects_with_type(ObjectType::PU) {
        let Some(os) = os_index(pu) else { continue };
        let hw_core = pu.first_ancestor_with_type(ObjectType::Core);
        let existing = hw_core.and_then(|c| core_of_hwloc.get(&c.logical_index()).copied());
        let core_index = match existing {
            Some(i) => i,
            None => {
                let i = t.cores.len() as u32;
                let anchor = hw_core.unwrap_or(pu);
                if let Some(c) = hw_core {
                    core_of_hwloc.insert(c.logical_index(), i);
                }
                let l3 = anchor
                    .first_ancestor_with_type(ObjectType::L3Cache)
                    .and_then(|c| cache_index.get(&(ObjectType::L3Cache, c.logical_index())))
                    .copied();
                t.cores.push(Core {
                    os_index: hw_core.and_then(os_index),
                    package: anchor
                        .first_ancestor_with_type(ObjectType::Package)
                        .map(|p| p.logical_index() as u32),
                    numa: None,
                    l3,
                    pus: Vec::new(),
                    cpuset: CpuSet::new(),
                });
                i
            }
        };
        let pu_index = t.pus.len() as u32;
        t.pus.push(Pu { os_index: os, core: core_index, allowed: t.allowed_cpuset.contains(os) });
        if let Some(core) = t.cores.get_mut(core_index as usize) {
            core.pus.push(pu_index);
            core.cpuset.insert(os);
        }
    }

    link_by_cpuset(&mut t);
    collect_devices(topo, &mut t);
    t
}

/// Fills the core lists of packages, NUMA nodes and caches, and each core's NUMA node, from
/// cpuset inclusion: NUMA nodes hang off any level in hwloc 2, so the tree cannot say it.
fn link_by_cpuset(t: &mut Topology) {
    for (ci, core) in t.cores.iter_mut().enumerate() {
        let ci = ci as u32;
        if core.cpuset.is_empty() {
            continue;
        }
        if let Some(p) = core.package.and_then(|p| t.packages.get_mut(p as usize)) {
            p.cores.push(ci);
        }
        for (ni, n) in t.numa_nodes.iter_mut().enumerate() {
            if core.cpuset.is_subset(&n.cpuset) {
                n.cores.push(ci);
                if core.numa.is_none() {
                    core.numa = Some(ni as u32);
                }
            }
        }
        for c in &mut t.caches {
            if core.cpuset.is_subset(&c.cpuset) {
                c.cores.push(ci);
            }
        }
    }
    for p in &mut t.packages {
        for (ni, n) in t.numa_nodes.iter().enumerate() {
            if !n.cpuset.is_empty() && n.cpuset.is_subset(&p.cpuset) {
                p.numa_nodes.push(ni as u32);
            }
        }
    }
}

fn collect_devices(topo: &hwlocality::Topology, t: &mut Topology) {
    // (PCI bus id, member devices, computes?) per card, to fold the several OS devices hwloc
    // shows for one card into one GPU.
    let mut gpu_groups: Vec<(Option<String>, Vec<usize>, bool)> = Vec::new();
    // The model each OS device reports (same positions as `t.devices`): its own `GPUModel`
    // (CUDA, OpenCL, NVML, RSMI devices carry one), else its PCI device's name.
    let mut models: Vec<(Option<String>, Option<String>)> = Vec::new();
    for d in topo.objects_with_type(ObjectType::OSDevice) {
        let kind = match d.attributes() {
            Some(ObjectAttributes::OSDevice(a)) => match a.device_type() {
                OSDeviceType::GPU => DeviceKind::Gpu,
                OSDeviceType::CoProcessor => DeviceKind::CoProcessor,
                OSDeviceType::Network => DeviceKind::Network,
                OSDeviceType::OpenFabrics => DeviceKind::OpenFabrics,
                OSDeviceType::Storage => DeviceKind::Storage,
                OSDeviceType::DMA => DeviceKind::Dma,
                _ => DeviceKind::Other,
            },
            _ => DeviceKind::Other,
        };
        let pci = d.ancestors().find(|a| a.object_type() == ObjectType::PCIDevice);
        let (pci_bus_id, pci_class) = match pci.and_then(|p| p.attributes()) {
            Some(ObjectAttributes::PCIDevice(a)) => (
                Some(format!(
                    "{:04x}:{:02x}:{:02x}.{:x}",
                    a.domain(),
                    a.bus_id(),
                    a.bus_device(),
                    a.function()
                )),
                Some(a.class_id()),
            ),
            _ => (None, None),
        };
        let anchor = d.first_non_io_ancestor();
        let name = cstr(d.name()).unwrap_or_default();
        let dev = OsDevice {
            name: name.clone(),
            kind,
            subtype: cstr(d.subtype()),
            pci_bus_id: pci_bus_id.clone(),
            cpuset: anchor.map_or_else(CpuSet::new, obj_cpuset),
            numa_nodes: anchor.map_or_else(NodeSet::new, obj_nodeset),
        };
        // A compute GPU shows a compute OS device (CUDA/OpenCL/Level Zero co-processor, or an
        // NVML/RSMI/Level Zero handle), or sits in a PCI "3D controller" slot. A bare DRM card on
        // a VGA-class device is usually the BMC's display adapter, not something to place on.
        let computes = match kind {
            DeviceKind::CoProcessor => true,
            DeviceKind::Gpu => {
                ["nvml", "rsmi", "ze"].iter().any(|p| name.starts_with(p))
                    || pci_class == Some(0x0302)
            }
            _ => false,
        };
        let named = |m: Option<String>| m.filter(|m| !m.trim().is_empty());
        let model =
            (named(cstr(d.info("GPUModel"))), named(pci.and_then(|p| cstr(p.info("PCIDevice")))));
        let idx = t.devices.len();
        t.devices.push(dev);
        models.push(model);
        if matches!(kind, DeviceKind::Gpu | DeviceKind::CoProcessor) {
            match gpu_groups.iter_mut().find(|g| g.0.is_some() && g.0 == pci_bus_id) {
                Some(g) => {
                    g.1.push(idx);
                    g.2 |= computes;
                }
                None => gpu_groups.push((pci_bus_id, vec![idx], computes)),
            }
        }
    }
    for (bus, members, computes) in gpu_groups {
        if !computes {
            continue;
        }
        let Some(first) = members.first().and_then(|&i| t.devices.get(i)) else { continue };
        let gpu = Gpu {
            index: t.gpus.len() as u32,
            names: members
                .iter()
                .filter_map(|&i| t.devices.get(i))
                .map(|d| d.name.clone())
                .collect(),
            pci_bus_id: bus,
            cpuset: first.cpuset.clone(),
            numa_nodes: first.numa_nodes.clone(),
            // Any member's own `GPUModel` before the PCI name.
            model: members
                .iter()
                .find_map(|&i| models.get(i).and_then(|m| m.0.clone()))
                .or_else(|| members.iter().find_map(|&i| models.get(i).and_then(|m| m.1.clone()))),
            type_name: None,
        };
        t.gpus.push(gpu);
    }
}
