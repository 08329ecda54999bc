//! The PMIx name service of one job (`MPI_Publish_name`, `MPI_Lookup_name`,
//! `MPI_Unpublish_name`): one table for the whole job, lookups that wait (`PMIX_WAIT`) until
//! every key they want is published, unpublish by the publisher only, and the bounds of the
//! PMI-1/2 names (`limits`: key and value lengths, names per job).
//!
//! Pure: the job's root (`pmix_root`) holds the table when the job spans nodes, the node's
//! `PmixNode` when it has one node; both deliver the [`Answer`]s it returns. Values travel to
//! the root, so they are kept as [`NameValue`], a serializable copy of the PMIx types a
//! published datum can have.

use std::collections::{BTreeMap, HashSet};

use gangway_pmix::{Proc, Status, Value};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_NAMES, admit_name};

/// A published value: the PMIx scalar, string and byte types (Open MPI publishes its port names
/// as strings). Other types are refused where the rank asks, before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameValue {
    Bool(bool),
    String(String),
    Bytes(serde_bytes::ByteBuf),
    U16(u16),
    U32(u32),
    U64(u64),
    Int(i32),
    I32(i32),
    I64(i64),
    Size(u64),
    Rank(u32),
    Status(i32),
    Proc { nspace: String, rank: u32 },
}

impl NameValue {
    /// The value as it can travel; `None` for a type gangway does not publish.
    pub fn from_pmix(value: Value) -> Option<NameValue> {
        Some(match value {
            Value::Bool(b) => NameValue::Bool(b),
            Value::String(s) => NameValue::String(s),
            Value::Bytes(b) => NameValue::Bytes(serde_bytes::ByteBuf::from(b)),
            Value::U16(v) => NameValue::U16(v),
            Value::U32(v) => NameValue::U32(v),
            Value::U64(v) => NameValue::U64(v),
            Value::Int(v) => NameValue::Int(v),
            Value::I32(v) => NameValue::I32(v),
            Value::I64(v) => NameValue::I64(v),
            Value::Size(v) => NameValue::Size(u64::try_from(v).ok()?),
            Value::Rank(v) => NameValue::Rank(v),
            Value::Status(v) => NameValue::Status(v),
            Value::Proc(p) => NameValue::Proc { nspace: p.nspace, rank: p.rank },
            Value::Regex(_) | Value::Infos(_) | Value::Unsupported { .. } => return None,
        })
    }

    /// The value for libpmix.
    pub fn into_pmix(self) -> Value {
        match self {
            NameValue::Bool(b) => Value::Bool(b),
            NameValue::String(s) => Value::String(s),
            NameValue::Bytes(b) => Value::Bytes(b.into_vec()),
            NameValue::U16(v) => Value::U16(v),
            NameValue::U32(v) => Value::U32(v),
            NameValue::U64(v) => Value::U64(v),
            NameValue::Int(v) => Value::Int(v),
            NameValue::I32(v) => Value::I32(v),
            NameValue::I64(v) => Value::I64(v),
            NameValue::Size(v) => Value::Size(usize::try_from(v).unwrap_or(usize::MAX)),
            NameValue::Rank(v) => Value::Rank(v),
            NameValue::Status(v) => Value::Status(v),
            NameValue::Proc { nspace, rank } => Value::Proc(Proc::new(nspace, rank)),
        }
    }

    /// The bytes the value takes, measured against the PMI value limit.
    fn len(&self) -> usize {
        match self {
            NameValue::String(s) => s.len(),
            NameValue::Bytes(b) => b.len(),
            NameValue::Proc { nspace, .. } => nspace.len() + 4,
            _ => 8,
        }
    }
}

/// One published datum: who published it (a rank of the job), its key and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub publisher: u32,
    pub key: String,
    pub value: NameValue,
}

/// A rank's request, as its node sends it to the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameRequest {
    /// `rank` publishes `data` (`MPI_Publish_name`).
    Publish { rank: u32, data: Vec<(String, NameValue)> },
    /// `rank` looks `keys` up, waiting for them when `wait` (`PMIX_WAIT`).
    Lookup { rank: u32, keys: Vec<String>, wait: bool },
    /// `rank` unpublishes `keys` (all of its names when empty).
    Unpublish { rank: u32, keys: Vec<String> },
}

