//! A job as libpmix needs it registered: sizes, where every rank runs, and the job- and
//! process-level keys Open MPI reads at `MPI_Init`.
//!
//! Pure: [`Namespace::infos`] turns the description into the registration list; the server
//! only adds the two maps, which libpmix itself encodes (`PMIx_generate_regex`/`ppn`).
//!
//! What Open MPI 4.1 requires (its `ess/pmi` start-up fails without them): the local and node
//! rank of each process, `PMIX_JOB_SIZE`, `PMIX_MAX_PROCS`, `PMIX_LOCAL_SIZE`, and
//! `PMIX_LOCAL_PEERS` when a node has more than one rank. It also reads the application number,
//! the node count and the session directories when present, and the host name of every peer.
//! The rest (universe size, local leader, node and process maps, node ids, job id) is what
//! libpmix's own lookups and `MPI_Comm_split_type` use; Slurm registers the same set. The
//! node's hwloc XML, when given, spares every rank its own topology discovery.

use std::path::PathBuf;

use gangway_pmix_sys as sys;

use crate::error::PmixError;
use crate::value::{Info, Value};

/// One job (a PMIx namespace) and its layout across nodes, as seen from one node's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The PMIx namespace, at most 255 bytes (gangway uses the job id).
    pub name: String,
    /// The job id reported as `PMIX_JOBID`.
    pub jobid: String,
    /// The job's nodes by node id: host names as the ranks see them (`gethostname`).
    pub nodes: Vec<String>,
    /// For every rank of the job, in rank order, the id (index in `nodes`) of its node.
    pub rank_nodes: Vec<u32>,
    /// The node this server runs on.
    pub this_node: u32,
    /// The application number (index of the executable in an MPMD launch).
    pub appnum: u32,
    /// `PMIX_UNIV_SIZE` (`MPI_UNIVERSE_SIZE`); the job size when `None`.
    pub universe_size: Option<u32>,
    /// A job-private scratch directory on this node (`PMIX_NSDIR`); Open MPI puts its session
    /// files there and, with `PMIX_TDIR_RMCLEAN`, leaves the cleaning to gangway.
    pub session_dir: Option<PathBuf>,
    /// This node's hwloc XML export (`PMIX_HWLOC_XML_V2`): Open MPI loads it instead of
    /// discovering the machine in every rank.
    pub topology_xml: Option<String>,
}

impl Namespace {
    /// A job of `rank_nodes.len()` ranks, all of application 0.
    pub fn new(
        name: impl Into<String>,
        nodes: Vec<String>,
        rank_nodes: Vec<u32>,
        this_node: u32,
    ) -> Namespace {
        let name = name.into();
        Namespace {
            jobid: name.clone(),
            name,
            nodes,
            rank_nodes,
            this_node,
            appnum: 0,
            universe_size: None,
            session_dir: None,
            topology_xml: None,
        }
    }

    /// Number of ranks.
    pub fn size(&self) -> u32 {
        u32::try_from(self.rank_nodes.len()).unwrap_or(u32::MAX)
    }

    /// The ranks of node `node`, ascending.
    pub fn ranks_on(&self, node: u32) -> Vec<u32> {
        (0..self.size()).filter(|&r| self.rank_nodes[r as usize] == node).collect()
    }

    /// The ranks this server hosts.
    pub fn local_ranks(&self) -> Vec<u32> {
        self.ranks_on(self.this_node)
    }

    /// Rejects what libpmix cannot register or would misread.
    pub fn validate(&self) -> Result<(), PmixError> {
        let bad = |reason: String| PmixError::BadNamespace { name: self.name.clone(), reason };
        if self.name.is_empty() || self.name.len() > sys::PMIX_MAX_NSLEN as usize {
            return Err(bad("a namespace has 1 to 255 bytes".into()));
        }
        if self.name.bytes().any(|b| b == 0) {
            return Err(bad("a namespace cannot contain NUL".into()));
        }
        if self.rank_nodes.is_empty() {
            return Err(bad("the job has no ranks".into()));
        }
        if u32::try_from(self.rank_nodes.len()).is_err() {
            return Err(bad("too many ranks".into()));
        }
        if let Some(h) = self.nodes.iter().find(|h| h.is_empty() || h.contains([',', ';', '\0'])) {
            return Err(bad(format!("node name {h:?} is empty or contains ',' ';' or NUL")));
        }
        let n = self.nodes.len();
        if let Some((rank, node)) =
            self.rank_nodes.iter().enumerate().find(|&(_, &node)| node as usize >= n)
        {
            return Err(bad(format!("rank {rank} is on node {node}, but the job has {n} nodes")));
        }
        if self.this_node as usize >= n {
            return Err(bad(format!("this node is {}, but the job has {n} nodes", self.this_node)));
        }
        if let Some(empty) = (0..n as u32).find(|&node| self.ranks_on(node).is_empty()) {
            return Err(bad(format!(
                "node {empty} ({}) hosts no rank",
                self.nodes[empty as usize]
            )));
        }
        if let Some(node) =
            (0..n as u32).find(|&node| self.ranks_on(node).len() > usize::from(u16::MAX))
        {
            return Err(bad(format!("node {node} hosts more than 65535 ranks")));
        }
        Ok(())
    }

