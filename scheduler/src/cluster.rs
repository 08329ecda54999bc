//! The cluster as the scheduler sees it: nodes (hardware, health, what each job holds there),
//! partitions, and the two ways it changes — a started job's grants recorded, a job's
//! resources freed. Totals per node are kept up to date so a pass never recounts them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gangway_topology::{CpuSet, GpuType, Topology, TopologyError};

use crate::grant::JobStart;
use crate::rejection::Rejection;
use crate::types::{Bytes, JobId};

/// GPU types per node whose free counts are tracked (a node's first ones, in model order): a
/// typed request fits only a node with enough free GPUs of its type. More types on one node
/// are rare; a request for a fifth type finds no room there.
pub(crate) const GPU_TYPE_SLOTS: usize = 4;
/// A node's health, as the controller and administrators set it. Whether it runs jobs
/// ([`NodeState::Idle`], [`NodeState::Mixed`], [`NodeState::Allocated`]) follows from its
/// allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeHealth {
    /// Registered and answering: takes new work.
    #[default]
    Up,
    /// Taken out of service by an administrator (`gangway drain`); running jobs continue.
    Drained,
    /// Lost or never registered: takes no work.
    Down,
    /// Missed heartbeats: takes no new work until it answers again or is declared lost.
    Suspect,
}

/// A node's state as `gangway nodes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Up, nothing allocated.
    Idle,
    /// Up, some CPUs allocated.
    Mixed,
    /// Up, every CPU allocated (or held by an exclusive job).
    Allocated,
    /// Drained by an administrator.
    Drained,
    /// Down.
    Down,
    /// Suspect (missed heartbeats).
    Suspect,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Idle => "idle",
            NodeState::Mixed => "mixed",
            NodeState::Allocated => "allocated",
            NodeState::Drained => "drained",
            NodeState::Down => "down",
            NodeState::Suspect => "suspect",
        })
    }
}

/// What one job holds on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The job.
    pub job: JobId,
    /// CPUs (OS indexes).
    pub cpus: CpuSet,
    /// Memory.
    pub memory: Bytes,
    /// GPUs (indexes as in [`gangway_topology::Gpu::index`]).
    pub gpus: CpuSet,
    /// Whether the job holds the node alone.
    pub exclusive: bool,
}

/// One node: its hardware, health and allocations, with totals kept up to date so a
/// scheduling pass over 10,000 nodes does not recount them.
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) topology: Arc<Topology>,
    pub(crate) health: NodeHealth,
    reason: Option<String>,
    partitions: Vec<usize>,
    pub(crate) allocations: Vec<Allocation>,
    /// CPUs jobs may use: allowed and online (what placement considers available).
    pub(crate) usable_cpus: CpuSet,
    /// Cores with a usable CPU: placement's units.
    pub(crate) total_units: u32,
    /// Usable CPUs per unit (rounded up), for memory-per-CPU estimates.
    pub(crate) cpus_per_unit: u32,
    pub(crate) used_cpus: CpuSet,
    pub(crate) used_memory: Bytes,
    pub(crate) used_gpus: CpuSet,
    /// The GPUs of each type, in order of first appearance (GPUs of no known type in none).
    gpu_types: Vec<(GpuType, CpuSet)>,
    /// Units with no usable CPU allocated.
    pub(crate) free_units: u32,
    /// Free units per NUMA node (in [`Topology::numa_nodes`] order).
    numa_free_units: Vec<u32>,
    pub(crate) exclusive: bool,
}

