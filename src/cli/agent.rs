//! `gangway agent`: the per-node daemon, with its flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::daemon;
use super::error::CliError;
use crate::agent::{self, AgentOptions};
use crate::auth::Key;

/// Flags of `gangway agent`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway agent --controller head:7717 --key-file /etc/gangway/key\n  gangway agent --controller head:7717 --synthetic 'pack:2 core:8 pu:2'   stand in for a bigger node"
)]
pub struct AgentArgs {
    /// The controller's HOST:PORT.
    #[arg(long, env = "GANGWAY_CONTROLLER", value_name = "HOST:PORT")]
    pub controller: String,
    /// The cluster key (the controller's key_file).
    #[arg(long, default_value = "/etc/gangway/key", value_name = "FILE")]
    pub key_file: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// The address launchers reach this agent at (default: the one the controller sees).
    #[arg(long)]
    pub address: Option<String>,
    /// Port for step launches.
    #[arg(long, default_value_t = gangway_launcher::bootstrap::agent::DEFAULT_AGENT_PORT)]
    pub port: u16,
    /// Where batch scripts and the records of running job sessions are kept (default
    /// /var/spool/gangway/NAME; node-local; one agent per spool: it is locked).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// The local socket through which this node's users and jobs reach the controller
    /// (default SPOOL/agent.sock; jobs get it as GANGWAY_CONTROLLER).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Report this hwloc XML export as the node's hardware.
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub topology_xml: Option<PathBuf>,
    /// Report an hwloc synthetic machine ("pack:2 core:8 pu:2") as the node's hardware.
    #[arg(long, value_name = "DESC")]
    pub synthetic: Option<String>,
    /// After SIGTERM, how long a job's processes get before SIGKILL.
    #[arg(long, default_value = "5s")]
    pub kill_grace: String,
    /// Connections to the local socket one user may hold at once (root is not counted; 0: no
    /// limit); one more is refused with exit code 119.
    #[arg(long, value_name = "N", default_value_t = agent::local::DEFAULT_MAX_PER_USER)]
    pub max_connections_per_user: usize,
    /// The most processes and threads one job may run on this node at once (its cgroup's
    /// pids.max; default: no limit).
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,
    /// The directory of this agent's job cgroups at the top of each cgroup hierarchy (one per
    /// agent: its start-up sweep kills every job cgroup in it).
    #[arg(long, value_name = "NAME", default_value = "gangway")]
    pub cgroup_root: String,
    /// Run jobs without cgroups (also GANGWAY_NO_CGROUPS=1): CPUs bound by affinity only,
    /// memory not limited, nothing accounted, escaped processes not killed.
    #[arg(long)]
    pub no_cgroups: bool,
    #[arg(long, default_value = "info")]
    pub log: String,
}

/// Runs `gangway agent` until it is stopped.
pub fn main(args: AgentArgs) -> Result<(), CliError> {
    let runtime = daemon::start(&args.log)?;
    let usage = |e: String| CliError::Usage(e);
    let key = Key::load(&args.key_file).map_err(|e| usage(e.to_string()))?;
    let topology = match (&args.topology_xml, &args.synthetic) {
        (Some(p), _) => gangway_topology::Topology::from_xml_file(p),
        (None, Some(d)) => gangway_topology::Topology::from_synthetic(d),
        (None, None) => gangway_topology::Topology::discover(),
    };
    let topology = topology.map_err(|e| usage(e.to_string()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into())
    });
    let kill_grace = gangway_launcher::time_limit::parse_duration(&args.kill_grace)
        .map_err(|e| usage(format!("--kill-grace: {e}")))?;
    let spool =
        args.spool.clone().unwrap_or_else(|| PathBuf::from("/var/spool/gangway").join(&name));
    let socket = args.socket.clone().unwrap_or_else(|| agent::local::default_path(&spool));
    if args.cgroup_root.is_empty()
        || args.cgroup_root.contains('/')
        || args.cgroup_root.starts_with('.')
    {
        return Err(usage(format!(
            "--cgroup-root '{}': give a directory name (no '/', not starting with '.')",
            args.cgroup_root
        )));
    }
    let off = args.no_cgroups || std::env::var_os("GANGWAY_NO_CGROUPS").is_some_and(|v| v == "1");
    let cgroups = agent::cgroups::NodeCgroups::open(&name, &args.cgroup_root, off, args.pids_limit);
    let opts = AgentOptions {
        controller: args.controller.clone(),
        key,
        spool,
        socket,
        name,
        address: args.address.clone(),
        port: args.port,
        topology,
        // A stand-in model's file, for the step proxies to place ranks on the same model.
        topology_file: args
            .topology_xml
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or(p.clone())),
        kill_grace: kill_grace.max(Duration::from_millis(1)),
        max_connections_per_user: args.max_connections_per_user,
        cgroups,
    };
    runtime.block_on(agent::run(opts)).map_err(|e| CliError::Failed(e.to_string()))
}
