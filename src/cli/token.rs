//! `gangway token`: a token for reaching the controller over TCP as oneself.

use clap::Args;

use super::error::{CliError, ask};
use crate::protocol::{Reply, Request};

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
pub fn main(args: TokenArgs) -> Result<(), CliError> {
    match ask(&Request::Token { valid_secs: args.valid.as_secs() })? {
        Reply::Token { token, expiry } => {
            println!("{token}");
            eprintln!("gangway: token valid until {}", crate::auth::show_time(expiry));
            Ok(())
        }
        other => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}
