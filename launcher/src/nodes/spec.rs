//! Host specs (one entry of `--hosts`, or the first word of a hostfile line), their settings, and
//! the merge of repeated hosts into one [`Node`] each.
//!
//! The rule, the same everywhere a spec is accepted:
//! - `[user@]HOSTS[:N]`: a bare `:N` is always a **slot count**, as in MPICH (`-hosts a:2`,
//!   hostfiles `a:2`) and Open MPI (`--host a:2`). It never means a port, even after `user@`, so
//!   muscle memory from either launcher cannot silently send SSH to port 4.
//! - `ssh://[user@]HOSTS[:PORT]`: inside the URI form OpenSSH itself accepts, `:N` is the **port**.
//! - In a hostfile, settings may follow the spec: `slots=N`, `max_slots=M` (Open MPI), and
//!   `user=NAME`, `port=N` (so a line can give a port and slots together).
//! - `HOSTS` is a hostlist expression (`node[01-04]`); the user, port and slots apply to every
//!   name it expands to.
//!
//! A host named more than once is one node: each mention adds its slots (1 when it states
//! none), so `node1` on two lines means two slots. A host named once without a slot count has
//! `slots: None`, left for the launcher to decide.

use std::collections::HashMap;

use thiserror::Error;

use super::hostlist::{self, HostlistError};
use super::node::Node;

/// What is wrong with one host spec or hostfile line. Each message says what to write instead;
/// the caller adds where it was (`--hosts`, or `file:line`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The host part is not a valid hostlist expression.
    #[error(transparent)]
    Hostlist(#[from] HostlistError),
    /// A slot count that is not a whole number >= 1.
    #[error(
        "slots must be a whole number >= 1, got '{got}' (write '{host} slots=4' or '{host}:4')"
    )]
    BadSlots {
        /// The value as written.
        got: String,
        /// The host part of the spec, for the suggestion.
        host: String,
    },
    /// A `max_slots` that is not a whole number >= 1.
    #[error(
        "max_slots must be a whole number >= 1, got '{got}' (write '{host} slots=4 max_slots=8')"
    )]
    BadMaxSlots {
        /// The value as written.
        got: String,
        /// The host part of the spec.
        host: String,
    },
    /// `max_slots` below `slots`.
    #[error(
        "max_slots={max} is below slots={slots} for '{host}' (raise max_slots to at least {slots}, \
         or drop it)"
    )]
    MaxBelowSlots {
        /// The host part of the spec.
        host: String,
        /// The slot count.
        slots: u32,
        /// The maximum.
        max: u32,
    },
    /// A port that is not a number from 1 to 65535.
    #[error(
        "port must be a whole number from 1 to 65535, got '{got}' (write 'ssh://{host}:2222' or \
         '{host} port=2222')"
    )]
    BadPort {
        /// The value as written.
        got: String,
        /// The host part of the spec.
        host: String,
    },
    /// An empty user, or one holding characters no login name has.
    #[error(
        "user name '{got}' is empty or holds whitespace, '@', ':' or '/' (write 'alice@{host}')"
    )]
    BadUser {
        /// The value as written.
        got: String,
        /// The host part of the spec.
        host: String,
    },
    /// The same setting twice on one spec (`node1:4 slots=4`).
    #[error("{setting} given twice for '{host}' (keep one)")]
    Twice {
        /// Which setting.
        setting: &'static str,
        /// The host part of the spec.
        host: String,
    },
    /// A `key=value` gangway does not know.
    #[error(
        "unknown setting '{key}' for '{host}' (gangway understands slots=, max_slots=, user= and \
         port=)"
    )]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The host part of the spec.
        host: String,
    },
    /// A second word that is not `key=value`.
    #[error(
        "'{word}' after '{host}' is not a setting (one host per line: put '{word}' on a line of its \
         own, or write settings as key=value, e.g. 'slots=4')"
    )]
    NotASetting {
        /// The word.
        word: String,
        /// The host part of the spec.
        host: String,
    },
    /// More than one `:` in a spec.
    #[error(
        "'{spec}' has more than one ':' (write 'host:slots', or 'ssh://user@host:port' for a port; \
         IPv6 addresses are not accepted here, use a host name)"
    )]
    TooManyColons {
        /// The spec as written.
        spec: String,
    },
    /// Nothing where the host name should be (`alice@`, `:4`).
    #[error("no host name in '{spec}' (write e.g. 'node1', 'alice@node1' or 'node1:4')")]
    NoHost {
        /// The spec as written.
        spec: String,
    },
    /// The same host again with a different user or port.
    #[error(
        "'{name}' appears again as '{second}' after '{first}' (give each host one user and port)"
    )]
    Conflict {
        /// The host name.
        name: String,
        /// The earlier spec, as the node it made.
        first: String,
        /// The later one.
        second: String,
    },
    /// A host or user name starting with `-`, which `ssh` would take for an option.
    #[error(
        "'{name}' starts with '-' (ssh would read it as an option; host and user names cannot)"
    )]
    LeadingDash {
        /// The name.
        name: String,
    },
    /// Slot counts of a repeated host that add up past `u32::MAX`.
    #[error("slots for '{name}' add up to more than {}", u32::MAX)]
    SlotsOverflow {
        /// The host name.
        name: String,
    },
}

