//! The one GPU-affinity rule: which of a node's GPUs each task gets. Rank placement (what the
//! launcher binds, `CUDA_VISIBLE_DEVICES`) and the scheduler's grants (what a job holds) both go
//! through [`GpuChooser`], so the GPUs granted to a task and the GPUs it is bound to cannot
//! differ: given the same CPUs and the same available GPUs, the choice is the same.

use crate::cpuset::CpuSet;
use crate::model::Topology;

/// Hands out a node's GPUs task by task.
///
/// The rule, per GPU a task needs: among the available GPUs handed out the fewest times so far
/// (so GPUs are shared only when `--oversubscribe` asks for more than there are), the one
/// sharing the most CPUs with the task, then the lowest position in the model. A GPU is never
/// given twice to one task.
#[derive(Debug, Clone)]
pub struct GpuChooser<'a> {
    topology: &'a Topology,
    /// GPU indexes ([`crate::Gpu::index`]) that may be chosen; `None`: all of them.
    available: Option<&'a CpuSet>,
    /// Times each GPU (by position in [`Topology::gpus`]) was handed out.
    uses: Vec<u32>,
}

impl<'a> GpuChooser<'a> {
    /// A chooser over `topology`'s GPUs, restricted to `available` (GPU indexes, e.g. a job's
    /// grant) when given.
    pub fn new(topology: &'a Topology, available: Option<&'a CpuSet>) -> Self {
        Self { topology, available, uses: vec![0; topology.gpus.len()] }
    }

    /// How many GPUs may be chosen at all.
    pub fn available_count(&self) -> usize {
        match self.available {
            None => self.topology.gpus.len(),
            Some(a) => self.topology.gpus.iter().filter(|g| a.contains(g.index)).count(),
        }
    }

    /// Chooses `count` GPUs for a task running on `near` (its CPUs); returns their indexes
    /// ([`crate::Gpu::index`]), fewer when fewer are available.
    pub fn pick(&mut self, near: &CpuSet, count: u32) -> Vec<u32> {
        let mut picked: Vec<usize> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let candidates = self
                .topology
                .gpus
                .iter()
                .enumerate()
                .filter(|(_, g)| self.available.is_none_or(|a| a.contains(g.index)))
                .filter(|(i, _)| !picked.contains(i));
            let min_use = candidates
                .clone()
                .filter_map(|(i, _)| self.uses.get(i).copied())
                .min()
                .unwrap_or(0);
            let best = candidates
                .filter(|(i, _)| self.uses.get(*i).copied() == Some(min_use))
                .max_by_key(|(i, g)| (g.cpuset.intersection(near).len(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            if let Some(u) = self.uses.get_mut(i) {
                *u += 1;
            }
            picked.push(i);
        }
        picked.iter().filter_map(|&i| self.topology.gpus.get(i).map(|g| g.index)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;

    fn two_socket_four_gpus() -> Topology {
        let mut shape = Shape::new(2, 4, 1);
        shape.gpus_per_package = 2;
        shape.build().unwrap()
    }

    #[test]
    fn near_gpus_first_then_lowest_position() {
        let t = two_socket_four_gpus();
        let socket1: CpuSet = "4-7".parse().unwrap();
        let mut c = GpuChooser::new(&t, None);
        let near: Vec<u32> =
            t.gpus.iter().filter(|g| g.cpuset.intersects(&socket1)).map(|g| g.index).collect();
        assert_eq!(c.pick(&socket1, 2), near);
        // Both near GPUs are taken once: the next task gets the far ones before sharing.
        let far = c.pick(&socket1, 2);
        assert!(far.iter().all(|g| !near.contains(g)), "{far:?}");
    }

    #[test]
    fn only_available_gpus_are_chosen() {
        let t = two_socket_four_gpus();
        let only: CpuSet = std::iter::once(t.gpus[3].index).collect();
        let mut c = GpuChooser::new(&t, Some(&only));
        assert_eq!(c.available_count(), 1);
        assert_eq!(c.pick(&"0-3".parse().unwrap(), 2), vec![t.gpus[3].index]);
    }

    #[test]
    fn shares_only_when_every_gpu_was_handed_out() {
        let t = two_socket_four_gpus();
        let mut c = GpuChooser::new(&t, None);
        let all: Vec<u32> = (0..4).flat_map(|_| c.pick(&CpuSet::new(), 1)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "each GPU once before any twice: {all:?}");
    }
}
