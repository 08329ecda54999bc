//! Virtual time: submissions, job ends and periodic ticks as events in time order, a pass of
//! the same [`Scheduler`] the controller holds after each moment's events, and its decisions
//! carried out at once — a started job ends after its run time (or at its time limit), a
//! preempted one at the end of its grace, then is requeued or cancelled as decided.
//!
//! The engine reads no clock. A caller that wants the scheduler's own timings passes a clock
//! closure; each decision and each pass is then timed with it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use crate::cluster::ClusterState;
use crate::decision::{AfterPreempt, Decision};
use crate::engine::{Budget, Event, NewJob, Scheduler};
use crate::policy::config::{ConfigError, SchedulerConfig};
use crate::request::JobRequest;
use crate::types::{JobId, Timestamp};

/// One job of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SimJob {
    /// Its id.
    pub id: JobId,
    /// When it is submitted.
    pub submit: Timestamp,
    /// How long it runs once started (it is stopped at its time limit if that comes first).
    pub run: Duration,
    /// What it asks for.
    pub request: JobRequest,
    /// Its owner.
    pub user: String,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
}

/// How the simulation runs the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// A pass also runs this often while jobs wait (as the controller's periodic pass).
    pub tick: Duration,
    /// Each pass's budget (passes repeat at one moment until done).
    pub budget: Budget,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self { tick: Duration::from_secs(60), budget: Budget::jobs(10_000) }
    }
}

/// What happened to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobOutcome {
    /// Submitted at.
    pub submit: Timestamp,
    /// First started at.
    pub start: Option<Timestamp>,
    /// Last ended at.
    pub end: Option<Timestamp>,
    /// CPUs held while running (last attempt).
    pub cpus: u64,
    /// Run time of the last attempt.
    pub run: Duration,
    /// Times it was requeued.
    pub requeues: u32,
    /// First started by backfill.
    pub backfilled: bool,
    /// Refused at submission.
    pub rejected: bool,
    /// The first start time the scheduler promised it (its first reservation).
    pub first_expected: Option<Timestamp>,
    /// Cancelled by a preemption.
    pub cancelled: bool,
}

/// A sample of the cluster over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When.
    pub at: Timestamp,
    /// CPUs held by running jobs.
    pub busy_cpus: u64,
    /// Jobs waiting.
    pub waiting: usize,
}

/// Everything a simulation produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Per job, in workload order.
    pub jobs: Vec<(JobId, JobOutcome)>,
    /// CPUs of the cluster.
    pub total_cpus: u64,
    /// CPU-seconds run, every attempt counted (lost work too).
    pub cpu_seconds: f64,
    /// Decisions taken (starts, waits reported, preemptions).
    pub decisions: usize,
    /// Jobs started by backfill.
    pub backfilled: usize,
    /// Preemptions.
    pub preemptions: usize,
    /// Each job decision's time, from the caller's clock.
    pub decision_times: Vec<u64>,
    /// Each pass's time, from the caller's clock.
    pub pass_times: Vec<u64>,
    /// Busy CPUs and waiting jobs after each moment.
    pub samples: Vec<Sample>,
    /// First submission.
    pub first_submit: Timestamp,
    /// Last job end.
    pub last_end: Timestamp,
    /// Starts of a job that was already running: must stay zero (a job never runs twice at
    /// once).
    pub double_starts: usize,
}

impl SimReport {
    /// Whether every job finished and none started later than the first start it was promised
    /// (its first reservation): how many were promised one, or the first job that broke it.
    pub fn promises_kept(&self) -> Result<usize, String> {
        let mut promised = 0;
        for (id, o) in &self.jobs {
            if o.end.is_none() {
                return Err(format!("job {id} never finished: {o:?}"));
            }
            if let (Some(expected), Some(start)) = (o.first_expected, o.start) {
                promised += 1;
                if start > expected {
                    return Err(format!("job {id} promised {expected:?}, started {start:?}"));
                }
            }
        }
        Ok(promised)
    }
}

