//! `gangway-containment`: every job and step in its own cgroup. What they may use is enforced
//! there (CPU set, memory without swap, a pids limit, GPU device nodes), everything in one is
//! killed when it ends (whatever it did to escape its parent: `setsid`, double forks, ignoring
//! SIGTERM), and what it used is read from it (CPU time, peak memory, OOM kills).
//!
//! The cgroup version is chosen once, from what the kernel offers ([`mounts::choose`]), and
//! hidden behind the small [`Cgroups`] trait: `v1.rs` and `v2.rs`, one file each, both on the
//! `cgroups-rs` crate. Everything above the trait (the kill loop, the sweep of orphaned job
//! cgroups, names) is written once. Without permission to use cgroups the answer is
//! [`ContainmentError::Unavailable`]: the caller says so once and runs unconfined.
//!
//! The GPU side (`gpu.rs`: the variables telling a task its GPUs, `CUDA_VISIBLE_DEVICES`;
//! `devices.rs`: the device nodes of the GPUs a job was not granted) is pure or reads `/dev`
//! only. v1 denies those nodes with its devices controller, v2 with an eBPF device program
//! (`device_program.rs` writes it, pure; `bpf.rs` loads and attaches it). On v2 a process can
//! also be started inside its cgroup rather than join it after the fork (`clone_into.rs`).

pub mod bpf;
pub mod clone_into;
pub mod device_program;
pub mod devices;
mod error;
pub mod gpu;
mod hierarchy;
pub mod kernel_file;
mod kill;
mod limits;
pub mod migration;
pub mod mounts;
mod sweep;
mod usage;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

pub use error::ContainmentError;
pub use kill::KillReport;
pub use limits::{DeviceNode, Limits, MemoryRequest, Swap};
pub use mounts::Version;
pub use sweep::SweepReport;
pub use usage::{Usage, mib};

