//! The scheduling sections of the controller's TOML — `[scheduling]` (backfill, weights,
//! intervals, half-life), `[[account]]`, `[[user]]`, `[[qos]]` — read into a checked
//! [`SchedulerConfig`]. Self-contained so the controller can adopt it (and reload it) without
//! this module knowing the rest of the file; `gangway simulate --config` reads it today.
//!
//! Other keys of the file are ignored here (the controller's own parser owns them); unknown
//! keys inside these sections are refused. Every error names the line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gangway_launcher::time_limit::{parse_duration, parse_time_limit};
use gangway_scheduler::AfterPreempt;
use gangway_scheduler::{
    AccountConfig, BackfillMode, Bytes, ConfigError as PolicyError, Limits, PriorityWeights,
    QosConfig, SchedulerConfig, UserConfig,
};
use serde::Deserialize;
use toml::Spanned;

use crate::cli::shape::parse_memory;

/// Why the scheduling sections were refused.
#[derive(Debug, thiserror::Error)]
pub enum SchedulingConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad TOML, or a value of the wrong type (toml names the line).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with the line.
        message: String,
    },
    /// A value that does not make sense.
    #[error("{}: line {line}: {key}: {message}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// What is wrong and the fix.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    scheduling: Option<Spanned<RawScheduling>>,
    #[serde(default, rename = "account")]
    accounts: Vec<Spanned<RawAccount>>,
    #[serde(default, rename = "user")]
    users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    qos: Vec<Spanned<RawQos>>,
    #[serde(default, rename = "partition")]
    partitions: Vec<Spanned<RawPartition>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduling {
    backfill: Option<Spanned<String>>,
    full_pass_interval: Option<Spanned<String>>,
    reservation_depth: Option<usize>,
    max_age: Option<Spanned<String>>,
    favor_small: Option<bool>,
    half_life: Option<Spanned<String>>,
    default_account: Option<String>,
    default_qos: Option<String>,
    weights: Option<RawWeights>,
    #[serde(default)]
    partition_priority: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeights {
    age: Option<u32>,
    size: Option<u32>,
    partition: Option<u32>,
    qos: Option<u32>,
    fairshare: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpus: Option<u64>,
    gpus: Option<u64>,
    memory: Option<Spanned<String>>,
    nodes: Option<u64>,
    running_jobs: Option<u32>,
    queued_jobs: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    parent: Option<String>,
    shares: Option<u32>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    lend: bool,
    #[serde(default)]
    borrow: bool,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    default_account: String,
    shares: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQos {
    name: String,
    #[serde(default)]
    priority: u32,
    max_wall: Option<Spanned<String>>,
    #[serde(default)]
    preempt: Vec<String>,
    preempt_mode: Option<Spanned<String>>,
    grace: Option<Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
}

/// Only what scheduling needs of a partition: its name and time limits.
#[derive(Debug, Deserialize)]
struct RawPartition {
    name: String,
    #[serde(default)]
    default: bool,
    default_time: Option<Spanned<String>>,
    max_time: Option<Spanned<String>>,
}

/// A partition's time limits as the configuration gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTimes {
    /// The partition's name.
    pub name: String,
    /// Whether jobs naming no partition go here.
    pub default: bool,
    /// Time limit of jobs that give none.
    pub default_time: Option<Duration>,
    /// Longest time limit a job may ask for.
    pub max_time: Option<Duration>,
}

/// The scheduling part of a controller configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulingConfig {
    /// The policy.
    pub scheduler: SchedulerConfig,
    /// Partitions' names and time limits (their nodes are the controller's business).
    pub partitions: Vec<PartitionTimes>,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(1, |t| t.matches('\n').count() + 1)
}

