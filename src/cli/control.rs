//! `gangway cancel`, `hold`, `release`, `drain`, `resume`, `token` and `keygen`: changes to
//! jobs and nodes, and the secrets that let agents and remote commands in.

use clap::Args;

use crate::client;
use crate::exit_code;
use crate::protocol::{Reply, Request};

/// Flags of `gangway cancel`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gangway cancel 42 43\n  gangway cancel --signal USR1 42     signal a running job instead of ending it\n  gangway cancel --user alice        every job of alice (her own, or an administrator)"
)]
pub struct CancelArgs {
    /// Job ids.
    #[arg(value_name = "ID")]
    pub ids: Vec<u64>,
    /// Send this signal to the job's processes instead of ending it (TERM, USR1, 10, ...).
    #[arg(short = 's', long, value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// Every pending or running job of this user.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
}

/// Job ids for `hold` and `release`.
#[derive(Debug, Args)]
pub struct JobIds {
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<u64>,
}

/// Flags of `gangway drain`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway drain node3 --reason 'bad DIMM'    no new jobs on node3; running ones finish"
)]
pub struct DrainArgs {
    /// Nodes (hostlist: node[1-3]).
    #[arg(value_name = "NODES")]
    pub nodes: String,
    /// Why (shown by `gangway nodes`).
    #[arg(long, required = true)]
    pub reason: String,
}

/// Flags of `gangway resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(value_name = "NODES")]
    pub nodes: String,
}

/// Flags of `gangway keygen`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  gangway keygen /etc/gangway/key     then copy it (mode 600) to every node"
)]
pub struct KeygenArgs {
    /// Where to write the key (refused if it exists).
    pub path: std::path::PathBuf,
}

fn ok_or_code(r: Result<Reply, u8>) -> u8 {
    match r {
        Ok(Reply::Ok { message }) => {
            if !message.is_empty() {
                println!("{message}");
            }
            exit_code::SUCCESS
        }
        Ok(other) => {
            eprintln!("gangway: error: unexpected answer {other:?}");
            exit_code::FAILURE
        }
        Err(c) => c,
    }
}

/// Runs `gangway cancel`.
pub fn cancel(args: CancelArgs) -> u8 {
    if args.ids.is_empty() && args.user.is_none() {
        eprintln!("gangway: error: give job ids or --user");
        return exit_code::USAGE;
    }
    ok_or_code(client::ask(&Request::Cancel {
        ids: args.ids,
        signal: args.signal,
        user: args.user,
    }))
}

/// Runs `gangway hold` (or `release` with `held = false`).
pub fn hold(args: JobIds, held: bool) -> u8 {
    let req =
        if held { Request::Hold { ids: args.ids } } else { Request::Release { ids: args.ids } };
    ok_or_code(client::ask(&req))
}

fn expand(nodes: &str) -> Result<Vec<String>, u8> {
    gangway_launcher::nodes::hostlist::expand(nodes).map_err(|e| {
        eprintln!("gangway: error: {nodes}: {e}");
        exit_code::USAGE
    })
}

/// Runs `gangway drain`.
pub fn drain(args: DrainArgs) -> u8 {
    match expand(&args.nodes) {
        Ok(nodes) => ok_or_code(client::ask(&Request::Drain { nodes, reason: args.reason })),
        Err(c) => c,
    }
}

/// Runs `gangway resume`.
pub fn resume(args: ResumeArgs) -> u8 {
    match expand(&args.nodes) {
        Ok(nodes) => ok_or_code(client::ask(&Request::Resume { nodes })),
        Err(c) => c,
    }
}

/// Runs `gangway token`: prints the caller's token for TCP access.
pub fn token() -> u8 {
    match client::ask(&Request::Token) {
        Ok(Reply::Token { token }) => {
            println!("{token}");
            exit_code::SUCCESS
        }
        Ok(_) => exit_code::FAILURE,
        Err(c) => c,
    }
}

/// Runs `gangway keygen`.
pub fn keygen(args: KeygenArgs) -> u8 {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&args.path);
    match file
        .and_then(|mut f| f.write_all(format!("{}\n", crate::auth::Key::generate_hex()).as_bytes()))
    {
        Ok(()) => {
            println!(
                "wrote a new cluster key to {} (mode 600); copy it to every node",
                args.path.display()
            );
            exit_code::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "gangway: error: cannot write {}: {e} (an existing key is never overwritten)",
                args.path.display()
            );
            exit_code::FAILURE
        }
    }
}