impl Node {
    fn new(name: String, topology: Arc<Topology>) -> Self {
        let mut usable_cpus = topology.allowed_cpuset.intersection(&topology.online_cpuset);
        if usable_cpus.is_empty() {
            // Hand-built models may leave the online set empty (placement does the same).
            usable_cpus = topology.allowed_cpuset.clone();
        }
        let total_units = count_units(&topology, &usable_cpus);
        let cpus_per_unit = (usable_cpus.len() as u32).div_ceil(total_units.max(1)).max(1);
        let mut gpu_types: Vec<(GpuType, CpuSet)> = Vec::new();
        for g in &topology.gpus {
            let Some(t) = g.gpu_type() else { continue };
            match gpu_types.iter_mut().find(|(known, _)| *known == t) {
                Some((_, set)) => set.insert(g.index),
                None => gpu_types.push((t, std::iter::once(g.index).collect())),
            }
        }
        Self {
            name,
            topology,
            health: NodeHealth::Up,
            reason: None,
            partitions: Vec::new(),
            allocations: Vec::new(),
            usable_cpus,
            total_units,
            cpus_per_unit,
            used_cpus: CpuSet::new(),
            used_memory: Bytes::ZERO,
            used_gpus: CpuSet::new(),
            gpu_types,
            free_units: total_units,
            numa_free_units: Vec::new(),
            exclusive: false,
        }
        .with_numa_counts()
    }

