//! The pass: jobs in priority order, each started if it fits without delaying what the
//! backfill mode protects, else kept waiting with a reason (and, for the jobs that hold one, a
//! reservation). A full pass recomputes priorities and reservations first; in between, a pass
//! starts from the top only when resources were freed, and otherwise decides newly queued
//! jobs alone — any job ahead of them was already looked at against the same resources.

use std::ops::Bound;
use std::time::Duration;

use super::arrays::ARRAY_STARTS_PER_LOOK;
use super::jobs::{Job, Where};
use super::profile::{Query, Reservation};
use super::view::{LaneView, ViewKind, required_positions, static_fit};
use super::{Budget, Pass, Scan, Scheduler};
use crate::cluster::NodeHealth;
use crate::decision::{Decision, PendingReason};
use crate::gang::{Constraints, JobShape, select};
use crate::grant::JobStart;
use crate::grant_placement::build_grants;
use crate::policy::config::BackfillMode;
use crate::policy::quota::{Admission, Park, Tally};
use crate::types::{JobId, Timestamp};

/// What a job gets from one look.
enum Verdict {
    /// Start it on these nodes (index, tasks).
    Start { nodes: Vec<(usize, u32)>, partition: usize, backfilled: bool },
    /// Keep it waiting in the queue.
    Wait(PendingReason),
    /// Set it aside until the quota it waits on has room.
    Park(PendingReason, Park),
}

impl Scheduler {
    /// Runs a pass: decisions for as many jobs as `budget` allows.
    pub fn pass(&mut self, now: Timestamp, budget: Budget) -> Pass {
        self.run_pass(now, budget, None)
    }

    /// [`Scheduler::pass`], timing each job's decision with `clock` (any monotonic count, e.g.
    /// nanoseconds; the crate never reads a clock itself).
    pub fn pass_timed(
        &mut self,
        now: Timestamp,
        budget: Budget,
        clock: &mut dyn FnMut() -> u64,
    ) -> Pass {
        self.run_pass(now, budget, Some(clock))
    }

    fn run_pass(
        &mut self,
        now: Timestamp,
        budget: Budget,
        mut clock: Option<&mut dyn FnMut() -> u64>,
    ) -> Pass {
        let mut out = Pass::default();
        loop {
            if out.examined >= budget.jobs {
                return out;
            }
            if self.scan.is_none() {
                if self.next_full.is_none_or(|t| now >= t) {
                    out.full |= self.begin_scan(now, true);
                } else if self.stale {
                    self.begin_scan(now, false);
                } else if let Some(id) = self.fresh.pop_front() {
                    if self.jobs.get(&id).is_some_and(|j| j.at == Where::Queued) {
                        self.timed(id, now, &mut out, &mut clock);
                    }
                    continue;
                } else {
                    out.done = true;
                    return out;
                }
            }
            let Some(scan) = &self.scan else { continue };
            let from = scan.cursor.map_or(Bound::Unbounded, Bound::Excluded);
            let mut next = self.queue.order.range((from, Bound::Unbounded)).next().copied();
            if next.is_some() && self.all_closed() {
                // Without backfill, once every partition waits for a blocked job nothing after
                // it can start: the rest keep their reasons; those queued since the last pass
                // have none yet and are judged on their own.
                let cursor = scan.cursor;
                let unjudged: Vec<JobId> = scan
                    .fresh
                    .iter()
                    .copied()
                    .filter(|id| {
                        self.jobs.get(id).is_some_and(|j| {
                            j.at == Where::Queued && cursor.is_none_or(|c| j.key() > c)
                        })
                    })
                    .collect();
                for id in unjudged {
                    self.timed(id, now, &mut out, &mut clock);
                }
                next = None;
            }
            match next {
                Some(key) => {
                    if let Some(s) = self.scan.as_mut() {
                        s.cursor = Some(key);
                    }
                    self.timed(key.2, now, &mut out, &mut clock);
                }
                None => {
                    self.settled_epoch = self.profile_epoch;
                    if self.scan.take().is_some_and(|s| s.full) {
                        self.finish_full(now);
                    }
                }
            }
        }
    }

    fn all_closed(&self) -> bool {
        !self.closed_parts.is_empty() && self.closed_parts.iter().all(|&c| c)
    }

