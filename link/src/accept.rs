//! Accept loops that never end while their listener lives: running out of file descriptors
//! (EMFILE, ENFILE) or kernel memory makes them log, back off and try again, instead of
//! returning and leaving a live process that nobody can reach.

use std::io;
use std::time::Duration;

/// A listener whose connections [`serve`] hands out.
pub trait Listener {
    type Stream;
    /// The next connection.
    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Whether an accept error means "out of resources": wait for some to be freed.
fn exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Hands every connection of `listener` to `on_conn`, forever. `what` names the listener in logs.
pub async fn serve<L: Listener>(listener: L, what: &str, mut on_conn: impl FnMut(L::Stream)) {
    let mut backoff = Duration::from_millis(10);
    let mut said = false;
    loop {
        match listener.accept_one().await {
            Ok(stream) => {
                backoff = Duration::from_millis(10);
                said = false;
                on_conn(stream);
            }
            Err(e) if exhausted(&e) => {
                if !said {
                    tracing::warn!(listener = what, error = %e, "cannot accept connections (out of file descriptors or memory); retrying");
                    said = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            // A connection that died before it was accepted (ECONNABORTED, ...): the next one
            // may be fine.
            Err(e) => {
                tracing::debug!(listener = what, error = %e, "accept failed");
                tokio::task::yield_now().await;
            }
        }
    }
}
