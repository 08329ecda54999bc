//! The PMIx half of a node's PMI service, for Open MPI ranks (Open MPI 4.1 speaks only PMIx):
//! which services a job gets (`--mpi`, [`MpiKind`]), this node's libpmix server for the job
//! ([`PmixServer`]: registration, each rank's environment, clean-up), and what the node does
//! with libpmix's upcalls ([`PmixNode`], owned by the PMI state task in `server.rs`).
//!
//! libpmix's threads and C callbacks stay inside `gangway-pmix`: its upcalls arrive here as
//! [`Event`]s on a channel, each carrying a reply that completes exactly once. Fences, direct
//! modex and published names that reach beyond this node go to the job's root as [`PmixUp`]
//! through the same channel as PMI-1/2 fences (`ToRoot`), and come back as [`PmixDown`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use gangway_pmix::{
    Event, LookupReply, ModexReply, Namespace, OpReply, PmixError, Proc, Published, Server, Status,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::events::{PmiEvent, ToRoot};
use super::pmix_names::{Answer, Asker, NameAnswer, NameRequest, NameValue, PmixNames};
use super::pmix_root::{PmixDown, PmixUp};

/// Which PMI services a job's ranks get (`--mpi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MpiKind {
    /// None at all: the ranks are not MPI programs (or wire up by other means).
    None,
    /// PMI-1 and PMI-2 (MPICH, Intel MPI, MVAPICH).
    Pmi2,
    /// PMIx (Open MPI); the job fails at start when libpmix is missing on a node.
    Pmix,
    /// Both side by side: each rank uses what its MPI speaks. Without libpmix on a node, that
    /// node serves PMI-1/2 only.
    #[default]
    Auto,
}

impl MpiKind {
    /// The spellings `--mpi` accepts, as the user sees them.
    pub const NAMES: [&'static str; 4] = ["pmi2", "pmix", "none", "auto"];

    /// Whether the ranks get the PMI-1/PMI-2 service.
    pub fn serves_pmi(self) -> bool {
        matches!(self, MpiKind::Pmi2 | MpiKind::Auto)
    }

    /// Whether the ranks get a PMIx server.
    pub fn serves_pmix(self) -> bool {
        matches!(self, MpiKind::Pmix | MpiKind::Auto)
    }
}

impl std::str::FromStr for MpiKind {
    type Err = String;

    /// Slurm's spellings too: `pmi1`/`pmi`/`pmi2` are the PMI-1/2 service, `pmix_v4` and the
    /// like are PMIx.
    fn from_str(s: &str) -> Result<MpiKind, String> {
        match s.to_ascii_lowercase().as_str() {
            "pmi2" | "pmi1" | "pmi" => Ok(MpiKind::Pmi2),
            "none" => Ok(MpiKind::None),
            "auto" => Ok(MpiKind::Auto),
            p if p == "pmix" || p.starts_with("pmix_v") => Ok(MpiKind::Pmix),
            other => Err(format!(
                "unknown MPI support {other:?}: use one of {}",
                MpiKind::NAMES.join(", ")
            )),
        }
    }
}

impl std::fmt::Display for MpiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MpiKind::None => "none",
            MpiKind::Pmi2 => "pmi2",
            MpiKind::Pmix => "pmix",
            MpiKind::Auto => "auto",
        })
    }
}

/// The job as a PMIx namespace seen from node `this_node`: `nodes` are the job's node names by
/// node id, `rank_nodes` the node id of every rank. Names unusable in libpmix's node map (empty,
/// or holding `,` or `;`) are replaced by `node<id>`, so a job is never refused for its names.
pub fn pmix_namespace(
    job_id: &str,
    nodes: Vec<String>,
    rank_nodes: Vec<u32>,
    this_node: u32,
) -> Namespace {
    let nodes = nodes
        .into_iter()
        .enumerate()
        .map(
            |(i, n)| {
                if n.is_empty() || n.contains([',', ';', '\0']) { format!("node{i}") } else { n }
            },
        )
        .collect();
    Namespace::new(format!("gangway.{job_id}"), nodes, rank_nodes, this_node)
}

/// The libpmix MCA variable naming an hwloc XML file its server loads instead of discovering
/// the machine.
const SERVER_TOPOLOGY_FILE: &str = "PMIX_MCA_pmix_hwloc_topo_file";

