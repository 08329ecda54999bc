//! The Standard Workload Format of the Parallel Workloads Archive: one job per line, 18
//! whitespace-separated numbers (job number, submit time, wait time, run time, allocated
//! processors, average CPU time, used memory, requested processors, requested time, requested
//! memory, status, user, group, application, queue, partition, preceding job, think time),
//! `;` starting a header or comment line, -1 for unknown. Parsing never panics; a bad line is
//! refused with its number.

use std::fmt::Write as _;
use std::time::Duration;

use super::engine::SimJob;
use crate::request::JobRequest;
use crate::types::Timestamp;

/// Fields per job line.
pub const FIELDS: usize = 18;

/// One job of a trace, as the file gives it (`None` for -1, unknown).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SwfJob {
    /// 1: job number.
    pub id: u64,
    /// 2: submit time, seconds from the trace's start.
    pub submit: f64,
    /// 3: wait time, seconds.
    pub wait: Option<f64>,
    /// 4: run time, seconds.
    pub run: Option<f64>,
    /// 5: processors allocated.
    pub allocated: Option<u64>,
    /// 6: average CPU time used, seconds.
    pub cpu_time: Option<f64>,
    /// 7: memory used, KB per processor.
    pub used_memory: Option<f64>,
    /// 8: processors requested.
    pub requested: Option<u64>,
    /// 9: time requested, seconds (the time limit).
    pub requested_time: Option<f64>,
    /// 10: memory requested, KB per processor.
    pub requested_memory: Option<f64>,
    /// 11: status (1 completed, 0 failed, 5 cancelled, ...).
    pub status: Option<i64>,
    /// 12: user number.
    pub user: Option<u64>,
    /// 13: group number.
    pub group: Option<u64>,
    /// 14: application number.
    pub application: Option<u64>,
    /// 15: queue number.
    pub queue: Option<u64>,
    /// 16: partition number.
    pub partition: Option<u64>,
    /// 17: preceding job number.
    pub preceding: Option<u64>,
    /// 18: think time after the preceding job, seconds.
    pub think: Option<f64>,
}

/// A trace: header lines and jobs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Swf {
    /// Header and comment lines, without the `;`.
    pub header: Vec<String>,
    /// Jobs in file order.
    pub jobs: Vec<SwfJob>,
}

/// Why a trace was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SwfError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, and what was expected.
    pub message: String,
}

/// Seconds as a duration; absurd values saturate rather than panic.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

fn number(field: &str, index: usize, line: usize) -> Result<f64, SwfError> {
    let v: f64 = field.parse().map_err(|_| SwfError {
        line,
        message: format!("field {} ({}) is '{field}', not a number", index + 1, NAMES[index]),
    })?;
    if !v.is_finite() {
        return Err(SwfError {
            line,
            message: format!("field {} ({}) is not finite", index + 1, NAMES[index]),
        });
    }
    Ok(v)
}

const NAMES: [&str; FIELDS] = [
    "job number",
    "submit time",
    "wait time",
    "run time",
    "allocated processors",
    "average CPU time",
    "used memory",
    "requested processors",
    "requested time",
    "requested memory",
    "status",
    "user",
    "group",
    "application",
    "queue",
    "partition",
    "preceding job",
    "think time",
];

impl Swf {
    /// Parses a trace.
    pub fn parse(text: &str) -> Result<Self, SwfError> {
        let mut swf = Swf::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if let Some(comment) = trimmed.strip_prefix(';') {
                swf.header.push(comment.trim().to_owned());
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != FIELDS {
                return Err(SwfError {
                    line,
                    message: format!("expected {FIELDS} fields, found {}", fields.len()),
                });
            }
            let mut v = [0f64; FIELDS];
            for (k, (slot, f)) in v.iter_mut().zip(&fields).enumerate() {
                *slot = number(f, k, line)?;
            }
            let opt = |x: f64| (x >= 0.0).then_some(x);
            let count = |x: f64| (x >= 0.0).then_some(x as u64);
            if v[0] < 0.0 {
                return Err(SwfError { line, message: "the job number is negative".into() });
            }
            if v[1] < 0.0 {
                return Err(SwfError {
                    line,
                    message: "the submit time is negative (-1 is not allowed here)".into(),
                });
            }
            swf.jobs.push(SwfJob {
                id: v[0] as u64,
                submit: v[1],
                wait: opt(v[2]),
                run: opt(v[3]),
                allocated: count(v[4]),
                cpu_time: opt(v[5]),
                used_memory: opt(v[6]),
                requested: count(v[7]),
                requested_time: opt(v[8]),
                requested_memory: opt(v[9]),
                status: (v[10] >= 0.0).then_some(v[10] as i64),
                user: count(v[11]),
                group: count(v[12]),
                application: count(v[13]),
                queue: count(v[14]),
                partition: count(v[15]),
                preceding: count(v[16]),
                think: opt(v[17]),
            });
        }
        Ok(swf)
    }

