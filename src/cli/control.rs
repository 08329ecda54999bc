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

/// Flags of `gangway token`.
#[derive(Debug, Args)]
#[command(
    after_help = "The token lets gangway commands reach the controller over TCP as you (GANGWAY_CONTROLLER=HOST:PORT):\n  gangway token --valid 30d > ~/.config/gangway/token && chmod 600 ~/.config/gangway/token\nor export GANGWAY_TOKEN=$(gangway token). It is never sent over the network (the connection proves it\nholds it), expires after --valid, and cannot renew itself: ask again on a cluster node or the\ncontroller's machine. Jobs need no token (they use their node's agent)."
)]
pub struct TokenArgs {
    /// How long the token is valid (e.g. 12h, 7d, 30d; at most 366d).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_validity)]
    pub valid: std::time::Duration,
}

fn parse_validity(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 12h, 7d, 30d)"))?;
    let max = crate::controller::server::MAX_TOKEN_SECS;
    if d.as_secs() == 0 || d.as_secs() > max {
        return Err(format!("between 1s and {}d", max / 86400));
    }
    Ok(d)
}

/// Runs `gangway token`: prints a token for the caller's TCP access (its expiry on stderr).
pub fn token(args: TokenArgs) -> u8 {
    match client::ask(&Request::Token { valid_secs: args.valid.as_secs() }) {
        Ok(Reply::Token { token, expiry }) => {
            println!("{token}");
            eprintln!("gangway: token valid until {}", crate::auth::show_time(expiry));
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
