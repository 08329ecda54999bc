//! [`NodeSource`]: the trait every origin of nodes implements.

use super::error::NodeSourceError;
use super::node::Node;

/// A place nodes come from. Implementations are values chosen once by `select_source` and
/// passed on; [`NodeSource::nodes`] may be called again (e.g. to re-read a hostfile).
pub trait NodeSource {
    /// The nodes, in the source's order, each host once, repeats merged into slots.
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError>;
    /// Where the nodes come from, for messages: `hostfile hosts.txt`, `Slurm allocation ...`.
    fn describe(&self) -> String;
}
