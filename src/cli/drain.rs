//! `gangway drain` and `gangway resume`: take nodes out of service and put them back
//! (administrators).

use clap::Args;

use super::error::{CliError, ask};
use super::flag_values::NodeList;
use super::ok_reply::print_ok;
use crate::protocol::Request;

/// Flags of `gangway drain`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway drain node3 --reason 'bad DIMM'    no new jobs on node3; running ones finish"
)]
pub struct DrainArgs {
    /// Nodes (hostlist: node[1-3]).
    #[arg(value_name = "NODES")]
    pub nodes: String,
    /// Why (shown by `gangway nodes`).
    #[arg(long, required = true)]
    pub reason: String,
}

/// Flags of `gangway resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(value_name = "NODES")]
    pub nodes: String,
}

/// The nodes of a hostlist argument; an error names the list.
fn nodes(list: &str) -> Result<NodeList, CliError> {
    list.parse().map_err(|e| CliError::Usage(format!("{list}: {e}")))
}

/// Runs `gangway drain`.
pub fn drain(args: DrainArgs) -> Result<(), CliError> {
    let nodes = nodes(&args.nodes)?.into_names();
    print_ok(ask(&Request::Drain { nodes, reason: args.reason })?)
}

/// Runs `gangway resume`.
pub fn resume(args: ResumeArgs) -> Result<(), CliError> {
    let nodes = nodes(&args.nodes)?.into_names();
    print_ok(ask(&Request::Resume { nodes })?)
}
