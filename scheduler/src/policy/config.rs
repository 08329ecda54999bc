//! The scheduling policy as configured: backfill mode, priority weights, the account tree with
//! shares, quotas and lending, users, QOS levels and who may preempt whom. Plain data the
//! controller fills from its TOML; [`SchedulerConfig::check`] refuses an inconsistent one
//! naming the item, so a bad reload changes nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::decision::AfterPreempt;
use crate::types::Bytes;

/// Which backfill the pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackfillMode {
    /// Strict priority order: a job that must wait keeps every node it could use from the
    /// jobs after it (first come, first served within a partition).
    None,
    /// EASY: the highest-priority blocked job of each partition holds a reservation; others
    /// start early only when, by their time limits, they do not delay it.
    #[default]
    Easy,
    /// Conservative: every blocked job (up to [`SchedulerConfig::reservation_depth`]) holds a
    /// reservation, and no job starts early if it would delay any of them.
    Conservative,
}

impl BackfillMode {
    /// `none`, `easy` or `conservative`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" | "fcfs" => Some(BackfillMode::None),
            "easy" => Some(BackfillMode::Easy),
            "conservative" => Some(BackfillMode::Conservative),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            BackfillMode::None => "none",
            BackfillMode::Easy => "easy",
            BackfillMode::Conservative => "conservative",
        }
    }
}

/// Points each priority factor (a value between 0 and 1) is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityWeights {
    /// Time waiting, up to [`SchedulerConfig::max_age`].
    pub age: u32,
    /// The job's share of its partition's CPUs (or the complement with `favor_small`).
    pub size: u32,
    /// The partition's priority tier.
    pub partition: u32,
    /// The QOS's priority.
    pub qos: u32,
    /// The fair-share factor of the job's user in its account.
    pub fairshare: u32,
}

impl Default for PriorityWeights {
    fn default() -> Self {
        Self { age: 1000, size: 100, partition: 1000, qos: 2000, fairshare: 10_000 }
    }
}

impl PriorityWeights {
    /// Every weight zero: the order is the administrator's priority, then submit time.
    pub fn zero() -> Self {
        Self { age: 0, size: 0, partition: 0, qos: 0, fairshare: 0 }
    }
}

/// Quota limits of an account (its whole subtree) or a QOS (all its jobs). `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// CPUs (hardware threads) held by running jobs.
    pub cpus: Option<u64>,
    /// GPUs held by running jobs.
    pub gpus: Option<u64>,
    /// Memory held by running jobs.
    pub memory: Option<Bytes>,
    /// Nodes (counted once per job and node) held by running jobs.
    pub nodes: Option<u64>,
    /// Running jobs.
    pub running_jobs: Option<u32>,
    /// Jobs waiting in the queue (checked at submission).
    pub queued_jobs: Option<u32>,
}

/// One account of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Its name (`--account`).
    pub name: String,
    /// Its parent; `None`: a child of the root.
    pub parent: Option<String>,
    /// Its shares among its siblings (fair share).
    pub shares: u32,
    /// Quotas of the account and everything below it.
    pub limits: Limits,
    /// Lend unused quota to jobs of other accounts (which become preemptable).
    pub lend: bool,
    /// Let its jobs borrow other accounts' unused quota when over its own.
    pub borrow: bool,
    /// Users who may submit to it (besides those whose default account it is).
    pub users: Vec<String>,
}

impl AccountConfig {
    /// An account under the root with one share, no limits, no lending.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            parent: None,
            shares: 1,
            limits: Limits::default(),
            lend: false,
            borrow: false,
            users: Vec::new(),
        }
    }
}

/// A user's default account and share within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// The user's login name.
    pub name: String,
    /// Where jobs without `--account` go.
    pub default_account: String,
    /// Shares of the user within each account (against the account's other users).
    pub shares: u32,
}

/// A quality of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosConfig {
    /// Its name (`--qos`).
    pub name: String,
    /// Its priority (the QOS factor is this over the highest QOS priority).
    pub priority: u32,
    /// Limits over all running jobs of the QOS.
    pub limits: Limits,
    /// Longest time limit a job of this QOS may have.
    pub max_wall: Option<Duration>,
    /// QOS whose running jobs this QOS's jobs may preempt.
    pub preempt: Vec<String>,
    /// What happens to a job of this QOS when it is preempted.
    pub preempt_mode: AfterPreempt,
    /// Time a preempted job of this QOS gets between the signal and the kill.
    pub grace: Duration,
}

