//! The job-shape flags `alloc` and `batch` share (Slurm's spelling), checked into a
//! [`JobShape`] that `run` through a controller also builds, from its own checked flags; plus
//! the memory-size form the controller's configuration uses too.

use std::fmt;
use std::str::FromStr;

use clap::Args;
use gangway_topology::GpuType;

use super::flag_values::{MemorySize, NodeList, NodeRange, TimeLimit};
use crate::protocol::Shape;
use crate::protocol::dependency::Dependency;

/// Shape flags.
#[derive(Debug, Clone, Args, Default)]
pub struct ShapeArgs {
    /// Nodes: N, or MIN-MAX.
    #[arg(short = 'N', long, value_name = "N[-M]")]
    pub nodes: Option<String>,
    /// Tasks (ranks) in all.
    #[arg(short = 'n', long, value_name = "N")]
    pub ntasks: Option<u32>,
    /// At most this many tasks on each node.
    #[arg(long, value_name = "N")]
    pub ntasks_per_node: Option<u32>,
    /// CPUs (cores) for each task.
    #[arg(short = 'c', long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Memory on each node: 512M, 4G, 1T (plain numbers are MiB, as in Slurm).
    #[arg(long, value_name = "SIZE", conflicts_with = "mem_per_cpu")]
    pub mem: Option<String>,
    /// Memory per allocated CPU.
    #[arg(long, value_name = "SIZE")]
    pub mem_per_cpu: Option<String>,
    /// GPUs for each task, of one type if given: 1, k40m:1 (the types: `sinfo -o %G`).
    /// Example: `gangway batch -n 2 --gpus-per-task=k40m:1 job.sh`.
    #[arg(long, value_name = "[TYPE:]N")]
    pub gpus_per_task: Option<GpuCount>,
    /// GPUs on each node, of one type if given (needs --ntasks-per-node, to split them among tasks).
    #[arg(long, value_name = "[TYPE:]N")]
    pub gpus_per_node: Option<GpuCount>,
    /// Generic resources: GPUs per node, gpu, gpu:N or gpu:TYPE:N, e.g. gpu:2 or gpu:a100:2 (a type
    /// matches GPUs whose model's first word with digits is it: "Tesla K40m" is k40m).
    #[arg(long, value_name = "gpu[:TYPE][:N]", value_parser = gres_gpus)]
    pub gres: Option<GpuCount>,
    /// GPUs in all, of one type if given (split evenly among the tasks): 4, a100:4.
    #[arg(short = 'G', long, value_name = "[TYPE:]N")]
    pub gpus: Option<GpuCount>,
    /// Whole nodes: no other job shares them.
    #[arg(long)]
    pub exclusive: bool,
    /// Partition (default: the cluster's default one).
    #[arg(short = 'p', long, value_name = "NAME")]
    pub partition: Option<String>,
    /// Time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
    #[arg(short = 't', long, value_name = "TIME")]
    pub time: Option<TimeLimit>,
    /// Nodes the job must use (hostlist: node[1-3]).
    #[arg(short = 'w', long, value_name = "LIST")]
    pub nodelist: Option<String>,
    /// Nodes the job must not use.
    #[arg(short = 'x', long, value_name = "LIST")]
    pub exclude: Option<String>,
    /// Account charged for the job (default: your default account; see `gangway share`).
    #[arg(short = 'A', long, value_name = "NAME")]
    pub account: Option<String>,
    /// Quality of service (default: the cluster's default QOS; docs/scheduling.md).
    #[arg(short = 'q', long, value_name = "NAME")]
    pub qos: Option<String>,
    /// Lower the job's priority by N points (bare --nice: 100; below 0: administrators only).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100", allow_negative_numbers = true)]
    pub nice: Option<i32>,
    /// Job name (default: the command's or script's name).
    #[arg(short = 'J', long, value_name = "NAME")]
    pub job_name: Option<String>,
    /// Submit held: it waits until `gangway release`.
    #[arg(short = 'H', long)]
    pub hold: bool,
    /// Start after other jobs: afterok:ID[:ID...], afternotok:, afterany:, after:ID[+MIN],
    /// aftercorr:, singleton; ',' all must hold, '?' any one suffices.
    /// Example: `-d afterok:$(sbatch --parsable a.sh)`.
    #[arg(short = 'd', long, value_name = "LIST")]
    pub dependency: Option<Dependency>,
    /// yes: cancel the job if its dependency can never be satisfied (default: the cluster's
    /// setting; otherwise it stays pending with the reason DependencyNeverSatisfied).
    #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
    pub kill_on_invalid_dep: Option<bool>,
}

