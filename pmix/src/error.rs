//! Errors of the PMIx server, worded for the person who has to fix them, and [`Status`], a
//! libpmix status code that prints its name.

use std::path::PathBuf;

use gangway_pmix_sys as sys;

/// A `pmix_status_t`. Prints as libpmix names it (`PMIX_ERR_NOT_FOUND (-46)`) when the library
/// is loaded, as the bare number otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    /// `PMIX_SUCCESS`.
    pub const SUCCESS: Status = Status(sys::PMIX_SUCCESS);
    /// `PMIX_ERROR`: a generic failure. What a reply that is dropped unanswered sends.
    pub const ERROR: Status = Status(sys::PMIX_ERROR);
    /// `PMIX_ERR_NOT_FOUND`: no such data (lookup, direct modex).
    pub const NOT_FOUND: Status = Status(sys::PMIX_ERR_NOT_FOUND);
    /// `PMIX_ERR_NOT_SUPPORTED`: gangway does not do this (spawn).
    pub const NOT_SUPPORTED: Status = Status(sys::PMIX_ERR_NOT_SUPPORTED);
    /// `PMIX_ERR_TIMEOUT`.
    pub const TIMEOUT: Status = Status(sys::PMIX_ERR_TIMEOUT);
    /// `PMIX_ERR_BAD_PARAM`: a request gangway cannot accept (a duplicate publish).
    pub const BAD_PARAM: Status = Status(sys::PMIX_ERR_BAD_PARAM);
    /// `PMIX_ERR_OUT_OF_RESOURCE`: a limit on what a job may store was hit (published names).
    pub const OUT_OF_RESOURCE: Status = Status(sys::PMIX_ERR_OUT_OF_RESOURCE);
    /// `PMIX_ERR_NO_PERMISSIONS`: unpublishing a name another process published.
    pub const NO_PERMISSIONS: Status = Status(sys::PMIX_ERR_NO_PERMISSIONS);
    /// `PMIX_ERR_PARTIAL_SUCCESS`: in a fence, some local participant went away.
    pub const PARTIAL_SUCCESS: Status = Status(sys::PMIX_ERR_PARTIAL_SUCCESS);
    /// `PMIX_ERR_LOST_CONNECTION`.
    pub const LOST_CONNECTION: Status = Status(sys::PMIX_ERR_LOST_CONNECTION);

    /// Whether this is `PMIX_SUCCESS` (or the synchronous `PMIX_OPERATION_SUCCEEDED`).
    pub fn is_success(self) -> bool {
        self.0 == sys::PMIX_SUCCESS || self.0 == sys::PMIX_OPERATION_SUCCEEDED
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match crate::running::library().and_then(|lib| {
            // SAFETY: PMIx_Error_string takes any status and returns a static string (or null).
            unsafe { crate::value::c_string((lib.PMIx_Error_string)(self.0)) }
        }) {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "PMIx status {}", self.0),
        }
    }
}

/// What went wrong with the PMIx server.
#[derive(Debug, thiserror::Error)]
pub enum PmixError {
    /// libpmix is not installed (or cannot be loaded) on this node.
    #[error(transparent)]
    Unavailable(#[from] sys::LoadError),
    /// The library is there but is not a PMIx gangway was built for.
    #[error(
        "the installed libpmix reports version {found:?}; gangway's PMIx server needs PMIx 4 or 5 \
         (Debian 12's {package} is 4.2)",
        package = sys::PACKAGE
    )]
    UnsupportedVersion {
        /// What `PMIx_Get_version` said.
        found: String,
    },
    /// `Server::start` while a server is running: libpmix holds one per process.
    #[error("a PMIx server is already running in this process (libpmix allows one per process)")]
    AlreadyRunning,
    /// `Server::start` after a server was finalized.
    #[error(
        "this process already ran a PMIx server: libpmix cannot be initialised twice in one \
         process, so each job's PMIx server needs a fresh process"
    )]
    AlreadyUsed,
    /// The server's directory could not be created.
    #[error("cannot create the PMIx server directory {path}: {source}")]
    TmpDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A libpmix call failed.
    #[error("{call} failed: {status}")]
    Call {
        /// The libpmix function.
        call: &'static str,
        /// What it returned.
        status: Status,
    },
    /// The job description cannot be registered.
    #[error("cannot register PMIx namespace {name:?}: {reason}")]
    BadNamespace {
        /// The namespace.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A process name that libpmix cannot represent (namespace over 255 bytes, or a NUL).
    #[error("invalid PMIx process name {0:?}: a namespace has at most 255 bytes and no NUL")]
    BadProc(String),
}

impl PmixError {
    /// A failed call, unless `status` is a success.
    pub(crate) fn check(call: &'static str, status: i32) -> Result<(), PmixError> {
        let status = Status(status);
        if status.is_success() { Ok(()) } else { Err(PmixError::Call { call, status }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = PmixError::UnsupportedVersion { found: "OpenPMIx 3.2.3".into() };
        assert!(e.to_string().contains("needs PMIx 4 or 5"), "{e}");
        assert!(PmixError::AlreadyUsed.to_string().contains("fresh process"));
        assert!(PmixError::check("PMIx_x", sys::PMIX_OPERATION_SUCCEEDED).is_ok());
        assert!(PmixError::check("PMIx_x", sys::PMIX_SUCCESS).is_ok());
        let e = PmixError::check("PMIx_x", sys::PMIX_ERR_NOT_FOUND).unwrap_err();
        assert!(e.to_string().starts_with("PMIx_x failed: "), "{e}");
    }
}