/// One cgroup backend: the operations containment needs, on cgroups named by their path
/// relative to the gangway root (`job_12/step_0`; `""` is the root itself).
pub trait Cgroups: std::fmt::Debug + Send + Sync {
    fn version(&self) -> Version;
    /// Where the gangway root is, for messages.
    fn location(&self) -> String;
    /// Creates the cgroup (and its parents, the gangway root among them) and applies `limits`.
    /// On v1 only in the hierarchies a process joining as `join` says enters: a directory
    /// nobody joins costs its `mkdir`, its reads at every kill and its `rmdir` for nothing.
    /// Returns what could not be enforced here, one sentence each (say it, run anyway).
    fn create(
        &self,
        path: &str,
        limits: &Limits,
        join: Join<'_>,
    ) -> Result<Vec<String>, ContainmentError>;
    /// The cgroup's `cgroup.procs` files, opened for writing: a process writing `0` to each
    /// joins the cgroup. Opened before a fork so that the child joins before it execs (nothing
    /// it runs starts outside), with async-signal-safe `write` calls only.
    ///
    /// Each write costs the kernel an RCU grace period on v1 (about 1-3 ms here), so `join`
    /// says which hierarchies are worth it: v1 opens only those. v2 has one file.
    fn join_files(&self, path: &str, join: Join<'_>) -> Result<Vec<OwnedFd>, ContainmentError>;
    /// The `cgroup.procs` files of the cgroup the gangway root sits in (this process's own
    /// with [`Base::Own`]), in the hierarchies `join` picks: a process that joined a cgroup
    /// under the root itself writes `0` to them to leave it again (a launcher before it kills
    /// its run's cgroup, which would otherwise freeze and kill it too).
    fn leave_files(&self, join: Join<'_>) -> Result<Vec<OwnedFd>, ContainmentError>;
    /// The cgroup's directory, opened for starting a process inside it
    /// ([`clone_into::vfork_into`]) instead of joining by a write after the fork: v2 only;
    /// `None` where processes can only join (v1).
    fn clone_target(&self, _path: &str) -> Result<Option<OwnedFd>, ContainmentError> {
        Ok(None)
    }
    /// Removes the gangway root where it sits below a process's own cgroup ([`Base::Own`]),
    /// in any hierarchy where it is empty: left there, it would keep whoever made that cgroup
    /// from removing it. At the top of a hierarchy it stays (an agent's, or `gangway run`'s
    /// for the next run).
    fn remove_nested_root(&self);
    /// Whether [`Limits::denied_devices`] are enforced here (v1's devices controller; on v2
    /// a device program this process may load). Where they are not, `create` says so.
    fn confines_devices(&self) -> bool;
    fn add_process(&self, path: &str, pid: u32) -> Result<(), ContainmentError>;
    /// Processes directly in the cgroup (not in its sub-cgroups).
    fn processes(&self, path: &str) -> Vec<u32>;
    /// Names of its sub-cgroups.
    fn children(&self, path: &str) -> Vec<String>;
    /// Whether the cgroup exists (in any hierarchy). By default through its parent's
    /// listing, which reads every sibling; v1 looks at the cgroup's own directories instead.
    fn exists(&self, path: &str) -> bool {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.children(parent).iter().any(|c| c == name)
    }
    /// Freezes (no task runs, none can fork) or thaws the cgroup and its sub-cgroups; returns
    /// once the kernel reports it done or `budget` passed.
    fn set_frozen(
        &self,
        path: &str,
        frozen: bool,
        budget: Duration,
    ) -> Result<(), ContainmentError>;
    /// Kills everything in the cgroup and its sub-cgroups in one kernel call, if the kernel
    /// has one (v2 `cgroup.kill`, Linux 5.14): `Ok(false)` when it has not.
    fn kill_at_once(&self, path: &str) -> Result<bool, ContainmentError>;
    fn usage(&self, path: &str) -> Result<Usage, ContainmentError>;
    /// Removes the cgroup, which must hold no process and no sub-cgroup (a sub-cgroup may be
    /// another run's, created meanwhile: it is never taken along).
    fn remove(&self, path: &str) -> Result<(), ContainmentError>;
}

/// Moves the calling process into a cgroup through its [`Cgroups::join_files`]: writes `0`
/// (the writer itself) to each. Async-signal-safe (one `write` per file, no allocation), so a
/// child may call it between fork and exec.
pub fn join(files: &[std::os::fd::RawFd]) -> Result<(), nix::errno::Errno> {
    for &fd in files {
        // SAFETY: a plain write of a static byte to a descriptor the caller keeps open.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(nix::errno::Errno::last());
        }
    }
    Ok(())
}

/// Which v1 hierarchies a process joins ([`Cgroups::join_files`]).
#[derive(Debug, Clone, Copy)]
pub enum Join<'a> {
    /// Every one the cgroup was made in (on v1 those of `Accounting`, see `Cgroups::create`).
    All,
    /// Those enforcing one of these limits, and the freezer (killing): a `gangway run`, which
    /// reports no usage but an OOM kill.
    Enforcing(&'a Limits),
    /// Those of `Enforcing`, and what accounting reads (CPU time, memory): a managed job's
    /// part, which reports its usage but leaves out the hierarchies that would enforce
    /// nothing for it (each join costs the kernel a grace period on v1).
    Accounting(&'a Limits),
    /// Those of `Enforcing` but the memory hierarchy: a local run's launcher joins these
    /// itself once, so that its ranks inherit them instead of each joining every one (a
    /// launcher in its run's memory cgroup could be the OOM killer's pick).
    EnforcingButMemory(&'a Limits),
    /// Only the memory hierarchy, if `limits` has a memory limit: a local run's ranks, whose
    /// launcher joined the rest (`EnforcingButMemory`).
    Memory(&'a Limits),
}

/// Where the gangway root sits in each hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// At the top of the hierarchy (`/sys/fs/cgroup/gangway`): the agent's place, and the
    /// only one v2 allows as root without a delegated subtree (a non-root cgroup that holds
    /// processes cannot give controllers to children).
    Top,
    /// Below this process's own cgroup in each hierarchy: whatever confines the caller keeps
    /// confining what it starts (v1 only; on v2 it works where the own cgroup is delegated
    /// and empty of other processes).
    Own,
}

/// The gangway root: its directory name and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootConfig {
    pub name: String,
    pub base: Base,
}

impl RootConfig {
    pub fn new(name: impl Into<String>, base: Base) -> Self {
        Self { name: name.into(), base }
    }
}

/// A job's cgroup path under the gangway root.
pub fn job_cgroup(job: impl std::fmt::Display) -> String {
    format!("job_{job}")
}

/// A step's cgroup path under the gangway root.
pub fn step_cgroup(job: impl std::fmt::Display, step: impl std::fmt::Display) -> String {
    format!("job_{job}/step_{step}")
}

fn read(path: &str) -> Result<String, ContainmentError> {
    kernel_file::read(path)
        .map_err(|e| ContainmentError::Unavailable { reason: format!("cannot read {path}: {e}") })
}

/// The cgroup mounts here and the version to use with them.
fn offer() -> Result<(Vec<mounts::CgroupMount>, Version), ContainmentError> {
    let mounts = mounts::parse_mountinfo(&read("/proc/self/mountinfo")?);
    let v2_controllers = mounts
        .iter()
        .find(|m| m.version == Version::V2)
        .map(|m| v2::controllers_at(&m.point))
        .unwrap_or_default();
    match mounts::choose(&mounts, &v2_controllers) {
        Some(version) => Ok((mounts, version)),
        None => {
            Err(ContainmentError::Unavailable { reason: "no cgroup file system is mounted".into() })
        }
    }
}

/// Containment on this machine: the chosen backend and the operations written once above it.
#[derive(Debug)]
pub struct Containment {
    backend: Box<dyn Cgroups>,
}

impl Containment {
    /// Chooses the cgroup version from `/proc/self/mountinfo` and opens the gangway root in
    /// it (creating it). `Unavailable` when there are no cgroups or no permission to use them.
    pub fn discover(root: &RootConfig) -> Result<Self, ContainmentError> {
        Self::discover_by(&root.name, |_| root.base)
    }

    /// [`Containment::discover`] with the root's place chosen by the version found: one read
    /// of the mounts where [`Containment::choose_version`] then `discover` took two (a local
    /// run's start pays for each).
    pub fn discover_by(
        name: &str,
        base: impl Fn(Version) -> Base,
    ) -> Result<Self, ContainmentError> {
        let (mounts, version) = offer()?;
        let root = &RootConfig::new(name, base(version));
        let own = mounts::parse_own_cgroups(&read("/proc/self/cgroup")?);
        let backend: Box<dyn Cgroups> = match version {
            Version::V1 => Box::new(v1::V1::open(&mounts, &own, root)?),
            Version::V2 => {
                let mount = mounts
                    .iter()
                    .find(|m| m.version == Version::V2)
                    .map(|m| m.point.clone())
                    .unwrap_or_default();
                Box::new(v2::V2::open(&mount, own.get("").map(String::as_str), root)?)
            }
        };
        Ok(Self { backend })
    }

    /// The version [`Containment::discover`] would use here, without creating anything.
    pub fn choose_version() -> Result<Version, ContainmentError> {
        Ok(offer()?.1)
    }

    /// v2 at a given cgroup2 mount, whatever else is mounted (tests of the v2 backend on a
    /// hybrid machine, or a cgroup2 mounted somewhere unusual).
    pub fn v2_at(mount: &Path, root: &RootConfig) -> Result<Self, ContainmentError> {
        let own = kernel_file::read("/proc/self/cgroup").unwrap_or_default();
        let own = mounts::parse_own_cgroups(&own);
        Ok(Self { backend: Box::new(v2::V2::open(mount, own.get("").map(String::as_str), root)?) })
    }

    pub fn backend(&self) -> &dyn Cgroups {
        &*self.backend
    }

    pub fn version(&self) -> Version {
        self.backend.version()
    }

    /// Creates a cgroup with its limits for processes that join it to be accounted
    /// ([`Join::Accounting`]); returns what could not be enforced.
    pub fn create(&self, path: &str, limits: &Limits) -> Result<Vec<String>, ContainmentError> {
        self.backend.create(path, limits, Join::Accounting(limits))
    }

    /// [`Containment::create`] for processes that join it as `join` says (a local run's
    /// cgroup reports no usage, so it needs no accounting hierarchy).
    pub fn create_for(
        &self,
        path: &str,
        limits: &Limits,
        join: Join<'_>,
    ) -> Result<Vec<String>, ContainmentError> {
        self.backend.create(path, limits, join)
    }

    /// Kills every process in the cgroup and its sub-cgroups (freeze, SIGKILL all, thaw; until
    /// it is empty or `budget` has passed).
    pub fn kill(&self, path: &str, budget: Duration) -> Result<KillReport, ContainmentError> {
        kill::kill_all(&*self.backend, path, budget)
    }

    pub fn usage(&self, path: &str) -> Result<Usage, ContainmentError> {
        self.backend.usage(path)
    }

    /// The end of a step or job: kill what is left, read what it used, remove the cgroup
    /// (sub-cgroups first).
    pub fn finish(
        &self,
        path: &str,
        budget: Duration,
    ) -> Result<(Usage, KillReport), ContainmentError> {
        let killed = self.kill(path, budget)?;
        let used = self.backend.usage(path)?;
        kill::remove_tree(&*self.backend, path)?;
        Ok((used, killed))
    }

    /// Kills everything under the gangway root and removes it: for tests, and for a caller
    /// that owns the whole root (a `gangway run` under its own cgroup).
    pub fn remove_root(&self, budget: Duration) -> Result<(), ContainmentError> {
        self.kill("", budget)?;
        kill::remove_tree(&*self.backend, "")
    }

    /// Kills and removes every job cgroup under the root for which `live` says no: for the
    /// agent at start-up (jobs it no longer runs, after it was killed) and for `gangway run`
    /// (runs whose launcher is gone).
    pub fn sweep(&self, live: &dyn Fn(&str) -> bool, budget: Duration) -> SweepReport {
        sweep::sweep(&*self.backend, live, budget)
    }
}
