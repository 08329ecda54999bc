//! `gangway keygen`: writes a new cluster key file (never over an existing one).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use clap::Args;

use super::error::CliError;

/// Flags of `gangway keygen`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway keygen /etc/gangway/key     then copy it (mode 600) to every node"
)]
pub struct KeygenArgs {
    /// Where to write the key (refused if it exists).
    pub path: std::path::PathBuf,
}

/// Runs `gangway keygen`.
pub fn main(args: KeygenArgs) -> Result<(), CliError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.path)
        .and_then(|mut f| f.write_all(format!("{}\n", crate::auth::Key::generate_hex()).as_bytes()))
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot write {}: {e} (an existing key is never overwritten)",
                args.path.display()
            ))
        })?;
    println!(
        "wrote a new cluster key to {} (mode 600); copy it to every node",
        args.path.display()
    );
    Ok(())
}
