//! The account tree as the scheduler uses it: which account a job is charged to, each
//! user-in-account's normalised share, the decayed usage it has run up (dominant resource
//! share × run time), and the fair-share factor that follows.
//!
//! Usage is state the controller keeps durably ([`UsageRecord`]); how it decays is a pure
//! function of elapsed time ([`decay`], [`accrue`]), exact whatever the charging cadence:
//! charging a job once for an hour or sixty times for a minute gives the same number.

use std::collections::HashMap;
use std::time::Duration;

use super::config::{Limits, SchedulerConfig};
use crate::types::Timestamp;

/// An account's position in [`Tree::accounts`]; 0 is the root.
pub(crate) type AccountId = u32;
/// A user-in-account's position in [`Tree::assocs`].
pub(crate) type AssocId = u32;

/// Name of the implicit account when none is configured.
pub const DEFAULT_ACCOUNT: &str = "default";

/// One account, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub name: String,
    pub parent: Option<AccountId>,
    pub shares: u32,
    pub limits: Limits,
    pub lend: bool,
    pub borrow: bool,
    /// Users listed in the account.
    pub users: Vec<String>,
}

/// A user within an account: the leaf that usage is charged to.
#[derive(Debug, Clone)]
pub(crate) struct Assoc {
    pub account: AccountId,
    pub user: String,
}

/// The account tree and the users' places in it.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub accounts: Vec<Account>,
    by_name: HashMap<String, AccountId>,
    /// Default account and shares of each configured user.
    users: HashMap<String, (AccountId, u32)>,
    default_account: Option<AccountId>,
    pub assocs: Vec<Assoc>,
    assoc_index: HashMap<(AccountId, String), AssocId>,
}

/// Why a job cannot be charged to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccountRefusal {
    Unknown(String),
    NotMember { user: String, account: String },
    NoAccount(String),
}

impl Tree {
    /// Compiles a checked configuration. User-in-account leaves are made as jobs arrive;
    /// across a reload, usage follows them by name ([`UsageRecord`]).
    pub fn new(config: &SchedulerConfig) -> Self {
        let mut accounts = vec![Account {
            name: "root".to_owned(),
            parent: None,
            shares: 1,
            limits: Limits::default(),
            lend: false,
            borrow: false,
            users: Vec::new(),
        }];
        let mut by_name = HashMap::new();
        let configured: Vec<_> = if config.accounts.is_empty() {
            vec![super::config::AccountConfig::new(DEFAULT_ACCOUNT)]
        } else {
            config.accounts.clone()
        };
        for a in &configured {
            by_name.insert(a.name.clone(), accounts.len() as AccountId);
            accounts.push(Account {
                name: a.name.clone(),
                parent: Some(0),
                shares: a.shares.max(1),
                limits: a.limits,
                lend: a.lend,
                borrow: a.borrow,
                users: a.users.clone(),
            });
        }
        for (a, acc) in configured.iter().zip(accounts.iter_mut().skip(1)) {
            acc.parent = Some(a.parent.as_ref().and_then(|p| by_name.get(p).copied()).unwrap_or(0));
        }
        let users = config
            .users
            .iter()
            .filter_map(|u| Some((u.name.clone(), (*by_name.get(&u.default_account)?, u.shares))))
            .collect();
        let default_account = match &config.default_account {
            Some(d) => by_name.get(d).copied(),
            None if config.accounts.is_empty() => by_name.get(DEFAULT_ACCOUNT).copied(),
            None => None,
        };
        Self {
            accounts,
            by_name,
            users,
            default_account,
            assocs: Vec::new(),
            assoc_index: HashMap::new(),
        }
    }

    /// An account by name.
    pub fn account(&self, name: &str) -> Option<AccountId> {
        self.by_name.get(name).copied()
    }

    /// The account at `id`.
    pub fn get(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(id as usize)
    }

