//! How much a job may store in the PMI service, so that no rank can grow the launcher's or a
//! proxy's memory without bound (200,000 puts once took 445 MB).
//!
//! The rule, per rank, counted where the rank's node serves it:
//! - a key is at most [`MAX_KEY`] bytes and a value at most [`MAX_VALUE`] bytes (the
//!   `keylen_max`/`vallen_max` the `get_maxes` reply announces, and MPICH's PMI-2 limits, so
//!   MPICH never comes near them);
//! - a rank stores at most [`MAX_KEYS_PER_RANK`] distinct keys and [`MAX_BYTES_PER_RANK`]
//!   bytes of keys plus values, KVS puts and node attributes together (a put to a key it
//!   already stored replaces that key's size instead of adding to it).
//!
//! So a node's ranks store at most `local ranks × 1 MiB`, and every node's copy of the job's KVS
//! is at most `ranks × 1 MiB`: the bound grows with the job, as the business cards do (MPICH
//! stores a few keys of at most a few KiB per rank). Published names are bounded job-wide by
//! [`MAX_NAMES`]. A refused put gets a PMI error reply (the rank's MPI sees it fail) and the
//! first refusal of each rank is reported to the user with the limit it hit.
//!
//! Pure: the node state machine asks, this answers.

use std::collections::HashMap;
use std::fmt;

use super::wire::{KEYLEN_MAX, KVSNAME_MAX, VALLEN_MAX};

/// Longest key, in bytes.
pub const MAX_KEY: usize = KEYLEN_MAX as usize;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = VALLEN_MAX as usize;
/// Distinct keys one rank may store (KVS and node attributes together).
pub const MAX_KEYS_PER_RANK: usize = 4096;
/// Bytes of keys plus values one rank may store.
pub const MAX_BYTES_PER_RANK: usize = 1 << 20;
/// Longest published service name, in bytes.
pub const MAX_SERVICE: usize = KVSNAME_MAX as usize;
/// Names published at once in a whole job.
pub const MAX_NAMES: usize = 4096;

/// Where a key lives: the job-wide KVS or this node's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Kvs,
    NodeAttr,
}

/// Why a put was refused. Its `Display` names the limit, for the rank's error and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    KeyTooLong { len: usize },
    ValueTooLong { len: usize },
    TooManyKeys,
    TooManyBytes { would_be: usize },
    ServiceTooLong { len: usize },
    TooManyNames,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::KeyTooLong { len } => {
                write!(f, "a key of {len} bytes is over the PMI limit of {MAX_KEY} bytes")
            }
            Refusal::ValueTooLong { len } => {
                write!(f, "a value of {len} bytes is over the PMI limit of {MAX_VALUE} bytes")
            }
            Refusal::TooManyKeys => write!(
                f,
                "the rank already stored {MAX_KEYS_PER_RANK} keys, gangway's limit per rank"
            ),
            Refusal::TooManyBytes { would_be } => write!(
                f,
                "the rank's keys and values would take {would_be} bytes, over gangway's limit of {MAX_BYTES_PER_RANK} bytes per rank"
            ),
            Refusal::ServiceTooLong { len } => write!(
                f,
                "a service name of {len} bytes is over the PMI limit of {MAX_SERVICE} bytes"
            ),
            Refusal::TooManyNames => {
                write!(f, "the job already published {MAX_NAMES} names, gangway's limit per job")
            }
        }
    }
}

/// What one rank has stored: the size of each of its keys, and their sum.
#[derive(Debug, Default)]
struct Usage {
    kvs: HashMap<String, usize>,
    attrs: HashMap<String, usize>,
    bytes: usize,
    told: bool,
}

/// Every local rank's usage.
#[derive(Debug, Default)]
pub struct Budgets {
    ranks: HashMap<u32, Usage>,
}

impl Budgets {
    /// Checks a put of `key` = `value` by `rank`, and counts it if it is allowed.
    pub fn admit(
        &mut self,
        rank: u32,
        space: Space,
        key: &str,
        value: &str,
    ) -> Result<(), Refusal> {
        if key.len() > MAX_KEY {
            return Err(Refusal::KeyTooLong { len: key.len() });
        }
        if value.len() > MAX_VALUE {
            return Err(Refusal::ValueTooLong { len: value.len() });
        }
        let usage = self.ranks.entry(rank).or_default();
        let size = key.len() + value.len();
        let keys = usage.kvs.len() + usage.attrs.len();
        let map = match space {
            Space::Kvs => &mut usage.kvs,
            Space::NodeAttr => &mut usage.attrs,
        };
        let old = map.get(key).copied();
        if old.is_none() && keys >= MAX_KEYS_PER_RANK {
            return Err(Refusal::TooManyKeys);
        }
        let would_be = usage.bytes - old.unwrap_or(0) + size;
        if would_be > MAX_BYTES_PER_RANK {
            return Err(Refusal::TooManyBytes { would_be });
        }
        map.insert(key.to_owned(), size);
        usage.bytes = would_be;
        Ok(())
    }

    /// True the first time it is asked for `rank`: its first refusal is the one to report (a
    /// rank that puts in a loop must not flood the job's output).
    pub fn first_refusal(&mut self, rank: u32) -> bool {
        let usage = self.ranks.entry(rank).or_default();
        !std::mem::replace(&mut usage.told, true)
    }
}

