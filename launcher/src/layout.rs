//! Which node each rank of a multi-node job runs on (pure): `-N`, `--ntasks-per-node`, slots,
//! and `--distribution` across nodes.

use gangway_topology::NodeDistribution;

/// How to spread ranks over nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRequest {
    pub ntasks: u32,
    /// `-N`: use the first this many nodes (all when `None`).
    pub nodes: Option<u32>,
    /// `--ntasks-per-node`: exactly this many ranks on each used node (the last may get fewer).
    pub tasks_per_node: Option<u32>,
    pub distribution: NodeDistribution,
    /// Allow more ranks on a node than its slots.
    pub oversubscribe: bool,
}

/// A layout that cannot be made, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("-N {asked}: only {have} node(s) given; list more hosts or lower -N")]
    NotEnoughNodes { asked: u32, have: usize },
    #[error("-N must be at least 1")]
    ZeroNodes,
    #[error("--ntasks-per-node must be at least 1")]
    ZeroTasksPerNode,
    #[error(
        "{ntasks} ranks do not fit: {nodes} node(s) x {per_node} ranks per node hold {fit}; \
         raise -N or --ntasks-per-node, or lower -n"
    )]
    TooManyForTasksPerNode { ntasks: u32, nodes: usize, per_node: u32, fit: u64 },
    #[error(
        "{ntasks} ranks need more slots than the {slots} the hosts offer; add hosts or slots, \
         or add --oversubscribe"
    )]
    NotEnoughSlots { ntasks: u32, slots: u64 },
    #[error("no hosts to run on")]
    NoNodes,
}