/// Parses the argument of `--hosts`: specs separated by commas (or whitespace) outside
/// brackets, e.g. `node[1-4]:2,alice@gpu1,ssh://bob@login:2222`. Repeated hosts are merged.
///
/// Each spec is `[user@]HOSTS[:slots]` or `ssh://[user@]HOSTS[:port]`: a bare `:N` is always a
/// slot count (as `mpiexec -hosts a:2` and `mpirun --host a:2` mean it), never a port; a port
/// needs the `ssh://` form. `HOSTS` may be a hostlist expression; a `user@` or `:N` applies to
/// every name it expands to, and only to the entry it is written on (`alice@a,b`: `b` has no
/// user). A host named twice gets the slots of both mentions, a mention without `:N` adding 1.
///
/// ```
/// use gangway_launcher::nodes::{Node, parse_hosts};
/// let nodes = parse_hosts("n[1-2]:4,ssh://alice@login:2222").unwrap();
/// assert_eq!(nodes[1], Node { slots: Some(4), ..Node::new("n2") });
/// assert_eq!(nodes[2].to_string(), "ssh://alice@login:2222");
/// ```
pub fn parse_hosts(arg: &str) -> Result<Vec<Node>, SpecError> {
    let mut list = NodeList::default();
    for entry in hostlist::split_entries(arg)? {
        let spec = Spec::parse(entry)?;
        let names = hostlist::expand_with_limit(spec.hosts, list.budget())?;
        list.add(&names, &spec.settings)?;
    }
    Ok(list.finish())
}

/// One spec, split into its host expression and the settings it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Spec<'a> {
    /// The hostlist expression.
    pub(crate) hosts: &'a str,
    /// What applies to every name of `hosts`.
    pub(crate) settings: Settings,
}

/// Settings from a spec and the `key=value` words after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) user: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) slots: Option<u32>,
    pub(crate) max_slots: Option<u32>,
}

impl<'a> Spec<'a> {
    /// Parses `[user@]HOSTS[:slots]` or `ssh://[user@]HOSTS[:port]`.
    pub(crate) fn parse(text: &'a str) -> Result<Self, SpecError> {
        let (rest, uri) = match text.strip_prefix("ssh://") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let (user, rest) = match rest.split_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, rest),
        };
        let (hosts, tail) = match rest.split_once(':') {
            Some((_, tail)) if tail.contains(':') => {
                return Err(SpecError::TooManyColons { spec: text.to_string() });
            }
            Some((hosts, tail)) => (hosts, Some(tail)),
            None => (rest, None),
        };
        if hosts.is_empty() {
            return Err(SpecError::NoHost { spec: text.to_string() });
        }
        let mut settings = Settings::default();
        if let Some(user) = user {
            settings.user = Some(check_user(user, hosts)?);
        }
        match tail {
            Some(port) if uri => settings.port = Some(parse_port(port, hosts)?),
            Some(slots) => settings.slots = Some(parse_slots(slots, hosts)?),
            None => {}
        }
        Ok(Spec { hosts, settings })
    }

    /// Applies the `key=value` words that follow the spec on a hostfile line.
    pub(crate) fn apply_settings<'w>(
        &mut self,
        words: impl IntoIterator<Item = &'w str>,
    ) -> Result<(), SpecError> {
        let host = self.hosts;
        let s = &mut self.settings;
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(SpecError::NotASetting { word: word.to_string(), host: host.into() });
            };
            let twice = |setting| SpecError::Twice { setting, host: host.to_string() };
            match key.to_ascii_lowercase().as_str() {
                "slots" | "slot" => {
                    if s.slots.is_some() {
                        return Err(twice("slots"));
                    }
                    s.slots = Some(parse_slots(value, host)?);
                }
                "max_slots" | "max-slots" => {
                    if s.max_slots.is_some() {
                        return Err(twice("max_slots"));
                    }
                    s.max_slots = Some(parse_count(value).ok_or_else(|| {
                        SpecError::BadMaxSlots { got: value.to_string(), host: host.to_string() }
                    })?);
                }
                "user" | "username" => {
                    if s.user.is_some() {
                        return Err(twice("user"));
                    }
                    s.user = Some(check_user(value, host)?);
                }
                "port" => {
                    if s.port.is_some() {
                        return Err(twice("port"));
                    }
                    s.port = Some(parse_port(value, host)?);
                }
                _ => return Err(SpecError::UnknownKey { key: key.to_string(), host: host.into() }),
            }
        }
        if let (Some(slots), Some(max)) = (s.slots, s.max_slots)
            && max < slots
        {
            return Err(SpecError::MaxBelowSlots { host: host.to_string(), slots, max });
        }
        Ok(())
    }
}

