//! What one client can make the controller hold, and the bounds on it: request sizes (bounded
//! line reads), connections per user and unauthenticated connections ([`Gate`]), replies queued
//! for a client that does not read ([`Outbox`]), and the process's file-descriptor limit.
//!
//! The rule throughout: a client that asks for more than its share is refused or disconnected
//! with a message naming the limit; the controller's memory and descriptors never grow with it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::config::LimitsConfig;

/// Room in a request for everything but the script (environment, arguments, shape).
pub const ENVELOPE_BYTES: usize = 1 << 20;

/// Bytes of replies queued for one client beyond which it is disconnected (at least one reply
/// is always queued, however large).
pub const OUTBOUND_BYTES: usize = 8 << 20;

/// Messages queued for one connection (client or agent) beyond which it is disconnected.
pub const OUTBOUND_MESSAGES: usize = 4096;

/// Requests from all connections waiting for the owner task: when full, connections stop
/// reading (their senders wait), so a flood of requests slows its sender, not the controller.
pub const INPUT_QUEUE: usize = 4096;

/// The largest request an authenticated client may send.
pub fn request_bytes(limits: &LimitsConfig) -> usize {
    usize::try_from(limits.max_script_size).unwrap_or(usize::MAX).saturating_add(ENVELOPE_BYTES)
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("a request of more than {limit} bytes")]
    TooLong { limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one `\n`-ended line into `line` (without the newline), never holding more than `max`
/// bytes of it. `Ok(false)` at a clean end of stream.
///
/// Hand-written rather than tokio-util's `LinesCodec`: the limit changes on the same buffered
/// stream once the caller authenticates, and after an over-long line the caller needs to know
/// where that line ends ([`discard_line`]) to answer a client that is still sending it.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineError> {
    line.clear();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong { limit: max });
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(true);
        }
    }
}

/// Reads and drops the rest of the current line (after [`LineError::TooLong`]), in constant
/// memory. `Ok(false)` if the stream ended first.
pub async fn discard_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(false);
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// Raises this process's soft limit on open files to the hard limit: a controller or agent
/// with many clients should not run out at the distribution's default of 1,024.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// Connection accounting shared by the accept loops and the connection tasks: unauthenticated
/// TCP connections (capped in all and per address; the oldest gives way to a new one, so idle
/// connections can never lock anyone out) and client connections per user.
#[derive(Debug, Clone)]
pub struct Gate {
    state: Arc<Mutex<GateState>>,
    limits: LimitsConfig,
}

#[derive(Debug, Default)]
struct GateState {
    seq: u64,
    /// Unauthenticated connections, oldest first: their address and how to close them.
    pending: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    per_host: HashMap<IpAddr, usize>,
    per_user: HashMap<u32, usize>,
}

/// An unauthenticated connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Pending {
    gate: Gate,
    seq: u64,
    host: IpAddr,
    /// Fires when a newer connection took this one's place: close it.
    pub evicted: oneshot::Receiver<()>,
}

/// One of a user's client connections; dropping it frees the place.
#[derive(Debug)]
pub struct UserSlot {
    gate: Gate,
    uid: Option<u32>,
}

/// A client over its user's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many connections: {user} already has {open} connections open to the controller, its limit (max_connections_per_user = {limit}); close some (finished `gangway alloc`/`run` commands) or ask an administrator to raise max_connections_per_user"
)]
pub struct TooManyConnections {
    pub user: String,
    pub open: usize,
    pub limit: usize,
}