impl NameRequest {
    /// The request without its values, for the `-vv` log.
    pub fn summary(&self) -> String {
        match self {
            NameRequest::Publish { rank, data } => {
                let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
                format!("rank {rank} publishes {keys:?}")
            }
            NameRequest::Lookup { rank, keys, wait } => {
                format!("rank {rank} looks up {keys:?} (wait: {wait})")
            }
            NameRequest::Unpublish { rank, keys } => format!("rank {rank} unpublishes {keys:?}"),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameAnswer {
    /// Published, or unpublished.
    Done,
    /// What a lookup found (in the order of its keys).
    Found(Vec<NameRecord>),
    /// The request failed with a PMIx status; `why`, when set, is for the user (a limit hit,
    /// said once per rank).
    Refused { status: i32, why: Option<String> },
}

/// Who asked: a node of the job and that node's tag for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asker {
    pub node: u32,
    pub id: u64,
}

/// An answer and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub to: Asker,
    pub answer: NameAnswer,
}

/// `PMIX_ERR_BAD_PARAM`: a key already published (as the PMIx reference server answers).
const BAD_PARAM: i32 = Status::BAD_PARAM.0;
/// `PMIX_ERR_NOT_FOUND`.
const NOT_FOUND: i32 = Status::NOT_FOUND.0;
/// `PMIX_ERR_OUT_OF_RESOURCE`: a limit of `limits` was hit.
const OUT_OF_RESOURCE: i32 = Status::OUT_OF_RESOURCE.0;
/// `PMIX_ERR_NO_PERMISSIONS`: unpublishing another rank's name.
const NO_PERMISSIONS: i32 = Status::NO_PERMISSIONS.0;

/// The job's published names and the lookups waiting for names.
#[derive(Debug, Default)]
pub struct PmixNames {
    names: BTreeMap<String, NameRecord>,
    /// Lookups with `PMIX_WAIT` that wanted a key not yet published, in arrival order.
    waiting: Vec<(Asker, Vec<String>)>,
    /// Ranks already told about a limit they hit: a rank that publishes in a loop must not
    /// flood the job's output.
    told: HashSet<u32>,
}

impl PmixNames {
    pub fn new() -> PmixNames {
        PmixNames::default()
    }

    /// Applies one request; returns the answers to deliver (none yet for a waiting lookup,
    /// several when a publish completes waiting lookups).
    pub fn handle(&mut self, from: Asker, request: NameRequest) -> Vec<Answer> {
        match request {
            NameRequest::Publish { rank, data } => self.publish(from, rank, data),
            NameRequest::Lookup { rank, keys, wait } => self.lookup(from, rank, keys, wait),
            NameRequest::Unpublish { rank, keys } => vec![self.unpublish(from, rank, keys)],
        }
    }

    /// `rank` publishes `data`: all of it, or none of it when a key is taken or a limit is hit.
    /// Returns the answer to the publisher and to every waiting lookup this completes.
    fn publish(&mut self, from: Asker, rank: u32, data: Vec<(String, NameValue)>) -> Vec<Answer> {
        let refused =
            |status, why| vec![Answer { to: from, answer: NameAnswer::Refused { status, why } }];
        let mut keys = HashSet::new();
        if data.is_empty()
            || data.iter().any(|(k, _)| self.names.contains_key(k) || !keys.insert(k))
        {
            return refused(BAD_PARAM, None);
        }
        for (i, (key, value)) in data.iter().enumerate() {
            if let Err(limit) = admit_name(key, value.len(), self.names.len() + i) {
                let why = self.told.insert(rank).then(|| {
                    format!("rank {rank} could not publish {key:?} (MPI_Publish_name): {limit}")
                });
                return refused(OUT_OF_RESOURCE, why);
            }
        }
        for (key, value) in data {
            self.names.insert(key.clone(), NameRecord { publisher: rank, key, value });
        }
        let mut answers = vec![Answer { to: from, answer: NameAnswer::Done }];
        let names = &self.names;
        self.waiting.retain(|(asker, keys)| {
            let Some(found) =
                keys.iter().map(|k| names.get(k).cloned()).collect::<Option<Vec<_>>>()
            else {
                return true;
            };
            answers.push(Answer { to: *asker, answer: NameAnswer::Found(found) });
            false
        });
        answers
    }

    /// `rank` looks up `keys`. Without `wait`, what is published now (at least one key, or
    /// `NOT_FOUND`); with it, the answer comes once every key is published (from
    /// [`Self::publish`]). Waiting lookups are bounded like names, so a rank cannot park an
    /// unbounded number of them.
    fn lookup(&mut self, from: Asker, rank: u32, keys: Vec<String>, wait: bool) -> Vec<Answer> {
        let found: Vec<NameRecord> =
            keys.iter().filter_map(|k| self.names.get(k).cloned()).collect();
        let answer = if keys.is_empty() {
            NameAnswer::Refused { status: BAD_PARAM, why: None }
        } else if found.len() == keys.len() || (!wait && !found.is_empty()) {
            NameAnswer::Found(found)
        } else if !wait {
            NameAnswer::Refused { status: NOT_FOUND, why: None }
        } else if self.waiting.len() >= MAX_NAMES {
            let why = self.told.insert(rank).then(|| {
                format!(
                    "rank {rank}'s MPI_Lookup_name failed: the job already has {MAX_NAMES} \
                     lookups waiting for names, gangway's limit per job"
                )
            });
            NameAnswer::Refused { status: OUT_OF_RESOURCE, why }
        } else {
            self.waiting.push((from, keys));
            return Vec::new();
        };
        vec![Answer { to: from, answer }]
    }

