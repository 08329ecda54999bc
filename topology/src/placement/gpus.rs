//! Each rank's GPUs: the free ones closest to its CPUs, shared round-robin only when
//! oversubscribing.

use super::request::PlacementRequest;
use crate::cpuset::CpuSet;
use crate::model::Topology;

/// GPUs for one rank: the free ones sharing most CPUs with the rank, then nearest by NUMA
/// node, then lowest index. With `--oversubscribe` and none free, GPUs are shared round-robin.
pub(super) fn pick_gpus(
    topo: &Topology,
    req: &PlacementRequest,
    near: &CpuSet,
    used: &mut [u32],
) -> Vec<u32> {
    let g = req.gpus_per_task as usize;
    if g == 0 || topo.gpus.is_empty() {
        return Vec::new();
    }
    let mut picked = Vec::with_capacity(g);
    for _ in 0..g {
        let min_use = used.iter().copied().min().unwrap_or(0);
        let best = topo
            .gpus
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                used.get(*i).copied() == Some(min_use) && !picked.contains(&(*i as u32))
            })
            .max_by_key(|(i, gpu)| {
                let overlap = gpu.cpuset.intersection(near).len();
                (overlap, std::cmp::Reverse(*i))
            })
            .map(|(i, _)| i);
        let Some(i) = best else { break };
        if let Some(u) = used.get_mut(i) {
            *u += 1;
        }
        picked.push(i as u32);
    }
    picked.iter().filter_map(|&i| topo.gpus.get(i as usize).map(|g| g.index)).collect()
}
