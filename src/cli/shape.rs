//! The job-shape flags `alloc` and `batch` share (Slurm's spelling), checked into a
//! [`Shape`]; plus the memory-size and node-count forms they use.

use clap::Args;
use gangway_launcher::nodes::hostlist;
use gangway_launcher::time_limit::parse_time_limit;

use crate::protocol::Shape;

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
    /// GPUs for each task.
    #[arg(long, value_name = "N")]
    pub gpus_per_task: Option<u32>,
    /// GPUs on each node (needs --ntasks-per-node, to split them among tasks).
    #[arg(long, value_name = "N")]
    pub gpus_per_node: Option<u32>,
    /// Generic resources; only gpu:N (GPUs per node) is understood.
    #[arg(long, value_name = "gpu:N")]
    pub gres: Option<String>,
    /// GPUs in all (split evenly among the tasks).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Whole nodes: no other job shares them.
    #[arg(long)]
    pub exclusive: bool,
    /// Partition (default: the cluster's default one).
    #[arg(short = 'p', long, value_name = "NAME")]
    pub partition: Option<String>,
    /// Time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
    #[arg(short = 't', long, value_name = "TIME", value_parser = crate::cli::directives::valid_time_limit)]
    pub time: Option<String>,
    /// Nodes the job must use (hostlist: node[1-3]).
    #[arg(short = 'w', long, value_name = "LIST")]
    pub nodelist: Option<String>,
    /// Nodes the job must not use.
    #[arg(short = 'x', long, value_name = "LIST")]
    pub exclude: Option<String>,
    /// Job name (default: the command's or script's name).
    #[arg(short = 'J', long, value_name = "NAME")]
    pub job_name: Option<String>,
    /// Submit held: it waits until `gangway release`.
    #[arg(short = 'H', long)]
    pub hold: bool,
    /// Start after other jobs (not supported yet; refused so a script never runs early).
    #[arg(short = 'd', long, value_name = "LIST")]
    pub dependency: Option<String>,
}

impl ShapeArgs {
    /// The checked shape; errors name the flag.
    pub fn to_shape(&self) -> Result<Shape, String> {
        if let Some(d) = &self.dependency {
            return Err(format!(
                "--dependency={d}: job dependencies are not supported yet; submit the later job when the first has ended"
            ));
        }
        let (min_nodes, max_nodes) = match &self.nodes {
            None => (None, None),
            Some(n) => {
                let (a, b) = parse_node_range(n)?;
                (Some(a), b)
            }
        };
        let mem = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| parse_memory(s).map_err(|e| format!("{flag}={s}: {e}")))
                .transpose()
        };
        let tasks_per_node = self.ntasks_per_node.or_else(|| match (self.ntasks, min_nodes) {
            (Some(n), Some(m)) if m > 0 && n % m == 0 => Some(n / m),
            (None, _) => Some(1),
            _ => None,
        });
        let per_node_gpus = match (&self.gres, self.gpus_per_node) {
            (Some(g), _) => Some(
                g.strip_prefix("gpu:")
                    .and_then(|n| n.rsplit(':').next())
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(|| format!("--gres={g}: only gpu:N is understood"))?,
            ),
            (None, n) => n,
        };
        let mut gpus_per_task = self.gpus_per_task;
        if let Some(g) = per_node_gpus {
            let tpn = tasks_per_node.ok_or("--gpus-per-node/--gres needs --ntasks-per-node (or -n a multiple of -N) to split the GPUs among tasks")?;
            gpus_per_task = Some(g.div_ceil(tpn.max(1)));
        }
        if let Some(total) = self.gpus {
            let tasks =
                self.ntasks.unwrap_or(min_nodes.unwrap_or(1) * self.ntasks_per_node.unwrap_or(1));
            gpus_per_task = Some(total.div_ceil(tasks.max(1)));
        }
        let list = |flag: &str, v: &Option<String>| -> Result<Vec<String>, String> {
            match v {
                None => Ok(Vec::new()),
                Some(s) => hostlist::expand(s).map_err(|e| format!("{flag}={s}: {e}")),
            }
        };
        Ok(Shape {
            min_nodes,
            max_nodes,
            ntasks: self.ntasks,
            ntasks_per_node: self.ntasks_per_node,
            cpus_per_task: self.cpus_per_task,
            mem_per_node: mem("--mem", &self.mem)?,
            mem_per_cpu: mem("--mem-per-cpu", &self.mem_per_cpu)?,
            gpus_per_task,
            exclusive: self.exclusive,
            partition: self.partition.clone(),
            time_limit_secs: match &self.time {
                None => None,
                Some(t) => Some(
                    parse_time_limit(t)
                        .map_err(|e| format!("--time={t}: {e}"))?
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                ),
            },
            nodelist: list("--nodelist", &self.nodelist)?,
            exclude: list("--exclude", &self.exclude)?,
        })
    }
}

/// `3` or `2-4`.
pub fn parse_node_range(s: &str) -> Result<(u32, Option<u32>), String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| format!("--nodes={s}: expected N or MIN-MAX, e.g. 2 or 2-4"))
    };
    match s.split_once('-') {
        Some((a, b)) => Ok((num(a)?, Some(num(b)?))),
        None => Ok((num(s)?, None)),
    }
}

/// Slurm's memory sizes: a number with an optional K, M, G or T suffix; plain numbers are MiB.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], t[i..].trim_end_matches(['B', 'b'])),
        None => (t, "M"),
    };
    let n: u64 = num.parse().map_err(|_| "expected a size such as 512M, 4G or 1T".to_string())?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "K" => 10,
        "M" | "" => 20,
        "G" => 30,
        "T" => 40,
        other => return Err(format!("unknown unit '{other}' (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| "too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512"), Ok(512 << 20));
        assert_eq!(parse_memory("4G"), Ok(4 << 30));
        assert_eq!(parse_memory("2gb"), Ok(2 << 30));
        assert!(parse_memory("4X").is_err());
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn node_ranges() {
        assert_eq!(parse_node_range("3"), Ok((3, None)));
        assert_eq!(parse_node_range("2-4"), Ok((2, Some(4))));
        assert!(parse_node_range("two").is_err());
    }
}
