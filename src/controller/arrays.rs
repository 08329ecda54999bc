//! Job arrays in the controller's state. An array is ONE job record (its id is the array's,
//! `SLURM_ARRAY_JOB_ID`) holding the tasks not started yet as a compact [`IndexSet`](crate::protocol::array::IndexSet); the
//! scheduler queues it as one job too. A task becomes a job of its own (its own id, its own
//! row, `task` naming the array and its index) only when it starts (`handlers::arrays`). So a
//! waiting array of 100000 tasks is one row and one queue entry.
//!
//! What other parts ask of an array is here, as pure reads: its progress and each task's
//! outcome ([`Cluster::array_progress`], [`Cluster::array_task_outcome`], for dependencies),
//! the scheduler's view of it, a task's `SLURM_ARRAY_*` variables.

pub use super::state::{ArrayRecord, ArrayTask};
use super::state::{Cluster, Job, JobState};
use crate::protocol::JobId;
use gangway_scheduler::ArrayTasks;

/// How far an array has come, task by task (what dependencies on a whole array ask).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrayProgress {
    /// Tasks in all.
    pub total: u64,
    /// Not started (held or waiting; a requeued task counts here too).
    pub pending: u64,
    pub running: u64,
    /// Ended `COMPLETED`.
    pub completed: u64,
    /// Ended any other way than completed or cancelled (`FAILED`, `TIMEOUT`, `NODE_FAIL`,
    /// `OUT_OF_MEMORY`).
    pub failed: u64,
    /// Cancelled, started or not.
    pub cancelled: u64,
}

impl ArrayProgress {
    /// Every task has ended (`afterany`).
    pub fn is_complete(&self) -> bool {
        self.pending == 0 && self.running == 0
    }

    /// Every task has ended and completed (`afterok`).
    pub fn all_ok(&self) -> bool {
        self.is_complete() && self.completed == self.total
    }

    /// Every task has ended and at least one did not complete (`afternotok`).
    pub fn any_not_ok(&self) -> bool {
        self.is_complete() && self.completed < self.total
    }
}

/// Where one task of an array is (`aftercorr` asks it of the task with the same index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Not started (or requeued, waiting again).
    Pending,
    Running,
    /// Ended in this state (`Cancelled` also for a task cancelled before it started).
    Ended(JobState),
}

impl Cluster {
    /// The progress of array `array` (`None`: no such job, or not an array).
    pub fn array_progress(&self, array: JobId) -> Option<ArrayProgress> {
        let rec = self.jobs.get(&array)?.array.as_ref()?;
        let mut p = ArrayProgress {
            pending: rec.pending.len(),
            cancelled: rec.cancelled.len(),
            ..ArrayProgress::default()
        };
        for id in self.array_tasks.get(&array).into_iter().flat_map(|t| t.values()) {
            match self.jobs.get(id).map(|j| j.state) {
                Some(JobState::Pending) => p.pending += 1,
                Some(JobState::Running) => p.running += 1,
                Some(JobState::Completed) => p.completed += 1,
                Some(JobState::Cancelled) => p.cancelled += 1,
                Some(_) => p.failed += 1,
                None => {}
            }
        }
        p.total = p.pending + p.running + p.completed + p.failed + p.cancelled;
        Some(p)
    }

    /// Where task `index` of array `array` is (`None`: no such array or task).
    pub fn array_task_outcome(&self, array: JobId, index: u32) -> Option<TaskOutcome> {
        let rec = self.jobs.get(&array)?.array.as_ref()?;
        if rec.pending.contains(index) {
            return Some(TaskOutcome::Pending);
        }
        if rec.cancelled.contains(index) {
            return Some(TaskOutcome::Ended(JobState::Cancelled));
        }
        let id = self.array_tasks.get(&array)?.get(&index)?;
        Some(match self.jobs.get(id)?.state {
            JobState::Pending => TaskOutcome::Pending,
            JobState::Running => TaskOutcome::Running,
            s => TaskOutcome::Ended(s),
        })
    }

    /// The job ids of an array's started tasks, by index.
    pub fn array_task_ids(&self, array: JobId) -> impl Iterator<Item = (u32, JobId)> + '_ {
        self.array_tasks.get(&array).into_iter().flat_map(|t| t.iter().map(|(i, id)| (*i, *id)))
    }

    /// What the scheduler is told of an array record: its pending tasks (one queue entry for
    /// them all), its running ones and its throttle.
    pub(super) fn array_books(&self, job: &Job) -> Option<ArrayTasks> {
        let rec = job.array.as_ref()?;
        let running = self
            .array_task_ids(job.id)
            .filter(|(_, id)| self.jobs.get(id).is_some_and(|t| t.state == JobState::Running))
            .count() as u32;
        Some(ArrayTasks {
            pending: u32::try_from(rec.pending.len()).unwrap_or(u32::MAX),
            running,
            throttle: rec.throttle,
        })
    }

    /// A task's array variables, `SLURM_ARRAY_*` (when Slurm's are on) and `GANGWAY_ARRAY_*`.
    pub(super) fn array_variables(&self, job: &Job) -> Vec<(String, String)> {
        let Some(task) = job.task else { return Vec::new() };
        let spec = self.jobs.get(&task.array).and_then(|a| a.sub.array.as_ref());
        let all = spec.map(|s| s.indexes.clone()).unwrap_or_default();
        let values = [
            ("JOB_ID", task.array.to_string()),
            ("TASK_ID", task.index.to_string()),
            ("TASK_COUNT", all.len().to_string()),
            ("TASK_MIN", all.min().unwrap_or(task.index).to_string()),
            ("TASK_MAX", all.max().unwrap_or(task.index).to_string()),
            ("TASK_STEP", all.step().to_string()),
        ];
        let mut vars = Vec::new();
        for prefix in ["GANGWAY_ARRAY_", "SLURM_ARRAY_"] {
            if prefix.starts_with("SLURM") && !self.config.slurm_env {
                continue;
            }
            vars.extend(values.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone())));
        }
        vars
    }

    /// The script a job runs: an array task's is its array's (not copied into every task).
    pub(super) fn script_of(&self, job: &Job) -> Option<String> {
        match job.task {
            Some(t) => self.jobs.get(&t.array).and_then(|a| a.sub.script.clone()),
            None => job.sub.script.clone(),
        }
    }
}
