//! A node without libpmix: `Server::start` returns the error that names the package, and the
//! process goes on (no abort, no panic). Its own test binary, because it changes the
//! environment of the whole process.

use gangway_pmix::{PmixError, Server};

#[test]
fn start_without_libpmix_names_the_package() {
    // SAFETY: this binary's only test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var(gangway_pmix_sys::LIBRARY_ENV, "libpmix-not-installed.so.2") };
    let dir = std::env::temp_dir().join(format!("gangway-pmix-unavailable-{}", std::process::id()));
    let err = Server::start(&dir).expect_err("no library, no server");
    assert!(matches!(err, PmixError::Unavailable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("libpmix-not-installed.so.2"), "{text}");
    assert!(text.contains("apt-get install libpmix2"), "{text}");
    // A later attempt is still possible (nothing was initialised).
    unsafe { std::env::set_var(gangway_pmix_sys::LIBRARY_ENV, "libpmix-still-missing.so.2") };
    assert!(matches!(Server::start(&dir), Err(PmixError::Unavailable(_))));
    assert!(!dir.exists(), "nothing was created before the library loaded");
}