impl SchedulingConfig {
    /// Reads and checks the scheduling sections of `path`.
    pub fn load(path: &Path) -> Result<Self, SchedulingConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SchedulingConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Checks the scheduling sections of a configuration's text; `path` only names it.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SchedulingConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| SchedulingConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let err = |at: usize, key: &str, message: String| SchedulingConfigError::Value {
            path: path.to_owned(),
            line: line_of(text, at),
            key: key.to_owned(),
            message,
        };
        let duration = |v: &Spanned<String>, key: &str| {
            parse_duration(v.get_ref())
                .map_err(|e| err(v.span().start, key, format!("{e} (e.g. \"30s\", \"5m\")")))
        };
        let limit = |v: &Option<Spanned<String>>, key: &str| match v {
            None => Ok(None),
            Some(t) => parse_time_limit(t.get_ref())
                .map_err(|e| err(t.span().start, key, format!("{e} (e.g. \"7-00:00:00\")"))),
        };
        let limits = |l: &RawLimits, key: &str| -> Result<Limits, SchedulingConfigError> {
            let memory = match &l.memory {
                None => None,
                Some(m) => Some(Bytes(parse_memory(m.get_ref()).map_err(|e| {
                    err(m.span().start, &format!("{key}.memory"), format!("'{}': {e}", m.get_ref()))
                })?)),
            };
            Ok(Limits {
                cpus: l.cpus,
                gpus: l.gpus,
                memory,
                nodes: l.nodes,
                running_jobs: l.running_jobs,
                queued_jobs: l.queued_jobs,
            })
        };

        let mut config = SchedulerConfig::default();
        // Where each kind of item starts, to name the line of an error found later.
        let mut item_lines: Vec<(String, usize)> = Vec::new();
        if let Some(s) = &raw.scheduling {
            let start = s.span().start;
            let s = s.get_ref();
            if let Some(b) = &s.backfill {
                config.backfill = BackfillMode::parse(b.get_ref()).ok_or_else(|| {
                    err(
                        b.span().start,
                        "scheduling.backfill",
                        format!("'{}': use none, easy or conservative", b.get_ref()),
                    )
                })?;
            }
            if let Some(v) = &s.full_pass_interval {
                config.full_pass_interval = duration(v, "scheduling.full_pass_interval")?;
            }
            if let Some(v) = s.reservation_depth {
                config.reservation_depth = v;
            }
            for (v, key, slot) in [
                (&s.max_age, "scheduling.max_age", &mut config.max_age),
                (&s.half_life, "scheduling.half_life", &mut config.half_life),
            ] {
                if let Some(v) = v {
                    *slot = limit(&Some(v.clone()), key)?.ok_or_else(|| {
                        err(v.span().start, key, "must be a length of time, not unlimited".into())
                    })?;
                }
            }
            config.favor_small = s.favor_small.unwrap_or(config.favor_small);
            config.default_account.clone_from(&s.default_account);
            config.default_qos.clone_from(&s.default_qos);
            if let Some(w) = &s.weights {
                let d = PriorityWeights::default();
                config.weights = PriorityWeights {
                    age: w.age.unwrap_or(d.age),
                    size: w.size.unwrap_or(d.size),
                    partition: w.partition.unwrap_or(d.partition),
                    qos: w.qos.unwrap_or(d.qos),
                    fairshare: w.fairshare.unwrap_or(d.fairshare),
                };
            }
            config.partition_priority =
                s.partition_priority.iter().map(|(k, v)| (k.clone(), *v)).collect();
            item_lines.push(("scheduling".into(), start));
        }
        for a in &raw.accounts {
            let at = a.span().start;
            let a = a.get_ref();
            let key = format!("account '{}'", a.name);
            item_lines.push((format!("account:{}", a.name), at));
            config.accounts.push(AccountConfig {
                name: a.name.clone(),
                parent: a.parent.clone(),
                shares: a.shares.unwrap_or(1),
                limits: limits(&a.limits, &format!("{key}.limits"))?,
                lend: a.lend,
                borrow: a.borrow,
                users: a.users.clone(),
            });
        }
        for u in &raw.users {
            let at = u.span().start;
            let u = u.get_ref();
            item_lines.push((format!("user:{}", u.name), at));
            config.users.push(UserConfig {
                name: u.name.clone(),
                default_account: u.default_account.clone(),
                shares: u.shares.unwrap_or(1),
            });
        }
        for q in &raw.qos {
            let at = q.span().start;
            let q = q.get_ref();
            let key = format!("qos '{}'", q.name);
            item_lines.push((format!("qos:{}", q.name), at));
            let mut qos = QosConfig::new(&q.name, q.priority);
            qos.limits = limits(&q.limits, &format!("{key}.limits"))?;
            qos.max_wall = limit(&q.max_wall, &format!("{key}.max_wall"))?;
            qos.preempt.clone_from(&q.preempt);
            if let Some(g) = &q.grace {
                qos.grace = duration(g, &format!("{key}.grace"))?;
            }
            if let Some(m) = &q.preempt_mode {
                qos.preempt_mode = match m.get_ref().as_str() {
                    "requeue" => AfterPreempt::Requeue,
                    "cancel" => AfterPreempt::Cancel,
                    other => {
                        return Err(err(
                            m.span().start,
                            &format!("{key}.preempt_mode"),
                            format!("'{other}': use requeue or cancel"),
                        ));
                    }
                };
            }
            config.qos.push(qos);
        }
        let mut partitions = Vec::new();
        for p in &raw.partitions {
            let p = p.get_ref();
            let key = format!("partition '{}'", p.name);
            partitions.push(PartitionTimes {
                name: p.name.clone(),
                default: p.default,
                default_time: limit(&p.default_time, &format!("{key}.default_time"))?,
                max_time: limit(&p.max_time, &format!("{key}.max_time"))?,
            });
        }
        config.check().map_err(|e| {
            let at = policy_error_item(&e)
                .and_then(|item| item_lines.iter().find(|(k, _)| *k == item))
                .or_else(|| item_lines.first())
                .map_or(0, |(_, at)| *at);
            err(at, policy_error_key(&e), e.to_string())
        })?;
        Ok(SchedulingConfig { scheduler: config, partitions })
    }
}

