//! The small value types every part of the scheduler speaks: job ids, points in time and
//! memory sizes. Time is a value here, never read from a clock: the caller passes it in.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A job's identifier, as the controller numbers them.
pub type JobId = u64;

/// A point in time, milliseconds since the Unix epoch, as the controller's clock gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The latest representable time: "never" for jobs without a time limit.
    pub const NEVER: Timestamp = Timestamp(u64::MAX);

    /// From whole seconds.
    pub fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Timestamp::NEVER`].
    pub fn after(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self + d` where `None` means unlimited ([`Timestamp::NEVER`]).
    pub fn after_limit(self, d: Option<Duration>) -> Timestamp {
        d.map_or(Timestamp::NEVER, |d| self.after(d))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.after(d)
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, earlier: Timestamp) -> Duration {
        self.since(earlier)
    }
}

/// A size in bytes (memory). A type of its own so a size is never mistaken for a count of
/// CPUs or a time, and never passes through a string on its way between components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Zero bytes.
    pub const ZERO: Bytes = Bytes(0);

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Bytes(n << 20)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        Bytes(n << 30)
    }

    /// The number of bytes.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self - other`, zero when `other` is larger.
    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }

    /// `self * n`, saturating.
    pub fn saturating_mul(self, n: u64) -> Bytes {
        Bytes(self.0.saturating_mul(n))
    }
}

impl AddAssign for Bytes {
    fn add_assign(&mut self, other: Bytes) {
        *self = self.saturating_add(other);
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&gangway_topology::human_bytes(self.0))
    }
}

/// Slurm's time form: `[D-]HH:MM:SS`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 { format!("{days}-{h:02}:{m:02}:{sec:02}") } else { format!("{h}:{m:02}:{sec:02}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t.after(Duration::from_secs(5)), Timestamp(15_000));
        assert_eq!(Timestamp::NEVER.after(Duration::from_secs(1)), Timestamp::NEVER);
        assert_eq!(t.after_limit(None), Timestamp::NEVER);
        assert_eq!(Timestamp(5) - Timestamp(9), Duration::ZERO);
    }

    #[test]
    fn bytes_display_and_saturate() {
        assert_eq!(Bytes::gib(2).to_string(), "2 GiB");
        assert_eq!(Bytes(3).saturating_sub(Bytes(5)), Bytes::ZERO);
        assert_eq!(format_duration(Duration::from_secs(90_061)), "1-01:01:01");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1:00:00");
    }
}
