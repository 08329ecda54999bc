//! Why a command ended without doing what it was asked: one error type for every command, each
//! kind mapped to its exit code in `exit_code::for_error` and printed by `main`.
//!
//! Commands return `Result<(), CliError>` (`run` and `alloc`: `Result<u8, CliError>`, the exit
//! code of what they ran, as a shell reports it) and print nothing about their own failure.

use gangway_launcher::job::LaunchError;
use gangway_launcher::spawn::ProgramError;

use super::shape::ShapeError;
use crate::client::{Client, ClientError};
use crate::protocol::{Reply, Request};

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or value on the command line is wrong; nothing was started. The message names
    /// the flag.
    #[error("{0}")]
    Usage(String),
    /// The controller could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The controller refused the request.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The controller answered with something this command did not ask for.
    #[error("unexpected answer {0:?}")]
    UnexpectedReply(Box<Reply>),
    /// The job was cancelled, timed out or lost a node while the command waited or ran (printed
    /// as news, not as an error: `gangway: job 7 ended: ...`).
    #[error("{0}")]
    JobEnded(String),
    /// The ranks do not fit as asked (binding, layout).
    #[error("{0}")]
    CannotPlace(String),
    /// The program to run cannot be found or executed.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The launcher could not start the job.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// `alloc` could not start its command.
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    /// Something this machine lacks or refuses (a runtime, its own hardware description).
    #[error("{0}")]
    LaunchFailed(String),
    /// The hidden `gangway proxy` failed (printed as is: its lines name the proxy and node).
    #[error("{0}")]
    Proxy(String),
    /// Anything else that stops a command: a daemon's fatal error, a key file that cannot be
    /// written.
    #[error("{0}")]
    Failed(String),
}

impl From<ShapeError> for CliError {
    fn from(e: ShapeError) -> CliError {
        CliError::Usage(e.to_string())
    }
}

/// A request the controller refused, with the kind of refusal.
///
/// The controller's reply says which kind only through the exit code it carries (the reply has
/// no other typed field), so the kind is read from that code ([`RefusalKind::of_code`]) and
/// never from the message's words.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// One problem per line.
    pub message: String,
}

/// Kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// A value the controller checks was wrong.
    Usage,
    /// Another user's job, or an administrator's command.
    PermissionDenied,
    /// The controller takes no new work now (disk, connections).
    NoNewWork,
    /// The job's shape can never fit the cluster.
    CannotPlace,
    /// The job has ended.
    JobEnded,
    /// Any other refusal (a job that does not exist, ...).
    Failure,
    /// A code this command does not know (a newer controller): passed on as it is.
    Other(u8),
}

/// The reply, or the refusal it carries.
pub fn refused(reply: Reply) -> Result<Reply, CliError> {
    match reply {
        Reply::Error { code, message } => {
            Err(Refusal { kind: RefusalKind::of_code(code), message }.into())
        }
        reply => Ok(reply),
    }
}

/// Connects, asks, and returns the answer (refusals as errors).
pub fn ask(request: &Request) -> Result<Reply, CliError> {
    refused(Client::connect()?.call(request)?)
}