    /// The account's name.
    pub fn name(&self, id: AccountId) -> &str {
        self.get(id).map_or("?", |a| a.name.as_str())
    }

    /// `id` and its ancestors below the root, nearest first.
    pub fn path(&self, id: AccountId) -> impl Iterator<Item = AccountId> + '_ {
        let mut at = Some(id);
        std::iter::from_fn(move || {
            let here = at.filter(|&a| a != 0)?;
            at = self.get(here).and_then(|a| a.parent);
            Some(here)
        })
    }

    /// Whether `ancestor` is `id` or above it.
    pub fn is_under(&self, id: AccountId, ancestor: AccountId) -> bool {
        self.path(id).any(|a| a == ancestor)
    }

    /// The account a job of `user` is charged to: the one it names, or the user's default.
    pub fn resolve(&self, user: &str, asked: Option<&str>) -> Result<AccountId, AccountRefusal> {
        // A user without a [[user]] entry: the first account that lists them, then the
        // configured default account (docs/scheduling.md, "Accounts").
        let listed_in = || {
            (1..self.accounts.len() as AccountId)
                .find(|&a| self.get(a).is_some_and(|a| a.users.iter().any(|u| u == user)))
        };
        let default =
            self.users.get(user).map(|&(a, _)| a).or_else(listed_in).or(self.default_account);
        let Some(name) = asked else {
            return default.ok_or_else(|| AccountRefusal::NoAccount(user.to_owned()));
        };
        let id = self.account(name).ok_or_else(|| AccountRefusal::Unknown(name.to_owned()))?;
        let listed =
            self.path(id).any(|a| self.get(a).is_some_and(|a| a.users.iter().any(|u| u == user)));
        if Some(id) == default
            || listed
            || (self.users.is_empty() && self.default_account == Some(id))
        {
            Ok(id)
        } else {
            Err(AccountRefusal::NotMember { user: user.to_owned(), account: name.to_owned() })
        }
    }

    /// The user-in-account leaf, created on first use.
    pub fn assoc(&mut self, account: AccountId, user: &str) -> AssocId {
        if let Some(&id) = self.assoc_index.get(&(account, user.to_owned())) {
            return id;
        }
        let id = self.assocs.len() as AssocId;
        self.assocs.push(Assoc { account, user: user.to_owned() });
        self.assoc_index.insert((account, user.to_owned()), id);
        id
    }

    fn user_shares(&self, user: &str) -> u32 {
        self.users.get(user).map_or(1, |&(_, s)| s.max(1))
    }

    /// Each account's normalised share (its part of the whole cluster): the product, down its
    /// path, of its shares over its siblings' (users of an account count as its children).
    pub fn account_shares(&self) -> Vec<f64> {
        let mut sibling_total = vec![0u64; self.accounts.len()];
        for a in self.accounts.iter().skip(1) {
            if let Some(t) = a.parent.and_then(|p| sibling_total.get_mut(p as usize)) {
                *t += u64::from(a.shares);
            }
        }
        for assoc in &self.assocs {
            if let Some(t) = sibling_total.get_mut(assoc.account as usize) {
                *t += u64::from(self.user_shares(&assoc.user));
            }
        }
        // Parents come before children in configuration order only by luck: resolve lazily.
        let mut share: Vec<Option<f64>> = vec![None; self.accounts.len()];
        if let Some(root) = share.first_mut() {
            *root = Some(1.0);
        }
        for i in 0..self.accounts.len() {
            self.resolve_share(i, &sibling_total, &mut share);
        }
        share.into_iter().map(|s| s.unwrap_or(0.0)).collect()
    }

    fn resolve_share(&self, i: usize, totals: &[u64], share: &mut [Option<f64>]) -> f64 {
        if let Some(Some(s)) = share.get(i) {
            return *s;
        }
        let Some(a) = self.accounts.get(i) else { return 0.0 };
        let parent = a.parent.unwrap_or(0) as usize;
        // The tree was checked for cycles, so this recursion ends at the root.
        let above = if parent == i { 1.0 } else { self.resolve_share(parent, totals, share) };
        let total = totals.get(parent).copied().unwrap_or(0).max(1) as f64;
        let s = above * f64::from(a.shares) / total;
        if let Some(slot) = share.get_mut(i) {
            *slot = Some(s);
        }
        s
    }

    /// Each user-in-account's normalised share.
    pub fn assoc_shares(&self, account_shares: &[f64]) -> Vec<f64> {
        let mut totals = vec![0u64; self.accounts.len()];
        for a in self.accounts.iter().skip(1) {
            if let Some(t) = a.parent.and_then(|p| totals.get_mut(p as usize)) {
                *t += u64::from(a.shares);
            }
        }
        for assoc in &self.assocs {
            if let Some(t) = totals.get_mut(assoc.account as usize) {
                *t += u64::from(self.user_shares(&assoc.user));
            }
        }
        self.assocs
            .iter()
            .map(|assoc| {
                let above = account_shares.get(assoc.account as usize).copied().unwrap_or(0.0);
                let total = totals.get(assoc.account as usize).copied().unwrap_or(1).max(1);
                above * f64::from(self.user_shares(&assoc.user)) / total as f64
            })
            .collect()
    }
}

