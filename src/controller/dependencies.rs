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
//! Arrays: [`Lookup::observe`] answers `7_3` with that task as one job ([`Observation::Job`]),
//! and an array's id `7` with an [`ArraySummary`], the three facts the conditions need (every
//! task started by when, every task over, some task ended not ok), never one entry per task.
//! `afterok:7` can then never hold from the first task that fails, and holds once all ended
//! ok; `afternotok:7` is decided once all ended; `after:7` once all started. `aftercorr:7`
//! asks for the task with the [`Subject`]'s own index (a missing index: met, as in Slurm).
//! [`Dependents`] indexes by what a dependency names (`7`, `7_3`, or `aftercorr:7`), so the
//! controller wakes whole-array waiters only when the summary's answer can change.

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

/// A whole array as the dependencies on it see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArraySummary {
    /// Wall time (ms) by which every task had started or ended (`None`: some task not yet).
    pub all_started: Option<u64>,
    /// Every task is over.
    pub all_ended: bool,
    /// Some task ended not ok: in this state.
    pub not_ok: Option<&'static str>,
}

/// What a dependency's job reference names now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A job, or one task of an array.
    Job(Observed),
    /// An array's id: all its tasks, summed up.
    Array(ArraySummary),
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
    /// What `r` names (`None`: no such job or task).
    fn observe(&self, r: JobRef) -> Option<Observation>;
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

/// Which ends a condition waits for.
#[derive(Clone, Copy)]
enum Wanted {
    Ok,
    NotOk,
    Any,
}

fn status(c: &Condition, subject: &Subject<'_>, jobs: &impl Lookup, now: u64) -> Status {
    let (target, wanted) = match *c {
        Condition::Singleton => {
            return match jobs.singleton_blocker(subject) {
                Some(_) => Status::Open { at: None },
                None => Status::Met,
            };
        }
        Condition::After { job, minutes } => return after(job, minutes, jobs, now),
        Condition::AfterOk { job } => (job, Wanted::Ok),
        Condition::AfterNotOk { job } => (job, Wanted::NotOk),
        Condition::AfterAny { job } => (job, Wanted::Any),
        Condition::AfterCorr { job } => match (job.task, subject.task) {
            (None, Some(index)) => return corresponding(job, index, jobs),
            _ => (job, Wanted::Ok),
        },
    };
    match jobs.observe(target) {
        Some(o) => ended_as(target, &o, wanted),
        None => Status::Never(format!("job {target} does not exist")),
    }
}

/// `aftercorr:A` for the task `index` of an array: `A_index` ended ok; an index `A` lacks
/// holds at once (as in Slurm); `A` not an array: `A` itself ended ok.
fn corresponding(job: JobRef, index: u32, jobs: &impl Lookup) -> Status {
    let task = JobRef { job: job.job, task: Some(index) };
    match (jobs.observe(task), jobs.observe(job)) {
        (Some(o), _) => ended_as(task, &o, Wanted::Ok),
        (None, Some(Observation::Array(_))) => Status::Met,
        (None, Some(o)) => ended_as(job, &o, Wanted::Ok),
        (None, None) => Status::Never(format!("job {job} does not exist")),
    }
}

/// Whether what `target` names ended as `wanted` asks.
fn ended_as(target: JobRef, o: &Observation, wanted: Wanted) -> Status {
    const OPEN: Status = Status::Open { at: None };
    match *o {
        Observation::Job(o) => {
            let Observed::Ended { ok, state, .. } = o else { return OPEN };
            match (wanted, ok) {
                (Wanted::Any, _) | (Wanted::Ok, true) | (Wanted::NotOk, false) => Status::Met,
                _ => Status::Never(format!("job {target} ended {state}")),
            }
        }
        Observation::Array(a) => match (wanted, a.not_ok) {
            // One task that did not end ok is enough to know `afterok` never holds.
            (Wanted::Ok, Some(state)) => {
                Status::Never(format!("a task of array {target} ended {state}"))
            }
            _ if !a.all_ended => OPEN,
            (Wanted::NotOk, None) => {
                Status::Never(format!("every task of array {target} completed"))
            }
            _ => Status::Met,
        },
    }
}