    /// Starts a pass from the top; `false` when a due full pass found nothing to do.
    fn begin_scan(&mut self, now: Timestamp, full: bool) -> bool {
        if full {
            let before: Vec<JobId> = self.queue.order.iter().map(|k| k.2).collect();
            self.recompute_priorities(now);
            // Nothing freed, no reservation moved, the same order: every job would be judged
            // against the same resources in the same order as last time. Skip the scan.
            if !self.stale
                && self.profile_epoch == self.settled_epoch
                && self.queue.order.iter().map(|k| k.2).eq(before.iter().copied())
            {
                self.finish_full(now);
                return false;
            }
            // EASY reservations are made afresh. Conservative ones stay: each job's is moved
            // only when the pass reaches it, with every other in place, so it can only move
            // earlier (its old slot is still free) and no job is ever pushed back.
            // Claims of jobs waiting for preempted jobs stay too: the room is being made for them.
            if self.policy.config.backfill != BackfillMode::Conservative {
                // ... and so do those made since anything was freed: they are still earliest.
                let held: Vec<JobId> = self
                    .reservations
                    .values()
                    .filter(|r| r.epoch != self.profile_epoch)
                    .map(|r| r.job)
                    .filter(|id| self.jobs.get(id).is_none_or(|j| j.awaiting.is_empty()))
                    .collect();
                for id in held {
                    self.drop_reservation(id, now);
                }
            }
        }
        // Nodes kept for waiting jobs are kept again, if still wanted, by this pass.
        self.closed.iter_mut().for_each(|c| *c = false);
        self.closed_parts.iter_mut().for_each(|c| *c = false);
        let fresh = self.fresh.drain(..).collect();
        self.scan = Some(Scan { full, fresh, ..Scan::default() });
        self.stale = false;
        true
    }

    fn finish_full(&mut self, now: Timestamp) {
        // At most one full pass per moment, whatever the interval.
        let interval = self.policy.config.full_pass_interval;
        self.next_full = Some(now.after(interval.max(Duration::from_millis(1))));
    }

    fn timed(
        &mut self,
        id: JobId,
        now: Timestamp,
        out: &mut Pass,
        clock: &mut Option<&mut dyn FnMut() -> u64>,
    ) {
        let t0 = clock.as_mut().map(|c| c());
        self.consider(id, now, out);
        if let (Some(t0), Some(c)) = (t0, clock.as_mut()) {
            out.decision_times.push(c().saturating_sub(t0));
        }
        out.examined += 1;
    }

    /// Looks at one queued job and carries out the verdict. A job array is looked at again
    /// after each task it starts, in its turn, so its tasks keep their place in the queue.
    fn consider(&mut self, id: JobId, now: Timestamp, out: &mut Pass) {
        let mut looks = 0;
        // After its last start the array is looked at once more: a throttle reached is its
        // reason then.
        while self.consider_once(id, now, out) && self.more_tasks(id) {
            looks += 1;
            if looks == ARRAY_STARTS_PER_LOOK {
                // The rest in this pass's continuation: a pass stays bounded.
                self.fresh.push_back(id);
                return;
            }
        }
    }

    /// One look; whether it started the job (or a task of it).
    fn consider_once(&mut self, id: JobId, now: Timestamp, out: &mut Pass) -> bool {
        let Some(mut job) = self.jobs.remove(&id) else { return false };
        let verdict = self.judge(&mut job, now, &mut out.decisions);
        self.jobs.insert(id, job);
        match verdict {
            Verdict::Wait(reason) => {
                use PendingReason as R;
                if !matches!(reason, R::Resources | R::Priority | R::Preemption) {
                    // A job that cannot start for other reasons holds no place in the future.
                    self.drop_reservation(id, now);
                }
                self.report(id, reason, &mut out.decisions);
            }
            Verdict::Park(reason, park) => {
                self.drop_reservation(id, now);
                if let Some(job) = self.jobs.get_mut(&id) {
                    self.queue.park(job, park);
                }
                self.report(id, reason, &mut out.decisions);
            }
            Verdict::Start { nodes, partition, backfilled } => {
                match self.start(id, partition, &nodes, backfilled, now, out) {
                    Ok(()) => {
                        out.started += 1;
                        out.backfilled += usize::from(backfilled);
                        return true;
                    }
                    Err(Verdict::Park(reason, park)) => {
                        if let Some(job) = self.jobs.get_mut(&id) {
                            self.queue.park(job, park);
                        }
                        self.report(id, reason, &mut out.decisions);
                    }
                    Err(_) => self.report(id, PendingReason::Resources, &mut out.decisions),
                }
            }
        }
        false
    }

