//! `gangway nodes`: the cluster's nodes, their state, CPUs, memory and load (like sinfo).

use clap::Args;

use super::error::{CliError, ask};
use super::query::render_nodes;
use crate::protocol::{Reply, Request};

/// Flags of `gangway nodes`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway nodes        one line per node: state, CPUs allocated/idle/total, memory, load, reason"
)]
pub struct NodesArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gangway nodes`.
pub fn main(args: NodesArgs) -> Result<(), CliError> {
    match ask(&Request::Nodes)? {
        Reply::Nodes { nodes } => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&nodes).unwrap_or_default());
            } else {
                print!("{}", render_nodes(&nodes));
            }
            Ok(())
        }
        other => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}
