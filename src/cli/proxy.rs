//! `gangway proxy`: the per-node helper a multi-node `gangway run` starts over SSH (not for users).

use clap::Args;

use super::error::CliError;

/// Flags of `gangway proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// This node's index in the job.
    #[arg(long)]
    pub node: u32,
}

/// Runs the proxy until its launcher goes away.
pub fn main(args: ProxyArgs) -> Result<(), CliError> {
    // SAFETY: the proxy has one thread until the runtime below starts.
    unsafe { gangway_launcher::pmi::pmix::prefer_cached_topology() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Proxy(format!("gangway proxy: cannot start the runtime: {e}")))?;
    runtime
        .block_on(gangway_launcher::proxy::node::run(args.node))
        .map_err(|e| CliError::Proxy(format!("gangway proxy (node {}): {e}", args.node)))
}
