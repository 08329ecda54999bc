//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why containment could not be set up or carried out.
#[derive(Debug, thiserror::Error)]
pub enum ContainmentError {
    /// No cgroups can be used here (not root, no delegated subtree, nothing mounted): the
    /// caller says so once and runs unconfined, as before containment existed.
    #[error("cgroups unavailable: {reason}")]
    Unavailable { reason: String },
    /// The cgroup library failed on one cgroup.
    #[error("cgroup {path}: cannot {what}: {source}")]
    Cgroup {
        path: String,
        what: &'static str,
        #[source]
        source: cgroups_rs::fs::error::Error,
    },
    /// A file of the cgroup file system the library does not cover (see the backends).
    #[error("{}: cannot {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A v2 controller the limits need is not available to the gangway root.
    #[error(
        "cgroup v2 at {}: the {controller} controller is not available there ({why})",
        at.display()
    )]
    Controller { at: PathBuf, controller: &'static str, why: String },
    /// A cgroup v2 device program could not be loaded, attached or detached.
    #[error("cgroup v2 device control: cannot {what}: {why}")]
    Devices { what: &'static str, why: String },
    /// Processes were still alive in a cgroup after every kill round.
    #[error("cgroup {path}: {left} process(es) still alive after {rounds} kill rounds")]
    Survivors { path: String, left: usize, rounds: u32 },
}

impl ContainmentError {
    /// True when containment is not possible here at all (as opposed to a failure of it).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ContainmentError::Unavailable { .. })
    }

    pub(crate) fn cgroup(
        path: &str,
        what: &'static str,
    ) -> impl FnOnce(cgroups_rs::fs::error::Error) -> ContainmentError + use<> {
        let path = path.to_string();
        move |source| ContainmentError::Cgroup { path, what, source }
    }

    pub(crate) fn io(
        path: PathBuf,
        what: &'static str,
    ) -> impl FnOnce(io::Error) -> ContainmentError + use<> {
        move |source| ContainmentError::Io { path, what, source }
    }
}
