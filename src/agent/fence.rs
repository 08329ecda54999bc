//! Fencing on a node: the fencer process and the agent's side of it.
//!
//! The fencer (`gangway fence`, hidden) is a small root process each agent starts as its child.
//! Over a socket pair the agent tells it the end of its lease (`CLOCK_BOOTTIME`) and every job
//! session it starts; the fencer SIGKILLs every guarded session when the lease runs out, or at
//! once when the agent's end of the socket closes (the agent died), and says which sessions it
//! killed. It ignores SIGINT/SIGTERM/SIGHUP (it ends when its agent does, after killing), and is
//! kept out of the OOM killer's reach. So a stopped, killed or cut-off agent cannot leave jobs
//! running past its lease, and the controller requeues them only after that (docs/cluster.md,
//! "Fencing").
//!
//! [`Fencing`] is the agent's side: the lease, the guarded sessions and their spool records,
//! which jobs were fenced, the rule that nothing starts without a lease, and the released jobs
//! still being ended (their confirmation, `release`).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::cgroups::{self, NodeCgroups};
use super::jobs::{LocalJob, ScriptEnd};
use super::lease::{Boot, Lease};
use super::leftovers::{self, Record, SpoolError, SpoolLock};
use super::sessions::{self, SessionRef};
use crate::protocol::{FromAgent, JobId};

// ------------------------------------------------------------------ the fencer's state (pure)

/// What the fencer holds: the lease's end and the sessions it guards.
#[derive(Debug, Default)]
pub struct Guard {
    /// None: no lease (never given, or run out): a session guarded now is killed at once.
    deadline: Option<Boot>,
    sessions: BTreeMap<u32, SessionRef>,
}

/// What the fencer must do after a line from its agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Nothing,
    /// Kill these now (guarded without a lease) and say so.
    Fence(Vec<SessionRef>),
    /// Answer `synced N`: every report before it has been written.
    Synced(u64),
}

impl Guard {
    /// The lease ran out at or before `now`: every guarded session, to kill (possibly none:
    /// the agent still hears of the lapse). None if it has not run out.
    pub fn expire(&mut self, now: Boot) -> Option<Vec<SessionRef>> {
        if self.deadline.is_none_or(|d| now < d) {
            return None;
        }
        self.deadline = None;
        Some(std::mem::take(&mut self.sessions).into_values().collect())
    }

    /// The agent is gone: everything it guarded.
    pub fn all(&mut self) -> Vec<SessionRef> {
        std::mem::take(&mut self.sessions).into_values().collect()
    }

    /// When the fencer must wake up next.
    pub fn deadline(&self) -> Option<Boot> {
        self.deadline
    }

    /// One line from the agent, read at `now` (after [`Guard::expire`]: a lease extension that
    /// arrives after the end rescues nothing).
    pub fn apply(&mut self, line: &str, now: Boot) -> Reply {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
        match (verb, num(), num()) {
            ("lease", Some(t), None) => {
                if Boot(t) > now && self.deadline.is_none_or(|d| Boot(t) > d) {
                    self.deadline = Some(Boot(t));
                }
                Reply::Nothing
            }
            ("guard", Some(sid), Some(start)) => {
                let Ok(sid) = u32::try_from(sid) else { return Reply::Nothing };
                let s = SessionRef { sid, start };
                if self.deadline.is_some_and(|d| now < d) {
                    self.sessions.insert(sid, s);
                    Reply::Nothing
                } else {
                    Reply::Fence(vec![s])
                }
            }
            ("unguard", Some(sid), None) => {
                if let Ok(sid) = u32::try_from(sid) {
                    self.sessions.remove(&sid);
                }
                Reply::Nothing
            }
            ("sync", Some(n), None) => Reply::Synced(n),
            _ => Reply::Nothing,
        }
    }
}

// ------------------------------------------------------------------ the fencer process

/// `gangway fence`: runs until the agent's end of the socket on stdin closes. Exit 0 then, 1 if
/// the socket or the timer fails (after killing everything guarded).
pub fn main() -> u8 {
    use nix::sys::signal::{SigHandler, signal};
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGPIPE, Signal::SIGQUIT] {
        // SAFETY: ignoring a signal installs no handler, so nothing runs in signal context.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    // Under memory pressure the OOM killer must pick a job, not the process guarding them.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("gangway fence: {e}; killed every guarded session");
            1
        }
    }
}

