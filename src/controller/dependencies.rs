//! Whether a job's `--dependency` holds: a pure function of the dependency, the job asking,
//! a [`Lookup`] of other jobs' states and the time ([`evaluate`]), and the index of who waits
//! for whom ([`Dependents`]) so the controller re-evaluates a dependency only when a job it
//! names starts or ends (or a timed `after:ID+MIN` falls due), never every job on every pass.
//!
//! The controller keeps every job in memory for its whole life (finished ones too: `history`
//! reads them there), so a dependency on a job that ended long ago is decided from its
//! recorded end. Should finished jobs ever be purged from memory, [`Lookup::observe`] is the
//! one place that must look in the store instead.
//!
//! Arrays plug in through [`Lookup::observe`]: a plain id of an array answers one
//! [`Observed`] per task (tasks not materialised yet as `Pending`), `7_3` the one task; and
//! `aftercorr` asks for the task of the same index as the [`Subject`]'s own `task`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::protocol::JobId;
use crate::protocol::dependency::{Condition, Dependency, JobRef};

/// What a job named by a dependency is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Not started (queued, held, waiting itself).
    Pending,
    /// Started at this wall time (ms).
    Running { started: u64 },
    /// Over: `ok` when it completed with exit 0; `state` as Slurm names it, for the reason.
    Ended { ok: bool, state: &'static str, started: Option<u64>, ended: u64 },
}

/// The job whose dependency is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub id: JobId,
    pub uid: u32,
    pub name: &'a str,
    /// Its index when it is a task of an array (for `aftercorr`).
    pub task: Option<u32>,
}

/// Other jobs' states, as the controller knows them.
pub trait Lookup {
    /// What `r` names: one entry for a job, one per task for an array (`None`: no such job).
    fn observe(&self, r: JobRef) -> Option<Vec<Observed>>;
    /// A job of the subject's user and name that keeps its `singleton` waiting: one running,
    /// or pending and submitted before it (as Slurm decides).
    fn singleton_blocker(&self, subject: &Subject<'_>) -> Option<JobId>;
}

/// What a dependency comes to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every condition needed holds: the job may be scheduled.
    Satisfied,
    /// Still waiting for `remaining` (the conditions not yet met); `recheck_at` is the wall
    /// time (ms) a timed `after:ID+MIN` falls due, if one does.
    Waiting { remaining: Dependency, recheck_at: Option<u64> },
    /// It can never hold (`why` says which job ended how).
    Never { why: String },
}

/// One condition now.
enum Status {
    Met,
    Open { at: Option<u64> },
    Never(String),
}

const MINUTE_MS: u64 = 60_000;

