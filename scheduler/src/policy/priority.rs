//! Multifactor priority: each factor is a number between 0 and 1 (age, size, partition, QOS,
//! fair share), worth its weight in points; the user's nice value is taken off and the
//! administrator's priority added. The value *is* the sum of its explanation's points, so
//! what `gangway show job` prints always adds up to the number the queue is sorted by.

use std::fmt;
use std::time::Duration;

use super::config::PriorityWeights;

/// One priority factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// Time waiting, capped.
    Age,
    /// The job's share of its partition's CPUs.
    Size,
    /// The partition's tier.
    Partition,
    /// The QOS's priority.
    Qos,
    /// The user's fair share in the account.
    FairShare,
    /// `--nice` (points taken off).
    Nice,
    /// The administrator's priority (points added).
    Admin,
}

impl Factor {
    /// Its name as `gangway show job` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Factor::Age => "age",
            Factor::Size => "size",
            Factor::Partition => "partition",
            Factor::Qos => "qos",
            Factor::FairShare => "fairshare",
            Factor::Nice => "nice",
            Factor::Admin => "admin",
        }
    }
}

/// The factors of one job, kept compact: 100,000 pending jobs each carry one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Factors {
    pub age: f32,
    pub size: f32,
    pub partition: f32,
    pub qos: f32,
    pub fairshare: f32,
    pub nice: i32,
    pub admin: u32,
}

impl Factors {
    /// The age factor: waiting time over `max_age`, at most 1.
    pub fn age_of(waited: Duration, max_age: Duration) -> f32 {
        let max = max_age.as_secs_f64().max(1e-9);
        (waited.as_secs_f64() / max).clamp(0.0, 1.0) as f32
    }

    /// The size factor: CPUs asked over the partition's, or its complement for small-first.
    pub fn size_of(cpus: u64, partition_cpus: u64, favor_small: bool) -> f32 {
        let share = (cpus as f64 / partition_cpus.max(1) as f64).clamp(0.0, 1.0);
        (if favor_small { 1.0 - share } else { share }) as f32
    }
}

/// One line of an explanation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    /// The factor.
    pub factor: Factor,
    /// Its value (0..1 for weighted factors; the raw number for nice and admin).
    pub value: f64,
    /// Its weight (1 for nice and admin).
    pub weight: u32,
    /// Points it adds (negative for nice).
    pub points: i64,
}

/// A job's priority, factor by factor.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityExplanation {
    /// One term per factor.
    pub terms: Vec<Term>,
    /// The priority: the sum of the terms' points.
    pub total: i64,
}

impl PriorityExplanation {
    /// Builds the explanation (and so the value) from the factors and the weights.
    pub(crate) fn new(f: &Factors, w: &PriorityWeights) -> Self {
        let weighted = |factor, value: f32, weight: u32| Term {
            factor,
            value: f64::from(value),
            weight,
            points: points(value, weight),
        };
        let terms = vec![
            weighted(Factor::Age, f.age, w.age),
            weighted(Factor::Size, f.size, w.size),
            weighted(Factor::Partition, f.partition, w.partition),
            weighted(Factor::Qos, f.qos, w.qos),
            weighted(Factor::FairShare, f.fairshare, w.fairshare),
            Term {
                factor: Factor::Nice,
                value: f64::from(f.nice),
                weight: 1,
                points: -i64::from(f.nice),
            },
            Term {
                factor: Factor::Admin,
                value: f64::from(f.admin),
                weight: 1,
                points: i64::from(f.admin),
            },
        ];
        let total = terms.iter().map(|t| t.points).sum();
        Self { terms, total }
    }
}

impl fmt::Display for PriorityExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "priority {}", self.total)?;
        for t in &self.terms {
            match t.factor {
                Factor::Nice | Factor::Admin => {
                    writeln!(f, "  {:<10} {:>8} = {:>+8}", t.factor.name(), t.value, t.points)?
                }
                _ => writeln!(
                    f,
                    "  {:<10} {:>8.4} x {:>6} = {:>+8}",
                    t.factor.name(),
                    t.value,
                    t.weight,
                    t.points
                )?,
            }
        }
        Ok(())
    }
}

/// Points of a weighted factor: the one rounding rule, shared by the value and its
/// explanation so they cannot disagree.
fn points(value: f32, weight: u32) -> i64 {
    // Half up; both operands are never negative, so adding a half and truncating rounds
    // (and stays clear of the slow libm `round`).
    (f64::from(value).max(0.0) * f64::from(weight) + 0.5) as i64
}

/// The priority of a job with these factors: the same sum as [`PriorityExplanation`]'s total,
/// without building the explanation (a full pass computes 100,000 of these).
pub(crate) fn priority(f: &Factors, w: &PriorityWeights) -> i64 {
    points(f.age, w.age)
        + points(f.size, w.size)
        + points(f.partition, w.partition)
        + points(f.qos, w.qos)
        + points(f.fairshare, w.fairshare)
        - i64::from(f.nice)
        + i64::from(f.admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn explanation_reads_and_adds_up() {
        let f = Factors {
            age: 0.5,
            size: 0.25,
            qos: 1.0,
            fairshare: 0.5,
            nice: 10,
            ..Factors::default()
        };
        let e = PriorityExplanation::new(&f, &PriorityWeights::default());
        assert_eq!(e.total, 500 + 25 + 2000 + 5000 - 10);
        let text = e.to_string();
        assert!(text.starts_with("priority 7515\n"), "{text}");
        assert!(text.contains("fairshare    0.5000 x  10000 =    +5000"), "{text}");
        assert_eq!(Factors::age_of(Duration::from_secs(20), Duration::from_secs(10)), 1.0);
        assert_eq!(Factors::size_of(32, 128, true), 0.75);
    }

    proptest! {
        #[test]
        fn the_value_is_the_sum_of_the_terms(
            age in 0.0f32..=1.0, size in 0.0f32..=1.0, part in 0.0f32..=1.0, qos in 0.0f32..=1.0,
            fs in 0.0f32..=1.0, nice in -10_000i32..10_000, admin in 0u32..1_000_000,
            w in (0u32..100_000, 0u32..100_000, 0u32..100_000, 0u32..100_000, 0u32..100_000),
        ) {
            let f = Factors { age, size, partition: part, qos, fairshare: fs, nice, admin };
            let w = PriorityWeights { age: w.0, size: w.1, partition: w.2, qos: w.3, fairshare: w.4 };
            let e = PriorityExplanation::new(&f, &w);
            prop_assert_eq!(e.terms.iter().map(|t| t.points).sum::<i64>(), e.total);
            prop_assert_eq!(priority(&f, &w), e.total);
            for t in &e.terms {
                if !matches!(t.factor, Factor::Nice | Factor::Admin) {
                    prop_assert!(t.points >= 0 && t.points <= i64::from(t.weight));
                }
            }
        }
    }
}
