//! Quotas: what each account (with everything below it) and each QOS holds, whether a job may
//! start within their limits, and lending — an account's unused quota taken by jobs of
//! accounts over theirs, which then run preemptable until the lender wants its quota back.
//!
//! Rules: a job runs on its own quota (charged to its account and every ancestor) or, when
//! some account on its path would go over on CPUs, GPUs, memory or nodes and its account may
//! borrow, on quota lent by accounts that lend (the kinds that were over are charged to the
//! lenders instead). Job counts are never lent. A lender's own jobs see its quota minus what
//! it lent; when that blocks one of them, borrowers are reclaimed.

use super::accounts::{AccountId, Tree};
use super::config::Limits;
use crate::decision::PendingReason;
use crate::types::Bytes;

/// Resources held by jobs (or asked for by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// CPUs (hardware threads).
    pub cpus: u64,
    /// GPUs.
    pub gpus: u64,
    /// Memory.
    pub memory: Bytes,
    /// Nodes (one per job and node).
    pub nodes: u64,
    /// Jobs.
    pub jobs: u32,
}

impl Tally {
    /// Adds `other`.
    pub fn add(&mut self, other: &Tally) {
        self.cpus += other.cpus;
        self.gpus += other.gpus;
        self.memory += other.memory;
        self.nodes += other.nodes;
        self.jobs += other.jobs;
    }

    /// Takes `other` away (never below zero).
    pub fn sub(&mut self, other: &Tally) {
        self.cpus = self.cpus.saturating_sub(other.cpus);
        self.gpus = self.gpus.saturating_sub(other.gpus);
        self.memory = self.memory.saturating_sub(other.memory);
        self.nodes = self.nodes.saturating_sub(other.nodes);
        self.jobs = self.jobs.saturating_sub(other.jobs);
    }

    /// Only the lendable kinds in `kinds`.
    fn only(&self, kinds: Kinds) -> Tally {
        Tally {
            cpus: if kinds.cpus { self.cpus } else { 0 },
            gpus: if kinds.gpus { self.gpus } else { 0 },
            memory: if kinds.memory { self.memory } else { Bytes::ZERO },
            nodes: if kinds.nodes { self.nodes } else { 0 },
            jobs: 0,
        }
    }
}

/// Which lendable kinds a check concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Kinds {
    pub cpus: bool,
    pub gpus: bool,
    pub memory: bool,
    pub nodes: bool,
}

impl Kinds {
    fn any(self) -> bool {
        self.cpus || self.gpus || self.memory || self.nodes
    }

    fn or(self, o: Kinds) -> Kinds {
        Kinds {
            cpus: self.cpus || o.cpus,
            gpus: self.gpus || o.gpus,
            memory: self.memory || o.memory,
            nodes: self.nodes || o.nodes,
        }
    }

    /// Kinds where `used + job` goes over `limits`.
    fn over(limits: &Limits, used: &Tally, job: &Tally) -> Kinds {
        let over = |limit: Option<u64>, used: u64, job: u64| {
            job > 0 && limit.is_some_and(|l| used.saturating_add(job) > l)
        };
        Kinds {
            cpus: over(limits.cpus, used.cpus, job.cpus),
            gpus: over(limits.gpus, used.gpus, job.gpus),
            memory: over(limits.memory.map(Bytes::get), used.memory.get(), job.memory.get()),
            nodes: over(limits.nodes, used.nodes, job.nodes),
        }
    }

    /// The pending reason for the first kind set, account or QOS flavour.
    fn reason(self, qos: bool) -> PendingReason {
        use PendingReason as R;
        match (qos, self.cpus, self.gpus, self.memory) {
            (false, true, ..) => R::AccountCpuLimit,
            (false, _, true, _) => R::AccountGpuLimit,
            (false, _, _, true) => R::AccountMemoryLimit,
            (false, ..) => R::AccountNodeLimit,
            (true, true, ..) => R::QosCpuLimit,
            (true, _, true, _) => R::QosGpuLimit,
            (true, _, _, true) => R::QosMemoryLimit,
            (true, ..) => R::QosNodeLimit,
        }
    }
}

/// What a waiting job waits on, so it is looked at again only when that changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Park {
    /// An account's holdings (or what it lent) must drop.
    Account(AccountId),
    /// A QOS's holdings must drop.
    Qos(u16),
}

