//! How the scheduler's books change: submissions, a job started or ended, holds, dependencies,
//! node health; each updates the indexes it touches (node lanes, reservation profile, quota
//! holdings, usage, the queue) so the next pass need not rescan anything.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::jobs::{Job, Run, Where};
use super::{Event, NewJob, Scheduler, SubmitError};
use crate::avail::Need;
use crate::cluster::NodeHealth;
use crate::decision::{Decision, PendingReason};
use crate::grant::JobStart;
use crate::policy::Policy;
use crate::policy::accounts::{AccountRefusal, UsageValue, accrue, fair_share_factor};
use crate::policy::priority::{Factors, priority};
use crate::policy::quota::{Park, Tally};
use crate::request::JobRequest;
use crate::types::{JobId, Timestamp, format_duration};
use crate::validate::validate;

/// Parked jobs woken per event and target: the best ones; the rest wait for the next.
const WAKE_BATCH: usize = 256;

impl Scheduler {
    /// Checks and queues a job (or sets it aside until its dependencies are met).
    pub fn submit(&mut self, job: NewJob, now: Timestamp) -> Result<(), SubmitError> {
        validate(&self.cluster, &job.request)?;
        let dependency = job.dependency;
        let held = job.request.held;
        let mut j = self.make_job(job, now)?;
        if let Some(q) = self.policy.qos(j.qos)
            && let (Some(max), Some(limit)) = (q.max_wall, self.limit_of(&j.request))
            && limit > max
        {
            return Err(SubmitError::OverQosWallTime {
                qos: q.name.clone(),
                max: format_duration(max),
            });
        }
        if let Err(a) = self.quotas.can_queue(&self.policy.tree, j.account) {
            return Err(SubmitError::QueuedLimit(self.policy.tree.name(a).to_owned()));
        }
        self.quotas.count_queued(&self.policy.tree, j.account, true);
        let id = j.id;
        if dependency {
            j.at = Where::Dependency;
        } else if held {
            j.at = Where::Held;
        } else {
            self.queue.enqueue(&mut j);
            self.fresh.push_back(id);
        }
        self.jobs.insert(id, j);
        Ok(())
    }

    /// Builds the books of a new job: account, QOS, class, priority as of `now`.
    pub(super) fn make_job(
        &mut self,
        job: NewJob,
        now: Timestamp,
    ) -> Result<Box<Job>, SubmitError> {
        if self.jobs.contains_key(&job.id) {
            return Err(SubmitError::Duplicate(job.id));
        }
        let tree = &self.policy.tree;
        let account = tree.resolve(&job.user, job.account.as_deref()).map_err(|e| match e {
            AccountRefusal::Unknown(a) => SubmitError::UnknownAccount(a),
            AccountRefusal::NotMember { user, account } => SubmitError::NotMember { user, account },
            AccountRefusal::NoAccount(u) => SubmitError::NoAccount(u),
        })?;
        let qos = match &job.qos {
            Some(name) => {
                self.policy.qos_named(name).ok_or_else(|| SubmitError::UnknownQos(name.clone()))?
            }
            None => self.policy.default_qos,
        };
        let assoc = self.policy.tree.assoc(account, &job.user);
        if self.fairshare.len() <= assoc as usize {
            self.fairshare.resize(assoc as usize + 1, 1.0);
        }
        let partition = self.partition_index(&job.request);
        let mut j = Box::new(Job {
            id: job.id,
            partition,
            class: class_of(&job.request),
            request: job.request,
            account,
            assoc,
            qos,
            nice: job.nice,
            requeue: job.requeue,
            factors: Factors::default(),
            priority: 0,
            eligible: now,
            at: Where::Queued,
            reported: None,
            awaiting: Vec::new(),
            array: job.array,
            task_of: job.task_of,
        });
        self.set_priority(&mut j, now);
        Ok(j)
    }

    /// The job's time limit: its own or its partition's default.
    pub(super) fn limit_of(&self, r: &JobRequest) -> Option<std::time::Duration> {
        let p = self.partition_index(r).and_then(|p| self.cluster.partitions().get(p));
        r.time_limit.or(p.and_then(|p| p.default_time))
    }

