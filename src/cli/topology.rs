//! `gangway topology`: the machine as the allocator and the binding code see it.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use gangway_launcher::binding::{self, Machine};

use super::error::CliError;

const EXAMPLES: &str = "\
Examples:
  gangway topology                                   this machine
  gangway topology --json                            the same as JSON (the model gangway uses)
  gangway topology --topology-xml machine.xml        another machine, from `lstopo machine.xml`
  gangway topology --synthetic 'pack:2 numa:2 core:8 pu:2'";

/// Flags of `gangway topology`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TopologyArgs {
    /// Show the machine in this hwloc XML export instead of this one.
    #[arg(long, value_name = "FILE", conflicts_with = "synthetic")]
    pub topology_xml: Option<PathBuf>,

    /// Show an hwloc synthetic machine, e.g. "pack:2 numa:2 core:8 pu:2".
    #[arg(long, value_name = "DESC")]
    pub synthetic: Option<String>,

    /// Print the model as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the tree (or JSON).
pub fn main(args: TopologyArgs) -> Result<(), CliError> {
    let machine = match (args.topology_xml, args.synthetic) {
        (Some(path), _) => Machine::XmlFile(path),
        (None, Some(desc)) => Machine::Synthetic(desc),
        (None, None) => Machine::Local,
    };
    let model = binding::load(&machine).map_err(|e| {
        // This machine's own description failing is no fault of the command line.
        if machine == Machine::Local {
            CliError::LaunchFailed(e.to_string())
        } else {
            CliError::Usage(e.to_string())
        }
    })?;
    let text = if args.json { model.to_json() } else { gangway_topology::render_tree(&model) };
    let _ = writeln!(std::io::stdout().lock(), "{}", text.trim_end());
    Ok(())
}
