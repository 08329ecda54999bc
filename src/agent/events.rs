//! What the agent's owner task is told: the controller's messages, step launches, scripts and
//! proxies that ended, local job queries, the fencer's reports, and the spawner's answers.

use super::cgroups::Part;
use super::fence;
use super::jobs::ScriptEnd;
use super::launch::StepLaunch;
use super::local;
use super::process::Spawned;
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
    /// A batch job's cgroup was made on the spawner thread, ahead of its script's fork: the
    /// step launches that waited for it may go on, whatever the script's start does next.
    JobCgroupMade {
        job: JobId,
        attempt: u32,
    },
    /// The spawner answered a batch script's start.
    ScriptStarted {
        job: JobId,
        attempt: u32,
        answer: std::io::Result<Spawned>,
    },
    /// The spawner answered a step proxy's start.
    ProxyStarted(Box<ProxyStarted>),
}

/// A step's launch whose proxy the spawner was asked to start, with its answer.
#[derive(Debug)]
pub struct ProxyStarted {
    pub step: StepLaunch,
    /// When its cgroup was ready (from the launch's link set up).
    pub joined: std::time::Duration,
    /// The cgroup part it runs in, and whether it joined one.
    pub part: Part,
    pub in_cgroup: bool,
    pub answer: std::io::Result<Spawned>,
}
