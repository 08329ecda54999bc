//! Preemption: which running jobs to stop so a waiting job's gang fits — the cheapest set by
//! work lost, then nothing more than needed — and which borrowing jobs to stop so a lender gets
//! its quota back. The victims are signalled by the controller; they keep their resources
//! (and the waiting job waits) until their end is reported, so a job never runs twice at once.

use std::cmp::Reverse;

use super::Scheduler;
use super::jobs::{Job, Where};
use crate::avail::{Avail, Need};
use crate::cluster::NodeHealth;
use crate::decision::{AfterPreempt, Decision, PreemptCause, Preemption};
use crate::gang::{Candidate, Constraints, JobShape, select};
use crate::policy::accounts::AccountId;
use crate::policy::quota::Tally;
use crate::types::{JobId, Timestamp};

/// The cheapest set of candidates (by `costs`, ties by position) for which `covers` holds,
/// trimmed so that no member can be left out: candidates are added cheapest first until the
/// set covers, then the dearest are dropped while it still does. `None` if all do not cover.
///
/// `covers` must be monotone (a superset of a covering set covers), which holds for "frees
/// enough resources" and "gives back enough quota".
pub(crate) fn cheapest_cover(
    costs: &[u64],
    mut covers: impl FnMut(&[usize]) -> bool,
) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by_key(|&i| (costs.get(i).copied().unwrap_or(u64::MAX), i));
    let mut chosen = Vec::new();
    let mut covered = false;
    for i in order {
        chosen.push(i);
        if covers(&chosen) {
            covered = true;
            break;
        }
    }
    if !covered {
        return None;
    }
    let mut dearest = chosen.clone();
    dearest.sort_by_key(|&i| (Reverse(costs.get(i).copied().unwrap_or(0)), Reverse(i)));
    for i in dearest {
        let without: Vec<usize> = chosen.iter().copied().filter(|&c| c != i).collect();
        if covers(&without) {
            chosen = without;
        }
    }
    Some(chosen)
}

/// A running job that could be preempted: its id, the work it would lose, what it holds.
type Victim = (JobId, u64, Vec<(usize, Need)>);

impl Scheduler {
    /// Tries to make room for `job` on partition `p` by preempting jobs of QOS levels its QOS
    /// may preempt. On success the victims are signalled and `job` waits for them.
    pub(super) fn try_preempt(
        &mut self,
        job: &mut Job,
        p: usize,
        shape: &JobShape,
        constraints: &Constraints,
        now: Timestamp,
        decisions: &mut Vec<Decision>,
    ) -> bool {
        if !self.policy.preempts_any(job.qos) {
            return false;
        }
        let Some(part) = self.cluster.partitions().get(p) else { return false };
        let nodes: Vec<usize> = part
            .nodes
            .iter()
            .copied()
            .filter(|n| !constraints.excluded.contains(n))
            .filter(|&n| self.cluster.nodes().get(n).is_some_and(|n| n.health() == NodeHealth::Up))
            .collect();
        let mut victims: Vec<Victim> = Vec::new();
        for other in self.jobs.values() {
            let Some(run) = other.run() else { continue };
            if run.stopping || !self.policy.preempts(job.qos, other.qos) {
                continue;
            }
            let held: Vec<(usize, Need)> = self
                .cluster
                .nodes_of(other.id)
                .iter()
                .filter_map(|&n| Some((n, self.need_of(other.id, n)?)))
                .collect();
            if held.iter().any(|(n, _)| nodes.contains(n)) {
                let lost = run.tally.cpus.saturating_mul(now.since(run.start).as_secs());
                victims.push((other.id, lost, held));
            }
        }
        if victims.is_empty() {
            return false;
        }
        victims.sort_by_key(|v| v.0);
        let base: Vec<Avail> =
            nodes.iter().filter_map(|&n| self.cluster.nodes().get(n).map(Avail::now)).collect();
        let required: Vec<Option<usize>> =
            constraints.required.iter().map(|r| nodes.iter().position(|n| n == r)).collect();
        let fits = |set: &[usize]| {
            let mut avail = base.clone();
            for &v in set {
                for (n, need) in victims.get(v).map_or(&[][..], |v| v.2.as_slice()) {
                    if let Some(a) =
                        nodes.iter().position(|x| x == n).and_then(|i| avail.get_mut(i))
                    {
                        a.give(need);
                    }
                }
            }
            let candidates: Vec<Candidate> = nodes
                .iter()
                .zip(&avail)
                .filter_map(|(&n, a)| {
                    let node = self.cluster.nodes().get(n)?;
                    let cap = shape.capacity(node, a, job.request.exclusive);
                    Some(Candidate { node: n, cap, partial: a.busy() })
                })
                .collect();
            select(candidates.as_slice(), &required, shape).is_some()
        };
        let costs: Vec<u64> = victims.iter().map(|v| v.1).collect();
        let Some(chosen) = cheapest_cover(&costs, fits) else { return false };
        for v in chosen {
            if let Some(&(victim, ..)) = victims.get(v) {
                self.preempt(victim, job.id, PreemptCause::Qos, now, decisions);
                job.awaiting.push(victim);
                self.preempted_for.insert(victim, job.id);
            }
        }
        true
    }

