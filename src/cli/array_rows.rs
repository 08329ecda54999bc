//! Job arrays in the listings (`queue`, `squeue`, `sacct`; pure): which lines a job id picks
//! (`7` the whole array, `7_3` one task, pending or started), and an array's pending tasks
//! as one line each (`squeue -r`) instead of the compact `7_[3-999%50]`.

use crate::protocol::array::{IndexSet, JobAddress};
use crate::protocol::{ArrayInfo, JobInfo};

/// The lines `addresses` pick, in order: a job or whole array by id, array tasks by index (a
/// pending one as a line of its own, `7_3`).
pub fn select(addresses: &[JobAddress], jobs: Vec<JobInfo>) -> Vec<JobInfo> {
    let mut out = Vec::new();
    for j in jobs {
        let mut keep = false;
        let mut chosen: Vec<u32> = Vec::new();
        for a in addresses {
            match (a, &j.array) {
                (JobAddress::Job(id), array) => {
                    keep |= j.id == *id || array.as_ref().is_some_and(|x| x.job == *id);
                }
                (JobAddress::Tasks(t), Some(ArrayInfo { job, task: Some(i), .. })) => {
                    keep |= *job == t.array && t.tasks.contains(*i);
                }
                (JobAddress::Tasks(t), Some(ArrayInfo { job, task: None, pending, .. }))
                    if *job == t.array =>
                {
                    let pending = pending.clone().unwrap_or_default();
                    chosen.extend(t.tasks.iter().filter(|i| pending.contains(*i)));
                }
                _ => {}
            }
        }
        if keep {
            out.push(j);
        } else if !chosen.is_empty() {
            out.extend(task_lines(&j, &IndexSet::from_indexes(chosen)));
        }
    }
    out
}

/// Every array's pending tasks as one line each (`squeue -r`); other lines unchanged.
pub fn one_line_per_task(jobs: Vec<JobInfo>) -> Vec<JobInfo> {
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        match j.array.as_ref().and_then(|a| if a.task.is_none() { a.pending.clone() } else { None })
        {
            Some(pending) => out.extend(task_lines(&j, &pending)),
            None => out.push(j),
        }
    }
    out
}

/// The pending line of an array as one line per index of `tasks`.
fn task_lines<'a>(j: &'a JobInfo, tasks: &'a IndexSet) -> impl Iterator<Item = JobInfo> + 'a {
    let array = j.array.as_ref().map_or(j.id, |a| a.job);
    tasks.iter().map(move |i| JobInfo {
        array: Some(ArrayInfo { job: array, task: Some(i), pending: None, throttle: None }),
        ..j.clone()
    })
}

/// The sort key that lists an array's tasks together, by index, where the array's id falls.
pub fn order_key(j: &JobInfo) -> (u64, u32, u64) {
    match &j.array {
        Some(a) => (a.job, a.task.map_or(0, |t| t.saturating_add(1)), j.id),
        None => (j.id, 0, j.id),
    }
}

/// Job ids as the listing commands take them (`-j 7,8_3`): the error names the bad one.
pub fn addresses(flag: &str, words: &[String]) -> Result<Vec<JobAddress>, String> {
    words
        .iter()
        .map(|w| {
            let w = w.split('.').next().unwrap_or(w);
            w.parse::<JobAddress>().map_err(|e| format!("{flag}: {e}"))
        })
        .collect()
}

/// A queue line for tests: job `id` in `state`, of an array or not.
#[cfg(test)]
pub(crate) fn test_line(id: u64, state: &str, array: Option<ArrayInfo>) -> JobInfo {
    use crate::protocol::{JobKind, Shape};
    JobInfo {
        id,
        name: "a".into(),
        user: "u".into(),
        uid: 1,
        kind: JobKind::Batch,
        state: state.into(),
        reason: "None".into(),
        partition: "p".into(),
        nodes: Vec::new(),
        ntasks: 1,
        cpus: 1,
        submit_time: 0,
        start_time: None,
        end_time: None,
        time_limit: None,
        exit_code: None,
        attempt: 1,
        requeue: true,
        held: false,
        priority: 0,
        command: String::new(),
        cwd: String::new(),
        output: None,
        error: None,
        cpu_map: Vec::new(),
        shape: Shape::default(),
        position: None,
        events: Vec::new(),
        usage: Vec::new(),
        sched: None,
        comment: None,
        dependency: None,
        array,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u64, array: Option<ArrayInfo>) -> JobInfo {
        let state =
            if array.as_ref().is_some_and(|a| a.task.is_none()) { "PENDING" } else { "RUNNING" };
        test_line(id, state, array)
    }

    /// Array 7: tasks 1 and 2 running (jobs 8, 9), 3-999 pending at most 50 at once; job 5.
    fn queue() -> Vec<JobInfo> {
        let task = |id, i| {
            line(id, Some(ArrayInfo { job: 7, task: Some(i), pending: None, throttle: None }))
        };
        let pending = "3-999".parse().ok();
        vec![
            line(5, None),
            line(7, Some(ArrayInfo { job: 7, task: None, pending, throttle: Some(50) })),
            task(8, 1),
            task(9, 2),
        ]
    }

    fn labels(jobs: &[JobInfo]) -> Vec<String> {
        jobs.iter().map(JobInfo::label).collect()
    }

    #[test]
    fn the_queue_shows_pending_tasks_compactly_and_running_ones_each() {
        assert_eq!(labels(&queue()), ["5", "7_[3-999%50]", "7_1", "7_2"]);
        let r = one_line_per_task(queue());
        assert_eq!(r.len(), 1 + 997 + 2);
        assert_eq!(labels(&r[..3]), ["5", "7_3", "7_4"]);
    }

    #[test]
    fn an_id_picks_the_whole_array_and_a_task_address_one_task() {
        let pick = |w: &[&str]| {
            let words: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            labels(&select(&addresses("-j", &words).expect("ids"), queue()))
        };
        assert_eq!(pick(&["7"]), ["7_[3-999%50]", "7_1", "7_2"]);
        assert_eq!(pick(&["7_2"]), ["7_2"]);
        assert_eq!(pick(&["7_5"]), ["7_5"], "a pending task, as a line of its own");
        assert_eq!(pick(&["7_[1-4]", "5"]), ["5", "7_3", "7_4", "7_1", "7_2"]);
        assert!(pick(&["7_1000"]).is_empty());
        assert!(addresses("-j", &["x".to_string()]).unwrap_err().contains("-j: 'x'"));
    }
}
