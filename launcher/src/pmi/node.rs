//! The per-node PMI state machine: answers each local rank's requests, stages KVS puts until a
//! fence, holds fence and `wait=TRUE` node-attribute replies, and decides when a rank's
//! disappearance dooms the job.
//!
//! Pure: the server turns socket traffic into [`NodeInput`]s and carries out the
//! [`NodeOutput`]s. Everything job-wide (the fence merge, the name service) goes to the root.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::limits::{Budgets, Refusal, Space, admit_name};
use super::wire::{Reply, Request};

/// What every rank of the job may ask about the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The PMI-1 KVS name (`get_my_kvsname`); no spaces.
    pub kvsname: String,
    /// The PMI-2 job id (`job-getid`).
    pub jobid: String,
    /// Number of ranks in the job.
    pub size: u32,
    /// `universe_size` / `universeSize`.
    pub universe_size: u32,
    /// Application number (index of the executable in an MPMD command line).
    pub appnum: u32,
    /// `PMI_process_mapping`, or `None` to make MPICH fall back to hostname exchange.
    pub process_mapping: Option<String>,
}

/// Opaque tag the server gives each request; replies name it.
pub type ReqId = u64;

/// Something that happened on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeInput {
    /// A decoded request from a local rank.
    Request {
        /// The server's tag for the reply.
        id: ReqId,
        /// Which rank sent it (the server knows from the connection).
        rank: u32,
        /// What it asked.
        request: Request,
    },
    /// From the root: the merged puts of fence `epoch`; releases the held fence replies.
    FenceDown {
        /// The fence number.
        epoch: u64,
        /// Every pair put job-wide before that fence.
        pairs: Vec<(String, String)>,
    },
    /// The root's answer to a name-service request.
    NameDown {
        /// The tag of the request it answers.
        id: ReqId,
        /// The answer.
        reply: Reply,
    },
    /// The rank's process exited or its PMI socket hit EOF.
    RankGone {
        /// Which rank.
        rank: u32,
    },
}

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutput {
    /// Send `reply` to the connection of request `id`.
    Reply {
        /// The request answered.
        id: ReqId,
        /// The answer.
        reply: Reply,
    },
    /// All local ranks entered fence `epoch`: send the node's staged puts to the root.
    FenceUp {
        /// The fence number (0, 1, 2, ... in order).
        epoch: u64,
        /// The puts staged on this node since the previous fence, sorted by key.
        pairs: Vec<(String, String)>,
    },
    /// Forward a name-service request (publish/unpublish/lookup) to the root.
    NameUp {
        /// The request's tag; the root's answer comes back with it.
        id: ReqId,
        /// The requesting rank.
        rank: u32,
        /// The request.
        request: Request,
    },
    /// The rank called abort: kill the job. The rank gets no reply.
    Abort {
        /// Who aborted.
        rank: u32,
        /// Its exit code (-1 for PMI-2).
        code: i32,
        /// Its message, if any.
        message: Option<String>,
    },
    /// The job cannot succeed any more: kill it and report `reason`.
    Failed {
        /// The rank at fault.
        rank: u32,
        /// Why, in words for the user.
        reason: FailReason,
    },
    /// The rank finalized; its exit no longer counts as a crash.
    Finalized {
        /// Which rank.
        rank: u32,
    },
    /// Tell the user (the job goes on): a rank's first put over a limit, naming it.
    Warning {
        /// The rank concerned.
        rank: u32,
        /// What happened, in words for the user.
        message: String,
    },
}

/// Why the node declared the job failed. Its `Display` is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// A rank that had spoken PMI went away before finalize.
    ExitedWithoutFinalize {
        /// The rank.
        rank: u32,
    },
    /// A fence was entered that can never complete, because local ranks left or finalized.
    FenceAbandoned {
        /// The fence number.
        epoch: u64,
        /// Local ranks that exited without entering it.
        exited: Vec<u32>,
        /// Local ranks that already finalized.
        finalized: Vec<u32>,
        /// Local ranks blocked in it.
        waiting: Vec<u32>,
    },
    /// A rank entered the same fence twice (a second request before the first was answered).
    FenceEnteredTwice {
        /// The rank.
        rank: u32,
        /// The fence number.
        epoch: u64,
    },
    /// A rank this node does not host sent a request that counts towards a node-wide collective.
    NotLocal {
        /// The rank.
        rank: u32,
        /// This node.
        node: u32,
    },
}

fn rank_list(ranks: &[u32]) -> String {
    let mut s = String::new();
    for (i, r) in ranks.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&r.to_string());
    }
    s
}

