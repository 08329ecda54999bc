//! The now-view index: for each partition, every node's free cores in two lanes (nodes already
//! running something, idle nodes) in partition order, so the packing walk finds the next node
//! with room without looking at each node; and a histogram of free cores per partition, which
//! answers "cannot fit now" for most of a long queue at once. Kept up to date by the engine
//! whenever a node's allocations or health change.

use crate::cluster::ClusterState;
use crate::gang::JobShape;

/// Lane of nodes already running something.
pub(crate) const PARTIAL: usize = 0;
/// Lane of idle nodes.
pub(crate) const IDLE: usize = 1;

/// Positions per block of the lanes' summary.
const BLOCK: usize = 64;

/// One partition's lanes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartLanes {
    /// Node index at each position (partition order).
    pub nodes: Vec<usize>,
    /// Free units of usable nodes, per lane; 0 elsewhere.
    lanes: [Vec<u32>; 2],
    /// Largest entry of each block of [`BLOCK`] positions, per lane: a search skips whole
    /// blocks without room (10,000 nodes are 157 blocks).
    blocks: [Vec<u32>; 2],
    /// Usable nodes by free units (index 0 unused).
    hist: Vec<u32>,
    /// Usable idle nodes.
    idle: u32,
}

/// Every partition's lanes, and where each node sits in them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lanes {
    parts: Vec<PartLanes>,
    /// Per node: (partition, position) pairs.
    places: Vec<Vec<(u32, u32)>>,
}

impl Lanes {
    /// Empty lanes for the cluster's partitions; every node unusable until refreshed.
    pub fn new(cluster: &ClusterState) -> Self {
        let mut places = vec![Vec::new(); cluster.nodes().len()];
        let parts = cluster
            .partitions()
            .iter()
            .enumerate()
            .map(|(p, part)| {
                for (pos, &n) in part.nodes.iter().enumerate() {
                    if let Some(v) = places.get_mut(n) {
                        v.push((p as u32, pos as u32));
                    }
                }
                let max_units = part
                    .nodes
                    .iter()
                    .filter_map(|&n| cluster.nodes().get(n))
                    .map(|n| n.total_units)
                    .max()
                    .unwrap_or(0);
                let len = part.nodes.len();
                PartLanes {
                    nodes: part.nodes.clone(),
                    lanes: [vec![0; len], vec![0; len]],
                    blocks: [vec![0; len.div_ceil(BLOCK)], vec![0; len.div_ceil(BLOCK)]],
                    hist: vec![0; max_units as usize + 1],
                    idle: 0,
                }
            })
            .collect();
        Self { parts, places }
    }

    /// A partition's lanes.
    pub fn part(&self, p: usize) -> Option<&PartLanes> {
        self.parts.get(p)
    }

    /// Positions of `node` in its partitions.
    pub fn places(&self, node: usize) -> &[(u32, u32)] {
        self.places.get(node).map_or(&[], Vec::as_slice)
    }

    /// Records a node's state: `usable` (up, not closed to new work, not held exclusively),
    /// its free units, and whether it runs something.
    pub fn set(&mut self, node: usize, usable: bool, free_units: u32, partial: bool) {
        let Some(places) = self.places.get(node) else { return };
        for &(p, pos) in places {
            let Some(part) = self.parts.get_mut(p as usize) else { continue };
            part.set(pos as usize, usable.then_some((free_units, partial)));
        }
    }
}

impl PartLanes {
    fn set(&mut self, pos: usize, now: Option<(u32, bool)>) {
        for lane in [PARTIAL, IDLE] {
            let old = self.lanes[lane].get(pos).copied().unwrap_or(0);
            if old > 0 {
                if let Some(h) = self.hist.get_mut(old as usize) {
                    *h = h.saturating_sub(1);
                }
                if lane == IDLE {
                    self.idle = self.idle.saturating_sub(1);
                }
            }
            let new = match now {
                Some((units, partial)) if (lane == PARTIAL) == partial => units,
                _ => 0,
            };
            if let Some(slot) = self.lanes[lane].get_mut(pos) {
                *slot = new;
            }
            let b = pos / BLOCK;
            let block_max = self.blocks[lane].get(b).copied().unwrap_or(0);
            if new >= block_max {
                if let Some(m) = self.blocks[lane].get_mut(b) {
                    *m = new;
                }
            } else if old == block_max {
                let end = ((b + 1) * BLOCK).min(self.lanes[lane].len());
                let m = self.lanes[lane].get(b * BLOCK..end).unwrap_or_default().iter().max();
                if let Some(slot) = self.blocks[lane].get_mut(b) {
                    *slot = m.copied().unwrap_or(0);
                }
            }
            if new > 0 {
                if let Some(h) = self.hist.get_mut(new as usize) {
                    *h += 1;
                }
                if lane == IDLE {
                    self.idle += 1;
                }
            }
        }
    }

