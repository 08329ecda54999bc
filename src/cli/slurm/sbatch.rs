//! `sbatch`: `gangway batch` under Slurm's name. Its flags already are sbatch's spellings; what
//! gangway does not take yet is refused by name (on the command line here, in the script by the
//! directive check).

use std::ffi::OsString;

use clap::Args;

use super::args::parse;
use crate::cli::batch::{self, BatchArgs};
use crate::cli::error::CliError;

/// Runs `sbatch`.
pub fn main(args: Vec<OsString>) -> Result<u8, CliError> {
    let command = BatchArgs::augment_args(clap::Command::new("sbatch").args_override_self(true))
        .about("Submit a batch script (gangway's sbatch: docs/slurm.md)");
    let parsed: BatchArgs = parse(command, "sbatch", args.clone())?;
    batch::main(parsed, args)
}
