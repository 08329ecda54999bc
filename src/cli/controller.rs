//! `gangway controller` and `gangway agent`: the two daemons, with their flags and logging.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::agent::{self, AgentOptions};
use crate::auth::Key;
use crate::controller::config::Config;
use crate::controller::limits::raise_fd_limit;
use crate::controller::server;
use crate::exit_code;

const CONTROLLER_EXAMPLES: &str = "\
Example (/etc/gangway/gangway.toml):
  cluster = \"demo\"
  listen = \"0.0.0.0:7717\"            # agents and remote commands (TCP)
  socket = \"/run/gangway/controller.sock\"  # local commands
  state_dir = \"/var/lib/gangway\"     # SQLite database and lock
  key_file = \"/etc/gangway/key\"      # `gangway keygen`, same file on every node
  heartbeat_interval = \"1s\"
  suspect_timeout = \"3s\"
  lost_timeout = \"6s\"                # silent this long: lost, jobs requeued elsewhere
  fence_margin = \"500ms\"             # agents kill their jobs this long before that
  [[partition]]
  name = \"batch\"
  nodes = \"node[1-3]\"
  default = true
  max_time = \"1-00:00:00\"
Then: gangway controller --config /etc/gangway/gangway.toml";

/// Flags of `gangway controller`.
#[derive(Debug, Args)]
#[command(after_help = CONTROLLER_EXAMPLES)]
pub struct ControllerArgs {
    /// The configuration file (TOML).
    #[arg(short = 'C', long, value_name = "FILE", default_value = "/etc/gangway/gangway.toml")]
    pub config: PathBuf,
    /// Log level: error, warn, info, debug.
    #[arg(long, default_value = "info")]
    pub log: String,
}

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
    #[arg(long, default_value = "info")]
    pub log: String,
}

fn init_logging(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!("gangway={level}")))
        .with_target(false)
        .try_init();
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().ok()
}

/// Runs `gangway controller`.
pub fn controller(args: ControllerArgs) -> u8 {
    init_logging(&args.log);
    raise_fd_limit();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gangway: error: {e}");
            return exit_code::USAGE;
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let Some(rt) = runtime() else { return exit_code::FAILURE };
    match rt.block_on(server::run(config, |_| {})) {
        Ok(()) => exit_code::SUCCESS,
        Err(e) => {
            eprintln!("gangway: error: {e}");
            exit_code::FAILURE
        }
    }
}

/// Runs `gangway agent`.
pub fn agent(args: AgentArgs) -> u8 {
    init_logging(&args.log);
    raise_fd_limit();
    let fail = |m: String, code: u8| {
        eprintln!("gangway: error: {m}");
        code
    };
    let key = match Key::load(&args.key_file) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string(), exit_code::USAGE),
    };
    let topology = match (&args.topology_xml, &args.synthetic) {
        (Some(p), _) => gangway_topology::Topology::from_xml_file(p),
        (None, Some(d)) => gangway_topology::Topology::from_synthetic(d),
        (None, None) => gangway_topology::Topology::discover(),
    };
    let topology = match topology {
        Ok(t) => t,
        Err(e) => return fail(e.to_string(), exit_code::USAGE),
    };
    let name = args.name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into())
    });
    let kill_grace = match gangway_launcher::time_limit::parse_duration(&args.kill_grace) {
        Ok(d) => d,
        Err(e) => return fail(format!("--kill-grace: {e}"), exit_code::USAGE),
    };
    let spool =
        args.spool.clone().unwrap_or_else(|| PathBuf::from("/var/spool/gangway").join(&name));
    let socket = args.socket.clone().unwrap_or_else(|| agent::local::default_path(&spool));
    let opts = AgentOptions {
        controller: args.controller.clone(),
        key,
        spool,
        socket,
        name,
        address: args.address.clone(),
        port: args.port,
        topology,
        kill_grace: kill_grace.max(Duration::from_millis(1)),
        max_connections_per_user: args.max_connections_per_user,
    };
    let Some(rt) = runtime() else { return exit_code::FAILURE };
    match rt.block_on(agent::run(opts)) {
        Ok(()) => exit_code::SUCCESS,
        Err(e) => fail(e.to_string(), exit_code::FAILURE),
    }
}
