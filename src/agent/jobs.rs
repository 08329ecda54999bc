//! What the agent knows of the jobs it runs a part of: each job's launch, sessions, and how
//! its batch script ended or why it was fenced (kept until the controller releases the job).

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use gangway_containment::Limits;

use super::launch::StepLaunch;
use crate::protocol::{FromAgent, JobId, JobLaunch};

/// One job this node runs a part of.
#[derive(Debug)]
pub struct LocalJob {
    pub launch: JobLaunch,
    /// Sessions started for it (the batch script, step proxies).
    pub sessions: Vec<u32>,
    /// How its batch script ended (exit code, why), kept until the controller releases the
    /// job: a report lost with a connection is sent again after every registration.
    pub ended: Option<(i32, Option<String>)>,
    /// Why its processes here were killed by a fence (reported with every registration until
    /// the controller releases the job).
    pub fenced: Option<String>,
    /// Its next step's cgroup, made ahead so that the step's launch only joins it.
    pub next_step: NextStep,
    /// Its processes being started on the spawner's threads (`spawner.rs`), not answered yet: a
    /// fence meanwhile marks the job fenced, a release waits for their answers.
    pub starting: u32,
    /// While its own cgroup is made with its script's start, on a spawner thread: the step
    /// launches that came meanwhile, which wait for it (a step's part lies inside it).
    pub making_cgroup: Option<Vec<StepLaunch>>,
}

/// A job's next step cgroup (`steps::prepare_next`): made on a blocking thread while the
/// job runs, so that none of it is on a step's launch path.
#[derive(Debug, Default)]
pub enum NextStep {
    /// None made or being made (no cgroups, or the last one was used or failed).
    #[default]
    None,
    /// Step N's is being made; launches of step N that came meanwhile wait for it.
    Making(u32, Vec<StepLaunch>),
    /// Step N's is made: its limits, and the files its proxy joins it through.
    Made(u32, Limits, Vec<OwnedFd>),
}

impl LocalJob {
    /// A job this node takes, nothing of it started yet.
    pub fn new(launch: JobLaunch) -> LocalJob {
        LocalJob {
            launch,
            sessions: Vec::new(),
            ended: None,
            fenced: None,
            next_step: NextStep::None,
            starting: 0,
            making_cgroup: None,
        }
    }

    /// The batch script's session while it runs: the first one started, ended first.
    pub fn script_session(&self) -> Option<u32> {
        (self.launch.batch.is_some() && self.ended.is_none())
            .then(|| self.sessions.first().copied())
            .flatten()
    }

    /// The report of how its batch script ended, once it has.
    pub fn end_report(&self) -> Option<FromAgent> {
        let (exit_code, message) = self.ended.clone()?;
        Some(FromAgent::JobEnded {
            job: self.launch.job,
            attempt: self.launch.attempt,
            exit_code,
            message,
        })
    }
}

/// What becomes of a process of attempt `attempt` whose start was in flight, once the spawner
/// answers. A start takes as long as it takes (a fork under memory pressure, an output file on
/// a hung server), and the agent went on meanwhile: its lease may have run out, the controller
/// may have released the attempt. Nothing started may then run on, not even for a moment.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// The attempt runs here and may: the session is guarded and kept.
    Keep,
    /// The attempt was fenced meanwhile: killed at once (the fence was reported already).
    Fenced,
    /// Nothing may start now (`why`): killed at once, and the attempt fenced and reported, as a
    /// start refused for it would have been.
    Refused(String),
    /// The attempt was released or replaced meanwhile: killed at once; the release's
    /// confirmation waited for this answer and waits for the kill too.
    Gone,
}

/// [`Answered`] for attempt `attempt`, given the job's record here (`None`: released) and
/// whether anything may start now (the lease and the fencer: `Fencing::may_start`).
pub fn answered(job: Option<&LocalJob>, attempt: u32, may_start: Result<(), String>) -> Answered {
    match job.filter(|j| j.launch.attempt == attempt) {
        None => Answered::Gone,
        Some(j) if j.fenced.is_some() => Answered::Fenced,
        Some(_) => match may_start {
            Ok(()) => Answered::Keep,
            Err(why) => Answered::Refused(why),
        },
    }
}

/// How a batch script ended.
#[derive(Debug)]
pub struct ScriptEnd {
    pub job: JobId,
    pub attempt: u32,
    /// The script's session.
    pub sid: u32,
    pub code: i32,
    pub message: Option<String>,
}

/// Records how a batch script ended (unless its job was fenced meanwhile) and reports it.
pub(super) fn script_ended(
    end: ScriptEnd,
    jobs: &mut HashMap<JobId, LocalJob>,
    reports: &mut Vec<FromAgent>,
) {
    let ScriptEnd { job, attempt, sid, code, message } = end;
    if let Some(j) =
        jobs.get_mut(&job).filter(|j| j.launch.attempt == attempt && j.fenced.is_none())
    {
        j.sessions.retain(|s| *s != sid);
        j.ended = Some((code, message));
        reports.extend(j.end_report());
    }
    // Its session stays guarded until the job is released: what the script left is killed then.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempt: u32, fenced: Option<&str>) -> LocalJob {
        let launch: JobLaunch = serde_json::from_value(serde_json::json!({
            "job": 7, "attempt": attempt, "name": "j", "user": "u", "uid": 1000, "gid": 1000,
            "cwd": "/", "cpus": "0", "batch": null, "env": [], "umask": 18
        }))
        .unwrap_or_else(|e| panic!("a minimal launch: {e}"));
        let mut j = LocalJob::new(launch);
        j.fenced = fenced.map(String::from);
        j
    }

    #[test]
    fn a_late_start_is_kept_only_while_its_attempt_runs_here_and_may() {
        let ok = || Ok(());
        let no_lease = || Err("no lease".to_string());
        assert_eq!(answered(Some(&job(2, None)), 2, ok()), Answered::Keep);
        assert_eq!(answered(None, 2, ok()), Answered::Gone, "released");
        assert_eq!(answered(Some(&job(3, None)), 2, ok()), Answered::Gone, "replaced");
        assert_eq!(answered(Some(&job(2, Some("lease"))), 2, ok()), Answered::Fenced);
        assert_eq!(answered(Some(&job(2, Some("lease"))), 2, no_lease()), Answered::Fenced);
        assert_eq!(
            answered(Some(&job(2, None)), 2, no_lease()),
            Answered::Refused("no lease".into())
        );
    }
}
