//! The answer of commands that change something (`cancel`, `hold`, `drain`, ...): an `Ok`
//! whose message, if any, is printed.

use super::error::CliError;
use crate::protocol::Reply;

/// Prints an `Ok` reply's message; any other reply is unexpected.
pub fn print_ok(reply: Reply) -> Result<(), CliError> {
    match reply {
        Reply::Ok { message } => {
            if !message.is_empty() {
                println!("{message}");
            }
            Ok(())
        }
        other => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}