    /// Stops enough of the jobs borrowing from `lender` to give back `deficit` (less what
    /// borrowers already being stopped will give back).
    pub(super) fn reclaim(
        &mut self,
        job: &Job,
        lender: AccountId,
        deficit: &Tally,
        now: Timestamp,
        decisions: &mut Vec<Decision>,
    ) {
        let mut left = *deficit;
        let mut borrowers: Vec<(JobId, u64, Tally)> = Vec::new();
        for other in self.jobs.values() {
            let Some(run) = other.run() else { continue };
            let Some(&(_, lent)) = run.borrowed.iter().find(|(l, _)| *l == lender) else {
                continue;
            };
            if run.stopping {
                left.sub(&lent);
            } else {
                let lost = run.tally.cpus.saturating_mul(now.since(run.start).as_secs());
                borrowers.push((other.id, lost, lent));
            }
        }
        let enough = |t: &Tally| {
            t.cpus >= left.cpus
                && t.gpus >= left.gpus
                && t.memory >= left.memory
                && t.nodes >= left.nodes
        };
        if enough(&Tally::default()) || borrowers.is_empty() {
            return;
        }
        borrowers.sort_by_key(|b| b.0);
        let costs: Vec<u64> = borrowers.iter().map(|b| b.1).collect();
        let covers = |set: &[usize]| {
            let mut t = Tally::default();
            for &i in set {
                if let Some(b) = borrowers.get(i) {
                    t.add(&b.2);
                }
            }
            enough(&t)
        };
        let Some(chosen) = cheapest_cover(&costs, covers) else { return };
        let name = self.policy.tree.name(lender).to_owned();
        for i in chosen {
            if let Some(&(victim, ..)) = borrowers.get(i) {
                let cause = PreemptCause::QuotaReclaim { lender: name.clone() };
                self.preempt(victim, job.id, cause, now, decisions);
            }
        }
    }

    /// What job `id` holds on node `n`, as counts.
    fn need_of(&self, id: JobId, n: usize) -> Option<Need> {
        let node = self.cluster.nodes().get(n)?;
        let a = node.allocations().iter().find(|a| a.job == id)?;
        Some(Need::of_held(node, &a.cpus, a.memory, &a.gpus, a.exclusive))
    }

    /// Signals one victim: it stops within its QOS's grace, then is requeued or cancelled.
    fn preempt(
        &mut self,
        victim: JobId,
        by: JobId,
        cause: PreemptCause,
        now: Timestamp,
        decisions: &mut Vec<Decision>,
    ) {
        let nodes = self.cluster.nodes_of(victim).to_vec();
        let needs: Vec<(usize, Need)> =
            nodes.iter().filter_map(|&n| Some((n, self.need_of(victim, n)?))).collect();
        let Some(job) = self.jobs.get_mut(&victim) else { return };
        let Where::Running(run) = &mut job.at else { return };
        run.stopping = true;
        let lost = run.tally.cpus.saturating_mul(now.since(run.start).as_secs());
        let qos = self.policy.qos(job.qos);
        let grace = qos.map_or(std::time::Duration::ZERO, |q| q.grace);
        let then = match qos.map(|q| q.preempt_mode) {
            Some(AfterPreempt::Requeue) if job.requeue => AfterPreempt::Requeue,
            _ => AfterPreempt::Cancel,
        };
        // Reservations should count on the victim's resources by the end of its grace.
        let end = now.after(grace);
        run.end = run.end.min(end);
        self.profile.remove_job(victim, nodes.iter().copied());
        for (n, need) in needs {
            self.profile.add_release(n, victim, need, end);
        }
        decisions.push(Decision::Preempt(Preemption {
            victim,
            by,
            cause,
            grace,
            then,
            lost_cpu_seconds: lost,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cheapest_then_trimmed() {
        // Need 10 units; sizes and costs of candidates.
        let sizes = [6u64, 4, 10, 5];
        let costs = [1u64, 2, 50, 3];
        let covers = |set: &[usize]| set.iter().map(|&i| sizes[i]).sum::<u64>() >= 10;
        let chosen = cheapest_cover(&costs, covers).unwrap();
        let mut sorted = chosen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1], "6+4 is enough; the dear 10 is not taken");
        assert!(cheapest_cover(&costs, |_: &[usize]| false).is_none());
    }

    proptest! {
        /// The chosen set covers, and leaving out any one member does not: minimal.
        #[test]
        fn the_chosen_set_is_minimal(
            sizes in prop::collection::vec(1u64..20, 1..12),
            costs in prop::collection::vec(0u64..100, 12),
            need in 1u64..60,
        ) {
            let costs = &costs[..sizes.len()];
            let covers = |set: &[usize]| set.iter().map(|&i| sizes[i]).sum::<u64>() >= need;
            match cheapest_cover(costs, covers) {
                None => prop_assert!(sizes.iter().sum::<u64>() < need),
                Some(set) => {
                    prop_assert!(covers(&set));
                    for &i in &set {
                        let without: Vec<usize> = set.iter().copied().filter(|&x| x != i).collect();
                        prop_assert!(!covers(&without), "{i} could be left out of {set:?}");
                    }
                }
            }
        }
    }
}