fn ranks_word(ranks: &[u32]) -> &'static str {
    if ranks.len() == 1 { "rank" } else { "ranks" }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::ExitedWithoutFinalize { rank } => write!(
                f,
                "rank {rank} closed its PMI connection without calling finalize \
                 (it exited or crashed inside MPI)"
            ),
            FailReason::FenceAbandoned { epoch, exited, finalized, waiting } => {
                write!(f, "PMI fence #{epoch} can never complete: ")?;
                let mut parts = Vec::new();
                if !exited.is_empty() {
                    parts.push(format!(
                        "{} {} exited without entering it",
                        ranks_word(exited),
                        rank_list(exited)
                    ));
                }
                if !finalized.is_empty() {
                    parts.push(format!(
                        "{} {} already called finalize",
                        ranks_word(finalized),
                        rank_list(finalized)
                    ));
                }
                write!(f, "{}", parts.join(" and "))?;
                write!(
                    f,
                    ", while {} {} {} waiting in it",
                    ranks_word(waiting),
                    rank_list(waiting),
                    if waiting.len() == 1 { "is" } else { "are" }
                )
            }
            FailReason::FenceEnteredTwice { rank, epoch } => write!(
                f,
                "rank {rank} entered PMI fence #{epoch} twice (a PMI client must wait for each reply)"
            ),
            FailReason::NotLocal { rank, node } => {
                write!(f, "rank {rank} sent a PMI request to node {node}, which does not host it")
            }
        }
    }
}

/// What we know about one local rank.
#[derive(Debug, Default, Clone, Copy)]
struct RankState {
    spoke: bool,
    finalized: bool,
    gone: bool,
}

/// A reply held back until something happens, with the rank waiting for it.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: ReqId,
    rank: u32,
}

/// Per-node PMI state: the node's KVS copy, staged puts, the current fence, node attributes.
#[derive(Debug)]
pub struct NodePmi {
    job: JobInfo,
    node_id: u32,
    ranks: BTreeMap<u32, RankState>,
    /// Merged KVS from every completed fence.
    kvs: HashMap<String, String>,
    /// Puts since the last `FenceUp`.
    staged: BTreeMap<String, String>,
    /// Puts sent up in the current fence but not yet merged back down; still gettable here.
    in_flight: HashMap<String, String>,
    /// The fence being collected (or awaiting its `FenceDown`).
    epoch: u64,
    entered: Vec<Held>,
    sent_up: bool,
    /// The epoch a fence failure was already reported for, so it is reported once.
    fence_failure_reported: Option<u64>,
    node_attrs: HashMap<String, String>,
    attr_waiters: HashMap<String, Vec<Held>>,
    /// What each local rank has stored, against the limits.
    budgets: Budgets,
}

impl NodePmi {
    /// State for `node_id`, which hosts `local_ranks` of `job`.
    pub fn new(job: JobInfo, node_id: u32, local_ranks: Vec<u32>) -> Self {
        NodePmi {
            job,
            node_id,
            ranks: local_ranks.into_iter().map(|r| (r, RankState::default())).collect(),
            kvs: HashMap::new(),
            staged: BTreeMap::new(),
            in_flight: HashMap::new(),
            epoch: 0,
            entered: Vec::new(),
            sent_up: false,
            fence_failure_reported: None,
            node_attrs: HashMap::new(),
            attr_waiters: HashMap::new(),
            budgets: Budgets::default(),
        }
    }

    /// Applies one input and returns what the server must do, in order.
    pub fn handle(&mut self, input: NodeInput) -> Vec<NodeOutput> {
        let mut out = Vec::new();
        match input {
            NodeInput::Request { id, rank, request } => self.request(id, rank, request, &mut out),
            NodeInput::FenceDown { epoch, pairs } => self.fence_down(epoch, pairs, &mut out),
            NodeInput::NameDown { id, reply } => out.push(NodeOutput::Reply { id, reply }),
            NodeInput::RankGone { rank } => self.rank_gone(rank, &mut out),
        }
        out
    }

