//! The user-facing placement options and their spellings (Slurm's and a few aliases):
//! `--cpu-bind`, `--distribution`, `--mem-bind`, `--hint`. Parse errors name the flag, the bad
//! keyword and the valid ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cpuset::{CpuSet, MAX_PARSED_CPU};

/// A rejected option value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {problem} '{value}'; valid: {valid}")]
pub struct OptionError {
    /// The flag, e.g. `--cpu-bind`.
    pub flag: &'static str,
    /// The bad part of the value.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// The accepted spellings.
    pub valid: &'static str,
}

/// What each rank is bound to (`--cpu-bind`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuBind {
    /// No binding: each rank may run on every available CPU of its node.
    None,
    /// The rank's own hardware threads.
    Threads,
    /// Whole cores holding the rank's CPUs (the default).
    #[default]
    Cores,
    /// Every available CPU under the L3 caches holding the rank's CPUs.
    L3,
    /// Every available CPU of the NUMA nodes holding the rank's CPUs.
    Numa,
    /// Every available CPU of the packages holding the rank's CPUs.
    Sockets,
    /// Explicit CPU per local rank (OS indexes), reused from the start when shorter.
    MapCpu(Vec<u32>),
    /// Explicit CPU mask per local rank, reused from the start when shorter.
    MaskCpu(Vec<CpuSet>),
}

const CPU_BIND_VALID: &str = "none|no, threads|thread|pu|hwthread, cores|core, l3|l3cache, \
     numa|ldoms|ldom, sockets|socket|package, map_cpu:<cpu,...>, mask_cpu:<hexmask,...>";

impl FromStr for CpuBind {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, OptionError> {
        let err = |value: &str, problem: &str| OptionError {
            flag: "--cpu-bind",
            value: value.to_owned(),
            problem: problem.to_owned(),
            valid: CPU_BIND_VALID,
        };
        let t = s.trim();
        if let Some(list) = t.strip_prefix("map_cpu:").or_else(|| t.strip_prefix("map_cpu=")) {
            return parse_map_cpu(list)
                .map(CpuBind::MapCpu)
                .map_err(|v| err(&v, "bad CPU in map_cpu"));
        }
        if let Some(list) = t.strip_prefix("mask_cpu:").or_else(|| t.strip_prefix("mask_cpu=")) {
            let mut masks = Vec::new();
            for tok in list.split(',') {
                let (mask, count) =
                    split_repeat(tok).map_err(|v| err(&v, "bad repeat count in mask_cpu"))?;
                // Slurm reads mask_cpu values as hex with or without the 0x prefix.
                let set =
                    CpuSet::parse_mask(mask).map_err(|_| err(tok, "bad hex mask in mask_cpu"))?;
                if set.is_empty() {
                    return Err(err(tok, "empty mask in mask_cpu"));
                }
                masks.extend(std::iter::repeat_n(set, count));
            }
            return Ok(CpuBind::MaskCpu(masks));
        }
        match t.to_ascii_lowercase().as_str() {
            "none" | "no" => Ok(CpuBind::None),
            "threads" | "thread" | "pu" | "pus" | "hwthread" | "hwthreads" => Ok(CpuBind::Threads),
            "cores" | "core" => Ok(CpuBind::Cores),
            "l3" | "l3cache" => Ok(CpuBind::L3),
            "numa" | "ldoms" | "ldom" => Ok(CpuBind::Numa),
            "sockets" | "socket" | "package" | "packages" => Ok(CpuBind::Sockets),
            "map_cpu" | "mask_cpu" => Err(err(t, "missing list after")),
            _ => Err(err(t, "unknown binding")),
        }
    }
}

/// Splits Slurm's `value*count` repetition.
fn split_repeat(tok: &str) -> Result<(&str, usize), String> {
    match tok.split_once('*') {
        Some((v, n)) => match n.trim().parse::<usize>() {
            Ok(n) if (1..=4096).contains(&n) => Ok((v, n)),
            _ => Err(tok.to_owned()),
        },
        None => Ok((tok, 1)),
    }
}

fn parse_map_cpu(list: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for tok in list.split(',') {
        let (v, count) = split_repeat(tok)?;
        let v = v.trim();
        let cpu = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => v.parse(),
        }
        .map_err(|_| tok.to_owned())?;
        if cpu > MAX_PARSED_CPU {
            return Err(tok.to_owned());
        }
        out.extend(std::iter::repeat_n(cpu, count));
    }
    Ok(out)
}

