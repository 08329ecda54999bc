//! The job-wide half of PMI: merging every node's fence contribution into one `FenceDown`, and
//! the name service behind publish/unpublish/lookup.
//!
//! Pure: the launcher feeds it what the nodes send up and delivers what it returns.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::limits::admit_name;
use super::node::ReqId;
use super::wire::{Reply, Request};

/// A message from a node to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootInput {
    /// Every local rank of `node` entered fence `epoch`; these are its staged puts.
    FenceUp {
        /// The sending node.
        node: u32,
        /// The fence number.
        epoch: u64,
        /// The node's puts since its previous fence.
        pairs: Vec<(String, String)>,
    },
    /// A name-service request from one of `node`'s ranks.
    NameUp {
        /// The sending node.
        node: u32,
        /// The node's tag for the request.
        id: ReqId,
        /// Publish, Unpublish or Lookup.
        request: Request,
    },
}

/// A message from the root to the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootOutput {
    /// To every node: fence `epoch` is complete; merge `pairs` and release the fence replies.
    FenceDown {
        /// The fence number.
        epoch: u64,
        /// All pairs put job-wide in this fence (a key put on several nodes keeps the value from
        /// the highest node id, so every node sees the same winner).
        pairs: Vec<(String, String)>,
    },
    /// To `node`: the answer to its name-service request `id`.
    NameDown {
        /// The node that asked.
        node: u32,
        /// Its tag.
        id: ReqId,
        /// The answer.
        reply: Reply,
    },
}

/// Job-wide PMI state: the fence being collected and the published names.
#[derive(Debug)]
pub struct RootPmi {
    nnodes: u32,
    epoch: u64,
    /// Contributions to the current fence, by node, so merging order does not depend on arrival.
    arrived: BTreeMap<u32, Vec<(String, String)>>,
    names: HashMap<String, String>,
}

impl RootPmi {
    /// Root state for a job spread over `nnodes` nodes (ids `0..nnodes`).
    pub fn new(nnodes: u32) -> Self {
        RootPmi { nnodes, epoch: 0, arrived: BTreeMap::new(), names: HashMap::new() }
    }

    /// Applies one input and returns the messages to deliver.
    ///
    /// A `FenceUp` for another epoch than the one being collected, a second one from the same
    /// node, or one from a node id outside `0..nnodes` is ignored: nodes cannot legitimately
    /// send them, and counting them could release a fence early or twice.
    pub fn handle(&mut self, input: RootInput) -> Vec<RootOutput> {
        match input {
            RootInput::FenceUp { node, epoch, pairs } => {
                if epoch != self.epoch || node >= self.nnodes || self.arrived.contains_key(&node) {
                    return Vec::new();
                }
                self.arrived.insert(node, pairs);
                // A u32 node count always fits in usize on the platforms we build for.
                if self.arrived.len() < usize::try_from(self.nnodes).unwrap_or(usize::MAX) {
                    return Vec::new();
                }
                let mut merged = BTreeMap::new();
                for (_, pairs) in std::mem::take(&mut self.arrived) {
                    merged.extend(pairs);
                }
                let done = self.epoch;
                self.epoch += 1;
                vec![RootOutput::FenceDown { epoch: done, pairs: merged.into_iter().collect() }]
            }
            RootInput::NameUp { node, id, request } => {
                let reply = self.name(request);
                vec![RootOutput::NameDown { node, id, reply }]
            }
        }
    }

