//! [`Node`]: one machine a job may run ranks on, as a node source describes it.

use std::fmt;

/// One machine a job may run ranks on, as a node source describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Node {
    /// Host name (or address) to reach the node by; unique within one source's list.
    pub name: String,
    /// Login for SSH, when the source names one (`alice@node1`, `user=alice`).
    pub user: Option<String>,
    /// SSH port, when the source names one (`ssh://node1:2222`, `port=2222`).
    pub port: Option<u16>,
    /// Ranks the node takes by default. `None` when the source did not say (a host named once
    /// without a count); the launcher then decides, e.g. from the node's cores.
    pub slots: Option<u32>,
    /// Ranks the node may take at most when oversubscribing (Open MPI's `max_slots`); `None` for
    /// no stated limit.
    pub max_slots: Option<u32>,
}

impl Node {
    /// A node with only a name.
    pub fn new(name: impl Into<String>) -> Self {
        Node { name: name.into(), ..Node::default() }
    }
}

/// Writes the node as a spec that reaches it: `node1`, `alice@node1`, `ssh://alice@node1:2222`.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_some() {
            f.write_str("ssh://")?;
        }
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.name)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}
