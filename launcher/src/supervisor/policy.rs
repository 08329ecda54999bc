//! The stop policy: which event ends a job with which [`JobEnd`], when the ranks are stopped, and
//! when SIGTERM gives way to SIGKILL.
//!
//! Pure: events and the time come in as values and decisions go out as [`Action`]s, so every
//! rule is tested here without a process, a signal or a sleep. The supervisor (`Supervisor`,
//! the parent module) feeds it and carries its actions out.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::exit_status::RankStatus;
use crate::job::JobEnd;
use crate::pmi::server::PmiEvent;
use crate::spawn::ProcessEnd;
use crate::time_limit::format_time_limit;

/// A second Ctrl-C within this long stops the job instead of being forwarded.
pub const DOUBLE_INTERRUPT: Duration = Duration::from_secs(1);

/// How long the last exits may wait for the PMI service to settle them ([`PmiEvent::Settled`]).
/// It takes a task hop locally and a round trip from a proxy; this bound only keeps a lost
/// event from hanging the job.
pub const PMI_SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// What the policy asks of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell the user (one `gangway: ` line on stderr).
    Say(String),
    /// Send this signal to every rank still running.
    Signal(Signal),
    /// Pass a first Ctrl-C on to every rank still running, and tell the user how many got it
    /// and that a second one stops the job ([`interrupt_forwarded`]).
    ForwardInterrupt,
    /// Stop the launcher itself (Ctrl-Z, once the ranks got SIGTSTP): the shell gets the
    /// terminal back, and SIGCONT resumes everything.
    SuspendSelf,
}

/// The message after a first Ctrl-C reached `count` ranks.
pub fn interrupt_forwarded(count: usize) -> String {
    format!("interrupt sent to {count} rank(s); press Ctrl-C again within 1 s to stop the job")
}

/// The job's own rules, fixed when it starts.
#[derive(Debug, Clone)]
pub struct StopRules {
    /// Between SIGTERM and SIGKILL when the job is stopped (`--kill-grace`).
    pub kill_grace: Duration,
    /// `--kill-on-bad-exit`: a failed rank stops the others.
    pub kill_on_bad_exit: bool,
    /// `--time`.
    pub time_limit: Option<Duration>,
    /// For messages.
    pub job_id: String,
    /// For messages.
    pub program: PathBuf,
}

/// What the policy knows of one rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RankState {
    /// Its process id, once known (a remote rank's comes with its node's start report).
    pub pid: Option<u32>,
    /// Not yet exited, nor given up with its node.
    pub running: bool,
    /// How it ended.
    pub status: Option<RankStatus>,
    /// It spoke PMI at least once (so it is an MPI process).
    pub spoke_pmi: bool,
    /// It exited, but the PMI service has not settled it: whether its exit dooms the job (no
    /// finalize) is not known yet.
    pub unsettled: bool,
}

/// Whether the job goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A rank runs, or an exited rank's PMI outcome is still to come.
    Running,
    /// Every rank is done and settled.
    Done,
    /// Every rank is done, but the PMI service did not settle them all within
    /// [`PMI_SETTLE_LIMIT`].
    SettleTimedOut,
}

/// The decisions about one job's ranks: the first cause of failure, when to stop, when to kill.
#[derive(Debug, Clone)]
pub struct StopPolicy {
    rules: StopRules,
    ranks: Vec<RankState>,
    end: Option<JobEnd>,
    stopping: bool,
    /// When the ranks get SIGKILL, once they got SIGTERM.
    kill_at: Option<Instant>,
    /// When the `--time` limit ends the job.
    deadline: Option<Instant>,
    /// Once every rank exited: how long the unsettled ones may still take.
    settle_by: Option<Instant>,
    last_interrupt: Option<Instant>,
}

impl StopPolicy {
    /// A job of `nranks` ranks, all running, that started at `now`.
    pub fn new(nranks: usize, rules: StopRules, now: Instant) -> StopPolicy {
        let deadline = rules.time_limit.map(|limit| now + limit);
        StopPolicy {
            rules,
            ranks: vec![RankState { running: true, ..RankState::default() }; nranks],
            end: None,
            stopping: false,
            kill_at: None,
            deadline,
            settle_by: None,
            last_interrupt: None,
        }
    }

    /// Every rank's state, by rank.
    pub fn ranks(&self) -> &[RankState] {
        &self.ranks
    }