    fn request(&mut self, id: ReqId, rank: u32, request: Request, out: &mut Vec<NodeOutput>) {
        if let Some(state) = self.ranks.get_mut(&rank) {
            state.spoke = true;
        }
        let reply = |reply| NodeOutput::Reply { id, reply };
        match request {
            Request::Init { version, subversion } => {
                out.push(reply(Reply::InitResponse { version, subversion }))
            }
            Request::Initack { id: pmi_id } => {
                out.push(reply(Reply::Initack { size: self.job.size, rank: pmi_id }))
            }
            // The server resolved the connection's identity already; its rank is the truth.
            Request::FullInit { .. } => out.push(reply(Reply::FullInit {
                rank,
                size: self.job.size,
                appnum: self.job.appnum,
            })),
            Request::GetMaxes => out.push(reply(Reply::Maxes)),
            Request::GetAppnum => out.push(reply(Reply::Appnum(self.job.appnum))),
            Request::GetKvsName => out.push(reply(Reply::KvsName(self.job.kvsname.clone()))),
            Request::GetUniverseSize => {
                out.push(reply(Reply::UniverseSize(self.job.universe_size)));
            }
            Request::JobGetId => out.push(reply(Reply::JobId(self.job.jobid.clone()))),
            Request::Put { kvsname, key, value } => {
                if let Some(k) = kvsname.filter(|k| *k != self.job.kvsname) {
                    out.push(reply(Reply::PutFailed {
                        message: format!("kvsname {k} is not this job's ({})", self.job.kvsname),
                    }));
                } else {
                    match self.budgets.admit(rank, Space::Kvs, &key, &value) {
                        Ok(()) => {
                            self.staged.insert(key, value);
                            out.push(reply(Reply::PutDone));
                        }
                        Err(refused) => {
                            out.push(reply(Reply::PutFailed { message: refused.to_string() }));
                            self.tell(rank, "put", &key, &refused, out);
                        }
                    }
                }
            }
            Request::Get { kvsname, key } => {
                let wrong_kvs = kvsname.is_some_and(|k| k != self.job.kvsname);
                let value = if wrong_kvs { None } else { self.lookup(&key) };
                out.push(reply(match value {
                    Some(value) => Reply::GetFound { value },
                    None => Reply::GetNotFound { key },
                }));
            }
            Request::Fence => self.fence(id, rank, out),
            Request::NodeAttrPut { key, value } => {
                if let Err(refused) = self.budgets.admit(rank, Space::NodeAttr, &key, &value) {
                    let message = refused.to_string();
                    out.push(reply(Reply::NodeAttrPutFailed { message }));
                    self.tell(rank, "node attribute", &key, &refused, out);
                    return;
                }
                for w in self.attr_waiters.remove(&key).unwrap_or_default() {
                    out.push(NodeOutput::Reply {
                        id: w.id,
                        reply: Reply::NodeAttrFound { value: value.clone() },
                    });
                }
                self.node_attrs.insert(key, value);
                out.push(reply(Reply::NodeAttrPutDone));
            }
            Request::NodeAttrGet { key, wait } => match self.node_attrs.get(&key) {
                Some(value) => out.push(reply(Reply::NodeAttrFound { value: value.clone() })),
                None if wait => self.attr_waiters.entry(key).or_default().push(Held { id, rank }),
                None => out.push(reply(Reply::NodeAttrNotFound)),
            },
            Request::JobAttrGet { key } => {
                let value = match key.as_str() {
                    "PMI_process_mapping" => self.job.process_mapping.clone(),
                    "universeSize" => Some(self.job.universe_size.to_string()),
                    _ => None,
                };
                out.push(reply(match value {
                    Some(value) => Reply::JobAttrFound { value },
                    None => Reply::JobAttrNotFound,
                }));
            }
            Request::Publish { ref service, ref port } => {
                // Lengths are checked here, where the rank can be told; the count at the root.
                match admit_name(service, port.len(), 0) {
                    Ok(()) => out.push(NodeOutput::NameUp { id, rank, request }),
                    Err(refused) => {
                        let message = refused.to_string();
                        let service = service.clone();
                        out.push(reply(Reply::PublishFailed { message }));
                        self.tell(rank, "published name", &service, &refused, out);
                    }
                }
            }
            request @ (Request::Unpublish { .. } | Request::Lookup { .. }) => {
                out.push(NodeOutput::NameUp { id, rank, request })
            }
            Request::Finalize => {
                if let Some(state) = self.ranks.get_mut(&rank) {
                    state.finalized = true;
                }
                out.push(reply(Reply::FinalizeAck));
                out.push(NodeOutput::Finalized { rank });
            }
            Request::Abort { code, message } => {
                out.push(NodeOutput::Abort { rank, code, message });
            }
            Request::Spawn => out.push(reply(Reply::SpawnRefused {
                message: "gangway does not support spawning processes (MPI_Comm_spawn)".into(),
            })),
            Request::Unknown { cmd } => out.push(reply(Reply::UnknownCommand { cmd })),
        }
    }

    /// Reports a rank's first refused put to the user, with the key (shortened) and the limit.
    fn tell(
        &mut self,
        rank: u32,
        what: &str,
        key: &str,
        refused: &Refusal,
        out: &mut Vec<NodeOutput>,
    ) {
        if !self.budgets.first_refusal(rank) {
            return;
        }
        let shown: String = key.chars().take(40).collect();
        let more = if shown.len() < key.len() { "..." } else { "" };
        out.push(NodeOutput::Warning {
            rank,
            message: format!(
                "rank {rank}: PMI {what} {shown:?}{more} refused: {refused} (later refusals of this rank are not reported)"
            ),
        });
    }

    /// Newest first: this node's staged puts, puts in flight, then the merged job-wide copy.
    /// `PMI_process_mapping` is never put; it comes from the job.
    fn lookup(&self, key: &str) -> Option<String> {
        if key == "PMI_process_mapping" {
            return self.job.process_mapping.clone();
        }
        self.staged
            .get(key)
            .or_else(|| self.in_flight.get(key))
            .or_else(|| self.kvs.get(key))
            .cloned()
    }

    fn fence(&mut self, id: ReqId, rank: u32, out: &mut Vec<NodeOutput>) {
        if !self.ranks.contains_key(&rank) {
            out.push(NodeOutput::Failed {
                rank,
                reason: FailReason::NotLocal { rank, node: self.node_id },
            });
            return;
        }
        if self.sent_up || self.entered.iter().any(|h| h.rank == rank) {
            out.push(NodeOutput::Failed {
                rank,
                reason: FailReason::FenceEnteredTwice { rank, epoch: self.epoch },
            });
            return;
        }
        self.entered.push(Held { id, rank });
        if self.check_fence_doomed(out) {
            return;
        }
        if self.entered.len() == self.ranks.len() {
            let pairs = std::mem::take(&mut self.staged);
            self.in_flight = pairs.clone().into_iter().collect();
            self.sent_up = true;
            out.push(NodeOutput::FenceUp { epoch: self.epoch, pairs: pairs.into_iter().collect() });
        }
    }

