//! The job-wide half of PMIx: collecting every node's fence blob and handing the concatenation
//! back, routing direct-modex requests to the node of the rank asked for, and the job's one
//! table of published names (`pmix_names`).
//!
//! Pure, like [`super::root`]: the launcher feeds it what the nodes send up and delivers what
//! it returns. A PMIx fence differs from a PMI-1/2 one: each node contributes one blob that
//! only libpmix can read, and every node gets all blobs concatenated (libpmix parses each
//! node's part itself), so nothing is merged by key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pmix_names::{Answer, Asker, NameAnswer, NameRequest, PmixNames};

/// The largest fence result the root hands down: it travels as one proxy message, whose limit
/// is `proxy::protocol::MAX_FRAME` (256 MiB); a quarter of that leaves room for the framing and
/// keeps a runaway job from making every node hold a frame that size. Open MPI puts 40 to 60
/// bytes per rank over TCP and shared memory, so this is millions of ranks away.
pub const MAX_FENCE_BYTES: usize = 64 * 1024 * 1024;

/// From a node to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PmixUp {
    /// Every local participant of the node's fence `seq` entered it; `data` is the node's blob.
    Fence {
        seq: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A local rank needs what remote `rank` put (direct modex); `id` is the asking node's tag.
    ModexAsk { id: u64, rank: u32 },
    /// The answer to a [`PmixDown::ModexAsk`] that `to_node` sent: the blob or a PMIx status.
    ModexAnswer { to_node: u32, id: u64, data: Result<serde_bytes::ByteBuf, i32> },
    /// A local rank's publish, lookup or unpublish; `id` is the node's tag.
    Names { id: u64, request: NameRequest },
}

impl PmixUp {
    /// The message without its data, for the `-vv` log.
    pub fn summary(&self) -> String {
        match self {
            PmixUp::Fence { seq, data } => format!("fence {seq}: {} bytes", data.len()),
            PmixUp::ModexAsk { id, rank } => format!("direct modex {id}: rank {rank}?"),
            PmixUp::ModexAnswer { to_node, id, data } => match data {
                Ok(blob) => format!("direct modex {id} for node {to_node}: {} bytes", blob.len()),
                Err(status) => format!("direct modex {id} for node {to_node}: status {status}"),
            },
            PmixUp::Names { id, request } => format!("names {id}: {}", request.summary()),
        }
    }
}

/// From the root to a node (or every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PmixDown {
    /// To every node: fence `seq` is complete, here is every node's blob.
    FenceDone {
        seq: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The fence cannot complete (its result would be too large): fail it on every node.
    FenceFailed { seq: u64 },
    /// To the node of `rank`: node `from_node` asks for that rank's data.
    ModexAsk { from_node: u32, id: u64, rank: u32 },
    /// To the node that asked: the answer to its request `id`.
    ModexAnswer { id: u64, data: Result<serde_bytes::ByteBuf, i32> },
    /// To the node that asked: the answer to its name request `id`.
    Names { id: u64, answer: NameAnswer },
}

/// What the root decides: a message and where it goes (`None`: every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub to: Option<u32>,
    pub msg: PmixDown,
}

/// Job-wide PMIx state: the fence being collected, the published names.
#[derive(Debug)]
pub struct PmixRoot {
    nnodes: u32,
    /// The node of every rank, by rank.
    node_of_rank: Vec<u32>,
    seq: u64,
    /// Contributions to the current fence by node, so the concatenation's order does not
    /// depend on arrival (libpmix does not need an order; tests and logs like one).
    arrived: BTreeMap<u32, Vec<u8>>,
    names: PmixNames,
}

impl PmixRoot {
    /// Root state for a job whose rank `r` runs on node `node_of_rank[r]`, over `nnodes` nodes.
    pub fn new(nnodes: u32, node_of_rank: Vec<u32>) -> PmixRoot {
        PmixRoot { nnodes, node_of_rank, seq: 0, arrived: BTreeMap::new(), names: PmixNames::new() }
    }