/// Something to call after each decision is carried out: the time, the scheduler (to check
/// invariants) and the decision.
pub type Observer<'a> = &'a mut dyn FnMut(Timestamp, &Scheduler, &Decision);

/// Events of the virtual clock, in the order they are handled at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// A job's attempt ends (`requeue`: back to the queue).
    End { job: JobId, attempt: u32, requeue: bool, preempted: bool },
    /// A job is submitted (index in the workload).
    Submit(usize),
    /// A periodic pass.
    Tick,
}

/// The running simulation.
struct Sim<'a> {
    scheduler: Scheduler,
    jobs: &'a [SimJob],
    index: HashMap<JobId, usize>,
    outcomes: Vec<JobOutcome>,
    events: BinaryHeap<Reverse<(Timestamp, What)>>,
    /// Running attempt of each job: (attempt, start, CPUs).
    running: HashMap<JobId, (u32, Timestamp, u64)>,
    attempts: HashMap<JobId, u32>,
    tick_due: Option<Timestamp>,
    submits_left: usize,
    report: SimReport,
    observer: Option<Observer<'a>>,
}

/// Replays `jobs` on `cluster` under `config`, in virtual time.
pub fn simulate(
    cluster: ClusterState,
    config: SchedulerConfig,
    jobs: &[SimJob],
    options: &SimOptions,
    clock: Option<&mut dyn FnMut() -> u64>,
) -> Result<SimReport, ConfigError> {
    simulate_observed(cluster, config, jobs, options, clock, None)
}

/// [`simulate`], calling `observer` after each decision (tests check invariants there).
pub fn simulate_observed<'a>(
    cluster: ClusterState,
    config: SchedulerConfig,
    jobs: &'a [SimJob],
    options: &SimOptions,
    mut clock: Option<&mut dyn FnMut() -> u64>,
    observer: Option<Observer<'a>>,
) -> Result<SimReport, ConfigError> {
    let total_cpus = cluster.nodes().iter().map(|n| n.usable_cpus().len() as u64).sum();
    let mut sim = Sim {
        scheduler: Scheduler::new(cluster, config)?,
        jobs,
        index: jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect(),
        outcomes: jobs
            .iter()
            .map(|j| JobOutcome { submit: j.submit, ..JobOutcome::default() })
            .collect(),
        events: BinaryHeap::new(),
        running: HashMap::new(),
        attempts: HashMap::new(),
        tick_due: None,
        submits_left: jobs.len(),
        report: SimReport { total_cpus, ..SimReport::default() },
        observer,
    };
    for (i, j) in jobs.iter().enumerate() {
        sim.events.push(Reverse((j.submit, What::Submit(i))));
    }
    sim.report.first_submit = jobs.iter().map(|j| j.submit).min().unwrap_or_default();
    while let Some(Reverse((now, _))) = sim.events.peek().copied() {
        while let Some(Reverse((t, what))) = sim.events.peek().copied() {
            if t != now {
                break;
            }
            sim.events.pop();
            sim.happen(what, now);
        }
        sim.passes(now, options, &mut clock);
        sim.sample(now);
        let waiting = sim.scheduler.jobs() > sim.running.len();
        let more = sim.submits_left > 0 || !sim.running.is_empty();
        if waiting && more && sim.tick_due.is_none_or(|t| t <= now) {
            let t = now.after(options.tick);
            sim.tick_due = Some(t);
            sim.events.push(Reverse((t, What::Tick)));
        }
    }
    let Sim { outcomes, mut report, .. } = sim;
    report.jobs = jobs.iter().map(|j| j.id).zip(outcomes).collect();
    Ok(report)
}

