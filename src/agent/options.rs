//! How an agent runs: its controller, key, name, ports, spool and limits.

use std::path::PathBuf;
use std::time::Duration;

use gangway_topology::Topology;

use super::cgroups::NodeCgroups;
use crate::auth::Key;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub controller: String,
    pub key: Key,
    pub name: String,
    /// Address launchers use to reach this agent (None: as the controller sees us).
    pub address: Option<String>,
    pub port: u16,
    pub spool: PathBuf,
    /// The local socket users and jobs reach the controller through.
    pub socket: PathBuf,
    pub topology: Topology,
    /// The stand-in model's file (`--topology-xml`), told to step proxies: they place ranks
    /// on the model the grants were made on. `None`: this machine's own.
    pub topology_file: Option<PathBuf>,
    pub kill_grace: Duration,
    /// Local connections one user may hold at once (0: no limit).
    pub max_connections_per_user: usize,
    /// The cgroups of this node's jobs (None: turned off, or not permitted).
    pub cgroups: Option<NodeCgroups>,
}
