//! What the agent's owner task is told: the controller's messages, step launches, scripts and
//! proxies that ended, local job queries, and the fencer's reports.

use super::fence;
use super::jobs::ScriptEnd;
use super::launch::StepLaunch;
use super::local;
use crate::protocol::{JobId, ToAgent};

/// Events for the owner task.
#[derive(Debug)]
pub enum Event {
    FromController(ToAgent),
    ControllerGone,
    Step(StepLaunch),
    ScriptEnded(ScriptEnd),
    ProxyEnded {
        job: JobId,
        sid: u32,
    },
    /// A part of a job (its script, a step) ended and its cgroup said what it used.
    Used {
        job: JobId,
        attempt: u32,
        usage: crate::protocol::PartUsage,
    },
    /// A step's cgroup was made ahead of its launch (`None`: it could not be).
    StepPrepared {
        job: JobId,
        attempt: u32,
        step: u32,
        made: Option<(gangway_containment::Limits, Vec<std::os::fd::OwnedFd>)>,
    },
    WhichJob(local::JobQuery),
    Fencer(fence::Report),
}
