//! `sinfo`: the nodes (`Request::Nodes`, as `gangway nodes` asks) grouped by partition and state,
//! or one line per node (`-N`), per partition (`-s`) or per reason (`-R`), sorted as Slurm
//! sorts them (`-S`), in Slurm's formats (`-o` letters, `-O` names, `-l`, `-p`, `-h`,
//! `--json`), once or every `-i` seconds.

use std::cmp::Ordering;
use std::ffi::OsString;

use clap::Args;

use super::args::{list, parse};
use super::format::{self, Item, Key};
use super::iterate;
use super::sort::{self, SortKey, natural};
use crate::cli::error::{CliError, ask};
use crate::protocol::{NodeInfo, Reply, Request};

/// sinfo's default columns (the partition's width follows the longest name, as `%#P` does).
pub const DEFAULT: &str = "%#P %.5a %.10l %.6D %.6t %N";
/// `-l`.
pub const LONG: &str = "%#P %.5a %.10l %.6D %.11T %N";
/// `-N`.
pub const NODES: &str = "%#N %.6D %#P %6t";
/// `-N -l`.
pub const NODES_LONG: &str = "%#N %.6D %#P %.11T %.4c %.6m %.8O %E";
/// `-s`: one line per partition, its nodes counted by state.
pub const SUMMARY: &str = "%#P %.5a %.10l %.16F  %N";
/// `-R`: why nodes are down or drained, one line per reason.
pub const REASONS: &str = "%20E %9u %19H %N";

/// The letters sinfo's `-S` takes (Slurm's). Those gangway has no figure for (disk, features,
/// groups, weights, sockets, ...) order nothing.
const SORT_FIELDS: &str = "aAcdDEfFghlmMnNoOpPrRstTwXYZz";

/// How nodes make a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Per partition and state (the default).
    State,
    /// One per node and partition (`-N`).
    Node,
    /// One per partition (`-s`).
    Partition,
    /// Down, drained and draining nodes per reason (`-R`).
    Reason,
}

/// sinfo's flags.
#[derive(Debug, Args)]
pub struct SinfoArgs {
    /// One line per node.
    #[arg(short = 'N', long = "Node")]
    node: bool,
    /// More columns.
    #[arg(short = 'l', long)]
    long: bool,
    /// Only these partitions.
    #[arg(short = 'p', long = "partition", value_name = "LIST")]
    partition: Option<String>,
    /// Only nodes in these states (idle, alloc, mix, drain, down).
    #[arg(short = 't', long = "states", value_name = "LIST")]
    states: Option<String>,
    /// Only these nodes.
    #[arg(short = 'n', long = "nodes", value_name = "LIST")]
    nodes: Option<String>,
    /// Columns as %-letters (%P %a %l %D %t %N %c %m %O %E ...).
    #[arg(short = 'o', long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Columns by name, with widths (NodeList:20,StateLong,CPUsState; default width 20).
    #[arg(short = 'O', long = "Format", value_name = "FIELDS", conflicts_with = "format")]
    format_names: Option<String>,
    /// Sort by these fields, each after + or - (#P: partitions as configured): -S -D,N.
    #[arg(short = 'S', long = "sort", value_name = "FIELDS", allow_hyphen_values = true)]
    sort: Option<String>,
    /// Print the report again every N seconds, each under the date, until interrupted (Ctrl-C).
    #[arg(short = 'i', long = "iterate", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    iterate: Option<u64>,
    /// No header line.
    #[arg(short = 'h', long = "noheader")]
    noheader: bool,
    /// Every partition (all are shown anyway).
    #[arg(short = 'a', long)]
    all: bool,
    /// One line per partition: its nodes allocated/idle/other/total.
    #[arg(short = 's', long = "summarize")]
    summarize: bool,
    /// Why nodes are down, drained or draining.
    #[arg(short = 'R', long = "list-reasons")]
    list_reasons: bool,
    /// JSON: the nodes as the controller reports them.
    #[arg(long)]
    json: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// One line of output: nodes sharing a partition (and, grouped, a state).
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub partition: String,
    pub nodes: Vec<&'a NodeInfo>,
}