impl QosConfig {
    /// A QOS with this priority, no limits, preempting nothing; its jobs are requeued after a
    /// 60 s grace when preempted.
    pub fn new(name: &str, priority: u32) -> Self {
        Self {
            name: name.to_owned(),
            priority,
            limits: Limits::default(),
            max_wall: None,
            preempt: Vec::new(),
            preempt_mode: AfterPreempt::Requeue,
            grace: Duration::from_secs(60),
        }
    }
}

/// The whole scheduling policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Backfill mode.
    pub backfill: BackfillMode,
    /// Priority weights.
    pub weights: PriorityWeights,
    /// Waiting longer than this earns no more age points.
    pub max_age: Duration,
    /// Small jobs get the size points (otherwise big ones do).
    pub favor_small: bool,
    /// Usage halves every this long.
    pub half_life: Duration,
    /// Priorities are recomputed, and reservations rebuilt, at most this often (a full pass);
    /// passes in between only look at what changed.
    pub full_pass_interval: Duration,
    /// Conservative backfill: how many blocked jobs get a reservation per pass. Jobs below
    /// wait for the next pass, so a pass stays bounded with a deep queue.
    pub reservation_depth: usize,
    /// Priority tier of each partition (missing: 0).
    pub partition_priority: Vec<(String, u32)>,
    /// The account tree; empty: one implicit account, `default`, holds everyone.
    pub accounts: Vec<AccountConfig>,
    /// Users' default accounts and shares.
    pub users: Vec<UserConfig>,
    /// The account of users listed nowhere; `None`: such users are refused.
    pub default_account: Option<String>,
    /// QOS levels; empty: one implicit QOS, `normal`.
    pub qos: Vec<QosConfig>,
    /// The QOS of jobs that name none; `None`: the first one.
    pub default_qos: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            backfill: BackfillMode::Easy,
            weights: PriorityWeights::default(),
            max_age: Duration::from_secs(7 * 86_400),
            favor_small: false,
            half_life: Duration::from_secs(7 * 86_400),
            full_pass_interval: Duration::from_secs(30),
            reservation_depth: 64,
            partition_priority: Vec::new(),
            accounts: Vec::new(),
            users: Vec::new(),
            default_account: None,
            qos: Vec::new(),
            default_qos: None,
        }
    }
}

/// Why a scheduling configuration was refused. Each names the item and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two accounts with one name.
    #[error("account '{0}' is defined twice; give every account its own name")]
    DuplicateAccount(String),
    /// A parent that is no account.
    #[error("account '{account}': parent '{parent}' is not an account; define it or fix the name")]
    UnknownParent {
        /// The account.
        account: String,
        /// Its parent as written.
        parent: String,
    },
    /// Parents that loop.
    #[error("account '{0}' is its own ancestor; the accounts must form a tree")]
    Cycle(String),
    /// Zero shares.
    #[error("{what} '{name}': shares must be at least 1")]
    ZeroShares {
        /// `account` or `user`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A user's default account is no account.
    #[error("user '{user}': default account '{account}' is not an account")]
    UnknownUserAccount {
        /// The user.
        user: String,
        /// The account named.
        account: String,
    },
    /// A user listed twice.
    #[error("user '{0}' is listed twice")]
    DuplicateUser(String),
    /// `default_account` names no account.
    #[error("default account '{0}' is not an account")]
    UnknownDefaultAccount(String),
    /// Two QOS with one name.
    #[error("QOS '{0}' is defined twice; give every QOS its own name")]
    DuplicateQos(String),
    /// A preempt list naming no QOS.
    #[error("QOS '{qos}': preempt names '{target}', which is not a QOS")]
    UnknownPreemptTarget {
        /// The QOS.
        qos: String,
        /// The name in its preempt list.
        target: String,
    },
    /// A QOS preempting itself.
    #[error("QOS '{0}' may not preempt itself")]
    SelfPreempt(String),
    /// `default_qos` names no QOS.
    #[error("default QOS '{0}' is not a QOS")]
    UnknownDefaultQos(String),
    /// A half-life of zero.
    #[error("half_life must be longer than zero")]
    ZeroHalfLife,
    /// `max_age` of zero.
    #[error("max_age must be longer than zero")]
    ZeroMaxAge,
}

impl SchedulerConfig {
    /// Strict priority order with every weight zero: the order is the administrator's
    /// priority, then submit time, then job id (the controller's behaviour before policies).
    pub fn strict() -> Self {
        Self { backfill: BackfillMode::None, weights: PriorityWeights::zero(), ..Self::default() }
    }