/// `yes`/`no` as Slurm's `--kill-on-invalid-dep` takes them.
pub fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "y" | "1" | "true" => Ok(true),
        "no" | "n" | "0" | "false" => Ok(false),
        _ => Err(format!("'{s}': expected yes or no")),
    }
}

/// A shape flag with a wrong value; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

/// A job's checked shape and constraints (`None`: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobShape {
    pub nodes: Option<NodeRange>,
    pub ntasks: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub mem_per_node: Option<MemorySize>,
    pub mem_per_cpu: Option<MemorySize>,
    pub gpus_per_task: Option<u32>,
    /// The GPUs' type (`--gres=gpu:k40m:1`); `None`: any.
    pub gpu_type: Option<GpuType>,
    pub exclusive: bool,
    pub partition: Option<String>,
    pub time: Option<TimeLimit>,
    pub nodelist: NodeList,
    pub exclude: NodeList,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub nice: i32,
    /// `--dependency` (the protocol carries it beside the shape, in the submission).
    pub dependency: Option<Dependency>,
    pub kill_on_invalid_dep: Option<bool>,
}

impl JobShape {
    /// The shape as the protocol carries it today (bytes, seconds, node names).
    pub fn to_protocol(&self) -> Shape {
        Shape {
            min_nodes: self.nodes.map(|n| n.min),
            max_nodes: self.nodes.and_then(|n| n.max),
            ntasks: self.ntasks,
            ntasks_per_node: self.ntasks_per_node,
            cpus_per_task: self.cpus_per_task,
            mem_per_node: self.mem_per_node.map(MemorySize::bytes),
            mem_per_cpu: self.mem_per_cpu.map(MemorySize::bytes),
            gpus_per_task: self.gpus_per_task,
            gpu_type: self.gpu_type.clone().filter(|_| self.gpus_per_task.is_some_and(|g| g > 0)),
            exclusive: self.exclusive,
            partition: self.partition.clone(),
            time_limit_secs: self.time.map(TimeLimit::protocol_secs),
            nodelist: self.nodelist.names().to_vec(),
            exclude: self.exclude.names().to_vec(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            nice: self.nice,
        }
    }
}

/// `--mem`/`--mem-per-cpu`; the error names the flag and the value.
pub fn memory_flag(flag: &str, value: &str) -> Result<MemorySize, ShapeError> {
    value.parse().map_err(|e| ShapeError(format!("{flag}={value}: {e}")))
}

/// `--nodelist`/`--exclude`; the error names the flag and the value.
pub fn node_list_flag(flag: &str, value: Option<&str>) -> Result<NodeList, ShapeError> {
    match value {
        None => Ok(NodeList::default()),
        Some(s) => s.parse().map_err(|e| ShapeError(format!("{flag}={s}: {e}"))),
    }
}

impl ShapeArgs {
    /// The checked shape; errors name the flag.
    pub fn to_shape(&self) -> Result<JobShape, ShapeError> {
        let usage = ShapeError;
        let nodes = match self.nodes.as_deref() {
            None => None,
            Some(n) => {
                Some(n.parse::<NodeRange>().map_err(|e| usage(format!("--nodes={n}: {e}")))?)
            }
        };
        let min_nodes = nodes.map(|n| n.min);
        let mem =
            |flag: &str, v: &Option<String>| v.as_deref().map(|s| memory_flag(flag, s)).transpose();
        let tasks_per_node = self.ntasks_per_node.or_else(|| match (self.ntasks, min_nodes) {
            (Some(n), Some(m)) if m > 0 && n % m == 0 => Some(n / m),
            // One task is on one node, however many nodes the job may get.
            (None, _) | (Some(1), None) => Some(1),
            _ => None,
        });
        let gpu_type = self.gpu_type()?;
        // Every GPU flag given becomes GPUs per task; given together (as Slurm allows), they
        // must come to the same, else one would silently win.
        let mut shares: Vec<(&str, u32)> = Vec::new();
        if let Some(g) = &self.gpus_per_task {
            shares.push(("--gpus-per-task", g.count));
        }
        for (flag, g) in [("--gpus-per-node", &self.gpus_per_node), ("--gres", &self.gres)] {
            if let Some(g) = g {
                let tpn = tasks_per_node.ok_or_else(|| usage(format!("{flag} needs --ntasks-per-node (or -n a multiple of -N) to split the GPUs among tasks")))?;
                shares.push((flag, even_share(flag, g.count, tpn, "tasks per node")?));
            }
        }
        if let Some(total) = self.gpus.as_ref().map(|g| g.count) {
            let tasks =
                self.ntasks.unwrap_or(min_nodes.unwrap_or(1) * self.ntasks_per_node.unwrap_or(1));
            shares.push(("--gpus", even_share("--gpus", total, tasks, "tasks")?));
        }
        if let Some(((a, x), (b, y))) =
            shares.iter().zip(shares.iter().skip(1)).find(|((_, x), (_, y))| x != y)
        {
            return Err(usage(format!(
                "{a} and {b} ask for different GPUs per task ({x} and {y}); give one of them"
            )));
        }
        let gpus_per_task = shares.first().map(|(_, n)| *n);
        Ok(JobShape {
            nodes,
            ntasks: self.ntasks,
            ntasks_per_node: self.ntasks_per_node,
            cpus_per_task: self.cpus_per_task,
            mem_per_node: mem("--mem", &self.mem)?,
            mem_per_cpu: mem("--mem-per-cpu", &self.mem_per_cpu)?,
            gpus_per_task,
            gpu_type,
            exclusive: self.exclusive,
            partition: self.partition.clone(),
            time: self.time,
            nodelist: node_list_flag("--nodelist", self.nodelist.as_deref())?,
            exclude: node_list_flag("--exclude", self.exclude.as_deref())?,
            account: self.account.clone(),
            qos: self.qos.clone(),
            nice: self.nice.unwrap_or(0),
            dependency: self.dependency.clone(),
            kill_on_invalid_dep: self.kill_on_invalid_dep,
        })
    }
}

impl ShapeArgs {
    /// The one GPU type the GPU flags name, if any; two different ones are refused by name
    /// (a job's GPUs are of one type, or of any).
    fn gpu_type(&self) -> Result<Option<GpuType>, ShapeError> {
        let given = [
            ("--gres", &self.gres),
            ("--gpus", &self.gpus),
            ("--gpus-per-node", &self.gpus_per_node),
            ("--gpus-per-task", &self.gpus_per_task),
        ];
        let mut found: Option<(&str, &GpuCount)> = None;
        for (flag, value) in given {
            let Some(g) = value.as_ref().filter(|g| g.gpu_type.is_some()) else { continue };
            match found {
                Some((first, f)) if f.gpu_type != g.gpu_type => {
                    return Err(ShapeError(format!(
                        "{first}={f} and {flag}={g} name different GPU types; a job's GPUs are of \
                         one type: give the same type, or a count alone for any type"
                    )));
                }
                Some(_) => {}
                None => found = Some((flag, g)),
            }
        }
        Ok(found.and_then(|(_, g)| g.gpu_type.clone()))
    }
}

/// A number of GPUs, of one type if given: what `--gpus*` take (`2`, `k40m:2`) and `--gres`
/// after its `gpu` (Slurm's `gpu[:TYPE][:N]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuCount {
    /// The type (`None`: any).
    pub gpu_type: Option<GpuType>,
    /// How many.
    pub count: u32,
}