/// A whole number >= 1 that fits in a `u32`.
fn parse_count(text: &str) -> Option<u32> {
    // `parse` alone would take a leading '+'; a slot count is digits only.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|&n| n >= 1)
}

fn parse_slots(text: &str, host: &str) -> Result<u32, SpecError> {
    parse_count(text)
        .ok_or_else(|| SpecError::BadSlots { got: text.to_string(), host: host.to_string() })
}

fn parse_port(text: &str, host: &str) -> Result<u16, SpecError> {
    parse_count(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| SpecError::BadPort { got: text.to_string(), host: host.to_string() })
}

fn check_user(user: &str, host: &str) -> Result<String, SpecError> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '@' | ':' | '/');
    if user.is_empty() || user.chars().any(bad) {
        return Err(SpecError::BadUser { got: user.to_string(), host: host.to_string() });
    }
    if user.starts_with('-') {
        return Err(SpecError::LeadingDash { name: user.to_string() });
    }
    Ok(user.to_string())
}

/// Nodes in order of first mention, with repeats merged.
#[derive(Debug, Default)]
pub(crate) struct NodeList {
    nodes: Vec<Tally>,
    index: HashMap<String, usize>,
    /// Names seen so far, repeats included: the hostlist budget is shared by all entries.
    mentions: usize,
}

/// One node and what its mentions added up to.
#[derive(Debug)]
struct Tally {
    node: Node,
    mentions: u64,
    /// Sum of slots, a mention without a count adding 1.
    slots: u64,
    any_slots_given: bool,
    /// Sum of `max_slots`, or `None` once a mention gave none (no limit).
    max_slots: Option<u64>,
}

impl NodeList {
    /// How many more names may be expanded before the shared limit.
    pub(crate) fn budget(&self) -> usize {
        hostlist::MAX_NAMES.saturating_sub(self.mentions)
    }

