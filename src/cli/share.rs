//! `gangway share`: fair share by account and user (like sshare): shares, decayed usage and
//! the fair-share factor that goes into each job's priority.

use std::fmt::Write as _;

use clap::Args;

use super::error::{CliError, ask};
use crate::protocol::{Reply, Request, ShareInfo};

/// Flags of `gangway share`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gangway share              every account, and each user under it\n  gangway share --json\nColumns: NormShares is the share of the cluster; RawUsage is decayed usage in dominant-share\nseconds (halving every half_life); EffectvUsage is that over everyone's; FairShare is\n2^(-usage/share): 1 unused, 0.5 at its share, toward 0 above (docs/scheduling.md)."
)]
pub struct ShareArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gangway share`.
pub fn main(args: ShareArgs) -> Result<(), CliError> {
    let rows = match ask(&Request::Share)? {
        Reply::Shares { rows } => rows,
        other => return Err(CliError::UnexpectedReply(Box::new(other))),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        print!("{}", render_shares(&rows));
    }
    Ok(())
}

/// The table (pure, for tests): accounts, then their users indented.
pub fn render_shares(rows: &[ShareInfo]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<12} {:>10} {:>12} {:>12} {:>9}",
        "Account", "User", "NormShares", "RawUsage", "EffectvUsage", "FairShare"
    );
    for r in rows {
        let (account, user) = match &r.user {
            None => (r.account.clone(), String::new()),
            Some(u) => (format!(" {}", r.account), u.clone()),
        };
        let factor = r.factor.map(|f| format!("{f:.6}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "{account:<20} {user:<12} {:>10.6} {:>12.0} {:>12.6} {factor:>9}",
            r.share, r.usage, r.usage_share
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_then_their_users_with_factors() {
        let rows = vec![
            ShareInfo {
                account: "physics".into(),
                user: None,
                share: 0.75,
                usage: 3600.0,
                usage_share: 1.0,
                factor: None,
            },
            ShareInfo {
                account: "physics".into(),
                user: Some("alice".into()),
                share: 0.75,
                usage: 3600.0,
                usage_share: 1.0,
                factor: Some(0.397),
            },
        ];
        let text = render_shares(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Account"), "{text}");
        assert!(lines[1].starts_with("physics ") && lines[1].contains("0.750000"), "{text}");
        assert!(lines[2].starts_with(" physics") && lines[2].contains("alice"), "{text}");
        assert!(lines[2].trim_end().ends_with("0.397000"), "{text}");
    }
}