/// The columns of a report: `-o` letters (`%#P` as wide as its longest value), or `-O` names
/// already read as letters.
#[derive(Debug, Clone)]
pub enum Columns {
    Letters(String),
    Items(Vec<Item>),
}

/// Runs `sinfo`.
pub fn main(args: Vec<OsString>) -> Result<(), CliError> {
    let command = SinfoArgs::augment_args(clap::Command::new("sinfo").disable_help_flag(true))
        .about("Partitions and nodes, as Slurm's sinfo prints them (gangway)")
        .after_help(
            "Examples:\n  sinfo -N -S -c                       nodes, most CPUs first\n  sinfo -O NodeList:20,StateLong,CPUsState  columns by name, with widths\n  sinfo -i 10                          every 10 seconds (Ctrl-C ends it)",
        );
    let args: SinfoArgs = parse(command, "sinfo", args)?;
    let wanted_nodes = match &args.nodes {
        Some(l) => Some(
            gangway_launcher::nodes::hostlist::expand(l)
                .map_err(|e| CliError::Usage(format!("--nodes {l}: {e}")))?,
        ),
        None => None,
    };
    let states = args.states.as_deref().map(list);
    let partitions = args.partition.as_deref().map(list);
    let grouping = if args.list_reasons {
        Grouping::Reason
    } else if args.node {
        Grouping::Node
    } else if args.summarize {
        Grouping::Partition
    } else {
        Grouping::State
    };
    let columns = match &args.format_names {
        Some(names) => Columns::Items(named_columns(names).map_err(CliError::Usage)?),
        None => Columns::Letters(args.format.clone().unwrap_or_else(|| {
            match (grouping, args.long) {
                (Grouping::Reason, _) => REASONS,
                (Grouping::Partition, _) => SUMMARY,
                (Grouping::State, false) => DEFAULT,
                (Grouping::State, true) => LONG,
                (Grouping::Node, false) => NODES,
                (Grouping::Node, true) => NODES_LONG,
            }
            .to_string()
        })),
    };
    let keys = match &args.sort {
        Some(spec) => sort::parse(spec, SORT_FIELDS).map_err(CliError::Usage)?,
        None => default_sort(grouping),
    };
    let report = || -> Result<String, CliError> {
        let nodes = match ask(&Request::Nodes)? {
            Reply::Nodes { nodes } => nodes,
            other => return Err(CliError::UnexpectedReply(Box::new(other))),
        };
        let nodes: Vec<NodeInfo> = nodes
            .into_iter()
            .filter(|n| wanted_nodes.as_ref().is_none_or(|w| w.contains(&n.name)))
            .filter(|n| {
                states.as_ref().is_none_or(|s| {
                    s.iter().any(|x| {
                        x.eq_ignore_ascii_case(short(&n.state)) || x.eq_ignore_ascii_case(&n.state)
                    })
                })
            })
            .collect();
        if args.json {
            return Ok(format!("{}\n", serde_json::json!({ "nodes": nodes })));
        }
        let header = !args.noheader;
        Ok(render_sorted(&nodes, &columns, partitions.as_deref(), grouping, header, &keys))
    };
    iterate::print("sinfo", args.iterate, args.long, !args.noheader && !args.json, report)
}

/// Slurm's order when `-S` is not given: partitions as configured, then state (the busiest
/// first); with `-N`, by node name. Reasons stay in the order their nodes came.
pub fn default_sort(grouping: Grouping) -> Vec<SortKey> {
    let spec = match grouping {
        Grouping::State | Grouping::Partition => "#P,-t",
        Grouping::Node => "N",
        Grouping::Reason => return Vec::new(),
    };
    sort::parse(spec, SORT_FIELDS).unwrap_or_default()
}