/// The item (as recorded in `item_lines`) a policy error is about.
fn policy_error_item(e: &PolicyError) -> Option<String> {
    Some(match e {
        PolicyError::DuplicateAccount(a) | PolicyError::Cycle(a) => format!("account:{a}"),
        PolicyError::UnknownParent { account, .. } => format!("account:{account}"),
        PolicyError::ZeroShares { what, name } => format!("{what}:{name}"),
        PolicyError::UnknownUserAccount { user, .. } => format!("user:{user}"),
        PolicyError::DuplicateUser(u) => format!("user:{u}"),
        PolicyError::DuplicateQos(q) | PolicyError::SelfPreempt(q) => format!("qos:{q}"),
        PolicyError::UnknownPreemptTarget { qos, .. } => format!("qos:{qos}"),
        _ => "scheduling".into(),
    })
}

fn policy_error_key(e: &PolicyError) -> &'static str {
    match e {
        PolicyError::DuplicateAccount(_)
        | PolicyError::Cycle(_)
        | PolicyError::UnknownParent { .. } => "account",
        PolicyError::UnknownUserAccount { .. } | PolicyError::DuplicateUser(_) => "user",
        PolicyError::ZeroShares { .. } => "shares",
        PolicyError::DuplicateQos(_)
        | PolicyError::SelfPreempt(_)
        | PolicyError::UnknownPreemptTarget { .. } => "qos",
        _ => "scheduling",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
cluster = "test"
state_dir = "/var/lib/gangway"

[[partition]]
name = "batch"
nodes = "node[1-4]"
default = true
default_time = "1:00:00"
max_time = "2-00:00:00"

[scheduling]
backfill = "conservative"
full_pass_interval = "45s"
reservation_depth = 32
half_life = "1-00:00:00"

[scheduling.weights]
age = 10
fairshare = 5000

[scheduling.partition_priority]
batch = 2

[[account]]
name = "science"
shares = 2

[[account]]
name = "physics"
parent = "science"
users = ["ann"]
lend = true
[account.limits]
cpus = 128
memory = "512G"
running_jobs = 10

[[user]]
name = "ann"
default_account = "physics"

[[qos]]
name = "low"
grace = "30s"
preempt_mode = "cancel"

[[qos]]
name = "high"
priority = 100
max_wall = "4:00:00"
preempt = ["low"]
"#;

    #[test]
    fn reads_every_section() {
        let c = SchedulingConfig::parse(FULL, Path::new("c.toml")).unwrap();
        let s = &c.scheduler;
        assert_eq!(s.backfill, BackfillMode::Conservative);
        assert_eq!(s.full_pass_interval, Duration::from_secs(45));
        assert_eq!(s.reservation_depth, 32);
        assert_eq!(s.half_life, Duration::from_secs(86_400));
        assert_eq!((s.weights.age, s.weights.fairshare, s.weights.qos), (10, 5000, 2000));
        assert_eq!(s.partition_priority, vec![("batch".to_owned(), 2)]);
        let physics = &s.accounts[1];
        assert_eq!(physics.parent.as_deref(), Some("science"));
        assert_eq!(physics.limits.memory, Some(Bytes::gib(512)));
        assert!(physics.lend && !physics.borrow);
        assert_eq!(s.qos[0].preempt_mode, AfterPreempt::Cancel);
        assert_eq!(s.qos[1].max_wall, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(c.partitions[0].default_time, Some(Duration::from_secs(3600)));
        // A file without these sections is the default policy.
        let bare = SchedulingConfig::parse("cluster = \"x\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(bare.scheduler, SchedulerConfig::default());
    }

    #[test]
    fn errors_name_the_line() {
        let msg = |text: &str| {
            SchedulingConfig::parse(text, Path::new("c.toml")).unwrap_err().to_string()
        };
        let bad_parent =
            "[[account]]\nname = \"a\"\n\n[[account]]\nname = \"b\"\nparent = \"zz\"\n";
        assert_eq!(
            msg(bad_parent),
            "c.toml: line 4: account: account 'b': parent 'zz' is not an account; define it or fix the name"
        );
        let mode = "[scheduling]\nbackfill = \"sometimes\"\n";
        assert_eq!(
            msg(mode),
            "c.toml: line 2: scheduling.backfill: 'sometimes': use none, easy or conservative"
        );
        let typo = "[scheduling]\nbackfil = \"easy\"\n";
        assert!(msg(typo).contains("line 2"), "{}", msg(typo));
        let mem = "[[account]]\nname = \"a\"\n[account.limits]\nmemory = \"lots\"\n";
        assert!(
            msg(mem).starts_with("c.toml: line 4: account 'a'.limits.memory: 'lots'"),
            "{}",
            msg(mem)
        );
        let grace = "[[qos]]\nname = \"q\"\ngrace = \"soon\"\n";
        assert!(msg(grace).starts_with("c.toml: line 3: qos 'q'.grace"), "{}", msg(grace));
    }
}
