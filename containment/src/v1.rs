//! The cgroup v1 backend: one hierarchy per controller (`/sys/fs/cgroup/memory`, `.../cpuset`,
//! ...), each holding its own copy of the gangway tree. Everything goes through `cgroups-rs`
//! but two things it has no call for: opening the `cgroup.procs` a rank writes itself into
//! before it execs ([`Cgroups::join_files`]), and removing a cgroup without its sub-cgroups
//! (`hierarchy::remove_dirs`: the library's `delete` removes those too).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use cgroups_rs::CgroupPid;
use cgroups_rs::FreezerState;
use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::devices::{DevicePermissions, DeviceType, DevicesController};
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;

use crate::hierarchy::{GangwayRoot, Kind};
use crate::mounts::{CgroupMount, Version};
use crate::{Base, Cgroups, ContainmentError, Join, Limits, RootConfig, Swap, Usage};

const KINDS: [Kind; 6] =
    [Kind::CpuSet, Kind::Memory, Kind::Pids, Kind::Freezer, Kind::CpuTime, Kind::Devices];

/// Clock ticks per second of `cpuacct.stat` (USER_HZ, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

#[derive(Debug)]
pub(crate) struct V1 {
    root: GangwayRoot,
}

impl V1 {
    /// Finds each controller's hierarchy and checks that the gangway root can be made in it.
    pub(crate) fn open(
        mounts: &[CgroupMount],
        own: &BTreeMap<String, String>,
        config: &RootConfig,
    ) -> Result<Self, ContainmentError> {
        let mut controllers = Vec::new();
        let mut nested = Vec::new();
        for kind in KINDS {
            let name = kind.v1_name();
            let Some(mount) = mounts
                .iter()
                .find(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == name))
            else {
                continue;
            };
            let parent = match config.base {
                Base::Top => mount.point.clone(),
                Base::Own => mount
                    .point
                    .join(own.get(name).map(String::as_str).unwrap_or("/").trim_start_matches('/')),
            };
            if parent != mount.point {
                nested.push(parent.join(&config.name));
            }
            controllers.push((kind, parent));
        }
        if controllers.is_empty() {
            return Err(ContainmentError::Unavailable {
                reason: "no cgroup v1 hierarchy has any of cpuset, memory, pids, freezer, cpuacct, devices".into(),
            });
        }
        // The root itself is made with the first cgroup below it, and only in the
        // hierarchies that cgroup uses (`create`, whose library call fills the root's empty
        // cpuset on the way): here only whether this process may make cgroups there, in the
        // root where it exists (made by an earlier agent as root, or delegated by an admin),
        // else where it would be made.
        for (_, parent) in &controllers {
            let root = parent.join(&config.name);
            let place = if root.is_dir() { root } else { parent.clone() };
            if let Err(e) = nix::unistd::access(&place, nix::unistd::AccessFlags::W_OK) {
                return Err(ContainmentError::Unavailable {
                    reason: format!(
                        "cannot create cgroups in {} ({e}): containment needs root or a delegated \
                         cgroup subtree",
                        place.display()
                    ),
                });
            }
        }
        let root = GangwayRoot { controllers, name: config.name.clone(), v2: false, nested };
        Ok(Self { root })
    }
}

impl V1 {
    /// The `cgroup.procs` of `dir(base)` in each hierarchy `join` picks, opened for writing.
    fn procs_files(
        &self,
        join: Join<'_>,
        dir: impl Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<Vec<OwnedFd>, ContainmentError> {
        self.root
            .controllers
            .iter()
            .filter(|(kind, _)| picks(*kind, join))
            // `All`: every hierarchy the cgroup was made in.
            .filter(|(_, base)| !matches!(join, Join::All) || dir(base).is_dir())
            .map(|(_, base)| dir(base).join("cgroup.procs"))
            .map(|file| {
                OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .map(OwnedFd::from)
                    .map_err(ContainmentError::io(file, "open for joining"))
            })
            .collect()
    }
}

/// Whether a process joining as `join` says joins the hierarchy of `kind`.
fn picks(kind: Kind, join: Join<'_>) -> bool {
    let enforces = |limits: &Limits| match kind {
        Kind::Freezer => true,
        Kind::CpuSet => limits.cpus.is_some() || limits.mems.is_some(),
        Kind::Memory => limits.memory.is_some(),
        Kind::Pids => limits.pids.is_some(),
        Kind::Devices => !limits.denied_devices.is_empty(),
        Kind::CpuTime => false,
    };
    match join {
        Join::All => true,
        Join::Accounting(_) if matches!(kind, Kind::CpuTime | Kind::Memory) => true,
        Join::Enforcing(limits) | Join::Accounting(limits) => enforces(limits),
        Join::EnforcingButMemory(limits) => kind != Kind::Memory && enforces(limits),
        Join::Memory(limits) => kind == Kind::Memory && limits.memory.is_some(),
    }
}

impl Cgroups for V1 {
    fn version(&self) -> Version {
        Version::V1
    }

