//! GPU device nodes: which `/dev` files belong to a GPU of the machine model, and the device
//! rules that keep a job away from the GPUs it was not granted (enforced by the v1 devices
//! controller; see `v2.rs` for v2).

use std::path::{Path, PathBuf};

use gangway_topology::{CpuSet, Gpu, Topology};

use crate::DeviceNode;

/// The device files of one GPU under `dev` (normally `/dev`), from its OS names in the
/// model: `cardN`/`renderDN` are DRM nodes (`dev/dri/...`), `nvmlN`/`cudaN` the NVIDIA node
/// `dev/nvidiaN` (NVIDIA numbers its nodes in the order NVML lists the boards). The shared
/// control nodes (`nvidiactl`, `nvidia-uvm`, `kfd`) are left open: every GPU job needs them.
pub fn gpu_device_paths(gpu: &Gpu, dev: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = gpu
        .names
        .iter()
        .filter_map(|name| {
            let number = |prefix: &str| {
                name.strip_prefix(prefix)
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            };
            if let Some(n) = number("card") {
                Some(dev.join("dri").join(format!("card{n}")))
            } else if let Some(n) = number("renderD") {
                Some(dev.join("dri").join(format!("renderD{n}")))
            } else {
                number("nvml").or_else(|| number("cuda")).map(|n| dev.join(format!("nvidia{n}")))
            }
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The device a file is, if it is a character or block device.
pub fn device_node(path: &Path) -> Option<DeviceNode> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).ok()?;
    let kind = meta.file_type();
    if !kind.is_char_device() && !kind.is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(DeviceNode {
        char: kind.is_char_device(),
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
    })
}

/// The device nodes of every GPU of `topology` not in `granted` (GPU indexes): what a job
/// holding `granted` must be denied. GPUs whose nodes do not exist under `dev` add nothing.
pub fn denied_gpu_nodes(topology: &Topology, granted: &CpuSet, dev: &Path) -> Vec<DeviceNode> {
    let mut nodes: Vec<DeviceNode> = topology
        .gpus
        .iter()
        .filter(|g| !granted.contains(g.index))
        .flat_map(|g| gpu_device_paths(g, dev))
        .filter_map(|p| device_node(&p))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(names: &[&str]) -> Gpu {
        Gpu {
            index: 0,
            names: names.iter().map(|s| s.to_string()).collect(),
            pci_bus_id: None,
            cpuset: CpuSet::new(),
            numa_nodes: CpuSet::new(),
            model: None,
            type_name: None,
        }
    }

    #[test]
    fn nodes_from_os_names() {
        let dev = Path::new("/dev");
        assert_eq!(
            gpu_device_paths(&gpu(&["cuda0", "card0", "nvml0"]), dev),
            vec![PathBuf::from("/dev/dri/card0"), PathBuf::from("/dev/nvidia0")]
        );
        assert_eq!(gpu_device_paths(&gpu(&["opencl0d1", "rsmi1"]), dev), Vec::<PathBuf>::new());
        assert_eq!(
            gpu_device_paths(&gpu(&["renderD129"]), dev),
            vec![PathBuf::from("/dev/dri/renderD129")]
        );
    }

    #[test]
    fn device_numbers_of_a_real_node() {
        assert_eq!(
            device_node(Path::new("/dev/null")),
            Some(DeviceNode { char: true, major: 1, minor: 3 })
        );
        assert_eq!(device_node(Path::new("/etc/hostname")), None);
    }
}