/// Evaluates `dep` for `subject` at wall time `now` (ms).
pub fn evaluate(dep: &Dependency, subject: &Subject<'_>, jobs: &impl Lookup, now: u64) -> Verdict {
    let mut remaining = Vec::new();
    let mut recheck_at: Option<u64> = None;
    let mut nevers = Vec::new();
    for c in &dep.conditions {
        match status(c, subject, jobs, now) {
            Status::Met if dep.any => return Verdict::Satisfied,
            Status::Met => {}
            Status::Never(why) if !dep.any => return Verdict::Never { why },
            Status::Never(why) => nevers.push(why),
            Status::Open { at } => {
                remaining.push(*c);
                recheck_at = match (recheck_at, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    match (remaining.is_empty(), dep.any) {
        (true, false) => Verdict::Satisfied,
        (true, true) => Verdict::Never { why: nevers.join("; ") },
        (false, any) => {
            Verdict::Waiting { remaining: Dependency { any, conditions: remaining }, recheck_at }
        }
    }
}

fn status(c: &Condition, subject: &Subject<'_>, jobs: &impl Lookup, now: u64) -> Status {
    let (target, test): (JobRef, fn(&Observed) -> Option<bool>) = match *c {
        Condition::Singleton => {
            return match jobs.singleton_blocker(subject) {
                Some(_) => Status::Open { at: None },
                None => Status::Met,
            };
        }
        Condition::After { job, minutes } => return after(job, minutes, jobs, now),
        Condition::AfterOk { job } => (job, ended),
        Condition::AfterNotOk { job } => (job, |o| ended(o).map(|ok| !ok)),
        Condition::AfterAny { job } => (job, |o| ended(o).map(|_| true)),
        Condition::AfterCorr { job } => {
            let task = job.task.or(subject.task);
            (JobRef { job: job.job, task }, ended)
        }
    };
    let Some(states) = jobs.observe(target) else {
        return Status::Never(format!("job {target} does not exist"));
    };
    let mut open = false;
    for o in &states {
        match test(o) {
            Some(true) => {}
            Some(false) => {
                let state = match o {
                    Observed::Ended { state, .. } => *state,
                    _ => "?",
                };
                return Status::Never(format!("job {target} ended {state}"));
            }
            None => open = true,
        }
    }
    if open { Status::Open { at: None } } else { Status::Met }
}

/// Whether the job ended well (`None`: not over).
fn ended(o: &Observed) -> Option<bool> {
    match o {
        Observed::Ended { ok, .. } => Some(*ok),
        _ => None,
    }
}

/// `after:ID+MIN`: every job named started (or ended without starting: cancelled while it
/// waited) at least `minutes` ago.
fn after(job: JobRef, minutes: u32, jobs: &impl Lookup, now: u64) -> Status {
    let Some(states) = jobs.observe(job) else {
        return Status::Never(format!("job {job} does not exist"));
    };
    let mut due = 0;
    for o in &states {
        let since = match *o {
            Observed::Pending => return Status::Open { at: None },
            Observed::Running { started } => started,
            Observed::Ended { started, ended, .. } => started.unwrap_or(ended),
        };
        due = due.max(since.saturating_add(u64::from(minutes) * MINUTE_MS));
    }
    if now >= due { Status::Met } else { Status::Open { at: Some(due) } }
}

/// Whether giving job `id` the dependency `dep` would close a cycle: some job `dep` names
/// waits (through the remaining dependencies `waits_on` gives) for `id` itself.
pub fn creates_cycle(
    id: JobId,
    dep: &Dependency,
    waits_on: impl Fn(JobId) -> Vec<JobId>,
) -> Option<Vec<JobId>> {
    let mut seen = BTreeSet::new();
    // Depth-first, keeping the path so the refusal can show the loop.
    let mut stack: Vec<(JobId, Vec<JobId>)> =
        dep.jobs().into_iter().map(|r| (r.job, vec![id, r.job])).collect();
    while let Some((job, path)) = stack.pop() {
        if job == id {
            return Some(path);
        }
        if !seen.insert(job) {
            continue;
        }
        for next in waits_on(job) {
            let mut p = path.clone();
            p.push(next);
            stack.push((next, p));
        }
    }
    None
}

/// Who waits for whom: the index that lets a job's start or end wake only the jobs whose
/// dependency names it (plain data, rebuilt from the jobs at a restart).
#[derive(Debug, Default)]
pub struct Dependents {
    /// Job named → the jobs whose dependency names it.
    by_job: HashMap<JobId, BTreeSet<JobId>>,
    /// (uid, name) → the jobs with a `singleton` condition.
    singletons: HashMap<(u32, String), BTreeSet<JobId>>,
    /// Wall time (ms) a timed `after` falls due → the jobs to look at again then.
    timed: BTreeMap<u64, BTreeSet<JobId>>,
}

impl Dependents {
    /// Indexes `waiter`, whose dependency is `dep`.
    pub fn add(&mut self, waiter: JobId, uid: u32, name: &str, dep: &Dependency) {
        for r in dep.jobs() {
            self.by_job.entry(r.job).or_default().insert(waiter);
        }
        if dep.singleton() {
            self.singletons.entry((uid, name.to_string())).or_default().insert(waiter);
        }
    }

    /// Forgets `waiter` (its dependency was met, or it ended).
    pub fn remove(&mut self, waiter: JobId, uid: u32, name: &str, dep: &Dependency) {
        for r in dep.jobs() {
            if let Some(set) = self.by_job.get_mut(&r.job) {
                set.remove(&waiter);
                if set.is_empty() {
                    self.by_job.remove(&r.job);
                }
            }
        }
        let key = (uid, name.to_string());
        if let Some(set) = self.singletons.get_mut(&key) {
            set.remove(&waiter);
            if set.is_empty() {
                self.singletons.remove(&key);
            }
        }
    }

    /// Looks at `waiter` again at wall time `at`.
    pub fn recheck_at(&mut self, waiter: JobId, at: u64) {
        self.timed.entry(at).or_default().insert(waiter);
    }

    /// The jobs to look at again because `job` (of `uid`, named `name`) started or ended.
    pub fn woken_by(&self, job: JobId, uid: u32, name: &str) -> Vec<JobId> {
        let named = self.by_job.get(&job).into_iter().flatten();
        let namesakes = self.singletons.get(&(uid, name.to_string())).into_iter().flatten();
        let mut woken: Vec<JobId> = named.chain(namesakes).copied().filter(|w| *w != job).collect();
        woken.sort_unstable();
        woken.dedup();
        woken
    }

    /// The jobs whose timed `after` fell due by `now`, taken out of the timer index.
    pub fn due(&mut self, now: u64) -> Vec<JobId> {
        let later = self.timed.split_off(&(now + 1));
        let due = std::mem::replace(&mut self.timed, later);
        due.into_values().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs by id; an array is several entries under one id.
    #[derive(Default)]
    struct Jobs {
        states: BTreeMap<JobId, Vec<Observed>>,
        blocker: Option<JobId>,
    }

    impl Lookup for Jobs {
        fn observe(&self, r: JobRef) -> Option<Vec<Observed>> {
            let all = self.states.get(&r.job)?;
            match r.task {
                None => Some(all.clone()),
                Some(t) => all.get(t as usize).map(|o| vec![*o]),
            }
        }
        fn singleton_blocker(&self, _: &Subject<'_>) -> Option<JobId> {
            self.blocker
        }
    }

    const ME: Subject<'static> = Subject { id: 100, uid: 1000, name: "job", task: None };

    fn ok(started: u64) -> Observed {
        Observed::Ended { ok: true, state: "COMPLETED", started: Some(started), ended: started + 1 }
    }

    fn failed() -> Observed {
        Observed::Ended { ok: false, state: "FAILED", started: Some(1), ended: 2 }
    }

    fn cancelled_while_pending(at: u64) -> Observed {
        Observed::Ended { ok: false, state: "CANCELLED", started: None, ended: at }
    }

    fn verdict(dep: &str, jobs: &Jobs, now: u64) -> Verdict {
        evaluate(&dep.parse().expect("dependency"), &ME, jobs, now)
    }

    fn jobs(states: &[(JobId, Observed)]) -> Jobs {
        let mut j = Jobs::default();
        for (id, o) in states {
            j.states.entry(*id).or_default().push(*o);
        }
        j
    }

    #[test]
    fn afterok_waits_then_holds_or_never_can() {
        let pending = jobs(&[(1, Observed::Pending)]);
        assert!(matches!(verdict("afterok:1", &pending, 0), Verdict::Waiting { .. }));
        let running = jobs(&[(1, Observed::Running { started: 5 })]);
        assert!(matches!(verdict("afterok:1", &running, 9), Verdict::Waiting { .. }));
        assert_eq!(verdict("afterok:1", &jobs(&[(1, ok(5))]), 9), Verdict::Satisfied);
        assert_eq!(
            verdict("afterok:1", &jobs(&[(1, failed())]), 9),
            Verdict::Never { why: "job 1 ended FAILED".into() }
        );
        assert_eq!(verdict("afternotok:1", &jobs(&[(1, failed())]), 9), Verdict::Satisfied);
        assert!(matches!(verdict("afternotok:1", &jobs(&[(1, ok(5))]), 9), Verdict::Never { .. }));
        assert_eq!(verdict("afterany:1", &jobs(&[(1, failed())]), 9), Verdict::Satisfied);
        assert_eq!(verdict("afterany:1", &jobs(&[(1, ok(3))]), 9), Verdict::Satisfied);
        assert!(matches!(verdict("afterany:1", &running, 9), Verdict::Waiting { .. }));
        // Unknown at evaluation (refused at submission, so only if a job was forgotten).
        assert!(matches!(verdict("afterok:7", &pending, 9), Verdict::Never { .. }));
    }

    #[test]
    fn after_counts_minutes_from_the_start_or_a_cancellation() {
        let running = jobs(&[(1, Observed::Running { started: 1_000 })]);
        assert_eq!(verdict("after:1", &running, 1_000), Verdict::Satisfied);
        let v = verdict("after:1+2", &running, 1_000);
        let Verdict::Waiting { recheck_at, remaining } = v else { panic!("{v:?}") };
        assert_eq!(recheck_at, Some(1_000 + 2 * MINUTE_MS));
        assert_eq!(remaining.to_string(), "after:1+2");
        assert_eq!(verdict("after:1+2", &running, 1_000 + 2 * MINUTE_MS), Verdict::Satisfied);
        assert!(matches!(
            verdict("after:1", &jobs(&[(1, Observed::Pending)]), 5),
            Verdict::Waiting { recheck_at: None, .. }
        ));
        // Cancelled before it started: `after` holds from the cancellation.
        assert_eq!(
            verdict("after:1", &jobs(&[(1, cancelled_while_pending(7))]), 7),
            Verdict::Satisfied
        );
    }

    #[test]
    fn all_needs_every_condition_and_any_needs_one() {
        let j = jobs(&[(1, ok(1)), (2, Observed::Pending), (3, failed())]);
        let Verdict::Waiting { remaining, .. } = verdict("afterok:1:2", &j, 9) else { panic!() };
        assert_eq!(remaining.to_string(), "afterok:2", "what holds is dropped");
        assert!(matches!(verdict("afterok:2,afterok:3", &j, 9), Verdict::Never { .. }));
        assert_eq!(verdict("afterok:3?afterok:1", &j, 9), Verdict::Satisfied);
        let Verdict::Waiting { remaining, .. } = verdict("afterok:3?afterok:2", &j, 9) else {
            panic!()
        };
        assert_eq!(remaining.conditions.len(), 1, "the one that can never hold is dropped");
        assert!(matches!(verdict("afterok:3?afternotok:1", &j, 9), Verdict::Never { .. }));
    }

    #[test]
    fn singleton_waits_for_the_blocker() {
        let mut j = jobs(&[]);
        j.blocker = Some(4);
        assert!(matches!(verdict("singleton", &j, 0), Verdict::Waiting { .. }));
        j.blocker = None;
        assert_eq!(verdict("singleton", &j, 0), Verdict::Satisfied);
    }

    #[test]
    fn arrays_answer_for_every_task_and_aftercorr_for_the_same_index() {
        let array = jobs(&[(7, ok(1)), (7, Observed::Pending), (7, failed())]);
        assert!(matches!(verdict("afterok:7", &array, 9), Verdict::Never { .. }));
        assert_eq!(verdict("afterok:7_0", &array, 9), Verdict::Satisfied);
        let task = |t| Subject { task: Some(t), ..ME };
        let dep: Dependency = "aftercorr:7".parse().expect("dependency");
        assert_eq!(evaluate(&dep, &task(0), &array, 9), Verdict::Satisfied);
        assert!(matches!(evaluate(&dep, &task(1), &array, 9), Verdict::Waiting { .. }));
        assert!(matches!(evaluate(&dep, &task(2), &array, 9), Verdict::Never { .. }));
    }

    #[test]
    fn cycles_are_found_through_remaining_dependencies() {
        // 2 waits for 1, 3 waits for 2: giving 1 "afterok:3" closes 1 → 3 → 2 → 1.
        let waits_on = |j: JobId| match j {
            2 => vec![1],
            3 => vec![2],
            _ => vec![],
        };
        let dep: Dependency = "afterok:3".parse().expect("dependency");
        assert_eq!(creates_cycle(1, &dep, waits_on), Some(vec![1, 3, 2, 1]));
        assert_eq!(creates_cycle(4, &dep, waits_on), None);
        let own: Dependency = "afterany:5".parse().expect("dependency");
        assert_eq!(creates_cycle(5, &own, waits_on), Some(vec![5, 5]));
    }

    #[test]
    fn the_index_wakes_only_the_jobs_that_name_one() {
        let mut d = Dependents::default();
        d.add(10, 1000, "a", &"afterok:1:2".parse().expect("dependency"));
        d.add(11, 1000, "b", &"singleton".parse().expect("dependency"));
        assert_eq!(d.woken_by(1, 0, "x"), [10]);
        assert_eq!(d.woken_by(3, 1000, "b"), [11]);
        assert!(d.woken_by(3, 1001, "b").is_empty(), "another user's namesake");
        d.recheck_at(10, 500);
        assert!(d.due(499).is_empty());
        assert_eq!(d.due(500), [10]);
        assert!(d.due(600).is_empty(), "taken out once due");
        d.remove(10, 1000, "a", &"afterok:1:2".parse().expect("dependency"));
        assert!(d.woken_by(1, 0, "x").is_empty());
    }
}