    /// Decides one job (taken out of the job table while judged).
    fn judge(&mut self, job: &mut Job, now: Timestamp, decisions: &mut Vec<Decision>) -> Verdict {
        use PendingReason as R;
        if job.request.check_shape().is_err() {
            return Verdict::Wait(R::Unsatisfiable);
        }
        if job.array.is_some_and(|a| a.throttle.is_some_and(|t| a.running >= t)) {
            return Verdict::Wait(R::JobArrayTaskLimit);
        }
        let Some(p) = job.partition else {
            return Verdict::Wait(R::Unsatisfiable);
        };
        let Some(part) = self.cluster.partitions().get(p) else {
            return Verdict::Wait(R::Unsatisfiable);
        };
        let limit = job.limit(part.default_time);
        if let (Some(l), Some(max)) = (limit, part.max_time)
            && l > max
        {
            return Verdict::Wait(R::PartitionTimeLimit);
        }
        let Some(qos) = self.policy.qos(job.qos) else { return Verdict::Wait(R::Unsatisfiable) };
        if let (Some(max), Some(l)) = (qos.max_wall, limit)
            && l > max
        {
            return Verdict::Wait(R::QosMaxWallTime);
        }
        if self.policy.tree.get(job.account).is_none() {
            return Verdict::Wait(R::Unsatisfiable);
        }
        let constraints = crate::validate::constraints(&self.cluster, &job.request);
        if constraints.required.len() < job.request.nodelist.len() {
            return Verdict::Wait(R::Unsatisfiable);
        }
        let shape = JobShape::of(&job.request);
        let exclusive = job.request.exclusive;
        let nodes = part.nodes.clone();
        match self.static_fit.get(&job.class) {
            Some(&(epoch, reason)) if epoch == self.health_epoch && constraints.is_empty() => {
                if reason != R::Resources {
                    return Verdict::Wait(reason);
                }
            }
            _ => {
                let reason = static_fit(&self.cluster, &nodes, &shape, exclusive, &constraints);
                if constraints.is_empty() {
                    let cached = reason.unwrap_or(R::Resources);
                    self.static_fit.insert(job.class, (self.health_epoch, cached));
                }
                if let Some(r) = reason {
                    return Verdict::Wait(r);
                }
            }
        }
        // A first quota check on an estimate, so a job over quota costs nothing more; the
        // exact one follows once the nodes are chosen.
        let estimate = self.estimate(job, &shape, &nodes);
        match self.admit(job, &estimate) {
            Admission::Own | Admission::Borrow(_) => self.unwant(job.id),
            Admission::Wait { reason, park } => {
                self.unwant(job.id);
                return Verdict::Park(reason, park);
            }
            Admission::Reclaim { lender, deficit } => {
                self.wanting.entry(lender).or_default().insert(job.id);
                self.reclaim(job, lender, &deficit, now, decisions);
                return Verdict::Park(R::QuotaReclaim, Park::Account(lender));
            }
        };
        if !job.awaiting.is_empty() {
            self.claim(job, p, &shape, &constraints, limit, now);
            return Verdict::Wait(R::Preemption);
        }
        let mode = self.policy.config.backfill;
        if mode == BackfillMode::Conservative {
            return self.judge_conservative(job, p, &shape, &constraints, limit, now);
        }
        // EASY: a job ahead of the reservation's holder is judged without it (it comes
        // first); the holder itself is judged without its own, and gets it back unchanged if
        // it still cannot start (resources only grew since it was made).
        // A job is judged without its own reservation (EASY holder, or a preemptor's claim),
        // and gets it back unchanged if it still cannot start: resources only grew since it
        // was made. A job ahead of the EASY holder is judged without the holder's (it comes
        // first).
        let was_holder = self.holders.get(p).copied().flatten() == Some(job.id);
        let kept = self.reservations.get(&job.id).cloned();
        let epoch_before = self.profile_epoch;
        if kept.is_some() {
            self.drop_reservation(job.id, now);
            if let Some(s) = self.scan.as_mut() {
                // What alike jobs failed against may have been this job's own reservation.
                s.failed.retain(|(class, _)| *class != job.class);
            }
        }
        if mode == BackfillMode::Easy
            && let Some(h) = self.holders.get(p).copied().flatten()
            && self.jobs.get(&h).is_none_or(|holder| holder.key() > job.key())
        {
            self.drop_reservation(h, now);
        }
        let shadow = self.shadow.get(p).copied().unwrap_or(Timestamp::NEVER);
        let long = mode == BackfillMode::Easy && now.after_limit(limit) > shadow;
        let kind = if long { ViewKind::Long } else { ViewKind::Now };
        if let Some(nodes) = self.fit(job, p, &shape, &constraints, kind) {
            return Verdict::Start { nodes, partition: p, backfilled: shadow != Timestamp::NEVER };
        }
        let open = mode == BackfillMode::None || kind == ViewKind::Long;
        let reason = if open && self.fit(job, p, &shape, &constraints, ViewKind::Open).is_some() {
            R::Priority
        } else {
            R::Resources
        };
        if reason == R::Resources && self.try_preempt(job, p, &shape, &constraints, now, decisions)
        {
            self.claim(job, p, &shape, &constraints, limit, now);
            return Verdict::Wait(R::Preemption);
        }
        let free_slot = self.holders.get(p).copied().flatten().is_none();
        if kept.is_some() && self.profile_epoch == epoch_before + 1 {
            // Only its own reservation was dropped, and it goes back as it was.
            self.profile_epoch = epoch_before;
        }
        match (mode, kept) {
            (BackfillMode::None, _) => self.close(p, &constraints),
            (_, Some(r)) if was_holder && free_slot => self.restore_reservation(r, p, now),
            (_, Some(r)) if !was_holder => self.put_reservation(r, now),
            (BackfillMode::Easy, _) if free_slot => {
                self.reserve(job, p, &shape, &constraints, limit, now);
            }
            _ => {}
        }
        Verdict::Wait(reason)
    }