    /// `rank` unpublishes `keys` (all its names when empty). Only the publisher may: a key of
    /// another rank refuses the whole request and removes nothing.
    fn unpublish(&mut self, from: Asker, rank: u32, keys: Vec<String>) -> Answer {
        let answer = if keys.iter().any(|k| self.names.get(k).is_some_and(|r| r.publisher != rank))
        {
            NameAnswer::Refused { status: NO_PERMISSIONS, why: None }
        } else {
            let before = self.names.len();
            self.names.retain(|k, r| r.publisher != rank || !(keys.is_empty() || keys.contains(k)));
            if self.names.len() < before {
                NameAnswer::Done
            } else {
                NameAnswer::Refused { status: NOT_FOUND, why: None }
            }
        };
        Answer { to: from, answer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmi::limits::{MAX_SERVICE, MAX_VALUE};

    fn at(node: u32, id: u64) -> Asker {
        Asker { node, id }
    }

    fn s(v: &str) -> NameValue {
        NameValue::String(v.into())
    }

    fn rec(publisher: u32, key: &str, v: &str) -> NameRecord {
        NameRecord { publisher, key: key.into(), value: s(v) }
    }

    fn refused(status: i32) -> NameAnswer {
        NameAnswer::Refused { status, why: None }
    }

    fn one(answers: Vec<Answer>) -> NameAnswer {
        match <[Answer; 1]>::try_from(answers) {
            Ok([a]) => a.answer,
            Err(all) => panic!("expected one answer: {all:?}"),
        }
    }

    #[test]
    fn a_name_published_on_one_node_is_found_from_another() {
        let mut names = PmixNames::new();
        assert_eq!(
            one(names.publish(at(0, 1), 0, vec![("svc".into(), s("port-A"))])),
            NameAnswer::Done
        );
        let answers = names.lookup(at(2, 7), 5, vec!["svc".into()], false);
        assert_eq!(
            answers,
            vec![Answer { to: at(2, 7), answer: NameAnswer::Found(vec![rec(0, "svc", "port-A")]) }]
        );
    }

    #[test]
    fn a_waiting_lookup_is_answered_when_its_last_key_appears() {
        let mut names = PmixNames::new();
        assert_eq!(names.lookup(at(2, 1), 5, vec!["a".into(), "b".into()], true), vec![]);
        // Without wait, a missing name is NOT_FOUND at once.
        assert_eq!(one(names.lookup(at(1, 2), 3, vec!["b".into()], false)), refused(NOT_FOUND));
        assert_eq!(one(names.publish(at(0, 3), 0, vec![("a".into(), s("1"))])), NameAnswer::Done);
        let answers = names.publish(at(0, 4), 1, vec![("b".into(), s("2"))]);
        assert_eq!(
            answers,
            vec![
                Answer { to: at(0, 4), answer: NameAnswer::Done },
                Answer {
                    to: at(2, 1),
                    answer: NameAnswer::Found(vec![rec(0, "a", "1"), rec(1, "b", "2")])
                },
            ]
        );
        // Answered once: a later publish does not answer it again.
        assert_eq!(names.publish(at(0, 5), 1, vec![("c".into(), s("3"))]).len(), 1);
    }

    #[test]
    fn a_lookup_without_wait_returns_what_is_there() {
        let mut names = PmixNames::new();
        names.publish(at(0, 1), 0, vec![("a".into(), s("1"))]);
        assert_eq!(
            one(names.lookup(at(1, 1), 1, vec!["a".into(), "zz".into()], false)),
            NameAnswer::Found(vec![rec(0, "a", "1")])
        );
        assert_eq!(one(names.lookup(at(1, 1), 1, vec![], false)), refused(BAD_PARAM));
    }

    #[test]
    fn a_taken_key_refuses_the_whole_publish() {
        let mut names = PmixNames::new();
        names.publish(at(0, 1), 0, vec![("a".into(), s("1"))]);
        let again = names.publish(at(1, 2), 4, vec![("b".into(), s("2")), ("a".into(), s("x"))]);
        assert_eq!(one(again), refused(BAD_PARAM));
        let twice = names.publish(at(1, 3), 4, vec![("c".into(), s("2")), ("c".into(), s("3"))]);
        assert_eq!(one(twice), refused(BAD_PARAM));
        assert_eq!(one(names.lookup(at(1, 4), 4, vec!["b".into()], false)), refused(NOT_FOUND));
        assert_eq!(
            one(names.lookup(at(1, 5), 4, vec!["a".into()], false)),
            NameAnswer::Found(vec![rec(0, "a", "1")]),
            "the first publisher's value stays"
        );
    }

    #[test]
    fn only_the_publisher_unpublishes() {
        let mut names = PmixNames::new();
        names.publish(at(0, 1), 0, vec![("a".into(), s("1")), ("b".into(), s("2"))]);
        names.publish(at(2, 1), 7, vec![("c".into(), s("3"))]);
        assert_eq!(names.unpublish(at(2, 2), 7, vec!["a".into()]).answer, refused(NO_PERMISSIONS));
        assert_eq!(
            names.unpublish(at(2, 3), 7, vec!["c".into(), "a".into()]).answer,
            refused(NO_PERMISSIONS)
        );
        assert_eq!(
            one(names.lookup(at(1, 1), 1, vec!["c".into()], false)),
            NameAnswer::Found(vec![rec(7, "c", "3")]),
            "nothing removed"
        );
        assert_eq!(names.unpublish(at(0, 2), 0, vec!["a".into()]).answer, NameAnswer::Done);
        assert_eq!(names.unpublish(at(0, 3), 0, vec!["a".into()]).answer, refused(NOT_FOUND));
        // No keys: all of the caller's names, and only those.
        assert_eq!(names.unpublish(at(2, 4), 7, vec![]).answer, NameAnswer::Done);
        assert_eq!(
            one(names.lookup(at(1, 2), 1, vec!["b".into()], false)),
            NameAnswer::Found(vec![rec(0, "b", "2")])
        );
        assert_eq!(one(names.lookup(at(1, 3), 1, vec!["c".into()], false)), refused(NOT_FOUND));
    }

    #[test]
    fn limits_refuse_with_a_reason_said_once_per_rank() {
        let mut names = PmixNames::new();
        let long_key = "k".repeat(MAX_SERVICE + 1);
        let NameAnswer::Refused { status, why } =
            one(names.publish(at(0, 1), 3, vec![(long_key, s("v"))]))
        else {
            panic!()
        };
        assert_eq!(status, OUT_OF_RESOURCE);
        assert!(why.unwrap().contains("rank 3 could not publish"));
        let big = NameValue::Bytes(serde_bytes::ByteBuf::from(vec![0; MAX_VALUE + 1]));
        assert_eq!(
            one(names.publish(at(0, 2), 3, vec![("k".into(), big)])),
            refused(OUT_OF_RESOURCE),
            "said already"
        );
        for i in 0..MAX_NAMES {
            assert_eq!(
                one(names.publish(at(0, 3), 1, vec![(format!("n{i}"), s("v"))])),
                NameAnswer::Done
            );
        }
        let NameAnswer::Refused { status, why } =
            one(names.publish(at(0, 4), 2, vec![("x".into(), s("v"))]))
        else {
            panic!()
        };
        assert_eq!(status, OUT_OF_RESOURCE);
        assert!(why.unwrap().contains(&format!("{MAX_NAMES} names")));
    }

    #[test]
    fn waiting_lookups_are_bounded() {
        let mut names = PmixNames::new();
        for i in 0..MAX_NAMES as u64 {
            assert_eq!(names.lookup(at(1, i), 1, vec!["never".into()], true), vec![]);
        }
        let NameAnswer::Refused { status, why } =
            one(names.lookup(at(1, 0), 2, vec!["never".into()], true))
        else {
            panic!()
        };
        assert_eq!(status, OUT_OF_RESOURCE);
        assert!(why.unwrap().contains("lookups waiting"));
        // Publishing the name answers every waiting one.
        assert_eq!(
            names.publish(at(0, 1), 0, vec![("never".into(), s("now"))]).len(),
            MAX_NAMES + 1
        );
    }

    #[test]
    fn values_keep_their_type_through_the_wire_form() {
        for v in [
            Value::String("p".into()),
            Value::Bytes(vec![0, 1]),
            Value::U32(7),
            Value::Size(9),
            Value::Proc(Proc::new("ns", 2)),
        ] {
            assert_eq!(NameValue::from_pmix(v.clone()).unwrap().into_pmix(), v);
        }
        assert_eq!(NameValue::from_pmix(Value::Unsupported { type_code: 99 }), None);
    }
}
