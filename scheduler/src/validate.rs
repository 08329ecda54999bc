//! Submission checks: whether a request can ever run on this cluster (whatever finishes,
//! whatever comes back up), and if not, a [`Rejection`] naming the problem and the fix.

use std::cmp::Reverse;
use std::collections::HashSet;

use crate::avail::Avail;
use crate::cluster::{ClusterState, Node};
use crate::gang::{Candidate, Constraints, JobShape, select_nodes};
use crate::request::{JobRequest, MemoryRequest};
use crate::types::{Bytes, format_duration};

pub use crate::rejection::Rejection;

/// Checks a request against the cluster at submission: a request that can never run (whatever
/// finishes, whatever comes back up) is rejected with the reason and the fix.
pub fn validate(cluster: &ClusterState, request: &JobRequest) -> Result<(), Rejection> {
    check(cluster, request, &constraints(cluster, request))
}

/// The nodes `request` excludes and requires. The nodes it lost in earlier attempts are avoided
/// only while the job can still run without them: once every node it could use has failed it
/// once (a stall of the whole cluster), avoiding them would leave it pending forever, so it may
/// use them again.
pub(crate) fn constraints(cluster: &ClusterState, request: &JobRequest) -> Constraints {
    let avoiding = Constraints::with(cluster, request, true);
    if request.excluded_after_failure.is_empty() || check(cluster, request, &avoiding).is_ok() {
        avoiding
    } else {
        Constraints::with(cluster, request, false)
    }
}

