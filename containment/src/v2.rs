//! The cgroup v2 backend: one unified hierarchy, controllers handed down through each
//! parent's `cgroup.subtree_control`. Limits, freezing, `cgroup.kill` and the usage figures
//! go through `cgroups-rs`; what it does not cover is done here, each in one place (and
//! removal in `hierarchy::remove_dirs`, shared with v1):
//! - handing controllers down: the library does it only for a mount at `/sys/fs/cgroup` and
//!   ignores failures, and a limit silently not applied is worse than none, so each parent's
//!   `cgroup.subtree_control` is written here and a refusal is reported;
//! - `memory.events` (`oom_kill`, `max`): the library has no reader for it;
//! - `cgroup.events` (`frozen`): freezing is asynchronous and the library cannot wait for it.
//!
//! - device nodes: v2 has no devices controller; a cgroup whose limits deny devices gets an
//!   eBPF device program instead (`device_program.rs`, `bpf.rs`), unless a program already
//!   attached to it or an ancestor denies them all (a step inside its job's: the kernel runs
//!   the ancestors' programs too). Where it cannot be loaded, [`Cgroups::create`] says so and
//!   GPUs are bound by `CUDA_VISIBLE_DEVICES`/`ROCR_VISIBLE_DEVICES` only.
//!
//! A process can start inside a v2 cgroup ([`Cgroups::clone_target`], `clone_into.rs`).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::error::ErrorKind;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;

use crate::device_program::DevicePolicy;
use crate::hierarchy::{GangwayRoot, Kind};
use crate::mounts::{ENFORCING, Version};
use crate::{Base, Cgroups, ContainmentError, DeviceNode, Join, Limits, RootConfig, Swap, Usage};

/// The controllers a cgroup2 directory offers its children's parent (its `cgroup.controllers`).
pub(crate) fn controllers_at(dir: &Path) -> Vec<String> {
    crate::kernel_file::read(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[derive(Debug)]
pub(crate) struct V2 {
    root: GangwayRoot,
    /// The gangway root's directory.
    dir: PathBuf,
    /// The enforcing controllers the gangway root has; for the others, why not.
    missing: Vec<(&'static str, String)>,
    /// The devices each cgroup's program (attached by this backend) denies, by path.
    device_programs: Mutex<HashMap<String, Vec<DeviceNode>>>,
    /// Whether this process can load a device program: asked once, when first needed.
    can_load: OnceLock<bool>,
}

impl V2 {
    /// Creates the gangway root under the mount (or this process's own cgroup) and hands it
    /// the enforcing controllers its parent can give.
    pub(crate) fn open(
        mount: &Path,
        own: Option<&str>,
        config: &RootConfig,
    ) -> Result<Self, ContainmentError> {
        let parent = match config.base {
            Base::Top => mount.to_path_buf(),
            Base::Own => mount.join(own.unwrap_or("/").trim_start_matches('/')),
        };
        let dir = parent.join(&config.name);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return Err(ContainmentError::Unavailable {
                reason: format!(
                    "cannot create {} ({e}): containment needs root or a delegated cgroup subtree",
                    dir.display()
                ),
            });
        }
        let offered = controllers_at(&parent);
        let mut missing = Vec::new();
        let mut controllers =
            vec![(Kind::Freezer, parent.clone()), (Kind::CpuTime, parent.clone())];
        for (name, kind) in ENFORCING.into_iter().zip([Kind::CpuSet, Kind::Memory, Kind::Pids]) {
            if !offered.iter().any(|c| c == name) {
                missing.push((
                    name,
                    format!(
                        "{} does not offer it: it is bound to a v1 hierarchy or not delegated",
                        parent.display()
                    ),
                ));
                continue;
            }
            match enable(&parent, name) {
                Ok(()) => controllers.push((kind, parent.clone())),
                Err(e) => missing.push((
                    name,
                    format!("{}/cgroup.subtree_control refused it: {e}", parent.display()),
                )),
            }
        }
        let nested = if parent == mount { Vec::new() } else { vec![dir.clone()] };
        let root = GangwayRoot { controllers, name: config.name.clone(), v2: true, nested };
        Ok(Self {
            root,
            dir,
            missing,
            device_programs: Mutex::default(),
            can_load: OnceLock::new(),
        })
    }

    fn has(&self, kind: Kind) -> bool {
        self.root.controllers.iter().any(|(k, _)| *k == kind)
    }

    fn why_missing(&self, name: &str) -> String {
        self.missing
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, why)| why.clone())
            .unwrap_or_else(|| "not available".into())
    }

    /// Keeps the cgroup's tasks from the `denied` device nodes: a device program on it,
    /// unless one on it or an ancestor denies them all already.
    fn deny_devices(&self, path: &str, denied: &[DeviceNode]) -> Result<(), ContainmentError> {
        let mut attached = self.device_programs.lock().unwrap_or_else(PoisonError::into_inner);
        let covered = ancestors_and_self(path)
            .any(|p| attached.get(p).is_some_and(|has| denied.iter().all(|d| has.contains(d))));
        if !covered {
            crate::bpf::attach_device_policy(&DevicePolicy::denying(denied), &self.dir.join(path))?;
            attached.insert(path.to_string(), denied.to_vec());
        }
        Ok(())
    }

    fn events(&self, path: &str, file: &str, key: &str) -> u64 {
        let text = std::fs::read_to_string(self.dir.join(path).join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// `job_1/step_0`, `job_1`, `""` (the gangway root).
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| {
        (!p.is_empty()).then(|| p.rsplit_once('/').map_or("", |(parent, _)| parent))
    })
}

/// Hands `controller` to the children of `dir`.
fn enable(dir: &Path, controller: &str) -> std::io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control)?;
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    std::fs::write(&control, format!("+{controller}"))
}