fn serve() -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

    let stdin = std::io::stdin();
    let sock = stdin.as_fd();
    // Non-blocking: a stopped agent that does not read must never stall the kills.
    let flags = OFlag::from_bits_truncate(fcntl(sock, FcntlArg::F_GETFL)?);
    fcntl(sock, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let timer = TimerFd::new(ClockId::CLOCK_BOOTTIME, TimerFlags::TFD_CLOEXEC)?;
    let mut guard = Guard::default();
    let mut buf: Vec<u8> = Vec::new();
    // The job cgroups, when the agent runs jobs in them: what left the sessions dies too.
    let job_cgroups =
        std::env::var(FENCE_CGROUP_ROOT).ok().and_then(|root| cgroups::fencer_cgroups(&root));
    let fence = |list: &[SessionRef]| {
        sessions::signal_all(list, Some(Signal::SIGKILL));
        if let Some(c) = &job_cgroups {
            cgroups::fence_jobs(c);
        }
    };
    let say = |text: String| {
        // Dropped if the agent's buffer is full: it finds lapses itself too.
        let _ = nix::unistd::write(sock, text.as_bytes());
    };
    let result = loop {
        let armed = match guard.deadline() {
            Some(d) => timer.set(
                Expiration::OneShot(TimeSpec::from_duration(Duration::from_millis(d.0))),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            ),
            None => timer.unset(),
        };
        if let Err(e) = armed {
            break Err(e);
        }
        let mut fds =
            [PollFd::new(sock, PollFlags::POLLIN), PollFd::new(timer.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => break Err(e),
        }
        // Time first: what arrived after the end cannot undo it.
        let now = Boot::now();
        if let Some(due) = guard.expire(now) {
            fence(&due);
            say(fenced_line(&due));
        }
        let mut chunk = [0u8; 4096];
        let closed = loop {
            match nix::unistd::read(sock, &mut chunk) {
                Ok(0) => break Some(Ok(())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EAGAIN) => break None,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => break Some(Err(e)),
            }
        };
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            match guard.apply(&String::from_utf8_lossy(&line), now) {
                Reply::Nothing => {}
                Reply::Fence(list) => {
                    fence(&list);
                    say(fenced_line(&list));
                }
                Reply::Synced(n) => say(format!("synced {n}\n")),
            }
        }
        if let Some(r) = closed {
            break r;
        }
    };
    // The agent is gone (or this process cannot go on): nothing it started may outlive it.
    fence(&guard.all());
    result
}

/// The environment variable naming the agent's cgroup root to the fencer.
const FENCE_CGROUP_ROOT: &str = "GANGWAY_FENCE_CGROUP_ROOT";

fn fenced_line(list: &[SessionRef]) -> String {
    let mut s = String::from("fenced");
    for x in list {
        s.push_str(&format!(" {}", x.sid));
    }
    s.push('\n');
    s
}

// ------------------------------------------------------------------ the agent's side

/// What the fencer told the agent.
#[derive(Debug)]
pub enum Report {
    /// It killed these sessions (its lease ran out, or they were guarded without one).
    Fenced(Vec<u32>),
    /// Every report before `synced N` has been read.
    Synced(u64),
    /// Fencer number N is gone (its socket closed).
    Gone(u64),
    /// One ending of a released job's sessions is over: nothing of them is left.
    Released(JobId),
    /// What a released attempt of a job used here (its cgroup, read once it was emptied).
    Used(JobId, u32, crate::protocol::PartUsage),
}

/// A job session the agent started and the fencer guards.
#[derive(Debug, Clone, Copy)]
struct Guarded {
    job: JobId,
    attempt: u32,
    session: SessionRef,
}