/// Checks a name to publish (PMI-1/2's service or a PMIx key) whose value takes `value_len`
/// bytes, given how many the job has published.
pub fn admit_name(service: &str, value_len: usize, published: usize) -> Result<(), Refusal> {
    if service.len() > MAX_SERVICE {
        return Err(Refusal::ServiceTooLong { len: service.len() });
    }
    if value_len > MAX_VALUE {
        return Err(Refusal::ValueTooLong { len: value_len });
    }
    if published >= MAX_NAMES {
        return Err(Refusal::TooManyNames);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_the_announced_maxes() {
        let mut b = Budgets::default();
        let key = "k".repeat(MAX_KEY);
        let value = "v".repeat(MAX_VALUE);
        assert_eq!(b.admit(0, Space::Kvs, &key, &value), Ok(()));
        let long_key = format!("{key}k");
        assert_eq!(
            b.admit(0, Space::Kvs, &long_key, "v"),
            Err(Refusal::KeyTooLong { len: MAX_KEY + 1 })
        );
        let long_value = format!("{value}v");
        assert_eq!(
            b.admit(0, Space::NodeAttr, "k", &long_value),
            Err(Refusal::ValueTooLong { len: MAX_VALUE + 1 })
        );
        let refusal = Refusal::ValueTooLong { len: 2000 }.to_string();
        assert!(refusal.contains("1024"), "{refusal}");
    }

    #[test]
    fn bytes_per_rank_are_bounded_and_overwrites_do_not_add_up() {
        let mut b = Budgets::default();
        let value = "v".repeat(MAX_VALUE);
        // The same key put over and over costs one key.
        for _ in 0..10_000 {
            assert_eq!(b.admit(3, Space::Kvs, "same", &value), Ok(()));
        }
        let mut stored = 1;
        let err = loop {
            match b.admit(3, Space::Kvs, &format!("key{stored}"), &value) {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Refusal::TooManyBytes { .. }), "{err}");
        assert!(stored <= MAX_BYTES_PER_RANK / MAX_VALUE, "{stored}");
        // Another rank has a budget of its own.
        assert_eq!(b.admit(4, Space::Kvs, "key1", &value), Ok(()));
        // Shrinking a stored key is always allowed.
        assert_eq!(b.admit(3, Space::Kvs, "same", ""), Ok(()));
    }

    #[test]
    fn keys_per_rank_are_bounded_across_kvs_and_node_attributes() {
        let mut b = Budgets::default();
        for i in 0..MAX_KEYS_PER_RANK / 2 {
            assert_eq!(b.admit(0, Space::Kvs, &i.to_string(), ""), Ok(()));
            assert_eq!(b.admit(0, Space::NodeAttr, &i.to_string(), ""), Ok(()));
        }
        assert_eq!(b.admit(0, Space::Kvs, "one more", ""), Err(Refusal::TooManyKeys));
        assert_eq!(b.admit(0, Space::Kvs, "0", "replaced"), Ok(()), "an existing key");
    }

    #[test]
    fn each_rank_is_reported_once() {
        let mut b = Budgets::default();
        assert!(b.first_refusal(1));
        assert!(!b.first_refusal(1));
        assert!(b.first_refusal(2));
    }

    #[test]
    fn names() {
        assert_eq!(admit_name("svc", 4, 0), Ok(()));
        assert_eq!(admit_name("svc", 4, MAX_NAMES), Err(Refusal::TooManyNames));
        assert!(admit_name(&"s".repeat(MAX_SERVICE + 1), 1, 0).is_err());
        assert!(admit_name("s", MAX_VALUE + 1, 0).is_err());
    }

    /// Through the node state machine: a flood of puts is refused with a PMI error each time,
    /// the user is told once, and a fence afterwards carries only what was admitted.
    #[test]
    fn a_node_refuses_a_flood_and_tells_the_user_once() {
        use crate::pmi::node::{JobInfo, NodeInput, NodeOutput, NodePmi};
        use crate::pmi::wire::{Reply, Request};
        let job = JobInfo {
            kvsname: "kvs".into(),
            jobid: "j".into(),
            size: 1,
            universe_size: 1,
            appnum: 0,
            process_mapping: None,
        };
        let mut node = NodePmi::new(job, 0, vec![0]);
        let value = "v".repeat(MAX_VALUE);
        let (mut done, mut failed, mut told) = (0, 0, Vec::new());
        for id in 0..20_000u64 {
            let request =
                Request::Put { kvsname: None, key: format!("key{id}"), value: value.clone() };
            for out in node.handle(NodeInput::Request { id, rank: 0, request }) {
                match out {
                    NodeOutput::Reply { reply: Reply::PutDone, .. } => done += 1,
                    NodeOutput::Reply { reply: Reply::PutFailed { .. }, .. } => failed += 1,
                    NodeOutput::Warning { message, .. } => told.push(message),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(done <= MAX_BYTES_PER_RANK / MAX_VALUE, "{done} admitted");
        assert_eq!(done + failed, 20_000);
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("rank 0") && told[0].contains("1048576"), "{}", told[0]);
        let fence =
            node.handle(NodeInput::Request { id: 99_999, rank: 0, request: Request::Fence });
        match fence.as_slice() {
            [NodeOutput::FenceUp { pairs, .. }] => assert_eq!(pairs.len(), done),
            other => panic!("{other:?}"),
        }
    }
}
