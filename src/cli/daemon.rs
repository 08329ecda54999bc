//! What the two daemons (`gangway controller`, `gangway agent`) set up before they start:
//! logging to stderr, the open-files limit, and a runtime.

use super::error::CliError;
use crate::controller::limits::raise_fd_limit;

/// Logging at `level`, the raised open-files limit, and the daemon's runtime.
pub fn start(level: &str) -> Result<tokio::runtime::Runtime, CliError> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!("gangway={level}")))
        .with_target(false)
        .try_init();
    raise_fd_limit();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))
}