/// The agent's lease, its fencer and the sessions it guards.
#[derive(Debug)]
pub struct Fencing {
    spool: PathBuf,
    _lock: SpoolLock,
    lease: Lease,
    /// Lines to the current fencer (None: it could not be started).
    to_fencer: Option<UnboundedSender<String>>,
    /// Which fencer is current (an older one's end is no news).
    generation: u64,
    reports: UnboundedSender<Report>,
    /// The agent's cgroup root, handed to each fencer (None: no cgroups).
    cgroup_root: Option<String>,
    guarded: BTreeMap<u32, Guarded>,
    /// Attempts a previous life of this agent left, killed at start: reported with every
    /// registration until the controller releases them.
    leftovers: Vec<(JobId, u32)>,
    seq: u64,
    syncs: u64,
    /// Script ends by SIGKILL waiting for the fencer's word: was it a fence?
    deferred: Vec<(u64, ScriptEnd)>,
    /// Sessions fenced here (killed, not yet seen gone), kept until their job is released: its
    /// confirmation waits for them too.
    dying: Vec<Guarded>,
    /// Released jobs whose sessions are still being ended.
    ending: BTreeMap<JobId, Ending>,
}

/// A released job's endings in progress.
#[derive(Debug, Default)]
struct Ending {
    /// Endings still running (one per release that found sessions).
    running: usize,
    /// The highest attempt released: what the confirmation names.
    upto: u32,
}

impl Fencing {
    /// Before anything else an agent does: locks the spool, kills what a previous life left
    /// (remembering those attempts to report), and starts the fencer. Its reports go to
    /// `reports`.
    /// `cgroup_root`: the agent's job cgroups, which the fencer empties as well.
    pub fn start(
        spool: &Path,
        reports: UnboundedSender<Report>,
        cgroup_root: Option<String>,
    ) -> Result<Fencing, SpoolError> {
        let lock = leftovers::lock(spool)?;
        let leftovers = leftovers::sweep(spool);
        if !leftovers.is_empty() {
            tracing::warn!(attempts = ?leftovers, "a previous agent left these jobs' processes; killed them");
        }
        let mut f = Fencing {
            spool: spool.to_owned(),
            _lock: lock,
            lease: Lease::new(),
            to_fencer: None,
            generation: 0,
            reports,
            cgroup_root,
            guarded: BTreeMap::new(),
            leftovers,
            seq: 0,
            syncs: 0,
            deferred: Vec::new(),
            dying: Vec::new(),
            ending: BTreeMap::new(),
        };
        f.spawn_fencer();
        Ok(f)
    }

    fn spawn_fencer(&mut self) {
        self.generation += 1;
        match spawn_fencer(self.generation, self.reports.clone(), self.cgroup_root.as_deref()) {
            Ok(tx) => {
                if let Some(t) = self.lease.until() {
                    let _ = tx.send(format!("lease {}\n", t.0));
                }
                self.to_fencer = Some(tx);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the fencer; this node runs no jobs until it can");
                self.to_fencer = None;
            }
        }
    }

    fn tell(&self, line: String) {
        if let Some(tx) = &self.to_fencer {
            let _ = tx.send(line);
        }
    }

    fn extended(&self, until: Option<Boot>) {
        if let Some(t) = until {
            self.tell(format!("lease {}\n", t.0));
        }
    }

    /// The registration sent at `sent` was welcomed with a lease of `length`.
    pub fn welcomed(&mut self, length: Duration, sent: Boot) {
        let grown = self.lease.welcomed(length, sent);
        self.extended(grown);
    }

    /// The sequence number of a heartbeat about to leave (its send time is noted first).
    pub fn heartbeat(&mut self) -> u64 {
        self.seq += 1;
        self.lease.sending(self.seq, Boot::now());
        self.seq
    }

    /// The controller acknowledged heartbeat `seq`.
    pub fn acked(&mut self, seq: u64) {
        let grown = self.lease.acked(seq);
        self.extended(grown);
    }

    /// A connection attempt that began at `began` found no controller listening.
    pub fn refused(&mut self, began: Boot) {
        let grown = self.lease.refused(began);
        self.extended(grown);
    }

    /// The longest wait between connection attempts: several refused attempts per lease, so
    /// that a controller restart does not outlast it.
    pub fn retry_cap(&self) -> Duration {
        let cap = Duration::from_secs(2);
        self.lease.length().map_or(cap, |l| cap.min(l / 4))
    }

    /// Whether the lease ran out (while connected: the controller is not answering, and may
    /// have given this node up).
    pub fn lapsed(&self) -> bool {
        self.lease.until().is_some_and(|t| Boot::now() >= t)
    }

