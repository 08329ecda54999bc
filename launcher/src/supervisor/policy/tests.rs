//! The stop policy's rules, event by event, with time passed in as values.

use super::*;
use crate::spawn::SetupStep;

fn rules() -> StopRules {
    StopRules {
        kill_grace: Duration::from_secs(2),
        kill_on_bad_exit: false,
        time_limit: None,
        job_id: "7".into(),
        program: PathBuf::from("/bin/prog"),
    }
}

fn policy(nranks: usize, rules: StopRules, now: Instant) -> StopPolicy {
    let mut p = StopPolicy::new(nranks, rules, now);
    for rank in 0..nranks as u32 {
        p.set_pid(rank, 100 + rank);
    }
    p
}

fn exited(code: i32) -> ProcessEnd {
    ProcessEnd::Status(RankStatus::Exited(code))
}

fn signals(actions: &[Action]) -> Vec<Signal> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn said(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Say(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

const STOP: [Signal; 2] = [Signal::SIGCONT, Signal::SIGTERM];

#[test]
fn a_clean_job_ends_once_every_exit_is_settled() {
    let t0 = Instant::now();
    let mut p = policy(2, rules(), t0);
    assert!(p.rank_ended(0, exited(0), t0).is_empty());
    assert!(p.rank_ended(1, exited(0), t0).is_empty());
    // Exited but not settled: the PMI service may still report a missing finalize.
    assert_eq!(p.progress(t0), Progress::Running);
    assert_eq!(p.next_timer(), Some(t0 + PMI_SETTLE_LIMIT));
    assert!(p.pmi_event(PmiEvent::Settled { rank: 0 }, t0).is_empty());
    assert_eq!(p.progress(t0), Progress::Running);
    p.pmi_event(PmiEvent::Settled { rank: 1 }, t0);
    assert_eq!(p.progress(t0), Progress::Done);
    assert_eq!(p.end(), None);
}

#[test]
fn an_unsettled_exit_waits_only_so_long() {
    let t0 = Instant::now();
    let mut p = policy(1, rules(), t0);
    p.rank_ended(0, exited(0), t0);
    assert_eq!(p.progress(t0), Progress::Running);
    assert_eq!(p.progress(t0 + PMI_SETTLE_LIMIT / 2), Progress::Running);
    assert_eq!(p.progress(t0 + PMI_SETTLE_LIMIT), Progress::SettleTimedOut);
}

#[test]
fn the_first_failure_is_the_job_end_and_stops_only_with_kill_on_bad_exit() {
    let t0 = Instant::now();
    let mut p = policy(3, rules(), t0);
    let actions = p.rank_ended(1, exited(3), t0);
    assert_eq!(said(&actions), ["rank 1 (pid 101) exited with code 3"]);
    assert!(signals(&actions).is_empty(), "the others run on without --kill-on-bad-exit");
    let failed = JobEnd::RankFailed { rank: 1, pid: 101, status: RankStatus::Exited(3) };
    assert_eq!(p.end(), Some(&failed));
    // A later abort stops the job, but the first cause stays.
    let actions = p.pmi_event(PmiEvent::Abort { rank: 0, code: 9, message: None }, t0);
    assert_eq!(signals(&actions), STOP);
    assert!(said(&actions).is_empty(), "only the first cause is announced");
    assert_eq!(p.end(), Some(&failed));

    let mut p = policy(3, StopRules { kill_on_bad_exit: true, ..rules() }, t0);
    let actions = p.rank_ended(2, ProcessEnd::Status(RankStatus::Signaled(11)), t0);
    assert_eq!(
        said(&actions),
        [
            "rank 2 (pid 102) exited with signal 11 (SIGSEGV)",
            "stopping the other ranks (--kill-on-bad-exit)"
        ]
    );
    assert_eq!(signals(&actions), STOP);
}

#[test]
fn term_escalates_to_kill_after_the_grace_period() {
    let t0 = Instant::now();
    let mut p = policy(2, rules(), t0);
    let actions = p.pmi_event(PmiEvent::Failed { rank: Some(0), reason: "bad".into() }, t0);
    assert_eq!(said(&actions), ["error: bad; stopping the job"]);
    assert_eq!(signals(&actions), STOP);
    assert!(p.stopping());
    assert_eq!(p.next_timer(), Some(t0 + Duration::from_secs(2)));
    assert!(p.tick(t0 + Duration::from_secs(1)).is_empty());
    assert_eq!(p.tick(t0 + Duration::from_secs(2)), [Action::Signal(Signal::SIGKILL)]);
    assert_eq!(p.next_timer(), None);
    // Ranks that die of the stop are not failures of their own.
    assert!(p.rank_ended(1, ProcessEnd::Status(RankStatus::Signaled(15)), t0).is_empty());
    assert_eq!(p.end(), Some(&JobEnd::PmiFailed { reason: "bad".into() }));

    let mut p = policy(1, StopRules { kill_grace: Duration::ZERO, ..rules() }, t0);
    let actions = p.pmi_event(PmiEvent::Abort { rank: 0, code: 1, message: Some("x".into()) }, t0);
    assert_eq!(said(&actions), ["rank 0 called MPI_Abort with code 1: x; stopping the job"]);
    assert_eq!(signals(&actions), [Signal::SIGCONT, Signal::SIGTERM, Signal::SIGKILL]);
}

#[test]
fn a_second_interrupt_within_a_second_stops_the_job_and_a_third_kills() {
    let t0 = Instant::now();
    let mut p = policy(2, rules(), t0);
    assert_eq!(p.signal_caught(Signal::SIGINT, t0), [Action::ForwardInterrupt]);
    // Two seconds later is a new first interrupt.
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(p.signal_caught(Signal::SIGINT, t1), [Action::ForwardInterrupt]);
    let actions = p.signal_caught(Signal::SIGINT, t1 + Duration::from_millis(500));
    assert_eq!(said(&actions), ["interrupted twice; stopping the job"]);
    assert_eq!(signals(&actions), STOP);
    assert_eq!(p.end(), Some(&JobEnd::Interrupted));
    let actions = p.signal_caught(Signal::SIGINT, t1 + Duration::from_millis(600));
    assert_eq!(said(&actions), ["interrupted again; killing every rank now"]);
    assert_eq!(signals(&actions), [Signal::SIGKILL]);
    assert_eq!(
        interrupt_forwarded(2),
        "interrupt sent to 2 rank(s); press Ctrl-C again within 1 s to stop the job"
    );
}

#[test]
fn other_signals_are_forwarded_and_ctrl_z_suspends_the_launcher_too() {
    let t0 = Instant::now();
    let mut p = policy(1, rules(), t0);
    assert_eq!(p.signal_caught(Signal::SIGUSR1, t0), [Action::Signal(Signal::SIGUSR1)]);
    assert_eq!(
        p.signal_caught(Signal::SIGTSTP, t0),
        [Action::Signal(Signal::SIGTSTP), Action::SuspendSelf]
    );
    assert_eq!(p.end(), None);
}

#[test]
fn the_time_limit_stops_the_job_unless_it_already_failed() {
    let t0 = Instant::now();
    let limit = Duration::from_secs(10);
    let mut p = policy(1, StopRules { time_limit: Some(limit), ..rules() }, t0);
    assert_eq!(p.next_timer(), Some(t0 + limit));
    assert!(p.tick(t0 + limit / 2).is_empty());
    let actions = p.tick(t0 + limit);
    assert_eq!(said(&actions), ["job 7 reached its time limit (00:00:10); stopping it"]);
    assert_eq!(signals(&actions), STOP);
    assert_eq!(p.end(), Some(&JobEnd::TimeLimit));
    assert_eq!(p.next_timer(), Some(t0 + limit + Duration::from_secs(2)));

    let mut p = policy(2, StopRules { time_limit: Some(limit), ..rules() }, t0);
    p.rank_ended(0, exited(1), t0);
    assert_eq!(p.next_timer(), None, "a failed job has no time limit left to reach");
    assert!(p.tick(t0 + limit).is_empty());
}

#[test]
fn an_exec_failure_names_the_step_and_stops_the_job() {
    let t0 = Instant::now();
    let mut p = policy(2, rules(), t0);
    let end = ProcessEnd::ExecFailed { step: SetupStep::Exec, errno: libc::ENOENT };
    let actions = p.rank_ended(0, end, t0);
    assert_eq!(
        said(&actions),
        [
            "rank 0 (/bin/prog) could not execute the program: No such file or directory (os error 2)"
        ]
    );
    assert_eq!(signals(&actions), STOP);
    assert_eq!(p.end(), Some(&JobEnd::ExecFailed { rank: 0, errno: libc::ENOENT }));
    assert_eq!(p.ranks()[0].status, Some(RankStatus::Exited(127)));
}

#[test]
fn a_lost_node_kills_its_ranks_and_a_late_loss_changes_nothing() {
    let t0 = Instant::now();
    let mut p = policy(4, rules(), t0);
    p.rank_ended(3, exited(0), t0);
    let actions = p.node_lost("n1 (10.0.0.2)", "n1", "no ping reply for 3 s", &[2, 3], t0);
    assert_eq!(said(&actions), ["n1 (10.0.0.2) lost: no ping reply for 3 s"]);
    assert_eq!(signals(&actions), STOP);
    assert_eq!(p.ranks()[2].status, Some(RankStatus::Signaled(libc::SIGKILL)));
    assert_eq!(p.ranks()[3].status, Some(RankStatus::Exited(0)), "an exited rank keeps its status");
    let lost = JobEnd::NodeLost { node: "n1".into(), reason: "no ping reply for 3 s".into() };
    assert_eq!(p.end(), Some(&lost));
    // Its exited rank will never be settled now.
    p.never_settled(&[2, 3]);
    p.rank_ended(0, exited(0), t0);
    p.rank_ended(1, exited(0), t0);
    p.never_settled(&[0, 1]);
    assert_eq!(p.progress(t0), Progress::Done);
    // Another node that ran nothing any more is lost after the job failed: nothing to say.
    assert!(p.node_lost("n0", "n0", "its connection dropped", &[0, 1], t0).is_empty());
}

#[test]
fn a_node_that_cannot_start_fails_the_job_with_its_ranks_never_run() {
    let t0 = Instant::now();
    let mut p = policy(4, rules(), t0);
    let actions = p.node_start_failed("n2", "n2", "no such host".into(), &[2, 3], t0);
    assert_eq!(said(&actions), ["node n2 could not start: no such host"]);
    assert_eq!(signals(&actions), STOP);
    assert!(!p.ranks()[2].running && p.ranks()[2].status.is_none());
    let failed = JobEnd::NodeStartFailed { node: "n2".into(), message: "no such host".into() };
    assert_eq!(p.end(), Some(&failed));
    assert!(
        p.summary(Duration::from_millis(12))
            .starts_with("job 7 ended after 12.0 ms: NodeStartFailed")
    );
}

#[test]
fn pmi_contact_is_remembered_and_warnings_are_passed_on() {
    let t0 = Instant::now();
    let mut p = policy(2, rules(), t0);
    assert!(p.pmi_event(PmiEvent::Connected { rank: 1 }, t0).is_empty());
    assert!(p.ranks()[1].spoke_pmi && !p.ranks()[0].spoke_pmi);
    let actions = p.pmi_event(PmiEvent::Warning { message: "slow".into() }, t0);
    assert_eq!(said(&actions), ["warning: slow"]);
    assert_eq!(
        p.summary(Duration::from_millis(3)),
        "job 7 ended after 3.0 ms: every rank exited 0"
    );
}