    /// A fence with a waiter but a local rank that can never join is a certain hang: fail now.
    fn check_fence_doomed(&mut self, out: &mut Vec<NodeOutput>) -> bool {
        if self.entered.is_empty() || self.sent_up {
            return false;
        }
        let mut exited = Vec::new();
        let mut finalized = Vec::new();
        for (&r, s) in &self.ranks {
            if self.entered.iter().any(|h| h.rank == r) {
                continue;
            }
            if s.finalized {
                finalized.push(r);
            } else if s.gone {
                exited.push(r);
            }
        }
        let Some(&culprit) = exited.first().or(finalized.first()) else {
            return false;
        };
        if self.fence_failure_reported != Some(self.epoch) {
            self.fence_failure_reported = Some(self.epoch);
            let mut waiting: Vec<u32> = self.entered.iter().map(|h| h.rank).collect();
            waiting.sort_unstable();
            out.push(NodeOutput::Failed {
                rank: culprit,
                reason: FailReason::FenceAbandoned {
                    epoch: self.epoch,
                    exited,
                    finalized,
                    waiting,
                },
            });
        }
        true
    }

    fn fence_down(&mut self, epoch: u64, pairs: Vec<(String, String)>, out: &mut Vec<NodeOutput>) {
        // Only the answer to what we sent up counts; anything else is stale or duplicated.
        if epoch != self.epoch || !self.sent_up {
            return;
        }
        self.kvs.extend(pairs);
        // Our own puts come back inside `pairs`; the copy kept for gets is no longer needed.
        self.in_flight.clear();
        for h in std::mem::take(&mut self.entered) {
            out.push(NodeOutput::Reply { id: h.id, reply: Reply::FenceDone });
        }
        self.sent_up = false;
        self.epoch += 1;
    }