    /// Why nothing may start now, if so.
    pub fn may_start(&self) -> Result<(), String> {
        if self.to_fencer.is_none() {
            return Err("this node's fencer is not running".into());
        }
        if !self.lease.valid(Boot::now()) {
            return Err("this node's agent holds no lease from the controller now".into());
        }
        Ok(())
    }

    /// Guards the session `pid` leads (a script or proxy just started for `job`): recorded in the
    /// spool and told to the fencer.
    pub fn guard(&mut self, job: JobId, attempt: u32, pid: u32) {
        let Some(session) = sessions::identify(pid) else {
            tracing::warn!(job, pid, "cannot read the new session's start time; it is not guarded");
            return;
        };
        if let Err(e) = leftovers::record(&self.spool, &Record { job, attempt, session }) {
            tracing::warn!(job, error = %e, "cannot record the session in the spool");
        }
        self.tell(format!("guard {} {}\n", session.sid, session.start));
        self.guarded.insert(session.sid, Guarded { job, attempt, session });
    }

    /// A session's leader ended: stop guarding it if nothing of it is left.
    pub fn leader_gone(&mut self, sid: u32) {
        let Some(g) = self.guarded.get(&sid).copied() else { return };
        let left = sessions::signal_all(&[g.session], None);
        if left.iter().all(|(_, n)| *n == 0) {
            self.forget(&g);
        }
    }

    fn forget(&mut self, g: &Guarded) {
        self.guarded.remove(&g.session.sid);
        leftovers::forget(&self.spool, g.session);
        self.tell(format!("unguard {}\n", g.session.sid));
    }

    /// The controller released `job` up to `attempt`: TERM its sessions now, KILL what is left
    /// after `grace`, stop guarding them, and confirm once nothing of them is left. The
    /// confirmation is returned at once if nothing of the job runs here (and no earlier ending of
    /// it is still in progress); else it comes as a [`Report::Released`].
    ///
    /// With `cgroups`, the job's cgroup is emptied (freeze, kill, thaw: also what left its
    /// sessions) once the sessions are, its figures reported, before the confirmation.
    pub fn release(
        &mut self,
        job: JobId,
        attempt: u32,
        grace: Duration,
        cgroups: Option<(NodeCgroups, Option<u64>)>,
    ) -> Option<FromAgent> {
        self.leftovers.retain(|(j, a)| !(*j == job && *a <= attempt));
        let mine = |g: &Guarded| g.job == job && g.attempt <= attempt;
        let mut ending: Vec<Guarded> = self.guarded.values().filter(|g| mine(g)).copied().collect();
        for g in &ending {
            self.guarded.remove(&g.session.sid);
        }
        // Fenced sessions were killed already; the confirmation still waits until they are gone.
        ending.extend(self.dying.iter().filter(|g| mine(g)));
        self.dying.retain(|g| !mine(g));
        let e = self.ending.entry(job).or_default();
        e.upto = e.upto.max(attempt);
        if ending.is_empty() && cgroups.is_none() {
            return self.ended(job, false);
        }
        e.running += 1;
        let list: Vec<SessionRef> = ending.iter().map(|g| g.session).collect();
        // The fencer keeps guarding them until they are gone: a lapse meanwhile still kills them.
        let (spool, fencer, done) =
            (self.spool.clone(), self.to_fencer.clone(), self.reports.clone());
        tokio::spawn(async move {
            super::release::end(list, grace, spool, fencer).await;
            if let Some((cgroups, limit)) = cgroups {
                let used =
                    tokio::task::spawn_blocking(move || cgroups.finish_job(job, attempt, limit))
                        .await;
                for (attempt, used) in used.unwrap_or_default() {
                    let _ = done.send(Report::Used(job, attempt, used));
                }
            }
            let _ = done.send(Report::Released(job));
        });
        None
    }

    /// An ending of `job` is over (`one`), or a release found nothing to end: the confirmation,
    /// once no ending of the job is left.
    fn ended(&mut self, job: JobId, one: bool) -> Option<FromAgent> {
        let e = self.ending.get_mut(&job)?;
        if one {
            e.running = e.running.saturating_sub(1);
        }
        if e.running > 0 {
            return None;
        }
        let attempt = e.upto;
        self.ending.remove(&job);
        Some(FromAgent::Released { job, attempt })
    }

