//! `gangway simulate`: replays a workload (an SWF trace, or a generated one) on N simulated
//! nodes in virtual time, through the same scheduler and configuration as the controller, and
//! reports how it went: utilisation, waiting times, bounded slowdown, backfill, and the
//! scheduler's own time per decision and per pass. Reading files, the clock and printing are
//! here; everything else is `gangway_scheduler::sim`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use gangway_launcher::binding::{self, Machine};
use gangway_launcher::time_limit::parse_duration;
use gangway_scheduler::sim::{
    GeneratorConfig, Metrics, SimJob, SimOptions, SimReport, Swf, generate, simulate, svg,
};
use gangway_scheduler::{BackfillMode, Budget, ClusterState, PartitionLimits, SchedulerConfig};

use super::error::CliError;
use crate::controller::config_scheduling::SchedulingConfig;

const EXAMPLES: &str = "\
Examples:
  gangway simulate examples/workloads/sample.swf --nodes 16 --synthetic 'pack:2 core:8 pu:1'
  gangway simulate --generate 10000 --nodes 32 --synthetic 'pack:2 core:4 pu:1' --backfill conservative
  gangway simulate trace.swf --nodes 128 --topology-xml node.xml --config controller.toml --json
  gangway simulate trace.swf --nodes 16 --synthetic 'pack:2 core:8 pu:1' --plot run.svg";

/// Flags of `gangway simulate`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct SimulateArgs {
    /// The workload to replay, in the Standard Workload Format (one job per line).
    #[arg(
        value_name = "TRACE.swf",
        required_unless_present = "generate",
        conflicts_with = "generate"
    )]
    pub trace: Option<PathBuf>,

    /// Generate a workload of JOBS jobs instead (Lublin–Feitelson model; see --seed, --load).
    #[arg(long, value_name = "JOBS")]
    pub generate: Option<usize>,

    /// Seed of the generated workload: the same seed gives the same jobs.
    #[arg(long, default_value_t = 1, requires = "generate")]
    pub seed: u64,

    /// Offered load of the generated workload (work over capacity), e.g. 0.85.
    #[arg(long, default_value_t = 0.85, requires = "generate")]
    pub load: f64,

    /// Also write the generated workload to FILE, as SWF.
    #[arg(long, value_name = "FILE", requires = "generate")]
    pub save: Option<PathBuf>,

    /// Number of simulated nodes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub nodes: u32,

    /// Every node is this hwloc synthetic machine, e.g. "pack:2 core:8 pu:1".
    #[arg(
        long,
        value_name = "DESC",
        required_unless_present = "topology_xml",
        conflicts_with = "topology_xml"
    )]
    pub synthetic: Option<String>,

    /// Every node is the machine of this hwloc XML export (`lstopo node.xml`).
    #[arg(long, value_name = "FILE")]
    pub topology_xml: Option<PathBuf>,

    /// Backfill: none (first come, first served), easy or conservative [default: the
    /// configuration's, else easy].
    #[arg(long, value_name = "MODE", value_parser = parse_backfill)]
    pub backfill: Option<BackfillMode>,

    /// The controller's configuration file: its scheduling sections and partition time limits.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,

    /// Draw utilisation and queue length over time and the waiting times to FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// How often (in virtual time) a pass runs while jobs wait, besides the passes on events.
    #[arg(long, value_name = "TIME", default_value = "60s", value_parser = parse_tick)]
    pub tick: Duration,
}

fn parse_backfill(s: &str) -> Result<BackfillMode, String> {
    BackfillMode::parse(s).ok_or_else(|| format!("'{s}': use none, easy or conservative"))
}

fn parse_tick(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
enum SimulateError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Trace { path: PathBuf, source: gangway_scheduler::sim::SwfError },
    #[error("{0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Machine(String),
}

/// Runs the simulation and prints the results; every failure is one of the command line's
/// (a file named on it, a value given).
pub fn main(args: SimulateArgs) -> Result<(), CliError> {
    run(&args).map_err(|e| CliError::Usage(e.to_string()))
}