/// Whether a job may start, quota-wise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Within its own quota.
    Own,
    /// On quota borrowed from these accounts (the over kinds only).
    Borrow(Vec<(AccountId, Tally)>),
    /// Not now.
    Wait { reason: PendingReason, park: Park },
    /// Within its account's quota only if the quota `lender` lent comes back: reclaim at least
    /// `deficit` from its borrowers.
    Reclaim { lender: AccountId, deficit: Tally },
}

/// Holdings of every account and QOS.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quotas {
    /// Per account (its subtree), charged to its own quota.
    pub own: Vec<Tally>,
    /// Per account, lent to borrowing jobs.
    pub lent: Vec<Tally>,
    /// Per account (its subtree), jobs waiting in the queue.
    pub queued: Vec<u32>,
    /// Per QOS.
    pub qos: Vec<Tally>,
}

impl Quotas {
    /// Empty holdings for `accounts` accounts and `qos` QOS levels.
    pub fn new(accounts: usize, qos: usize) -> Self {
        Self {
            own: vec![Tally::default(); accounts],
            lent: vec![Tally::default(); accounts],
            queued: vec![0; accounts],
            qos: vec![Tally::default(); qos],
        }
    }

    fn own_of(&self, a: AccountId) -> Tally {
        self.own.get(a as usize).copied().unwrap_or_default()
    }

    fn lent_of(&self, a: AccountId) -> Tally {
        self.lent.get(a as usize).copied().unwrap_or_default()
    }

    /// Whether a job of `account` may start now, quota-wise. Accounts for which `wanting`
    /// holds have jobs waiting for lent quota to come back: they lend nothing meanwhile, or a
    /// reclaimed borrower could take the quota again before the lender's job starts.
    pub fn admit(
        &self,
        tree: &Tree,
        account: AccountId,
        qos: u16,
        qos_limits: &Limits,
        job: &Tally,
        wanting: &dyn Fn(AccountId) -> bool,
    ) -> Admission {
        let used = self.qos.get(qos as usize).copied().unwrap_or_default();
        if qos_limits.running_jobs.is_some_and(|l| used.jobs + 1 > l) {
            return Admission::Wait { reason: PendingReason::QosJobLimit, park: Park::Qos(qos) };
        }
        let over = Kinds::over(qos_limits, &used, job);
        if over.any() {
            return Admission::Wait { reason: over.reason(true), park: Park::Qos(qos) };
        }
        let mut must_borrow = Kinds::default();
        let mut first_over: Option<(AccountId, Kinds)> = None;
        let mut reclaim: Option<(AccountId, Tally)> = None;
        for x in tree.path(account) {
            let Some(acc) = tree.get(x) else { continue };
            let own = self.own_of(x);
            if acc.limits.running_jobs.is_some_and(|l| own.jobs + 1 > l) {
                return Admission::Wait {
                    reason: PendingReason::AccountJobLimit,
                    park: Park::Account(x),
                };
            }
            let over = Kinds::over(&acc.limits, &own, job);
            if over.any() {
                must_borrow = must_borrow.or(over);
                first_over.get_or_insert((x, over));
                continue;
            }
            let mut with_lent = own;
            with_lent.add(&self.lent_of(x));
            let short = Kinds::over(&acc.limits, &with_lent, job);
            if short.any() && reclaim.is_none() {
                let mut deficit = with_lent;
                deficit.add(job);
                reclaim = Some((x, deficit_over(&acc.limits, &deficit, short)));
            }
        }
        let Some((x, over)) = first_over else {
            return match reclaim {
                Some((lender, deficit)) => Admission::Reclaim { lender, deficit },
                None => Admission::Own,
            };
        };
        let may_borrow = tree.get(account).is_some_and(|a| a.borrow);
        let wait = Admission::Wait { reason: over.reason(false), park: Park::Account(x) };
        if !may_borrow {
            return wait;
        }
        match self.borrow(tree, account, &job.only(must_borrow), must_borrow, wanting) {
            Some(from) => Admission::Borrow(from),
            None => wait,
        }
    }

