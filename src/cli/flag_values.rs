//! The values of flags, typed where they enter: signals, memory sizes, node counts and ranges,
//! time limits and node lists. Each parses from the text a user types and says what is wrong in
//! words that name the form expected; the commands add the flag's name.
//!
//! The protocol still carries some of these as plain numbers or text; the commands convert at
//! the edge (`to_protocol`), so a value is never parsed twice.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use gangway_launcher::nodes::hostlist::{self, HostlistError};
use gangway_launcher::time_limit::{TimeSpecError, parse_time_limit};

/// A signal that exists on this system (`TERM`, `SIGTERM` or `15`): the protocol's own type.
pub use crate::protocol::signal::{Signal, SignalError};

/// A memory size in bytes, written as Slurm writes them: a number with an optional K, M, G or T
/// suffix (and an optional B); a plain number is MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemorySize(u64);

impl MemorySize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a memory size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemorySizeError {
    #[error("expected a size such as 512M, 4G or 1T")]
    NotANumber,
    #[error("unknown unit '{0}' (use K, M, G or T)")]
    UnknownUnit(String),
    #[error("too large")]
    TooLarge,
}

impl FromStr for MemorySize {
    type Err = MemorySizeError;

    fn from_str(s: &str) -> Result<MemorySize, MemorySizeError> {
        let t = s.trim();
        let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => (&t[..i], t[i..].trim_end_matches(['B', 'b'])),
            None => (t, "M"),
        };
        let n: u64 = num.parse().map_err(|_| MemorySizeError::NotANumber)?;
        let shift = match unit.to_ascii_uppercase().as_str() {
            "K" => 10,
            "M" | "" => 20,
            "G" => 30,
            "T" => 40,
            other => return Err(MemorySizeError::UnknownUnit(other.to_string())),
        };
        n.checked_mul(1 << shift).map(MemorySize).ok_or(MemorySizeError::TooLarge)
    }
}

/// How many nodes: exactly `min`, or between `min` and `max` (`-N 3`, `-N 2-4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRange {
    pub min: u32,
    pub max: Option<u32>,
}

impl NodeRange {
    /// Exactly `n` nodes.
    pub fn exactly(n: u32) -> NodeRange {
        NodeRange { min: n, max: None }
    }
}

/// `--nodes` was neither N nor MIN-MAX.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected N or MIN-MAX, e.g. 2 or 2-4")]
pub struct NodeRangeError;

impl FromStr for NodeRange {
    type Err = NodeRangeError;

    fn from_str(s: &str) -> Result<NodeRange, NodeRangeError> {
        let num = |x: &str| x.trim().parse::<u32>().map_err(|_| NodeRangeError);
        match s.split_once('-') {
            Some((a, b)) => Ok(NodeRange { min: num(a)?, max: Some(num(b)?) }),
            None => Ok(NodeRange::exactly(num(s)?)),
        }
    }
}

/// A job's time limit as given: none at all (`0`, `UNLIMITED`), or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimit {
    Unlimited,
    Limit(Duration),
}

impl TimeLimit {
    /// The duration, if there is a limit.
    pub fn duration(self) -> Option<Duration> {
        match self {
            TimeLimit::Unlimited => None,
            TimeLimit::Limit(d) => Some(d),
        }
    }

    /// As the protocol holds it: whole seconds, 0 for no limit.
    pub fn protocol_secs(self) -> u64 {
        self.duration().map_or(0, |d| d.as_secs())
    }
}

impl FromStr for TimeLimit {
    type Err = TimeSpecError;

    /// Slurm's forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (0 or UNLIMITED: none).
    fn from_str(s: &str) -> Result<TimeLimit, TimeSpecError> {
        Ok(parse_time_limit(s)?.map_or(TimeLimit::Unlimited, TimeLimit::Limit))
    }
}

/// Node names from a hostlist expression (`node[1-3],gpu1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeList(Vec<String>);

impl NodeList {
    /// The names, in order.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The names, in order.
    pub fn into_names(self) -> Vec<String> {
        self.0
    }
}

impl FromStr for NodeList {
    type Err = HostlistError;

    fn from_str(s: &str) -> Result<NodeList, HostlistError> {
        hostlist::expand(s).map(NodeList)
    }
}

impl fmt::Display for NodeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        let bytes = |s: &str| s.parse::<MemorySize>().map(MemorySize::bytes);
        assert_eq!(bytes("512"), Ok(512 << 20));
        assert_eq!(bytes("4G"), Ok(4 << 30));
        assert_eq!(bytes("2gb"), Ok(2 << 30));
        assert_eq!(bytes("4X"), Err(MemorySizeError::UnknownUnit("X".into())));
        assert_eq!(bytes("lots"), Err(MemorySizeError::NotANumber));
        assert_eq!(bytes("99999999999T"), Err(MemorySizeError::TooLarge));
    }

    #[test]
    fn node_ranges() {
        assert_eq!("3".parse(), Ok(NodeRange::exactly(3)));
        assert_eq!("2-4".parse(), Ok(NodeRange { min: 2, max: Some(4) }));
        assert!("two".parse::<NodeRange>().is_err());
    }

    #[test]
    fn time_limits_keep_none_apart_from_not_given() {
        assert_eq!("0".parse::<TimeLimit>().unwrap(), TimeLimit::Unlimited);
        assert_eq!("UNLIMITED".parse::<TimeLimit>().unwrap().protocol_secs(), 0);
        let ten = "10".parse::<TimeLimit>().unwrap();
        assert_eq!(ten.duration(), Some(Duration::from_secs(600)));
        assert_eq!(ten.protocol_secs(), 600);
        assert!("1:99".parse::<TimeLimit>().unwrap_err().to_string().contains("0-59"));
    }

    #[test]
    fn signals_by_name_or_number() {
        for s in ["TERM", "term", "SIGTERM", "15"] {
            let sig: Signal = s.parse().unwrap();
            assert_eq!((sig.name(), sig.number()), ("SIGTERM", libc::SIGTERM));
        }
        assert_eq!("BOGUS".parse::<Signal>(), Err(SignalError::NoSuchName));
        assert_eq!("0".parse::<Signal>(), Err(SignalError::NoSuchNumber));
    }

    #[test]
    fn node_lists() {
        let list: NodeList = "node[1-3]".parse().unwrap();
        assert_eq!(list.names(), ["node1", "node2", "node3"]);
        assert_eq!(list.to_string(), "node1,node2,node3");
        assert!("node[3-".parse::<NodeList>().is_err());
    }
}
