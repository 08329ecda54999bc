//! The controller's configuration file (TOML): the cluster, where it listens, where it keeps
//! state, liveness timeouts, partitions, per-node overrides and the site's default `--mpi`. Parsing is pure; errors name
//! the key and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gangway_launcher::nodes::hostlist;
use gangway_launcher::pmi::pmix::MpiKind;
use gangway_launcher::time_limit::{parse_duration, parse_time_limit};

use crate::cli::shape::parse_memory;
use crate::controller::config_scheduling::SchedulingConfig;
use gangway_scheduler::SchedulerConfig;
use serde::Deserialize;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {key}: {message}", path.display())]
    Value { path: PathBuf, key: String, message: String },
    /// A scheduling section (`[scheduling]`, `[[account]]`, `[[user]]`, `[[qos]]`) is wrong.
    #[error(transparent)]
    Scheduling(Box<crate::controller::config_scheduling::SchedulingConfigError>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    cluster: String,
    #[serde(default = "default_listen")]
    listen: String,
    socket: Option<PathBuf>,
    state_dir: PathBuf,
    key_file: PathBuf,
    #[serde(default = "default_heartbeat")]
    heartbeat_interval: String,
    #[serde(default = "default_suspect")]
    suspect_timeout: String,
    #[serde(default = "default_lost")]
    lost_timeout: String,
    #[serde(default = "default_fence_margin")]
    fence_margin: String,
    /// Retired (a dropped connection no longer makes a node lost); accepted with a warning so
    /// that older files still load.
    reconnect_grace: Option<toml::Value>,
    #[serde(default = "default_kill_grace")]
    kill_grace: String,
    #[serde(default)]
    admins: Vec<String>,
    /// Run as `mail_program -s SUBJECT ADDRESS` for `--mail-type` (none: no mail is sent).
    mail_program: Option<PathBuf>,
    #[serde(default = "default_max_script_size")]
    max_script_size: String,
    #[serde(default = "default_max_connections_per_user")]
    max_connections_per_user: usize,
    #[serde(default = "default_max_array_size")]
    max_array_size: u32,
    #[serde(default = "default_max_unauthenticated")]
    max_unauthenticated: usize,
    #[serde(default = "default_max_unauthenticated_per_host")]
    max_unauthenticated_per_host: usize,
    #[serde(default = "default_auth_timeout")]
    auth_timeout: String,
    #[serde(default = "default_min_free_space")]
    min_free_space: String,
    #[serde(default = "default_state_reserve")]
    state_reserve: String,
    mpi_default: Option<String>,
    #[serde(default = "default_slurm_env")]
    slurm_env: bool,
    /// A job whose dependency can never be satisfied is cancelled (Slurm's
    /// `SchedulerParameters=kill_invalid_depend`); a job's `--kill-on-invalid-dep` wins.
    #[serde(default)]
    kill_on_invalid_dep: bool,
    #[serde(default, rename = "partition")]
    partitions: Vec<RawPartition>,
    #[serde(default, rename = "node")]
    nodes: BTreeMap<String, RawNode>,
    /// GPU models and the type users ask for them by, over the derived one (docs/slurm.md).
    #[serde(default)]
    gpu_types: BTreeMap<String, String>,
    /// `[scheduling]`, `[[account]]`, `[[user]]`, `[[qos]]`: read and checked by
    /// `config_scheduling` (which names the line of a bad value).
    #[serde(rename = "scheduling")]
    _scheduling: Option<serde::de::IgnoredAny>,
    #[serde(rename = "account")]
    _account: Option<serde::de::IgnoredAny>,
    #[serde(rename = "user")]
    _user: Option<serde::de::IgnoredAny>,
    #[serde(rename = "qos")]
    _qos: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    name: String,
    nodes: String,
    #[serde(default)]
    default: bool,
    default_time: Option<String>,
    max_time: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    /// Start drained with this reason.
    drain: Option<String>,
    /// What `--constraint` can ask for (`["gpu", "a100"]`).
    #[serde(default)]
    features: Vec<String>,
}

