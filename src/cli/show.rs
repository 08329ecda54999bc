//! `gangway show job|node`: everything about one job or node (like scontrol show).

use clap::{Args, Subcommand};

use super::error::{CliError, ask};
use super::query::{render_job, render_node};
use crate::protocol::{Reply, Request};

/// `gangway show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(subcommand)]
    pub what: ShowWhat,
}

/// What to show.
#[derive(Debug, Subcommand)]
pub enum ShowWhat {
    /// Everything about a job: shape, nodes, CPU map, pending reason, events, and once it ran
    /// its CPU time, peak memory and CPU efficiency (job and each step).
    #[command(
        after_help = "Example:\n  gangway show job 7     ... TotalCPU=0:01.171 ... MaxMemory=204.6 MiB\n                         Efficiency: CPU 6.2% (0:01.171 of 4 CPUs x 4.7s elapsed)"
    )]
    Job {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Everything about a node: hardware, state, jobs and their CPUs.
    Node {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// Runs `gangway show`.
pub fn main(args: ShowArgs) -> Result<(), CliError> {
    match args.what {
        ShowWhat::Job { id, json } => match ask(&Request::ShowJob { id })? {
            Reply::Job(j) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
                } else {
                    print!("{}", render_job(&j));
                }
                Ok(())
            }
            other => Err(CliError::UnexpectedReply(Box::new(other))),
        },
        ShowWhat::Node { name, json } => match ask(&Request::ShowNode { name })? {
            Reply::Node(n) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&n).unwrap_or_default());
                } else {
                    print!("{}", render_node(&n));
                }
                Ok(())
            }
            other => Err(CliError::UnexpectedReply(Box::new(other))),
        },
    }
}