impl FromStr for GpuCount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(',') {
            return Err(format!(
                "'{s}' names several GPU kinds; a job's GPUs are of one type (e.g. a100:2), or \
                 of any (a count alone)"
            ));
        }
        let count =
            |n: &str| n.parse::<u32>().map_err(|_| format!("'{n}' is not a number of GPUs"));
        match s.split_once(':') {
            None => Ok(GpuCount { gpu_type: None, count: count(s)? }),
            Some((kind, n)) => {
                let gpu_type = kind.parse::<GpuType>().map_err(|e| e.to_string())?;
                Ok(GpuCount { gpu_type: Some(gpu_type), count: count(n)? })
            }
        }
    }
}

impl fmt::Display for GpuCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.gpu_type {
            Some(t) => write!(f, "{t}:{}", self.count),
            None => write!(f, "{}", self.count),
        }
    }
}

/// Slurm's memory sizes in bytes: a number with an optional K, M, G or T suffix; plain numbers
/// are MiB (for the controller's configuration, which reads the same form).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    s.parse::<MemorySize>().map(MemorySize::bytes).map_err(|e| e.to_string())
}

/// Each task's share of `gpus` among `tasks`. gangway grants GPUs per task, so a count that
/// does not split evenly is refused rather than rounded up (`--gres=gpu:1` with 4 tasks on the
/// node would otherwise ask for 4 GPUs where Slurm lets the tasks share one).
pub(crate) fn even_share(flag: &str, gpus: u32, tasks: u32, what: &str) -> Result<u32, ShapeError> {
    let tasks = tasks.max(1);
    if gpus.is_multiple_of(tasks) {
        return Ok(gpus / tasks);
    }
    Err(ShapeError(format!(
        "{flag}: {gpus} GPU(s) do not split evenly among {tasks} {what}; gangway gives each task \
         its own GPUs (tasks sharing GPUs are not supported yet): ask for a multiple of {tasks}, \
         or use --gpus-per-task"
    )))
}

