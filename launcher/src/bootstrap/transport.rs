//! The transport contract: the [`Bootstrap`] trait every way of starting a command on a node
//! implements, [`start_async`] to call it from async code, and the checks every transport
//! makes of a command line before connecting.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::BootstrapError;
use super::host::HostSpec;
use super::remote::RemoteCommand;

/// Connect timeout used when neither the caller nor an ssh config sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a command on a node.
pub trait Bootstrap: Send + Sync + fmt::Debug {
    /// Starts `argv` on the host; Ok once the remote command runs, Err within the connect timeout.
    ///
    /// This blocks the calling thread for up to the connect timeout: from async code use
    /// [`start_async`], which runs it on a thread of its own.
    fn start(&self, target: &HostSpec, argv: &[String]) -> Result<RemoteCommand, BootstrapError>;
}

/// Runs [`Bootstrap::start`] on a fresh OS thread and awaits it, so many nodes can be started in
/// parallel from one `current_thread` runtime without blocking it.
pub async fn start_async(
    bootstrap: Arc<dyn Bootstrap>,
    target: HostSpec,
    argv: Vec<String>,
) -> Result<RemoteCommand, BootstrapError> {
    let (tx, rx) = oneshot::channel();
    let name = format!("bootstrap {}", target.host);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _ = tx.send(bootstrap.start(&target, &argv));
        })
        .map_err(|source| BootstrapError::Spawn { what: "a bootstrap thread".into(), source })?;
    rx.await.map_err(|_| BootstrapError::Internal {
        reason: "the bootstrap thread ended without an answer".into(),
    })?
}

/// Checks argv before any connection is made: non-empty, no NUL bytes (they cannot cross exec).
pub(crate) fn check_argv(argv: &[String]) -> Result<&str, BootstrapError> {
    let program = argv.first().ok_or_else(|| BootstrapError::InvalidArgument {
        reason: "no command to start (argv is empty)".into(),
    })?;
    if program.is_empty() {
        return Err(BootstrapError::InvalidArgument { reason: "the program name is empty".into() });
    }
    if let Some(bad) = argv.iter().find(|a| a.contains('\0')) {
        return Err(BootstrapError::InvalidArgument {
            reason: format!("argument {bad:?} contains a NUL byte"),
        });
    }
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_checks() {
        assert!(check_argv(&[]).is_err());
        assert!(check_argv(&[String::new()]).is_err());
        assert!(check_argv(&["a".into(), "b\0".into()]).is_err());
        assert_eq!(check_argv(&["true".into()]).ok(), Some("true"));
    }
}
