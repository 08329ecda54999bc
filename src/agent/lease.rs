//! The agent's lease: until when it may keep its jobs running without hearing from the
//! controller. Pure arithmetic on [`Boot`] times; the fencer enforces it (see `fence.rs`).
//!
//! An acknowledged heartbeat sent at `a` grants `a + L` (`L = lost_timeout - fence_margin`, from
//! the welcome); so does the registration, acknowledged by the welcome. A connection attempt that
//! began at `c` and was refused (no controller listening) grants `c + L`: a controller that starts
//! later counts the node as heard at its start, which is after `c`. Leases only grow.

use std::collections::VecDeque;
use std::time::Duration;

/// Milliseconds on this node's `CLOCK_BOOTTIME`: monotonic (never set, never jumps back) and,
/// unlike `CLOCK_MONOTONIC`, still counting while the machine is suspended, so a node that
/// sleeps through its lease wakes up with it expired. The agent and its fencer share it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Boot(pub u64);

impl Boot {
    /// The time now.
    pub fn now() -> Boot {
        use nix::time::{ClockId, clock_gettime};
        // CLOCK_BOOTTIME exists on every kernel gangway runs on (Linux >= 2.6.39); clock_gettime
        // fails only for an unknown clock.
        match clock_gettime(ClockId::CLOCK_BOOTTIME) {
            Ok(t) => Boot(t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000),
            Err(_) => Boot(0),
        }
    }

    /// `d` later.
    pub fn after(self, d: Duration) -> Boot {
        Boot(self.0.saturating_add(d.as_millis() as u64))
    }

    /// How long from `now` until this (zero if past).
    pub fn left(self, now: Boot) -> Duration {
        Duration::from_millis(self.0.saturating_sub(now.0))
    }
}

/// Heartbeats waiting for their acknowledgement, at most: older ones are forgotten (their acks,
/// if they ever come, extend nothing).
const UNACKED: usize = 256;

/// What the controller granted so far.
#[derive(Debug, Default)]
pub struct Lease {
    /// `lost_timeout - fence_margin`, from the last welcome (None: never welcomed).
    length: Option<Duration>,
    /// Heartbeats sent and not acknowledged yet: sequence number, send time.
    unacked: VecDeque<(u64, Boot)>,
    /// The lease runs until then (None: never granted).
    until: Option<Boot>,
}

impl Lease {
    /// A new lease, granting nothing.
    pub fn new() -> Lease {
        Lease::default()
    }

    /// How long an acknowledgement extends it (None: never welcomed).
    pub fn length(&self) -> Option<Duration> {
        self.length
    }

    /// Until when it runs.
    pub fn until(&self) -> Option<Boot> {
        self.until
    }

    /// Whether it still runs at `now`.
    pub fn valid(&self, now: Boot) -> bool {
        self.until.is_some_and(|t| now < t)
    }

    fn grant(&mut self, until: Boot) -> Option<Boot> {
        if self.until.is_some_and(|t| t >= until) {
            return None;
        }
        self.until = Some(until);
        Some(until)
    }

    /// The controller welcomed the registration sent at `sent`, with lease length `length`.
    /// Returns the new end if the lease grew.
    pub fn welcomed(&mut self, length: Duration, sent: Boot) -> Option<Boot> {
        self.length = Some(length);
        self.grant(sent.after(length))
    }

    /// Heartbeat `seq` is about to leave, at `at` (before it is written: its send time must not
    /// be later than when the controller can have heard it).
    pub fn sending(&mut self, seq: u64, at: Boot) {
        if self.unacked.len() == UNACKED {
            self.unacked.pop_front();
        }
        self.unacked.push_back((seq, at));
    }

    /// The controller acknowledged heartbeat `seq`. Returns the new end if the lease grew.
    pub fn acked(&mut self, seq: u64) -> Option<Boot> {
        let length = self.length?;
        let mut sent = None;
        while let Some(&(s, at)) = self.unacked.front() {
            if s > seq {
                break;
            }
            self.unacked.pop_front();
            if s == seq {
                sent = Some(at);
            }
        }
        self.grant(sent?.after(length))
    }

    /// A connection attempt that began at `began` was refused: no controller listened. Returns
    /// the new end if the lease grew (never before a first welcome: no length is known).
    pub fn refused(&mut self, began: Boot) -> Option<Boot> {
        let length = self.length?;
        self.grant(began.after(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_millis(1500);

    #[test]
    fn an_acked_heartbeat_extends_from_when_it_was_sent_not_when_the_ack_came() {
        let mut l = Lease::new();
        assert!(!l.valid(Boot(0)), "nothing before the welcome");
        assert_eq!(l.welcomed(L, Boot(1000)), Some(Boot(2500)));
        l.sending(1, Boot(1300));
        l.sending(2, Boot(1600));
        // The ack of 2 arrives late, at 2400: the lease ends at 1600 + L, not 2400 + L.
        assert_eq!(l.acked(2), Some(Boot(3100)));
        assert!(l.valid(Boot(3099)) && !l.valid(Boot(3100)));
        // The ack of 1 comes after that of 2: it was forgotten, extends nothing.
        assert_eq!(l.acked(1), None);
        assert_eq!(l.until(), Some(Boot(3100)));
    }

    #[test]
    fn unknown_or_duplicate_acks_extend_nothing_and_leases_never_shrink() {
        let mut l = Lease::new();
        l.sending(1, Boot(100));
        assert_eq!(l.acked(1), None, "no length before a welcome");
        l.welcomed(L, Boot(5000));
        assert_eq!(l.acked(7), None);
        l.sending(8, Boot(200));
        assert_eq!(l.acked(8), None, "an older send time than the welcome shrinks nothing");
        assert_eq!(l.acked(8), None, "twice");
        assert_eq!(l.until(), Some(Boot(6500)));
    }

    #[test]
    fn a_refused_connection_extends_from_when_the_attempt_began() {
        let mut l = Lease::new();
        assert_eq!(l.refused(Boot(100)), None, "never welcomed: nothing to extend");
        l.welcomed(L, Boot(0));
        assert_eq!(l.refused(Boot(1000)), Some(Boot(2500)));
        assert_eq!(l.refused(Boot(900)), None);
    }

    #[test]
    fn the_unacked_list_is_bounded() {
        let mut l = Lease::new();
        l.welcomed(L, Boot(0));
        for s in 0..(UNACKED as u64 * 4) {
            l.sending(s, Boot(s));
        }
        assert_eq!(l.unacked.len(), UNACKED);
        let last = UNACKED as u64 * 4 - 1;
        assert_eq!(l.acked(last), Some(Boot(last).after(L)));
        assert!(l.unacked.is_empty());
    }

    #[test]
    fn boot_time_moves_forward() {
        let a = Boot::now();
        let b = Boot::now();
        assert!(b >= a && a.0 > 0);
        assert_eq!(Boot(10).left(Boot(20)), Duration::ZERO);
        assert_eq!(Boot(20).left(Boot(5)), Duration::from_millis(15));
    }
}