    /// Before anything else the agent does (it may have been stopped for a long time): if the
    /// lease has run out, every guarded job is fenced (the fencer has killed it, or is about to:
    /// kill it here too) and reported.
    pub(super) fn check(
        &mut self,
        jobs: &mut HashMap<JobId, LocalJob>,
        reports: &mut Vec<FromAgent>,
    ) {
        let now = Boot::now();
        if self.lease.valid(now) {
            return;
        }
        // Starts of jobs already fenced are not fenced again (nor said again) at every event.
        let starting = jobs.values().any(|j| j.starting > 0 && j.fenced.is_none());
        if self.guarded.is_empty() && !starting {
            return;
        }
        let why = match self.lease.until() {
            Some(t) => format!(
                "the agent's lease ran out {}ms ago without a word from the controller",
                now.0.saturating_sub(t.0)
            ),
            None => "the agent held no lease".to_string(),
        };
        self.fence_all(&why, jobs, reports);
    }

    fn fence_all(
        &mut self,
        why: &str,
        jobs: &mut HashMap<JobId, LocalJob>,
        reports: &mut Vec<FromAgent>,
    ) {
        let all: Vec<Guarded> = self.guarded.values().copied().collect();
        let list: Vec<SessionRef> = all.iter().map(|g| g.session).collect();
        sessions::signal_all(&list, Some(Signal::SIGKILL));
        for g in &all {
            self.forget(g);
            self.dying.push(*g);
            mark_fenced(jobs, g.job, g.attempt, why, reports);
        }
        // A start in flight is fenced with them: its process is killed when the spawner
        // answers (`fence_started`).
        let starting: Vec<(JobId, u32)> = jobs
            .values()
            .filter(|j| j.starting > 0 && j.fenced.is_none())
            .map(|j| (j.launch.job, j.launch.attempt))
            .collect();
        for (job, attempt) in &starting {
            mark_fenced(jobs, *job, *attempt, why, reports);
        }
        tracing::warn!(
            sessions = all.len(),
            starting = starting.len(),
            reason = why,
            "fenced this node's jobs"
        );
    }