/// `--gres`: Slurm's `gpu[:TYPE][:N]` (no count: one; `gres/gpu` as `gpu`); other generic
/// resources (`mps`, licences) are refused by name.
pub fn gres_gpus(s: &str) -> Result<GpuCount, String> {
    let rest = s.strip_prefix("gres/").unwrap_or(s);
    if s.contains(',') {
        return Err(format!("'{s}': one generic resource is understood, gpu[:TYPE][:N]"));
    }
    let refused = || format!("only gpu[:TYPE][:N] is understood, not '{s}'");
    let rest = rest.strip_prefix("gpu").ok_or_else(refused)?;
    if rest.is_empty() {
        return Ok(GpuCount { gpu_type: None, count: 1 });
    }
    let rest = rest.strip_prefix(':').ok_or_else(refused)?;
    match rest.split_once(':') {
        Some(_) => rest.parse(),
        // One word: a count, or a type of one GPU.
        None if rest.chars().all(|c| c.is_ascii_digit()) => rest.parse(),
        None => format!("{rest}:1").parse(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn gpu_counts_with_and_without_a_type() {
        let typed = |t: &str, count| GpuCount { gpu_type: Some(t.parse().unwrap()), count };
        let any = |count| GpuCount { gpu_type: None, count };
        assert_eq!("2".parse(), Ok(any(2)));
        assert_eq!("V100:2".parse(), Ok(typed("v100", 2)));
        assert!("two".parse::<GpuCount>().unwrap_err().contains("not a number"));
        assert!("k40m:x".parse::<GpuCount>().unwrap_err().contains("'x' is not a number"));
        assert!("a b:1".parse::<GpuCount>().unwrap_err().contains("not a GPU type name"));
        assert!("a100:1,k40m:1".parse::<GpuCount>().unwrap_err().contains("one type"));
        assert_eq!(gres_gpus("gpu:4"), Ok(any(4)));
        assert_eq!(gres_gpus("gpu"), Ok(any(1)));
        assert_eq!(gres_gpus("gpu:a100:1"), Ok(typed("a100", 1)));
        assert_eq!(gres_gpus("gpu:k40m"), Ok(typed("k40m", 1)));
        assert_eq!(gres_gpus("gres/gpu:k40m:2"), Ok(typed("k40m", 2)));
        assert!(gres_gpus("mps:1").unwrap_err().contains("only gpu[:TYPE][:N]"));
        assert!(gres_gpus("gpus:1").unwrap_err().contains("only gpu[:TYPE][:N]"));
        assert!(gres_gpus("gpu:1,mps:1").unwrap_err().contains("one generic resource"));
        assert_eq!(typed("k40m", 2).to_string(), "k40m:2");
    }

    #[test]
    fn gpus_that_do_not_split_evenly_among_tasks_are_refused() {
        let shape = |args: ShapeArgs| args.to_shape().map(|s| s.gpus_per_task);
        let four_on_one =
            || ShapeArgs { nodes: Some("1".into()), ntasks: Some(4), ..ShapeArgs::default() };
        let one_gpu = Some(gres_gpus("gpu:1").unwrap());
        let err = shape(ShapeArgs { gres: one_gpu.clone(), ..four_on_one() }).unwrap_err();
        assert!(err.to_string().contains("1 GPU(s) do not split evenly among 4"), "{err}");
        let four = Some(gres_gpus("gpu:4").unwrap());
        assert_eq!(shape(ShapeArgs { gres: four, ..four_on_one() }).unwrap(), Some(1));
        let err = shape(ShapeArgs { gpus: Some("3".parse().unwrap()), ..four_on_one() });
        assert!(err.unwrap_err().to_string().starts_with("--gpus: 3 GPU(s)"));
        assert_eq!(
            shape(ShapeArgs { gres: one_gpu.clone(), ..ShapeArgs::default() }).unwrap(),
            Some(1)
        );
        // `sbatch -n 1 --gres=gpu:1`: one task is on one node, whatever -N says.
        let one_task = ShapeArgs { ntasks: Some(1), gres: one_gpu.clone(), ..ShapeArgs::default() };
        assert_eq!(shape(one_task).unwrap(), Some(1));
        let two_tasks = ShapeArgs { ntasks: Some(2), gres: one_gpu, ..ShapeArgs::default() };
        let err = shape(two_tasks).unwrap_err().to_string();
        assert!(err.contains("--gres needs --ntasks-per-node"), "{err}");
        // Flags given together must agree, as neither silently wins.
        let both = ShapeArgs {
            gres: Some(gres_gpus("gpu:8").unwrap()),
            gpus_per_node: Some("4".parse().unwrap()),
            ..four_on_one()
        };
        let err = shape(both).unwrap_err().to_string();
        assert!(
            err.contains("--gpus-per-node and --gres ask for different GPUs per task (1 and 2)"),
            "{err}"
        );
        let agreeing = ShapeArgs {
            gpus: Some("8".parse().unwrap()),
            gpus_per_task: Some("2".parse().unwrap()),
            ..four_on_one()
        };
        assert_eq!(shape(agreeing).unwrap(), Some(2));
    }

    #[test]
    fn typed_gpu_flags_give_the_shape_one_type() {
        let shape = |args: ShapeArgs| args.to_shape();
        let s = shape(ShapeArgs {
            ntasks_per_node: Some(2),
            gres: Some(gres_gpus("gpu:k40m:2").unwrap()),
            ..ShapeArgs::default()
        })
        .unwrap()
        .to_protocol();
        assert_eq!(
            (s.gpus_per_task, s.gpu_type.as_ref().map(GpuType::as_str)),
            (Some(1), Some("k40m"))
        );
        let s = shape(ShapeArgs {
            ntasks: Some(4),
            gpus: Some("a100:4".parse().unwrap()),
            gpus_per_task: Some("1".parse().unwrap()),
            ..ShapeArgs::default()
        })
        .unwrap();
        assert_eq!((s.gpus_per_task, s.gpu_type.map(String::from)), (Some(1), Some("a100".into())));
        let err = shape(ShapeArgs {
            gpus: Some("a100:1".parse().unwrap()),
            gpus_per_task: Some("k40m:1".parse().unwrap()),
            ..ShapeArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--gpus=a100:1 and --gpus-per-task=k40m:1 name different GPU types"),
            "{err}"
        );
        // The type travels in the submission (and the store's copy of it); older records,
        // without it, read as untyped.
        let typed =
            shape(ShapeArgs { gpus: Some("a100:1".parse().unwrap()), ..ShapeArgs::default() })
                .unwrap()
                .to_protocol();
        let json = serde_json::to_string(&typed).unwrap();
        assert!(json.contains(r#""gpu_type":"a100""#), "{json}");
        assert_eq!(serde_json::from_str::<crate::protocol::Shape>(&json).unwrap(), typed);
        let old = json.replace(r#","gpu_type":"a100""#, "");
        assert_eq!(serde_json::from_str::<crate::protocol::Shape>(&old).unwrap().gpu_type, None);
        // A type with no GPUs asks for none.
        let s = shape(ShapeArgs {
            gpus_per_task: Some("k40m:0".parse().unwrap()),
            ..ShapeArgs::default()
        });
        assert_eq!(s.unwrap().to_protocol().gpu_type, None);
    }

    #[test]
    fn memory_sizes_for_the_configuration() {
        assert_eq!(parse_memory("4G"), Ok(4 << 30));
        assert_eq!(parse_memory("4X"), Err("unknown unit 'X' (use K, M, G or T)".into()));
    }

    #[test]
    fn shape_flags_become_the_protocols_shape() {
        let args = ShapeArgs {
            nodes: Some("2-4".into()),
            ntasks: Some(8),
            mem: Some("1G".into()),
            time: Some("0".parse().unwrap()),
            nodelist: Some("n[1-2]".into()),
            ..ShapeArgs::default()
        };
        let shape = args.to_shape().unwrap().to_protocol();
        assert_eq!((shape.min_nodes, shape.max_nodes), (Some(2), Some(4)));
        assert_eq!(shape.mem_per_node, Some(1 << 30));
        // Given as 0: no limit, which is not the same as not given (the partition's default).
        assert_eq!(shape.time_limit_secs, Some(0));
        assert_eq!(shape.nodelist, ["n1", "n2"]);
        assert_eq!(ShapeArgs::default().to_shape().unwrap().to_protocol().time_limit_secs, None);
    }

    #[test]
    fn bad_shape_flags_name_the_flag() {
        let err = |args: ShapeArgs| args.to_shape().unwrap_err().to_string();
        assert_eq!(
            err(ShapeArgs { nodes: Some("two".into()), ..ShapeArgs::default() }),
            "--nodes=two: expected N or MIN-MAX, e.g. 2 or 2-4"
        );
        assert_eq!(
            err(ShapeArgs { mem: Some("4X".into()), ..ShapeArgs::default() }),
            "--mem=4X: unknown unit 'X' (use K, M, G or T)"
        );
        let parsed = ShapeCheck::try_parse_from(["t", "--gres=fpga:1"]).unwrap_err().to_string();
        assert!(parsed.contains("--gres") && parsed.contains("only gpu[:TYPE][:N]"), "{parsed}");
    }

    #[derive(Debug, clap::Parser)]
    struct ShapeCheck {
        #[command(flatten)]
        shape: ShapeArgs,
    }

    #[test]
    fn typed_flags_parse_as_slurm_spells_them() {
        let args = ShapeCheck::try_parse_from(["t", "-G", "k40m:2", "--gres=gpu:k40m:1"]).unwrap();
        assert_eq!(args.shape.gpus.map(|g| g.to_string()).as_deref(), Some("k40m:2"));
    }
}
