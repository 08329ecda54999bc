//! The cgroup library's view of the gangway root: a `cgroups_rs` hierarchy whose controllers
//! all start at the gangway root directory of their own mount, so every cgroup path the
//! backends hand to the library is relative to that root (`job_12/step_0`).
//!
//! The library's own hierarchies cannot be used as they are: its v2 one is fixed to
//! `/sys/fs/cgroup` (a hybrid system mounts it at `/sys/fs/cgroup/unified`), and neither can
//! start below this process's own cgroup.

use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::devices::DevicesController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, Hierarchy, Subsystem};

/// A controller containment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    CpuSet,
    Memory,
    Pids,
    Freezer,
    /// CPU time: `cpuacct` on v1, the core `cpu.stat` on v2.
    CpuTime,
    Devices,
}

impl Kind {
    /// Its v1 controller name (as in mountinfo options and `/proc/self/cgroup`).
    pub(crate) fn v1_name(self) -> &'static str {
        match self {
            Kind::CpuSet => "cpuset",
            Kind::Memory => "memory",
            Kind::Pids => "pids",
            Kind::Freezer => "freezer",
            Kind::CpuTime => "cpuacct",
            Kind::Devices => "devices",
        }
    }
}

/// The gangway root in each hierarchy containment uses.
///
/// The library's controllers start at the root's *parent* (the mount, or this process's own
/// cgroup) and every path it is given starts with the root's name: so creating
/// `gangway/job_1/step_0` fills the v1 `cpuset.cpus`/`cpuset.mems` of every new directory on
/// the way from the nearest parent that has them (an empty cpuset takes no task).
#[derive(Debug, Clone)]
pub(crate) struct GangwayRoot {
    /// Each controller with the directory the gangway root is created in.
    pub(crate) controllers: Vec<(Kind, PathBuf)>,
    /// The root's directory name.
    pub(crate) name: String,
    pub(crate) v2: bool,
    /// Its directories that sit below a process's own cgroup rather than at the top of their
    /// hierarchy ([`crate::Base::Own`]).
    pub(crate) nested: Vec<PathBuf>,
}

impl GangwayRoot {
    /// A library handle on the cgroup at `path` (relative to the gangway root; "" is the root).
    pub(crate) fn cgroup(&self, path: &str) -> Cgroup {
        self.load(&self.full(path))
    }

    /// The same root seen through the controllers `keep` picks only.
    pub(crate) fn only(&self, keep: impl Fn(Kind) -> bool) -> GangwayRoot {
        let controllers = self.controllers.iter().filter(|(k, _)| keep(*k)).cloned().collect();
        let nested = self.nested.clone();
        GangwayRoot { controllers, name: self.name.clone(), v2: self.v2, nested }
    }

    /// `path` as the library sees it: below the root's parent.
    pub(crate) fn full(&self, path: &str) -> String {
        if path.is_empty() { self.name.clone() } else { format!("{}/{path}", self.name) }
    }

    fn load(&self, full: &str) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), Path::new(full))
    }

    /// Every directory of `path`, one per hierarchy (one on v2).
    pub(crate) fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let full = self.full(path);
        let mut dirs: Vec<PathBuf> = self.controllers.iter().map(|(_, b)| b.join(&full)).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

impl Hierarchy for GangwayRoot {
    fn subsystems(&self) -> Vec<Subsystem> {
        let root = PathBuf::from("/");
        self.controllers
            .iter()
            .map(|(kind, base)| {
                let base = base.clone();
                match kind {
                    Kind::CpuSet => {
                        Subsystem::CpuSet(CpuSetController::new(base, root.clone(), self.v2))
                    }
                    Kind::Memory => Subsystem::Mem(MemController::new(base, root.clone(), self.v2)),
                    Kind::Pids => Subsystem::Pid(PidController::new(base, root.clone(), self.v2)),
                    Kind::Freezer => {
                        Subsystem::Freezer(FreezerController::new(base, root.clone(), self.v2))
                    }
                    Kind::CpuTime if self.v2 => {
                        Subsystem::Cpu(CpuController::new(base, root.clone(), true))
                    }
                    Kind::CpuTime => Subsystem::CpuAcct(CpuAcctController::new(base, root.clone())),
                    Kind::Devices => Subsystem::Devices(DevicesController::new(base, root.clone())),
                }
            })
            .collect()
    }

    fn root(&self) -> PathBuf {
        self.controllers.first().map(|(_, b)| b.clone()).unwrap_or_default()
    }

    fn root_control_group(&self) -> Cgroup {
        self.load("")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path).parent().map(|p| p.to_string_lossy().into_owned());
        self.load(parent.as_deref().unwrap_or(""))
    }

    fn v2(&self) -> bool {
        self.v2
    }
}

/// Removes a cgroup's directories (one per hierarchy), not its sub-cgroups: the library's
/// `delete` empties a v1 directory of its sub-directories first, which on a shared gangway
/// root would take another run's or job's cgroup with it. A cgroup whose last processes are
/// still exiting is busy for a moment, so that is retried briefly.
pub(crate) fn remove_dirs(dirs: &[PathBuf]) -> std::io::Result<()> {
    for dir in dirs {
        let mut wait = std::time::Duration::from_millis(5);
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && wait.as_millis() < 200 => {
                    crate::kill::pause(wait);
                    wait *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Tries once to remove the root's directories that sit below a process's own cgroup: busy (a
/// cgroup in it) or gone, it is left as it is.
pub(crate) fn remove_nested(root: &GangwayRoot) {
    for dir in &root.nested {
        let _ = std::fs::remove_dir(dir);
    }
}