impl Gate {
    pub fn new(limits: LimitsConfig) -> Gate {
        Gate { state: Arc::default(), limits }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Nothing panics while holding it; a poisoned lock still holds consistent counts.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new unauthenticated connection from `host`, closing the oldest one from the
    /// same address (when that address is at its cap) or from the busiest address (when all
    /// are at the total cap).
    pub fn pending(&self, host: IpAddr) -> Pending {
        let mut s = self.lock();
        let count = |s: &GateState, h: &IpAddr| s.per_host.get(h).copied().unwrap_or(0);
        let victim = if count(&s, &host) >= self.limits.max_unauthenticated_per_host {
            s.pending.iter().find(|(_, (h, _))| *h == host).map(|(k, _)| *k)
        } else if s.pending.len() >= self.limits.max_unauthenticated {
            // The oldest connection of an address holding the most.
            let most = s.per_host.values().copied().max().unwrap_or(0);
            s.pending.iter().find(|(_, (h, _))| count(&s, h) == most).map(|(k, _)| *k)
        } else {
            None
        };
        if let Some(seq) = victim {
            s.evict(seq);
        }
        s.seq += 1;
        let seq = s.seq;
        let (tx, evicted) = oneshot::channel();
        s.pending.insert(seq, (host, tx));
        *s.per_host.entry(host).or_default() += 1;
        Pending { gate: self.clone(), seq, host, evicted }
    }

    /// A client connection of `uid`; `exempt` (root, the controller's user, admins) has no limit.
    pub fn user(&self, uid: u32, user: &str, exempt: bool) -> Result<UserSlot, TooManyConnections> {
        if exempt {
            return Ok(UserSlot { gate: self.clone(), uid: None });
        }
        let mut s = self.lock();
        let open = s.per_user.entry(uid).or_default();
        if *open >= self.limits.max_connections_per_user {
            return Err(TooManyConnections {
                user: user.to_string(),
                open: *open,
                limit: self.limits.max_connections_per_user,
            });
        }
        *open += 1;
        Ok(UserSlot { gate: self.clone(), uid: Some(uid) })
    }

    /// Unauthenticated connections held now (for tests and logs).
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }
}

impl GateState {
    fn evict(&mut self, seq: u64) {
        if let Some((host, tx)) = self.pending.remove(&seq) {
            self.forget_host(host);
            let _ = tx.send(());
        }
    }

    fn forget_host(&mut self, host: IpAddr) {
        if let Some(n) = self.per_host.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(&host);
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        if s.pending.remove(&self.seq).is_some() {
            s.forget_host(self.host);
        }
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        if let Some(uid) = self.uid {
            let mut s = self.gate.lock();
            if let Some(n) = s.per_user.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    s.per_user.remove(&uid);
                }
            }
        }
    }
}

/// The owner task's end of a connection's outbound queue: bounded in messages and in bytes.
/// Pushing never waits; a connection whose queue is full is told to close (it does not read).
#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::Sender<(T, usize)>,
    queued: Arc<AtomicUsize>,
    close: watch::Sender<bool>,
    max_bytes: usize,
}

/// The connection task's end: messages in order, and the signal to close.
#[derive(Debug)]
pub struct OutboxRx<T> {
    rx: mpsc::Receiver<(T, usize)>,
    queued: Arc<AtomicUsize>,
    close: watch::Receiver<bool>,
    /// The owner dropped its end without closing: what is queued still goes out.
    owner_gone: bool,
}

/// The queue was full: the connection has been told to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A connection's outbound queue, holding at most `max_messages` messages and (beyond one
/// message) `max_bytes` bytes.
pub fn outbox<T>(max_messages: usize, max_bytes: usize) -> (Outbox<T>, OutboxRx<T>) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    let (close, close_rx) = watch::channel(false);
    (
        Outbox { tx, queued: queued.clone(), close, max_bytes },
        OutboxRx { rx, queued, close: close_rx, owner_gone: false },
    )
}

