//! Where a job's nodes come from: the [`Node`] model, the [`NodeSource`] trait, one source per
//! origin (`--hosts`, `--hostfile`, a Slurm or PBS allocation, the local machine) and
//! [`select_source`], which picks among them the way users of `mpiexec` and `srun` expect.
//!
//! Everything here is pure except [`NodeSource::nodes`] of the two file-backed sources, which
//! read the one file they name. The environment is passed in as a map, never read from the
//! process, so selection is tested like any other function.
//!
//! Host specs follow one rule everywhere (details on [`parse_hosts`]): a bare `host:N` means N
//! slots, as in MPICH and Open MPI; a port is written in the URI form `ssh://[user@]host:port`
//! (or `port=N` on a hostfile line); `user@host` sets the login.

use std::collections::HashMap;
use std::path::PathBuf;

pub mod hostfile;
pub mod hostlist;
pub mod pbs;
pub mod slurm;

mod error;
mod node;
mod source;
mod spec;
mod variables;

pub use error::NodeSourceError;
pub use node::Node;
pub use source::NodeSource;
pub use spec::{SpecError, parse_hosts};
pub use variables::{PBS_NODEFILE, SLURM_JOB_NODELIST, SLURM_NODELIST, SLURM_TASKS_PER_NODE};

use hostfile::Hostfile;
use pbs::PbsNodefile;
use slurm::SlurmAllocation;

/// The node-related flags of the command line, already split from clap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRequest {
    /// `--hosts`: specs separated by commas, hostlist expressions allowed.
    pub hosts: Option<String>,
    /// `--hostfile`.
    pub hostfile: Option<PathBuf>,
}

/// Picks the node source: explicit `--hosts` or `--hostfile` first (both at once is an error),
/// then a foreign allocation (Slurm, then PBS), else the local machine.
///
/// `env` is the launcher's environment as a map (built with `std::env::vars_os`, skipping
/// entries that are not UTF-8; `std::env::vars` would panic on them). Empty variables count as
/// unset, as a shell's `VAR= gangway run` means.
pub fn select_source(
    request: &NodeRequest,
    env: &HashMap<String, String>,
) -> Result<Source, NodeSourceError> {
    let var = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match (&request.hosts, &request.hostfile) {
        (Some(_), Some(_)) => return Err(NodeSourceError::BothGiven),
        (Some(hosts), None) => return Ok(Source::Hosts(HostsArg { arg: hosts.clone() })),
        (None, Some(path)) => return Ok(Source::Hostfile(Hostfile { path: path.clone() })),
        (None, None) => {}
    }
    if let Some(nodelist) = var(SLURM_JOB_NODELIST).or_else(|| var(SLURM_NODELIST)) {
        return Ok(Source::Slurm(SlurmAllocation {
            nodelist: nodelist.to_string(),
            tasks_per_node: var(SLURM_TASKS_PER_NODE).map(str::to_string),
        }));
    }
    if let Some(path) = var(PBS_NODEFILE) {
        return Ok(Source::Pbs(PbsNodefile { path: PathBuf::from(path) }));
    }
    Ok(Source::Local(LocalMachine))
}

/// The source [`select_source`] chose; a closed set, so callers can match on it (a local source
/// means fork/exec, the others SSH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--hosts`.
    Hosts(HostsArg),
    /// `--hostfile`.
    Hostfile(Hostfile),
    /// Inside a Slurm allocation.
    Slurm(SlurmAllocation),
    /// Inside a PBS/Torque allocation.
    Pbs(PbsNodefile),
    /// None of the above.
    Local(LocalMachine),
}

impl Source {
    /// The chosen source as the trait, for code that does not care which one it is.
    pub fn as_dyn(&self) -> &dyn NodeSource {
        match self {
            Source::Hosts(s) => s,
            Source::Hostfile(s) => s,
            Source::Slurm(s) => s,
            Source::Pbs(s) => s,
            Source::Local(s) => s,
        }
    }
}

impl NodeSource for Source {
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError> {
        self.as_dyn().nodes()
    }

    fn describe(&self) -> String {
        self.as_dyn().describe()
    }
}

/// The argument of `--hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsArg {
    /// The argument as given.
    pub arg: String,
}

impl NodeSource for HostsArg {
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError> {
        parse_hosts(&self.arg).map_err(|problem| NodeSourceError::Hosts { problem })
    }

    fn describe(&self) -> String {
        format!("--hosts {}", self.arg)
    }
}

/// The machine `gangway run` runs on, when nothing names other nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalMachine;

/// Name of the one node [`LocalMachine`] yields.
pub const LOCAL_NODE_NAME: &str = "localhost";

impl NodeSource for LocalMachine {
    /// One node, [`LOCAL_NODE_NAME`], with no slot count: the launcher sizes it from the
    /// machine's own topology.
    fn nodes(&self) -> Result<Vec<Node>, NodeSourceError> {
        Ok(vec![Node::new(LOCAL_NODE_NAME)])
    }

