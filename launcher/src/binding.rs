//! Where each local rank runs: the machine model (cached between runs), the placement request
//! built from the binding flags, and the default binding rule.

use std::path::{Path, PathBuf};

use gangway_topology::{
    AllocatedNode, CpuBind, CpuSet, Distribution, Hint, MemBind, Placement, PlacementError,
    PlacementRequest, Topology, TopologyError, place,
};

/// The machine ranks are placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// This machine, as hwloc sees it.
    Local,
    /// Another machine's hwloc XML export (`--topology-xml`): for `--dry-run` and planning.
    XmlFile(PathBuf),
    /// An hwloc synthetic description (`--synthetic "pack:2 core:8 pu:2"`).
    Synthetic(String),
}

/// The binding flags of `gangway run`, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindingOptions {
    /// `--cpu-bind`; `None` applies the default rule (see [`decide`]).
    pub cpu_bind: Option<CpuBind>,
    pub cpus_per_task: u32,
    pub tasks_per_socket: Option<u32>,
    pub distribution: Distribution,
    pub hint: Hint,
    pub mem_bind: MemBind,
    pub gpus_per_task: u32,
    pub oversubscribe: bool,
}

impl Default for BindingOptions {
    fn default() -> Self {
        BindingOptions {
            cpu_bind: None,
            cpus_per_task: 1,
            tasks_per_socket: None,
            distribution: Distribution::default(),
            hint: Hint::default(),
            mem_bind: MemBind::None,
            gpus_per_task: 0,
            oversubscribe: false,
        }
    }
}

/// Why ranks could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// Places `ntasks` ranks on one machine (pure).
///
/// Default rule (no `--cpu-bind`): bind each rank to its own cores when they fit, as PRRTE
/// does; when there are more ranks than cores, leave them unbound instead of failing, since
/// oversubscribing a laptop is normal and binding would only pile ranks onto shared cores.
pub fn decide(
    ntasks: u32,
    opts: &BindingOptions,
    machine: &Topology,
    available: Option<CpuSet>,
) -> Result<Placement, PlacementError> {
    decide_within(ntasks, opts, machine, available, None)
}

/// [`decide`] inside the GPUs a job holds here (`None`: all the machine's): `--gpus-per-task`
/// then gives each task its own among those only.
pub fn decide_within(
    ntasks: u32,
    opts: &BindingOptions,
    machine: &Topology,
    available: Option<CpuSet>,
    gpus: Option<CpuSet>,
) -> Result<Placement, PlacementError> {
    let mut request = PlacementRequest {
        ntasks,
        cpus_per_task: opts.cpus_per_task,
        tasks_per_node: None,
        tasks_per_socket: opts.tasks_per_socket,
        distribution: opts.distribution,
        cpu_bind: opts.cpu_bind.clone().unwrap_or(CpuBind::Cores),
        hint: opts.hint,
        mem_bind: opts.mem_bind,
        gpus_per_task: opts.gpus_per_task,
        oversubscribe: opts.oversubscribe,
    };
    let node = AllocatedNode { topology: machine, cpus: available, gpus };
    match place(&request, std::slice::from_ref(&node)) {
        Err(PlacementError::NotEnoughCpus { .. })
            if opts.cpu_bind.is_none() && !opts.oversubscribe =>
        {
            request.cpu_bind = CpuBind::None;
            request.oversubscribe = true;
            let mut placement = place(&request, &[node])?;
            // Its own note would credit an --oversubscribe the user never gave.
            placement.notes.clear();
            placement.notes.push(
                "more ranks than cores: ranks are not bound (the default --cpu-bind=cores applies \
                 only when they fit; give --cpu-bind=... --oversubscribe to bind anyway)"
                    .into(),
            );
            Ok(placement)
        }
        other => other,
    }
}

/// The placement for a launch, or `None` when the ranks are simply not bound.
///
/// Skips the machine model entirely when nothing could be bound (explicit `--cpu-bind=none`,
/// or more ranks than CPUs under the default rule), so such launches pay nothing for it.
/// `for_display` (`--dry-run`) always computes the map, even for unbound ranks.
pub fn plan(
    ntasks: u32,
    opts: &BindingOptions,
    machine: &Machine,
    for_display: bool,
) -> Result<Option<Placement>, BindingError> {
    if *machine == Machine::Local && !for_display {
        let nothing_to_bind = opts.mem_bind == MemBind::None && opts.gpus_per_task == 0;
        let explicit_none = opts.cpu_bind == Some(CpuBind::None);
        let surely_oversubscribed = opts.cpu_bind.is_none()
            && !opts.oversubscribe
            && u64::from(ntasks) * u64::from(opts.cpus_per_task)
                > gangway_topology::available_cpus() as u64;
        if nothing_to_bind && (explicit_none || surely_oversubscribed) {
            return Ok(None);
        }
    }
    let (model, available) = match machine {
        Machine::Local => (local_topology()?, own_affinity()),
        Machine::XmlFile(path) => (Topology::from_xml_file(path)?, None),
        Machine::Synthetic(desc) => (Topology::from_synthetic(desc)?, None),
    };
    Ok(Some(decide(ntasks, opts, &model, available)?))
}