    /// Adds one mention of each name with `settings`.
    pub(crate) fn add(&mut self, names: &[String], settings: &Settings) -> Result<(), SpecError> {
        self.mentions = self.mentions.saturating_add(names.len());
        for name in names {
            // Checked here so every source gets it, whatever its syntax.
            if name.starts_with('-') {
                return Err(SpecError::LeadingDash { name: name.clone() });
            }
            let slots = u64::from(settings.slots.unwrap_or(1));
            let max = settings.max_slots.map(u64::from);
            match self.index.get(name) {
                Some(&i) => {
                    let tally = &mut self.nodes[i];
                    if tally.node.user != settings.user || tally.node.port != settings.port {
                        let second = Node {
                            name: name.clone(),
                            user: settings.user.clone(),
                            port: settings.port,
                            ..Node::default()
                        };
                        return Err(SpecError::Conflict {
                            name: name.clone(),
                            first: tally.node.to_string(),
                            second: second.to_string(),
                        });
                    }
                    tally.mentions += 1;
                    tally.slots += slots;
                    tally.any_slots_given |= settings.slots.is_some();
                    tally.max_slots = tally.max_slots.zip(max).map(|(a, b)| a + b);
                    if tally.slots > u64::from(u32::MAX)
                        || tally.max_slots.is_some_and(|m| m > u64::from(u32::MAX))
                    {
                        return Err(SpecError::SlotsOverflow { name: name.clone() });
                    }
                }
                None => {
                    self.index.insert(name.clone(), self.nodes.len());
                    self.nodes.push(Tally {
                        node: Node {
                            name: name.clone(),
                            user: settings.user.clone(),
                            port: settings.port,
                            ..Node::default()
                        },
                        mentions: 1,
                        slots,
                        any_slots_given: settings.slots.is_some(),
                        max_slots: max,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The merged nodes, in order of first mention.
    pub(crate) fn finish(self) -> Vec<Node> {
        self.nodes
            .into_iter()
            .map(|t| {
                let mut node = t.node;
                // `add` keeps both sums within u32.
                node.slots = if t.mentions == 1 && !t.any_slots_given {
                    None
                } else {
                    u32::try_from(t.slots).ok()
                };
                node.max_slots = t.max_slots.and_then(|m| u32::try_from(m).ok());
                node
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node::new(name)
    }

    #[test]
    fn bare_colon_is_slots_and_uri_colon_is_port() {
        let s = Spec::parse("node1:4").unwrap();
        assert_eq!((s.hosts, s.settings.slots, s.settings.port), ("node1", Some(4), None));
        let s = Spec::parse("alice@node1:4").unwrap();
        assert_eq!(s.settings.user.as_deref(), Some("alice"));
        assert_eq!((s.settings.slots, s.settings.port), (Some(4), None));
        let s = Spec::parse("ssh://alice@node[1-2]:2222").unwrap();
        assert_eq!(s.hosts, "node[1-2]");
        assert_eq!(s.settings.user.as_deref(), Some("alice"));
        assert_eq!((s.settings.slots, s.settings.port), (None, Some(2222)));
        let s = Spec::parse("ssh://node1").unwrap();
        assert_eq!((s.hosts, s.settings.port), ("node1", None));
    }

    #[test]
    fn spec_errors_say_what_to_write() {
        let err = |t: &str| Spec::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("node1:four"),
            "slots must be a whole number >= 1, got 'four' (write 'node1 slots=4' or 'node1:4')"
        );
        assert!(err("node1:0").contains("got '0'"));
        assert!(err("node1:").contains("got ''"));
        assert!(err("node1:+4").contains("got '+4'"));
        assert!(err("ssh://node1:70000").contains("port must be a whole number from 1 to 65535"));
        assert!(err("ssh://node1:0").contains("got '0'"));
        assert!(err("fe80::1").contains("more than one ':'"));
        assert!(err("@node1").contains("user name ''"));
        assert!(err("alice@").contains("no host name"));
        assert!(err(":4").contains("no host name"));
        assert!(err("-oProxyCommand=x@n1").contains("starts with '-'"));
    }

    #[test]
    fn settings_words() {
        let mut s = Spec::parse("node1").unwrap();
        s.apply_settings(["slots=4", "max_slots=8", "user=bob", "port=22"]).unwrap();
        let want = Settings {
            user: Some("bob".into()),
            port: Some(22),
            slots: Some(4),
            max_slots: Some(8),
        };
        assert_eq!(s.settings, want);
        let err = |spec: &str, words: &[&str]| {
            let mut s = Spec::parse(spec).unwrap();
            s.apply_settings(words.iter().copied()).unwrap_err().to_string()
        };
        assert_eq!(err("n1:4", &["slots=4"]), "slots given twice for 'n1' (keep one)");
        assert!(err("n1", &["slots=4", "max_slots=2"]).starts_with("max_slots=2 is below slots=4"));
        assert!(err("n1", &["max_slots=x"]).contains("max_slots must be a whole number"));
        assert!(err("n1", &["ifhn=eth0"]).contains("unknown setting 'ifhn'"));
        assert!(err("n1", &["n2"]).contains("'n2' after 'n1' is not a setting"));
        assert!(err("a@n1", &["user=b"]).contains("user given twice"));
    }

    #[test]
    fn hosts_argument_expands_and_merges() {
        let nodes = parse_hosts("node[1-2]:2,alice@gpu1,node1,ssh://bob@login:2222").unwrap();
        assert_eq!(
            nodes,
            [
                Node { slots: Some(3), ..node("node1") },
                Node { slots: Some(2), ..node("node2") },
                Node { user: Some("alice".into()), ..node("gpu1") },
                Node { user: Some("bob".into()), port: Some(2222), ..node("login") },
            ]
        );
        assert_eq!(parse_hosts("a,a").unwrap(), [Node { slots: Some(2), ..node("a") }]);
        assert_eq!(parse_hosts("a").unwrap(), [node("a")]);
    }

    #[test]
    fn hosts_argument_errors() {
        let err = |a: &str| parse_hosts(a).unwrap_err().to_string();
        assert!(err("").starts_with("empty host list"));
        assert!(err("n[1-3").starts_with("unclosed '['"));
        assert!(err("n1,alice@n1").contains("'n1' appears again as 'alice@n1' after 'n1'"));
        assert!(err("n1:4294967295,n1:1").contains("add up to more than"));
        assert_eq!(
            err("-n[1-2]"),
            "'-n1' starts with '-' (ssh would read it as an option; host and user names cannot)"
        );
        assert!(matches!(
            parse_hosts("n[1-600000],m[1-600000]"),
            Err(SpecError::Hostlist(HostlistError::TooMany { .. }))
        ));
    }

    #[test]
    fn max_slots_sum_only_when_every_mention_has_one() {
        let mut list = NodeList::default();
        let names = vec!["n1".to_string()];
        let with_max = Settings { slots: Some(2), max_slots: Some(4), ..Settings::default() };
        list.add(&names, &with_max).unwrap();
        list.add(&names, &with_max).unwrap();
        assert_eq!(list.finish(), [Node { slots: Some(4), max_slots: Some(8), ..node("n1") }]);
        let mut list = NodeList::default();
        list.add(&names, &with_max).unwrap();
        list.add(&names, &Settings::default()).unwrap();
        assert_eq!(list.finish(), [Node { slots: Some(3), ..node("n1") }]);
    }
}