    /// Index of the request's partition.
    pub(super) fn partition_index(&self, r: &JobRequest) -> Option<usize> {
        let parts = self.cluster.partitions();
        match &r.partition {
            Some(name) => parts.iter().position(|p| &p.name == name),
            None => {
                let default = self.cluster.default_partition()?;
                parts.iter().position(|p| p.name == default.name)
            }
        }
    }

    /// Computes a job's factors and priority as of `now`.
    pub(super) fn set_priority(&self, job: &mut Job, now: Timestamp) {
        Prioritizer::new(self).set(job, now);
    }

    /// Full-pass preparation: charges running jobs' usage, recomputes fair-share factors and
    /// every waiting job's priority, and rebuilds the queue's order.
    pub(super) fn recompute_priorities(&mut self, now: Timestamp) {
        let h = self.policy.config.half_life;
        let tree = &self.policy.tree;
        if self.usage.len() < tree.assocs.len() {
            self.usage.resize(tree.assocs.len(), UsageValue::default());
        }
        for job in self.jobs.values_mut() {
            if let Where::Running(run) = &mut job.at
                && let Some(u) = self.usage.get_mut(job.assoc as usize)
            {
                u.add(accrue(run.rate, run.charged, now, h), now, h);
                run.charged = now;
            }
        }
        let values: Vec<f64> = self.usage.iter().map(|u| u.at(now, h)).collect();
        let total: f64 = values.iter().sum();
        let shares = tree.assoc_shares(&tree.account_shares());
        self.fairshare = (0..tree.assocs.len())
            .map(|i| {
                let used =
                    if total > 0.0 { values.get(i).copied().unwrap_or(0.0) / total } else { 0.0 };
                fair_share_factor(used, shares.get(i).copied().unwrap_or(0.0)) as f32
            })
            .collect();
        let mut jobs = std::mem::take(&mut self.jobs);
        let prioritizer = Prioritizer::new(self);
        let mut order = Vec::with_capacity(self.queue.order.len());
        let mut parked: std::collections::BTreeMap<Park, Vec<_>> =
            std::collections::BTreeMap::new();
        for job in jobs.values_mut() {
            match &job.at {
                Where::Queued => {
                    prioritizer.set(job, now);
                    order.push(job.key());
                }
                Where::Parked(p) => {
                    let p = *p;
                    prioritizer.set(job, now);
                    parked.entry(p).or_default().push(job.key());
                }
                Where::Held | Where::Dependency => prioritizer.set(job, now),
                Where::Running(_) => {}
            }
        }
        self.jobs = jobs;
        // Built from sorted keys: a bulk build, not one insertion at a time.
        order.sort_unstable();
        self.queue.order = order.into_iter().collect();
        self.queue.parked = parked
            .into_iter()
            .map(|(p, mut keys)| {
                keys.sort_unstable();
                (p, keys.into_iter().collect())
            })
            .collect();
    }

