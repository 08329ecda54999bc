//! What a simulation is judged by: utilisation, waiting times (mean, median, 95th
//! percentile), mean bounded slowdown, jobs started by backfill, and the scheduler's own time
//! per decision and per pass.

use std::time::Duration;

use super::engine::SimReport;

/// Runs shorter than this count as this long in the bounded slowdown, so very short jobs do
/// not dominate the mean (the usual 10 s threshold).
pub const SLOWDOWN_THRESHOLD: Duration = Duration::from_secs(10);

/// The figures of one simulation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Jobs in the workload.
    pub jobs: usize,
    /// Jobs that ran to their end.
    pub completed: usize,
    /// Jobs refused at submission.
    pub rejected: usize,
    /// Jobs that never started.
    pub never_started: usize,
    /// CPU-seconds run over CPU-seconds available from the first submission to the last end.
    pub utilisation: f64,
    /// Mean wait (first start − submit), seconds.
    pub mean_wait_s: f64,
    /// Median wait, seconds.
    pub median_wait_s: f64,
    /// 95th percentile wait, seconds.
    pub p95_wait_s: f64,
    /// Mean of max(1, (wait + run) / max(run, 10 s)).
    pub mean_bounded_slowdown: f64,
    /// Jobs first started by backfill.
    pub backfilled: usize,
    /// Decisions taken.
    pub decisions: usize,
    /// Preemptions.
    pub preemptions: usize,
    /// 99th percentile of the time per job decision, microseconds (0 without a clock).
    pub p99_decision_us: f64,
    /// Longest pass, milliseconds (0 without a clock).
    pub max_pass_ms: f64,
    /// Simulated span (first submission to last end), seconds.
    pub span_s: f64,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied().unwrap_or(0.0)
}

impl Metrics {
    /// The figures of `report`; clock readings are taken as nanoseconds.
    pub fn of(report: &SimReport) -> Self {
        let mut waits = Vec::new();
        let mut slowdown = 0.0;
        let (mut completed, mut rejected, mut never) = (0, 0, 0);
        for (_, o) in &report.jobs {
            if o.rejected {
                rejected += 1;
                continue;
            }
            let Some(start) = o.start else {
                never += 1;
                continue;
            };
            let wait = start.since(o.submit).as_secs_f64();
            waits.push(wait);
            if o.end.is_some() {
                completed += 1;
                let run = o.run.as_secs_f64();
                slowdown += ((wait + run) / run.max(SLOWDOWN_THRESHOLD.as_secs_f64())).max(1.0);
            }
        }
        waits.sort_by(f64::total_cmp);
        let span = report.last_end.since(report.first_submit).as_secs_f64();
        let mut decisions: Vec<f64> = report.decision_times.iter().map(|&t| t as f64).collect();
        decisions.sort_by(f64::total_cmp);
        let max_pass = report.pass_times.iter().copied().max().unwrap_or(0);
        Self {
            jobs: report.jobs.len(),
            completed,
            rejected,
            never_started: never,
            utilisation: if span > 0.0 && report.total_cpus > 0 {
                report.cpu_seconds / (span * report.total_cpus as f64)
            } else {
                0.0
            },
            mean_wait_s: if waits.is_empty() {
                0.0
            } else {
                waits.iter().sum::<f64>() / waits.len() as f64
            },
            median_wait_s: quantile(&waits, 0.5),
            p95_wait_s: quantile(&waits, 0.95),
            mean_bounded_slowdown: if completed > 0 { slowdown / completed as f64 } else { 0.0 },
            backfilled: report.backfilled,
            decisions: report.decisions,
            preemptions: report.preemptions,
            p99_decision_us: quantile(&decisions, 0.99) / 1000.0,
            max_pass_ms: max_pass as f64 / 1e6,
            span_s: span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.95), 95.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[7.0], 0.0), 7.0);
    }
}