    /// The first cause of failure so far; `None` while nothing failed.
    pub fn end(&self) -> Option<&JobEnd> {
        self.end.as_ref()
    }

    /// Whether the ranks are being stopped.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// A rank's process id became known.
    pub fn set_pid(&mut self, rank: u32, pid: u32) {
        if let Some(r) = self.ranks.get_mut(rank as usize) {
            r.pid = Some(pid);
        }
    }

    /// Whether the job is still going at `now` (see [`Progress`]). Without the wait for the
    /// PMI service, a job whose ranks all leave without finalize ended 0 or 120 depending on
    /// which message came first.
    pub fn progress(&mut self, now: Instant) -> Progress {
        if self.ranks.iter().any(|r| r.running) {
            return Progress::Running;
        }
        if !self.ranks.iter().any(|r| r.unsettled) {
            return Progress::Done;
        }
        let by = *self.settle_by.get_or_insert(now + PMI_SETTLE_LIMIT);
        if now < by { Progress::Running } else { Progress::SettleTimedOut }
    }

    /// The next moment [`Self::tick`] has something to do, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        let deadline = self.deadline.filter(|_| self.end.is_none());
        [deadline, self.kill_at, self.settle_by].into_iter().flatten().min()
    }

    /// Time passed: the `--time` limit and the SIGKILL after the grace period.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.end.is_none() && self.deadline.is_some_and(|d| now >= d) {
            let limit = self.rules.time_limit.unwrap_or_default();
            actions.push(Action::Say(format!(
                "job {} reached its time limit ({}); stopping it",
                self.rules.job_id,
                format_time_limit(limit)
            )));
            self.fail(JobEnd::TimeLimit);
            self.begin_stop(now, &mut actions);
        }
        if self.kill_at.is_some_and(|k| now >= k) {
            self.kill_now(&mut actions);
        }
        actions
    }

    /// A rank's process ended. Ends of ranks no longer running (given up with their node) are
    /// ignored.
    pub fn rank_ended(&mut self, rank: u32, end: ProcessEnd, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(state) = self.ranks.get_mut(rank as usize).filter(|r| r.running) else {
            return actions;
        };
        state.running = false;
        state.unsettled = true;
        match end {
            ProcessEnd::Status(status) => {
                state.status = Some(status);
                if status.success() || self.stopping {
                    return actions;
                }
                let pid = state.pid.unwrap_or(0);
                actions.push(Action::Say(format!("rank {rank} (pid {pid}) {status}")));
                self.fail(JobEnd::RankFailed { rank, pid, status });
                if self.rules.kill_on_bad_exit {
                    if self.ranks.iter().any(|r| r.running) {
                        actions.push(Action::Say(
                            "stopping the other ranks (--kill-on-bad-exit)".into(),
                        ));
                    }
                    self.begin_stop(now, &mut actions);
                }
            }
            ProcessEnd::ExecFailed { step, errno } => {
                state.status = Some(RankStatus::Exited(127));
                if self.end.is_none() {
                    let why = std::io::Error::from_raw_os_error(errno);
                    let program = self.rules.program.display();
                    actions.push(Action::Say(format!(
                        "rank {rank} ({program}) could not {step}: {why}"
                    )));
                }
                self.fail(JobEnd::ExecFailed { rank, errno });
                self.begin_stop(now, &mut actions);
            }
        }
        actions
    }

    /// What the PMI service reported.
    pub fn pmi_event(&mut self, event: PmiEvent, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            PmiEvent::Connected { rank } => {
                if let Some(r) = self.ranks.get_mut(rank as usize) {
                    r.spoke_pmi = true;
                }
            }
            PmiEvent::Finalized { .. } => {}
            PmiEvent::Settled { rank } => self.never_settled(&[rank]),
            PmiEvent::Warning { message } => {
                actions.push(Action::Say(format!("warning: {message}")))
            }
            PmiEvent::Abort { rank, code, message } => {
                if self.end.is_none() {
                    let why = message.map(|m| format!(": {m}")).unwrap_or_default();
                    actions.push(Action::Say(format!(
                        "rank {rank} called MPI_Abort with code {code}{why}; stopping the job"
                    )));
                }
                self.fail(JobEnd::Aborted { rank, code });
                self.begin_stop(now, &mut actions);
            }
            PmiEvent::Failed { rank: _, reason } => {
                if self.end.is_none() {
                    actions.push(Action::Say(format!("error: {reason}; stopping the job")));
                }
                self.fail(JobEnd::PmiFailed { reason });
                self.begin_stop(now, &mut actions);
            }
        }
        actions
    }

    /// A signal the launcher caught: forwarded to every rank, except that a second Ctrl-C within
    /// [`DOUBLE_INTERRUPT`] stops the job (a third kills at once), and Ctrl-Z stops the
    /// launcher too.
    pub fn signal_caught(&mut self, sig: Signal, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match sig {
            Signal::SIGINT if self.stopping => {
                actions.push(Action::Say("interrupted again; killing every rank now".into()));
                self.kill_now(&mut actions);
            }
            Signal::SIGINT if self.last_interrupt.is_some_and(|t| now - t < DOUBLE_INTERRUPT) => {
                actions.push(Action::Say("interrupted twice; stopping the job".into()));
                self.fail(JobEnd::Interrupted);
                self.begin_stop(now, &mut actions);
            }
            Signal::SIGINT => {
                self.last_interrupt = Some(now);
                actions.push(Action::ForwardInterrupt);
            }
            Signal::SIGTSTP => actions.extend([Action::Signal(sig), Action::SuspendSelf]),
            _ => actions.push(Action::Signal(sig)),
        }
        actions
    }

    /// A node could not start its proxy or its ranks (`ranks`: every rank it was to run, and
    /// those of the nodes below it that it was to start). `shown_as` names it for the user,
    /// `node` in the job's end.
    pub fn node_start_failed(
        &mut self,
        shown_as: &str,
        node: &str,
        message: String,
        ranks: &[u32],
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = vec![Action::Say(format!("node {shown_as} could not start: {message}"))];
        self.fail(JobEnd::NodeStartFailed { node: node.to_string(), message });
        for &r in ranks {
            if let Some(r) = self.ranks.get_mut(r as usize) {
                r.running = false;
            }
        }
        self.begin_stop(now, &mut actions);
        actions
    }

    /// A node of the job was lost: its running ranks count as killed. Losing a node that ran
    /// nothing any more, after the job already failed, changes nothing.
    pub fn node_lost(
        &mut self,
        shown_as: &str,
        node: &str,
        reason: &str,
        ranks: &[u32],
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let running = |r: &u32| self.ranks.get(*r as usize).is_some_and(|s| s.running);
        if !ranks.iter().any(running) && self.end.is_some() {
            return actions;
        }
        actions.push(Action::Say(format!("{shown_as} lost: {reason}")));
        for &r in ranks {
            if let Some(r) = self.ranks.get_mut(r as usize).filter(|r| r.running) {
                r.running = false;
                r.status = Some(RankStatus::Signaled(libc::SIGKILL));
            }
        }
        self.fail(JobEnd::NodeLost { node: node.to_string(), reason: reason.to_string() });
        self.begin_stop(now, &mut actions);
        actions
    }

    /// These ranks will not be settled by the PMI service (settled already, or their node is
    /// gone): the job's end no longer waits for them.
    pub fn never_settled(&mut self, ranks: &[u32]) {
        for &r in ranks {
            if let Some(r) = self.ranks.get_mut(r as usize) {
                r.unsettled = false;
            }
        }
    }

    /// `-v`: how the job ended and how long it took.
    pub fn summary(&self, elapsed: Duration) -> String {
        let outcome = match &self.end {
            None => "every rank exited 0".to_string(),
            Some(end) => format!("{end:?}"),
        };
        format!(
            "job {} ended after {:.1} ms: {outcome}",
            self.rules.job_id,
            elapsed.as_secs_f64() * 1e3
        )
    }

    /// Records the cause of failure, unless an earlier one is already known.
    fn fail(&mut self, end: JobEnd) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }

    /// SIGTERM (with SIGCONT, in case they are stopped) now, SIGKILL after the grace period.
    fn begin_stop(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        actions.extend([Action::Signal(Signal::SIGCONT), Action::Signal(Signal::SIGTERM)]);
        if self.rules.kill_grace.is_zero() {
            self.kill_now(actions);
        } else {
            self.kill_at = Some(now + self.rules.kill_grace);
        }
    }

    fn kill_now(&mut self, actions: &mut Vec<Action>) {
        self.stopping = true;
        self.kill_at = None;
        actions.push(Action::Signal(Signal::SIGKILL));
    }
}

#[cfg(test)]
mod tests;