    /// Applies one message from `node`. Fence contributions for another sequence number than the
    /// one being collected, a node's second one, and those of unknown nodes are dropped, as
    /// `RootPmi` drops stale or duplicate PMI fences: counting them could release a fence early
    /// or twice. Returns the messages to deliver, and an error to stop the job with, if any.
    pub fn handle(&mut self, node: u32, msg: PmixUp) -> (Vec<Routed>, Option<String>) {
        match msg {
            PmixUp::Fence { seq, data } => {
                if seq != self.seq || node >= self.nnodes || self.arrived.contains_key(&node) {
                    return (Vec::new(), None);
                }
                self.arrived.insert(node, data);
                if self.arrived.len() < usize::try_from(self.nnodes).unwrap_or(usize::MAX) {
                    return (Vec::new(), None);
                }
                self.seq += 1;
                let total: usize = self.arrived.values().map(Vec::len).sum();
                if total > MAX_FENCE_BYTES {
                    self.arrived.clear();
                    let error = format!(
                        "a PMIx fence gathered {total} bytes from the job's nodes, more than the \
                         {MAX_FENCE_BYTES} bytes gangway relays"
                    );
                    return (
                        vec![Routed { to: None, msg: PmixDown::FenceFailed { seq } }],
                        Some(error),
                    );
                }
                let mut data = Vec::with_capacity(total);
                for (_, blob) in std::mem::take(&mut self.arrived) {
                    data.extend_from_slice(&blob);
                }
                (vec![Routed { to: None, msg: PmixDown::FenceDone { seq, data } }], None)
            }
            PmixUp::ModexAsk { id, rank } => match self.node_of_rank.get(rank as usize) {
                Some(&owner) => (
                    vec![Routed {
                        to: Some(owner),
                        msg: PmixDown::ModexAsk { from_node: node, id, rank },
                    }],
                    None,
                ),
                None => {
                    let msg = PmixDown::ModexAnswer { id, data: Err(NOT_FOUND) };
                    (vec![Routed { to: Some(node), msg }], None)
                }
            },
            PmixUp::ModexAnswer { to_node, id, data } => {
                (vec![Routed { to: Some(to_node), msg: PmixDown::ModexAnswer { id, data } }], None)
            }
            PmixUp::Names { id, request } => {
                (routed(self.names.handle(Asker { node, id }, request)), None)
            }
        }
    }
}

/// Name answers as messages to the nodes that asked.
fn routed(answers: Vec<Answer>) -> Vec<Routed> {
    answers
        .into_iter()
        .map(|Answer { to, answer }| Routed {
            to: Some(to.node),
            msg: PmixDown::Names { id: to.id, answer },
        })
        .collect()
}