    fn describe(&self) -> String {
        "the local machine (no --hosts, --hostfile, Slurm or PBS allocation)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn request(hosts: Option<&str>, hostfile: Option<&str>) -> NodeRequest {
        NodeRequest { hosts: hosts.map(str::to_string), hostfile: hostfile.map(PathBuf::from) }
    }

    const SLURM: (&str, &str) = (SLURM_JOB_NODELIST, "node[1-2]");
    const PBS: (&str, &str) = (PBS_NODEFILE, "/var/spool/pbs/aux/1.server");

    #[test]
    fn explicit_flags_win_over_allocations() {
        let e = env(&[SLURM, PBS]);
        let s = select_source(&request(Some("a,b"), None), &e).unwrap();
        assert_eq!(s, Source::Hosts(HostsArg { arg: "a,b".into() }));
        let s = select_source(&request(None, Some("h.txt")), &e).unwrap();
        assert_eq!(s, Source::Hostfile(Hostfile { path: "h.txt".into() }));
        let both = select_source(&request(Some("a"), Some("h.txt")), &e).unwrap_err();
        assert_eq!(both.to_string(), "give either --hosts or --hostfile, not both");
    }

    #[test]
    fn slurm_before_pbs_before_local() {
        let none = request(None, None);
        let s = select_source(&none, &env(&[SLURM, PBS, (SLURM_TASKS_PER_NODE, "2(x2)")]));
        assert_eq!(
            s.unwrap(),
            Source::Slurm(SlurmAllocation {
                nodelist: "node[1-2]".into(),
                tasks_per_node: Some("2(x2)".into()),
            })
        );
        let s = select_source(&none, &env(&[PBS])).unwrap();
        assert_eq!(s, Source::Pbs(PbsNodefile { path: PBS.1.into() }));
        assert_eq!(select_source(&none, &env(&[])).unwrap(), Source::Local(LocalMachine));
    }

    #[test]
    fn empty_variables_count_as_unset_and_old_slurm_name_is_read() {
        let none = request(None, None);
        let e = env(&[(SLURM_JOB_NODELIST, ""), (PBS_NODEFILE, " ")]);
        assert_eq!(select_source(&none, &e).unwrap(), Source::Local(LocalMachine));
        let e = env(&[(SLURM_NODELIST, "n1")]);
        let Source::Slurm(s) = select_source(&none, &e).unwrap() else { panic!("not Slurm") };
        assert_eq!((s.nodelist.as_str(), s.tasks_per_node), ("n1", None));
    }

    #[test]
    fn sources_yield_nodes_and_describe_themselves() {
        let none = request(None, None);
        let local = select_source(&none, &env(&[])).unwrap();
        assert_eq!(local.nodes().unwrap(), [Node::new("localhost")]);
        assert!(local.describe().starts_with("the local machine"));

        let hosts = select_source(&request(Some("n[1-2]:2"), None), &env(&[])).unwrap();
        let nodes = hosts.nodes().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1], Node { slots: Some(2), ..Node::new("n2") });
        assert_eq!(hosts.describe(), "--hosts n[1-2]:2");

        let bad = select_source(&request(Some("n1:four"), None), &env(&[])).unwrap();
        assert_eq!(
            bad.nodes().unwrap_err().to_string(),
            "--hosts: slots must be a whole number >= 1, got 'four' (write 'n1 slots=4' or 'n1:4')"
        );

        let slurm = select_source(&none, &env(&[SLURM, (SLURM_TASKS_PER_NODE, "3,1")])).unwrap();
        assert_eq!(
            slurm.nodes().unwrap(),
            [
                Node { slots: Some(3), ..Node::new("node1") },
                Node { slots: Some(1), ..Node::new("node2") }
            ]
        );
        assert!(slurm.describe().contains("SLURM_JOB_NODELIST=node[1-2]"));

        let pbs =
            select_source(&none, &env(&[(PBS_NODEFILE, "/nonexistent/gangway-pbs")])).unwrap();
        let err = pbs.nodes().unwrap_err().to_string();
        assert!(err.starts_with("cannot read PBS_NODEFILE /nonexistent/gangway-pbs: "), "{err}");
    }

    #[test]
    fn display_writes_a_spec_that_parses_back() {
        let cases = [
            Node::new("n1"),
            Node { user: Some("alice".into()), ..Node::new("n1") },
            Node { user: Some("alice".into()), port: Some(2222), ..Node::new("n1") },
            Node { port: Some(22), ..Node::new("n1") },
        ];
        for node in cases {
            let text = node.to_string();
            assert_eq!(parse_hosts(&text).unwrap(), [node], "{text}");
        }
    }
}
