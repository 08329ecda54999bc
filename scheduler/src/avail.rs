//! What is free on a node, and what a job holds there, as counts: the currency of fitting,
//! reserving and backfilling. Exact CPU and GPU sets matter only when a job starts
//! ([`crate::grant`]); before that, counting cores, bytes and GPUs is enough because placement
//! succeeds on any free set of cores large enough for the tasks.

use crate::cluster::{GPU_TYPE_SLOTS, Node, count_units};
use crate::grant::NodeGrant;
use crate::types::Bytes;

/// Free resources of a node at some moment (now, or later in the reservation profile).
///
/// Kept signed: replaying a profile may take before it gives back (a reservation counted
/// against resources a running job releases at the same moment), and clamping at zero on
/// the way would make the sum depend on the order. Readers see the clamped values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Avail {
    units: i64,
    memory: i64,
    gpus: i64,
    /// Free GPUs of each of the node's types ([`Node::gpu_type_slot`]).
    typed: [i64; GPU_TYPE_SLOTS],
    /// Jobs (running or reserved) holding something here: an exclusive job needs none.
    pub jobs: u32,
    /// Exclusive jobs holding the node: nothing else may use it.
    pub exclusive: u32,
}

fn signed(b: Bytes) -> i64 {
    i64::try_from(b.get()).unwrap_or(i64::MAX)
}

impl Avail {
    /// The whole node, nothing allocated.
    pub fn whole(node: &Node) -> Self {
        Avail {
            units: i64::from(node.total_units),
            memory: signed(node.total_memory()),
            gpus: i64::from(node.gpu_count()),
            typed: if node.gpu_types().is_empty() {
                [0; GPU_TYPE_SLOTS]
            } else {
                node.typed_counts(&node.all_gpus()).map(i64::from)
            },
            jobs: 0,
            exclusive: 0,
        }
    }

    /// What is free on the node now.
    pub fn now(node: &Node) -> Self {
        Avail {
            units: i64::from(node.free_units),
            memory: signed(node.total_memory().saturating_sub(node.used_memory)),
            gpus: i64::from(node.gpu_count()) - node.used_gpus.len() as i64,
            typed: if node.gpu_types().is_empty() {
                [0; GPU_TYPE_SLOTS]
            } else {
                node.typed_counts(&node.all_gpus().difference(&node.used_gpus)).map(i64::from)
            },
            jobs: node.allocations.len() as u32,
            exclusive: u32::from(node.exclusive),
        }
    }

    /// Free placement units (cores), never below zero.
    pub fn units(&self) -> u32 {
        u32::try_from(self.units.max(0)).unwrap_or(u32::MAX)
    }

    /// Free memory, never below zero.
    pub fn memory(&self) -> Bytes {
        Bytes(u64::try_from(self.memory.max(0)).unwrap_or(0))
    }

    /// Free GPUs, never below zero.
    pub fn gpus(&self) -> u32 {
        u32::try_from(self.gpus.max(0)).unwrap_or(u32::MAX)
    }

    /// Free GPUs of the node's type at `slot`, never below zero nor above all free GPUs (an
    /// untyped job reserved for later takes GPUs of no type in particular).
    pub fn typed_gpus(&self, slot: usize) -> u32 {
        let typed = self.typed.get(slot).copied().unwrap_or(0).min(self.gpus);
        u32::try_from(typed.max(0)).unwrap_or(u32::MAX)
    }

    /// Whether something holds the node.
    pub fn busy(&self) -> bool {
        self.jobs > 0
    }

    /// Takes what a job holds.
    pub fn take(&mut self, need: &Need) {
        self.units -= i64::from(need.units);
        self.memory = self.memory.saturating_sub(signed(need.memory));
        self.gpus -= i64::from(need.gpus);
        for (free, taken) in self.typed.iter_mut().zip(need.typed) {
            *free -= i64::from(taken);
        }
        self.jobs += 1;
        self.exclusive += u32::from(need.exclusive);
    }

    /// Gives back what a job held.
    pub fn give(&mut self, need: &Need) {
        self.units += i64::from(need.units);
        self.memory = self.memory.saturating_add(signed(need.memory));
        self.gpus += i64::from(need.gpus);
        for (free, given) in self.typed.iter_mut().zip(need.typed) {
            *free += i64::from(given);
        }
        self.jobs = self.jobs.saturating_sub(1);
        self.exclusive = self.exclusive.saturating_sub(u32::from(need.exclusive));
    }

    /// The lower of two: what is free at both moments.
    pub fn min(self, other: Avail) -> Avail {
        Avail {
            units: self.units.min(other.units),
            memory: self.memory.min(other.memory),
            gpus: self.gpus.min(other.gpus),
            typed: std::array::from_fn(|i| self.typed[i].min(other.typed[i])),
            jobs: self.jobs.max(other.jobs),
            exclusive: self.exclusive.max(other.exclusive),
        }
    }
}

/// What one job holds (or will hold) on one node, as counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Need {
    /// Placement units (cores).
    pub units: u32,
    /// Memory.
    pub memory: Bytes,
    /// GPUs.
    pub gpus: u32,
    /// Of those, how many of each of the node's types (an untyped job's planned GPUs are of
    /// no type in particular until it starts: zeros).
    pub typed: [u32; GPU_TYPE_SLOTS],
    /// Whether the job holds the node alone.
    pub exclusive: bool,
}

impl Need {
    /// All of `node`, held by an exclusive job: its figures as [`Avail::whole`] counts them
    /// (kept per node), not counted again over its CPUs on every candidate.
    pub fn whole(node: &Node) -> Self {
        let whole = Avail::whole(node);
        Need {
            units: whole.units(),
            memory: whole.memory(),
            gpus: whole.gpus(),
            typed: std::array::from_fn(|slot| whole.typed_gpus(slot)),
            exclusive: true,
        }
    }

    /// What a grant holds on its node.
    pub fn of_grant(node: &Node, grant: &NodeGrant) -> Self {
        Self::of_held(node, &grant.cpus, grant.memory, &grant.gpus, grant.exclusive)
    }

    /// What a job holding these CPUs, memory and GPUs holds on `node`.
    pub fn of_held(
        node: &Node,
        cpus: &gangway_topology::CpuSet,
        memory: Bytes,
        gpus: &gangway_topology::CpuSet,
        exclusive: bool,
    ) -> Self {
        Need {
            units: count_units(&node.topology, cpus),
            memory,
            gpus: gpus.len() as u32,
            typed: node.typed_counts(gpus),
            exclusive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterBuilder;

    #[test]
    fn take_and_give_round_trip() {
        let state = ClusterBuilder::new().build().unwrap();
        let node = &state.nodes()[0];
        let whole = Avail::whole(node);
        assert_eq!(whole, Avail::now(node));
        let need = Need { units: 3, memory: Bytes::gib(1), ..Need::default() };
        let mut a = whole;
        a.take(&need);
        assert!(a.busy());
        assert_eq!(a.units(), whole.units() - 3);
        // Taking more than there is, then giving back, lands where it started.
        let big = Need { units: 100, ..need };
        let mut b = whole;
        b.take(&big);
        assert_eq!(b.units(), 0);
        b.give(&big);
        assert_eq!(b, whole);
        a.give(&need);
        assert_eq!(a, whole);
        assert_eq!(whole.min(a), whole);
    }
}