    /// Input for `PMIx_generate_regex`: the node names, comma-separated, in node-id order.
    pub fn node_list(&self) -> String {
        self.nodes.join(",")
    }

    /// Input for `PMIx_generate_ppn`: each node's ranks (comma-separated), nodes separated by
    /// `;`, in node-id order.
    pub fn ranks_per_node(&self) -> String {
        (0..self.nodes.len() as u32)
            .map(|node| {
                self.ranks_on(node).iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The registration list, given the encoded node and process maps. Call [`validate`]
    /// first: this assumes a valid layout.
    ///
    /// [`validate`]: Namespace::validate
    pub fn infos(&self, node_map: Value, proc_map: Value) -> Vec<Info> {
        let size = self.size();
        let local = self.local_ranks();
        let local_size = u32::try_from(local.len()).unwrap_or(u32::MAX);
        let peers = local.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let mut infos = vec![
            Info::new(sys::PMIX_JOBID, Value::String(self.jobid.clone())),
            Info::new(sys::PMIX_UNIV_SIZE, Value::U32(self.universe_size.unwrap_or(size))),
            Info::new(sys::PMIX_JOB_SIZE, Value::U32(size)),
            Info::new(sys::PMIX_MAX_PROCS, Value::U32(self.universe_size.unwrap_or(size))),
            Info::new(sys::PMIX_APP_SIZE, Value::U32(size)),
            Info::new(sys::PMIX_APPLDR, Value::Rank(0)),
            Info::new(sys::PMIX_APPNUM, Value::U32(self.appnum)),
            Info::new(sys::PMIX_NUM_NODES, Value::U32(self.nodes.len() as u32)),
            Info::new(sys::PMIX_LOCAL_SIZE, Value::U32(local_size)),
            Info::new(sys::PMIX_NODE_SIZE, Value::U32(local_size)),
            Info::new(sys::PMIX_LOCAL_PEERS, Value::String(peers)),
            Info::new(sys::PMIX_LOCALLDR, Value::Rank(local.first().copied().unwrap_or(0))),
            Info::new(sys::PMIX_SPAWNED, Value::Bool(false)),
            Info::new(sys::PMIX_NODE_MAP, node_map),
            Info::new(sys::PMIX_PROC_MAP, proc_map),
        ];
        if let Some(dir) = &self.session_dir {
            let dir = dir.to_string_lossy().into_owned();
            infos.push(Info::new(sys::PMIX_NSDIR, Value::String(dir)));
            infos.push(Info::new(sys::PMIX_TDIR_RMCLEAN, Value::Bool(true)));
        }
        if let Some(xml) = &self.topology_xml {
            infos.push(Info::new(sys::PMIX_HWLOC_XML_V2, Value::String(xml.clone())));
        }
        // Local rank per node, in one pass: the n-th rank seen on a node is its local rank n.
        let mut seen = vec![0u16; self.nodes.len()];
        for (rank, &node) in self.rank_nodes.iter().enumerate() {
            let local_rank = seen[node as usize];
            seen[node as usize] = local_rank.saturating_add(1);
            let rank = rank as u32;
            infos.push(Info::new(
                sys::PMIX_PROC_DATA,
                Value::Infos(vec![
                    // libpmix requires the rank as the first entry of a process's data.
                    Info::new(sys::PMIX_RANK, Value::Rank(rank)),
                    Info::new(sys::PMIX_APPNUM, Value::U32(self.appnum)),
                    Info::new(sys::PMIX_GLOBAL_RANK, Value::Rank(rank)),
                    Info::new(sys::PMIX_APP_RANK, Value::Rank(rank)),
                    Info::new(sys::PMIX_LOCAL_RANK, Value::U16(local_rank)),
                    // One job per node as far as this server knows: node rank = local rank.
                    Info::new(sys::PMIX_NODE_RANK, Value::U16(local_rank)),
                    Info::new(sys::PMIX_NODEID, Value::U32(node)),
                    Info::new(sys::PMIX_HOSTNAME, Value::String(self.nodes[node as usize].clone())),
                ]),
            ));
        }
        infos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_nodes_cyclic() -> Namespace {
        Namespace::new("job.7", vec!["a".into(), "b".into()], vec![0, 1, 0, 1, 0], 1)
    }

    fn get<'a>(infos: &'a [Info], key: &[u8]) -> Vec<&'a Value> {
        let key = crate::value::key_str(key);
        infos.iter().filter(|i| i.key == key).map(|i| &i.value).collect()
    }

    #[test]
    fn maps_inputs_follow_node_order() {
        let ns = two_nodes_cyclic();
        ns.validate().unwrap();
        assert_eq!(ns.node_list(), "a,b");
        assert_eq!(ns.ranks_per_node(), "0,2,4;1,3");
        assert_eq!(ns.local_ranks(), vec![1, 3]);
    }

    #[test]
    fn job_and_node_level_keys() {
        let ns = two_nodes_cyclic();
        let infos = ns.infos(Value::Regex(b"n\0".to_vec()), Value::Regex(b"p\0".to_vec()));
        assert_eq!(get(&infos, sys::PMIX_JOB_SIZE), vec![&Value::U32(5)]);
        assert_eq!(get(&infos, sys::PMIX_UNIV_SIZE), vec![&Value::U32(5)]);
        assert_eq!(get(&infos, sys::PMIX_LOCAL_SIZE), vec![&Value::U32(2)]);
        assert_eq!(get(&infos, sys::PMIX_LOCAL_PEERS), vec![&Value::String("1,3".into())]);
        assert_eq!(get(&infos, sys::PMIX_LOCALLDR), vec![&Value::Rank(1)]);
        assert_eq!(get(&infos, sys::PMIX_NUM_NODES), vec![&Value::U32(2)]);
        assert_eq!(get(&infos, sys::PMIX_JOBID), vec![&Value::String("job.7".into())]);
        assert!(get(&infos, sys::PMIX_NSDIR).is_empty());
        assert!(get(&infos, sys::PMIX_HWLOC_XML_V2).is_empty(), "no topology given, none sent");
    }

    #[test]
    fn the_nodes_topology_goes_to_every_rank_as_hwloc_xml() {
        let mut ns = two_nodes_cyclic();
        ns.topology_xml = Some("<topology version=\"2.0\"/>".into());
        let infos = ns.infos(Value::Regex(vec![0]), Value::Regex(vec![0]));
        assert_eq!(
            get(&infos, sys::PMIX_HWLOC_XML_V2),
            vec![&Value::String("<topology version=\"2.0\"/>".into())]
        );
    }

    #[test]
    fn every_rank_has_its_node_and_local_rank_and_the_rank_comes_first() {
        let ns = two_nodes_cyclic();
        let infos = ns.infos(Value::Regex(vec![0]), Value::Regex(vec![0]));
        let procs = get(&infos, sys::PMIX_PROC_DATA);
        assert_eq!(procs.len(), 5, "one entry per rank of the job, local or not");
        let expect = [(0, 0, "a"), (1, 0, "b"), (2, 1, "a"), (3, 1, "b"), (4, 2, "a")];
        for (value, (rank, local, host)) in procs.into_iter().zip(expect) {
            let Value::Infos(data) = value else { panic!("{value:?}") };
            assert_eq!(data[0], Info::new(sys::PMIX_RANK, Value::Rank(rank)));
            assert_eq!(get(data, sys::PMIX_LOCAL_RANK), vec![&Value::U16(local)]);
            assert_eq!(get(data, sys::PMIX_NODE_RANK), vec![&Value::U16(local)]);
            assert_eq!(get(data, sys::PMIX_HOSTNAME), vec![&Value::String(host.into())]);
            assert_eq!(get(data, sys::PMIX_NODEID), vec![&Value::U32(u32::from(host == "b"))]);
        }
    }

    #[test]
    fn invalid_layouts_are_refused_with_the_reason() {
        let mut ns = two_nodes_cyclic();
        ns.rank_nodes[2] = 5;
        assert!(ns.validate().unwrap_err().to_string().contains("rank 2 is on node 5"));
        let ns = Namespace::new("j", vec!["a".into(), "b".into()], vec![0, 0], 0);
        assert!(ns.validate().unwrap_err().to_string().contains("node 1 (b) hosts no rank"));
        let ns = Namespace::new("j", vec!["a,b".into()], vec![0], 0);
        assert!(ns.validate().is_err());
        let ns = Namespace::new("x".repeat(256), vec!["a".into()], vec![0], 0);
        assert!(ns.validate().unwrap_err().to_string().contains("1 to 255 bytes"));
        let ns = Namespace::new("j", vec!["a".into()], vec![0], 1);
        assert!(ns.validate().unwrap_err().to_string().contains("this node is 1"));
    }
}