    /// Lenders covering `want` (per kind), greedily in configuration order.
    fn borrow(
        &self,
        tree: &Tree,
        account: AccountId,
        want: &Tally,
        kinds: Kinds,
        wanting: &dyn Fn(AccountId) -> bool,
    ) -> Option<Vec<(AccountId, Tally)>> {
        let mut left = *want;
        let mut from = Vec::new();
        for (i, lender) in tree.accounts.iter().enumerate().skip(1) {
            let l = i as AccountId;
            if !lender.lend || wanting(l) || tree.is_under(account, l) || tree.is_under(l, account)
            {
                continue;
            }
            let mut held = self.own_of(l);
            held.add(&self.lent_of(l));
            let spare = |limit: Option<u64>, held: u64| limit.map_or(0, |v| v.saturating_sub(held));
            let lim = &lender.limits;
            let take = Tally {
                cpus: left.cpus.min(spare(lim.cpus, held.cpus)),
                gpus: left.gpus.min(spare(lim.gpus, held.gpus)),
                memory: Bytes(
                    left.memory.get().min(spare(lim.memory.map(Bytes::get), held.memory.get())),
                ),
                nodes: left.nodes.min(spare(lim.nodes, held.nodes)),
                jobs: 0,
            }
            .only(kinds);
            if take != Tally::default() {
                left.sub(&take);
                from.push((l, take));
            }
        }
        (left.only(kinds) == Tally::default()).then_some(from)
    }

    /// Records a started job: on its own quota, or with `borrowed` charged to the lenders.
    pub fn charge(
        &mut self,
        tree: &Tree,
        account: AccountId,
        qos: u16,
        job: &Tally,
        borrowed: &[(AccountId, Tally)],
    ) {
        let mut own = *job;
        for (lender, t) in borrowed {
            own.sub(t);
            if let Some(l) = self.lent.get_mut(*lender as usize) {
                l.add(t);
            }
        }
        for x in tree.path(account) {
            if let Some(o) = self.own.get_mut(x as usize) {
                o.add(&own);
            }
        }
        if let Some(q) = self.qos.get_mut(qos as usize) {
            q.add(job);
        }
    }

    /// Undoes [`Quotas::charge`] for an ended job.
    pub fn discharge(
        &mut self,
        tree: &Tree,
        account: AccountId,
        qos: u16,
        job: &Tally,
        borrowed: &[(AccountId, Tally)],
    ) {
        let mut own = *job;
        for (lender, t) in borrowed {
            own.sub(t);
            if let Some(l) = self.lent.get_mut(*lender as usize) {
                l.sub(t);
            }
        }
        for x in tree.path(account) {
            if let Some(o) = self.own.get_mut(x as usize) {
                o.sub(&own);
            }
        }
        if let Some(q) = self.qos.get_mut(qos as usize) {
            q.sub(job);
        }
    }

    /// Whether one more job may wait in the queue of `account`; `Err` names the account
    /// whose queued-jobs limit is reached.
    pub fn can_queue(&self, tree: &Tree, account: AccountId) -> Result<(), AccountId> {
        for x in tree.path(account) {
            let limit = tree.get(x).and_then(|a| a.limits.queued_jobs);
            let queued = self.queued.get(x as usize).copied().unwrap_or(0);
            if limit.is_some_and(|l| queued + 1 > l) {
                return Err(x);
            }
        }
        Ok(())
    }

    /// Counts a job into (`+1`) or out of (`-1`) the queues of `account` and its ancestors.
    pub fn count_queued(&mut self, tree: &Tree, account: AccountId, up: bool) {
        for x in tree.path(account) {
            if let Some(q) = self.queued.get_mut(x as usize) {
                *q = if up { *q + 1 } else { q.saturating_sub(1) };
            }
        }
    }

    /// Whether an account's own holdings stay within its limits (borrowed capacity aside).
    pub fn within_limits(&self, tree: &Tree, account: AccountId) -> bool {
        let Some(acc) = tree.get(account) else { return true };
        let own = self.own_of(account);
        let l = &acc.limits;
        l.cpus.is_none_or(|v| own.cpus <= v)
            && l.gpus.is_none_or(|v| own.gpus <= v)
            && l.memory.is_none_or(|v| own.memory <= v)
            && l.nodes.is_none_or(|v| own.nodes <= v)
            && l.running_jobs.is_none_or(|v| own.jobs <= v)
    }
}

impl Quotas {
    /// Whether what an account holds plus what it lent stays within its limits.
    pub fn lends_within(&self, tree: &Tree, account: AccountId) -> bool {
        let Some(acc) = tree.get(account) else { return true };
        let mut held = self.own_of(account);
        held.add(&self.lent_of(account));
        let l = &acc.limits;
        l.cpus.is_none_or(|v| held.cpus <= v)
            && l.gpus.is_none_or(|v| held.gpus <= v)
            && l.memory.is_none_or(|v| held.memory <= v)
            && l.nodes.is_none_or(|v| held.nodes <= v)
    }
}