fn run(args: &SimulateArgs) -> Result<(), SimulateError> {
    let machine = match (&args.topology_xml, &args.synthetic) {
        (Some(path), _) => Machine::XmlFile(path.clone()),
        (None, Some(desc)) => Machine::Synthetic(desc.clone()),
        (None, None) => {
            return Err(SimulateError::Machine("give --synthetic or --topology-xml".into()));
        }
    };
    let model =
        Arc::new(binding::load(&machine).map_err(|e| SimulateError::Machine(e.to_string()))?);
    let (mut config, partition) = match &args.config {
        Some(path) => {
            let c =
                SchedulingConfig::load(path).map_err(|e| SimulateError::Config(e.to_string()))?;
            let p = c.partitions.iter().find(|p| p.default).or(c.partitions.first()).cloned();
            (c.scheduler, p)
        }
        None => (SchedulerConfig::default(), None),
    };
    if let Some(b) = args.backfill {
        config.backfill = b;
    }

    let mut cluster = ClusterState::new();
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("sim{i}")).collect();
    for n in &names {
        cluster
            .add_node(n.clone(), Arc::clone(&model))
            .map_err(|e| SimulateError::Machine(e.to_string()))?;
    }
    let mut limits = PartitionLimits::new().default_partition();
    limits.default_time = partition.as_ref().and_then(|p| p.default_time);
    limits.max_time = partition.as_ref().and_then(|p| p.max_time);
    let name = partition.as_ref().map_or("batch", |p| p.name.as_str()).to_owned();
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster
        .add_partition(name, &members, limits)
        .map_err(|e| SimulateError::Machine(e.to_string()))?;
    let cores: u64 = cluster.nodes().iter().map(|n| u64::from(n.total_units())).sum();

    let (jobs, skipped, source) = workload(args, cores)?;
    let options = SimOptions { tick: args.tick, budget: Budget::jobs(10_000) };
    let started = Instant::now();
    let mut clock = || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let backfill = config.backfill;
    let report = simulate(cluster, config, &jobs, &options, Some(&mut clock))
        .map_err(|e| SimulateError::Config(e.to_string()))?;
    let wall = started.elapsed().as_secs_f64();
    let m = Metrics::of(&report);

    if let Some(path) = &args.plot {
        let title = format!(
            "{source}: {} jobs on {} nodes ({} cores), backfill {}",
            m.jobs,
            args.nodes,
            cores,
            backfill.name()
        );
        std::fs::write(path, svg::render(&report, &title))
            .map_err(|source| SimulateError::Write { path: path.clone(), source })?;
    }
    let out = if args.json {
        json(&m, &report, args, cores, skipped, backfill, wall)
    } else {
        text(&m, args, cores, skipped, backfill, wall, &source)
    };
    let _ = writeln!(std::io::stdout().lock(), "{}", out.trim_end());
    Ok(())
}

/// The jobs to replay, how many trace lines were left out, and a name for the workload.
fn workload(
    args: &SimulateArgs,
    cores: u64,
) -> Result<(Vec<SimJob>, usize, String), SimulateError> {
    let swf = match (&args.trace, args.generate) {
        (Some(path), _) => read_trace(path)?,
        (None, Some(n)) => {
            let g = GeneratorConfig {
                jobs: n,
                processors: cores,
                seed: args.seed,
                load: args.load,
                users: 32,
            };
            let swf = generate(&g);
            if let Some(path) = &args.save {
                std::fs::write(path, swf.to_text())
                    .map_err(|source| SimulateError::Write { path: path.clone(), source })?;
            }
            swf
        }
        (None, None) => {
            return Err(SimulateError::Config("give a trace or --generate JOBS".into()));
        }
    };
    let (jobs, skipped) = swf.sim_jobs(cores);
    let source = match &args.trace {
        Some(p) => p
            .file_name()
            .map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into_owned()),
        None => format!("generated (seed {})", args.seed),
    };
    Ok((jobs, skipped, source))
}

fn read_trace(path: &Path) -> Result<Swf, SimulateError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SimulateError::Read { path: path.to_owned(), source })?;
    Swf::parse(&text).map_err(|source| SimulateError::Trace { path: path.to_owned(), source })
}

fn json(
    m: &Metrics,
    report: &SimReport,
    args: &SimulateArgs,
    cores: u64,
    skipped: usize,
    backfill: BackfillMode,
    wall: f64,
) -> String {
    let value = serde_json::json!({
        "jobs": m.jobs,
        "completed": m.completed,
        "rejected": m.rejected,
        "never_started": m.never_started,
        "skipped_trace_lines": skipped,
        "nodes": args.nodes,
        "cores": cores,
        "backfill": backfill.name(),
        "utilisation": m.utilisation,
        "mean_wait_s": m.mean_wait_s,
        "median_wait_s": m.median_wait_s,
        "p95_wait_s": m.p95_wait_s,
        "mean_bounded_slowdown": m.mean_bounded_slowdown,
        "backfilled": m.backfilled,
        "preemptions": m.preemptions,
        "decisions": m.decisions,
        "passes": report.pass_times.len(),
        "p99_decision_us": m.p99_decision_us,
        "max_pass_ms": m.max_pass_ms,
        "span_s": m.span_s,
        "wall_s": wall,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn text(
    m: &Metrics,
    args: &SimulateArgs,
    cores: u64,
    skipped: usize,
    backfill: BackfillMode,
    wall: f64,
    source: &str,
) -> String {
    let hours = |s: f64| s / 3600.0;
    let mut out = format!(
        "{source}: {} jobs ({} completed, {} refused, {} never started{}) on {} nodes, {cores} cores, backfill {}\n",
        m.jobs,
        m.completed,
        m.rejected,
        m.never_started,
        if skipped > 0 {
            format!(", {skipped} trace lines without run time or size left out")
        } else {
            String::new()
        },
        args.nodes,
        backfill.name(),
    );
    out += &format!(
        "  utilisation           {:.1}% over {:.1} h\n",
        m.utilisation * 100.0,
        hours(m.span_s)
    );
    out += &format!(
        "  wait                  mean {:.0} s, median {:.0} s, p95 {:.0} s\n",
        m.mean_wait_s, m.median_wait_s, m.p95_wait_s
    );
    out += &format!(
        "  bounded slowdown      {:.2} (mean; runs under 10 s count as 10 s)\n",
        m.mean_bounded_slowdown
    );
    out += &format!("  backfilled            {} jobs\n", m.backfilled);
    if m.preemptions > 0 {
        out += &format!("  preemptions           {}\n", m.preemptions);
    }
    out += &format!(
        "  scheduler             {} decisions, p99 {:.1} µs per decision, longest pass {:.2} ms\n",
        m.decisions, m.p99_decision_us, m.max_pass_ms
    );
    out += &format!("  wall time             {wall:.2} s\n");
    out
}
