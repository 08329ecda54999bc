//! The messages between the launcher and its proxies.
//!
//! Each travels as one `postcard` body in one message of an encrypted call-back link
//! (`callback.rs`). Every link starts with [`Up::Hello`], whose version must match; a
//! proxy then gets its [`NodeJob`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::binding::BindingOptions;
use crate::bootstrap::ssh_config::HostKeyPolicy;
use crate::bootstrap::{self, Bootstrap};
use crate::exit_status::RankStatus;
use crate::pmi::pmix::MpiKind;
use crate::pmi::pmix_root::{PmixDown, PmixUp};
use crate::pmi::server::{PmiEvent, PmiMode};
use crate::pmi::wire::{Reply, Request};

/// Bumped on any change to these messages; a proxy of another version is refused by name.
/// 3: output is credited back ([`Down::Credit`]). 4: PMIx ([`Up::Pmix`], [`Down::Pmix`], the
/// job's layout in [`NodeJob`]). 5: PMIx names across nodes (`PmixUp::Publish` and the like).
pub const PROTOCOL_VERSION: u32 = 5;

/// The largest message accepted: a fence can carry every rank's business card (bounded by the
/// KVS limits, `pmi::limits`).
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// How to reach one node and what runs there, for the proxy that starts it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subtree {
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub job: NodeJob,
    /// The nodes this node's proxy starts in turn.
    pub below: Vec<Subtree>,
}

impl Subtree {
    /// Every node id in this subtree.
    pub fn node_ids(&self) -> Vec<u32> {
        let mut ids = vec![self.job.node_id];
        for child in &self.below {
            ids.extend(child.node_ids());
        }
        ids
    }
}

/// Everything a proxy needs to run its node's share of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeJob {
    pub node_id: u32,
    pub nnodes: u32,
    pub nodelist: String,
    pub job_id: String,
    pub size: u32,
    /// Global ranks on this node, ascending.
    pub ranks: Vec<u32>,
    pub program: Vec<u8>,
    pub argv0: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub cwd: Option<Vec<u8>>,
    /// The ranks' environment before their own variables (already filtered by `--export`).
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    pub label: bool,
    /// Which ranks read the launcher's stdin (`--input`).
    pub input: crate::input::InputMode,
    pub kvsname: String,
    pub process_mapping: Option<String>,
    pub pmi_mode: PmiMode,
    /// Which PMI services the ranks get (`--mpi`).
    pub mpi: MpiKind,
    /// Every node's name by node id, and every rank's node id: a PMIx server registers the
    /// whole job's layout, not only this node's share.
    pub node_names: Vec<String>,
    pub node_of_rank: Vec<u32>,
    pub binding: BindingOptions,
    pub bootstrap: BootstrapConfig,
    pub proxy_path: String,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
}

/// How proxies start the proxies below them (the launcher's own choice, passed down).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub kind: LauncherKind,
    pub config_file: Option<PathBuf>,
    pub identity_files: Vec<PathBuf>,
    pub host_key_policy: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    /// With [`LauncherKind::Agent`]: the step credential the agents check.
    pub agent_credential: Option<String>,
    /// With [`LauncherKind::Agent`]: each node's agent address, by node name.
    pub agent_hosts: Vec<(String, String)>,
    /// With [`LauncherKind::Agent`]: the step's link key (hex), from the controller's grant.
    pub agent_link_key: Option<String>,
}

/// `--launcher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LauncherKind {
    /// libssh2 in-process (the default).
    Ssh,
    /// The system `ssh` binary.
    OpenSsh,
    /// Proxies on this machine (tests, and a single node).
    Local,
    /// The nodes' `gangway agent`s, with a controller-signed step credential.
    Agent,
}

