//! `gangway install-slurm-commands DIR`: the Slurm-named symlinks to this binary, so that a
//! directory on `PATH` gives users `srun`, `sbatch`, ... (see docs/slurm.md).

use std::path::PathBuf;

use clap::Args;

use super::COMMANDS;
use crate::cli::error::CliError;

/// Where `scripts/setup` and the README put them.
pub const DEFAULT_DIR: &str = "/usr/local/lib/gangway/slurm-bin";

/// Flags of `gangway install-slurm-commands`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway install-slurm-commands /usr/local/lib/gangway/slurm-bin\n  export PATH=/usr/local/lib/gangway/slurm-bin:$PATH   (in /etc/profile.d/gangway.sh, say)"
)]
pub struct InstallArgs {
    /// The directory (made if missing).
    #[arg(value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Replace files of these names that are not already links to this binary.
    #[arg(long)]
    pub force: bool,
}

/// Makes the links; one already pointing at this binary is left alone.
pub fn main(args: InstallArgs) -> Result<(), CliError> {
    let fail = |what: String| CliError::Failed(what);
    let exe = std::env::current_exe()
        .map_err(|e| fail(format!("cannot tell where this binary is: {e}")))?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| fail(format!("cannot make {}: {e}", args.dir.display())))?;
    for name in COMMANDS {
        let link = args.dir.join(name);
        if std::fs::read_link(&link).is_ok_and(|target| target == exe) {
            continue;
        }
        if link.symlink_metadata().is_ok() {
            if !args.force {
                return Err(fail(format!(
                    "{} exists and is not a link to {} (--force replaces it)",
                    link.display(),
                    exe.display()
                )));
            }
            std::fs::remove_file(&link)
                .map_err(|e| fail(format!("cannot replace {}: {e}", link.display())))?;
        }
        std::os::unix::fs::symlink(&exe, &link)
            .map_err(|e| fail(format!("cannot link {}: {e}", link.display())))?;
    }
    println!(
        "{} -> {} ({}); put it on PATH: export PATH={}:$PATH",
        args.dir.display(),
        exe.display(),
        COMMANDS.join(", "),
        args.dir.display()
    );
    Ok(())
}