    fn rank_gone(&mut self, rank: u32, out: &mut Vec<NodeOutput>) {
        let Some(state) = self.ranks.get_mut(&rank) else {
            return;
        };
        if state.gone {
            return;
        }
        state.gone = true;
        let state = *state;
        // Nobody will read replies meant for it.
        self.entered.retain(|h| h.rank != rank);
        for waiters in self.attr_waiters.values_mut() {
            waiters.retain(|h| h.rank != rank);
        }
        if state.finalized {
            return;
        }
        if state.spoke {
            out.push(NodeOutput::Failed {
                rank,
                reason: FailReason::ExitedWithoutFinalize { rank },
            });
            return;
        }
        // A rank that never used PMI may simply not be an MPI program, unless others wait for it.
        self.check_fence_doomed(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmi::root::{RootInput, RootOutput, RootPmi};
    use crate::pmi::wire::{Decoder, Protocol, encode};

    fn job(size: u32, mapping: Option<&str>) -> JobInfo {
        JobInfo {
            kvsname: "kvs_test_0".into(),
            jobid: "job.0".into(),
            size,
            universe_size: size,
            appnum: 0,
            process_mapping: mapping.map(str::to_owned),
        }
    }

    /// Drives one node the way the server does, with a local root, over real wire bytes.
    struct Harness {
        node: NodePmi,
        root: RootPmi,
        next_id: ReqId,
        /// Replies delivered, per request id.
        replies: HashMap<ReqId, Reply>,
        other: Vec<NodeOutput>,
    }

    impl Harness {
        fn new(job: JobInfo, ranks: Vec<u32>) -> Self {
            Harness {
                node: NodePmi::new(job, 0, ranks),
                root: RootPmi::new(1),
                next_id: 0,
                replies: HashMap::new(),
                other: Vec::new(),
            }
        }

        fn apply(&mut self, outputs: Vec<NodeOutput>) {
            for o in outputs {
                match o {
                    NodeOutput::Reply { id, reply } => {
                        assert!(self.replies.insert(id, reply).is_none(), "two replies to {id}");
                    }
                    NodeOutput::FenceUp { epoch, pairs } => {
                        let down = self.root.handle(RootInput::FenceUp { node: 0, epoch, pairs });
                        self.route_down(down);
                    }
                    NodeOutput::NameUp { id, request, .. } => {
                        let down = self.root.handle(RootInput::NameUp { node: 0, id, request });
                        self.route_down(down);
                    }
                    other => self.other.push(other),
                }
            }
        }

        fn route_down(&mut self, down: Vec<RootOutput>) {
            for d in down {
                let input = match d {
                    RootOutput::FenceDown { epoch, pairs } => NodeInput::FenceDown { epoch, pairs },
                    RootOutput::NameDown { id, reply, .. } => NodeInput::NameDown { id, reply },
                };
                let out = self.node.handle(input);
                self.apply(out);
            }
        }

        /// Sends one PMI-1 line from `rank`; returns its request id.
        fn send(&mut self, rank: u32, line: &str) -> ReqId {
            let mut d = Decoder::new();
            d.push(line.as_bytes());
            d.push(b"\n");
            let framed = d.next_request().unwrap().unwrap();
            let id = self.next_id;
            self.next_id += 1;
            let out = self.node.handle(NodeInput::Request { id, rank, request: framed.request });
            self.apply(out);
            id
        }

        /// The reply to `id` as the PMI-1 line, or None if still held.
        fn line(&self, id: ReqId) -> Option<String> {
            self.replies.get(&id).map(|r| String::from_utf8(encode(r, Protocol::V1, None)).unwrap())
        }

        fn exchange(&mut self, rank: u32, line: &str) -> String {
            let id = self.send(rank, line);
            self.line(id).expect("answered at once")
        }
    }

    #[test]
    fn spec_hello_transcript_two_ranks_one_node() {
        let mut h = Harness::new(job(2, Some("(vector,(0,1,2))")), vec![0, 1]);
        for r in [0, 1] {
            assert_eq!(
                h.exchange(r, "cmd=init pmi_version=1 pmi_subversion=1"),
                "cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0\n"
            );
            assert_eq!(
                h.exchange(r, "cmd=get_maxes"),
                "cmd=maxes kvsname_max=256 keylen_max=64 vallen_max=1024\n"
            );
            assert_eq!(h.exchange(r, "cmd=get_appnum"), "cmd=appnum appnum=0\n");
            assert_eq!(h.exchange(r, "cmd=get_my_kvsname"), "cmd=my_kvsname kvsname=kvs_test_0\n");
            assert_eq!(
                h.exchange(r, "cmd=get kvsname=kvs_test_0 key=PMI_process_mapping"),
                "cmd=get_result rc=0 msg=success value=(vector,(0,1,2))\n"
            );
        }
        let barrier = |h: &mut Harness| {
            let a = h.send(0, "cmd=barrier_in");
            assert_eq!(h.line(a), None, "held until every rank enters");
            let b = h.send(1, "cmd=barrier_in");
            assert_eq!(h.line(a).as_deref(), Some("cmd=barrier_out\n"));
            assert_eq!(h.line(b).as_deref(), Some("cmd=barrier_out\n"));
        };
        barrier(&mut h);
        assert_eq!(
            h.exchange(0, "cmd=put kvsname=kvs_test_0 key=-bcast-1-0 value=2F6465762F73686D"),
            "cmd=put_result rc=0 msg=success\n"
        );
        barrier(&mut h);
        assert_eq!(
            h.exchange(1, "cmd=get kvsname=kvs_test_0 key=-bcast-1-0"),
            "cmd=get_result rc=0 msg=success value=2F6465762F73686D\n"
        );
        assert_eq!(
            h.exchange(0, "cmd=put kvsname=kvs_test_0 key=-allgather-shm-1-0 value=203C29"),
            "cmd=put_result rc=0 msg=success\n"
        );
        assert_eq!(
            h.exchange(1, "cmd=put kvsname=kvs_test_0 key=-allgather-shm-1-1 value=20AEC0"),
            "cmd=put_result rc=0 msg=success\n"
        );
        barrier(&mut h);
        assert_eq!(
            h.exchange(0, "cmd=get kvsname=kvs_test_0 key=-allgather-shm-1-1"),
            "cmd=get_result rc=0 msg=success value=20AEC0\n"
        );
        assert_eq!(
            h.exchange(1, "cmd=get kvsname=kvs_test_0 key=-allgather-shm-1-0"),
            "cmd=get_result rc=0 msg=success value=203C29\n"
        );
        barrier(&mut h);
        for r in [0, 1] {
            assert_eq!(h.exchange(r, "cmd=finalize"), "cmd=finalize_ack\n");
        }
        assert_eq!(
            h.other,
            vec![NodeOutput::Finalized { rank: 0 }, NodeOutput::Finalized { rank: 1 }]
        );
        for r in [0, 1] {
            assert_eq!(h.node.handle(NodeInput::RankGone { rank: r }), vec![]);
        }
    }

    /// The PMI-2 sequence MPICH 4.0.x runs (spec section 4), two ranks on one node, over frames.
    #[test]
    fn pmi2_sequence_two_ranks_one_node() {
        let mut h = Harness::new(job(2, Some("(vector,(0,1,2))")), vec![0, 1]);
        let send2 = |h: &mut Harness, rank: u32, payload: &str| -> (ReqId, Option<String>) {
            let mut d = Decoder::new();
            d.push(format!("{:<6}{payload}", payload.len()).as_bytes());
            let framed = d.next_request().unwrap().unwrap();
            assert_eq!(framed.protocol, Protocol::V2);
            let id = h.next_id;
            h.next_id += 1;
            let out = h.node.handle(NodeInput::Request { id, rank, request: framed.request });
            h.apply(out);
            let text = h.replies.get(&id).map(|r| {
                let bytes = encode(r, Protocol::V2, framed.thrid.as_deref());
                String::from_utf8(bytes[6..].to_vec()).unwrap()
            });
            (id, text)
        };
        for r in [0, 1] {
            let (_, got) = send2(&mut h, r, &format!("cmd=fullinit;pmirank={r};threaded=FALSE;"));
            assert_eq!(
                got.unwrap(),
                format!(
                    "cmd=fullinit-response;pmi-version=2;pmi-subversion=0;rank={r};size=2;\
                     appnum=0;debugged=FALSE;pmiverbose=FALSE;rc=0;"
                )
            );
            let (_, got) = send2(&mut h, r, "cmd=job-getid;thrid=t1;");
            assert_eq!(got.unwrap(), "cmd=job-getid-response;thrid=t1;jobid=job.0;rc=0;");
            let (_, got) = send2(&mut h, r, "cmd=info-getjobattr;key=PMI_process_mapping;");
            assert_eq!(
                got.unwrap(),
                "cmd=info-getjobattr-response;found=TRUE;value=(vector,(0,1,2));rc=0;"
            );
        }
        let (f0, got) = send2(&mut h, 0, "cmd=kvs-fence;");
        assert_eq!(got, None);
        let (f1, got) = send2(&mut h, 1, "cmd=kvs-fence;");
        assert_eq!(got.as_deref(), Some("cmd=kvs-fence-response;rc=0;"));
        assert_eq!(h.replies.get(&f0), Some(&Reply::FenceDone));
        assert_eq!(h.replies.get(&f1), Some(&Reply::FenceDone));
        // The node-local bcast needs no fence: the waiting get is released by the put.
        let (g, got) = send2(&mut h, 1, "cmd=info-getnodeattr;key=-bcast-1-0;wait=TRUE;");
        assert_eq!(got, None);
        let (_, got) = send2(&mut h, 0, "cmd=info-putnodeattr;key=-bcast-1-0;value=shm;;name;");
        assert_eq!(got.as_deref(), Some("cmd=info-putnodeattr-response;rc=0;"));
        assert_eq!(h.replies.get(&g), Some(&Reply::NodeAttrFound { value: "shm;name".into() }));
        for r in [0, 1] {
            send2(&mut h, r, &format!("cmd=kvs-put;key=-allgather-shm-1-{r};value=card{r};"));
        }
        send2(&mut h, 0, "cmd=kvs-fence;");
        send2(&mut h, 1, "cmd=kvs-fence;");
        let (_, got) = send2(&mut h, 0, "cmd=kvs-get;jobid=job.0;srcid=-1;key=-allgather-shm-1-1;");
        assert_eq!(got.as_deref(), Some("cmd=kvs-get-response;found=TRUE;value=card1;rc=0;"));
        let (_, got) = send2(&mut h, 0, "cmd=kvs-get;jobid=job.0;srcid=-1;key=nope;");
        assert_eq!(got.as_deref(), Some("cmd=kvs-get-response;found=FALSE;rc=0;"));
        for r in [0, 1] {
            let (_, got) = send2(&mut h, r, "cmd=finalize;");
            assert_eq!(got.as_deref(), Some("cmd=finalize-response;rc=0;"));
        }
        assert_eq!(
            h.other,
            vec![NodeOutput::Finalized { rank: 0 }, NodeOutput::Finalized { rank: 1 }]
        );
    }

    fn node(ranks: Vec<u32>) -> NodePmi {
        NodePmi::new(job(4, Some("(vector,(0,2,2))")), 0, ranks)
    }

    fn req(id: ReqId, rank: u32, request: Request) -> NodeInput {
        NodeInput::Request { id, rank, request }
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put { kvsname: None, key: key.into(), value: value.into() }
    }

    fn get(key: &str) -> Request {
        Request::Get { kvsname: None, key: key.into() }
    }

    fn reply(id: ReqId, reply: Reply) -> Vec<NodeOutput> {
        vec![NodeOutput::Reply { id, reply }]
    }

    #[test]
    fn get_miss_is_answered_at_once_and_local_puts_are_visible_before_the_fence() {
        let mut n = node(vec![0, 1]);
        assert_eq!(n.handle(req(1, 0, get("k"))), reply(1, Reply::GetNotFound { key: "k".into() }));
        n.handle(req(2, 0, put("k", "v")));
        assert_eq!(n.handle(req(3, 1, get("k"))), reply(3, Reply::GetFound { value: "v".into() }));
    }

    #[test]
    fn fence_sends_staged_puts_up_once_all_local_ranks_entered() {
        let mut n = node(vec![0, 1]);
        n.handle(req(1, 0, put("b", "2")));
        n.handle(req(2, 1, put("a", "1")));
        assert_eq!(n.handle(req(3, 0, Request::Fence)), vec![]);
        assert_eq!(
            n.handle(req(4, 1, Request::Fence)),
            vec![NodeOutput::FenceUp {
                epoch: 0,
                pairs: vec![("a".into(), "1".into()), ("b".into(), "2".into())]
            }]
        );
        // Still gettable while the fence is out.
        assert_eq!(n.handle(req(5, 0, get("a"))), reply(5, Reply::GetFound { value: "1".into() }));
        // Stale or premature FenceDowns release nothing.
        assert_eq!(n.handle(NodeInput::FenceDown { epoch: 1, pairs: vec![] }), vec![]);
        let out = n.handle(NodeInput::FenceDown {
            epoch: 0,
            pairs: vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("remote".into(), "r".into()),
            ],
        });
        assert_eq!(
            out,
            vec![
                NodeOutput::Reply { id: 3, reply: Reply::FenceDone },
                NodeOutput::Reply { id: 4, reply: Reply::FenceDone }
            ]
        );
        assert_eq!(
            n.handle(req(6, 1, get("remote"))),
            reply(6, Reply::GetFound { value: "r".into() })
        );
        // A duplicate FenceDown does not release anything twice.
        assert_eq!(n.handle(NodeInput::FenceDown { epoch: 0, pairs: vec![] }), vec![]);
        // The next fence is epoch 1 and starts empty.
        n.handle(req(7, 0, Request::Fence));
        assert_eq!(
            n.handle(req(8, 1, Request::Fence)),
            vec![NodeOutput::FenceUp { epoch: 1, pairs: vec![] }]
        );
    }

    #[test]
    fn entering_a_fence_twice_fails_the_job() {
        let mut n = node(vec![0, 1]);
        n.handle(req(1, 0, Request::Fence));
        let out = n.handle(req(2, 0, Request::Fence));
        assert_eq!(
            out,
            vec![NodeOutput::Failed {
                rank: 0,
                reason: FailReason::FenceEnteredTwice { rank: 0, epoch: 0 }
            }]
        );
    }

    #[test]
    fn fence_from_a_rank_this_node_does_not_host_fails() {
        let mut n = node(vec![0, 1]);
        let out = n.handle(req(1, 7, Request::Fence));
        assert!(matches!(
            out.as_slice(),
            [NodeOutput::Failed { reason: FailReason::NotLocal { rank: 7, node: 0 }, .. }]
        ));
    }

    #[test]
    fn process_mapping_comes_from_the_job_in_both_protocols() {
        let mut n = node(vec![0]);
        assert_eq!(
            n.handle(req(1, 0, get("PMI_process_mapping"))),
            reply(1, Reply::GetFound { value: "(vector,(0,2,2))".into() })
        );
        assert_eq!(
            n.handle(req(2, 0, Request::JobAttrGet { key: "PMI_process_mapping".into() })),
            reply(2, Reply::JobAttrFound { value: "(vector,(0,2,2))".into() })
        );
        assert_eq!(
            n.handle(req(3, 0, Request::JobAttrGet { key: "universeSize".into() })),
            reply(3, Reply::JobAttrFound { value: "4".into() })
        );
        assert_eq!(
            n.handle(req(4, 0, Request::JobAttrGet { key: "PMI_dead_processes".into() })),
            reply(4, Reply::JobAttrNotFound)
        );

        let mut n = NodePmi::new(job(4, None), 0, vec![0]);
        assert_eq!(
            n.handle(req(1, 0, get("PMI_process_mapping"))),
            reply(1, Reply::GetNotFound { key: "PMI_process_mapping".into() })
        );
        assert_eq!(
            n.handle(req(2, 0, Request::JobAttrGet { key: "PMI_process_mapping".into() })),
            reply(2, Reply::JobAttrNotFound)
        );
    }

    #[test]
    fn simple_queries() {
        let mut n = node(vec![2, 3]);
        assert_eq!(
            n.handle(req(1, 2, Request::Initack { id: 2 })),
            reply(1, Reply::Initack { size: 4, rank: 2 })
        );
        assert_eq!(
            n.handle(req(2, 3, Request::FullInit { rank: Some(3), jobid: None })),
            reply(2, Reply::FullInit { rank: 3, size: 4, appnum: 0 })
        );
        assert_eq!(n.handle(req(3, 2, Request::GetUniverseSize)), reply(3, Reply::UniverseSize(4)));
        assert_eq!(n.handle(req(4, 2, Request::JobGetId)), reply(4, Reply::JobId("job.0".into())));
        assert_eq!(
            n.handle(req(5, 2, Request::GetKvsName)),
            reply(5, Reply::KvsName("kvs_test_0".into()))
        );
        assert!(matches!(
            n.handle(req(6, 2, Request::Spawn)).as_slice(),
            [NodeOutput::Reply { id: 6, reply: Reply::SpawnRefused { .. } }]
        ));
        assert_eq!(
            n.handle(req(7, 2, Request::Unknown { cmd: "frob".into() })),
            reply(7, Reply::UnknownCommand { cmd: "frob".into() })
        );
    }

    #[test]
    fn wrong_kvsname_is_refused() {
        let mut n = node(vec![0]);
        let out = n.handle(req(
            1,
            0,
            Request::Put { kvsname: Some("other".into()), key: "k".into(), value: "v".into() },
        ));
        assert!(matches!(
            out.as_slice(),
            [NodeOutput::Reply {
                reply: Reply::PutFailed { message },
                ..
            }] if message.contains("other") && message.contains("kvs_test_0")
        ));
        n.handle(req(2, 0, put("k", "v")));
        assert_eq!(
            n.handle(req(3, 0, Request::Get { kvsname: Some("other".into()), key: "k".into() })),
            reply(3, Reply::GetNotFound { key: "k".into() })
        );
    }

    #[test]
    fn node_attributes_are_local_and_wait_holds_the_reply() {
        let mut n = node(vec![0, 1, 2]);
        assert_eq!(
            n.handle(req(1, 1, Request::NodeAttrGet { key: "bcast".into(), wait: false })),
            reply(1, Reply::NodeAttrNotFound)
        );
        assert_eq!(
            n.handle(req(2, 1, Request::NodeAttrGet { key: "bcast".into(), wait: true })),
            vec![]
        );
        assert_eq!(
            n.handle(req(3, 2, Request::NodeAttrGet { key: "bcast".into(), wait: true })),
            vec![]
        );
        assert_eq!(
            n.handle(req(4, 0, Request::NodeAttrPut { key: "bcast".into(), value: "shm".into() })),
            vec![
                NodeOutput::Reply { id: 2, reply: Reply::NodeAttrFound { value: "shm".into() } },
                NodeOutput::Reply { id: 3, reply: Reply::NodeAttrFound { value: "shm".into() } },
                NodeOutput::Reply { id: 4, reply: Reply::NodeAttrPutDone },
            ]
        );
        assert_eq!(
            n.handle(req(5, 2, Request::NodeAttrGet { key: "bcast".into(), wait: true })),
            reply(5, Reply::NodeAttrFound { value: "shm".into() })
        );
        // Node attributes are not KVS entries.
        assert_eq!(
            n.handle(req(6, 2, get("bcast"))),
            reply(6, Reply::GetNotFound { key: "bcast".into() })
        );
    }

    #[test]
    fn abort_gets_no_reply() {
        let mut n = node(vec![0]);
        assert_eq!(
            n.handle(req(1, 0, Request::Abort { code: 3, message: None })),
            vec![NodeOutput::Abort { rank: 0, code: 3, message: None }]
        );
    }

    #[test]
    fn name_service_goes_to_the_root_and_back() {
        let mut n = node(vec![0]);
        let request = Request::Lookup { service: "svc".into() };
        assert_eq!(
            n.handle(req(9, 0, request.clone())),
            vec![NodeOutput::NameUp { id: 9, rank: 0, request }]
        );
        assert_eq!(
            n.handle(NodeInput::NameDown { id: 9, reply: Reply::LookupNotFound }),
            reply(9, Reply::LookupNotFound)
        );
    }

    #[test]
    fn rank_leaving_after_init_without_finalize_fails() {
        let mut n = node(vec![0, 1]);
        n.handle(req(1, 1, Request::Init { version: 1, subversion: 1 }));
        let out = n.handle(NodeInput::RankGone { rank: 1 });
        assert_eq!(
            out,
            vec![NodeOutput::Failed {
                rank: 1,
                reason: FailReason::ExitedWithoutFinalize { rank: 1 }
            }]
        );
        assert_eq!(
            FailReason::ExitedWithoutFinalize { rank: 3 }.to_string(),
            "rank 3 closed its PMI connection without calling finalize (it exited or crashed inside MPI)"
        );
        // Reported once.
        assert_eq!(n.handle(NodeInput::RankGone { rank: 1 }), vec![]);
    }

    #[test]
    fn silent_rank_leaving_is_fine_until_a_fence_needs_it() {
        let mut n = node(vec![0, 1, 2]);
        assert_eq!(n.handle(NodeInput::RankGone { rank: 2 }), vec![]);
        assert_eq!(n.handle(NodeInput::RankGone { rank: 9 }), vec![], "not ours");
        let out = n.handle(req(1, 0, Request::Fence));
        let want = FailReason::FenceAbandoned {
            epoch: 0,
            exited: vec![2],
            finalized: vec![],
            waiting: vec![0],
        };
        assert_eq!(
            out,
            vec![NodeOutput::Failed { rank: 2, reason: want }],
            "reported on the first entry"
        );
        assert_eq!(n.handle(req(2, 1, Request::Fence)), vec![], "and only once");
    }

    #[test]
    fn silent_rank_leaving_while_a_fence_is_pending_fails_at_once() {
        let mut n = node(vec![0, 1, 2]);
        n.handle(req(1, 0, Request::Fence));
        n.handle(req(2, 1, Request::Fence));
        let out = n.handle(NodeInput::RankGone { rank: 2 });
        let reason = FailReason::FenceAbandoned {
            epoch: 0,
            exited: vec![2],
            finalized: vec![],
            waiting: vec![0, 1],
        };
        assert_eq!(
            reason.to_string(),
            "PMI fence #0 can never complete: rank 2 exited without entering it, while ranks 0, 1 are waiting in it"
        );
        assert_eq!(out, vec![NodeOutput::Failed { rank: 2, reason }]);
    }

    #[test]
    fn fence_after_a_local_rank_finalized_fails() {
        let mut n = node(vec![0, 1]);
        n.handle(req(1, 1, Request::Finalize));
        let out = n.handle(req(2, 0, Request::Fence));
        let reason = FailReason::FenceAbandoned {
            epoch: 0,
            exited: vec![],
            finalized: vec![1],
            waiting: vec![0],
        };
        assert_eq!(
            reason.to_string(),
            "PMI fence #0 can never complete: rank 1 already called finalize, while rank 0 is waiting in it"
        );
        assert_eq!(out, vec![NodeOutput::Failed { rank: 1, reason }]);
    }

    #[test]
    fn finalize_then_exit_is_clean() {
        let mut n = node(vec![0]);
        n.handle(req(1, 0, Request::Init { version: 1, subversion: 1 }));
        assert_eq!(
            n.handle(req(2, 0, Request::Finalize)),
            vec![
                NodeOutput::Reply { id: 2, reply: Reply::FinalizeAck },
                NodeOutput::Finalized { rank: 0 }
            ]
        );
        assert_eq!(n.handle(NodeInput::RankGone { rank: 0 }), vec![]);
    }
}
