//! The one owner of a job's ranks: it hears their exits, the PMI service's events, the signals
//! the launcher catches and the timers, and decides when and how to stop the job.
//!
//! The decisions are the [`policy`]'s, a pure function of events and time; the supervisor reads
//! the clock, feeds the policy, and carries its [`Action`]s out: messages through `say`, signals
//! through a [`Signaller`] (process groups here, a message to the proxies for a multi-node job).
//! [`report`] turns the final state into the job's report.

pub mod policy;
pub mod report;
pub mod signaller;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use policy::{Action, Progress, StopPolicy, interrupt_forwarded};
use signaller::Signaller;

/// A job's stop policy, wired to the clock, the user's terminal and the ranks.
pub struct Supervisor<'a, S: Signaller> {
    policy: StopPolicy,
    signaller: S,
    say: &'a dyn Fn(String),
}

impl<S: Signaller> std::fmt::Debug for Supervisor<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl<'a, S: Signaller> Supervisor<'a, S> {
    pub fn new(policy: StopPolicy, signaller: S, say: &'a dyn Fn(String)) -> Self {
        Supervisor { policy, signaller, say }
    }

    /// The decisions so far.
    pub fn policy(&self) -> &StopPolicy {
        &self.policy
    }

    /// For what the policy records without deciding anything (pids, settled ranks).
    pub fn policy_mut(&mut self) -> &mut StopPolicy {
        &mut self.policy
    }

    /// Whether the job is still going.
    pub fn running(&mut self) -> bool {
        match self.policy.progress(Instant::now()) {
            Progress::Running => true,
            Progress::Done => false,
            Progress::SettleTimedOut => {
                tracing::warn!("the PMI service did not settle every exited rank in time");
                false
            }
        }
    }

    /// When the supervisor must wake up even if nothing happens (see [`Self::tick`]).
    pub fn next_timer(&self) -> Option<Instant> {
        self.policy.next_timer()
    }

    /// The timer of [`Self::next_timer`] went off.
    pub fn tick(&mut self) {
        self.decide(StopPolicy::tick);
    }

    /// Lets the policy decide on an event at the current time, and carries its decision out:
    /// `sup.decide(|policy, now| policy.signal_caught(sig, now))`.
    pub fn decide(&mut self, decision: impl FnOnce(&mut StopPolicy, Instant) -> Vec<Action>) {
        for action in decision(&mut self.policy, Instant::now()) {
            match action {
                Action::Say(message) => (self.say)(message),
                Action::Signal(sig) => {
                    self.signaller.signal(sig, self.policy.ranks());
                }
                Action::ForwardInterrupt => {
                    let count = self.signaller.signal(Signal::SIGINT, self.policy.ranks());
                    (self.say)(interrupt_forwarded(count));
                }
                Action::SuspendSelf => {
                    let _ = kill(Pid::this(), Signal::SIGSTOP);
                }
            }
        }
    }
}