/// Points libpmix's server at this machine's cached hwloc XML ([`crate::binding::local_topology_xml`]
/// writes it on the first PMIx job), so that `PMIx_server_init` loads it instead of discovering
/// the machine: ~15 ms of CPU down to ~5 ms per server here. Nothing when the cache does not
/// exist yet or the variable is already set. Ranks never see the variable (`PMIX_*` of the
/// launcher's environment is not passed on).
///
/// # Safety
///
/// Changes the process environment: call it while the process has a single thread.
pub unsafe fn prefer_cached_topology() {
    if std::env::var_os(SERVER_TOPOLOGY_FILE).is_some() {
        return;
    }
    if let Some(path) = crate::binding::cached_topology_xml_path() {
        // SAFETY: the caller guarantees no other thread runs, so none reads the environment.
        unsafe { std::env::set_var(SERVER_TOPOLOGY_FILE, path) };
    }
}

/// This node's libpmix server, serving one job. The last handle to go deregisters the job,
/// finalizes the server and removes its directory (rendezvous files, Open MPI's session files).
#[derive(Debug)]
pub struct PmixServer {
    server: Option<Server>,
    nspace: String,
    dir: PathBuf,
    uid: u32,
    gid: u32,
}

impl PmixServer {
    /// Loads libpmix, starts the server in a private directory under `$TMPDIR` (node-local) and
    /// registers the job; first removes the directories of this user's servers whose process
    /// is gone. Returns the server and the channel its upcalls arrive on. Blocks for
    /// the few milliseconds libpmix takes to start its threads.
    pub fn start(
        mut ns: Namespace,
    ) -> Result<(Arc<PmixServer>, UnboundedReceiver<Event>), PmixError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let tmp = std::env::temp_dir();
        sweep_dead_servers(&tmp, uid);
        let dir = tmp.join(format!("{DIR_PREFIX}{uid}.{}", std::process::id()));
        // Private: another user must not reach the server's rendezvous files.
        {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        }
        ns.session_dir = Some(dir.join("session"));
        ns.topology_xml = crate::binding::local_topology_xml();
        let (server, events) = Server::start(&dir).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        // From here on, dropping `this` cleans up (on the error below too).
        let this = PmixServer { server: Some(server), nspace: ns.name.clone(), dir, uid, gid };
        if let Some(server) = &this.server {
            server.register_namespace(&ns)?;
        }
        Ok((Arc::new(this), events))
    }

    /// The job's PMIx namespace.
    pub fn nspace(&self) -> &str {
        &self.nspace
    }

    /// Registers `rank` as a local client and returns the variables that lead it to this server
    /// (libpmix's `setup_fork`, then what makes Open MPI take the PMIx path).
    pub fn rank_env(&self, rank: u32) -> Result<Vec<(String, String)>, PmixError> {
        let server = self.server.as_ref().ok_or(PmixError::AlreadyUsed)?;
        let proc = Proc::new(&self.nspace, rank);
        server.register_client(&proc, self.uid, self.gid)?;
        server.setup_fork(&proc)
    }

    fn server(&self) -> Option<&Server> {
        self.server.as_ref()
    }
}

/// The start of a server directory's name; `<uid>.<pid>` follows.
const DIR_PREFIX: &str = "gangway-pmix.";