/// `value` after `elapsed` with half-life `half_life`.
pub fn decay(value: f64, elapsed: Duration, half_life: Duration) -> f64 {
    let h = half_life.as_secs_f64().max(1e-9);
    value * (-elapsed.as_secs_f64() / h).exp2()
}

/// Usage run up between `from` and `to` at `rate` (dominant share, 0..1) per second, counted
/// at `to` with decay: the integral of `rate · 2^-(to-s)/h` over the interval, so charging in
/// pieces and decaying in between adds up to the same as charging at once.
pub fn accrue(rate: f64, from: Timestamp, to: Timestamp, half_life: Duration) -> f64 {
    let h = half_life.as_secs_f64().max(1e-9);
    let span = to.since(from).as_secs_f64();
    rate * h / std::f64::consts::LN_2 * (1.0 - (-span / h).exp2())
}

/// Decayed usage of one user in one account, as of `at`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct UsageValue {
    pub value: f64,
    pub at: Timestamp,
}

impl UsageValue {
    /// The value decayed to `now`.
    pub fn at(&self, now: Timestamp, half_life: Duration) -> f64 {
        decay(self.value, now.since(self.at), half_life)
    }

    /// Decays to `now`, then adds `charge`.
    pub fn add(&mut self, charge: f64, now: Timestamp, half_life: Duration) {
        self.value = self.at(now, half_life) + charge;
        self.at = self.at.max(now);
    }
}

/// One user-in-account's usage, as the controller stores it and gives it back after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// The account.
    pub account: String,
    /// The user.
    pub user: String,
    /// Decayed usage in dominant-share seconds, as of `at`.
    pub value: f64,
    /// When `value` was computed.
    pub at: Timestamp,
}