/// [`validate`] with the nodes to avoid and to use already looked up.
fn check(
    cluster: &ClusterState,
    request: &JobRequest,
    constraints: &Constraints,
) -> Result<(), Rejection> {
    request.check_shape()?;
    let partition = cluster.resolve_partition(request.partition.as_deref())?;
    if let (Some(asked), Some(max)) = (request.time_limit, partition.max_time)
        && asked > max
    {
        return Err(Rejection::TimeOverPartitionMax {
            requested: format_duration(asked),
            partition: partition.name.clone(),
            max: format_duration(max),
        });
    }
    let unknown: Vec<&str> = request
        .nodelist
        .iter()
        .filter(|n| cluster.index_of(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Rejection::UnknownNodes { names: unknown.join(", ") });
    }
    let outside: Vec<&str> = request
        .nodelist
        .iter()
        .filter(|n| cluster.index_of(n).is_some_and(|i| !partition.nodes.contains(&i)))
        .map(String::as_str)
        .collect();
    if !outside.is_empty() {
        return Err(Rejection::NodesOutsidePartition {
            names: outside.join(", "),
            partition: partition.name.clone(),
        });
    }
    let excluded: Vec<&str> = request
        .nodelist
        .iter()
        .filter(|n| request.exclude.contains(n) || request.excluded_after_failure.contains(n))
        .map(String::as_str)
        .collect();
    if !excluded.is_empty() {
        return Err(Rejection::NodelistExcluded { names: excluded.join(", ") });
    }
    let required: HashSet<&str> = request.nodelist.iter().map(String::as_str).collect();
    if required.len() > request.max_nodes() as usize {
        return Err(Rejection::NodelistOverMax {
            listed: required.len(),
            max_nodes: request.max_nodes(),
        });
    }

    let eligible: Vec<&Node> = partition
        .nodes
        .iter()
        .filter(|&&i| !constraints.excluded.contains(&i))
        .filter_map(|&i| cluster.nodes.get(i))
        .collect();
    let partition_name = || partition.name.clone();
    if eligible.len() < request.min_nodes as usize {
        return Err(Rejection::TooManyNodes {
            requested: request.min_nodes,
            partition: partition_name(),
            has: eligible.len(),
            excluded: if eligible.len() < partition.nodes.len() {
                " (after --exclude)"
            } else {
                ""
            },
        });
    }
    let largest_units = eligible.iter().map(|n| n.total_units).max().unwrap_or(0);
    if request.cpus_per_task > largest_units {
        return Err(Rejection::TaskTooBig {
            cpus_per_task: request.cpus_per_task,
            partition: partition_name(),
            largest: largest_units,
        });
    }
    if let Some(t) = request.gpu_type.as_ref().filter(|_| request.gpus_per_task > 0)
        && !eligible.iter().any(|n| n.gpu_type_slot(t).is_some())
    {
        let mut types: Vec<String> = eligible
            .iter()
            .flat_map(|n| {
                let usable = n.gpu_types().iter().take(crate::cluster::GPU_TYPE_SLOTS);
                usable.map(|(known, _)| known.to_string())
            })
            .collect();
        types.sort();
        types.dedup();
        return Err(Rejection::UnknownGpuType {
            gpu_type: t.to_string(),
            partition: partition_name(),
            types: if types.is_empty() { "none".to_owned() } else { types.join(", ") },
        });
    }
    let gpus_of = |n: &Node| match &request.gpu_type {
        None => n.gpu_count(),
        Some(t) => n.gpus_of_type(t).len() as u32,
    };
    let largest_gpus = eligible.iter().map(|n| gpus_of(n)).max().unwrap_or(0);
    if request.gpus_per_task > largest_gpus {
        return Err(Rejection::TooManyGpus {
            per_task: request.gpus_per_task,
            partition: partition_name(),
            largest: largest_gpus,
        });
    }
    let largest_memory = eligible.iter().map(|n| n.total_memory()).max().unwrap_or_default();
    let one_node_need = match request.memory {
        Some(MemoryRequest::PerNode(m)) => m,
        Some(MemoryRequest::PerCpu(m)) => {
            let cpus = eligible.iter().map(|n| n.cpus_per_unit).min().unwrap_or(1);
            m.saturating_mul(u64::from(request.cpus_per_task) * u64::from(cpus))
        }
        None => Bytes::ZERO,
    };
    if one_node_need > largest_memory {
        return Err(Rejection::MemoryTooBig {
            need: one_node_need.to_string(),
            partition: partition_name(),
            largest: largest_memory.to_string(),
        });
    }

    // The whole shape on the empty partition, down nodes included: they may come back.
    let shape = JobShape::of(request);
    let candidates: Vec<Candidate> = partition
        .nodes
        .iter()
        .filter(|&&i| !constraints.excluded.contains(&i))
        .filter_map(|&i| {
            let node = cluster.nodes.get(i)?;
            let cap = shape.capacity(node, &Avail::whole(node), request.exclusive);
            Some(Candidate { node: i, cap, partial: false })
        })
        .collect();
    let required = constraints.required_positions(&candidates);
    if let Some(node) = required.iter().flatten().map(|&p| candidates[p]).find(|c| c.cap == 0) {
        let node = &cluster.nodes[node.node];
        return Err(Rejection::NamedNodeTooSmall {
            node: node.name.clone(),
            lacks: lacks(node, request, gpus_of(node), one_node_need),
        });
    }
    if select_nodes(&candidates, &required, &shape).is_none() {
        let capacity: u64;
        let within;
        let mut caps: Vec<u64> = candidates.iter().map(|c| u64::from(c.cap)).collect();
        caps.sort_unstable_by_key(|&c| Reverse(c));
        if caps.len() > shape.max_nodes as usize {
            capacity = caps.iter().take(shape.max_nodes as usize).sum();
            within = format!(" on {} nodes", shape.max_nodes);
        } else {
            capacity = caps.iter().sum();
            within = String::new();
        }
        let nodes = if shape.max_nodes == shape.min_nodes {
            shape.min_nodes.to_string()
        } else {
            format!("{}-{}", shape.min_nodes, shape.max_nodes)
        };
        return Err(Rejection::NeverFits {
            ntasks: shape.ntasks,
            cpus_per_task: shape.cpus_per_task,
            nodes,
            partition: partition_name(),
            capacity,
            within,
        });
    }
    Ok(())
}

/// What keeps an idle `node` from holding one task of `request`, in words.
fn lacks(node: &Node, request: &JobRequest, gpus: u32, memory: Bytes) -> String {
    let cores = Avail::whole(node).units();
    if cores < request.cpus_per_task {
        format!("it has {cores} cores, a task needs {} (--cpus-per-task)", request.cpus_per_task)
    } else if gpus < request.gpus_per_task {
        let of_type =
            request.gpu_type.as_ref().map(|t| format!(" of type '{t}'")).unwrap_or_default();
        format!("it has {gpus} GPUs{of_type}, a task needs {}", request.gpus_per_task)
    } else if memory > node.total_memory() {
        format!("it has {} of memory, the job needs {memory} on each node", node.total_memory())
    } else {
        "it has too few cores, GPUs or memory for one task".to_owned()
    }
}