    fn name(&mut self, request: Request) -> Reply {
        match request {
            Request::Publish { service, port } => {
                if let Err(refused) = admit_name(&service, port.len(), self.names.len()) {
                    return Reply::PublishFailed { message: refused.to_string() };
                }
                match self.names.entry(service) {
                    Entry::Occupied(_) => Reply::PublishDuplicate,
                    Entry::Vacant(slot) => {
                        slot.insert(port);
                        Reply::PublishOk
                    }
                }
            }
            Request::Unpublish { service } => match self.names.remove(&service) {
                Some(_) => Reply::UnpublishOk,
                None => Reply::UnpublishNotFound,
            },
            Request::Lookup { service } => match self.names.get(&service) {
                Some(port) => Reply::LookupFound { port: port.clone() },
                None => Reply::LookupNotFound,
            },
            // Nodes only forward the three name-service requests; answer anything else plainly.
            other => Reply::UnknownCommand {
                cmd: format!("{other:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmi::node::{JobInfo, NodeInput, NodeOutput, NodePmi};

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    fn up(node: u32, epoch: u64, pairs: Vec<(String, String)>) -> RootInput {
        RootInput::FenceUp { node, epoch, pairs }
    }

    #[test]
    fn fence_is_released_once_every_node_arrived() {
        let mut root = RootPmi::new(3);
        assert_eq!(root.handle(up(2, 0, vec![pair("c", "3")])), vec![]);
        assert_eq!(root.handle(up(0, 0, vec![pair("a", "1")])), vec![]);
        assert_eq!(
            root.handle(up(1, 0, vec![pair("b", "2")])),
            vec![RootOutput::FenceDown {
                epoch: 0,
                pairs: vec![pair("a", "1"), pair("b", "2"), pair("c", "3")]
            }]
        );
    }

    #[test]
    fn duplicate_late_early_and_foreign_fence_ups_never_release() {
        let mut root = RootPmi::new(2);
        assert_eq!(root.handle(up(0, 0, vec![])), vec![]);
        assert_eq!(root.handle(up(0, 0, vec![pair("x", "dup")])), vec![], "duplicate");
        assert_eq!(root.handle(up(1, 1, vec![])), vec![], "future epoch");
        assert_eq!(root.handle(up(5, 0, vec![])), vec![], "no such node");
        let down = root.handle(up(1, 0, vec![]));
        assert_eq!(
            down,
            vec![RootOutput::FenceDown { epoch: 0, pairs: vec![] }],
            "the duplicate's pairs were not merged"
        );
        assert_eq!(root.handle(up(1, 0, vec![])), vec![], "late");
        assert_eq!(root.handle(up(0, 1, vec![])), vec![]);
        assert_eq!(
            root.handle(up(1, 1, vec![])),
            vec![RootOutput::FenceDown { epoch: 1, pairs: vec![] }]
        );
    }

    #[test]
    fn same_key_on_two_nodes_resolves_the_same_whatever_the_arrival_order() {
        for order in [[0, 1], [1, 0]] {
            let mut root = RootPmi::new(2);
            let mut out = Vec::new();
            for node in order {
                out = root.handle(up(node, 0, vec![pair("k", &node.to_string())]));
            }
            assert_eq!(out, vec![RootOutput::FenceDown { epoch: 0, pairs: vec![pair("k", "1")] }]);
        }
    }

    fn name(root: &mut RootPmi, request: Request) -> Reply {
        match root.handle(RootInput::NameUp { node: 1, id: 42, request }).as_slice() {
            [RootOutput::NameDown { node: 1, id: 42, reply }] => reply.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn name_service() {
        let mut root = RootPmi::new(1);
        let publish = |port: &str| Request::Publish { service: "svc".into(), port: port.into() };
        let lookup = Request::Lookup { service: "svc".into() };
        let unpublish = Request::Unpublish { service: "svc".into() };
        assert_eq!(name(&mut root, lookup.clone()), Reply::LookupNotFound);
        assert_eq!(name(&mut root, unpublish.clone()), Reply::UnpublishNotFound);
        assert_eq!(name(&mut root, publish("p1")), Reply::PublishOk);
        assert_eq!(name(&mut root, publish("p2")), Reply::PublishDuplicate);
        assert_eq!(name(&mut root, lookup.clone()), Reply::LookupFound { port: "p1".into() });
        assert_eq!(name(&mut root, unpublish.clone()), Reply::UnpublishOk);
        assert_eq!(name(&mut root, lookup), Reply::LookupNotFound);
        assert_eq!(name(&mut root, Request::Fence), Reply::UnknownCommand { cmd: "Fence".into() });
    }

    /// Two nodes with two ranks each, block placement, wired through the root like the launcher
    /// does: puts on both nodes, one fence, every rank sees every card.
    #[test]
    fn two_nodes_two_ranks_each_fence_through_the_root() {
        let job = JobInfo {
            kvsname: "kvs_0".into(),
            jobid: "job.0".into(),
            size: 4,
            universe_size: 4,
            appnum: 0,
            process_mapping: Some("(vector,(0,2,2))".into()),
        };
        let mut nodes =
            [NodePmi::new(job.clone(), 0, vec![0, 1]), NodePmi::new(job, 1, vec![2, 3])];
        let mut root = RootPmi::new(2);
        let mut next_id = 0;
        let mut fence_done = Vec::new();

        let mut step = |nodes: &mut [NodePmi; 2], node: usize, rank: u32, request: Request| {
            next_id += 1;
            let id = next_id;
            let mut pending = vec![(node, NodeInput::Request { id, rank, request })];
            let mut replies = Vec::new();
            while let Some((n, input)) = pending.pop() {
                for o in nodes[n].handle(input) {
                    match o {
                        NodeOutput::Reply { id, reply } => replies.push((id, reply)),
                        NodeOutput::FenceUp { epoch, pairs } => {
                            let node = u32::try_from(n).unwrap();
                            for d in root.handle(RootInput::FenceUp { node, epoch, pairs }) {
                                let RootOutput::FenceDown { epoch, pairs } = d else {
                                    panic!("{d:?}");
                                };
                                for target in 0..2 {
                                    pending.push((
                                        target,
                                        NodeInput::FenceDown { epoch, pairs: pairs.clone() },
                                    ));
                                }
                            }
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            (id, replies)
        };

        for (node, rank) in [(0, 0), (0, 1), (1, 2), (1, 3)] {
            let (id, replies) = step(
                &mut nodes,
                node,
                rank,
                Request::Put {
                    kvsname: Some("kvs_0".into()),
                    key: format!("-allgather-shm-1-{rank}"),
                    value: format!("card{rank}"),
                },
            );
            assert_eq!(replies, vec![(id, Reply::PutDone)]);
        }
        for (node, rank) in [(0, 0), (1, 2), (0, 1)] {
            let (id, replies) = step(&mut nodes, node, rank, Request::Fence);
            assert_eq!(replies, vec![], "fence {id} held: not every rank is in");
            fence_done.push(id);
        }
        let (last, replies) = step(&mut nodes, 1, 3, Request::Fence);
        fence_done.push(last);
        let mut released: Vec<ReqId> = replies
            .iter()
            .map(|(id, reply)| {
                assert_eq!(reply, &Reply::FenceDone);
                *id
            })
            .collect();
        released.sort_unstable();
        fence_done.sort_unstable();
        assert_eq!(released, fence_done, "all four fence replies, each once");

        for (node, rank) in [(0, 0), (0, 1), (1, 2), (1, 3)] {
            for card in 0..4 {
                let (id, replies) = step(
                    &mut nodes,
                    node,
                    rank,
                    Request::Get {
                        kvsname: Some("kvs_0".into()),
                        key: format!("-allgather-shm-1-{card}"),
                    },
                );
                assert_eq!(replies, vec![(id, Reply::GetFound { value: format!("card{card}") })]);
            }
        }
    }
}