/// Fair-share factor from a normalised usage and a normalised share: 1 for no use, 0.5 when
/// the use equals the share, halving again with every further share's worth (the classic
/// exponential formula).
pub fn fair_share_factor(usage: f64, share: f64) -> f64 {
    if share <= 0.0 {
        return 0.0;
    }
    (-(usage / share)).exp2().clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::{AccountConfig, UserConfig};
    use proptest::prelude::*;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn decay_halves_per_half_life() {
        assert!((decay(8.0, H, H) - 4.0).abs() < 1e-9);
        assert!((decay(8.0, 3 * H, H) - 1.0).abs() < 1e-9);
        // A whole share (rate 1) for a very long time tends to h / ln 2.
        let long = accrue(1.0, Timestamp(0), Timestamp::from_secs(3600 * 100), H);
        assert!((long - 3600.0 / std::f64::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn shares_multiply_down_the_tree() {
        let mut physics = AccountConfig::new("physics");
        physics.parent = Some("science".into());
        physics.shares = 3;
        let mut chem = AccountConfig::new("chemistry");
        chem.parent = Some("science".into());
        let config = SchedulerConfig {
            accounts: vec![
                AccountConfig::new("science"),
                physics,
                chem,
                AccountConfig::new("arts"),
            ],
            users: vec![UserConfig {
                name: "ann".into(),
                default_account: "physics".into(),
                shares: 1,
            }],
            ..SchedulerConfig::default()
        };
        let mut tree = Tree::new(&config);
        let a = tree.resolve("ann", None).unwrap();
        let leaf = tree.assoc(a, "ann");
        let shares = tree.account_shares();
        let physics = tree.account("physics").unwrap() as usize;
        assert!((shares[physics] - 0.5 * 0.75).abs() < 1e-12);
        assert!((tree.assoc_shares(&shares)[leaf as usize] - 0.375).abs() < 1e-12);
        assert!(matches!(tree.resolve("ann", Some("arts")), Err(AccountRefusal::NotMember { .. })));
        assert!(matches!(tree.resolve("bob", None), Err(AccountRefusal::NoAccount(_))));
    }

    #[test]
    fn a_user_listed_in_an_account_but_without_a_user_entry_defaults_to_it() {
        let mut chem = AccountConfig::new("chemistry");
        chem.users = vec!["cy".into()];
        let config = SchedulerConfig {
            accounts: vec![AccountConfig::new("arts"), chem],
            default_account: Some("arts".into()),
            ..SchedulerConfig::default()
        };
        let tree = Tree::new(&config);
        let cy = tree.resolve("cy", None).unwrap();
        assert_eq!(tree.name(cy), "chemistry");
        // Anyone else: the configured default account.
        assert_eq!(tree.name(tree.resolve("dan", None).unwrap()), "arts");
    }

    #[test]
    fn no_accounts_means_one_default_account() {
        let tree = Tree::new(&SchedulerConfig::default());
        let id = tree.resolve("anyone", None).unwrap();
        assert_eq!(tree.name(id), DEFAULT_ACCOUNT);
        assert_eq!(tree.resolve("anyone", Some(DEFAULT_ACCOUNT)), Ok(id));
    }

    #[test]
    fn factor_is_half_at_fair_use() {
        assert_eq!(fair_share_factor(0.0, 0.5), 1.0);
        assert!((fair_share_factor(0.5, 0.5) - 0.5).abs() < 1e-12);
        assert!(fair_share_factor(1.0, 0.5) < fair_share_factor(0.4, 0.5));
    }

    proptest! {
        /// Charging a running job in any number of pieces gives the same usage as one charge
        /// at the end: the controller may settle usage as often as it likes.
        #[test]
        fn charging_in_pieces_equals_charging_at_once(
            cuts in prop::collection::vec(1u64..100_000, 0..20),
            rate in 0.0f64..1.0,
            start_value in 0.0f64..10_000.0,
        ) {
            let h = Duration::from_secs(86_400);
            let mut times: Vec<u64> = cuts.iter().scan(0u64, |t, c| { *t += c; Some(*t) }).collect();
            times.push(times.last().copied().unwrap_or(0) + 1000);
            let end = Timestamp::from_secs(*times.last().unwrap_or(&0));
            let mut pieces = UsageValue { value: start_value, at: Timestamp(0) };
            let mut last = Timestamp(0);
            for &t in &times {
                let t = Timestamp::from_secs(t);
                pieces.add(accrue(rate, last, t, h), t, h);
                last = t;
            }
            let mut once = UsageValue { value: start_value, at: Timestamp(0) };
            once.add(accrue(rate, Timestamp(0), end, h), end, h);
            prop_assert!((pieces.at(end, h) - once.at(end, h)).abs() <= 1e-6 * once.value.max(1.0));
        }
    }
}
