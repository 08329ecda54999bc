//! What to place, and on what: the [`PlacementRequest`] (the domain form of the placement
//! flags), the nodes ([`PlacementNode`], [`NodeSpec`]) and what one CPU of `--cpus-per-task`
//! is ([`CpuUnit`]).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cpuset::CpuSet;
use crate::model::Topology;
use crate::options::{CpuBind, Distribution, Hint, MemBind};

/// What to place: the domain form of `gangway run`'s placement flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// Number of ranks (`-n`/`--ntasks`).
    pub ntasks: u32,
    /// CPUs per rank (`-c`/`--cpus-per-task`); cores unless CPUs are threads (see [`Hint`]).
    pub cpus_per_task: u32,
    /// At most this many ranks per node (`--ntasks-per-node`); nodes fill in order.
    pub tasks_per_node: Option<u32>,
    /// At most this many ranks per socket (`--ntasks-per-socket`).
    pub tasks_per_socket: Option<u32>,
    /// `--distribution`.
    pub distribution: Distribution,
    /// `--cpu-bind`.
    pub cpu_bind: CpuBind,
    /// `--hint`.
    pub hint: Hint,
    /// `--mem-bind`.
    pub mem_bind: MemBind,
    /// `--gpus-per-task` (0: no GPUs placed).
    pub gpus_per_task: u32,
    /// `--oversubscribe`: allow more ranks than CPUs (binding is then relaxed).
    pub oversubscribe: bool,
}

impl Default for PlacementRequest {
    fn default() -> Self {
        Self {
            ntasks: 1,
            cpus_per_task: 1,
            tasks_per_node: None,
            tasks_per_socket: None,
            distribution: Distribution::default(),
            cpu_bind: CpuBind::default(),
            hint: Hint::default(),
            mem_bind: MemBind::default(),
            gpus_per_task: 0,
            oversubscribe: false,
        }
    }
}

/// A node ranks can be placed on: its model and, optionally, the CPUs of it this job may use
/// (an allocation); the model's allowed set applies in any case.
pub trait PlacementNode {
    /// The node's hardware.
    fn topology(&self) -> &Topology;
    /// CPUs (OS indexes) this job may use, if narrower than the allowed set.
    fn available(&self) -> Option<&CpuSet> {
        None
    }
    /// GPUs (indexes as in [`crate::Gpu::index`]) this job may use, if not all of them.
    fn available_gpus(&self) -> Option<&CpuSet> {
        None
    }
}

impl PlacementNode for Topology {
    fn topology(&self) -> &Topology {
        self
    }
}

impl<T: PlacementNode + ?Sized> PlacementNode for &T {
    fn topology(&self) -> &Topology {
        (**self).topology()
    }
    fn available(&self) -> Option<&CpuSet> {
        (**self).available()
    }
    fn available_gpus(&self) -> Option<&CpuSet> {
        (**self).available_gpus()
    }
}

impl PlacementNode for Arc<Topology> {
    fn topology(&self) -> &Topology {
        self
    }
}

/// A node model plus the CPUs allocated to the job on it.
#[derive(Debug, Clone)]
pub struct NodeSpec<'a> {
    /// The node's hardware (shared by reference: 10,000 identical nodes need one model).
    pub topology: &'a Topology,
    /// CPUs (OS indexes) the job may use; `None` means all allowed CPUs.
    pub available: Option<CpuSet>,
}

impl PlacementNode for NodeSpec<'_> {
    fn topology(&self) -> &Topology {
        self.topology
    }
    fn available(&self) -> Option<&CpuSet> {
        self.available.as_ref()
    }
}

/// A node model plus the CPUs and GPUs a job holds on it (a scheduler's grant): placement
/// binds inside both, so the GPUs a task is bound to are among the GPUs granted.
#[derive(Debug, Clone)]
pub struct AllocatedNode<'a> {
    /// The node's hardware.
    pub topology: &'a Topology,
    /// CPUs (OS indexes) the job may use; `None` means all allowed CPUs.
    pub cpus: Option<CpuSet>,
    /// GPUs (indexes as in [`crate::Gpu::index`]) the job may use; `None` means all of them.
    pub gpus: Option<CpuSet>,
}

impl PlacementNode for AllocatedNode<'_> {
    fn topology(&self) -> &Topology {
        self.topology
    }
    fn available(&self) -> Option<&CpuSet> {
        self.cpus.as_ref()
    }
    fn available_gpus(&self) -> Option<&CpuSet> {
        self.gpus.as_ref()
    }
}

/// What one unit of `--cpus-per-task` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuUnit {
    /// A whole core (all its available hardware threads, or one with `--hint=nomultithread`).
    Core,
    /// One hardware thread.
    Thread,
}

impl fmt::Display for CpuUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuUnit::Core => "cores",
            CpuUnit::Thread => "PUs",
        })
    }
}

pub(super) fn cpu_unit(req: &PlacementRequest) -> CpuUnit {
    if req.cpu_bind == CpuBind::Threads || req.hint == Hint::Multithread {
        CpuUnit::Thread
    } else {
        CpuUnit::Core
    }
}