/// What a managed step's proxy is told of its node by the agent that started it: the model
/// the agent (and so the scheduler's grant) uses, when it is not this machine's own (a
/// stand-in `--topology-xml`), the step's CPUs, and the GPUs the job holds here with how its
/// tasks number them. A proxy started any other way (SSH) is told nothing: its ranks are
/// placed on this machine as for a local run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepNode {
    /// `GANGWAY_STEP_TOPOLOGY_XML`: the agent's stand-in model.
    pub model: Option<PathBuf>,
    /// `GANGWAY_STEP_CPUS`: the step's CPUs here (in the model's numbering).
    pub cpus: Option<CpuSet>,
    /// `GANGWAY_STEP_GPUS`: the job's GPUs here (indexes of the model; empty: none).
    pub gpus: Option<CpuSet>,
    /// `GANGWAY_STEP_GPU_NUMBERING=job`: tasks count their GPUs 0.. over the job's (the
    /// devices controller hides the others from them).
    pub gpus_within_job: bool,
}

impl StepNode {
    /// From the proxy's environment (`var` reads one variable).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> StepNode {
        let set = |name: &str| -> Option<CpuSet> {
            let text = var(name)?;
            if text.trim().is_empty() { Some(CpuSet::new()) } else { text.trim().parse().ok() }
        };
        StepNode {
            model: var("GANGWAY_STEP_TOPOLOGY_XML").filter(|p| !p.is_empty()).map(PathBuf::from),
            cpus: set("GANGWAY_STEP_CPUS").filter(|c| !c.is_empty()),
            gpus: set("GANGWAY_STEP_GPUS"),
            gpus_within_job: var("GANGWAY_STEP_GPU_NUMBERING").is_some_and(|v| v == "job"),
        }
    }

    /// The job's GPUs to number the tasks' GPUs within (`None`: the model's indexes).
    pub fn gpu_numbering(&self) -> Option<&CpuSet> {
        self.gpus.as_ref().filter(|_| self.gpus_within_job)
    }
}

/// The placement of a managed step's ranks on this node ([`plan`] for a proxy): on the model
/// and inside the CPUs and GPUs its agent said.
pub fn plan_step(
    ntasks: u32,
    opts: &BindingOptions,
    step: &StepNode,
) -> Result<Option<Placement>, BindingError> {
    // Without GPUs per task the job's GPUs change nothing here: placed as for a local run.
    let (Some(gpus), true) = (&step.gpus, opts.gpus_per_task > 0) else {
        return plan(ntasks, opts, &Machine::Local, false);
    };
    let (model, cpus) = match &step.model {
        Some(file) => (Topology::from_xml_file(file)?, step.cpus.clone()),
        None => (local_topology()?, own_affinity()),
    };
    Ok(Some(decide_within(ntasks, opts, &model, cpus, Some(gpus.clone()))?))
}

/// Loads a machine model for display (`gangway topology`).
pub fn load(machine: &Machine) -> Result<Topology, TopologyError> {
    match machine {
        Machine::Local => local_topology(),
        Machine::XmlFile(path) => Topology::from_xml_file(path),
        Machine::Synthetic(desc) => Topology::from_synthetic(desc),
    }
}

/// The CPUs this process may run on (an enclosing `taskset` or batch allocation).
fn own_affinity() -> Option<CpuSet> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let max = nix::sched::CpuSet::count() as u32;
    Some((0..max).filter(|&cpu| set.is_set(cpu as usize).unwrap_or(false)).collect())
}

/// This machine's model, from a per-user cache when the machine has not changed.
///
/// hwloc discovery takes ~12 ms here, several times a whole launch; the cache makes it a
/// small JSON read. The key covers the boot, the CPUs and memory nodes this process may use,
/// and gangway's version, so a reboot, a different cpuset or an upgrade discovers afresh.
pub fn local_topology() -> Result<Topology, TopologyError> {
    let Some(path) = cache_path() else { return Topology::discover() };
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(model) = Topology::from_json(&text)
    {
        return Ok(model);
    }
    let model = Topology::discover()?;
    // A cache that cannot be written only costs the next run a discovery.
    let _ = write_atomically(&path, model.to_json().as_bytes());
    Ok(model)
}

/// This machine as an hwloc XML export (for the PMIx server to hand Open MPI's ranks, which
/// then skip their own discovery, ~20 ms of CPU each), from the same per-user cache as
/// [`local_topology`]. `None` when hwloc cannot export it: the ranks then discover as before.
pub fn local_topology_xml() -> Option<String> {
    let path = cache_path().map(|p| p.with_extension("xml"));
    if let Some(text) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok())
        && text.contains("<topology")
    {
        return Some(text);
    }
    let xml = Topology::discover_xml().ok()?;
    if let Some(path) = path {
        let _ = write_atomically(&path, xml.as_bytes());
    }
    Some(xml)
}

