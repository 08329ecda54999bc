//! `gangway hold` and `gangway release`: keep pending jobs from starting, and let them start.

use clap::Args;

use super::error::{CliError, ask};
use super::ok_reply::print_ok;
use crate::protocol::Request;

/// Job ids for `hold` and `release`.
#[derive(Debug, Args)]
pub struct JobIds {
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<u64>,
}

/// Runs `gangway hold` (or `release` with `held = false`).
pub fn main(args: JobIds, held: bool) -> Result<(), CliError> {
    let request =
        if held { Request::Hold { ids: args.ids } } else { Request::Release { ids: args.ids } };
    print_ok(ask(&request)?)
}
