//! Whether this process's libpmix server runs, and the library it runs on: the flag every reply
//! checks, under a read lock, before calling into libpmix, and the library status names come
//! from. `server.rs` sets both; keeping them in this leaf lets replies and statuses use them
//! without depending on the server that hands them out.

use std::sync::{OnceLock, RwLock};

use gangway_pmix_sys as sys;

static RUNNING: RwLock<bool> = RwLock::new(false);
static LIBRARY: OnceLock<&'static sys::PmixLib> = OnceLock::new();

/// The library, once a server was started (for status names).
pub(crate) fn library() -> Option<&'static sys::PmixLib> {
    LIBRARY.get().copied()
}

/// Keeps the library a server was started on; the first one stays (libpmix is loaded once).
pub(crate) fn remember_library(lib: &'static sys::PmixLib) {
    let _ = LIBRARY.set(lib);
}

/// Runs `f` (a call into libpmix) only while the server runs, and keeps finalize out meanwhile.
pub(crate) fn while_running<R>(f: impl FnOnce() -> R) -> Option<R> {
    let running = RUNNING.read().unwrap_or_else(|p| p.into_inner());
    if *running { Some(f()) } else { None }
}

/// Marks the server running or not. Taking the write lock waits for every call inside
/// [`while_running`] to return, so once this returns `false` no reply calls into libpmix.
pub(crate) fn set_running(running: bool) {
    *RUNNING.write().unwrap_or_else(|p| p.into_inner()) = running;
}