impl fmt::Display for CpuBind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuBind::None => f.write_str("none"),
            CpuBind::Threads => f.write_str("threads"),
            CpuBind::Cores => f.write_str("cores"),
            CpuBind::L3 => f.write_str("l3"),
            CpuBind::Numa => f.write_str("numa"),
            CpuBind::Sockets => f.write_str("sockets"),
            CpuBind::MapCpu(v) => {
                let l: Vec<String> = v.iter().map(u32::to_string).collect();
                write!(f, "map_cpu:{}", l.join(","))
            }
            CpuBind::MaskCpu(v) => {
                let l: Vec<String> = v.iter().map(CpuSet::to_hex_mask).collect();
                write!(f, "mask_cpu:{}", l.join(","))
            }
        }
    }
}

/// How ranks are spread over nodes (first part of `--distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeDistribution {
    /// Consecutive ranks fill a node before the next.
    #[default]
    Block,
    /// Rank r on node r mod N.
    Cyclic,
    /// Blocks of this many consecutive ranks dealt round-robin over the nodes.
    Plane(u32),
}

/// How a node's ranks are spread over its sockets (second part of `--distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketDistribution {
    /// Consecutive ranks fill a socket before the next.
    Block,
    /// Rank by rank round-robin over sockets; each rank's CPUs from one socket (the default,
    /// as in Slurm: it spreads memory bandwidth).
    #[default]
    Cyclic,
    /// CPU by CPU round-robin over sockets: one rank's CPUs spread over all sockets.
    Fcyclic,
}

/// `--distribution=<node>[:<socket>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Distribution {
    /// Across nodes.
    pub node: NodeDistribution,
    /// Within a node.
    pub socket: SocketDistribution,
}

const DIST_VALID: &str = "<node>[:<socket>] with node = block|cyclic|plane=<N>|*, \
     socket = block|cyclic|fcyclic|*";

impl FromStr for Distribution {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, OptionError> {
        let err = |value: &str, problem: &str| OptionError {
            flag: "--distribution",
            value: value.to_owned(),
            problem: problem.to_owned(),
            valid: DIST_VALID,
        };
        let t = s.trim().to_ascii_lowercase();
        let mut parts = t.split(':');
        let first = parts.next().unwrap_or("");
        let node = match first {
            "block" | "*" => NodeDistribution::Block,
            "cyclic" => NodeDistribution::Cyclic,
            p if p.starts_with("plane=") || p.starts_with("plane:") => {
                let n: u32 = p[6..].parse().map_err(|_| err(p, "bad plane size in"))?;
                if n == 0 {
                    return Err(err(p, "plane size must be at least 1 in"));
                }
                NodeDistribution::Plane(n)
            }
            "plane" => return Err(err(first, "plane needs a size, e.g. plane=4, not")),
            "" => return Err(err(&t, "empty distribution")),
            other => return Err(err(other, "unknown node distribution")),
        };
        let socket = match parts.next() {
            None | Some("*") => SocketDistribution::default(),
            Some("block") => SocketDistribution::Block,
            Some("cyclic") => SocketDistribution::Cyclic,
            Some("fcyclic") => SocketDistribution::Fcyclic,
            Some(other) => return Err(err(other, "unknown socket distribution")),
        };
        if let Some(extra) = parts.next() {
            return Err(err(extra, "a third (core) level is not supported"));
        }
        Ok(Distribution { node, socket })
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node {
            NodeDistribution::Block => f.write_str("block")?,
            NodeDistribution::Cyclic => f.write_str("cyclic")?,
            NodeDistribution::Plane(n) => write!(f, "plane={n}")?,
        }
        f.write_str(match self.socket {
            SocketDistribution::Block => ":block",
            SocketDistribution::Cyclic => ":cyclic",
            SocketDistribution::Fcyclic => ":fcyclic",
        })
    }
}

/// Memory binding (`--mem-bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemBind {
    /// No memory policy (the kernel's first touch).
    #[default]
    None,
    /// Bind to the NUMA nodes local to the rank's CPUs.
    Local,
}

impl FromStr for MemBind {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, OptionError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "no" => Ok(MemBind::None),
            "local" => Ok(MemBind::Local),
            other => Err(OptionError {
                flag: "--mem-bind",
                value: other.to_owned(),
                problem: "unknown memory binding".to_owned(),
                valid: "none|no, local",
            }),
        }
    }
}