    /// A session started for an attempt that was fenced (or may not run now) while it started:
    /// killed at once, and kept with the fenced ones, so that the job's release waits until it
    /// is gone.
    pub(super) fn fence_started(&mut self, job: JobId, attempt: u32, pid: u32) {
        self.guard(job, attempt, pid);
        match self.guarded.get(&pid).copied() {
            Some(g) => {
                sessions::signal_all(&[g.session], Some(Signal::SIGKILL));
                self.forget(&g);
                self.dying.push(g);
            }
            // Not guarded (its start time unread: already gone); the leader, to be sure.
            None => {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        tracing::warn!(job, attempt, pid, "a process started after its job was fenced; killed it");
    }

    /// A start for attempt `attempt` of `job` is in flight while the job is released (or replaced
    /// by a newer attempt): the release's confirmation waits for the spawner's answer
    /// ([`Fencing::late_start`]). Called before [`Fencing::release`].
    pub(super) fn await_start(&mut self, job: JobId, attempt: u32) {
        let e = self.ending.entry(job).or_default();
        e.upto = e.upto.max(attempt);
        e.running += 1;
    }

    /// The spawner answered a start that [`Fencing::await_start`] waited for: its process
    /// (`pid`, if it started) is ended at once, like the rest of the released attempt, with the
    /// job's cgroup (`cgroups`) emptied again (its making may have come after the release's
    /// emptying). The confirmation, if it is due now.
    pub(super) fn late_start(
        &mut self,
        job: JobId,
        attempt: u32,
        pid: Option<u32>,
        cgroups: Option<(NodeCgroups, Option<u64>)>,
    ) -> Option<FromAgent> {
        if let Some(pid) = pid {
            self.guard(job, attempt, pid);
            tracing::warn!(
                job,
                attempt,
                pid,
                "a process started after its job was released; ending it"
            );
        }
        let now = self.release(job, attempt, Duration::ZERO, cgroups);
        // The wait `await_start` added is over (an ending just started keeps the entry).
        let after = self.ended(job, true);
        now.or(after)
    }

    /// A report from the fencer. Returns the script ends it settled (not fences: report them).
    pub(super) fn on_report(
        &mut self,
        report: Report,
        jobs: &mut HashMap<JobId, LocalJob>,
        reports: &mut Vec<FromAgent>,
    ) -> Vec<ScriptEnd> {
        match report {
            Report::Fenced(sids) => {
                for sid in sids {
                    if let Some(g) = self.guarded.get(&sid).copied() {
                        self.forget(&g);
                        self.dying.push(g);
                        let why = "the agent's lease ran out; its fencer killed the job here";
                        mark_fenced(jobs, g.job, g.attempt, why, reports);
                    }
                }
                Vec::new()
            }
            Report::Synced(n) => {
                let (done, waiting) =
                    std::mem::take(&mut self.deferred).into_iter().partition(|(s, _)| *s <= n);
                self.deferred = waiting;
                done.into_iter().map(|(_, e)| e).collect()
            }
            Report::Gone(generation) if generation == self.generation => {
                tracing::error!("the fencer died; fencing here and starting another");
                // No process guards the jobs now: they cannot be vouched for.
                self.fence_all("this node's fencer died", jobs, reports);
                self.deferred.clear();
                self.spawn_fencer();
                Vec::new()
            }
            Report::Gone(_) => Vec::new(),
            Report::Released(job) => {
                reports.extend(self.ended(job, true));
                Vec::new()
            }
            Report::Used(job, attempt, usage) => {
                reports.push(FromAgent::Usage { job, attempt, usage });
                Vec::new()
            }
        }
    }

    /// A batch script ended: the end to record now, or None (its job was fenced; or it died by
    /// SIGKILL, which may be the fencer's doing: it is settled once the fencer has answered).
    pub(super) fn script_ended(
        &mut self,
        end: ScriptEnd,
        jobs: &HashMap<JobId, LocalJob>,
    ) -> Option<ScriptEnd> {
        if jobs.get(&end.job).is_some_and(|j| j.fenced.is_some()) {
            return None;
        }
        if end.code != 128 + libc::SIGKILL || self.to_fencer.is_none() {
            return Some(end);
        }
        self.syncs += 1;
        self.tell(format!("sync {}\n", self.syncs));
        self.deferred.push((self.syncs, end));
        None
    }

    /// What the registration reports: the attempts still running here, those fenced (with why)
    /// since the last one, and those released but still being ended.
    pub(super) fn registration(&self, jobs: &HashMap<JobId, LocalJob>) -> Held {
        let running = jobs
            .values()
            .filter(|j| j.fenced.is_none())
            .map(|j| (j.launch.job, j.launch.attempt))
            .collect();
        let mut fenced: Vec<(JobId, u32, String)> = jobs
            .values()
            .filter_map(|j| Some((j.launch.job, j.launch.attempt, j.fenced.clone()?)))
            .collect();
        fenced.extend(self.leftovers.iter().map(|(j, a)| {
            (
                *j,
                *a,
                "the agent restarted; what its previous life left of the job was killed".into(),
            )
        }));
        let releasing = self.ending.iter().map(|(j, e)| (*j, e.upto)).collect();
        Held { running, fenced, releasing }
    }
}

/// What this node holds of its jobs, as its registration reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Attempts running here (job, attempt).
    pub running: Vec<(JobId, u32)>,
    /// Attempts whose processes here were killed since the last registration, and why.
    pub fenced: Vec<(JobId, u32, String)>,
    /// Attempts released but still being ended (each job with the highest attempt released).
    pub releasing: Vec<(JobId, u32)>,
}

/// Marks attempt `attempt` of `job` fenced (unless it ended by itself first) and reports it.
pub(super) fn mark_fenced(
    jobs: &mut HashMap<JobId, LocalJob>,
    job: JobId,
    attempt: u32,
    why: &str,
    reports: &mut Vec<FromAgent>,
) {
    if let Some(j) = jobs
        .get_mut(&job)
        .filter(|j| j.launch.attempt == attempt && j.ended.is_none() && j.fenced.is_none())
    {
        mark_fenced_new(j, why, reports);
    }
}

/// Marks a job fenced (one not started for want of a lease, or found fenced) and reports it.
pub(super) fn mark_fenced_new(j: &mut LocalJob, why: &str, reports: &mut Vec<FromAgent>) {
    j.fenced = Some(why.to_string());
    j.sessions.clear();
    reports.push(FromAgent::Fenced {
        job: j.launch.job,
        attempt: j.launch.attempt,
        reason: why.to_string(),
    });
}

/// Starts fencer number `generation` (this binary, `gangway fence`) and the tasks that talk to
/// it; returns where to send it lines.
fn spawn_fencer(
    generation: u64,
    reports: UnboundedSender<Report>,
    cgroup_root: Option<&str>,
) -> std::io::Result<UnboundedSender<String>> {
    let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
    // `/proc/self/exe`: this very binary, even if the file was replaced since.
    let mut command = tokio::process::Command::new("/proc/self/exe");
    match cgroup_root {
        Some(root) => command.env(FENCE_CGROUP_ROOT, root),
        None => command.env_remove(FENCE_CGROUP_ROOT),
    };
    let mut child = command
        .arg("fence")
        .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn()?;
    mine.set_nonblocking(true)?;
    let (rd, mut wr) = tokio::net::UnixStream::from_std(mine)?.into_split();
    let (tx, mut rx) = unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(rd).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut words = line.split_whitespace();
            let report = match words.next() {
                Some("fenced") => Report::Fenced(words.filter_map(|w| w.parse().ok()).collect()),
                Some("synced") => match words.next().and_then(|w| w.parse().ok()) {
                    Some(n) => Report::Synced(n),
                    None => continue,
                },
                _ => continue,
            };
            if reports.send(report).is_err() {
                return;
            }
        }
        let _ = reports.send(Report::Gone(generation));
    });
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            tracing::debug!(%status, generation, "fencer ended");
        }
    });
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sid: u32) -> SessionRef {
        SessionRef { sid, start: 7 }
    }

    #[test]
    fn sessions_are_guarded_until_the_lease_runs_out() {
        let mut g = Guard::default();
        assert_eq!(g.apply("lease 1000", Boot(0)), Reply::Nothing);
        assert_eq!(g.apply("guard 10 7", Boot(1)), Reply::Nothing);
        assert_eq!(g.apply("guard 11 7", Boot(2)), Reply::Nothing);
        assert_eq!(g.apply("unguard 11", Boot(3)), Reply::Nothing);
        assert_eq!(g.expire(Boot(999)), None);
        assert_eq!(g.expire(Boot(1000)), Some(vec![s(10)]));
        // Run out: nothing left, and a session guarded now is killed at once.
        assert_eq!(g.expire(Boot(2000)), None);
        assert_eq!(g.apply("guard 12 7", Boot(2001)), Reply::Fence(vec![s(12)]));
    }

    #[test]
    fn a_lease_only_grows_and_a_late_extension_rescues_nothing() {
        let mut g = Guard::default();
        g.apply("lease 1000", Boot(0));
        g.apply("lease 500", Boot(1));
        assert_eq!(g.deadline(), Some(Boot(1000)), "never shrinks");
        g.apply("guard 10 7", Boot(2));
        // The fencer wakes at 1200 with an extension to 3000 in its socket: time first.
        assert_eq!(g.expire(Boot(1200)), Some(vec![s(10)]));
        g.apply("lease 3000", Boot(1200));
        assert_eq!(g.deadline(), Some(Boot(3000)), "new work may start again");
        assert_eq!(g.apply("lease 1100", Boot(1200)), Reply::Nothing);
        assert_eq!(g.deadline(), Some(Boot(3000)));
        // An end already past is no lease.
        let mut g = Guard::default();
        g.apply("lease 100", Boot(200));
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn without_a_lease_nothing_is_guarded_and_bad_lines_are_ignored() {
        let mut g = Guard::default();
        assert_eq!(g.apply("guard 10 7", Boot(0)), Reply::Fence(vec![s(10)]));
        for bad in ["", "lease", "lease x", "guard 10", "guard 99999999999 1", "reboot now"] {
            assert_eq!(g.apply(bad, Boot(0)), Reply::Nothing, "{bad:?}");
        }
        assert_eq!(g.apply("sync 4", Boot(0)), Reply::Synced(4));
        g.apply("lease 10", Boot(0));
        g.apply("guard 10 7", Boot(1));
        assert_eq!(g.all(), vec![s(10)], "the agent is gone: everything");
    }

    #[test]
    fn fenced_lines_name_the_sessions() {
        assert_eq!(fenced_line(&[s(1), s(22)]), "fenced 1 22\n");
        assert_eq!(fenced_line(&[]), "fenced\n");
    }
}
