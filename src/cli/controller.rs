//! `gangway controller`: the cluster's controller daemon, with its flags.

use std::path::PathBuf;

use clap::Args;

use super::daemon;
use super::error::CliError;
use crate::controller::config::Config;
use crate::controller::server;

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

/// Runs `gangway controller` until it is stopped.
pub fn main(args: ControllerArgs) -> Result<(), CliError> {
    let runtime = daemon::start(&args.log)?;
    let config = Config::load(&args.config).map_err(|e| CliError::Usage(e.to_string()))?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    runtime.block_on(server::run(config, |_| {})).map_err(|e| CliError::Failed(e.to_string()))
}
