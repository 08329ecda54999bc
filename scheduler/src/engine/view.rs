//! Gang selection over the live indexes: a partition's lanes seen as a [`GangView`] (now, or
//! "long": capped on reserved nodes by what a job running past the reservations may use),
//! and the static question of whether a shape could ever fit the partition's nodes.

use super::lanes::{IDLE, PARTIAL, PartLanes};
use crate::avail::Avail;
use crate::cluster::{ClusterState, NodeHealth};
use crate::decision::PendingReason;
use crate::gang::{Candidate, Constraints, GangView, JobShape, select};
use crate::hash::{FastMap, FastSet};

/// Which free resources a job is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewKind {
    /// What is free now, minus nodes closed to it.
    Now = 0,
    /// What is free now and stays free through every reservation: for jobs that would still
    /// run when a reservation starts.
    Long = 1,
    /// What is free now, nothing closed or reserved: whether a waiting job is blocked by
    /// others' claims (`Priority`) or by busy nodes (`Resources`).
    Open = 2,
}

/// A partition's usable nodes as gang selection sees them.
pub(crate) struct LaneView<'a> {
    pub cluster: &'a ClusterState,
    pub part: &'a PartLanes,
    pub shape: &'a JobShape,
    pub exclusive: bool,
    pub excluded: &'a FastSet<usize>,
    /// Long view: caps on reserved nodes.
    pub spare: Option<&'a FastMap<usize, Avail>>,
    /// Nodes kept for waiting jobs (no-backfill mode), unless the view is open.
    pub closed: Option<&'a [bool]>,
}

impl GangView for LaneView<'_> {
    fn len(&self) -> usize {
        self.part.nodes.len()
    }

    fn cap(&self, pos: usize) -> u32 {
        let Some(&n) = self.part.nodes.get(pos) else { return 0 };
        if self.part.units(pos) == 0
            || self.excluded.contains(&n)
            || self.closed.is_some_and(|c| c.get(n).copied().unwrap_or(false))
        {
            return 0;
        }
        let Some(node) = self.cluster.nodes.get(n) else { return 0 };
        let mut avail = Avail::now(node);
        if let Some(spare) = self.spare.and_then(|s| s.get(&n)) {
            avail = avail.min(*spare);
        }
        self.shape.capacity(node, &avail, self.exclusive)
    }

    fn partial(&self, pos: usize) -> bool {
        self.part.is_partial(pos)
    }

    fn next_fit(&self, from: usize, partial: bool, share: u32) -> Option<usize> {
        if partial && self.exclusive {
            return None;
        }
        let lane = if partial { PARTIAL } else { IDLE };
        let units = self.shape.units_for(share);
        let mut at = from;
        loop {
            let pos = self.part.next(lane, at, units)?;
            if self.cap(pos) >= share {
                return Some(pos);
            }
            at = pos + 1;
        }
    }
}

/// Positions in `nodes` of the nodes `constraints` requires (`None`: not in the partition).
pub(crate) fn required_positions(nodes: &[usize], constraints: &Constraints) -> Vec<Option<usize>> {
    constraints.required.iter().map(|r| nodes.iter().position(|n| n == r)).collect()
}

/// Whether the shape could fit the partition if everything finished: `None` if it could
/// (it waits for resources), else why not (nodes down, or it no longer fits at all).
pub(crate) fn static_fit(
    cluster: &ClusterState,
    nodes: &[usize],
    shape: &JobShape,
    exclusive: bool,
    constraints: &Constraints,
) -> Option<PendingReason> {
    if constraints.required.iter().any(|r| !nodes.contains(r)) {
        return Some(PendingReason::Unsatisfiable);
    }
    let mut down = false;
    let mut candidates = Vec::with_capacity(nodes.len());
    for &n in nodes {
        if constraints.excluded.contains(&n) {
            continue;
        }
        let Some(node) = cluster.nodes.get(n) else { continue };
        if node.health() != NodeHealth::Up {
            down = true;
            continue;
        }
        let cap = shape.capacity(node, &Avail::whole(node), exclusive);
        candidates.push(Candidate { node: n, cap, partial: false });
    }
    let required: Vec<Option<usize>> =
        constraints.required.iter().map(|r| candidates.iter().position(|c| c.node == *r)).collect();
    if required.iter().any(Option::is_none) {
        return Some(PendingReason::NodeDown);
    }
    if select(candidates.as_slice(), &required, shape).is_some() {
        None
    } else if down {
        Some(PendingReason::NodeDown)
    } else {
        Some(PendingReason::Unsatisfiable)
    }
}