/// How far `held` is over `limits` on the kinds in `kinds`.
fn deficit_over(limits: &Limits, held: &Tally, kinds: Kinds) -> Tally {
    let by = |limit: Option<u64>, held: u64| limit.map_or(0, |l| held.saturating_sub(l));
    Tally {
        cpus: by(limits.cpus, held.cpus),
        gpus: by(limits.gpus, held.gpus),
        memory: Bytes(by(limits.memory.map(Bytes::get), held.memory.get())),
        nodes: by(limits.nodes, held.nodes),
        jobs: 0,
    }
    .only(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::{AccountConfig, SchedulerConfig};

    fn tree(lend: bool, borrow: bool) -> Tree {
        let mut a = AccountConfig::new("a");
        a.limits.cpus = Some(8);
        a.borrow = borrow;
        let mut b = AccountConfig::new("b");
        b.limits.cpus = Some(8);
        b.lend = lend;
        let config = SchedulerConfig { accounts: vec![a, b], ..SchedulerConfig::default() };
        Tree::new(&config)
    }

    fn cpus(n: u64) -> Tally {
        Tally { cpus: n, nodes: 1, jobs: 1, ..Tally::default() }
    }

    #[test]
    fn over_quota_waits_naming_the_limit() {
        let t = tree(false, false);
        let a = t.account("a").unwrap();
        let mut q = Quotas::new(t.accounts.len(), 1);
        assert_eq!(q.admit(&t, a, 0, &Limits::default(), &cpus(8), &|_| false), Admission::Own);
        q.charge(&t, a, 0, &cpus(6), &[]);
        assert_eq!(
            q.admit(&t, a, 0, &Limits::default(), &cpus(4), &|_| false),
            Admission::Wait { reason: PendingReason::AccountCpuLimit, park: Park::Account(a) }
        );
        let jobs = Limits { running_jobs: Some(1), ..Limits::default() };
        assert!(matches!(
            q.admit(&t, a, 0, &jobs, &cpus(1), &|_| false),
            Admission::Wait { reason: PendingReason::QosJobLimit, .. }
        ));
    }

    #[test]
    fn borrowing_and_reclaim() {
        let t = tree(true, true);
        let (a, b) = (t.account("a").unwrap(), t.account("b").unwrap());
        let mut q = Quotas::new(t.accounts.len(), 1);
        q.charge(&t, a, 0, &cpus(8), &[]);
        // a is full; b lends 8 unused CPUs.
        let Admission::Borrow(from) = q.admit(&t, a, 0, &Limits::default(), &cpus(6), &|_| false)
        else {
            panic!("should borrow")
        };
        assert_eq!(from, vec![(b, Tally { cpus: 6, ..Tally::default() })]);
        q.charge(&t, a, 0, &cpus(6), &from);
        assert!(q.within_limits(&t, a), "borrowed CPUs are not a's");
        // b wants 4 of its own 8 back: 2 are free, 2 must be reclaimed.
        assert_eq!(
            q.admit(&t, b, 0, &Limits::default(), &cpus(4), &|_| false),
            Admission::Reclaim { lender: b, deficit: Tally { cpus: 2, ..Tally::default() } }
        );
        q.discharge(&t, a, 0, &cpus(6), &from);
        assert_eq!(q.admit(&t, b, 0, &Limits::default(), &cpus(4), &|_| false), Admission::Own);
        assert_eq!(q.lent[b as usize], Tally::default());
    }

    #[test]
    fn queued_limit_is_checked_up_the_tree() {
        let mut parent = AccountConfig::new("p");
        parent.limits.queued_jobs = Some(1);
        let mut child = AccountConfig::new("c");
        child.parent = Some("p".into());
        let t = Tree::new(&SchedulerConfig {
            accounts: vec![parent, child],
            ..SchedulerConfig::default()
        });
        let c = t.account("c").unwrap();
        let mut q = Quotas::new(t.accounts.len(), 1);
        assert_eq!(q.can_queue(&t, c), Ok(()));
        q.count_queued(&t, c, true);
        assert_eq!(q.can_queue(&t, c), Err(t.account("p").unwrap()));
    }
}