/// `-O` names as the letters they print (Slurm's names, case-insensitive): the error names
/// one gangway does not know.
pub fn named_columns(names: &str) -> Result<Vec<Item>, String> {
    format::parse_names(names, 20)
        .into_iter()
        .map(|item| match item {
            Item::Field { key: Key::Name(name), width, right } => {
                let letter = match name.as_str() {
                    "available" => 'a',
                    "cpus" => 'c',
                    "cpusload" => 'O',
                    "cpusstate" => 'C',
                    "freemem" => 'e',
                    "gres" => 'G',
                    "memory" => 'm',
                    "nodeai" => 'A',
                    "nodeaiot" => 'F',
                    "nodehost" => 'n',
                    "nodelist" => 'N',
                    "nodes" => 'D',
                    "partition" => 'P',
                    "partitionname" => 'R',
                    "reason" => 'E',
                    "statecompact" => 't',
                    "statelong" => 'T',
                    "time" => 'l',
                    "timestamp" => 'H',
                    "user" | "userlong" => 'u',
                    other => {
                        return Err(format!(
                            "--Format: '{other}' is not a field gangway knows; use Available, CPUs, CPUsLoad, CPUsState, FreeMem, Gres, Memory, NodeAI, NodeAIOT, NodeHost, NodeList, Nodes, Partition, PartitionName, Reason, StateCompact, StateLong, Time, TimeStamp, User (docs/slurm.md)"
                        ));
                    }
                };
                Ok(Item::Field { key: Key::Letter(letter), width, right })
            }
            other => Ok(other),
        })
        .collect()
}

/// Slurm's compact node state.
pub fn short(state: &str) -> &'static str {
    match state.to_ascii_uppercase().as_str() {
        "IDLE" => "idle",
        "ALLOCATED" | "ALLOC" => "alloc",
        "MIXED" | "MIX" => "mix",
        "DRAINED" | "DRAIN" => "drain",
        "DRAINING" => "drng",
        "DOWN" | "LOST" => "down",
        "SUSPECT" => "idle*",
        _ => "unk",
    }
}

/// Whether a node is out of service (what `-R` lists, and the O of `%F`'s A/I/O/T).
fn out_of_service(n: &NodeInfo) -> bool {
    matches!(short(&n.state), "down" | "drain" | "drng" | "unk")
}

/// Why a node is as it is: its recorded reason, else Slurm's words for a node that went away.
fn reason(n: &NodeInfo) -> String {
    match &n.reason {
        Some(r) => r.clone(),
        None if short(&n.state) == "down" => "Not responding".into(),
        None => "none".into(),
    }
}

/// The rows: per partition (in first-seen order), nodes grouped by state (or all of the
/// partition's together), or one per node; or the out-of-service nodes per reason.
pub fn rows<'a>(
    nodes: &'a [NodeInfo],
    partitions: Option<&[String]>,
    grouping: Grouping,
) -> Vec<Row<'a>> {
    if grouping == Grouping::Reason {
        let mut groups: Vec<(String, Vec<&NodeInfo>)> = Vec::new();
        for n in nodes.iter().filter(|n| out_of_service(n)) {
            if partitions.is_some_and(|w| !n.partitions.iter().any(|p| w.contains(p))) {
                continue;
            }
            let reason = reason(n);
            match groups.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, g)) => g.push(n),
                None => groups.push((reason, vec![n])),
            }
        }
        return groups
            .into_iter()
            .map(|(_, nodes)| Row { partition: String::new(), nodes })
            .collect();
    }
    let per_node = grouping == Grouping::Node;
    let mut names: Vec<String> = Vec::new();
    for n in nodes {
        for p in &n.partitions {
            if !names.contains(p) && partitions.is_none_or(|w| w.contains(p)) {
                names.push(p.clone());
            }
        }
    }
    let mut rows = Vec::new();
    if per_node {
        for n in nodes {
            for p in n.partitions.iter().filter(|p| names.contains(p)) {
                rows.push(Row { partition: p.clone(), nodes: vec![n] });
            }
        }
        return rows;
    }
    for p in names {
        if grouping == Grouping::Partition {
            let nodes = nodes.iter().filter(|n| n.partitions.contains(&p)).collect();
            rows.push(Row { partition: p.clone(), nodes });
            continue;
        }
        let mut groups: Vec<(&str, Vec<&NodeInfo>)> = Vec::new();
        for n in nodes.iter().filter(|n| n.partitions.contains(&p)) {
            match groups.iter_mut().find(|(s, _)| *s == short(&n.state)) {
                Some((_, g)) => g.push(n),
                None => groups.push((short(&n.state), vec![n])),
            }
        }
        rows.extend(groups.into_iter().map(|(_, nodes)| Row { partition: p.clone(), nodes }));
    }
    rows
}

