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
