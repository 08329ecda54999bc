//! Errors of building or loading a [`crate::Topology`].

use std::path::PathBuf;

/// Why a topology could not be discovered, loaded or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// hwloc failed on the running machine.
    #[error("hardware discovery failed: {0}")]
    Discovery(String),
    /// The XML file is missing, unreadable or not an hwloc topology.
    #[error("--topology-xml {}: {reason}", path.display())]
    Xml {
        /// The file given.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// hwloc rejected a synthetic description.
    #[error(
        "--synthetic '{description}': {reason} (expected e.g. 'pack:2 numa:2 core:8 pu:2': \
         space-separated TYPE:COUNT levels from packages down to PUs)"
    )]
    Synthetic {
        /// The description given.
        description: String,
        /// What went wrong.
        reason: String,
    },
    /// A shape for [`crate::Shape`] that cannot describe a machine.
    #[error("invalid machine shape: {0}")]
    Shape(String),
    /// A JSON model could not be read.
    #[error("invalid topology JSON: {0}")]
    Json(String),
    /// A model whose indexes do not agree (hand-written or corrupted JSON).
    #[error("inconsistent topology model: {0}")]
    Inconsistent(String),
}