    fn location(&self) -> String {
        let dirs = self.root.dirs("");
        format!(
            "cgroup v1, {} hierarchies: {}",
            dirs.len(),
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    }

    fn create(
        &self,
        path: &str,
        limits: &Limits,
        join: Join<'_>,
    ) -> Result<Vec<String>, ContainmentError> {
        let full = self.root.full(path);
        // Only in the hierarchies its processes join (and the freezer, which kills them all);
        // `Memory` is the second half of `EnforcingButMemory`, so both halves are made.
        let made = |kind| match join {
            Join::Memory(l) | Join::EnforcingButMemory(l) => picks(kind, Join::Enforcing(l)),
            other => picks(kind, other),
        };
        let cg = self.root.only(made).cgroup(path);
        let err = |what| ContainmentError::cgroup(&full, what);
        cg.create().map_err(err("create"))?;
        let mut notes = Vec::new();
        if limits.cpus.is_some() || limits.mems.is_some() {
            match cg.controller_of::<CpuSetController>() {
                Some(cpuset) => {
                    if let Some(cpus) = &limits.cpus {
                        cpuset.set_cpus(&cpus.to_list_string()).map_err(err("set cpuset.cpus"))?;
                    }
                    if let Some(mems) = &limits.mems {
                        cpuset.set_mems(&mems.to_list_string()).map_err(err("set cpuset.mems"))?;
                    }
                }
                None => notes.push("CPUs not confined: no cpuset hierarchy is mounted".into()),
            }
        }
        if let Some(bytes) = limits.memory {
            match cg.controller_of::<MemController>() {
                Some(mem) => {
                    let bytes = bytes.min(i64::MAX as u64) as i64;
                    mem.set_limit(bytes).map_err(err("set memory.limit_in_bytes"))?;
                    if limits.swap == Swap::Off {
                        // Memory plus swap at the same figure: nothing may be swapped out to
                        // make room. Missing when the kernel runs without swap accounting.
                        if let Err(e) = mem.set_memswap_limit(bytes) {
                            notes.push(format!(
                                "swap not limited (memory.memsw.limit_in_bytes: {e}; the kernel \
                                 needs swapaccount=1)"
                            ));
                        }
                    }
                }
                None => notes.push("memory not limited: no memory hierarchy is mounted".into()),
            }
        }
        if let Some(max) = limits.pids {
            match cg.controller_of::<PidController>() {
                Some(pids) => pids
                    .set_pid_max(MaxValue::Value(max.min(i64::MAX as u64) as i64))
                    .map_err(err("set pids.max"))?,
                None => notes.push("pids not limited: no pids hierarchy is mounted".into()),
            }
        }
        if !limits.denied_devices.is_empty() {
            match cg.controller_of::<DevicesController>() {
                Some(devices) => {
                    let all = [
                        DevicePermissions::Read,
                        DevicePermissions::Write,
                        DevicePermissions::MkNod,
                    ];
                    for d in &limits.denied_devices {
                        let kind = if d.char { DeviceType::Char } else { DeviceType::Block };
                        devices
                            .deny_device(kind, d.major as i64, d.minor as i64, &all)
                            .map_err(err("set devices.deny"))?;
                    }
                }
                None => notes.push("devices not confined: no devices hierarchy is mounted".into()),
            }
        }
        Ok(notes)
    }

    fn join_files(&self, path: &str, join: Join<'_>) -> Result<Vec<OwnedFd>, ContainmentError> {
        let full = self.root.full(path);
        self.procs_files(join, |base| base.join(&full))
    }

    fn leave_files(&self, join: Join<'_>) -> Result<Vec<OwnedFd>, ContainmentError> {
        self.procs_files(join, |base| base.to_path_buf())
    }

    fn confines_devices(&self) -> bool {
        true
    }

    fn remove_nested_root(&self) {
        crate::hierarchy::remove_nested(&self.root);
    }

    fn add_process(&self, path: &str, pid: u32) -> Result<(), ContainmentError> {
        self.root
            .cgroup(path)
            .add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(ContainmentError::cgroup(&self.root.full(path), "add a process"))
    }

    fn processes(&self, path: &str) -> Vec<u32> {
        self.root.cgroup(path).procs().into_iter().map(|p| p.pid as u32).collect()
    }

    fn children(&self, path: &str) -> Vec<String> {
        crate::sweep::subdirectories(&self.root.dirs(path))
    }

    fn exists(&self, path: &str) -> bool {
        // A `stat` of its own directory, mostly the first one: listing the parent in each of
        // the hierarchies (an agent's root holds every job's cgroup) cost ~0.1 ms per check.
        self.root.dirs(path).iter().any(|d| d.is_dir())
    }

    fn set_frozen(
        &self,
        path: &str,
        frozen: bool,
        budget: Duration,
    ) -> Result<(), ContainmentError> {
        let cg = self.root.cgroup(path);
        let Some(freezer) = cg.controller_of::<FreezerController>() else { return Ok(()) };
        let err = ContainmentError::cgroup(&self.root.full(path), "freeze or thaw");
        let set = if frozen { freezer.freeze() } else { freezer.thaw() };
        set.map_err(err)?;
        // v1 freezing is asynchronous: FREEZING until every task stopped.
        let until = Instant::now() + budget;
        while Instant::now() < until {
            match freezer.state() {
                Ok(FreezerState::Frozen) if frozen => break,
                Ok(FreezerState::Thawed) if !frozen => break,
                Ok(_) => crate::kill::pause(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn kill_at_once(&self, _path: &str) -> Result<bool, ContainmentError> {
        Ok(false)
    }

    fn usage(&self, path: &str) -> Result<Usage, ContainmentError> {
        // The five figures are read from their own files: the library's readers parse every
        // file of the controller (`memory.stat`, `numa_stat`, per-CPU usage, ~20 reads), which
        // cost a local run ~2 ms at its end.
        let full = self.root.full(path);
        let dir = |kind: Kind| {
            self.root.controllers.iter().find(|(k, _)| *k == kind).map(|(_, b)| b.join(&full))
        };
        let number = |dir: &std::path::Path, file: &str| {
            std::fs::read_to_string(dir.join(file)).ok().and_then(|t| t.trim().parse::<u64>().ok())
        };
        let mut used = Usage::default();
        if let Some(acct) = dir(Kind::CpuTime) {
            match (number(&acct, "cpuacct.usage_user"), number(&acct, "cpuacct.usage_sys")) {
                (Some(user), Some(sys)) if user > 0 || sys > 0 => {
                    used.user = Duration::from_nanos(user);
                    used.system = Duration::from_nanos(sys);
                }
                _ => {
                    let stat =
                        std::fs::read_to_string(acct.join("cpuacct.stat")).unwrap_or_default();
                    let ticks = |key: &str| {
                        stat.lines()
                            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    used.user = Duration::from_millis(ticks("user ") * 1000 / USER_HZ);
                    used.system = Duration::from_millis(ticks("system ") * 1000 / USER_HZ);
                }
            }
        }
        if let Some(mem) = dir(Kind::Memory) {
            used.peak_memory = number(&mem, "memory.max_usage_in_bytes");
            let oom = std::fs::read_to_string(mem.join("memory.oom_control")).unwrap_or_default();
            used.oom_kills = oom
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
                .unwrap_or(0);
            used.limit_hits = number(&mem, "memory.failcnt").unwrap_or(0);
        }
        Ok(used)
    }

    fn remove(&self, path: &str) -> Result<(), ContainmentError> {
        let dirs = self.root.dirs(path);
        crate::hierarchy::remove_dirs(&dirs)
            .map_err(ContainmentError::io(dirs.first().cloned().unwrap_or_default(), "remove"))
    }
}
