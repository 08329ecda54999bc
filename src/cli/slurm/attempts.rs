//! A requeued job's earlier attempts, read from its recorded events (pure), for `sacct`: when
//! each started, on which nodes, and how it ended: `REQUEUED` (`scontrol requeue`),
//! `NODE_FAIL` (a node of it lost or fenced), `PREEMPTED`, or the state it had ended in when
//! a finished job was requeued. `sacct -D` prints them as Slurm prints a requeued job's older
//! records; each sacct line shows only its own attempt's steps.

use crate::protocol::JobInfo;

/// One attempt of a job that ended in a requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub start: Option<u64>,
    pub end: u64,
    pub nodes: Vec<String>,
    pub state: String,
}

impl Attempt {
    /// The job as it was in this attempt (its figures gone with it: what the agents
    /// reported, its CPUs per node, its exit code).
    pub fn record(&self, job: &JobInfo) -> JobInfo {
        JobInfo {
            start_time: self.start,
            end_time: Some(self.end),
            state: self.state.clone(),
            nodes: self.nodes.clone(),
            attempt: self.number,
            exit_code: None,
            reason: String::new(),
            cpu_map: Vec::new(),
            usage: Vec::new(),
            ..job.clone()
        }
    }
}

/// `attempt N ...` at the head of an event's detail.
fn attempt_number(detail: &str) -> Option<u32> {
    detail.strip_prefix("attempt ")?.split_whitespace().next()?.parse().ok()
}

/// The attempts before the current one, oldest first, from a job's events (`start`: `attempt
/// N on a,b ...`; `end`: `STATE (reason)`; `requeue`: `attempt N+1 after|asked ...`).
pub fn earlier(events: &[(u64, String, String)]) -> Vec<Attempt> {
    let mut out = Vec::new();
    let mut started: Option<(u32, u64, Vec<String>)> = None;
    let mut ended: Option<(u64, String)> = None;
    for (time, kind, detail) in events {
        match kind.as_str() {
            "start" => {
                let Some(number) = attempt_number(detail) else { continue };
                let nodes = detail
                    .split_once(" on ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .map(|list| list.split(',').map(String::from).collect())
                    .unwrap_or_default();
                started = Some((number, *time, nodes));
                ended = None;
            }
            "end" => {
                let state = detail.split_whitespace().next().unwrap_or_default().to_string();
                ended = Some((*time, state));
            }
            "requeue" => {
                let Some(next) = attempt_number(detail) else { continue };
                let number = next.saturating_sub(1);
                let (end, state) = match ended.take() {
                    Some(finished) => finished,
                    None if detail.contains("after preemption") => (*time, "PREEMPTED".into()),
                    None if detail.contains(" was lost") || detail.contains(" fenced it") => {
                        (*time, "NODE_FAIL".into())
                    }
                    None => (*time, "REQUEUED".into()),
                };
                let (start, nodes) = match started.take() {
                    Some((n, start, nodes)) if n == number => (Some(start), nodes),
                    _ => (None, Vec::new()),
                };
                out.push(Attempt { number, start, end, nodes, state });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(list: &[(u64, &str, &str)]) -> Vec<(u64, String, String)> {
        list.iter().map(|(t, k, d)| (*t, k.to_string(), d.to_string())).collect()
    }

    #[test]
    fn each_requeue_closes_the_attempt_before_it() {
        let ev = events(&[
            (1_000, "submit", "Batch by alice"),
            (2_000, "start", "attempt 1 on node1,node2 (backfilled)"),
            (3_000, "step", "step 0: hostname"),
            (9_000, "requeue", "attempt 2 after node2 was lost: missed heartbeats"),
            (12_000, "start", "attempt 2 on node1,node3"),
            (20_000, "requeue", "attempt 3 asked by root"),
            (21_000, "start", "attempt 3 on node4"),
            (25_000, "end", "COMPLETED (None)"),
            (26_000, "requeue", "attempt 4 asked by root"),
            (27_000, "start", "attempt 4 on node4"),
            (28_000, "requeue", "attempt 5 after preemption by job 9 (requeue)"),
        ]);
        let a = earlier(&ev);
        let brief: Vec<(u32, Option<u64>, u64, String, String)> = a
            .iter()
            .map(|a| (a.number, a.start, a.end, a.nodes.join(","), a.state.clone()))
            .collect();
        assert_eq!(
            brief,
            [
                (1, Some(2_000), 9_000, "node1,node2".into(), "NODE_FAIL".into()),
                (2, Some(12_000), 20_000, "node1,node3".into(), "REQUEUED".into()),
                (3, Some(21_000), 25_000, "node4".into(), "COMPLETED".into()),
                (4, Some(27_000), 28_000, "node4".into(), "PREEMPTED".into()),
            ]
        );
        assert!(earlier(&ev[..3]).is_empty(), "never requeued: no earlier attempt");
    }

    #[test]
    fn an_attempts_record_is_the_job_as_it_was() {
        let job = JobInfo {
            usage: Vec::new(),
            reason: "cancelled by root".into(),
            ..crate::cli::array_rows::test_line(7, "CANCELLED", None)
        };
        let a = Attempt {
            number: 1,
            start: Some(5),
            end: 9,
            nodes: vec!["node1".into()],
            state: "REQUEUED".into(),
        };
        let r = a.record(&job);
        assert_eq!((r.id, r.attempt, r.state.as_str()), (7, 1, "REQUEUED"));
        assert_eq!((r.start_time, r.end_time, r.reason.as_str()), (Some(5), Some(9), ""));
    }
}