fn default_slurm_env() -> bool {
    true
}

fn default_listen() -> String {
    "0.0.0.0:7717".into()
}
fn default_heartbeat() -> String {
    "1s".into()
}
fn default_suspect() -> String {
    "3s".into()
}
fn default_lost() -> String {
    "6s".into()
}
fn default_fence_margin() -> String {
    "500ms".into()
}
fn default_kill_grace() -> String {
    "5s".into()
}
fn default_max_script_size() -> String {
    format!("{}M", DEFAULT_MAX_SCRIPT_SIZE >> 20)
}
fn default_max_array_size() -> u32 {
    DEFAULT_MAX_ARRAY_SIZE
}
fn default_max_connections_per_user() -> usize {
    128
}
fn default_max_unauthenticated() -> usize {
    256
}
fn default_max_unauthenticated_per_host() -> usize {
    32
}
fn default_auth_timeout() -> String {
    "5s".into()
}
fn default_min_free_space() -> String {
    "64M".into()
}
fn default_state_reserve() -> String {
    "8M".into()
}

/// A partition: a named set of nodes with time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionConfig {
    pub name: String,
    pub nodes: Vec<String>,
    pub default: bool,
    pub default_time: Option<Duration>,
    pub max_time: Option<Duration>,
}

/// Per-node settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Drained from the start, with this reason (until `gangway resume`).
    pub drain: Option<String>,
    /// Its features, for `--constraint`.
    pub features: Vec<String>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: String,
    pub listen: SocketAddr,
    /// The local socket for `gangway` commands on the controller's machine.
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    pub heartbeat_interval: Duration,
    pub suspect_timeout: Duration,
    /// Silent this long, a node is lost and its jobs requeued. Never less than an agent's lease
    /// plus [`Config::fence_margin`]: see [`Config::lease`].
    pub lost_timeout: Duration,
    /// How long before the controller may declare a node lost its agent's lease has run out.
    pub fence_margin: Duration,
    pub kill_grace: Duration,
    /// Users who may act on anyone's jobs and on nodes (root always may).
    pub admins: Vec<String>,
    /// The program that sends `--mail-type` mail (`mail_program`, e.g. `/usr/bin/mail`), run as
    /// `PROGRAM -s SUBJECT ADDRESS` with an empty body, as Slurm runs its MailProg.
    pub mail_program: Option<PathBuf>,
    /// What one client may hold or send, and the state disk's reserve (docs/cluster.md, "Limits").
    pub limits: LimitsConfig,
    pub partitions: Vec<PartitionConfig>,
    /// Every node of any partition, in first-mention order.
    pub nodes: Vec<String>,
    pub node_settings: BTreeMap<String, NodeConfig>,
    /// `[gpu_types]`: a GPU model as hwloc reports it (compared without regard to case) and the
    /// type it is asked for by, over the one derived from the model.
    pub gpu_types: Vec<(String, gangway_topology::GpuType)>,
    /// The `--mpi` of jobs and steps that choose none (`GANGWAY_MPI` in their environment);
    /// unset, the client's own default (pmi2) holds.
    pub mpi_default: Option<MpiKind>,
    /// Jobs get `SLURM_*` variables beside the `GANGWAY_*` ones (docs/slurm.md); default on.
    pub slurm_env: bool,
    /// Cancel a job whose dependency can never be satisfied (else it stays pending with the
    /// reason `DependencyNeverSatisfied`, as in Slurm); a job's `--kill-on-invalid-dep` wins.
    pub kill_on_invalid_dep: bool,
    /// The scheduling policy: `[scheduling]`, `[[account]]`, `[[user]]`, `[[qos]]`
    /// (docs/scheduling.md); the defaults without them.
    pub scheduler: SchedulerConfig,
    /// The file it was read from (`gangway reconfigure` and SIGHUP read it again).
    pub path: PathBuf,
    /// Accepted but worth telling the administrator (retired keys), for the log.
    pub warnings: Vec<String>,
}