    /// After a reload: each job's account, association and QOS by name in the new policy.
    pub(super) fn rebind_jobs(&mut self, old: &Policy) {
        let accounts = self.policy.tree.accounts.len();
        self.quotas = crate::policy::quota::Quotas::new(accounts, self.policy.qos.len());
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            let Some(mut job) = self.jobs.remove(&id) else { continue };
            let old_assoc = old.tree.assocs.get(job.assoc as usize).cloned();
            let name = old.tree.name(job.account).to_owned();
            // A vanished account or QOS leaves the job charged nowhere: it cannot start.
            job.account = self.policy.tree.account(&name).unwrap_or(u32::MAX);
            if let Some(a) = old_assoc {
                job.assoc = self.policy.tree.assoc(job.account, &a.user);
            }
            let qos_name = old.qos(job.qos).map(|q| q.name.clone()).unwrap_or_default();
            job.qos = self.policy.qos_named(&qos_name).unwrap_or(u16::MAX);
            if let Some(run) = job.run() {
                let (tally, borrowed) = (run.tally, run.borrowed.clone());
                self.quotas.charge(&self.policy.tree, job.account, job.qos, &tally, &borrowed);
            } else {
                self.quotas.count_queued(&self.policy.tree, job.account, true);
                if let Where::Parked(_) = job.at {
                    self.queue.remove(&job);
                    self.queue.enqueue(&mut job);
                }
            }
            self.jobs.insert(id, job);
        }
        if self.fairshare.len() < self.policy.tree.assocs.len() {
            self.fairshare.resize(self.policy.tree.assocs.len(), 1.0);
        }
    }

    /// Takes an event into account.
    pub fn handle(&mut self, event: Event, now: Timestamp) {
        match event {
            Event::Ended { job, requeue } => self.end(job, requeue, now),
            Event::Cancelled(id) => {
                if let Some(job) = self.jobs.get(&id)
                    && job.run().is_none()
                {
                    self.queue.remove(job);
                    let account = job.account;
                    self.quotas.count_queued(&self.policy.tree, account, false);
                    self.drop_reservation(id, now);
                    self.unwant(id);
                    self.jobs.remove(&id);
                }
            }
            Event::Hold(id) => {
                if let Some(job) = self.jobs.get_mut(&id)
                    && matches!(job.at, Where::Queued | Where::Parked(_))
                {
                    self.queue.remove(job);
                    job.at = Where::Held;
                    job.reported = None;
                    self.drop_reservation(id, now);
                    self.unwant(id);
                }
            }
            Event::Release(id) => self.requeue_waiting(id, Where::Held, now),
            Event::DependenciesMet(id) => self.requeue_waiting(id, Where::Dependency, now),
            Event::NodeHealth { node, health, reason } => {
                if self.cluster.set_health(&node, health, reason).is_ok()
                    && let Some(i) = self.cluster.index_of(&node)
                {
                    self.refresh_node(i);
                    // Reservations on a node that went away no longer hold; back up the
                    // ones that may now fit better.
                    self.invalidate();
                }
            }
        }
    }

    fn requeue_waiting(&mut self, id: JobId, from: Where, now: Timestamp) {
        if let Some(job) = self.jobs.get_mut(&id)
            && job.at == from
        {
            // Age counts from when the job could run: a held or blocked job does not age.
            job.eligible = now;
            self.queue.enqueue(job);
            job.reported = None;
            self.fresh.push_back(id);
        }
    }

    /// Marks a node's state in the lanes (and its spare if reserved).
    pub(super) fn refresh_node(&mut self, i: usize) {
        let Some(node) = self.cluster.nodes().get(i) else { return };
        let usable = node.health() == NodeHealth::Up && !node.exclusive;
        let partial = !node.allocations().is_empty();
        self.lanes.set(i, usable, node.free_units, partial);
    }

    /// Recomputes what jobs past the reservations may use on `node`.
    pub(super) fn refresh_spare(&mut self, node: usize, now: Timestamp) {
        let Some(n) = self.cluster.nodes().get(node) else { return };
        match self.profile.spare(node, crate::avail::Avail::now(n), now) {
            Some(s) => {
                self.spare.insert(node, s);
            }
            None => {
                self.spare.remove(&node);
            }
        }
    }

    /// Books a start already allocated in the cluster: profile, lanes, quotas, usage.
    pub(super) fn record_start(
        &mut self,
        id: JobId,
        partition: usize,
        start: &JobStart,
        borrowed: Vec<(u32, Tally)>,
        backfilled: bool,
        now: Timestamp,
    ) {
        let end = now.after_limit(start.time_limit);
        let tally = self.tally_of(start);
        let part = self.cluster.partitions().get(partition);
        let (pc, pm, pg) =
            part.map_or((1, 1, 0), |p| (p.cpus.max(1), p.memory.get().max(1), p.gpus));
        for g in &start.nodes {
            let Some(node) = self.cluster.nodes().get(g.node_index) else { continue };
            let need = Need::of_grant(node, g);
            self.profile.add_release(g.node_index, id, need, end);
        }
        // Dominant resource share: the largest of the job's CPU, memory and GPU fractions.
        let mut rate = tally.cpus as f64 / pc as f64;
        rate = rate.max(tally.memory.get() as f64 / pm as f64);
        if pg > 0 {
            rate = rate.max(tally.gpus as f64 / pg as f64);
        }
        for g in &start.nodes {
            self.refresh_node(g.node_index);
            if self.spare.contains_key(&g.node_index) {
                self.refresh_spare(g.node_index, now);
            }
        }
        self.count_task(id, true);
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let (account, qos) = (job.account, job.qos);
        job.at = Where::Running(Box::new(Run {
            start: now,
            end,
            partition,
            tally,
            borrowed: borrowed.clone(),
            rate: rate.min(1.0),
            charged: now,
            stopping: false,
            backfilled,
        }));
        job.reported = None;
        self.quotas.count_queued(&self.policy.tree, account, false);
        self.quotas.charge(&self.policy.tree, account, qos, &tally, &borrowed);
    }

    /// What a start's grants hold, for quotas.
    pub(super) fn tally_of(&self, start: &JobStart) -> Tally {
        let mut tally = Tally { jobs: 1, ..Tally::default() };
        for g in &start.nodes {
            tally.cpus += g.cpus.len() as u64;
            tally.gpus += g.gpus.len() as u64;
            tally.memory += g.memory;
            tally.nodes += 1;
        }
        tally
    }

    /// A running job stopped: free its resources, charge its usage, requeue or forget it.
    fn end(&mut self, id: JobId, requeue: bool, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.run().is_none() {
            // Not running (a late or repeated report): nothing to free.
            return;
        }
        let Where::Running(run) = std::mem::replace(&mut job.at, Where::Held) else { return };
        let (account, qos, assoc) = (job.account, job.qos, job.assoc);
        self.count_task(id, false);
        let h = self.policy.config.half_life;
        if self.usage.len() <= assoc as usize {
            self.usage.resize(assoc as usize + 1, UsageValue::default());
        }
        if let Some(u) = self.usage.get_mut(assoc as usize) {
            u.add(accrue(run.rate, run.charged, now, h), now, h);
        }
        self.quotas.discharge(&self.policy.tree, account, qos, &run.tally, &run.borrowed);
        let nodes = self.cluster.nodes_of(id).to_vec();
        self.cluster.release(id);
        self.profile.remove_job(id, nodes.iter().copied());
        for &n in &nodes {
            self.refresh_node(n);
            if self.spare.contains_key(&n) {
                self.refresh_spare(n, now);
            }
        }
        if let Some(by) = self.preempted_for.remove(&id)
            && let Some(preemptor) = self.jobs.get_mut(&by)
        {
            preemptor.awaiting.retain(|&v| v != id);
        }
        let mut wake: Vec<Park> = self.policy.tree.path(account).map(Park::Account).collect();
        wake.extend(run.borrowed.iter().map(|&(l, _)| Park::Account(l)));
        wake.push(Park::Qos(qos));
        if !run.borrowed.is_empty() || self.policy.tree.get(account).is_some_and(|a| a.lend) {
            // Lent quota came back: accounts that borrow may find room.
            let borrowers = self.policy.tree.accounts.iter().enumerate();
            wake.extend(borrowers.filter(|(_, a)| a.borrow).map(|(i, _)| Park::Account(i as u32)));
        }
        for p in wake {
            self.wake(&p, now);
        }
        self.stale = true;
        self.profile_epoch += 1;
        if requeue && let Some(job) = self.jobs.get_mut(&id) {
            job.eligible = now;
            job.reported = None;
            self.quotas.count_queued(&self.policy.tree, account, true);
            if let Some(mut job) = self.jobs.remove(&id) {
                self.set_priority(&mut job, now);
                self.queue.enqueue(&mut job);
                self.jobs.insert(id, job);
                self.fresh.push_back(id);
            }
        } else {
            self.jobs.remove(&id);
        }
    }

    /// Returns the best jobs parked on `park` to the queue.
    fn wake(&mut self, park: &Park, _now: Timestamp) {
        for id in self.queue.parked_on(park).into_iter().take(WAKE_BATCH) {
            if let Some(job) = self.jobs.get_mut(&id) {
                self.queue.remove(job);
                self.queue.enqueue(job);
                self.fresh.push_back(id);
            }
        }
    }

    /// The job no longer waits for lent quota.
    pub(super) fn unwant(&mut self, id: JobId) {
        self.wanting.retain(|_, jobs| {
            jobs.remove(&id);
            !jobs.is_empty()
        });
    }

    /// Forgets a job's reservation.
    pub(super) fn drop_reservation(&mut self, id: JobId, now: Timestamp) {
        let Some(r) = self.reservations.remove(&id) else { return };
        self.profile_epoch += 1;
        self.profile.remove_job(id, r.nodes.iter().map(|(n, ..)| *n));
        for (n, ..) in &r.nodes {
            self.refresh_spare(*n, now);
        }
        for h in self.holders.iter_mut() {
            if *h == Some(id) {
                *h = None;
            }
        }
        self.recompute_shadows();
    }

    /// The earliest reservation start touching each partition.
    pub(super) fn recompute_shadows(&mut self) {
        for s in self.shadow.iter_mut() {
            *s = Timestamp::NEVER;
        }
        for r in self.reservations.values() {
            for (n, ..) in &r.nodes {
                for &(p, _) in self.lanes.places(*n) {
                    if let Some(s) = self.shadow.get_mut(p as usize) {
                        *s = (*s).min(r.start);
                    }
                }
            }
        }
    }

    /// Reports a waiting job's reason (and reservation) if it changed.
    pub(super) fn report(&mut self, id: JobId, reason: PendingReason, out: &mut Vec<Decision>) {
        let at = self.reservations.get(&id).map(|r| r.start);
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.reported == Some((reason, at)) {
            return;
        }
        job.reported = Some((reason, at));
        out.push(Decision::Wait { job: id, reason, expected: self.expected(id) });
    }
}

