//! The Slurm-named commands (`srun`, `sbatch`, `salloc`, `squeue`, `scancel`, `sinfo`, `sacct`,
//! `scontrol`): the same binary started under another name (a symlink from
//! `gangway install-slurm-commands`). Each module maps Slurm's spellings onto the request the
//! gangway command already builds, and prints in Slurm's formats; nothing is submitted or
//! launched a second way.

pub mod args;
pub mod attempts;
pub mod format;
pub mod install;
pub mod iterate;
pub mod sacct;
pub mod salloc;
pub mod sbatch;
pub mod scancel;
pub mod scontrol;
pub mod sinfo;
pub mod sort;
pub mod squeue;
pub mod srun;
pub mod time;
pub mod tres;
pub mod units;

use std::ffi::OsString;

use super::error::CliError;

/// The names this binary answers to besides `gangway`.
pub const COMMANDS: &[&str] =
    &["srun", "sbatch", "salloc", "squeue", "scancel", "sinfo", "sacct", "scontrol"];

/// The Slurm command this process was started as, from the file name in `argv[0]`.
pub fn invoked_as() -> Option<&'static str> {
    let argv0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_str()?.to_owned();
    COMMANDS.iter().copied().find(|c| *c == name)
}

/// Runs the Slurm command `name` with the words after it; returns the exit code.
pub fn main(name: &str, args: Vec<OsString>) -> Result<u8, CliError> {
    let done = |()| crate::exit_code::SUCCESS;
    match name {
        "srun" => srun::main(args),
        "sbatch" => sbatch::main(args),
        "salloc" => salloc::main(args),
        "squeue" => squeue::main(args).map(done),
        "scancel" => scancel::main(args).map(done),
        "sinfo" => sinfo::main(args).map(done),
        "sacct" => sacct::main(args).map(done),
        "scontrol" => scontrol::main(args).map(done),
        other => Err(CliError::Usage(format!("{other}: not a Slurm command gangway provides"))),
    }
}