impl Sim<'_> {
    fn happen(&mut self, what: What, now: Timestamp) {
        match what {
            What::Submit(i) => {
                self.submits_left = self.submits_left.saturating_sub(1);
                let Some(job) = self.jobs.get(i) else { return };
                let mut new = NewJob::new(job.id, job.request.clone(), &job.user);
                new.account.clone_from(&job.account);
                new.qos.clone_from(&job.qos);
                if self.scheduler.submit(new, now).is_err()
                    && let Some(o) = self.outcomes.get_mut(i)
                {
                    o.rejected = true;
                }
            }
            What::End { job, attempt, requeue, preempted } => {
                let Some(&(current, start, cpus)) = self.running.get(&job) else { return };
                if current != attempt {
                    return;
                }
                self.running.remove(&job);
                self.report.cpu_seconds += cpus as f64 * now.since(start).as_secs_f64();
                self.scheduler.handle(Event::Ended { job, requeue }, now);
                self.report.last_end = self.report.last_end.max(now);
                if let Some(o) = self.index.get(&job).and_then(|&i| self.outcomes.get_mut(i)) {
                    if requeue {
                        o.requeues += 1;
                    } else {
                        o.end = Some(now);
                        o.run = now.since(start);
                        o.cancelled = preempted;
                    }
                }
            }
            What::Tick => {}
        }
    }

    fn passes(
        &mut self,
        now: Timestamp,
        options: &SimOptions,
        clock: &mut Option<&mut dyn FnMut() -> u64>,
    ) {
        loop {
            let t0 = clock.as_mut().map(|c| c());
            let pass = match clock.as_mut() {
                Some(c) => self.scheduler.pass_timed(now, options.budget, &mut **c),
                None => self.scheduler.pass(now, options.budget),
            };
            if let (Some(t0), Some(c)) = (t0, clock.as_mut()) {
                self.report.pass_times.push(c().saturating_sub(t0));
            }
            self.report.decision_times.extend(&pass.decision_times);
            self.report.decisions += pass.decisions.len();
            for d in pass.decisions {
                self.carry_out(&d, now);
                if let Some(o) = self.observer.as_mut() {
                    o(now, &self.scheduler, &d);
                }
            }
            if pass.done {
                return;
            }
        }
    }

    fn carry_out(&mut self, d: &Decision, now: Timestamp) {
        match d {
            Decision::Start { start, backfilled, .. } => {
                let backfilled = *backfilled;
                let Some(&i) = self.index.get(&start.job) else { return };
                let Some(job) = self.jobs.get(i) else { return };
                if self.running.contains_key(&start.job) {
                    self.report.double_starts += 1;
                }
                let attempt = self.attempts.entry(start.job).or_insert(0);
                *attempt += 1;
                let cpus: u64 = start.nodes.iter().map(|g| g.cpus.len() as u64).sum();
                self.running.insert(start.job, (*attempt, now, cpus));
                let run = start.time_limit.map_or(job.run, |l| job.run.min(l));
                let end = What::End {
                    job: start.job,
                    attempt: *attempt,
                    requeue: false,
                    preempted: false,
                };
                self.events.push(Reverse((now.after(run), end)));
                self.report.backfilled += usize::from(backfilled);
                if let Some(o) = self.outcomes.get_mut(i) {
                    o.cpus = cpus;
                    if o.start.is_none() {
                        o.start = Some(now);
                        o.backfilled = backfilled;
                    }
                }
            }
            Decision::Preempt(p) => {
                self.report.preemptions += 1;
                if let Some(&(attempt, ..)) = self.running.get(&p.victim) {
                    let requeue = p.then == AfterPreempt::Requeue;
                    let end = What::End { job: p.victim, attempt, requeue, preempted: !requeue };
                    self.events.push(Reverse((now.after(p.grace), end)));
                }
            }
            Decision::Wait { job, expected: Some(e), .. } => {
                if let Some(o) = self.index.get(job).and_then(|&i| self.outcomes.get_mut(i)) {
                    o.first_expected.get_or_insert(e.at);
                }
            }
            Decision::Wait { .. } => {}
        }
    }

    fn sample(&mut self, now: Timestamp) {
        let busy_cpus = self.running.values().map(|r| r.2).sum();
        let waiting = self.scheduler.jobs().saturating_sub(self.running.len());
        let s = Sample { at: now, busy_cpus, waiting };
        match self.report.samples.last_mut() {
            Some(last) if last.at == now => *last = s,
            _ => self.report.samples.push(s),
        }
    }
}
