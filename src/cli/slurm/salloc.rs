//! `salloc`: `gangway alloc` under Slurm's name (the shape flags are sbatch's spellings).

use std::ffi::OsString;

use clap::Args;

use super::args::parse;
use crate::cli::alloc::{self, AllocArgs};
use crate::cli::error::CliError;

/// Runs `salloc`; returns the command's exit code.
pub fn main(args: Vec<OsString>) -> Result<u8, CliError> {
    let command = AllocArgs::augment_args(clap::Command::new("salloc"))
        .about("Get an allocation and run a command (or a shell) in it (gangway's salloc)");
    alloc::main(parse(command, "salloc", args)?)
}
