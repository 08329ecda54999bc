//! Output flow control: a byte budget shared by what produces rank output and what writes it.
//!
//! A rank's pipe is read only while there is room in the budget, so a rank that writes faster
//! than its output can be written blocks on its pipe, as it would writing to a slow terminal,
//! and no process on the way holds more than its budget: the launcher's writer gives the bytes
//! back once written (`output::OutputSink`); a proxy gets them back as credits from the
//! launcher once they are in the launcher's own budget (`Down::Credit`, [`NODE_WINDOW`] per node).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::mpsc::error::SendError;
use tokio::task::JoinSet;

/// Where output goes; index into the writer's destination table (`output::OutputSink`). It
/// lives here, beside the channel that carries it, so flow control needs nothing of the writer.
pub type DestinationId = usize;

/// Output the launcher's writer may have queued: what it holds at most (plus one chunk per
/// producer, which may overshoot).
pub const SINK_BUDGET: usize = 4 << 20;

/// Output one node's proxy may have sent that the launcher has not taken into its own budget.
pub const NODE_WINDOW: usize = 1 << 20;

/// Bytes in flight, and the limit above which producers wait.
#[derive(Debug)]
pub struct Budget {
    used: Mutex<usize>,
    room: Notify,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget { used: Mutex::new(0), room: Notify::new(), limit })
    }

    fn used(&self) -> std::sync::MutexGuard<'_, usize> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent count.
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `n` bytes, first waiting while the budget is spent.
    pub async fn take(&self, n: usize) {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the look, so a give in between is not missed.
            room.as_mut().enable();
            {
                let mut used = self.used();
                if *used < self.limit {
                    *used += n;
                    return;
                }
            }
            room.await;
        }
    }

    /// Takes `n` bytes without waiting (gangway's own messages: few and small).
    pub fn take_now(&self, n: usize) {
        *self.used() += n;
    }

    /// Gives `n` bytes back (written, or credited).
    pub fn give(&self, n: usize) {
        {
            let mut used = self.used();
            *used = used.saturating_sub(n);
        }
        self.room.notify_waiters();
    }

    /// Bytes taken and not given back.
    pub fn in_flight(&self) -> usize {
        *self.used()
    }
}

/// How the pumps of some ranks are doing, for the wait for their last output after they exit.
#[derive(Debug, Default)]
pub struct Progress {
    read: AtomicU64,
    waiting: AtomicUsize,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// `n` more bytes were read from a pipe.
    pub fn read(&self, n: usize) {
        self.read.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn bytes(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// A sender of output to a destination, counted against a budget.
#[derive(Debug, Clone)]
pub struct OutputTx {
    tx: UnboundedSender<(DestinationId, Vec<u8>)>,
    budget: Arc<Budget>,
}

impl OutputTx {
    pub fn new(tx: UnboundedSender<(DestinationId, Vec<u8>)>, budget: Arc<Budget>) -> OutputTx {
        OutputTx { tx, budget }
    }

    /// Sends at once: gangway's own messages, counted but never held back.
    pub fn send(
        &self,
        item: (DestinationId, Vec<u8>),
    ) -> Result<(), SendError<(DestinationId, Vec<u8>)>> {
        let n = item.1.len();
        self.budget.take_now(n);
        self.tx.send(item).inspect_err(|_| self.budget.give(n))
    }

    /// Sends once the budget has room (a rank's output: its pump stops reading meanwhile).
    pub async fn send_when_room(
        &self,
        item: (DestinationId, Vec<u8>),
        progress: &Progress,
    ) -> Result<(), SendError<(DestinationId, Vec<u8>)>> {
        let n = item.1.len();
        progress.waiting.fetch_add(1, Ordering::Relaxed);
        self.budget.take(n).await;
        progress.waiting.fetch_sub(1, Ordering::Relaxed);
        self.tx.send(item).inspect_err(|_| self.budget.give(n))
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

/// Waits for the tasks of exited ranks (their pumps, or what awaits them) to finish: for as
/// long as the pumps counted in `progress` read or wait for room (a slow reader of the output),
/// but no more than `idle` without either (a process that escaped the ranks may hold a pipe open
/// forever). The caller drops or aborts what still runs then.
pub async fn drain<T: 'static>(tasks: &mut JoinSet<T>, progress: &[Arc<Progress>], idle: Duration) {
    let read = || progress.iter().map(|p| p.bytes()).sum::<u64>();
    loop {
        let before = read();
        match tokio::time::timeout(idle, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(_) if read() == before && !progress.iter().any(|p| p.waiting()) => return,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn a_producer_waits_while_the_budget_is_spent_and_goes_on_when_bytes_come_back() {
        rt().block_on(async {
            let budget = Budget::new(100);
            budget.take(60).await;
            budget.take(60).await; // under the limit when asked: may overshoot once
            assert_eq!(budget.in_flight(), 120);
            let waiter = {
                let b = Arc::clone(&budget);
                tokio::spawn(async move { b.take(10).await })
            };
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished(), "spent: it waits");
            budget.take_now(5);
            budget.give(25);
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished(), "100 in flight: still spent");
            budget.give(10);
            waiter.await.expect("it went on");
            assert_eq!(budget.in_flight(), 100);
            budget.give(1000);
            assert_eq!(budget.in_flight(), 0, "never below zero");
        });
    }

    #[test]
    fn the_drain_waits_for_pumps_that_wait_for_room_and_not_for_idle_ones() {
        rt().block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let out = OutputTx::new(tx, Budget::new(10));
            let progress = Progress::new();
            out.send((1, vec![0; 10])).expect("sent");
            let mut pumps = JoinSet::new();
            {
                let (out, progress) = (out.clone(), Arc::clone(&progress));
                pumps.spawn(async move {
                    let _ = out.send_when_room((1, vec![1; 10]), &progress).await;
                });
            }
            // A slow writer gives the room back after several idle periods.
            let budget = Arc::clone(out.budget());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                budget.give(10);
            });
            let watched = [Arc::clone(&progress)];
            drain(&mut pumps, &watched, Duration::from_millis(10)).await;
            assert!(pumps.is_empty(), "the waiting pump was waited for");
            assert_eq!(rx.recv().await.map(|(_, b)| b[0]), Some(0));
            assert_eq!(rx.recv().await.map(|(_, b)| b[0]), Some(1));
            // A pump that reads nothing (its pipe held open): dropped after the idle time.
            pumps.spawn(std::future::pending());
            drain(&mut pumps, &watched, Duration::from_millis(10)).await;
            assert_eq!(pumps.len(), 1, "left behind, not waited for");
        });
    }
}
