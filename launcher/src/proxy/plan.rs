//! The plan of a multi-node job: where it runs ([`ClusterPlan`]), what each node runs
//! ([`node_jobs`]) and the tree of proxies that starts them ([`proxy_tree`]): the launcher
//! starts the top, each proxy the nodes below it (pure).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use super::protocol::{BootstrapConfig, NodeJob, Subtree};
use crate::binding::BindingOptions;
use crate::job::JobSpec;
use crate::nodes::{Node, hostlist};
use crate::pmi::mapping::process_mapping;
use crate::rank_env;

/// Where and how a multi-node job runs.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// The nodes used, in node-id order.
    pub nodes: Vec<Node>,
    /// The node of every rank.
    pub node_of_rank: Vec<u32>,
    pub bootstrap: BootstrapConfig,
    /// The `gangway` binary on the nodes.
    pub proxy_path: String,
    /// How many proxies each proxy (and the launcher) starts.
    pub tree_width: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub binding: BindingOptions,
}

/// Every node's share of the job, by node id. `here` is the launcher's working directory:
/// remote ranks start where the command was typed (as with mpiexec and srun), not in the
/// login's home directory, and a relative program path is taken from there too.
pub fn node_jobs(
    spec: &JobSpec,
    plan: &ClusterPlan,
    launcher_env: impl IntoIterator<Item = (OsString, OsString)>,
    here: Option<PathBuf>,
) -> Vec<NodeJob> {
    let n = spec.ntasks;
    let nnodes = plan.nodes.len();
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    let nodelist = hostlist::compress(&names).unwrap_or_else(|_| names.join(","));
    let base_env = rank_env::base_environment(&spec.export, launcher_env);
    let env: Vec<(Vec<u8>, Vec<u8>)> =
        base_env.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
    let mapping = process_mapping(&plan.node_of_rank);
    let cwd = spec.cwd.clone().or(here.clone());
    let program = match (&here, spec.program.is_relative()) {
        (Some(dir), true) => dir.join(&spec.program),
        _ => spec.program.clone(),
    };
    (0..nnodes)
        .map(|node| NodeJob {
            node_id: node as u32,
            nnodes: nnodes as u32,
            nodelist: nodelist.clone(),
            job_id: spec.job_id.clone(),
            size: n,
            ranks: (0..n).filter(|r| plan.node_of_rank[*r as usize] == node as u32).collect(),
            program: program.as_os_str().as_bytes().to_vec(),
            argv0: spec.argv0.as_bytes().to_vec(),
            args: spec.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: cwd.as_ref().map(|c| c.as_os_str().as_bytes().to_vec()),
            env: env.clone(),
            label: spec.label,
            input: spec.input,
            kvsname: format!("kvs_{}_0", spec.job_id),
            process_mapping: mapping.clone(),
            pmi_mode: spec.pmi_mode,
            mpi: spec.mpi,
            node_names: names.iter().map(|n| n.to_string()).collect(),
            node_of_rank: plan.node_of_rank.clone(),
            binding: plan.binding.clone(),
            bootstrap: plan.bootstrap.clone(),
            proxy_path: plan.proxy_path.clone(),
            ping_interval_ms: plan.ping_interval.as_millis() as u64,
            ping_timeout_ms: plan.ping_timeout.as_millis() as u64,
        })
        .collect()
}

/// The subtrees the launcher starts itself, `width` at most, each carrying the nodes its
/// proxy starts in turn.
pub fn proxy_tree(jobs: &[NodeJob], nodes: &[Node], width: usize) -> Vec<Subtree> {
    let nnodes = jobs.len();
    let mut children = vec![Vec::new(); nnodes];
    let mut top = Vec::new();
    for (parent, kids) in tree_shape(nnodes, width) {
        if parent == nnodes {
            top = kids;
        } else {
            children[parent] = kids;
        }
    }
    top.iter().map(|&t| subtree_of(t, &children, jobs, nodes)).collect()
}

/// Arranges node ids 0..n into a tree: the launcher starts the first `width`, each of those
/// starts up to `width` more, and so on (breadth first, so the depth is log_width(n)).
pub fn tree_shape(n: usize, width: usize) -> Vec<(usize, Vec<usize>)> {
    let width = width.max(1);
    // children[i] for node i, and the launcher's own list at the end.
    let mut children = vec![Vec::new(); n + 1];
    for node in 0..n {
        let parent = if node < width { n } else { (node - width) / width };
        children[parent].push(node);
    }
    let top = children.pop().unwrap_or_default();
    let mut shape = vec![(n, top)];
    shape.extend(children.into_iter().enumerate());
    shape
}

fn subtree_of(node: usize, children: &[Vec<usize>], jobs: &[NodeJob], nodes: &[Node]) -> Subtree {
    Subtree {
        host: nodes[node].name.clone(),
        user: nodes[node].user.clone(),
        port: nodes[node].port,
        job: jobs[node].clone(),
        below: children[node].iter().map(|&c| subtree_of(c, children, jobs, nodes)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shapes() {
        // Flat when the width covers every node.
        assert_eq!(tree_shape(3, 8)[0], (3, vec![0, 1, 2]));
        // Width 2 over 7 nodes: the launcher starts 0 and 1; 0 starts 2, 3; 1 starts 4, 5; 2 starts 6.
        let shape = tree_shape(7, 2);
        assert_eq!(shape[0], (7, vec![0, 1]));
        assert_eq!(shape[1], (0, vec![2, 3]));
        assert_eq!(shape[2], (1, vec![4, 5]));
        assert_eq!(shape[3], (2, vec![6]));
        // Every node has exactly one parent.
        let mut seen: Vec<usize> = tree_shape(100, 3).into_iter().flat_map(|(_, k)| k).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