impl BootstrapConfig {
    /// The bootstrap this configuration describes.
    pub fn build(&self) -> Result<Arc<dyn Bootstrap>, String> {
        let policy = match &self.host_key_policy {
            Some(p) => Some(p.parse::<HostKeyPolicy>().map_err(|e| e.to_string())?),
            None => None,
        };
        let timeout = self.connect_timeout_ms.map(Duration::from_millis);
        Ok(match self.kind {
            LauncherKind::Ssh => Arc::new(
                bootstrap::ssh::Ssh2Bootstrap::new(bootstrap::ssh::SshOptions {
                    config_file: self.config_file.clone(),
                    host_key_policy: policy,
                    connect_timeout: timeout,
                    identity_files: self.identity_files.clone(),
                    known_hosts_files: None,
                    no_agent: false,
                })
                .map_err(|e| e.to_string())?,
            ),
            LauncherKind::OpenSsh => Arc::new(bootstrap::openssh::OpenSshBootstrap::new(
                bootstrap::openssh::OpenSshOptions {
                    program: PathBuf::from("ssh"),
                    config_file: self.config_file.clone(),
                    connect_timeout: timeout,
                    host_key_policy: policy,
                    identity_files: self.identity_files.clone(),
                    options: Vec::new(),
                },
            )),
            LauncherKind::Local => Arc::new(bootstrap::local::LocalBootstrap { callback_ip: None }),
            LauncherKind::Agent => Arc::new(bootstrap::agent::AgentBootstrap {
                credential: self
                    .agent_credential
                    .clone()
                    .ok_or("the agent launcher needs a step credential")?,
                link_key: self
                    .agent_link_key
                    .as_deref()
                    .and_then(gangway_link::Psk::from_hex)
                    .ok_or("the agent launcher needs the step's link key (64 hex digits)")?,
                hosts: self.agent_hosts.iter().cloned().collect(),
                connect_timeout: timeout,
            }),
        })
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a remote rank ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteEnd {
    Status(RankStatus),
    /// A set-up step or exec failed; `step` is its description.
    SetupFailed {
        errno: i32,
    },
}

/// From the launcher (or a proxy relaying it) down to proxies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Down {
    /// The receiving proxy's work, with the subtrees it must start.
    Start(Box<Subtree>),
    /// A fence is complete everywhere: the new pairs.
    FenceDone {
        epoch: u64,
        pairs: Vec<(String, String)>,
    },
    /// The root's answer to a name-service request.
    Name {
        id: u64,
        reply: Reply,
    },
    /// Bytes for the stdin rank.
    Input(Vec<u8>),
    InputEnd,
    /// Send this signal to every local rank's process group.
    Signal(i32),
    /// A PMIx fence's result, or a direct-modex request or answer.
    Pmix(PmixDown),
    Ping(u64),
    /// The launcher took this many bytes of the receiving proxy's output into its own budget:
    /// the proxy may send that much more (see [`crate::flow`]).
    Credit(u64),
}

/// A down message and who it is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// `None`: every proxy.
    pub to: Option<u32>,
    pub msg: Down,
}

/// From proxies up to the launcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Up {
    /// The first message of every link. Fields stay in this order across versions (variant 0,
    /// then the version), so that a proxy of another version can be named.
    Hello {
        version: u32,
        node_id: u32,
        hostname: String,
    },
    /// All local ranks started; `address` is the node's address as its parent sees it.
    Started {
        node_id: u32,
        pids: Vec<(u32, u32)>,
        address: String,
    },
    /// The node could not start its ranks (or its children): the job cannot run.
    StartFailed {
        node_id: u32,
        message: String,
    },
    Output {
        rank: u32,
        stream: Stream,
        /// As one byte string: a sequence of u8 costs a call per byte each way.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    Exited {
        rank: u32,
        pid: u32,
        end: RemoteEnd,
    },
    Pmi(PmiEvent),
    Fence {
        node_id: u32,
        epoch: u64,
        pairs: Vec<(String, String)>,
    },
    Name {
        node_id: u32,
        id: u64,
        request: Request,
    },
    /// A node's PMIx fence contribution, or a direct-modex request or answer.
    Pmix {
        node_id: u32,
        msg: PmixUp,
    },
    Pong {
        node_id: u32,
        seq: u64,
    },
    /// A proxy lost the connection to the proxies below it.
    Lost {
        node_ids: Vec<u32>,
        reason: String,
    },
}

/// A message that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error(transparent)]
    Link(#[from] gangway_link::LinkError),
}