impl Cgroups for V2 {
    fn version(&self) -> Version {
        Version::V2
    }

    fn location(&self) -> String {
        let missing: Vec<&str> = self.missing.iter().map(|(n, _)| *n).collect();
        if missing.is_empty() {
            format!("cgroup v2 at {}", self.dir.display())
        } else {
            format!("cgroup v2 at {} (without {})", self.dir.display(), missing.join(", "))
        }
    }

    fn create(
        &self,
        path: &str,
        limits: &Limits,
        _join: Join<'_>,
    ) -> Result<Vec<String>, ContainmentError> {
        let full = self.root.full(path);
        let cg = self.root.cgroup(path);
        let err = |what| ContainmentError::cgroup(&full, what);
        cg.create().map_err(err("create"))?;
        // Every level between the root and the new cgroup hands down what the root has.
        let mut level = self.dir.clone();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in
            std::iter::once("").chain(parts.iter().copied().take(parts.len().saturating_sub(1)))
        {
            if !part.is_empty() {
                level.push(part);
            }
            for (name, kind) in ENFORCING.into_iter().zip([Kind::CpuSet, Kind::Memory, Kind::Pids])
            {
                if self.has(kind) {
                    enable(&level, name).map_err(|e| ContainmentError::Controller {
                        at: level.clone(),
                        controller: name,
                        why: e.to_string(),
                    })?;
                }
            }
        }
        let mut notes = Vec::new();
        if limits.cpus.is_some() || limits.mems.is_some() {
            match cg.controller_of::<CpuSetController>() {
                Some(cpuset) if self.has(Kind::CpuSet) => {
                    if let Some(cpus) = &limits.cpus {
                        cpuset.set_cpus(&cpus.to_list_string()).map_err(err("set cpuset.cpus"))?;
                    }
                    if let Some(mems) = &limits.mems {
                        cpuset.set_mems(&mems.to_list_string()).map_err(err("set cpuset.mems"))?;
                    }
                }
                _ => notes.push(format!("CPUs not confined: {}", self.why_missing("cpuset"))),
            }
        }
        if let Some(bytes) = limits.memory {
            match cg.controller_of::<MemController>() {
                Some(mem) if self.has(Kind::Memory) => {
                    mem.set_limit(bytes.min(i64::MAX as u64) as i64)
                        .map_err(err("set memory.max"))?;
                    if limits.swap == Swap::Off {
                        // No swap at all: nothing may be swapped out to make room.
                        if let Err(e) = mem.set_memswap_limit(0) {
                            notes.push(format!("swap not limited (memory.swap.max: {e})"));
                        }
                    }
                }
                _ => notes.push(format!("memory not limited: {}", self.why_missing("memory"))),
            }
        }
        if let Some(max) = limits.pids {
            match cg.controller_of::<PidController>() {
                Some(pids) if self.has(Kind::Pids) => pids
                    .set_pid_max(MaxValue::Value(max.min(i64::MAX as u64) as i64))
                    .map_err(err("set pids.max"))?,
                _ => notes.push(format!("pids not limited: {}", self.why_missing("pids"))),
            }
        }
        if !limits.denied_devices.is_empty()
            && let Err(e) = self.deny_devices(path, &limits.denied_devices)
        {
            notes.push(format!(
                "GPU device nodes not confined ({e}); CUDA_VISIBLE_DEVICES/ROCR_VISIBLE_DEVICES \
                 still apply"
            ));
        }
        Ok(notes)
    }

