//! The accept loop outlives running out of file descriptors (its own process: it lowers the
//! descriptor limit and uses up every descriptor).

use std::time::Duration;

use gangway_link::accept::serve;

#[tokio::test]
async fn the_loop_survives_running_out_of_descriptors() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(serve(listener, "test", move |s| {
        let _ = tx.send(s);
    }));
    // A connection waits in the backlog; then every descriptor is used up, so accepting it fails
    // with EMFILE.
    let pending = std::net::TcpStream::connect(addr).unwrap();
    let mut held = Vec::new();
    let limit = {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        r
    };
    let lowered = libc::rlimit { rlim_cur: 64, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads the struct we own.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "nothing can be accepted without a free descriptor");
    held.clear();
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert!(matches!(got, Ok(Some(_))), "the loop accepted again once descriptors were free");
    drop(pending);
}
