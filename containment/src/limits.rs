//! What a cgroup enforces, as plain values, and the rules that derive them from a request
//! (pure).

use gangway_topology::{CpuSet, NodeSet};

/// Whether a cgroup's tasks may swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Swap {
    /// The memory limit is a limit on memory plus swap: a job over it is OOM-killed instead of
    /// paging the node to a crawl (Slurm's default with `ConstrainSwapSpace`).
    #[default]
    Off,
    /// Swap is not limited (the memory limit alone applies).
    Unlimited,
}

/// A device node, as the devices controller names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceNode {
    /// `true`: a character device; `false`: a block device.
    pub char: bool,
    pub major: u64,
    pub minor: u64,
}

impl std::fmt::Display for DeviceNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", if self.char { 'c' } else { 'b' }, self.major, self.minor)
    }
}

/// Everything one cgroup enforces. `None`/empty: not limited (inherited from the parent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// The CPUs its tasks may run on: a task widening its affinity cannot leave them.
    pub cpus: Option<CpuSet>,
    /// The NUMA nodes its memory may come from (with `cpus`; the parent's when `None`).
    pub mems: Option<NodeSet>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    pub swap: Swap,
    /// The most tasks (processes and threads) at once.
    pub pids: Option<u64>,
    /// Devices its tasks may not open: the node's GPUs it was not granted.
    pub denied_devices: Vec<DeviceNode>,
}

/// How a job asked for memory (`--mem` or `--mem-per-cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRequest {
    /// Bytes per node.
    PerNode(u64),
    /// Bytes per allocated CPU.
    PerCpu(u64),
}

impl MemoryRequest {
    /// The limit on a node where the job holds `cpus` CPUs.
    pub fn limit_on_node(self, cpus: u32) -> u64 {
        match self {
            MemoryRequest::PerNode(bytes) => bytes,
            MemoryRequest::PerCpu(bytes) => bytes.saturating_mul(u64::from(cpus.max(1))),
        }
    }
}

/// Building limits step by step, so callers and tests name only what they set.
impl Limits {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cpus(mut self, cpus: CpuSet) -> Self {
        self.cpus = Some(cpus);
        self
    }

    pub fn mems(mut self, mems: NodeSet) -> Self {
        self.mems = Some(mems);
        self
    }

    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    pub fn swap(mut self, swap: Swap) -> Self {
        self.swap = swap;
        self
    }

    pub fn pids(mut self, max: u64) -> Self {
        self.pids = Some(max);
        self
    }

    pub fn deny(mut self, device: DeviceNode) -> Self {
        self.denied_devices.push(device);
        self
    }

    /// A step's limits inside its job's: the step's own where it sets one, else the job's
    /// (a step can narrow its job's limits, never widen them).
    pub fn within(self, job: &Limits) -> Limits {
        let narrower = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut denied = job.denied_devices.clone();
        denied.extend(self.denied_devices);
        denied.sort_unstable();
        denied.dedup();
        Limits {
            cpus: match (self.cpus, &job.cpus) {
                (Some(s), Some(j)) => Some(s.intersection(j)),
                (s, j) => s.or_else(|| j.clone()),
            },
            mems: self.mems.or_else(|| job.mems.clone()),
            memory: narrower(self.memory, job.memory),
            swap: if job.swap == Swap::Off { Swap::Off } else { self.swap },
            pids: narrower(self.pids, job.pids),
            denied_devices: denied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_cpu_scales_with_the_cpus_on_the_node() {
        assert_eq!(MemoryRequest::PerNode(1 << 30).limit_on_node(8), 1 << 30);
        assert_eq!(MemoryRequest::PerCpu(512 << 20).limit_on_node(4), 2 << 30);
        // A node where the job holds no CPU count still gets one CPU's worth, never zero.
        assert_eq!(MemoryRequest::PerCpu(512 << 20).limit_on_node(0), 512 << 20);
    }

    #[test]
    fn a_step_narrows_its_job_and_never_widens_it() {
        let job = Limits::new().cpus("0-7".parse().unwrap()).memory(4 << 30).deny(DeviceNode {
            char: true,
            major: 195,
            minor: 1,
        });
        let step = Limits::new().cpus("4-11".parse().unwrap()).memory(8 << 30).pids(64);
        let inside = step.within(&job);
        assert_eq!(inside.cpus, Some("4-7".parse().unwrap()));
        assert_eq!(inside.memory, Some(4 << 30));
        assert_eq!(inside.pids, Some(64));
        assert_eq!(inside.swap, Swap::Off);
        assert_eq!(inside.denied_devices.len(), 1);
        let unset = Limits::new().within(&job);
        assert_eq!(unset.cpus, job.cpus);
    }
}