/// The settings that bound what clients can make the controller hold (docs/cluster.md, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// The largest batch script accepted, in bytes.
    pub max_script_size: u64,
    /// Open client connections per user (root, the controller's user and admins: no limit).
    pub max_connections_per_user: usize,
    /// Array task indexes must be below this (Slurm's `MaxArraySize`).
    pub max_array_size: u32,
    /// TCP connections that have not authenticated yet, in all and from one address.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_host: usize,
    /// How long a TCP connection may take to authenticate.
    pub auth_timeout: Duration,
    /// Below this much free space in `state_dir`, new submissions are refused.
    pub min_free_space: u64,
    /// The size of the reserve file kept in `state_dir`, given up when a commit runs out of space.
    pub state_reserve: u64,
}

/// `max_script_size` when the configuration gives none (Slurm's default too).
pub const DEFAULT_MAX_SCRIPT_SIZE: u64 = 4 << 20;

/// `max_array_size` when the configuration gives none: indexes 0 to 100000. Larger than
/// Slurm's default (1001): a waiting array costs one record here, whatever its size.
pub const DEFAULT_MAX_ARRAY_SIZE: u32 = 100_001;

/// The largest `max_script_size` accepted: a submission must fit one encrypted link message.
pub const MAX_SCRIPT_SIZE_CEILING: u64 = 12 << 20;

/// The smallest `fence_margin`: it must cover a fencer waking up late on a busy node and the
/// kernel delivering its kills, plus clock-rate differences between machines.
pub const MIN_FENCE_MARGIN: Duration = Duration::from_millis(100);

/// How many heartbeats an agent's lease must span, so one or two lost or late ones do not
/// fence a healthy node.
pub const LEASE_HEARTBEATS: u32 = 3;