    fn with_numa_counts(mut self) -> Self {
        let free = self.usable_cpus.difference(&self.used_cpus);
        self.numa_free_units = numa_units(&self.topology, &free);
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's hardware model (shared between identical nodes).
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// Health as set by the controller or an administrator.
    pub fn health(&self) -> NodeHealth {
        self.health
    }

    /// Why the node is drained, down or suspect.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The state `gangway nodes` shows.
    pub fn state(&self) -> NodeState {
        match self.health {
            NodeHealth::Drained => NodeState::Drained,
            NodeHealth::Down => NodeState::Down,
            NodeHealth::Suspect => NodeState::Suspect,
            NodeHealth::Up if self.allocations.is_empty() => NodeState::Idle,
            NodeHealth::Up if self.exclusive || self.free_units == 0 => NodeState::Allocated,
            NodeHealth::Up => NodeState::Mixed,
        }
    }

    /// What each job holds here.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// CPUs jobs may use (allowed and online).
    pub fn usable_cpus(&self) -> &CpuSet {
        &self.usable_cpus
    }

    /// CPUs allocated to jobs.
    pub fn allocated_cpus(&self) -> &CpuSet {
        &self.used_cpus
    }

    /// Memory allocated to jobs.
    pub fn allocated_memory(&self) -> Bytes {
        self.used_memory
    }

    /// GPUs allocated to jobs.
    pub fn allocated_gpus(&self) -> &CpuSet {
        &self.used_gpus
    }

    /// Memory of the node.
    pub fn total_memory(&self) -> Bytes {
        Bytes(self.topology.total_memory)
    }

    /// Placement units (cores) with no allocated CPU.
    pub fn free_units(&self) -> u32 {
        self.free_units
    }

    /// Free placement units per NUMA node, in the model's NUMA order: what `gangway nodes`
    /// shows, and what tells whether a task can stay inside one NUMA node.
    pub fn free_units_per_numa(&self) -> &[u32] {
        &self.numa_free_units
    }

    /// Placement units (cores) jobs may use.
    pub fn total_units(&self) -> u32 {
        self.total_units
    }

    /// Indexes (into [`ClusterState::partitions`]) of the partitions holding the node.
    pub fn partitions(&self) -> &[usize] {
        &self.partitions
    }

    pub(crate) fn gpu_count(&self) -> u32 {
        self.topology.gpus.len() as u32
    }

    /// The node's GPU types with their GPUs (indexes as in [`gangway_topology::Gpu::index`]),
    /// in the order the model first lists them: what `Gres=gpu:k40m:1,gpu:r9:1` shows.
    pub fn gpu_types(&self) -> &[(GpuType, CpuSet)] {
        &self.gpu_types
    }

    /// The GPUs of type `t` (empty when the node has none).
    pub(crate) fn gpus_of_type(&self, t: &GpuType) -> CpuSet {
        self.gpu_types
            .iter()
            .find(|(known, _)| known == t)
            .map_or_else(CpuSet::new, |g| g.1.clone())
    }

    /// Position of type `t` among the node's types, if it is one the counts track
    /// ([`GPU_TYPE_SLOTS`]).
    pub(crate) fn gpu_type_slot(&self, t: &GpuType) -> Option<usize> {
        self.gpu_types.iter().take(GPU_TYPE_SLOTS).position(|(known, _)| known == t)
    }

    /// How many of `gpus` are of each tracked type.
    pub(crate) fn typed_counts(&self, gpus: &CpuSet) -> [u32; GPU_TYPE_SLOTS] {
        let mut counts = [0; GPU_TYPE_SLOTS];
        for (count, (_, of_type)) in counts.iter_mut().zip(&self.gpu_types) {
            *count = of_type.intersection(gpus).len() as u32;
        }
        counts
    }

    pub(crate) fn all_gpus(&self) -> CpuSet {
        self.topology.gpus.iter().map(|g| g.index).collect()
    }

    /// Recomputes the free counts after the used sets changed.
    fn refresh_free(&mut self) {
        let free = self.usable_cpus.difference(&self.used_cpus);
        self.free_units = count_units(&self.topology, &free);
        self.numa_free_units = numa_units(&self.topology, &free);
    }

    /// Recomputes the totals after allocations changed.
    fn refresh_totals(&mut self) {
        let mut cpus = CpuSet::new();
        let mut gpus = CpuSet::new();
        let mut memory = Bytes::ZERO;
        for a in &self.allocations {
            cpus |= &a.cpus;
            gpus |= &a.gpus;
            memory = memory.saturating_add(a.memory);
        }
        let free = self.usable_cpus.difference(&cpus);
        self.free_units = count_units(&self.topology, &free);
        self.numa_free_units = numa_units(&self.topology, &free);
        self.used_cpus = cpus;
        self.used_gpus = gpus;
        self.used_memory = memory;
        self.exclusive = self.allocations.iter().any(|a| a.exclusive);
    }
}

/// Cores holding at least one of `cpus`: how many placement units the CPUs make.
pub(crate) fn count_units(topology: &Topology, cpus: &CpuSet) -> u32 {
    topology.cores.iter().filter(|c| c.cpuset.intersects(cpus)).count() as u32
}

/// [`count_units`] per NUMA node.
fn numa_units(topology: &Topology, cpus: &CpuSet) -> Vec<u32> {
    topology
        .numa_nodes
        .iter()
        .map(|n| {
            let cores = n.cores.iter().filter_map(|&c| topology.cores.get(c as usize));
            cores.filter(|c| c.cpuset.intersects(cpus)).count() as u32
        })
        .collect()
}

/// A partition: a named set of nodes with time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its name (`--partition`).
    pub name: String,
    /// Its nodes (indexes into [`ClusterState::nodes`]), in configuration order.
    pub nodes: Vec<usize>,
    /// Time limit of jobs that give none.
    pub default_time: Option<Duration>,
    /// Longest time limit a job may ask for.
    pub max_time: Option<Duration>,
    /// CPUs jobs may use on all its nodes: the denominator of a job's CPU share.
    pub cpus: u64,
    /// Memory of all its nodes.
    pub memory: Bytes,
    /// GPUs of all its nodes.
    pub gpus: u64,
}