    fn judge_conservative(
        &mut self,
        job: &Job,
        p: usize,
        shape: &JobShape,
        constraints: &Constraints,
        limit: Option<Duration>,
        now: Timestamp,
    ) -> Verdict {
        // A reservation made since anything last freed resources is still the earliest: keep
        // it without a sweep (what keeps a full pass over a deep queue cheap).
        let old = self.reservations.get(&job.id).map(|r| (r.start, r.epoch));
        if let Some((start, epoch)) = old
            && epoch == self.profile_epoch
            && start > now
        {
            return Verdict::Wait(job.reported.map_or(PendingReason::Resources, |r| r.0));
        }
        let epoch_before = self.profile_epoch;
        if old.is_some() {
            self.drop_reservation(job.id, now);
        } else if self.reservations.len() >= self.policy.config.reservation_depth {
            // Every job ahead holds a reservation; this one may not jump them unprotected.
            return Verdict::Wait(PendingReason::Priority);
        }
        let backfilled = self.shadow.get(p).is_some_and(|&s| s != Timestamp::NEVER);
        let Some(slot) = self.earliest(job, p, shape, constraints, limit, now) else {
            return Verdict::Wait(PendingReason::Resources);
        };
        if slot.at == now {
            return Verdict::Start { nodes: slot.nodes, partition: p, backfilled };
        }
        let reason = if self.fit(job, p, shape, constraints, ViewKind::Open).is_some() {
            PendingReason::Priority
        } else {
            PendingReason::Resources
        };
        if old.is_some_and(|(start, _)| slot.at >= start) {
            // It did not move: nothing was freed for the others either.
            self.profile_epoch = epoch_before;
        }
        self.add_reservation(job, p, shape, limit, slot.at, &slot.nodes, now);
        Verdict::Wait(reason)
    }

    /// What a job would hold, before its nodes are chosen (for the quota check).
    fn estimate(&self, job: &Job, shape: &JobShape, nodes: &[usize]) -> Tally {
        let node = nodes.first().and_then(|&n| self.cluster.nodes().get(n));
        let per_unit = node.map_or(1, |n| u64::from(n.cpus_per_unit));
        let need = node
            .map(|n| shape.need(n, shape.ntasks.div_ceil(shape.min_nodes), job.request.exclusive));
        let nodes = u64::from(shape.min_nodes);
        let units = if job.request.exclusive {
            need.map_or(0, |n| u64::from(n.units)) * nodes
        } else {
            u64::from(shape.ntasks) * u64::from(shape.cpus_per_task)
        };
        Tally {
            cpus: units * per_unit,
            gpus: need.map_or(0, |n| u64::from(n.gpus)) * nodes,
            memory: need.map_or_else(Default::default, |n| n.memory.saturating_mul(nodes)),
            nodes,
            jobs: 1,
        }
    }

