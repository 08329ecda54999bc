//! Multi-node jobs: one proxy per node runs that node's ranks and serves their PMI; the
//! launcher (the root) starts proxies over SSH in a fan-out tree and makes every decision.
//!
//! `protocol` is the messages between them, `callback` the encrypted links that carry them,
//! `node` is the proxy itself, `root` the launcher side.

pub mod callback;
pub mod fan_out;
pub mod node;
pub mod plan;
pub mod protocol;
pub mod root;