/// `after:ID+MIN`: the job named started (or ended without starting: cancelled while it
/// waited) at least `minutes` ago; an array's id: every task did.
fn after(job: JobRef, minutes: u32, jobs: &impl Lookup, now: u64) -> Status {
    let since = match jobs.observe(job) {
        None => return Status::Never(format!("job {job} does not exist")),
        Some(Observation::Job(Observed::Pending)) => return Status::Open { at: None },
        Some(Observation::Job(Observed::Running { started })) => started,
        Some(Observation::Job(Observed::Ended { started, ended, .. })) => started.unwrap_or(ended),
        Some(Observation::Array(a)) => match a.all_started {
            Some(t) => t,
            None => return Status::Open { at: None },
        },
    };
    let due = since.saturating_add(u64::from(minutes) * MINUTE_MS);
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
    /// What is named (`7`, or a task `7_3`) → the jobs whose dependency names it.
    by_job: HashMap<JobRef, BTreeSet<JobId>>,
    /// Array named by an `aftercorr` (without a task) → the jobs waiting on its tasks one by one.
    by_corr: HashMap<JobId, BTreeSet<JobId>>,
    /// (uid, name) → the jobs with a `singleton` condition.
    singletons: HashMap<(u32, String), BTreeSet<JobId>>,
    /// Wall time (ms) a timed `after` falls due → the jobs to look at again then.
    timed: BTreeMap<u64, BTreeSet<JobId>>,
}