impl<T> Outbox<T> {
    /// Queues `msg` (`bytes` long on the wire), or closes the connection if it cannot take it.
    pub fn push(&self, msg: T, bytes: usize) -> Result<(), Overflow> {
        let before = self.queued.load(Ordering::Relaxed);
        if before > 0 && before.saturating_add(bytes) > self.max_bytes {
            self.close();
            return Err(Overflow);
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        match self.tx.try_send((msg, bytes)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                self.close();
                Err(Overflow)
            }
            // The connection is already gone.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Tells the connection to close now, whatever it still has queued.
    pub fn close(&self) {
        let _ = self.close.send(true);
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl<T> OutboxRx<T> {
    /// The next message; `None` when the owner dropped the queue or told the connection to close.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if *self.close.borrow() {
                return None;
            }
            tokio::select! {
                biased;
                closed = self.close.wait_for(|c| *c), if !self.owner_gone => match closed {
                    Ok(_) => return None,
                    Err(_) => self.owner_gone = true,
                },
                got = self.rx.recv() => {
                    let (msg, bytes) = got?;
                    self.queued.fetch_sub(bytes, Ordering::Relaxed);
                    return Some(msg);
                }
            }
        }
    }

    /// A handle that resolves when the connection must close (for its reading side).
    pub fn closer(&self) -> Closer {
        Closer(self.close.clone())
    }
}

/// Resolves when the owner told a connection to close.
#[derive(Debug, Clone)]
pub struct Closer(watch::Receiver<bool>);

impl Closer {
    /// Waits for the signal (forever if the owner never sends it).
    pub async fn closed(&mut self) {
        if self.0.wait_for(|c| *c).await.is_err() {
            // The owner dropped the queue without closing: the writer ends by itself, and so
            // must the reader, eventually, when the client goes; nothing to wait for here.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            max_script_size: 1000,
            max_connections_per_user: 2,
            max_array_size: 1,
            max_unauthenticated: 4,
            max_unauthenticated_per_host: 2,
            auth_timeout: Duration::from_secs(1),
            min_free_space: 0,
            state_reserve: 0,
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_an_over_long_line_can_be_skipped() {
        let data = b"short\nthis line is too long\nnext\n".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut line = Vec::new();
        assert!(read_line_bounded(&mut r, &mut line, 8).await.unwrap());
        assert_eq!(line, b"short");
        let err = read_line_bounded(&mut r, &mut line, 8).await.expect_err("too long");
        assert!(matches!(err, LineError::TooLong { limit: 8 }), "{err}");
        assert!(line.len() <= 8, "never holds more than the limit");
        assert!(discard_line(&mut r).await.unwrap());
        assert!(read_line_bounded(&mut r, &mut line, 8).await.unwrap());
        assert_eq!(line, b"next");
        assert!(!read_line_bounded(&mut r, &mut line, 8).await.unwrap(), "clean end");
    }

    #[test]
    fn a_user_over_the_limit_is_refused_by_name_until_a_connection_closes() {
        let gate = Gate::new(limits());
        let a = gate.user(1000, "ann", false).unwrap();
        let _b = gate.user(1000, "ann", false).unwrap();
        let err = gate.user(1000, "ann", false).expect_err("third");
        assert_eq!(err.limit, 2);
        assert!(err.to_string().contains("max_connections_per_user = 2"), "{err}");
        assert!(err.to_string().contains("ann"), "{err}");
        // Others are not affected; exempt callers are never counted.
        let _c = gate.user(1001, "bob", false).unwrap();
        for _ in 0..10 {
            std::mem::forget(gate.user(0, "root", true).unwrap());
        }
        drop(a);
        assert!(gate.user(1000, "ann", false).is_ok());
    }

    #[test]
    fn new_unauthenticated_connections_push_out_the_oldest_of_the_busiest_address() {
        let gate = Gate::new(limits());
        let attacker: IpAddr = "10.0.0.9".parse().unwrap();
        let agent: IpAddr = "10.0.0.1".parse().unwrap();
        let mut first = gate.pending(attacker);
        let _second = gate.pending(attacker);
        // The attacker's third pushes out its own first, not anyone else's.
        let mut a1 = gate.pending(agent);
        let _third = gate.pending(attacker);
        assert!(first.evicted.try_recv().is_ok(), "the attacker's oldest was closed");
        assert!(a1.evicted.try_recv().is_err(), "the agent's connection stays");
        assert_eq!(gate.pending_count(), 3);
        // At the total cap, the busiest address gives way (the oldest of the busiest).
        let mut a2 = gate.pending(agent);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let _o = gate.pending(other);
        assert_eq!(gate.pending_count(), 4);
        assert!(a1.evicted.try_recv().is_err(), "{}", "the attacker's older connection went first");
        drop(a1);
        assert_eq!(gate.pending_count(), 3);
        assert!(a2.evicted.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_reader_that_does_not_keep_up_is_told_to_close() {
        let (out, mut rx) = outbox::<u32>(100, 10);
        assert_eq!(out.push(1, 25), Ok(()), "one message always fits, however large");
        assert_eq!(out.push(2, 1), Err(Overflow), "over the byte bound");
        assert_eq!(rx.recv().await, None, "the connection closes");
        let (out, mut rx) = outbox::<u32>(2, 1000);
        assert_eq!(out.push(1, 1), Ok(()));
        assert_eq!(out.push(2, 1), Ok(()));
        assert_eq!(out.push(3, 1), Err(Overflow), "over the message bound");
        assert_eq!(rx.recv().await, None);
        let (out, mut rx) = outbox::<u32>(2, 1000);
        assert_eq!(out.push(7, 600), Ok(()));
        assert_eq!(rx.recv().await, Some(7));
        assert_eq!(out.queued(), 0, "taken messages are no longer counted");
        // An owner that lets go without closing: what was queued still goes out.
        assert_eq!(out.push(8, 1), Ok(()));
        drop(out);
        assert_eq!(rx.recv().await, Some(8));
        assert_eq!(rx.recv().await, None);
    }
}