/// What a job's priority is computed from, borrowed once for a whole queue.
struct Prioritizer<'a> {
    policy: &'a Policy,
    fairshare: &'a [f32],
    /// Per partition: (CPUs, CPUs per core of its first node, partition factor).
    parts: Vec<(u64, u64, f32)>,
}

impl<'a> Prioritizer<'a> {
    fn new(s: &'a Scheduler) -> Self {
        let parts = s
            .cluster
            .partitions()
            .iter()
            .map(|p| {
                let per_unit = p
                    .nodes
                    .first()
                    .and_then(|&n| s.cluster.nodes().get(n))
                    .map_or(1, |n| u64::from(n.cpus_per_unit));
                (p.cpus, per_unit, s.policy.partition_factor(&p.name))
            })
            .collect();
        Prioritizer { policy: &s.policy, fairshare: &s.fairshare, parts }
    }

    fn set(&self, job: &mut Job, now: Timestamp) {
        let config = &self.policy.config;
        let part = job.partition.and_then(|p| self.parts.get(p));
        let cpus = u64::from(job.request.task_count())
            * u64::from(job.request.cpus_per_task.max(1))
            * part.map_or(1, |p| p.1);
        job.factors = Factors {
            age: Factors::age_of(now.since(job.eligible), config.max_age),
            size: Factors::size_of(cpus, part.map_or(1, |p| p.0), config.favor_small),
            partition: part.map_or(0.0, |p| p.2),
            qos: self.policy.qos_factor(job.qos),
            fairshare: self.fairshare.get(job.assoc as usize).copied().unwrap_or(1.0),
            nice: job.nice,
            admin: job.request.priority,
        };
        job.priority = priority(&job.factors, &config.weights);
    }
}

/// Hash of what decides whether a job fits: its shape, partition, exclusivity and the nodes
/// it names. Jobs with equal classes fit or fail alike on the same free resources.
fn class_of(r: &JobRequest) -> u64 {
    let mut h = DefaultHasher::new();
    (r.min_nodes, r.max_nodes, r.ntasks, r.ntasks_per_node, r.cpus_per_task).hash(&mut h);
    (r.memory, r.gpus_per_task, &r.gpu_type, r.exclusive).hash(&mut h);
    (&r.partition, &r.nodelist, &r.exclude, &r.excluded_after_failure).hash(&mut h);
    h.finish()
}

impl Scheduler {
    /// Queues a job without the submission checks (for the stateless pass, where a request
    /// that no longer fits must wait as `Unsatisfiable` rather than be refused).
    pub(crate) fn insert_unchecked(&mut self, job: NewJob, now: Timestamp) {
        let held = job.request.held;
        let Ok(mut j) = self.make_job(job, now) else { return };
        let id = j.id;
        if held {
            j.at = Where::Held;
        } else {
            self.quotas.count_queued(&self.policy.tree, j.account, true);
            self.queue.enqueue(&mut j);
            self.fresh.push_back(id);
        }
        self.jobs.insert(id, j);
    }
}