    /// The trace as SWF text (header lines first).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for h in &self.header {
            let _ = writeln!(out, "; {h}");
        }
        let f =
            |x: Option<f64>| x.map_or_else(|| "-1".to_owned(), |v| format!("{}", v.round() as i64));
        let c = |x: Option<u64>| x.map_or_else(|| "-1".to_owned(), |v| v.to_string());
        for j in &self.jobs {
            let _ = writeln!(
                out,
                "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
                j.id,
                j.submit.round() as i64,
                f(j.wait),
                f(j.run),
                c(j.allocated),
                f(j.cpu_time),
                f(j.used_memory),
                c(j.requested),
                f(j.requested_time),
                f(j.requested_memory),
                j.status.map_or_else(|| "-1".to_owned(), |s| s.to_string()),
                c(j.user),
                c(j.group),
                c(j.application),
                c(j.queue),
                c(j.partition),
                c(j.preceding),
                f(j.think),
            );
        }
        out
    }

    /// The jobs to simulate: processors become tasks of one core each, on as many nodes as
    /// they need; the requested time is the time limit; submit times start at zero. Jobs
    /// without a run time or a processor count (cancelled before starting, mostly) are left
    /// out; their number is returned beside.
    pub fn sim_jobs(&self, max_processors: u64) -> (Vec<SimJob>, usize) {
        let first = self.jobs.iter().map(|j| j.submit).fold(f64::INFINITY, f64::min);
        let mut skipped = 0;
        let mut out = Vec::with_capacity(self.jobs.len());
        for j in &self.jobs {
            let procs = j.requested.filter(|&p| p > 0).or(j.allocated.filter(|&p| p > 0));
            let (Some(procs), Some(run)) = (procs, j.run) else {
                skipped += 1;
                continue;
            };
            let procs = procs.min(max_processors.max(1));
            let tasks = u32::try_from(procs).unwrap_or(u32::MAX);
            let mut request = JobRequest::new().nodes(1, tasks).ntasks(tasks);
            if let Some(t) = j.requested_time.filter(|&t| t > 0.0) {
                request = request.time_limit(secs(t));
            }
            let submit = Timestamp(((j.submit - first).max(0.0) * 1000.0) as u64);
            out.push(SimJob {
                id: j.id,
                submit,
                run: secs(run),
                request: request.submitted(submit),
                user: format!("u{}", j.user.unwrap_or(0)),
                account: None,
                qos: None,
            });
        }
        (out, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "; Version: 2.2\n; MaxProcs: 64\n\n\
        1 0 10 100 4 -1 -1 4 200 -1 1 3 1 -1 -1 -1 -1 -1\n\
        2 5 -1 50 -1 -1 -1 8 -1 -1 1 4 1 -1 -1 -1 -1 -1\n\
        3 9 -1 -1 -1 -1 -1 2 60 -1 5 4 1 -1 -1 -1 -1 -1\n";

    #[test]
    fn parses_header_jobs_and_unknowns() {
        let swf = Swf::parse(SAMPLE).unwrap();
        assert_eq!(swf.header, vec!["Version: 2.2", "MaxProcs: 64"]);
        assert_eq!(swf.jobs.len(), 3);
        assert_eq!(swf.jobs[0].requested_time, Some(200.0));
        assert_eq!(swf.jobs[1].allocated, None);
        let (jobs, skipped) = swf.sim_jobs(64);
        assert_eq!((jobs.len(), skipped), (2, 1), "job 3 has no run time");
        assert_eq!(jobs[0].request.ntasks, Some(4));
        assert_eq!(jobs[0].request.time_limit, Some(Duration::from_secs(200)));
        assert_eq!(jobs[1].request.time_limit, None);
        assert_eq!(jobs[1].submit, Timestamp::from_secs(5));
        assert_eq!(jobs[1].user, "u4");
    }

    #[test]
    fn round_trips_through_text() {
        let swf = Swf::parse(SAMPLE).unwrap();
        assert_eq!(Swf::parse(&swf.to_text()).unwrap(), swf);
    }

    #[test]
    fn errors_name_the_line() {
        let short = "; h\n1 0 10 100 4 -1 -1 4 200 -1 1 3 1 -1 -1 -1 -1\n";
        assert_eq!(
            Swf::parse(short).unwrap_err().to_string(),
            "line 2: expected 18 fields, found 17"
        );
        let word = "1 0 10 x 4 -1 -1 4 200 -1 1 3 1 -1 -1 -1 -1 -1\n";
        assert_eq!(
            Swf::parse(word).unwrap_err().to_string(),
            "line 1: field 4 (run time) is 'x', not a number"
        );
        let nan = "1 0 10 NaN 4 -1 -1 4 200 -1 1 3 1 -1 -1 -1 -1 -1\n";
        assert!(Swf::parse(nan).unwrap_err().to_string().starts_with("line 1: field 4"));
        let negative = "1 -1 10 5 4 -1 -1 4 200 -1 1 3 1 -1 -1 -1 -1 -1\n";
        assert!(Swf::parse(negative).unwrap_err().to_string().contains("submit time"));
    }

    proptest::proptest! {
        /// Whatever the input, parsing returns (never panics), and an error names a line
        /// that exists.
        #[test]
        fn never_panics(text in "[-0-9 .;a-z\\n]{0,400}") {
            if let Err(e) = Swf::parse(&text) {
                proptest::prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1));
            }
        }
    }
}