    pub(super) fn admit(&self, job: &Job, tally: &Tally) -> Admission {
        if self.policy.unlimited {
            return Admission::Own;
        }
        let limits = self.policy.qos_limits(job.qos);
        let wanting = |a: u32| self.wanting.get(&a).is_some_and(|w| w.iter().any(|&j| j != job.id));
        self.quotas.admit(&self.policy.tree, job.account, job.qos, &limits, tally, &wanting)
    }

    /// The gang's nodes now in view `kind`, or `None`.
    fn fit(
        &mut self,
        job: &Job,
        p: usize,
        shape: &JobShape,
        constraints: &Constraints,
        kind: ViewKind,
    ) -> Option<Vec<(usize, u32)>> {
        let key = (job.class, kind as u8);
        if self.scan.as_ref().is_some_and(|s| s.failed.contains(&key)) {
            return None;
        }
        let part = self.lanes.part(p)?;
        let exclusive = job.request.exclusive;
        let all_closed =
            kind != ViewKind::Open && self.closed_parts.get(p).copied().unwrap_or(false);
        let chosen = if all_closed || !part.may_fit(shape, exclusive) {
            None
        } else {
            let required = required_positions(&part.nodes, constraints);
            let view = LaneView {
                cluster: &self.cluster,
                part,
                shape,
                exclusive,
                excluded: &constraints.excluded,
                spare: (kind == ViewKind::Long).then_some(&self.spare),
                closed: (kind != ViewKind::Open).then_some(self.closed.as_slice()),
            };
            select(&view, &required, shape).map(|c| {
                c.into_iter().filter_map(|(pos, n)| Some((*part.nodes.get(pos)?, n))).collect()
            })
        };
        if chosen.is_none()
            && let Some(s) = self.scan.as_mut()
        {
            s.failed.insert(key);
        }
        chosen
    }

    /// The earliest slot for a job in the profile, on its partition's usable nodes.
    fn earliest(
        &self,
        job: &Job,
        p: usize,
        shape: &JobShape,
        constraints: &Constraints,
        limit: Option<Duration>,
        now: Timestamp,
    ) -> Option<super::profile::Slot> {
        let part = self.cluster.partitions().get(p)?;
        let usable: Vec<usize> = part
            .nodes
            .iter()
            .copied()
            .filter(|n| !constraints.excluded.contains(n))
            .filter(|&n| self.cluster.nodes().get(n).is_some_and(|n| n.health() == NodeHealth::Up))
            .collect();
        let required = required_positions(&usable, constraints);
        let q = Query {
            nodes: &usable,
            required: &required,
            shape,
            exclusive: job.request.exclusive,
            duration: limit,
            now,
            horizon: Timestamp::NEVER,
        };
        self.profile.earliest(&self.cluster, &q)
    }

    /// EASY: the partition's first blocked job reserves its earliest slot.
    fn reserve(
        &mut self,
        job: &Job,
        p: usize,
        shape: &JobShape,
        constraints: &Constraints,
        limit: Option<Duration>,
        now: Timestamp,
    ) {
        if let Some(slot) = self.earliest(job, p, shape, constraints, limit, now) {
            self.add_reservation(job, p, shape, limit, slot.at, &slot.nodes, now);
            if let Some(h) = self.holders.get_mut(p) {
                *h = Some(job.id);
            }
        }
    }