    /// Checks the configuration as a whole.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.half_life.is_zero() {
            return Err(ConfigError::ZeroHalfLife);
        }
        if self.max_age.is_zero() {
            return Err(ConfigError::ZeroMaxAge);
        }
        let mut parents: HashMap<&str, Option<&str>> = HashMap::new();
        for a in &self.accounts {
            if a.shares == 0 {
                return Err(ConfigError::ZeroShares { what: "account", name: a.name.clone() });
            }
            if parents.insert(&a.name, a.parent.as_deref()).is_some() {
                return Err(ConfigError::DuplicateAccount(a.name.clone()));
            }
        }
        for a in &self.accounts {
            if let Some(p) = &a.parent
                && !parents.contains_key(p.as_str())
            {
                return Err(ConfigError::UnknownParent {
                    account: a.name.clone(),
                    parent: p.clone(),
                });
            }
            // Walking up more steps than there are accounts means a loop.
            let mut at = a.parent.as_deref();
            for _ in 0..=self.accounts.len() {
                match at {
                    None => break,
                    Some(p) if p == a.name => return Err(ConfigError::Cycle(a.name.clone())),
                    Some(p) => at = parents.get(p).copied().flatten(),
                }
            }
        }
        let is_account = |name: &str| parents.contains_key(name) || self.accounts.is_empty();
        let mut users = HashSet::new();
        for u in &self.users {
            if u.shares == 0 {
                return Err(ConfigError::ZeroShares { what: "user", name: u.name.clone() });
            }
            if !users.insert(u.name.as_str()) {
                return Err(ConfigError::DuplicateUser(u.name.clone()));
            }
            if !is_account(&u.default_account) {
                return Err(ConfigError::UnknownUserAccount {
                    user: u.name.clone(),
                    account: u.default_account.clone(),
                });
            }
        }
        if let Some(d) = &self.default_account
            && !is_account(d)
        {
            return Err(ConfigError::UnknownDefaultAccount(d.clone()));
        }
        let mut qos = HashSet::new();
        for q in &self.qos {
            if !qos.insert(q.name.as_str()) {
                return Err(ConfigError::DuplicateQos(q.name.clone()));
            }
        }
        for q in &self.qos {
            for t in &q.preempt {
                if t == &q.name {
                    return Err(ConfigError::SelfPreempt(q.name.clone()));
                }
                if !qos.contains(t.as_str()) {
                    return Err(ConfigError::UnknownPreemptTarget {
                        qos: q.name.clone(),
                        target: t.clone(),
                    });
                }
            }
        }
        if let Some(d) = &self.default_qos
            && !qos.contains(d.as_str())
        {
            return Err(ConfigError::UnknownDefaultQos(d.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accounts(accounts: Vec<AccountConfig>) -> SchedulerConfig {
        SchedulerConfig { accounts, ..SchedulerConfig::default() }
    }

    #[test]
    fn a_good_tree_passes() {
        let mut child = AccountConfig::new("physics");
        child.parent = Some("science".into());
        assert_eq!(with_accounts(vec![AccountConfig::new("science"), child]).check(), Ok(()));
        assert_eq!(SchedulerConfig::default().check(), Ok(()));
    }

    #[test]
    fn errors_name_the_item() {
        let mut orphan = AccountConfig::new("physics");
        orphan.parent = Some("nowhere".into());
        let err = with_accounts(vec![orphan]).check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "account 'physics': parent 'nowhere' is not an account; define it or fix the name"
        );
        let mut a = AccountConfig::new("a");
        a.parent = Some("b".into());
        let mut b = AccountConfig::new("b");
        b.parent = Some("a".into());
        assert!(matches!(with_accounts(vec![a, b]).check(), Err(ConfigError::Cycle(_))));
        let dup = with_accounts(vec![AccountConfig::new("x"), AccountConfig::new("x")]);
        assert_eq!(dup.check(), Err(ConfigError::DuplicateAccount("x".into())));
        let mut q = QosConfig::new("high", 10);
        q.preempt = vec!["low".into()];
        let config = SchedulerConfig { qos: vec![q], ..SchedulerConfig::default() };
        assert!(config.check().unwrap_err().to_string().contains("'low', which is not a QOS"));
        let zero = SchedulerConfig { half_life: Duration::ZERO, ..SchedulerConfig::default() };
        assert_eq!(zero.check(), Err(ConfigError::ZeroHalfLife));
    }
}