/// Why the cluster's state could not be changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Two nodes with one name.
    #[error("node '{0}' is defined twice; give every node its own name")]
    DuplicateNode(String),
    /// Two partitions with one name.
    #[error("partition '{0}' is defined twice; give every partition its own name")]
    DuplicatePartition(String),
    /// A name that is no node.
    #[error("unknown node '{0}'")]
    UnknownNode(String),
    /// A grant for CPUs or GPUs another job holds.
    #[error("job {job} cannot take {what} {items} on node '{node}': job {holder} holds them")]
    AlreadyAllocated {
        /// The job being recorded.
        job: JobId,
        /// `CPUs` or `GPUs`.
        what: &'static str,
        /// The contested ones.
        items: String,
        /// The node.
        node: String,
        /// A job holding them.
        holder: JobId,
    },
    /// A job recorded twice on a node.
    #[error("job {job} already holds resources on node '{node}'")]
    JobAlreadyOnNode {
        /// The job.
        job: JobId,
        /// The node.
        node: String,
    },
    /// A shape that makes no model.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Everything the allocator knows: nodes, their allocations, partitions.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub(crate) nodes: Vec<Node>,
    node_index: HashMap<String, usize>,
    partitions: Vec<Partition>,
    partition_index: HashMap<String, usize>,
    default_partition: Option<usize>,
    /// Nodes each job holds something on: freeing a job visits its nodes, not all of them.
    job_nodes: crate::hash::FastMap<JobId, Vec<usize>>,
}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an `Up`, idle node; returns its index.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        topology: Arc<Topology>,
    ) -> Result<usize, ClusterError> {
        let name = name.into();
        if self.node_index.contains_key(&name) {
            return Err(ClusterError::DuplicateNode(name));
        }
        let index = self.nodes.len();
        self.node_index.insert(name.clone(), index);
        self.nodes.push(Node::new(name, topology));
        Ok(index)
    }

    /// Adds a partition of the named nodes; the first partition added with `is_default` (or
    /// else the first one) takes jobs that name none. Returns its index.
    pub fn add_partition(
        &mut self,
        name: impl Into<String>,
        node_names: &[&str],
        limits: PartitionLimits,
    ) -> Result<usize, ClusterError> {
        let name = name.into();
        if self.partition_index.contains_key(&name) {
            return Err(ClusterError::DuplicatePartition(name));
        }
        let mut nodes = Vec::with_capacity(node_names.len());
        for n in node_names {
            let i = self.index_of(n).ok_or_else(|| ClusterError::UnknownNode((*n).to_owned()))?;
            if !nodes.contains(&i) {
                nodes.push(i);
            }
        }
        let index = self.partitions.len();
        for &i in &nodes {
            if let Some(node) = self.nodes.get_mut(i) {
                node.partitions.push(index);
            }
        }
        if limits.is_default && self.default_partition.is_none() {
            self.default_partition = Some(index);
        }
        self.partition_index.insert(name.clone(), index);
        let members = nodes.iter().filter_map(|&i| self.nodes.get(i));
        let (mut cpus, mut memory, mut gpus) = (0u64, Bytes::ZERO, 0u64);
        for n in members {
            cpus += n.usable_cpus.len() as u64;
            memory += n.total_memory();
            gpus += u64::from(n.gpu_count());
        }
        self.partitions.push(Partition {
            name,
            nodes,
            default_time: limits.default_time,
            max_time: limits.max_time,
            cpus,
            memory,
            gpus,
        });
        Ok(index)
    }

    /// Sets a node's health and the reason shown beside it.
    pub fn set_health(
        &mut self,
        node: &str,
        health: NodeHealth,
        reason: Option<String>,
    ) -> Result<(), ClusterError> {
        let i = self.index_of(node).ok_or_else(|| ClusterError::UnknownNode(node.to_owned()))?;
        if let Some(n) = self.nodes.get_mut(i) {
            n.health = health;
            n.reason = reason;
        }
        Ok(())
    }

    /// Records a started job's grants; refuses (changing nothing) if any CPU or GPU is
    /// already held, so a CPU is never handed out twice.
    pub fn allocate(&mut self, start: &JobStart) -> Result<(), ClusterError> {
        for grant in &start.nodes {
            let node = self
                .nodes
                .get(grant.node_index)
                .filter(|n| n.name == grant.node)
                .ok_or_else(|| ClusterError::UnknownNode(grant.node.clone()))?;
            for a in &node.allocations {
                if a.job == start.job {
                    return Err(ClusterError::JobAlreadyOnNode {
                        job: start.job,
                        node: node.name.clone(),
                    });
                }
                let overlap = |what, mine: &CpuSet, theirs: &CpuSet| {
                    let both = mine.intersection(theirs);
                    (!both.is_empty()).then(|| ClusterError::AlreadyAllocated {
                        job: start.job,
                        what,
                        items: both.to_list_string(),
                        node: node.name.clone(),
                        holder: a.job,
                    })
                };
                if let Some(e) = overlap("CPUs", &grant.cpus, &a.cpus) {
                    return Err(e);
                }
                if let Some(e) = overlap("GPUs", &grant.gpus, &a.gpus) {
                    return Err(e);
                }
            }
        }
        let held = self.job_nodes.entry(start.job).or_default();
        for grant in &start.nodes {
            if let Some(node) = self.nodes.get_mut(grant.node_index) {
                // Grants never overlap (checked above), so the totals grow by this grant.
                node.used_cpus |= &grant.cpus;
                node.used_gpus |= &grant.gpus;
                node.used_memory += grant.memory;
                node.exclusive |= grant.exclusive;
                node.allocations.push(Allocation {
                    job: start.job,
                    cpus: grant.cpus.clone(),
                    memory: grant.memory,
                    gpus: grant.gpus.clone(),
                    exclusive: grant.exclusive,
                });
                node.refresh_free();
                if !held.contains(&grant.node_index) {
                    held.push(grant.node_index);
                }
            }
        }
        Ok(())
    }

    /// Frees everything a job holds; returns on how many nodes it held something.
    pub fn release(&mut self, job: JobId) -> usize {
        let mut released = 0;
        for i in self.job_nodes.remove(&job).unwrap_or_default() {
            let Some(node) = self.nodes.get_mut(i) else { continue };
            let before = node.allocations.len();
            node.allocations.retain(|a| a.job != job);
            if node.allocations.len() != before {
                released += 1;
                node.refresh_totals();
            }
        }
        released
    }

    /// Nodes (indexes) a job holds something on.
    pub fn nodes_of(&self, job: JobId) -> &[usize] {
        self.job_nodes.get(&job).map_or(&[], Vec::as_slice)
    }

    /// Every node, in configuration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index_of(name).and_then(|i| self.nodes.get(i))
    }

    /// Every partition, in configuration order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// A partition by name.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partition_index.get(name).and_then(|&i| self.partitions.get(i))
    }

    /// The partition of jobs that name none.
    pub fn default_partition(&self) -> Option<&Partition> {
        self.default_partition
            .or((!self.partitions.is_empty()).then_some(0))
            .and_then(|i| self.partitions.get(i))
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    pub(crate) fn resolve_partition(&self, name: Option<&str>) -> Result<&Partition, Rejection> {
        match name {
            Some(n) => self.partition(n).ok_or_else(|| Rejection::UnknownPartition {
                name: n.to_owned(),
                known: self.partition_names(),
            }),
            None => self.default_partition().ok_or(Rejection::NoPartitions),
        }
    }

    fn partition_names(&self) -> String {
        let names: Vec<&str> = self.partitions.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    }
}

/// A partition's time limits and whether it is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionLimits {
    /// Time limit of jobs that give none.
    pub default_time: Option<Duration>,
    /// Longest time limit a job may ask for.
    pub max_time: Option<Duration>,
    /// Whether jobs naming no partition go here.
    pub is_default: bool,
}

impl PartitionLimits {
    /// No limits, not the default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the default time limit.
    pub fn default_time(mut self, limit: Duration) -> Self {
        self.default_time = Some(limit);
        self
    }

    /// Sets the maximum time limit.
    pub fn max_time(mut self, limit: Duration) -> Self {
        self.max_time = Some(limit);
        self
    }

    /// Makes this the default partition.
    pub fn default_partition(mut self) -> Self {
        self.is_default = true;
        self
    }
}