    /// A job waiting for preempted jobs to stop holds what they free: a reservation from the
    /// end of their grace (or, without backfill, the partition's nodes), so no other job takes
    /// the room made for it.
    fn claim(
        &mut self,
        job: &Job,
        p: usize,
        shape: &JobShape,
        constraints: &Constraints,
        limit: Option<Duration>,
        now: Timestamp,
    ) {
        if self.policy.config.backfill == BackfillMode::None {
            self.close(p, constraints);
        } else if !self.reservations.contains_key(&job.id)
            && let Some(slot) = self.earliest(job, p, shape, constraints, limit, now)
        {
            self.add_reservation(job, p, shape, limit, slot.at, &slot.nodes, now);
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one reservation's parts, each distinct")]
    fn add_reservation(
        &mut self,
        job: &Job,
        _p: usize,
        shape: &JobShape,
        limit: Option<Duration>,
        at: Timestamp,
        nodes: &[(usize, u32)],
        now: Timestamp,
    ) {
        let r = Reservation {
            job: job.id,
            epoch: self.profile_epoch,
            start: at,
            end: at.after_limit(limit),
            nodes: nodes
                .iter()
                .filter_map(|&(n, count)| {
                    let node = self.cluster.nodes().get(n)?;
                    Some((n, shape.need(node, count, job.request.exclusive), count))
                })
                .collect(),
        };
        self.put_reservation(r, now);
    }

    fn put_reservation(&mut self, r: Reservation, now: Timestamp) {
        self.profile.add_reservation(&r);
        let touched: Vec<usize> = r.nodes.iter().map(|(n, ..)| *n).collect();
        self.reservations.insert(r.job, r);
        for n in touched {
            self.refresh_spare(n, now);
        }
        self.recompute_shadows();
    }

    /// Gives an EASY holder its reservation back as it was.
    fn restore_reservation(&mut self, r: Reservation, p: usize, now: Timestamp) {
        if let Some(h) = self.holders.get_mut(p) {
            *h = Some(r.job);
        }
        self.put_reservation(r, now);
    }

    /// No backfill: what the blocked job could use is kept from the jobs after it.
    fn close(&mut self, p: usize, constraints: &Constraints) {
        if self.closed_parts.get(p).copied().unwrap_or(true) {
            return;
        }
        let Some(part) = self.cluster.partitions().get(p) else { return };
        for &n in &part.nodes {
            if !constraints.excluded.contains(&n)
                && let Some(c) = self.closed.get_mut(n)
            {
                *c = true;
            }
        }
        if constraints.excluded.is_empty()
            && let Some(c) = self.closed_parts.get_mut(p)
        {
            *c = true;
        }
    }

    /// Builds grants, checks quotas on what they hold, records the start and reports it.
    /// `Err` with the verdict when placement disagreed or the exact quota check said no.
    fn start(
        &mut self,
        id: JobId,
        p: usize,
        nodes: &[(usize, u32)],
        backfilled: bool,
        now: Timestamp,
        out: &mut Pass,
    ) -> Result<(), Verdict> {
        let resources = Verdict::Wait(PendingReason::Resources);
        let Some(job) = self.jobs.get(&id) else { return Err(resources) };
        let Some(part) = self.cluster.partitions().get(p) else { return Err(resources) };
        let time_limit = job.limit(part.default_time);
        let Some(grants) = build_grants(&self.cluster, nodes, &job.request, &mut self.cache) else {
            return Err(resources);
        };
        // An array's start is a task's: a job of its own, under the next id.
        let array = job.array.is_some().then_some(id);
        let run_id = if array.is_some() { self.next_task_id } else { id };
        let start =
            JobStart { job: run_id, partition: part.name.clone(), time_limit, nodes: grants };
        let borrowed = match self.admit(job, &self.tally_of(&start)) {
            Admission::Own => Vec::new(),
            Admission::Borrow(from) => from,
            Admission::Wait { reason, park } => return Err(Verdict::Park(reason, park)),
            Admission::Reclaim { lender, .. } => {
                return Err(Verdict::Park(PendingReason::QuotaReclaim, Park::Account(lender)));
            }
        };
        if self.cluster.allocate(&start).is_err() {
            return Err(resources);
        }
        self.drop_reservation(id, now);
        if array.is_some() {
            self.split_task(id, run_id, now);
        } else {
            self.unwant(id);
            if let Some(job) = self.jobs.get(&id) {
                self.queue.remove(job);
            }
        }
        let borrowed_from =
            borrowed.iter().map(|(l, _)| self.policy.tree.name(*l).to_owned()).collect();
        self.record_start(run_id, p, &start, borrowed, backfilled, now);
        out.decisions.push(Decision::Start { start, backfilled, borrowed_from, array });
        Ok(())
    }
}
