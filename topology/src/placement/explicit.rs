//! `--cpu-bind=map_cpu:`/`mask_cpu:`: ranks bound to the CPUs the user listed, one entry per
//! local rank, reused in turn.

use std::sync::Arc;

use super::error::PlacementError;
use super::layout::Layout;
use super::outcome::{Binding, Placement, RankPlacement};
use super::request::PlacementRequest;
use super::spread::NodeRanks;
use crate::cpuset::{CpuSet, NodeSet};
use crate::gpu::GpuChooser;
use crate::model::Topology;
use crate::options::CpuBind;

pub(super) fn place_explicit(
    req: &PlacementRequest,
    topo: &Topology,
    layout: &Layout,
    node: u32,
    k: u32,
    ranks: &NodeRanks<'_>,
    out: &mut Placement,
) -> Result<(), PlacementError> {
    let (kind, sets): (&'static str, Vec<CpuSet>) = match &req.cpu_bind {
        CpuBind::MapCpu(v) => {
            ("map_cpu", v.iter().map(|&c| std::iter::once(c).collect()).collect())
        }
        CpuBind::MaskCpu(v) => ("mask_cpu", v.clone()),
        _ => return Ok(()),
    };
    if sets.is_empty() {
        return Err(PlacementError::MapTooLong { kind, listed: 0, what: "entries", tasks: k });
    }
    for s in &sets {
        if let Some(cpu) = s.iter().find(|&c| !layout.avail.contains(c)) {
            return Err(PlacementError::CpuNotAvailable {
                kind,
                cpu,
                node,
                available: layout.avail.to_string(),
            });
        }
    }
    let mut chooser = GpuChooser::new(topo, layout.gpus.as_ref());
    let have_gpus = chooser.available_count();
    if req.gpus_per_task > 0 {
        let need = u64::from(k) * u64::from(req.gpus_per_task);
        if need > have_gpus as u64 && (!req.oversubscribe || have_gpus == 0) {
            return Err(PlacementError::NotEnoughGpus {
                per_task: req.gpus_per_task,
                need,
                tasks: k,
                node,
                have: have_gpus,
            });
        }
    }
    let mut seen: Vec<&CpuSet> = Vec::with_capacity(k as usize);
    let mut shared_any = false;
    for local in 0..k {
        let Some(cpus) = sets.get(local as usize % sets.len()) else { continue };
        let shared = seen.iter().position(|s| s.intersects(cpus));
        if let Some(first) = shared {
            if !req.oversubscribe {
                return Err(PlacementError::MapShares {
                    kind,
                    node,
                    first: first as u32,
                    second: local,
                });
            }
            shared_any = true;
        }
        seen.push(cpus);
        let cores: CpuSet = topo
            .cores
            .iter()
            .enumerate()
            .filter(|(_, core)| core.cpuset.intersects(cpus))
            .map(|(i, _)| i as u32)
            .collect();
        let (mut numa, mut mem_nodes) = (NodeSet::new(), NodeSet::new());
        layout.add_numa_of(cpus, req.mem_bind, &mut numa, &mut mem_nodes);
        out.ranks.push(RankPlacement {
            rank: ranks.get(local),
            node,
            local_rank: local,
            binding: Arc::new(Binding {
                cpus: cpus.clone(),
                cores,
                numa,
                mem_nodes,
                gpus: chooser.pick(cpus, req.gpus_per_task),
                oversubscribed: shared.is_some(),
                unbound: false,
            }),
        });
    }
    if shared_any {
        out.oversubscribed = true;
        out.notes.push(format!(
            "node {node}: --cpu-bind={kind} makes ranks share CPUs (--oversubscribe)"
        ));
    }
    Ok(())
}