/// Where [`local_topology_xml`] keeps this machine's XML, if a previous run wrote it.
pub fn cached_topology_xml_path() -> Option<PathBuf> {
    cache_path().map(|p| p.with_extension("xml")).filter(|p| p.is_file())
}

fn cache_path() -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("Cpus_allowed_list:") || l.starts_with("Mems_allowed_list:"))
        .collect();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (boot.trim(), allowed, env!("CARGO_PKG_VERSION")).hash(&mut hasher);
    Some(cache_dir()?.join(format!("topology-{:016x}.json", hasher.finish())))
}

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gangway"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_topology::Shape;

    fn machine(packages: u32, cores: u32, threads: u32) -> Topology {
        Shape::new(packages, cores, threads).build().unwrap()
    }

    #[test]
    fn default_binds_to_cores_when_the_ranks_fit() {
        let m = machine(1, 4, 2);
        let p = decide(4, &BindingOptions::default(), &m, None).unwrap();
        assert!(p.ranks.iter().all(|r| !r.binding.unbound && r.binding.cores.len() == 1));
        assert!(p.notes.is_empty());
    }

    #[test]
    fn default_leaves_oversubscribed_ranks_unbound() {
        let m = machine(1, 2, 1);
        let p = decide(3, &BindingOptions::default(), &m, None).unwrap();
        assert!(p.ranks.iter().all(|r| r.binding.unbound));
        assert!(p.notes.iter().any(|n| n.contains("not bound")));
    }

    #[test]
    fn explicit_binding_that_does_not_fit_is_an_error() {
        let m = machine(1, 2, 1);
        let opts = BindingOptions { cpu_bind: Some(CpuBind::Cores), ..Default::default() };
        let err = decide(3, &opts, &m, None).unwrap_err().to_string();
        assert!(err.contains("3 tasks x 1 cpus need 3 cores"), "{err}");
        let relaxed = BindingOptions { oversubscribe: true, ..opts };
        assert!(decide(3, &relaxed, &m, None).unwrap().binding_relaxed);
    }

    #[test]
    fn available_cpus_restrict_the_placement() {
        let m = machine(1, 4, 1);
        let only: CpuSet = [2, 3].into_iter().collect();
        let p = decide(2, &BindingOptions::default(), &m, Some(only.clone())).unwrap();
        for r in &p.ranks {
            assert!(r.binding.cpus.is_subset(&only));
        }
    }

    /// The two-socket hwloc export with two GPUs, one per socket (the shared test data).
    fn two_gpu_machine() -> Topology {
        let xml = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../topology/tests/data/32em64t-2n8c2t-pci-normalio.xml");
        Topology::from_xml_file(&xml).unwrap()
    }

    #[test]
    fn a_steps_tasks_get_gpus_only_from_the_jobs_grant_and_never_share_one() {
        let m = two_gpu_machine();
        let all: Vec<u32> = m.gpus.iter().map(|g| g.index).collect();
        assert_eq!(all.len(), 2, "{all:?}");
        let opts = BindingOptions { gpus_per_task: 1, ..Default::default() };
        // The whole machine's GPUs: two tasks, one each, no overlap.
        let p = decide_within(2, &opts, &m, None, Some(all.iter().copied().collect())).unwrap();
        let mut got: Vec<u32> = p.ranks.iter().flat_map(|r| r.binding.gpus.clone()).collect();
        got.sort_unstable();
        assert_eq!(got, all);
        // A job granted the second GPU only: its one task gets that one, wherever its CPUs.
        let granted: CpuSet = [all[1]].into_iter().collect();
        let p = decide_within(1, &opts, &m, None, Some(granted.clone())).unwrap();
        assert_eq!(p.ranks[0].binding.gpus, vec![all[1]]);
        // Two tasks cannot share the job's one GPU.
        let e = decide_within(2, &opts, &m, None, Some(granted)).unwrap_err().to_string();
        assert!(e.contains("GPU"), "{e}");
    }

    #[test]
    fn the_agent_tells_the_proxy_its_steps_gpus_and_their_numbering() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let step = StepNode::from_env(env(&[
            ("GANGWAY_STEP_GPUS", "1,3"),
            ("GANGWAY_STEP_GPU_NUMBERING", "job"),
            ("GANGWAY_STEP_CPUS", "0-3"),
            ("GANGWAY_STEP_TOPOLOGY_XML", "/m.xml"),
        ]));
        assert_eq!(step.gpus, Some("1,3".parse().unwrap()));
        assert_eq!(step.gpu_numbering(), Some(&"1,3".parse().unwrap()));
        assert_eq!(step.cpus, Some("0-3".parse().unwrap()));
        assert_eq!(step.model, Some(PathBuf::from("/m.xml")));
        // A job without GPUs is told so: its tasks get none, not the machine's.
        let none = StepNode::from_env(env(&[("GANGWAY_STEP_GPUS", "")]));
        assert_eq!(none.gpus, Some(CpuSet::new()));
        assert_eq!(none.gpu_numbering(), None);
        // A proxy nobody told anything (started over SSH) places as a local run does.
        assert_eq!(StepNode::from_env(|_| None), StepNode::default());
    }
}