/// The socket path when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/gangway/controller.sock";

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Checks a configuration's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let scheduler = SchedulingConfig::parse(text, path)
            .map_err(|e| ConfigError::Scheduling(Box::new(e)))?
            .scheduler;
        let value = |key: &str, message: String| ConfigError::Value {
            path: path.to_owned(),
            key: key.to_string(),
            message,
        };
        let duration = |key: &str, v: &str| {
            parse_duration(v).map_err(|e| value(key, format!("{e} (e.g. \"500ms\", \"3s\")")))
        };
        let limit = |key: &str, v: &Option<String>| match v {
            None => Ok(None),
            Some(t) => parse_time_limit(t).map_err(|e| value(key, e.to_string())),
        };
        let listen = raw.listen.parse().map_err(|e| {
            value("listen", format!("'{}': {e} (e.g. \"0.0.0.0:7717\")", raw.listen))
        })?;
        let heartbeat_interval = duration("heartbeat_interval", &raw.heartbeat_interval)?;
        let suspect_timeout = duration("suspect_timeout", &raw.suspect_timeout)?;
        let lost_timeout = duration("lost_timeout", &raw.lost_timeout)?;
        if heartbeat_interval.is_zero()
            || suspect_timeout <= heartbeat_interval
            || lost_timeout < suspect_timeout
        {
            return Err(value(
                "lost_timeout",
                "need 0 < heartbeat_interval < suspect_timeout <= lost_timeout".into(),
            ));
        }
        let fence_margin = duration("fence_margin", &raw.fence_margin)?;
        if fence_margin < MIN_FENCE_MARGIN {
            return Err(value(
                "fence_margin",
                format!(
                    "{} is too small: at least {}ms (it covers a fencer waking up late and its kills landing)",
                    humantime::format_duration(fence_margin),
                    MIN_FENCE_MARGIN.as_millis()
                ),
            ));
        }
        if lost_timeout < fence_margin + heartbeat_interval * LEASE_HEARTBEATS {
            return Err(value(
                "lost_timeout",
                format!(
                    "{} is too short: an agent's lease lasts lost_timeout - fence_margin ({}) and must span at least {LEASE_HEARTBEATS} heartbeats ({} each); raise lost_timeout to {} or more, or lower heartbeat_interval",
                    humantime::format_duration(lost_timeout),
                    humantime::format_duration(fence_margin),
                    humantime::format_duration(heartbeat_interval),
                    humantime::format_duration(
                        fence_margin + heartbeat_interval * LEASE_HEARTBEATS
                    ),
                ),
            ));
        }
        let mut warnings = Vec::new();
        if raw.reconnect_grace.is_some() {
            warnings.push(format!(
                "{}: reconnect_grace is retired and ignored: a node is lost only after lost_timeout without a word from its agent, however its connection ended (docs/cluster.md, \"Fencing\"); remove the line",
                path.display()
            ));
        }
        if raw.cluster.is_empty() {
            return Err(value("cluster", "give the cluster a name".into()));
        }
        let mut nodes: Vec<String> = Vec::new();
        let mut partitions = Vec::new();
        if raw.partitions.is_empty() {
            return Err(value(
                "partition",
                "no partitions: add at least one [[partition]] with name and nodes".into(),
            ));
        }
        for (i, p) in raw.partitions.iter().enumerate() {
            let key = format!("partition[{i}]");
            let names = hostlist::expand(&p.nodes)
                .map_err(|e| value(&format!("{key}.nodes"), e.to_string()))?;
            if names.is_empty() {
                return Err(value(&format!("{key}.nodes"), "names no node".into()));
            }
            if partitions.iter().any(|q: &PartitionConfig| q.name == p.name) {
                return Err(value(&format!("{key}.name"), format!("'{}' twice", p.name)));
            }
            for n in &names {
                if !nodes.contains(n) {
                    nodes.push(n.clone());
                }
            }
            let default_time = limit(&format!("{key}.default_time"), &p.default_time)?;
            let max_time = limit(&format!("{key}.max_time"), &p.max_time)?;
            if let (Some(d), Some(m)) = (default_time, max_time)
                && d > m
            {
                return Err(value(&key, "default_time is above max_time".into()));
            }
            partitions.push(PartitionConfig {
                name: p.name.clone(),
                nodes: names,
                default: p.default,
                default_time,
                max_time,
            });
        }
        let size = |key: &str, v: &str| {
            parse_memory(v).map_err(|e| value(key, format!("'{v}': {e} (e.g. \"4M\", \"512K\")")))
        };
        let max_script_size = size("max_script_size", &raw.max_script_size)?;
        if max_script_size == 0 || max_script_size > MAX_SCRIPT_SIZE_CEILING {
            return Err(value(
                "max_script_size",
                format!("must be above 0 and at most {}M", MAX_SCRIPT_SIZE_CEILING >> 20),
            ));
        }
        let positive = |key: &str, n: usize| {
            if n == 0 { Err(value(key, "must be at least 1".into())) } else { Ok(n) }
        };
        if raw.max_array_size == 0 || raw.max_array_size > crate::protocol::array::INDEX_CEILING + 1
        {
            return Err(value(
                "max_array_size",
                format!(
                    "must be above 0 and at most {}",
                    crate::protocol::array::INDEX_CEILING + 1
                ),
            ));
        }
        let limits = LimitsConfig {
            max_script_size,
            max_array_size: raw.max_array_size,
            max_connections_per_user: positive(
                "max_connections_per_user",
                raw.max_connections_per_user,
            )?,
            max_unauthenticated: positive("max_unauthenticated", raw.max_unauthenticated)?,
            max_unauthenticated_per_host: positive(
                "max_unauthenticated_per_host",
                raw.max_unauthenticated_per_host,
            )?,
            auth_timeout: duration("auth_timeout", &raw.auth_timeout)?
                .max(Duration::from_millis(100)),
            min_free_space: size("min_free_space", &raw.min_free_space)?,
            state_reserve: size("state_reserve", &raw.state_reserve)?,
        };
        let mpi_default = raw
            .mpi_default
            .as_deref()
            .map(str::parse::<MpiKind>)
            .transpose()
            .map_err(|e| value("mpi_default", e))?;
        let mut node_settings = BTreeMap::new();
        for (name, n) in raw.nodes {
            if !nodes.contains(&name) {
                return Err(value(&format!("node.{name}"), "is in no partition".into()));
            }
            node_settings.insert(name, NodeConfig { drain: n.drain, features: n.features });
        }
        let mut gpu_types = Vec::new();
        for (model, name) in raw.gpu_types {
            let t = name.parse().map_err(|e: gangway_topology::GpuTypeError| {
                value(&format!("gpu_types.\"{model}\""), e.to_string())
            })?;
            gpu_types.push((model, t));
        }
        Ok(Config {
            cluster: raw.cluster,
            listen,
            socket: raw.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            state_dir: raw.state_dir,
            key_file: raw.key_file,
            heartbeat_interval,
            suspect_timeout,
            lost_timeout,
            fence_margin,
            kill_grace: duration("kill_grace", &raw.kill_grace)?,
            admins: raw.admins,
            mail_program: raw.mail_program,
            limits,
            partitions,
            nodes,
            node_settings,
            gpu_types,
            mpi_default,
            slurm_env: raw.slurm_env,
            kill_on_invalid_dep: raw.kill_on_invalid_dep,
            scheduler,
            path: path.to_owned(),
            warnings,
        })
    }

    /// `model` with the types `[gpu_types]` names its GPUs by.
    pub fn named_gpu_types(
        &self,
        mut model: gangway_topology::Topology,
    ) -> gangway_topology::Topology {
        for gpu in &mut model.gpus {
            let named = self.gpu_types.iter().find(|(m, _)| {
                gpu.model.as_deref().is_some_and(|g| g.trim().eq_ignore_ascii_case(m.trim()))
            });
            if let Some((_, t)) = named {
                gpu.type_name = Some(t.clone());
            }
        }
        model
    }

    /// How long an acknowledged heartbeat keeps an agent's jobs alive, counted from when the
    /// agent sent it: `lost_timeout - fence_margin`.
    pub fn lease(&self) -> Duration {
        self.lost_timeout.saturating_sub(self.fence_margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster = "demo"
listen = "127.0.0.1:7717"
state_dir = "/var/lib/gangway"
key_file = "/etc/gangway/key"
heartbeat_interval = "500ms"
suspect_timeout = "2s"
lost_timeout = "4s"

[[partition]]
name = "batch"
nodes = "node[1-3]"
default = true
default_time = "1:00:00"
max_time = "1-00:00:00"

[[partition]]
name = "debug"
nodes = "node1"

[node.node3]
drain = "bad DIMM"
"#;

    #[test]
    fn a_full_file() {
        let c = Config::parse(GOOD, Path::new("c.toml")).expect("parses");
        assert_eq!(c.nodes, ["node1", "node2", "node3"]);
        assert_eq!(c.partitions[0].max_time, Some(Duration::from_secs(86400)));
        assert_eq!(c.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(c.node_settings["node3"].drain.as_deref(), Some("bad DIMM"));
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.limits.max_script_size, 4 << 20, "Slurm's default");
        assert_eq!(c.limits.max_connections_per_user, 128);
    }

    #[test]
    fn gpu_types_name_models_over_the_derived_types() {
        let text = format!(
            "{GOOD}\n[gpu_types]\n\"AMD Radeon R9 200 / HD 7900 Series\" = \"HD7900\"\n\"GeForce RTX 3090\" = \"rtx3090\"\n"
        );
        let c = Config::parse(&text, Path::new("c.toml")).expect("parses");
        let xml = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/topology/tests/data/32em64t-2n8c2t-pci-normalio.xml"
        );
        let mut model = gangway_topology::Topology::from_xml_file(xml).expect("model");
        model.gpus[0].model = Some("geforce rtx 3090".into());
        let named = c.named_gpu_types(model);
        let types: Vec<_> = named.gpus.iter().map(|g| g.gpu_type().map(String::from)).collect();
        assert_eq!(types, [Some("rtx3090".to_owned()), Some("hd7900".to_owned())]);
        let bad = format!("{GOOD}\n[gpu_types]\n\"Tesla K40m\" = \"k 40\"\n");
        let err = Config::parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(
            err.contains("gpu_types.\"Tesla K40m\"") && err.contains("not a GPU type name"),
            "{err}"
        );
    }

    #[test]
    fn limits_are_read_and_checked() {
        let text = GOOD.replace(
            "lost_timeout = \"4s\"",
            "lost_timeout = \"4s\"\nmax_script_size = \"64K\"\nmin_free_space = \"1M\"\nmax_connections_per_user = 3",
        );
        let c = Config::parse(&text, Path::new("c.toml")).expect("parses");
        assert_eq!(c.limits.max_script_size, 64 << 10);
        assert_eq!(c.limits.min_free_space, 1 << 20);
        assert_eq!(c.limits.max_connections_per_user, 3);
        for (bad, key) in [
            ("max_script_size = \"1G\"", "max_script_size"),
            ("max_script_size = \"lots\"", "max_script_size"),
            ("max_connections_per_user = 0", "max_connections_per_user"),
        ] {
            let text =
                GOOD.replace("lost_timeout = \"4s\"", &format!("lost_timeout = \"4s\"\n{bad}"));
            let e = Config::parse(&text, Path::new("c.toml")).expect_err(bad).to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let bad = GOOD.replace("\"500ms\"", "\"soon\"");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("bad duration").to_string();
        assert!(e.contains("heartbeat_interval"), "{e}");
        let bad = GOOD.replace("nodes = \"node1\"", "nodes = \"node[1-\"");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("bad list").to_string();
        assert!(e.contains("partition[1].nodes"), "{e}");
        let bad = GOOD.replace("[node.node3]", "[node.node9]");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("unknown").to_string();
        assert!(e.contains("node.node9"), "{e}");
        let bad = format!("{GOOD}\ncolour = 1\n");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("unknown key").to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn the_lease_is_the_lost_timeout_less_the_fence_margin() {
        let c = Config::parse(GOOD, Path::new("c.toml")).expect("parses");
        assert_eq!(c.fence_margin, Duration::from_millis(500), "the default");
        assert_eq!(c.lease(), Duration::from_millis(3500));
        let c = Config::parse(&format!("fence_margin = \"1s\"\n{GOOD}"), Path::new("c.toml"))
            .expect("parses");
        assert_eq!(c.lease(), Duration::from_secs(3));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_lease_too_short_for_a_few_heartbeats_or_a_tiny_margin_is_refused() {
        // 4s - 3s leaves 1s: two heartbeats of 500ms.
        let bad = format!("fence_margin = \"3s\"\n{GOOD}");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("short lease").to_string();
        assert!(e.contains("lost_timeout") && e.contains("4s 500ms or more"), "{e}");
        let bad = format!("fence_margin = \"10ms\"\n{GOOD}");
        let e = Config::parse(&bad, Path::new("c.toml")).expect_err("tiny margin").to_string();
        assert!(e.contains("fence_margin") && e.contains("at least 100ms"), "{e}");
    }

    #[test]
    fn reconnect_grace_still_loads_with_a_warning() {
        let old = format!("reconnect_grace = \"500ms\"\n{GOOD}");
        let c = Config::parse(&old, Path::new("c.toml")).expect("an older file still loads");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("reconnect_grace is retired"), "{:?}", c.warnings);
    }

    #[test]
    fn the_site_default_mpi_is_read_and_checked() {
        let c = Config::parse(GOOD, Path::new("c.toml")).expect("parses");
        assert_eq!(c.mpi_default, None, "unset, the client's own default holds");
        let c = Config::parse(&format!("mpi_default = \"pmix_v4\"\n{GOOD}"), Path::new("c.toml"))
            .expect("Slurm's spelling");
        assert_eq!(c.mpi_default, Some(MpiKind::Pmix));
        let e = Config::parse(&format!("mpi_default = \"openmpi\"\n{GOOD}"), Path::new("c.toml"))
            .expect_err("unknown kind")
            .to_string();
        assert!(e.contains("mpi_default") && e.contains("pmi2, pmix, none, auto"), "{e}");
    }
}