    /// The first position at or after `from` in `lane` with at least `units` free.
    pub fn next(&self, lane: usize, from: usize, units: u32) -> Option<usize> {
        let units = units.max(1);
        let values = &self.lanes[lane];
        let mut pos = from;
        while pos < values.len() {
            let b = pos / BLOCK;
            let end = ((b + 1) * BLOCK).min(values.len());
            if self.blocks[lane].get(b).is_some_and(|&m| m >= units)
                && let Some(i) = values.get(pos..end)?.iter().position(|&u| u >= units)
            {
                return Some(pos + i);
            }
            pos = end;
        }
        None
    }

    /// Free units at `pos` (0 when unusable or full).
    pub fn units(&self, pos: usize) -> u32 {
        self.lanes[PARTIAL].get(pos).copied().unwrap_or(0)
            + self.lanes[IDLE].get(pos).copied().unwrap_or(0)
    }

    /// Whether `pos` is in the partial lane.
    pub fn is_partial(&self, pos: usize) -> bool {
        self.lanes[PARTIAL].get(pos).is_some_and(|&u| u > 0)
    }

    /// A quick necessary condition for `shape` to fit now on this partition's usable nodes,
    /// from free cores alone (memory and GPUs are checked by the walk).
    pub fn may_fit(&self, shape: &JobShape, exclusive: bool) -> bool {
        if exclusive {
            return self.idle >= shape.min_nodes;
        }
        let per_node = |units: u32| {
            let cap = units / shape.cpus_per_task;
            shape.tasks_per_node.map_or(cap, |t| cap.min(t))
        };
        let (mut taken, mut sum, mut usable) = (0u32, 0u64, 0u32);
        for (units, &count) in self.hist.iter().enumerate().skip(1).rev() {
            if count == 0 {
                continue;
            }
            let cap = per_node(units as u32);
            if cap == 0 {
                break;
            }
            usable += count;
            let take = count.min(shape.max_nodes.saturating_sub(taken));
            sum += u64::from(take) * u64::from(cap);
            taken += take;
        }
        usable >= shape.min_nodes && sum >= u64::from(shape.ntasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterBuilder;
    use crate::request::JobRequest;

    #[test]
    fn block_summaries_follow_updates() {
        let cluster = ClusterBuilder::new().nodes(200).shape(1, 8, 1).build().unwrap();
        let mut lanes = Lanes::new(&cluster);
        for n in 0..200 {
            lanes.set(n, true, 1, true);
        }
        lanes.set(150, true, 8, true);
        assert_eq!(lanes.part(0).unwrap().next(PARTIAL, 0, 5), Some(150));
        lanes.set(150, true, 2, true);
        assert_eq!(lanes.part(0).unwrap().next(PARTIAL, 0, 5), None, "the block's max went down");
        lanes.set(199, true, 6, true);
        assert_eq!(lanes.part(0).unwrap().next(PARTIAL, 151, 5), Some(199));
        assert_eq!(lanes.part(0).unwrap().next(PARTIAL, 70, 1), Some(70));
    }

    #[test]
    fn lanes_follow_updates_and_answer_quickly() {
        let cluster = ClusterBuilder::new().nodes(4).shape(1, 8, 1).build().unwrap();
        let mut lanes = Lanes::new(&cluster);
        for n in 0..4 {
            lanes.set(n, true, 8, false);
        }
        lanes.set(1, true, 3, true);
        let part = lanes.part(0).unwrap();
        assert_eq!(part.next(PARTIAL, 0, 2), Some(1));
        assert_eq!(part.next(PARTIAL, 0, 4), None);
        assert_eq!(part.next(IDLE, 0, 8), Some(0));
        assert_eq!(part.next(IDLE, 1, 8), Some(2));
        let wide = JobShape::of(&JobRequest::new().nodes(4, 4).ntasks_per_node(8));
        assert!(!part.may_fit(&wide, false), "node 2 has only 3 free");
        let three = JobShape::of(&JobRequest::new().nodes(3, 3).ntasks_per_node(8));
        assert!(part.may_fit(&three, false));
        assert!(part.may_fit(&three, true));
        lanes.set(0, false, 8, false);
        lanes.set(2, false, 8, false);
        let part = lanes.part(0).unwrap();
        assert!(!part.may_fit(&three, true), "one idle usable node left");
        assert_eq!(part.next(IDLE, 0, 1), Some(3));
    }
}
