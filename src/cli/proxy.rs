//! `gangway proxy`: the per-node helper a multi-node `gangway run` starts over SSH (not for users).

use clap::Args;

/// Flags of `gangway proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// This node's index in the job.
    #[arg(long)]
    pub node: u32,
}

/// Runs the proxy until its launcher goes away.
pub fn main(args: ProxyArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway proxy: cannot start the runtime: {e}");
            return crate::exit_code::LAUNCH_FAILED;
        }
    };
    match runtime.block_on(gangway_launcher::proxy::node::run(args.node)) {
        Ok(()) => crate::exit_code::SUCCESS,
        Err(e) => {
            eprintln!("gangway proxy (node {}): {e}", args.node);
            crate::exit_code::LAUNCH_FAILED
        }
    }
}