/// Where a dependency is indexed: whom it names, and whether it waits task by task.
fn index_keys(dep: &Dependency) -> Vec<(JobRef, bool)> {
    let mut keys: Vec<(JobRef, bool)> = dep
        .conditions
        .iter()
        .filter_map(|c| {
            Some((c.job()?, matches!(c, Condition::AfterCorr { job } if job.task.is_none())))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl Dependents {
    /// Indexes `waiter`, whose dependency is `dep`.
    pub fn add(&mut self, waiter: JobId, uid: u32, name: &str, dep: &Dependency) {
        for (r, corr) in index_keys(dep) {
            if corr {
                self.by_corr.entry(r.job).or_default().insert(waiter);
            } else {
                self.by_job.entry(r).or_default().insert(waiter);
            }
        }
        if dep.singleton() {
            self.singletons.entry((uid, name.to_string())).or_default().insert(waiter);
        }
    }

    /// Forgets `waiter` (its dependency was met, or it ended).
    pub fn remove(&mut self, waiter: JobId, uid: u32, name: &str, dep: &Dependency) {
        for (r, corr) in index_keys(dep) {
            if corr {
                forget(&mut self.by_corr, r.job, waiter);
            } else {
                forget(&mut self.by_job, r, waiter);
            }
        }
        forget(&mut self.singletons, (uid, name.to_string()), waiter);
    }

    /// Looks at `waiter` again at wall time `at`.
    pub fn recheck_at(&mut self, waiter: JobId, at: u64) {
        self.timed.entry(at).or_default().insert(waiter);
    }

    /// The jobs to look at again because `job` (of `uid`, named `name`) started or ended
    /// (an array's own record: its summary changed, see [`ArraySummary`]).
    pub fn woken_by(&self, job: JobId, uid: u32, name: &str) -> Vec<JobId> {
        let whole = JobRef { job, task: None };
        let named = self.by_job.get(&whole).into_iter().flatten();
        let corr = self.by_corr.get(&job).into_iter().flatten();
        let namesakes = self.singletons.get(&(uid, name.to_string())).into_iter().flatten();
        let mut woken: Vec<JobId> =
            named.chain(corr).chain(namesakes).copied().filter(|w| *w != job).collect();
        woken.sort_unstable();
        woken.dedup();
        woken
    }

    /// The jobs to look at again because task `index` of `array` started or ended: those
    /// naming that task, and those waiting task by task (`aftercorr`). Those naming the
    /// whole array are woken through [`Dependents::woken_by`] when its summary changes.
    pub fn woken_by_task(&self, array: JobId, index: u32) -> Vec<JobId> {
        let task = JobRef { job: array, task: Some(index) };
        let named = self.by_job.get(&task).into_iter().flatten();
        let corr = self.by_corr.get(&array).into_iter().flatten();
        let mut woken: Vec<JobId> = named.chain(corr).copied().collect();
        woken.sort_unstable();
        woken.dedup();
        woken
    }

    /// Whether some job waits for the whole array `array` (its first failed task matters).
    pub fn waits_for_whole(&self, array: JobId) -> bool {
        self.by_job.contains_key(&JobRef { job: array, task: None })
    }

    /// The jobs whose timed `after` fell due by `now`, taken out of the timer index.
    pub fn due(&mut self, now: u64) -> Vec<JobId> {
        let later = self.timed.split_off(&(now + 1));
        let due = std::mem::replace(&mut self.timed, later);
        due.into_values().flatten().collect()
    }
}

/// Takes `waiter` out of the set under `key`, and the set once empty.
fn forget<K: Eq + std::hash::Hash>(map: &mut HashMap<K, BTreeSet<JobId>>, key: K, waiter: JobId) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(&waiter);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs by id; an array is several entries under one id (summed up as the controller
    /// does, from its tasks).
    #[derive(Default)]
    struct Jobs {
        states: BTreeMap<JobId, Vec<Observed>>,
        blocker: Option<JobId>,
    }

    impl Lookup for Jobs {
        fn observe(&self, r: JobRef) -> Option<Observation> {
            let all = self.states.get(&r.job)?;
            match r.task {
                Some(t) => all.get(t as usize).map(|o| Observation::Job(*o)),
                None if all.len() == 1 => Some(Observation::Job(all[0])),
                None => Some(Observation::Array(summary(all))),
            }
        }
        fn singleton_blocker(&self, _: &Subject<'_>) -> Option<JobId> {
            self.blocker
        }
    }

    fn summary(tasks: &[Observed]) -> ArraySummary {
        let mut all_started = Some(0);
        let (mut all_ended, mut not_ok) = (true, None);
        for o in tasks {
            let since = match *o {
                Observed::Pending => None,
                Observed::Running { started } => Some(started),
                Observed::Ended { started, ended, .. } => Some(started.unwrap_or(ended)),
            };
            all_started = all_started.zip(since).map(|(a, b)| a.max(b));
            all_ended &= matches!(o, Observed::Ended { .. });
            if let Observed::Ended { ok: false, state, .. } = o {
                not_ok = not_ok.or(Some(*state));
            }
        }
        ArraySummary { all_started, all_ended, not_ok }
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
    fn an_array_id_answers_for_all_its_tasks() {
        let running = Observed::Running { started: 4 };
        // One task failed: afterok can never hold, even with tasks still to run; afternotok
        // waits for them all.
        let early = jobs(&[(7, ok(1)), (7, Observed::Pending), (7, failed())]);
        let v = verdict("afterok:7", &early, 9);
        assert_eq!(v, Verdict::Never { why: "a task of array 7 ended FAILED".into() });
        assert!(matches!(verdict("afternotok:7", &early, 9), Verdict::Waiting { .. }));
        assert!(matches!(verdict("afterany:7", &early, 9), Verdict::Waiting { .. }));
        assert!(matches!(verdict("after:7", &early, 9), Verdict::Waiting { .. }));
        // All started: `after` holds from the last start.
        let started = jobs(&[(7, ok(1)), (7, running), (7, failed())]);
        assert_eq!(verdict("after:7", &started, 9), Verdict::Satisfied);
        let v = verdict("after:7+1", &started, 9);
        assert!(matches!(v, Verdict::Waiting { recheck_at: Some(t), .. } if t == 4 + MINUTE_MS));
        // All over.
        let over = jobs(&[(7, ok(1)), (7, ok(2)), (7, failed())]);
        assert_eq!(verdict("afternotok:7", &over, 9), Verdict::Satisfied);
        assert_eq!(verdict("afterany:7", &over, 9), Verdict::Satisfied);
        let good = jobs(&[(7, ok(1)), (7, ok(2)), (7, ok(3))]);
        assert_eq!(verdict("afterok:7", &good, 9), Verdict::Satisfied);
        let v = verdict("afternotok:7", &good, 9);
        assert_eq!(v, Verdict::Never { why: "every task of array 7 completed".into() });
        // A task cancelled before it started is not ok.
        let cancelled = jobs(&[(7, ok(1)), (7, cancelled_while_pending(3))]);
        assert!(matches!(verdict("afterok:7", &cancelled, 9), Verdict::Never { .. }));
        assert_eq!(verdict("afternotok:7", &cancelled, 9), Verdict::Satisfied);
    }

    #[test]
    fn one_task_is_named_alone() {
        let array = jobs(&[(7, ok(1)), (7, Observed::Pending), (7, failed())]);
        assert_eq!(verdict("afterok:7_0", &array, 9), Verdict::Satisfied);
        assert!(matches!(verdict("afterok:7_1", &array, 9), Verdict::Waiting { .. }));
        assert_eq!(verdict("afternotok:7_2", &array, 9), Verdict::Satisfied);
        let v = verdict("afterok:7_2", &array, 9);
        assert_eq!(v, Verdict::Never { why: "job 7_2 ended FAILED".into() });
        assert!(matches!(verdict("afterok:7_5", &array, 9), Verdict::Never { .. }));
    }

    #[test]
    fn aftercorr_asks_for_the_same_index() {
        let array = jobs(&[(7, ok(1)), (7, Observed::Pending), (7, failed())]);
        let task = |t| Subject { task: Some(t), ..ME };
        let dep: Dependency = "aftercorr:7".parse().expect("dependency");
        assert_eq!(evaluate(&dep, &task(0), &array, 9), Verdict::Satisfied);
        assert!(matches!(evaluate(&dep, &task(1), &array, 9), Verdict::Waiting { .. }));
        assert!(matches!(evaluate(&dep, &task(2), &array, 9), Verdict::Never { .. }));
        // An index the array lacks holds at once, as in Slurm.
        assert_eq!(evaluate(&dep, &task(9), &array, 9), Verdict::Satisfied);
        // On a plain job: that job ended ok.
        let plain = jobs(&[(7, ok(1))]);
        assert_eq!(evaluate(&dep, &task(4), &plain, 9), Verdict::Satisfied);
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

    #[test]
    fn a_task_wakes_who_names_it_and_who_waits_task_by_task() {
        let mut d = Dependents::default();
        let dep = |s: &str| -> Dependency { s.parse().expect("dependency") };
        d.add(10, 0, "a", &dep("afterok:7"));
        d.add(11, 0, "b", &dep("afterok:7_3"));
        d.add(12, 0, "c", &dep("aftercorr:7"));
        assert_eq!(d.woken_by_task(7, 3), [11, 12]);
        assert_eq!(d.woken_by_task(7, 4), [12], "the whole array's waiters are not woken");
        assert_eq!(d.woken_by(7, 0, "x"), [10, 12], "the array's summary changed");
        assert!(d.waits_for_whole(7));
        d.remove(10, 0, "a", &dep("afterok:7"));
        assert!(!d.waits_for_whole(7));
        d.remove(12, 0, "c", &dep("aftercorr:7"));
        assert_eq!(d.woken_by_task(7, 3), [11]);
    }
}
