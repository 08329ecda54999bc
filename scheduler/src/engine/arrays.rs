//! Job arrays in the books: an array waits as ONE queued job standing for all its pending
//! tasks (a count, not a job per task), so 100000 waiting tasks cost a pass one look. A start
//! of that job splits one task off as a job of its own, under the next id of the caller's
//! counter ([`Scheduler::set_next_id`]); the array is looked at again in its turn until a task
//! does not fit or its throttle (`%N`) is reached. Its running tasks are counted against the
//! throttle as they start and end.

use super::jobs::{Job, Where};
use super::{ArrayTasks, Scheduler};
use crate::types::{JobId, Timestamp};

/// Tasks one look at an array may start before the pass moves on (the array comes back in the
/// same pass's continuation), so a pass stays bounded on a large idle cluster.
pub(super) const ARRAY_STARTS_PER_LOOK: usize = 256;

impl Scheduler {
    /// The id the next array task gets: the caller's next free id. Call it before each pass;
    /// afterwards [`Scheduler::next_id`] says how many the pass used.
    pub fn set_next_id(&mut self, id: JobId) {
        self.next_task_id = id;
    }

    /// The next free id after the tasks this scheduler started.
    pub fn next_id(&self) -> JobId {
        self.next_task_id
    }

    /// A job array's pending tasks and throttle as the caller has them now (a task cancelled
    /// before it started, `scontrol update ArrayTaskThrottle`): no pending task left takes the
    /// array out of the queue.
    pub fn update_array(&mut self, id: JobId, pending: u32, throttle: Option<u32>, now: Timestamp) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let Some(tasks) = job.array.as_mut() else { return };
        let wider = throttle.is_none_or(|t| tasks.throttle.is_some_and(|old| t > old));
        tasks.pending = pending;
        tasks.throttle = throttle;
        if pending == 0 {
            self.retire_array(id, now);
        } else if wider {
            // Tasks held back by the throttle may start now.
            job.reported = None;
            self.fresh.push_back(id);
        }
    }

    /// The array's pending tasks and running count, if `id` is an array waiting here.
    pub fn array_tasks(&self, id: JobId) -> Option<ArrayTasks> {
        self.jobs.get(&id).and_then(|j| j.array)
    }

    /// Whether a job array still waits with pending tasks (to be looked at again).
    pub(super) fn more_tasks(&self, id: JobId) -> bool {
        self.jobs
            .get(&id)
            .is_some_and(|j| j.at == Where::Queued && j.array.is_some_and(|a| a.pending > 0))
    }

    /// Takes one task out of array `array` as job `task` (whose start is being recorded): the
    /// task has the array's request, owner and priority; the array has one pending task less,
    /// and leaves the books with its last.
    pub(super) fn split_task(&mut self, array: JobId, task: JobId, now: Timestamp) {
        self.next_task_id = self.next_task_id.max(task + 1);
        let Some(a) = self.jobs.get_mut(&array) else { return };
        let Some(tasks) = a.array.as_mut() else { return };
        tasks.pending = tasks.pending.saturating_sub(1);
        let last = tasks.pending == 0;
        let t = Box::new(Job {
            id: task,
            request: a.request.clone(),
            partition: a.partition,
            account: a.account,
            assoc: a.assoc,
            qos: a.qos,
            nice: a.nice,
            requeue: a.requeue,
            factors: a.factors,
            priority: a.priority,
            eligible: a.eligible,
            at: Where::Held,
            class: a.class,
            reported: None,
            awaiting: Vec::new(),
            array: None,
            task_of: Some(array),
        });
        // Counted in as queued, as a submission would be: its start counts it out again.
        self.quotas.count_queued(&self.policy.tree, t.account, true);
        self.jobs.insert(task, t);
        if last {
            self.retire_array(array, now);
        }
    }

    /// An array with no pending task left leaves the queue and the books (its running tasks
    /// are jobs of their own).
    fn retire_array(&mut self, id: JobId, now: Timestamp) {
        let Some(job) = self.jobs.get(&id) else { return };
        self.queue.remove(job);
        let account = job.account;
        self.quotas.count_queued(&self.policy.tree, account, false);
        self.unwant(id);
        self.jobs.remove(&id);
        self.drop_reservation(id, now);
    }

    /// A task of an array started (`up`) or stopped: the array's running count follows.
    pub(super) fn count_task(&mut self, task: JobId, up: bool) {
        let Some(array) = self.jobs.get(&task).and_then(|j| j.task_of) else { return };
        let Some(tasks) = self.jobs.get_mut(&array).and_then(|a| a.array.as_mut()) else {
            return;
        };
        tasks.running = if up { tasks.running + 1 } else { tasks.running.saturating_sub(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ClusterBuilder;
    use crate::decision::{Decision, PendingReason};
    use crate::engine::{Budget, Event, NewJob, Pass};
    use crate::policy::config::SchedulerConfig;
    use crate::request::JobRequest;

    /// Two nodes of 16 cores; array 1 of `tasks` tasks of 8 cores each, next id 1000.
    fn world(tasks: u32, throttle: Option<u32>) -> Scheduler {
        let cluster = ClusterBuilder::new().nodes(2).shape(2, 8, 1).build().expect("cluster");
        let mut s = Scheduler::new(cluster, SchedulerConfig::default()).expect("scheduler");
        let mut job = NewJob::new(1, JobRequest::new().ntasks(1).cpus_per_task(8), "ann");
        job.array = Some(ArrayTasks { pending: tasks, running: 0, throttle });
        s.submit(job, Timestamp(0)).expect("submit");
        s.set_next_id(1000);
        s
    }

    fn starts(p: &Pass) -> Vec<(JobId, Option<JobId>)> {
        p.decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Start { start, array, .. } => Some((start.job, *array)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_waiting_array_is_one_job_and_starts_as_many_tasks_as_fit_in_one_pass() {
        let mut s = world(100_000, None);
        let p = s.pass(Timestamp(0), Budget::unlimited());
        assert_eq!(
            starts(&p),
            [(1000, Some(1)), (1001, Some(1)), (1002, Some(1)), (1003, Some(1))]
        );
        assert_eq!(s.next_id(), 1004);
        // Four running tasks and the array: five jobs in the books, not 100000.
        assert_eq!(s.jobs(), 5);
        let left = s.array_tasks(1).expect("still waiting");
        assert_eq!((left.pending, left.running), (99_996, 4));
        assert_eq!(s.job(1).and_then(|j| j.reason), Some(PendingReason::Resources));
        // A task ends: the next one takes its place, with the next id.
        s.handle(Event::Ended { job: 1002, requeue: false }, Timestamp(10));
        let p = s.pass(Timestamp(10), Budget::unlimited());
        assert_eq!(starts(&p), [(1004, Some(1))]);
    }

    #[test]
    fn the_throttle_holds_running_tasks_to_its_count() {
        let mut s = world(6, Some(2));
        let p = s.pass(Timestamp(0), Budget::unlimited());
        assert_eq!(starts(&p).len(), 2, "room for 4, throttle 2");
        assert_eq!(s.job(1).and_then(|j| j.reason), Some(PendingReason::JobArrayTaskLimit));
        s.handle(Event::Ended { job: 1000, requeue: false }, Timestamp(5));
        let p = s.pass(Timestamp(5), Budget::unlimited());
        assert_eq!(starts(&p), [(1002, Some(1))]);
        // Raised to 3 later: one more starts without any other change.
        s.update_array(1, 3, Some(3), Timestamp(6));
        let p = s.pass(Timestamp(6), Budget::unlimited());
        assert_eq!(starts(&p), [(1003, Some(1))]);
        assert_eq!(s.array_tasks(1).map(|a| (a.pending, a.running)), Some((2, 3)));
    }

    #[test]
    fn the_last_task_takes_the_array_out_of_the_books_and_a_cancelled_rest_does_too() {
        let mut s = world(3, None);
        let p = s.pass(Timestamp(0), Budget::unlimited());
        assert_eq!(starts(&p).len(), 3);
        assert!(s.job(1).is_none(), "no pending task left");
        assert_eq!(s.queued(), 0);
        let mut s = world(10, Some(1));
        s.pass(Timestamp(0), Budget::unlimited());
        s.update_array(1, 0, Some(1), Timestamp(1));
        assert!(s.job(1).is_none() && s.queued() == 0);
        assert!(s.job(1000).is_some_and(|j| j.running), "the running task runs on");
    }

    #[test]
    fn a_bounded_pass_carries_an_arrays_starts_on_in_its_continuation() {
        let cluster = ClusterBuilder::new().nodes(40).shape(2, 8, 1).build().expect("cluster");
        let mut s = Scheduler::new(cluster, SchedulerConfig::default()).expect("scheduler");
        let mut job = NewJob::new(1, JobRequest::new().ntasks(1), "ann");
        job.array = Some(ArrayTasks { pending: 1000, running: 0, throttle: None });
        s.submit(job, Timestamp(0)).expect("submit");
        s.set_next_id(2);
        let mut started = 0;
        for _ in 0..10 {
            let p = s.pass(Timestamp(0), Budget::jobs(2));
            started += starts(&p).len();
            if p.done {
                break;
            }
        }
        assert_eq!(started, 640, "every core of 40 nodes");
    }
}
