//! Ranks over nodes: how many each node takes (block, cyclic, plane, `--ntasks-per-node`) and
//! which global ranks those are.

use super::error::PlacementError;
use super::request::{CpuUnit, PlacementRequest};
use crate::options::{CpuBind, NodeDistribution};

pub(super) fn check_map_len(
    kind: &'static str,
    what: &'static str,
    listed: usize,
    counts: &[u32],
) -> Result<(), PlacementError> {
    let most = counts.iter().copied().max().unwrap_or(0);
    if listed > most as usize {
        return Err(PlacementError::MapTooLong { kind, listed, what, tasks: most });
    }
    Ok(())
}

/// Ranks per node.
pub(super) fn node_counts(
    req: &PlacementRequest,
    units_per_node: &[u32],
    unit: CpuUnit,
) -> Result<Vec<u32>, PlacementError> {
    let n = req.ntasks;
    let c = req.cpus_per_task;
    let nn = units_per_node.len();
    let explicit = matches!(req.cpu_bind, CpuBind::MapCpu(_) | CpuBind::MaskCpu(_));
    // Capacity per node: unlimited when oversubscribing or when the user maps CPUs by hand
    // (sharing is then checked per node against the map).
    let cap = |i: usize| -> u32 {
        let mut cap = if req.oversubscribe || explicit {
            u32::MAX
        } else {
            units_per_node.get(i).copied().unwrap_or(0) / c
        };
        if let Some(t) = req.tasks_per_node {
            cap = cap.min(t);
        }
        cap
    };
    if !req.oversubscribe && !explicit && units_per_node.iter().all(|&u| u < c) {
        return Err(PlacementError::TaskTooBig {
            cpus_per_task: c,
            node: 0,
            available: u64::from(units_per_node.first().copied().unwrap_or(0)),
            unit,
        });
    }
    if let Some(t) = req.tasks_per_node {
        let need = u64::from(n).div_ceil(u64::from(t));
        if need > nn as u64 {
            return Err(PlacementError::TooFewNodes { tasks: n, per_node: t, need, have: nn });
        }
    }
    let total_cap: u64 = (0..nn).map(|i| u64::from(cap(i))).sum();
    if total_cap < u64::from(n) {
        let available: u64 = units_per_node.iter().map(|&u| u64::from(u)).sum();
        if req.tasks_per_node.is_none() || available < u64::from(n) * u64::from(c) {
            let (scope, allows) = if nn == 1 {
                ("node 0".to_owned(), "allows")
            } else {
                (format!("the {nn} nodes"), "allow")
            };
            return Err(PlacementError::NotEnoughCpus {
                tasks: n,
                cpus_per_task: c,
                need: u64::from(n) * u64::from(c),
                unit,
                scope,
                allows,
                available,
            });
        }
        // --ntasks-per-node asks for more ranks on a node than it holds.
        let node = (0..nn).find(|&i| cap(i) < req.tasks_per_node.unwrap_or(0)).unwrap_or(0);
        let per = req.tasks_per_node.unwrap_or(0);
        return Err(PlacementError::NotEnoughCpus {
            tasks: per,
            cpus_per_task: c,
            need: u64::from(per) * u64::from(c),
            unit,
            scope: format!("node {node}"),
            allows: "allows",
            available: u64::from(units_per_node.get(node).copied().unwrap_or(0)),
        });
    }

    let mut counts = vec![0u32; nn];
    match (req.distribution.node, req.tasks_per_node) {
        // --ntasks-per-node with block: fill nodes in order, like mpiexec's -ppn.
        // (The capacity check above guarantees the ranks fit.)
        (NodeDistribution::Block, Some(_)) => {
            let mut left = n;
            for (i, slot) in counts.iter_mut().enumerate() {
                let take = left.min(cap(i));
                *slot = take;
                left -= take;
            }
        }
        (dist, _) => {
            // Deal chunks round-robin over the nodes, skipping full ones. For block the chunk
            // is 1 (balanced counts, contiguous ranks assigned later).
            let used = nn;
            let chunk = match dist {
                NodeDistribution::Plane(p) => p,
                _ => 1,
            };
            // Fast path: even spread when every node can take its share.
            let share = n.div_ceil(used as u32);
            if chunk == 1 && (0..used).all(|i| cap(i) >= share) {
                let base = n / used as u32;
                let extra = (n % used as u32) as usize;
                for (i, slot) in counts.iter_mut().take(used).enumerate() {
                    *slot = base + u32::from(i < extra);
                }
            } else {
                let mut left = n;
                while left > 0 {
                    let mut progressed = false;
                    for (i, slot) in counts.iter_mut().take(used).enumerate() {
                        if left == 0 {
                            break;
                        }
                        let room = cap(i).saturating_sub(*slot);
                        let take = room.min(chunk).min(left);
                        if take > 0 {
                            *slot += take;
                            left -= take;
                            progressed = true;
                        }
                    }
                    if !progressed {
                        break;
                    }
                }
            }
        }
    }
    Ok(counts)
}

/// Which global ranks land on each node.
pub(super) enum RankOrder {
    /// Contiguous ranges starting at these ranks.
    Block(Vec<u32>),
    /// Explicit lists.
    Lists(Vec<Vec<u32>>),
}

impl RankOrder {
    pub(super) fn ranks_of(&self, node: usize) -> NodeRanks<'_> {
        match self {
            RankOrder::Block(starts) => NodeRanks::Range(starts.get(node).copied().unwrap_or(0)),
            RankOrder::Lists(l) => NodeRanks::List(l.get(node).map_or(&[], |v| v.as_slice())),
        }
    }
}

pub(super) enum NodeRanks<'a> {
    Range(u32),
    List(&'a [u32]),
}

impl NodeRanks<'_> {
    pub(super) fn get(&self, local: u32) -> u32 {
        match self {
            NodeRanks::Range(start) => start + local,
            NodeRanks::List(l) => l.get(local as usize).copied().unwrap_or(0),
        }
    }
}

pub(super) fn rank_order(req: &PlacementRequest, counts: &[u32]) -> RankOrder {
    let chunk = match req.distribution.node {
        NodeDistribution::Block => {
            let mut starts = Vec::with_capacity(counts.len());
            let mut next = 0u32;
            for &k in counts {
                starts.push(next);
                next += k;
            }
            return RankOrder::Block(starts);
        }
        NodeDistribution::Cyclic => 1,
        NodeDistribution::Plane(p) => p.max(1),
    };
    let mut lists: Vec<Vec<u32>> = counts.iter().map(|&k| Vec::with_capacity(k as usize)).collect();
    let mut rank = 0u32;
    while rank < req.ntasks {
        let before = rank;
        for (i, list) in lists.iter_mut().enumerate() {
            let room = counts.get(i).copied().unwrap_or(0).saturating_sub(list.len() as u32);
            let take = room.min(chunk).min(req.ntasks - rank);
            list.extend(rank..rank + take);
            rank += take;
        }
        if rank == before {
            break;
        }
    }
    RankOrder::Lists(lists)
}