/// Removes the directories that servers of `uid` left behind when their process was killed
/// (SIGKILL gives no chance to clean up), so they do not pile up in `tmp`.
fn sweep_dead_servers(tmp: &std::path::Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    let mine = format!("{DIR_PREFIX}{uid}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&mine)?.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for PmixServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.deregister_namespace(&self.nspace);
            if let Err(e) = server.finalize() {
                tracing::debug!(target: "gangway::pmix", "{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the node does with libpmix's upcalls: the ranks' finalize and abort, fences (here, or
/// through the job's root), direct modex, and names (here, or in the root's table). Owned by the PMI state task, which also
/// tells it when a rank's process is gone.
#[derive(Debug)]
pub struct PmixNode {
    server: Arc<PmixServer>,
    /// Where fences and direct modex go when the job spans nodes; `None`: this is its only node.
    upstream: Option<UnboundedSender<ToRoot>>,
    events: UnboundedSender<PmiEvent>,
    connected: HashSet<u32>,
    finalized: HashSet<u32>,
    /// This node's fences sent up, by sequence number; every node fences in the same order, so
    /// the numbers agree job-wide.
    next_fence: u64,
    fences: BTreeMap<u64, ModexReply>,
    /// Direct-modex requests sent up, by tag.
    next_ask: u64,
    asks: HashMap<u64, ModexReply>,
    /// The job's published names when this is its only node; otherwise the root holds them.
    names: Option<PmixNames>,
    /// Name requests waiting for their answer (from `names` or the root), by tag.
    next_name: u64,
    name_replies: HashMap<u64, NameReply>,
}

/// The reply a name request waits to give.
#[derive(Debug)]
enum NameReply {
    /// Publish or unpublish.
    Op(OpReply),
    Lookup(LookupReply),
}

impl PmixNode {
    pub fn new(
        server: Arc<PmixServer>,
        upstream: Option<UnboundedSender<ToRoot>>,
        events: UnboundedSender<PmiEvent>,
    ) -> PmixNode {
        let upstream_is_none = upstream.is_none();
        PmixNode {
            server,
            upstream,
            events,
            connected: HashSet::new(),
            finalized: HashSet::new(),
            next_fence: 0,
            fences: BTreeMap::new(),
            next_ask: 0,
            asks: HashMap::new(),
            names: upstream_is_none.then(PmixNames::new),
            next_name: 0,
            name_replies: HashMap::new(),
        }
    }

    fn event(&self, event: PmiEvent) {
        let _ = self.events.send(event);
    }

    /// Whether a rank of this job is who libpmix says it is (the namespace is ours).
    fn ours(&self, proc: &Proc) -> Option<u32> {
        (proc.nspace == self.server.nspace).then_some(proc.rank)
    }

    /// Handles one upcall.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::ClientConnected { proc } => {
                if let Some(rank) = self.ours(&proc)
                    && self.connected.insert(rank)
                {
                    self.event(PmiEvent::Connected { rank });
                }
            }
            Event::ClientFinalized { proc, reply } => {
                if let Some(rank) = self.ours(&proc)
                    && self.finalized.insert(rank)
                {
                    self.event(PmiEvent::Finalized { rank });
                }
                reply.ok();
            }
            // The rank's exit, which the supervisor sees first, decides; see `rank_gone`.
            Event::ClientLost { proc } => {
                tracing::debug!(target: "gangway::pmix", "libpmix lost {proc}");
            }
            Event::Abort { proc, status, message, reply, .. } => {
                reply.ok();
                let rank = self.ours(&proc).unwrap_or(0);
                self.event(PmiEvent::Abort { rank, code: status, message });
            }
            Event::Fence { procs, collect_data: _, local_status, data, reply } => {
                self.fence(procs, local_status, data, reply)
            }
            Event::DirectModex { proc, reply } => self.direct_modex(proc, reply),
            Event::Publish { proc, data, reply, .. } => self.publish(proc, data, reply),
            Event::Lookup { proc, keys, wait, reply } => {
                let Some(rank) = self.ours(&proc) else { return reply.fail(Status::BAD_PARAM) };
                self.name_request(
                    NameReply::Lookup(reply),
                    NameRequest::Lookup { rank, keys, wait },
                );
            }
            Event::Unpublish { proc, keys, reply } => {
                let Some(rank) = self.ours(&proc) else { return reply.fail(Status::BAD_PARAM) };
                self.name_request(NameReply::Op(reply), NameRequest::Unpublish { rank, keys });
            }
            Event::SpawnRefused { proc, commands } => self.event(PmiEvent::Warning {
                message: format!(
                    "rank {} called MPI_Comm_spawn ({}), which gangway does not support: the \
                     call failed in the rank",
                    proc.rank,
                    commands.join(" ")
                ),
            }),
        }
    }

    /// `MPI_Publish_name`. Values of a type the name service does not carry are refused here,
    /// before anything is stored, and the user is told.
    fn publish(&mut self, proc: Proc, data: Vec<gangway_pmix::Info>, reply: OpReply) {
        let Some(rank) = self.ours(&proc) else { return reply.fail(Status::BAD_PARAM) };
        let mut pairs = Vec::with_capacity(data.len());
        for d in data {
            let type_name = format!("{:?}", d.value);
            match NameValue::from_pmix(d.value) {
                Some(value) => pairs.push((d.key, value)),
                None => {
                    self.event(PmiEvent::Warning {
                        message: format!(
                            "rank {rank} could not publish {:?} (MPI_Publish_name): gangway \
                             publishes strings, bytes and numbers, not {}",
                            d.key,
                            type_name.split(['(', ' ', '{']).next().unwrap_or_default()
                        ),
                    });
                    return reply.fail(Status::NOT_SUPPORTED);
                }
            }
        }
        self.name_request(NameReply::Op(reply), NameRequest::Publish { rank, data: pairs });
    }

    /// Tags a name request, then asks the table here (a job on one node) or the root.
    fn name_request(&mut self, reply: NameReply, request: NameRequest) {
        let id = self.next_name;
        self.next_name += 1;
        self.name_replies.insert(id, reply);
        let Some(names) = &mut self.names else {
            if let Some(up) = &self.upstream {
                let _ = up.send(ToRoot::Pmix(PmixUp::Names { id, request }));
            }
            return;
        };
        for Answer { to, answer } in names.handle(Asker { node: 0, id }, request) {
            self.name_answer(to.id, answer);
        }
    }

    /// Completes name request `id` with its answer; a limit's reason goes to the user.
    fn name_answer(&mut self, id: u64, answer: NameAnswer) {
        let Some(reply) = self.name_replies.remove(&id) else { return };
        let nspace = self.server.nspace();
        match (reply, answer) {
            (NameReply::Op(reply), NameAnswer::Done) => reply.ok(),
            (NameReply::Lookup(reply), NameAnswer::Found(records)) => reply.found(
                records
                    .into_iter()
                    .map(|r| Published {
                        publisher: Proc::new(nspace, r.publisher),
                        key: r.key,
                        value: r.value.into_pmix(),
                    })
                    .collect(),
            ),
            (reply, NameAnswer::Refused { status, why }) => {
                if let Some(message) = why {
                    self.event(PmiEvent::Warning { message });
                }
                match reply {
                    NameReply::Op(reply) => reply.fail(Status(status)),
                    NameReply::Lookup(reply) => reply.fail(Status(status)),
                }
            }
            // An answer of the wrong kind cannot come from the table; fail rather than guess.
            (NameReply::Op(reply), _) => reply.fail(Status::ERROR),
            (NameReply::Lookup(reply), _) => reply.fail(Status::ERROR),
        }
    }

    /// Every local participant entered a fence. On the job's only node that completes it;
    /// otherwise this node's blob goes to the root, which answers once every node sent one.
    /// Open MPI 4.1 fences the whole namespace (one wildcard process); a fence over a subset
    /// of ranks would involve only some nodes, which the root's collector does not track, so
    /// it is refused across nodes.
    fn fence(&mut self, procs: Vec<Proc>, local_status: Status, data: Vec<u8>, reply: ModexReply) {
        let Some(up) = &self.upstream else {
            return reply.data(data);
        };
        let whole_job =
            procs.iter().any(|p| p.nspace == self.server.nspace && p.rank == Proc::WILDCARD);
        if !whole_job {
            self.event(PmiEvent::Warning {
                message: format!(
                    "a PMIx fence over {} process(es) of the job was refused: across nodes \
                     gangway runs only fences of the whole job",
                    procs.len()
                ),
            });
            return reply.fail(Status::NOT_SUPPORTED);
        }
        if !local_status.is_success() {
            // A local rank left before entering: the job is failing already (its exit says why).
            tracing::debug!(target: "gangway::pmix", "fence with local status {local_status}");
        }
        let seq = self.next_fence;
        self.next_fence += 1;
        self.fences.insert(seq, reply);
        let _ = up.send(ToRoot::Pmix(PmixUp::Fence { seq, data }));
    }

    /// libpmix needs what a remote rank put: ask that rank's node through the root.
    fn direct_modex(&mut self, proc: Proc, reply: ModexReply) {
        let (Some(up), Some(rank)) = (&self.upstream, self.ours(&proc)) else {
            return reply.fail(Status::NOT_FOUND);
        };
        let id = self.next_ask;
        self.next_ask += 1;
        self.asks.insert(id, reply);
        let _ = up.send(ToRoot::Pmix(PmixUp::ModexAsk { id, rank }));
    }

    /// What the root sent this node.
    pub fn from_root(&mut self, msg: PmixDown) {
        match msg {
            PmixDown::FenceDone { seq, data } => {
                if let Some(reply) = self.fences.remove(&seq) {
                    reply.data(data);
                }
            }
            PmixDown::FenceFailed { seq } => {
                if let Some(reply) = self.fences.remove(&seq) {
                    reply.fail(Status::ERROR);
                }
            }
            PmixDown::ModexAnswer { id, data } => {
                if let Some(reply) = self.asks.remove(&id) {
                    match data {
                        Ok(blob) => reply.data(blob.into_vec()),
                        Err(status) => reply.fail(Status(status)),
                    }
                }
            }
            PmixDown::ModexAsk { from_node, id, rank } => self.answer_modex(from_node, id, rank),
            PmixDown::Names { id, answer } => self.name_answer(id, answer),
        }
    }

    /// Another node's rank needs what local `rank` put: libpmix answers once the rank has put
    /// it (a task waits for that, so the state task never does).
    fn answer_modex(&self, to_node: u32, id: u64, rank: u32) {
        let Some(up) = self.upstream.clone() else { return };
        let proc = Proc::new(self.server.nspace(), rank);
        let asked = match self.server.server() {
            Some(server) => server.dmodex_request(&proc).map_err(|e| {
                tracing::debug!(target: "gangway::pmix", "{e}");
                Status::NOT_FOUND.0
            }),
            None => Err(Status::NOT_FOUND.0),
        };
        tokio::spawn(async move {
            let data = match asked {
                Ok(answer) => match answer.await {
                    Ok(Ok(blob)) => Ok(serde_bytes::ByteBuf::from(blob)),
                    Ok(Err(status)) => Err(status.0),
                    Err(_) => Err(Status::ERROR.0),
                },
                Err(status) => Err(status),
            };
            let _ = up.send(ToRoot::Pmix(PmixUp::ModexAnswer { to_node, id, data }));
        });
    }

    /// A rank's process is gone. One that connected to PMIx and never finalized fails the job,
    /// like a PMI-1/2 rank that leaves without finalize: its peers would wait for it forever.
    /// Its finalize, if any, came first: libpmix holds the rank in `PMIx_Finalize` until the
    /// state task has answered it.
    pub fn rank_gone(&mut self, rank: u32) {
        if self.connected.contains(&rank) && !self.finalized.contains(&rank) {
            self.event(PmiEvent::Failed {
                rank: Some(rank),
                reason: format!("rank {rank} exited without calling MPI_Finalize (PMIx)"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpi_kinds_parse_with_slurm_spellings() {
        assert_eq!("pmix_v4".parse::<MpiKind>(), Ok(MpiKind::Pmix));
        assert_eq!("PMI2".parse::<MpiKind>(), Ok(MpiKind::Pmi2));
        assert_eq!("none".parse::<MpiKind>(), Ok(MpiKind::None));
        assert!("openmpi".parse::<MpiKind>().unwrap_err().contains("pmi2, pmix, none, auto"));
        assert!(MpiKind::Auto.serves_pmi() && MpiKind::Auto.serves_pmix());
        assert!(!MpiKind::Pmix.serves_pmi() && !MpiKind::Pmi2.serves_pmix());
    }

    /// A killed server's directory goes at the next start; a live one's and other users' stay.
    #[test]
    fn directories_of_dead_servers_are_swept() {
        let tmp = std::env::temp_dir().join(format!("gangway-sweep-test-{}", std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        for name in [
            format!("{DIR_PREFIX}7.{dead}"),
            format!("{DIR_PREFIX}7.{live}"),
            format!("{DIR_PREFIX}8.{dead}"),
        ] {
            std::fs::create_dir_all(tmp.join(name).join("inside")).unwrap();
        }
        sweep_dead_servers(&tmp, 7);
        let mut left: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(left, [format!("{DIR_PREFIX}7.{live}"), format!("{DIR_PREFIX}8.{dead}")]);
    }
}