/// The node index of every rank, in rank order, over the first `-N` of `slots` (one entry per
/// node: its slot count, `None` when the host did not say).
///
/// Hosts without a slot count share the ranks evenly; with slot counts, `block` fills each
/// node up to its slots in turn and `cyclic`/`plane` deal ranks round-robin, skipping full nodes.
/// With `--oversubscribe`, ranks beyond the slots are dealt round-robin over all nodes.
pub fn layout(request: &LayoutRequest, slots: &[Option<u32>]) -> Result<Vec<u32>, LayoutError> {
    if slots.is_empty() {
        return Err(LayoutError::NoNodes);
    }
    let used = match request.nodes {
        Some(0) => return Err(LayoutError::ZeroNodes),
        Some(n) if n as usize > slots.len() => {
            return Err(LayoutError::NotEnoughNodes { asked: n, have: slots.len() });
        }
        Some(n) => n as usize,
        // Without -N, --ntasks-per-node decides how many nodes are needed.
        None => match request.tasks_per_node {
            Some(0) => return Err(LayoutError::ZeroTasksPerNode),
            Some(k) => (request.ntasks.div_ceil(k) as usize).clamp(1, slots.len()),
            None => slots.len().min(request.ntasks.max(1) as usize),
        },
    };
    let n = request.ntasks;
    let capacity: Vec<u64> = match request.tasks_per_node {
        Some(0) => return Err(LayoutError::ZeroTasksPerNode),
        Some(k) => {
            let fit = u64::from(k) * used as u64;
            if u64::from(n) > fit {
                return Err(LayoutError::TooManyForTasksPerNode {
                    ntasks: n,
                    nodes: used,
                    per_node: k,
                    fit,
                });
            }
            vec![u64::from(k); used]
        }
        None if slots[..used].iter().all(Option::is_some) => {
            slots[..used].iter().map(|s| u64::from(s.unwrap_or(1))).collect()
        }
        // Unknown slots: an even share each, the first nodes taking the remainder.
        None => (0..used)
            .map(|i| u64::from(n / used as u32) + u64::from((i as u32) < n % used as u32))
            .collect(),
    };
    let total: u64 = capacity.iter().sum();
    if u64::from(n) > total && !request.oversubscribe {
        return Err(LayoutError::NotEnoughSlots { ntasks: n, slots: total });
    }

    let mut left = capacity.clone();
    let mut node_of = Vec::with_capacity(n as usize);
    let plane = match request.distribution {
        NodeDistribution::Block => 0,
        NodeDistribution::Cyclic => 1,
        NodeDistribution::Plane(p) => p.max(1),
    };
    if plane == 0 {
        for (node, cap) in capacity.iter().enumerate() {
            for _ in 0..*cap {
                if node_of.len() < n as usize {
                    node_of.push(node as u32);
                }
            }
        }
    } else {
        let mut node = 0usize;
        while node_of.len() < n as usize && left.iter().any(|l| *l > 0) {
            let mut take = 0;
            while take < plane && left[node] > 0 && node_of.len() < n as usize {
                node_of.push(node as u32);
                left[node] -= 1;
                take += 1;
            }
            node = (node + 1) % used;
        }
    }
    // Oversubscription: whatever is left goes round-robin over all used nodes.
    let mut node = 0usize;
    while node_of.len() < n as usize {
        node_of.push(node as u32);
        node = (node + 1) % used;
    }
    // Rank order must be by node for block, so MPICH's mapping stays compact.
    if plane == 0 {
        node_of.sort_unstable();
    }
    Ok(node_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ntasks: u32) -> LayoutRequest {
        LayoutRequest {
            ntasks,
            nodes: None,
            tasks_per_node: None,
            distribution: NodeDistribution::Block,
            oversubscribe: false,
        }
    }

    #[test]
    fn even_share_without_slots() {
        assert_eq!(layout(&req(6), &[None; 3]).unwrap(), [0, 0, 1, 1, 2, 2]);
        assert_eq!(layout(&req(4), &[None; 3]).unwrap(), [0, 0, 1, 2]);
        assert_eq!(layout(&req(2), &[None; 3]).unwrap(), [0, 1], "more nodes than ranks");
    }

    #[test]
    fn cyclic_and_plane() {
        let cyclic = LayoutRequest { distribution: NodeDistribution::Cyclic, ..req(6) };
        assert_eq!(layout(&cyclic, &[None; 3]).unwrap(), [0, 1, 2, 0, 1, 2]);
        let plane = LayoutRequest { distribution: NodeDistribution::Plane(2), ..req(8) };
        assert_eq!(layout(&plane, &[None; 2]).unwrap(), [0, 0, 1, 1, 0, 0, 1, 1]);
    }

    #[test]
    fn slots_fill_in_order_and_refuse_overflow() {
        assert_eq!(layout(&req(5), &[Some(2), Some(4)]).unwrap(), [0, 0, 1, 1, 1]);
        let err = layout(&req(7), &[Some(2), Some(4)]).unwrap_err();
        assert_eq!(err, LayoutError::NotEnoughSlots { ntasks: 7, slots: 6 });
        let over = LayoutRequest { oversubscribe: true, ..req(8) };
        assert_eq!(layout(&over, &[Some(2), Some(4)]).unwrap(), [0, 0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn nodes_and_tasks_per_node() {
        let r = LayoutRequest { nodes: Some(2), ..req(4) };
        assert_eq!(layout(&r, &[None; 3]).unwrap(), [0, 0, 1, 1]);
        let r = LayoutRequest { tasks_per_node: Some(4), ..req(12) };
        assert_eq!(layout(&r, &[None; 3]).unwrap(), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        let r = LayoutRequest { tasks_per_node: Some(1), ..req(12) };
        assert!(
            layout(&r, &[None; 3])
                .unwrap_err()
                .to_string()
                .contains("raise -N or --ntasks-per-node")
        );
        let r = LayoutRequest { nodes: Some(5), ..req(4) };
        assert_eq!(
            layout(&r, &[None; 3]).unwrap_err(),
            LayoutError::NotEnoughNodes { asked: 5, have: 3 }
        );
        assert_eq!(layout(&req(1), &[]).unwrap_err(), LayoutError::NoNodes);
    }
}
