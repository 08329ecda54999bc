//! `ClusterBuilder`: clusters of identical nodes in one line, for tests, benches and the
//! simulator.

use std::sync::Arc;

use gangway_topology::Shape;

use crate::cluster::{ClusterError, ClusterState, PartitionLimits};

/// Builds clusters of identical nodes for tests and benches:
/// `ClusterBuilder::new().nodes(4).shape(2, 8, 2).partition("batch", PartitionLimits::new())`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    count: usize,
    shape: Shape,
    gpu_models: Vec<String>,
    prefix: String,
    partitions: Vec<(String, Option<std::ops::Range<usize>>, PartitionLimits)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterBuilder {
    /// One node of 2 sockets × 8 cores × 2 threads, named `node1`, no partitions yet (one
    /// called `batch` with every node is made if none is given).
    pub fn new() -> Self {
        Self {
            count: 1,
            shape: Shape::new(2, 8, 2),
            gpu_models: Vec::new(),
            prefix: "node".to_owned(),
            partitions: Vec::new(),
        }
    }

    /// Number of nodes.
    pub fn nodes(mut self, count: usize) -> Self {
        self.count = count;
        self
    }

    /// Every node: `packages` × `cores` per package × `threads` per core.
    pub fn shape(mut self, packages: u32, cores: u32, threads: u32) -> Self {
        let keep = self.shape.clone();
        self.shape = Shape { packages, cores_per_numa: cores, pus_per_core: threads, ..keep };
        self
    }

    /// NUMA nodes per package (cores are split among them).
    pub fn numa_per_package(mut self, numa: u32) -> Self {
        let cores = self.shape.cores_per_numa * self.shape.numa_per_package;
        self.shape.numa_per_package = numa.max(1);
        self.shape.cores_per_numa = cores / numa.max(1);
        self
    }

    /// GPUs per package.
    pub fn gpus_per_package(mut self, gpus: u32) -> Self {
        self.shape.gpus_per_package = gpus;
        self
    }

    /// The GPUs' models, in turn: GPU `i` of every node is `models[i % models.len()]`, so
    /// `["Tesla K40m", "NVIDIA A100-SXM4-40GB"]` makes nodes with both types (`k40m`, `a100`).
    pub fn gpu_models(mut self, models: &[&str]) -> Self {
        self.gpu_models = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// Memory per NUMA node, bytes.
    pub fn memory_per_numa(mut self, bytes: u64) -> Self {
        self.shape.memory_per_numa = bytes;
        self
    }

    /// Node names: `prefix1`, `prefix2`, ...
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// A partition of every node.
    pub fn partition(mut self, name: &str, limits: PartitionLimits) -> Self {
        self.partitions.push((name.to_owned(), None, limits));
        self
    }

    /// A partition of the nodes at these positions (0-based).
    pub fn partition_of(
        mut self,
        name: &str,
        nodes: std::ops::Range<usize>,
        limits: PartitionLimits,
    ) -> Self {
        self.partitions.push((name.to_owned(), Some(nodes), limits));
        self
    }

    /// The cluster: every node shares one model.
    pub fn build(self) -> Result<ClusterState, ClusterError> {
        let mut topology = self.shape.build()?;
        for (i, gpu) in topology.gpus.iter_mut().enumerate() {
            if let Some(m) = self.gpu_models.get(i % self.gpu_models.len().max(1)) {
                gpu.model = Some(m.clone());
            }
        }
        let topology = Arc::new(topology);
        let mut state = ClusterState::new();
        let names: Vec<String> = (1..=self.count).map(|i| format!("{}{i}", self.prefix)).collect();
        for name in &names {
            state.add_node(name.clone(), Arc::clone(&topology))?;
        }
        let mut partitions = self.partitions;
        if partitions.is_empty() {
            partitions.push(("batch".to_owned(), None, PartitionLimits::new()));
        }
        for (name, range, limits) in partitions {
            let members: Vec<&str> = match range {
                Some(r) => names.get(r).unwrap_or_default().iter().map(String::as_str).collect(),
                None => names.iter().map(String::as_str).collect(),
            };
            state.add_partition(name, &members, limits)?;
        }
        Ok(state)
    }
}