/// The table (pure, for snapshots) in sinfo's default order for `grouping`.
pub fn render(
    nodes: &[NodeInfo],
    format_text: &str,
    partitions: Option<&[String]>,
    grouping: Grouping,
    header: bool,
) -> String {
    let columns = Columns::Letters(format_text.to_string());
    render_sorted(nodes, &columns, partitions, grouping, header, &default_sort(grouping))
}

/// The table with its rows sorted by `keys`. `%#X` is as wide as the column's longest value.
pub fn render_sorted(
    nodes: &[NodeInfo],
    columns: &Columns,
    partitions: Option<&[String]>,
    grouping: Grouping,
    header: bool,
    keys: &[SortKey],
) -> String {
    let mut rows = rows(nodes, partitions, grouping);
    sort_rows(&mut rows, keys);
    let items: Vec<Item> = match columns {
        Columns::Items(items) => items.clone(),
        Columns::Letters(format_text) => {
            let mut text = format_text.clone();
            for letter in ['P', 'N'] {
                let widest = rows
                    .iter()
                    .map(|r| value(r, &Key::Letter(letter)).chars().count())
                    .chain(std::iter::once(heading(letter).len()))
                    .max()
                    .unwrap_or(9);
                text = text.replace(&format!("%#{letter}"), &format!("%-{widest}{letter}"));
            }
            format::parse_letters(&text)
        }
    };
    let head = |k: &Key| match k {
        Key::Letter(c) => heading(*c).to_string(),
        Key::Name(n) => n.to_ascii_uppercase(),
    };
    format::render(&items, &rows, header.then_some(&head as &dyn Fn(&Key) -> String), value)
}

/// Slurm's order of node states (its enum, flags included): unknown, down, idle, allocated,
/// mixed, then the drained and draining, then the not responding.
fn state_rank(n: &NodeInfo) -> u32 {
    match short(&n.state) {
        "down" => 1,
        "idle" => 2,
        "alloc" => 3,
        "mix" => 5,
        "drain" => 0x202,
        "drng" => 0x203,
        "idle*" => 0x802,
        _ => 0,
    }
}

/// Sorts rows by `-S` keys; a row compares by its nodes' smallest figure, as Slurm's keep
/// each line's minimum.
pub fn sort_rows(rows: &mut [Row<'_>], keys: &[SortKey]) {
    // `#P`: partitions in the order the rows first name them (the configuration's).
    let mut order: Vec<String> = Vec::new();
    for r in rows.iter() {
        if !order.contains(&r.partition) {
            order.push(r.partition.clone());
        }
    }
    let place = |p: &str| order.iter().position(|x| x == p).unwrap_or(usize::MAX);
    let min = |r: &Row<'_>, f: &dyn Fn(&NodeInfo) -> u64| r.nodes.iter().map(|n| f(n)).min();
    let first_name = |r: &Row<'_>| -> String {
        let names = r.nodes.iter().map(|n| n.name.as_str());
        names.min_by(|a, b| natural(a, b)).unwrap_or_default().to_string()
    };
    let allocated = |r: &Row<'_>| {
        r.nodes.iter().filter(|n| matches!(short(&n.state), "alloc" | "mix" | "drng")).count()
    };
    let reason_of = |r: &Row<'_>| r.nodes.first().map(|n| reason(n)).unwrap_or_default();
    let load = |n: &NodeInfo| n.load.map_or(0, |l| (l * 100.0) as u64);
    sort::sort_by(rows, keys, |a, b, k| match k.field {
        'A' | 'F' => allocated(a).cmp(&allocated(b)),
        'c' => min(a, &|n| u64::from(n.cpus_total)).cmp(&min(b, &|n| u64::from(n.cpus_total))),
        'D' => a.nodes.len().cmp(&b.nodes.len()),
        'E' | 'R' => reason_of(a).cmp(&reason_of(b)),
        'm' => min(a, &|n| n.memory_total).cmp(&min(b, &|n| n.memory_total)),
        'n' | 'N' => natural(&first_name(a), &first_name(b)),
        'O' => min(a, &load).cmp(&min(b, &load)),
        'P' if k.config_order => place(&a.partition).cmp(&place(&b.partition)),
        'P' => a.partition.cmp(&b.partition),
        't' | 'T' => {
            let rank = |r: &Row<'_>| r.nodes.first().map_or(0, |n| state_rank(n));
            rank(a).cmp(&rank(b))
        }
        _ => Ordering::Equal,
    });
}