    fn join_files(&self, path: &str, _: Join<'_>) -> Result<Vec<OwnedFd>, ContainmentError> {
        let file = self.dir.join(path).join("cgroup.procs");
        let fd = OpenOptions::new()
            .write(true)
            .open(&file)
            .map(OwnedFd::from)
            .map_err(ContainmentError::io(file, "open for joining"))?;
        Ok(vec![fd])
    }

    fn leave_files(&self, _: Join<'_>) -> Result<Vec<OwnedFd>, ContainmentError> {
        let parent = self.dir.parent().unwrap_or(&self.dir);
        let file = parent.join("cgroup.procs");
        let fd = OpenOptions::new()
            .write(true)
            .open(&file)
            .map(OwnedFd::from)
            .map_err(ContainmentError::io(file, "open for leaving"))?;
        Ok(vec![fd])
    }

    fn clone_target(&self, path: &str) -> Result<Option<OwnedFd>, ContainmentError> {
        let dir = self.dir.join(path);
        std::fs::File::open(&dir)
            .map(|f| Some(OwnedFd::from(f)))
            .map_err(ContainmentError::io(dir, "open for starting processes in it"))
    }

    fn remove_nested_root(&self) {
        crate::hierarchy::remove_nested(&self.root);
    }

    fn confines_devices(&self) -> bool {
        *self.can_load.get_or_init(crate::bpf::can_load_device_programs)
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
        crate::sweep::subdirectories(&[self.dir.join(path)])
    }

    fn set_frozen(
        &self,
        path: &str,
        frozen: bool,
        budget: Duration,
    ) -> Result<(), ContainmentError> {
        let cg = self.root.cgroup(path);
        let Some(freezer) = cg.controller_of::<FreezerController>() else { return Ok(()) };
        let set = if frozen { freezer.freeze() } else { freezer.thaw() };
        set.map_err(ContainmentError::cgroup(&self.root.full(path), "freeze or thaw"))?;
        let until = Instant::now() + budget;
        while Instant::now() < until
            && (self.events(path, "cgroup.events", "frozen") == 1) != frozen
        {
            crate::kill::pause(Duration::from_millis(1));
        }
        Ok(())
    }

    fn kill_at_once(&self, path: &str) -> Result<bool, ContainmentError> {
        match self.root.cgroup(path).kill() {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidOperation) => Ok(false),
            Err(e) => Err(ContainmentError::Cgroup {
                path: self.root.full(path),
                what: "write cgroup.kill",
                source: e,
            }),
        }
    }

    fn usage(&self, path: &str) -> Result<Usage, ContainmentError> {
        let cg = self.root.cgroup(path);
        let mut used = Usage::default();
        if let Some(cpu) = cg.controller_of::<CpuController>() {
            let stat = cpu.cpu().stat;
            let usec = |key: &str| {
                stat.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            used.user = Duration::from_micros(usec("user_usec "));
            used.system = Duration::from_micros(usec("system_usec "));
        }
        if self.has(Kind::Memory)
            && let Some(mem) = cg.controller_of::<MemController>()
        {
            let peak = mem.memory_stat().max_usage_in_bytes;
            // memory.peak arrived in Linux 5.19; before that the library reads 0.
            used.peak_memory = (peak > 0).then_some(peak);
            used.oom_kills = self.events(path, "memory.events", "oom_kill");
            used.limit_hits = self.events(path, "memory.events", "max");
        }
        Ok(used)
    }

    fn remove(&self, path: &str) -> Result<(), ContainmentError> {
        // Its program goes with it (the kernel detaches it when the cgroup is released).
        self.device_programs.lock().unwrap_or_else(PoisonError::into_inner).remove(path);
        let dirs = self.root.dirs(path);
        crate::hierarchy::remove_dirs(&dirs)
            .map_err(ContainmentError::io(dirs.first().cloned().unwrap_or_default(), "remove"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_followed_by_its_ancestors_up_to_the_root() {
        assert_eq!(
            ancestors_and_self("job_1/step_0").collect::<Vec<_>>(),
            ["job_1/step_0", "job_1", ""]
        );
        assert_eq!(ancestors_and_self("job_1").collect::<Vec<_>>(), ["job_1", ""]);
        assert_eq!(ancestors_and_self("").collect::<Vec<_>>(), [""]);
    }
}
