//! `gangway history`: finished jobs with their exit codes (like sacct).

use clap::Args;

use super::error::{CliError, ask};
use super::query::render_history;
use crate::protocol::{Reply, Request};

/// Flags of `gangway history`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway history -n 20     the 20 most recent finished jobs, with exit codes, CPU time\n                            (TOTALCPU) and peak memory (MAXMEM)"
)]
pub struct HistoryArgs {
    /// How many jobs.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub count: usize,
    #[arg(long)]
    pub json: bool,
}

/// Runs `gangway history`.
pub fn main(args: HistoryArgs) -> Result<(), CliError> {
    match ask(&Request::History { limit: args.count })? {
        Reply::Jobs { jobs } => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&jobs).unwrap_or_default());
            } else {
                print!("{}", render_history(&jobs));
            }
            Ok(())
        }
        other => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}