fn heading(c: char) -> &'static str {
    match c {
        'P' => "PARTITION",
        'R' => "PARTITION",
        'a' => "AVAIL",
        'l' => "TIMELIMIT",
        'D' => "NODES",
        't' | 'T' => "STATE",
        'N' => "NODELIST",
        'n' => "HOSTNAMES",
        'c' => "CPUS",
        'C' => "CPUS(A/I/O/T)",
        'm' => "MEMORY",
        'e' => "FREE_MEM",
        'O' => "CPU_LOAD",
        'E' => "REASON",
        'F' => "NODES(A/I/O/T)",
        'A' => "NODES(A/I)",
        'u' => "USER",
        'H' => "TIMESTAMP",
        'G' => "GRES",
        _ => "N/A",
    }
}

fn value(r: &Row<'_>, key: &Key) -> String {
    let Key::Letter(c) = key else { return "N/A".into() };
    let first = r.nodes.first();
    let names: Vec<String> = r.nodes.iter().map(|n| n.name.clone()).collect();
    match c {
        'P' | 'R' => r.partition.clone(),
        'a' => "up".into(),
        'l' => "infinite".into(),
        'D' => r.nodes.len().to_string(),
        't' => first.map(|n| short(&n.state)).unwrap_or("n/a").into(),
        'T' => first
            .map(|n| short(&n.state).trim_end_matches('*'))
            .map(|s| match s {
                "alloc" => "allocated".to_string(),
                "mix" => "mixed".into(),
                "drain" => "drained".into(),
                "drng" => "draining".into(),
                other => other.to_string(),
            })
            .unwrap_or_default(),
        'N' | 'n' => {
            gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","))
        }
        'c' => first.map(|n| n.cpus_total.to_string()).unwrap_or_default(),
        'C' => {
            let (a, t): (u32, u32) =
                r.nodes.iter().fold((0, 0), |(a, t), n| (a + n.cpus_alloc, t + n.cpus_total));
            format!("{a}/{}/0/{t}", t.saturating_sub(a))
        }
        'm' => first.map(|n| (n.memory_total >> 20).to_string()).unwrap_or_default(),
        'e' => first
            .map(|n| (n.memory_total.saturating_sub(n.memory_alloc) >> 20).to_string())
            .unwrap_or_default(),
        'O' => {
            first.and_then(|n| n.load).map(|l| format!("{l:.2}")).unwrap_or_else(|| "N/A".into())
        }
        'E' => first.map(|n| reason(n)).unwrap_or_default(),
        'G' => first.map(|n| n.gres()).unwrap_or_default(),
        'A' => {
            let count = |states: &[&str]| {
                r.nodes.iter().filter(|n| states.contains(&short(&n.state))).count()
            };
            format!("{}/{}", count(&["alloc", "mix", "drng"]), count(&["idle", "idle*"]))
        }
        'F' => {
            let other = r.nodes.iter().filter(|n| out_of_service(n)).count();
            let idle =
                r.nodes.iter().filter(|n| matches!(short(&n.state), "idle" | "idle*")).count();
            let total = r.nodes.len();
            format!("{}/{idle}/{other}/{total}", total - idle - other)
        }
        // Who set a reason, and when, is not recorded.
        'u' | 'H' => "Unknown".into(),
        _ => "N/A".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn node(name: &str, state: &str, alloc: u32) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            state: state.into(),
            reason: None,
            partitions: vec!["batch".into()],
            cpus_total: 4,
            cpus_alloc: alloc,
            memory_total: 8 << 30,
            memory_alloc: 0,
            gpus: 0,
            gpu_types: Vec::new(),
            gpus_alloc: 0,
            load: Some(0.5),
            addr: None,
            hardware: String::new(),
            jobs: Vec::new(),
            cpu_map: Vec::new(),
            last_heartbeat_ms_ago: None,
            agent_version: None,
        }
    }

    fn cluster() -> Vec<NodeInfo> {
        vec![node("node1", "ALLOCATED", 4), node("node2", "ALLOCATED", 4), node("node3", "IDLE", 0)]
    }

    #[test]
    fn partitions_grouped_by_state() {
        insta::assert_snapshot!(render(&cluster(), DEFAULT, None, Grouping::State, true));
    }

    #[test]
    fn node_oriented_long() {
        insta::assert_snapshot!(render(&cluster(), NODES_LONG, None, Grouping::Node, true));
    }

    #[test]
    fn custom_format_and_partition_filter() {
        let batch = ["batch".to_string()];
        let out = render(&cluster(), "%P|%D|%t|%N", Some(&batch), Grouping::State, false);
        assert_eq!(out, "batch|2|alloc|node[1-2]\nbatch|1|idle|node3\n");
        let gpu = ["gpu".to_string()];
        assert_eq!(render(&cluster(), "%P", Some(&gpu), Grouping::State, false), "");
    }

    #[test]
    fn long_names_with_widths_print_as_their_letters() {
        let items = named_columns("NodeList:8,StateLong,CPUsState:.14,NodeAIOT:0").unwrap();
        let columns = Columns::Items(items);
        let keys = default_sort(Grouping::Node);
        let out = render_sorted(&cluster(), &columns, None, Grouping::Node, true, &keys);
        assert_eq!(
            out,
            "NODELISTSTATE                CPUS(A/I/O/T)NODES(A/I/O/T)\n\
             node1   allocated                  4/0/0/41/0/0/1\n\
             node2   allocated                  4/0/0/41/0/0/1\n\
             node3   idle                       0/4/0/40/1/0/1\n"
        );
        let err = named_columns("NodeList,Bogus").unwrap_err();
        assert!(err.contains("'bogus' is not a field") && err.contains("StateLong"), "{err}");
    }

    #[test]
    fn sort_keys_order_the_lines_as_slurms_sinfo() {
        let mut nodes = cluster();
        nodes.push(node("node10", "MIXED", 2));
        nodes[0].cpus_total = 8;
        let ids = |spec: &str, grouping: Grouping| {
            let keys = sort::parse(spec, SORT_FIELDS).unwrap();
            let columns = Columns::Letters("%N".into());
            render_sorted(&nodes, &columns, None, grouping, false, &keys).replace('\n', " ")
        };
        // Slurm's default: by state, the busiest first (mixed, allocated, idle).
        assert_eq!(
            render(&nodes, "%t %N", None, Grouping::State, false),
            "mix node10\nalloc node[1-2]\nidle node3\n"
        );
        assert_eq!(ids("N", Grouping::Node), "node1 node2 node3 node10 ");
        assert_eq!(ids("-N", Grouping::Node), "node10 node3 node2 node1 ");
        assert_eq!(ids("-c,N", Grouping::Node), "node1 node2 node3 node10 ");
        assert_eq!(ids("c,-N", Grouping::Node), "node10 node3 node2 node1 ");
        assert_eq!(ids("D,-N", Grouping::State), "node10 node3 node[1-2] ");
        assert!(sort::parse("-q", SORT_FIELDS).unwrap_err().contains("'q'"));
    }

    #[test]
    fn summary_and_reasons() {
        let mut nodes = cluster();
        nodes.push(node("node4", "DRAINED", 0));
        nodes[3].reason = Some("disk swap".into());
        nodes.push(node("node5", "DOWN", 0));
        nodes.push(node("node6", "DRAINING", 2));
        nodes[5].reason = Some("disk swap".into());
        assert_eq!(
            render(&nodes, SUMMARY, None, Grouping::Partition, true),
            "PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T)  NODELIST\n\
             batch        up   infinite          2/1/3/6  node[1-6]\n"
        );
        assert_eq!(
            render(&nodes, REASONS, None, Grouping::Reason, true),
            "REASON               USER      TIMESTAMP           NODELIST\n\
             disk swap            Unknown   Unknown             node[4,6]\n\
             Not responding       Unknown   Unknown             node5\n"
        );
    }
}