/// `PMIX_ERR_NOT_FOUND`, for an answer about a rank the job does not have.
const NOT_FOUND: i32 = gangway_pmix::Status::NOT_FOUND.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(seq: u64, data: &[u8]) -> PmixUp {
        PmixUp::Fence { seq, data: data.to_vec() }
    }

    #[test]
    fn a_fence_completes_once_every_node_sent_its_blob_in_node_order() {
        let mut root = PmixRoot::new(3, vec![0, 1, 2]);
        assert_eq!(root.handle(2, fence(0, b"cc")), (vec![], None));
        assert_eq!(root.handle(0, fence(0, b"a")), (vec![], None));
        let (out, err) = root.handle(1, fence(0, b"")).clone();
        assert_eq!(err, None);
        assert_eq!(
            out,
            vec![Routed { to: None, msg: PmixDown::FenceDone { seq: 0, data: b"acc".to_vec() } }]
        );
        // The next fence starts empty.
        assert_eq!(root.handle(0, fence(1, b"x")), (vec![], None));
    }

    #[test]
    fn stale_duplicate_and_unknown_contributions_are_dropped() {
        let mut root = PmixRoot::new(2, vec![0, 1]);
        assert_eq!(root.handle(0, fence(0, b"a")), (vec![], None));
        // A second blob from node 0 does not stand in for node 1's.
        assert_eq!(root.handle(0, fence(0, b"a")), (vec![], None));
        assert_eq!(root.handle(5, fence(0, b"z")), (vec![], None));
        assert_eq!(root.handle(1, fence(7, b"z")), (vec![], None));
        let (out, _) = root.handle(1, fence(0, b"b"));
        assert_eq!(out.len(), 1);
        // A late duplicate of the finished fence does not count towards the next one.
        assert_eq!(root.handle(1, fence(0, b"b")), (vec![], None));
    }

    #[test]
    fn an_oversized_fence_fails_everywhere_with_a_reason() {
        let mut root = PmixRoot::new(2, vec![0, 1]);
        let big = vec![0u8; MAX_FENCE_BYTES / 2 + 1];
        root.handle(0, PmixUp::Fence { seq: 0, data: big.clone() });
        let (out, err) = root.handle(1, PmixUp::Fence { seq: 0, data: big });
        assert_eq!(out, vec![Routed { to: None, msg: PmixDown::FenceFailed { seq: 0 } }]);
        assert!(err.unwrap().contains("more than"));
    }

    #[test]
    fn direct_modex_goes_to_the_ranks_node_and_back() {
        let mut root = PmixRoot::new(2, vec![0, 0, 1, 1]);
        let (out, _) = root.handle(0, PmixUp::ModexAsk { id: 9, rank: 3 });
        assert_eq!(
            out,
            vec![Routed { to: Some(1), msg: PmixDown::ModexAsk { from_node: 0, id: 9, rank: 3 } }]
        );
        let blob = Ok(serde_bytes::ByteBuf::from(b"card".to_vec()));
        let (out, _) =
            root.handle(1, PmixUp::ModexAnswer { to_node: 0, id: 9, data: blob.clone() });
        assert_eq!(
            out,
            vec![Routed { to: Some(0), msg: PmixDown::ModexAnswer { id: 9, data: blob } }]
        );
        let (out, _) = root.handle(1, PmixUp::ModexAsk { id: 1, rank: 99 });
        assert_eq!(
            out,
            vec![Routed {
                to: Some(1),
                msg: PmixDown::ModexAnswer { id: 1, data: Err(NOT_FOUND) }
            }]
        );
    }

    /// A rank on node 0 publishes, one on node 2 waits for the name and gets it through the
    /// root, and only the publisher's node may take it back.
    #[test]
    fn names_are_one_table_for_the_job_across_nodes() {
        use crate::pmi::pmix_names::{NameRecord, NameValue};
        let names = |id, request| PmixUp::Names { id, request };
        let mut root = PmixRoot::new(3, vec![0, 1, 2]);
        let lookup =
            names(4, NameRequest::Lookup { rank: 2, keys: vec!["svc".into()], wait: true });
        assert_eq!(root.handle(2, lookup), (vec![], None));
        let value = NameValue::String("port-A".into());
        let (out, _) = root.handle(
            0,
            names(1, NameRequest::Publish { rank: 0, data: vec![("svc".into(), value.clone())] }),
        );
        let record = NameRecord { publisher: 0, key: "svc".into(), value };
        assert_eq!(
            out,
            vec![
                Routed { to: Some(0), msg: PmixDown::Names { id: 1, answer: NameAnswer::Done } },
                Routed {
                    to: Some(2),
                    msg: PmixDown::Names { id: 4, answer: NameAnswer::Found(vec![record]) }
                },
            ]
        );
        let (out, _) =
            root.handle(2, names(5, NameRequest::Unpublish { rank: 2, keys: vec!["svc".into()] }));
        let no = gangway_pmix::Status::NO_PERMISSIONS.0;
        assert_eq!(
            out,
            vec![Routed {
                to: Some(2),
                msg: PmixDown::Names {
                    id: 5,
                    answer: NameAnswer::Refused { status: no, why: None }
                }
            }]
        );
        let (out, _) = root.handle(0, names(2, NameRequest::Unpublish { rank: 0, keys: vec![] }));
        assert_eq!(
            out,
            vec![Routed { to: Some(0), msg: PmixDown::Names { id: 2, answer: NameAnswer::Done } }]
        );
    }
}
