//! Building grants: topology placement over each chosen node's free CPUs and GPUs, with a cache
//! for the identical nodes of big gangs. GPUs come from placement too, so they follow the one
//! GPU-affinity rule ([`gangway_topology::GpuChooser`]) the launcher binds with.

use std::sync::Arc;

use gangway_topology::{
    AllocatedNode, CpuBind, CpuSet, Distribution, NodeDistribution, PlacementRequest,
    SocketDistribution, Topology, place,
};

use crate::cluster::{ClusterState, Node};
use crate::grant::{NodeGrant, TaskGrant};
use crate::request::{JobRequest, MemoryRequest};
use crate::types::Bytes;

/// The exact CPUs, GPUs and memory free on a node: what placement works on.
#[derive(Debug, Clone)]
pub(crate) struct Free {
    cpus: CpuSet,
    gpus: CpuSet,
    memory: Bytes,
}

impl Free {
    /// The whole node.
    fn whole(node: &Node) -> Self {
        Free { cpus: node.usable_cpus.clone(), gpus: node.all_gpus(), memory: node.total_memory() }
    }

    /// What is free now.
    fn now(node: &Node) -> Self {
        Free {
            cpus: node.usable_cpus.difference(&node.used_cpus),
            gpus: node.all_gpus().difference(&node.used_gpus),
            memory: node.total_memory().saturating_sub(node.used_memory),
        }
    }
}

/// Places tasks on one node's free CPUs and GPUs; remembers the last result because identical
/// nodes with identical free resources come back to back in big gangs.
#[derive(Debug, Default)]
pub(crate) struct PlacementCache {
    key: Option<PlacementKey>,
    tasks: Vec<TaskGrant>,
}

/// What a cached placement depends on.
#[derive(Debug, PartialEq)]
struct PlacementKey {
    topology: *const Topology,
    cpus: CpuSet,
    gpus: CpuSet,
    count: u32,
    cpus_per_task: u32,
    gpus_per_task: u32,
}

impl PlacementCache {
    /// The tasks' CPUs and GPUs, or `None` when they do not fit without sharing.
    pub(crate) fn place(
        &mut self,
        topology: &Arc<Topology>,
        free: &Free,
        count: u32,
        request: &JobRequest,
    ) -> Option<&[TaskGrant]> {
        let key = PlacementKey {
            topology: Arc::as_ptr(topology),
            cpus: free.cpus.clone(),
            gpus: if request.gpus_per_task > 0 { free.gpus.clone() } else { CpuSet::new() },
            count,
            cpus_per_task: request.cpus_per_task,
            gpus_per_task: request.gpus_per_task,
        };
        if self.key.as_ref() != Some(&key) {
            let placement_request = PlacementRequest {
                ntasks: count,
                cpus_per_task: request.cpus_per_task,
                // Block inside the node fills one socket (then NUMA node) before the next,
                // leaving whole domains free for later jobs.
                distribution: Distribution {
                    node: NodeDistribution::Block,
                    socket: SocketDistribution::Block,
                },
                cpu_bind: CpuBind::Cores,
                gpus_per_task: request.gpus_per_task,
                ..PlacementRequest::default()
            };
            let spec = [AllocatedNode {
                topology: topology.as_ref(),
                cpus: Some(key.cpus.clone()),
                gpus: Some(key.gpus.clone()),
            }];
            let placement = place(&placement_request, &spec).ok()?;
            if placement.oversubscribed {
                return None;
            }
            self.tasks = placement
                .ranks
                .iter()
                .map(|r| TaskGrant {
                    cpus: r.binding.cpus.clone(),
                    gpus: r.binding.gpus.iter().copied().collect(),
                })
                .collect();
            self.key = Some(key);
        }
        Some(&self.tasks)
    }
}

/// Builds the grants for the chosen nodes (indexes into the cluster's nodes, with task
/// counts) from what is free on them now; `None` if placement disagrees with the capacity
/// estimate (then the job waits, and nothing is changed).
pub(crate) fn build_grants(
    state: &ClusterState,
    chosen: &[(usize, u32)],
    request: &JobRequest,
    cache: &mut PlacementCache,
) -> Option<Vec<NodeGrant>> {
    let mut grants = Vec::with_capacity(chosen.len());
    for &(index, count) in chosen {
        let node = state.nodes.get(index)?;
        let mut free = if request.exclusive { Free::whole(node) } else { Free::now(node) };
        if let Some(t) = &request.gpu_type {
            // Only GPUs of the type asked for; the affinity rule chooses among them.
            free.gpus = free.gpus.intersection(&node.gpus_of_type(t));
        }
        let tasks = cache.place(&node.topology, &free, count, request)?.to_vec();
        if tasks.iter().any(|t| t.gpus.len() < request.gpus_per_task as usize) {
            return None;
        }
        let mut cpus = CpuSet::new();
        let mut gpus = CpuSet::new();
        for t in &tasks {
            cpus |= &t.cpus;
            gpus |= &t.gpus;
        }
        let mut memory = match request.memory {
            Some(MemoryRequest::PerNode(m)) => m,
            Some(MemoryRequest::PerCpu(m)) => m.saturating_mul(cpus.len() as u64),
            None => Bytes::ZERO,
        };
        if memory > free.memory {
            return None;
        }
        if request.exclusive {
            cpus = node.usable_cpus.clone();
            memory = node.total_memory();
            gpus = node.all_gpus();
        }
        grants.push(NodeGrant {
            node: node.name.clone(),
            node_index: index,
            cpus,
            memory,
            gpus,
            exclusive: request.exclusive,
            tasks,
        });
    }
    Some(grants)
}