impl fmt::Display for MemBind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemBind::None => "none",
            MemBind::Local => "local",
        })
    }
}

/// `--hint`: whether a rank's CPUs count hardware threads or cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hint {
    /// CPUs are cores, except with `--cpu-bind=threads` where they are hardware threads.
    #[default]
    Default,
    /// CPUs are hardware threads (siblings count separately).
    Multithread,
    /// CPUs are cores and each rank uses one hardware thread per core.
    Nomultithread,
}

impl FromStr for Hint {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, OptionError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nomultithread" => Ok(Hint::Nomultithread),
            "multithread" => Ok(Hint::Multithread),
            other => Err(OptionError {
                flag: "--hint",
                value: other.to_owned(),
                problem: "unknown hint".to_owned(),
                valid: "nomultithread, multithread",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_bind_spellings() {
        for (s, want) in [
            ("core", CpuBind::Cores),
            ("cores", CpuBind::Cores),
            ("threads", CpuBind::Threads),
            ("pu", CpuBind::Threads),
            ("ldoms", CpuBind::Numa),
            ("numa", CpuBind::Numa),
            ("l3", CpuBind::L3),
            ("socket", CpuBind::Sockets),
            ("sockets", CpuBind::Sockets),
            ("none", CpuBind::None),
            ("no", CpuBind::None),
            ("map_cpu:0,2", CpuBind::MapCpu(vec![0, 2])),
            ("map_cpu:0x3,1*2", CpuBind::MapCpu(vec![3, 1, 1])),
        ] {
            assert_eq!(s.parse::<CpuBind>().unwrap(), want, "{s}");
        }
        let m: CpuBind = "mask_cpu:0x3,c".parse().unwrap();
        assert_eq!(m.to_string(), "mask_cpu:0x3,0xc");
    }

    #[test]
    fn cpu_bind_errors_name_keyword_and_valid_ones() {
        let e = "corez".parse::<CpuBind>().unwrap_err().to_string();
        assert!(e.contains("--cpu-bind") && e.contains("'corez'") && e.contains("map_cpu"), "{e}");
        let e = "map_cpu:0,x".parse::<CpuBind>().unwrap_err();
        assert_eq!(e.value, "x");
        let e = "mask_cpu:0xzz".parse::<CpuBind>().unwrap_err();
        assert_eq!(e.value, "0xzz");
        assert!("mask_cpu:0".parse::<CpuBind>().is_err());
        assert!("map_cpu".parse::<CpuBind>().is_err());
    }

    #[test]
    fn distribution_spellings() {
        let d: Distribution = "block:cyclic".parse().unwrap();
        assert_eq!(
            d,
            Distribution { node: NodeDistribution::Block, socket: SocketDistribution::Cyclic }
        );
        let d: Distribution = "plane=4".parse().unwrap();
        assert_eq!(d.node, NodeDistribution::Plane(4));
        assert_eq!(d.to_string(), "plane=4:cyclic");
        let d: Distribution = "cyclic:fcyclic".parse().unwrap();
        assert_eq!(d.socket, SocketDistribution::Fcyclic);
        let e = "blok".parse::<Distribution>().unwrap_err().to_string();
        assert!(e.contains("--distribution") && e.contains("'blok'") && e.contains("plane"), "{e}");
        assert!("plane=0".parse::<Distribution>().is_err());
        assert!("plane".parse::<Distribution>().is_err());
        assert!("block:block:block".parse::<Distribution>().is_err());
        assert!("block:weird".parse::<Distribution>().unwrap_err().to_string().contains("'weird'"));
    }

    #[test]
    fn mem_bind_and_hint() {
        assert_eq!("local".parse::<MemBind>().unwrap(), MemBind::Local);
        assert_eq!("none".parse::<MemBind>().unwrap(), MemBind::None);
        let e = "remote".parse::<MemBind>().unwrap_err().to_string();
        assert!(e.contains("--mem-bind") && e.contains("'remote'") && e.contains("local"), "{e}");
        assert_eq!("nomultithread".parse::<Hint>().unwrap(), Hint::Nomultithread);
        let e = "fast".parse::<Hint>().unwrap_err().to_string();
        assert!(e.contains("--hint") && e.contains("nomultithread"), "{e}");
    }
}
