//! `gangway reconfigure`: the controller reads the scheduling sections of its configuration
//! file again (`[scheduling]`, `[[account]]`, `[[user]]`, `[[qos]]`), as SIGHUP does.
//! Administrators only. A bad file is refused with its line and nothing changes (exit 2);
//! exit 117 when the caller is no administrator.

use clap::Args;

use super::error::{CliError, ask};
use super::ok_reply::print_ok;
use crate::protocol::Request;

/// Flags of `gangway reconfigure` (none).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  $EDITOR /etc/gangway/controller.toml   add an [[account]], change a [[qos]]\n  gangway reconfigure                     put it in force (or: kill -HUP <controller pid>)\nExit codes: 0 reloaded; 2 the file is wrong (the message names the line; nothing changed);\n117 not an administrator. Partitions and nodes still need a controller restart."
)]
pub struct ReconfigureArgs {}

/// Runs `gangway reconfigure`.
pub fn main(_args: ReconfigureArgs) -> Result<(), CliError> {
    print_ok(ask(&Request::Reconfigure)?)
}
