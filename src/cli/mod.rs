//! The command line: one module per subcommand, each turning clap's flags into a checked request.

pub mod directives;
pub mod proxy;
pub mod run;
pub mod topology;

use clap::{Parser, Subcommand};

/// gangway: gang allocations and an MPI launcher in one binary.
#[derive(Debug, Parser)]
#[command(name = "gangway", version, propagate_version = true)]
#[command(about = "Launch MPI and other SPMD jobs: `gangway run -n 4 ./a.out`")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run N copies (ranks) of a program, wired up for MPI through PMI.
    Run(Box<run::RunArgs>),
    /// The per-node helper of a multi-node run (started by gangway itself over SSH).
    #[command(hide = true)]
    Proxy(proxy::ProxyArgs),
    /// Show this machine's hardware (packages, NUMA nodes, caches, cores, PUs, GPUs).
    Topology(topology::TopologyArgs),
}
