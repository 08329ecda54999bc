//! `sacct`: finished jobs (`Request::History`) and the queue's, with a `.batch` line for each
//! batch script and a `.N` line for each step of the job's current attempt (from the job's
//! recorded events), and with `-D` the earlier attempts of a requeued job (`attempts.rs`), in
//! sacct's layouts: fixed-width columns under a dashed rule, `--parsable2` (`-P`) and
//! `--parsable` (`-p`), `--format` with `Field%width`, `-X`, `-S`/`-E`, `-j`, `--units`.

use std::ffi::OsString;

use clap::Args;

use super::args::{list, parse};
use super::attempts;
use super::scontrol::{batch_exit_code, exit_code};
use super::time::{cpu_time, elapsed, local, parse as parse_time};
use super::units::{Unit, size};
use crate::cli::accounting;
use crate::cli::begin_time::now_ms;
use crate::cli::error::{CliError, ask};
use crate::cli::user::current_user;
use crate::protocol::{JobInfo, JobKind, Reply, Request};

/// Above this many jobs, step lines are left out (each job's steps cost a question).
const MAX_JOBS_WITH_STEPS: usize = 200;

/// sacct's default fields.
pub const DEFAULT: &str = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode";
/// `-b`.
pub const BRIEF: &str = "JobID,State,ExitCode";
/// `-l` (the fields gangway knows).
pub const LONG: &str = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode,Elapsed,Start,End,NNodes,NTasks,NodeList,TotalCPU,MaxRSS";

/// sacct's flags.
#[derive(Debug, Args)]
pub struct SacctArgs {
    /// Only these jobs.
    #[arg(short = 'j', long = "jobs", value_name = "LIST")]
    jobs: Option<String>,
    /// Fields (JobID,JobName%30,State,...).
    #[arg(short = 'o', long = "format", value_name = "FIELDS")]
    format: Option<String>,
    /// Fields separated by '|', no padding, no trailing '|'.
    #[arg(short = 'P', long = "parsable2")]
    parsable2: bool,
    /// Fields separated by '|', with a trailing '|'.
    #[arg(short = 'p', long = "parsable")]
    parsable: bool,
    /// Jobs only, no steps.
    #[arg(short = 'X', long = "allocations")]
    allocations: bool,
    /// Jobs that ran (or were eligible) after this time (default: today 00:00).
    #[arg(short = 'S', long = "starttime", value_name = "TIME")]
    starttime: Option<String>,
    /// Jobs that ran before this time (default: now).
    #[arg(short = 'E', long = "endtime", value_name = "TIME")]
    endtime: Option<String>,
    /// Only these users' jobs (default: yours).
    #[arg(short = 'u', long = "user", value_name = "LIST")]
    user: Option<String>,
    /// Every user's jobs.
    #[arg(short = 'a', long = "allusers")]
    allusers: bool,
    /// Only jobs with these names.
    #[arg(long = "name", value_name = "LIST")]
    name: Option<String>,
    /// Only jobs in these states.
    #[arg(short = 's', long = "state", value_name = "LIST")]
    state: Option<String>,
    /// Only jobs in these partitions.
    #[arg(short = 'r', long = "partition", value_name = "LIST")]
    partition: Option<String>,
    /// JobID, State, ExitCode.
    #[arg(short = 'b', long)]
    brief: bool,
    /// More fields.
    #[arg(short = 'l', long)]
    long: bool,
    /// No header.
    #[arg(short = 'n', long = "noheader")]
    noheader: bool,
    /// JSON: the jobs as the controller reports them.
    #[arg(long)]
    json: bool,
    /// Sizes (MaxRSS, ReqMem) in this unit: K, M, G, T or P (default: the largest exact one).
    #[arg(long = "units", value_name = "K|M|G|T|P")]
    units: Option<Unit>,
    /// Every attempt of a requeued job, each on lines of its own (default: the last only).
    #[arg(short = 'D', long = "duplicates")]
    duplicates: bool,
    /// Every cluster's jobs: gangway runs one cluster, so the same as without it.
    #[arg(short = 'L', long = "allclusters")]
    allclusters: bool,
}

/// One sacct line: a job, its batch script, or one of its steps.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub job: &'a JobInfo,
    pub batch_step: bool,
    pub step: Option<&'a StepRecord>,
}

/// A step as the controller's events record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub step: u32,
    pub command: String,
    pub start: u64,
    /// When it ended, and its exit code when its launcher said it.
    pub end: Option<(u64, Option<i32>)>,
    /// Where it ran (absent from the records of older controllers).
    pub placed: Option<StepPlace>,
}

/// A step's nodes, CPUs and tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlace {
    pub nodelist: String,
    pub nnodes: usize,
    pub cpus: u32,
    pub tasks: u32,
}

/// `N on LIST cpus C tasks T` (or `N` alone, as older controllers wrote it).
fn step_head(head: &str) -> Option<(u32, Option<StepPlace>)> {
    let words: Vec<&str> = head.split(' ').collect();
    let step = words.first()?.parse().ok()?;
    let placed = match words[..] {
        [_, "on", list, "cpus", cpus, "tasks", tasks] => Some(StepPlace {
            nodelist: list.to_string(),
            nnodes: gangway_launcher::nodes::hostlist::expand(list).map_or(1, |n| n.len()),
            cpus: cpus.parse().ok()?,
            tasks: tasks.parse().ok()?,
        }),
        _ => None,
    };
    Some((step, placed))
}

/// The steps in a job's events (`step` and `step_end`, see `handlers::client`).
pub fn steps_of(events: &[(u64, String, String)]) -> Vec<StepRecord> {
    let mut steps: Vec<StepRecord> = Vec::new();
    for (time, kind, detail) in events {
        let Some((head, rest)) = detail.strip_prefix("step ").and_then(|d| d.split_once(": "))
        else {
            continue;
        };
        let Some((step, placed)) = step_head(head) else { continue };
        match kind.as_str() {
            "step" => steps.push(StepRecord {
                step,
                command: rest.into(),
                start: *time,
                end: None,
                placed,
            }),
            "step_end" => {
                if let Some(s) = steps.iter_mut().rev().find(|s| s.step == step && s.end.is_none())
                {
                    let code = rest.strip_prefix("exit ").and_then(|c| c.parse().ok());
                    s.end = Some((*time, code));
                }
            }
            _ => {}
        }
    }
    steps
}

/// Runs `sacct`.
pub fn main(args: Vec<OsString>) -> Result<(), CliError> {
    let command = SacctArgs::augment_args(clap::Command::new("sacct"))
        .about("Accounting of jobs, as Slurm's sacct prints it (gangway)")
        .after_help(
            "Examples:\n  sacct -j 7 -P -o JobID,State,ExitCode,MaxRSS --units=M\n  sacct -j 7 -D -X -o JobID,State,Restarts,NodeList   every attempt of a requeued job",
        );
    let args: SacctArgs = parse(command, "sacct", args)?;
    let now = now_ms();
    let mut jobs = match ask(&Request::History { limit: 10_000 })? {
        Reply::Jobs { jobs } => jobs,
        other => return Err(CliError::UnexpectedReply(Box::new(other))),
    };
    if let Reply::Jobs { jobs: active } = ask(&Request::Queue)? {
        let known: std::collections::HashSet<u64> = jobs.iter().map(|j| j.id).collect();
        jobs.extend(active.into_iter().filter(|a| !known.contains(&a.id)));
    }
    jobs.sort_by_key(crate::cli::array_rows::order_key);
    let jobs = select(&args, jobs, now)?;
    if args.json {
        println!("{}", serde_json::json!({ "jobs": jobs }));
        return Ok(());
    }
    let fields = args.format.clone().unwrap_or_else(|| {
        (if args.brief {
            BRIEF
        } else if args.long {
            LONG
        } else {
            DEFAULT
        })
        .to_string()
    });
    // Steps and earlier attempts come from each job's events: one question per job, so only
    // for a bounded list.
    let bounded = jobs.len() <= MAX_JOBS_WITH_STEPS;
    let events: Vec<Vec<(u64, String, String)>> = jobs
        .iter()
        .map(|j| {
            let steps = !args.allocations && j.start_time.is_some();
            let attempts = args.duplicates && j.attempt > 1;
            if !bounded || !(steps || attempts) {
                return Vec::new();
            }
            match ask(&Request::ShowJob { id: j.id }) {
                Ok(Reply::Job(info)) => info.events,
                _ => Vec::new(),
            }
        })
        .collect();
    let earlier: Vec<Vec<JobInfo>> = jobs
        .iter()
        .zip(&events)
        .map(|(j, ev)| {
            if !args.duplicates {
                return Vec::new();
            }
            attempts::earlier(ev).iter().map(|a| a.record(j)).collect()
        })
        .collect();
    let steps: Vec<Vec<StepRecord>> = events.iter().map(|ev| steps_of(ev)).collect();
    let mut lines: Vec<Line<'_>> = Vec::new();
    for ((j, earlier), steps) in jobs.iter().zip(&earlier).zip(&steps) {
        for record in earlier {
            lines.extend(lines_of(record, steps, args.allocations));
        }
        lines.extend(lines_of(j, steps, args.allocations));
    }
    let units = args.units;
    let layout = if args.parsable2 {
        Layout::Parsable { trailing: false }
    } else if args.parsable {
        Layout::Parsable { trailing: true }
    } else {
        Layout::Columns
    };
    print!("{}", render_in(&fields, &lines, layout, !args.noheader, now, units));
    Ok(())
}

/// A job's (or one earlier attempt's) lines: its own, its batch script's, and the steps that
/// started within it.
fn lines_of<'a>(j: &'a JobInfo, steps: &'a [StepRecord], allocations: bool) -> Vec<Line<'a>> {
    let mut lines = vec![Line { job: j, batch_step: false, step: None }];
    if allocations {
        return lines;
    }
    let Some(start) = j.start_time else { return lines };
    if j.kind == JobKind::Batch {
        lines.push(Line { job: j, batch_step: true, step: None });
    }
    let within = |s: &&StepRecord| s.start >= start && j.end_time.is_none_or(|e| s.start <= e);
    lines.extend(steps.iter().filter(within).map(|s| Line {
        job: j,
        batch_step: false,
        step: Some(s),
    }));
    lines
}

/// Today's 00:00, local time.
fn midnight(now: u64) -> u64 {
    let today = super::time::local(Some(now));
    parse_time(today.split('T').next().unwrap_or(""), now).unwrap_or(0)
}

fn select(args: &SacctArgs, jobs: Vec<JobInfo>, now: u64) -> Result<Vec<JobInfo>, CliError> {
    let time = |v: &str| parse_time(v, now).map_err(CliError::Usage);
    let ids = match &args.jobs {
        None => None,
        Some(l) => Some(
            crate::cli::array_rows::addresses(&format!("-j {l}"), &list(l))
                .map_err(CliError::Usage)?,
        ),
    };
    let jobs = match &ids {
        Some(ids) => crate::cli::array_rows::select(ids, jobs),
        None => jobs,
    };
    // As sacct: with -j the time window is open unless given; without, it starts today.
    let start = match (&args.starttime, &ids) {
        (Some(s), _) => time(s)?,
        (None, Some(_)) => 0,
        (None, None) => midnight(now),
    };
    let end = match &args.endtime {
        Some(e) => time(e)?,
        None => u64::MAX,
    };
    let users = match (&args.user, args.allusers || nix::unistd::getuid().is_root()) {
        (Some(u), _) => Some(list(u)),
        (None, true) => None,
        (None, false) => Some(vec![current_user()]),
    };
    let names = args.name.as_deref().map(list);
    let partitions = args.partition.as_deref().map(list);
    let states: Option<Vec<String>> =
        args.state.as_deref().map(|s| list(s).iter().map(|x| x.to_ascii_uppercase()).collect());
    Ok(jobs
        .into_iter()
        .filter(|j| users.as_ref().is_none_or(|u| u.contains(&j.user)))
        .filter(|j| names.as_ref().is_none_or(|n| n.contains(&j.name)))
        .filter(|j| partitions.as_ref().is_none_or(|p| p.contains(&j.partition)))
        .filter(|j| {
            states.as_ref().is_none_or(|s| {
                s.iter().any(|x| *x == j.state || x == crate::cli::query::short_state(&j.state))
            })
        })
        // Ran (or waited) within the window: ended after its start, submitted before its end.
        .filter(|j| j.end_time.is_none_or(|e| e >= start) && j.submit_time <= end)
        .collect())
}

/// How the lines are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Columns,
    Parsable { trailing: bool },
}

/// A field's name as printed and its default width.
fn known(name: &str) -> Option<(&'static str, usize)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "jobid" => ("JobID", 12),
        "jobidraw" => ("JobIDRaw", 12),
        "jobname" => ("JobName", 10),
        "partition" => ("Partition", 10),
        "account" => ("Account", 10),
        "qos" => ("QOS", 10),
        "alloccpus" => ("AllocCPUS", 10),
        "reqcpus" => ("ReqCPUS", 8),
        "state" => ("State", 10),
        "exitcode" => ("ExitCode", 8),
        "elapsed" => ("Elapsed", 10),
        "elapsedraw" => ("ElapsedRaw", 10),
        "start" => ("Start", 19),
        "end" => ("End", 19),
        "submit" => ("Submit", 19),
        "nodelist" => ("NodeList", 15),
        "nnodes" => ("NNodes", 8),
        "ntasks" => ("NTasks", 8),
        "user" => ("User", 9),
        "uid" => ("UID", 6),
        "timelimit" => ("Timelimit", 10),
        "workdir" => ("WorkDir", 30),
        "totalcpu" => ("TotalCPU", 10),
        "maxrss" => ("MaxRSS", 10),
        "reqmem" => ("ReqMem", 10),
        "restarts" => ("Restarts", 8),
        "reason" => ("Reason", 20),
        _ => return None,
    })
}

/// The fields of a `--format`, each with its width (`Name%20`).
pub fn fields(text: &str) -> Result<Vec<(&'static str, usize)>, CliError> {
    list(text)
        .iter()
        .map(|f| {
            let (name, width) = f.split_once('%').unwrap_or((f, ""));
            let (label, default) = known(name).ok_or_else(|| {
                CliError::Usage(format!(
                    "--format: '{name}' is not a field gangway knows (docs/slurm.md lists them)"
                ))
            })?;
            let width = if width.is_empty() {
                default
            } else {
                width.trim_start_matches('-').parse().map_err(|_| {
                    CliError::Usage(format!("--format: '{f}': the width must be a number"))
                })?
            };
            Ok((label, width))
        })
        .collect()
}

/// CPU time and peak memory of a job (`part` None: all of it) or of one of its parts
/// (`batch`, `step N`), from the agents' reports.
fn usage_of(j: &JobInfo, part: Option<&str>) -> Option<(u64, Option<u64>)> {
    match part {
        None => accounting::job_totals(&j.usage).map(|t| (t.cpu_us(), t.peak)),
        Some(p) => {
            let parts: Vec<_> = j.usage.iter().filter(|u| u.part == p).collect();
            (!parts.is_empty()).then(|| {
                let cpu = parts.iter().map(|u| u.user_us + u.system_us).sum();
                (cpu, parts.iter().filter_map(|u| u.peak_memory).max())
            })
        }
    }
}

/// sacct's `TotalCPU` and `MaxRSS` (counted in K, printed as sacct prints sizes).
fn usage_field(j: &JobInfo, part: Option<&str>, field: &str, units: Option<Unit>) -> String {
    match (field, usage_of(j, part)) {
        ("TotalCPU", Some((cpu, _))) => cpu_time(cpu),
        ("MaxRSS", Some((_, Some(peak)))) => size(peak / 1024, Unit::Kilo, units),
        _ => String::new(),
    }
}

fn step_value(j: &JobInfo, s: &StepRecord, field: &str, now: u64, units: Option<Unit>) -> String {
    let end_ms = s.end.map(|(t, _)| t);
    // The step the kernel's OOM killer struck (its agent's report says so) ended
    // OUT_OF_MEMORY, as Slurm marks it, whatever its exit code.
    let part = format!("step {}", s.step);
    let oom = j.usage.iter().any(|u| u.part == part && u.out_of_memory.is_some());
    let state = match s.end {
        Some(_) if oom => "OUT_OF_MEMORY",
        None if j.state == "RUNNING" => "RUNNING",
        None | Some((_, None)) => "CANCELLED",
        Some((_, Some(0))) => "COMPLETED",
        Some((_, Some(_))) => "FAILED",
    };
    match field {
        "JobID" => format!("{}.{}", j.label(), s.step),
        "JobIDRaw" => format!("{}.{}", j.id, s.step),
        "JobName" => s
            .command
            .split_whitespace()
            .next()
            .map(|w| w.rsplit('/').next().unwrap_or(w).to_string())
            .unwrap_or_default(),
        "State" => state.into(),
        "ExitCode" => match s.end {
            Some((_, Some(c))) if c > 128 => format!("0:{}", c - 128),
            Some((_, Some(c))) => format!("{c}:0"),
            _ => "0:0".into(),
        },
        // A step with no end of its own ended with its job (or its attempt) at the latest.
        "Elapsed" => elapsed(end_ms.or(j.end_time).unwrap_or(now).saturating_sub(s.start) / 1000),
        "ElapsedRaw" => {
            (end_ms.or(j.end_time).unwrap_or(now).saturating_sub(s.start) / 1000).to_string()
        }
        "Start" => local(Some(s.start)),
        "End" => end_ms.map(|t| local(Some(t))).unwrap_or_else(|| "Unknown".into()),
        "UID" => j.uid.to_string(),
        "WorkDir" => j.cwd.clone(),
        "TotalCPU" | "MaxRSS" => usage_field(j, Some(&part), field, units),
        "NodeList" => s.placed.as_ref().map(|p| p.nodelist.clone()).unwrap_or_default(),
        "NNodes" => s.placed.as_ref().map(|p| p.nnodes.to_string()).unwrap_or_default(),
        "AllocCPUS" => s.placed.as_ref().map(|p| p.cpus.to_string()).unwrap_or_default(),
        "NTasks" => s.placed.as_ref().map(|p| p.tasks.to_string()).unwrap_or_default(),
        _ => String::new(),
    }
}

fn value(line: &Line<'_>, field: &str, now: u64, units: Option<Unit>) -> String {
    let j = line.job;
    if let Some(s) = line.step {
        return step_value(j, s, field, now, units);
    }
    let run = j.start_time.map(|s| j.end_time.unwrap_or(now).saturating_sub(s) / 1000).unwrap_or(0);
    let nodelist = || {
        if j.nodes.is_empty() {
            "None assigned".to_string()
        } else if line.batch_step {
            j.nodes[0].clone()
        } else {
            gangway_launcher::nodes::hostlist::compress(&j.nodes)
                .unwrap_or_else(|_| j.nodes.join(","))
        }
    };
    match field {
        "JobID" if line.batch_step => format!("{}.batch", j.label()),
        "JobIDRaw" if line.batch_step => format!("{}.batch", j.id),
        "JobID" => j.label(),
        "JobIDRaw" => j.id.to_string(),
        "JobName" if line.batch_step => "batch".into(),
        "JobName" => j.name.clone(),
        "Partition" if line.batch_step => String::new(),
        "Partition" => j.partition.clone(),
        "Account" => j
            .sched
            .as_ref()
            .map(|s| s.account.clone())
            .or(j.shape.account.clone())
            .unwrap_or_default(),
        "QOS" => {
            j.sched.as_ref().map(|s| s.qos.clone()).or(j.shape.qos.clone()).unwrap_or_default()
        }
        // The batch step has the CPUs of the node its script runs on, as in Slurm.
        "AllocCPUS" if line.batch_step => j
            .cpu_map
            .first()
            .and_then(|(_, list)| gangway_topology::CpuSet::parse_list(list).ok())
            .map(|c| c.len().to_string())
            .unwrap_or_else(|| j.cpus.to_string()),
        "AllocCPUS" | "ReqCPUS" => j.cpus.to_string(),
        // A script its time limit ended was cancelled (by the limit's signal); the job TIMEOUT.
        "State" if line.batch_step && j.state == "TIMEOUT" => "CANCELLED".into(),
        // Slurm names who cancelled a job by uid on its line (not its steps'); the controller
        // records the name, and the user's uid is the same on every node of a cluster.
        "State" if !line.batch_step && j.state == "CANCELLED" => j
            .reason
            .strip_prefix("cancelled by ")
            .and_then(|name| nix::unistd::User::from_name(name).ok().flatten())
            .map(|u| format!("CANCELLED by {}", u.uid))
            .unwrap_or_else(|| j.state.clone()),
        "State" => j.state.clone(),
        "ExitCode" if line.batch_step => batch_exit_code(j),
        "ExitCode" => exit_code(j),
        "Elapsed" => elapsed(run),
        "ElapsedRaw" => run.to_string(),
        "Start" => local(j.start_time),
        "End" if j.end_time.is_none() && j.start_time.is_some() => "Unknown".into(),
        "End" => local(j.end_time),
        "Submit" => local(Some(j.submit_time)),
        "NodeList" => nodelist(),
        "NNodes" if line.batch_step => "1".into(),
        "NNodes" => j.nodes.len().max(1).to_string(),
        "NTasks" if line.batch_step => "1".into(),
        "NTasks" => String::new(),
        "User" if line.batch_step => String::new(),
        "User" => j.user.clone(),
        "UID" => j.uid.to_string(),
        "Timelimit" if line.batch_step => String::new(),
        "Timelimit" => j.time_limit.map(elapsed).unwrap_or_else(|| "UNLIMITED".into()),
        "WorkDir" => j.cwd.clone(),
        "Restarts" => j.attempt.saturating_sub(1).to_string(),
        "Reason" => j.reason.clone(),
        "ReqMem" => j
            .shape
            .mem_per_node
            .map(|b| size(b >> 20, Unit::Mega, units))
            .or(j.shape.mem_per_cpu.map(|b| format!("{}c", size(b >> 20, Unit::Mega, units))))
            .unwrap_or_else(|| "0".into()),
        "TotalCPU" | "MaxRSS" if line.batch_step => usage_field(j, Some("batch"), field, units),
        "TotalCPU" | "MaxRSS" => usage_field(j, None, field, units),
        _ => String::new(),
    }
}

/// The lines in a layout (pure, for snapshots), sizes as sacct prints them by default.
pub fn render(
    fields_text: &str,
    lines: &[Line<'_>],
    layout: Layout,
    header: bool,
    now: u64,
) -> String {
    render_in(fields_text, lines, layout, header, now, None)
}

/// The lines in a layout, sizes in `units` when given.
pub fn render_in(
    fields_text: &str,
    lines: &[Line<'_>],
    layout: Layout,
    header: bool,
    now: u64,
    units: Option<Unit>,
) -> String {
    let fields = match fields(fields_text) {
        Ok(f) => f,
        Err(e) => return format!("{e}\n"),
    };
    let mut out = String::new();
    match layout {
        Layout::Parsable { trailing } => {
            let names: Vec<String> = fields.iter().map(|(n, _)| n.to_string()).collect();
            let head = |n: &str| n.to_string();
            out.push_str(&super::format::render_parsable(
                &names,
                lines,
                header.then_some(&head as &dyn Fn(&str) -> String),
                |l, n| value(l, n, now, units),
                trailing,
            ));
        }
        Layout::Columns => {
            let cell = |text: &str, (name, width): (&str, usize)| {
                let cut: String = text.chars().take(width).collect();
                // sacct: the id and the names on the left, figures on the right.
                if matches!(
                    name,
                    "JobID" | "JobIDRaw" | "JobName" | "NodeList" | "WorkDir" | "User" | "Reason"
                ) {
                    format!("{cut:<width$}")
                } else {
                    format!("{cut:>width$}")
                }
            };
            let row = |texts: Vec<String>| {
                let cells: Vec<String> =
                    texts.iter().zip(&fields).map(|(t, f)| cell(t, *f)).collect();
                format!("{}\n", cells.join(" ").trim_end())
            };
            if header {
                out.push_str(&row(fields.iter().map(|(n, _)| n.to_string()).collect()));
                let rule: Vec<String> = fields.iter().map(|(_, w)| "-".repeat(*w)).collect();
                out.push_str(&format!("{}\n", rule.join(" ")));
            }
            for l in lines {
                out.push_str(&row(fields.iter().map(|(n, _)| value(l, n, now, units)).collect()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, state: &str, code: Option<i32>) -> JobInfo {
        JobInfo {
            name: "hybrid".into(),
            user: "alice".into(),
            uid: 1000,
            partition: "batch".into(),
            nodes: vec!["node1".into(), "node2".into(), "node3".into()],
            ntasks: 6,
            cpus: 12,
            start_time: Some(1_000),
            end_time: code.map(|_| 66_000),
            time_limit: Some(600),
            exit_code: code,
            priority: 1,
            command: "job.sh".into(),
            cwd: "/home/alice".into(),
            ..crate::cli::array_rows::test_line(id, state, None)
        }
    }

    fn lines(jobs: &[JobInfo], steps: bool) -> Vec<Line<'_>> {
        jobs.iter()
            .flat_map(|j| {
                std::iter::once(Line { job: j, batch_step: false, step: None })
                    .chain(steps.then_some(Line { job: j, batch_step: true, step: None }))
            })
            .collect()
    }

    #[test]
    fn default_columns_with_batch_steps() {
        let jobs = [job(7, "COMPLETED", Some(0)), job(8, "FAILED", Some(3))];
        insta::assert_snapshot!(render(DEFAULT, &lines(&jobs, true), Layout::Columns, true, 0));
    }

    #[test]
    fn parsable2_with_widths_ignored() {
        let jobs = [job(7, "COMPLETED", Some(0)), job(9, "RUNNING", None)];
        let out = render(
            "JobID,JobName%30,State,ExitCode,Elapsed,NodeList",
            &lines(&jobs, false),
            Layout::Parsable { trailing: false },
            true,
            121_000,
        );
        assert_eq!(
            out,
            "JobID|JobName|State|ExitCode|Elapsed|NodeList\n7|hybrid|COMPLETED|0:0|00:01:05|node[1-3]\n9|hybrid|RUNNING|0:0|00:02:00|node[1-3]\n"
        );
        let trailing =
            render(BRIEF, &lines(&jobs[..1], true), Layout::Parsable { trailing: true }, false, 0);
        assert_eq!(trailing, "7|COMPLETED|0:0|\n7.batch|COMPLETED|0:0|\n");
    }

    #[test]
    fn steps_come_from_the_jobs_events() {
        let events: Vec<(u64, String, String)> = [
            (2_000, "step", "step 0 on node[1-2] cpus 4 tasks 2: /opt/bin/hello -x"),
            (3_000, "step", "step 1: hostname"),
            (5_000, "step_end", "step 0: exit 0"),
            (6_000, "step_end", "step 1: exit 137"),
            (7_000, "step", "step 2: sleep 9"),
            (8_000, "step_end", "step 2: connection closed"),
        ]
        .iter()
        .map(|(t, k, d)| (*t, k.to_string(), d.to_string()))
        .collect();
        let steps = steps_of(&events);
        assert_eq!(steps.len(), 3);
        let j = job(7, "COMPLETED", Some(0));
        let lines: Vec<Line<'_>> =
            steps.iter().map(|s| Line { job: &j, batch_step: false, step: Some(s) }).collect();
        let out = render(
            "JobID,JobName,State,ExitCode,Elapsed",
            &lines,
            Layout::Parsable { trailing: false },
            false,
            0,
        );
        assert_eq!(
            out,
            "7.0|hello|COMPLETED|0:0|00:00:03\n7.1|hostname|FAILED|0:9|00:00:03\n7.2|sleep|CANCELLED|0:0|00:00:01\n"
        );
        // Where each ran, when the controller recorded it (older records did not).
        let out = render(
            "JobID,NodeList,NNodes,AllocCPUS,NTasks",
            &lines,
            Layout::Parsable { trailing: false },
            false,
            0,
        );
        assert_eq!(out, "7.0|node[1-2]|2|4|2\n7.1||||\n7.2||||\n");
    }

    #[test]
    fn the_step_the_oom_killer_struck_ends_out_of_memory() {
        let events: Vec<(u64, String, String)> = [
            (1_000, "step", "step 0: hog 300"),
            (2_000, "step_end", "step 0: exit 137"),
            (3_000, "step", "step 1: hog 100"),
            (4_000, "step_end", "step 1: exit 0"),
        ]
        .iter()
        .map(|(t, k, d)| (*t, k.to_string(), d.to_string()))
        .collect();
        let steps = steps_of(&events);
        let mut j = job(7, "OUT_OF_MEMORY", Some(0));
        let report = |part: &str, oom: bool| crate::protocol::PartUsage {
            node: "node1".into(),
            part: part.into(),
            user_us: 1000,
            system_us: 0,
            peak_memory: Some(100 << 20),
            memory_limit: Some(100 << 20),
            out_of_memory: oom.then(|| format!("{part} of job 7 on node1 ran out of memory")),
        };
        j.usage = vec![report("step 0", true), report("step 1", false)];
        let lines: Vec<Line<'_>> =
            steps.iter().map(|s| Line { job: &j, batch_step: false, step: Some(s) }).collect();
        let out =
            render("JobID,State,ExitCode", &lines, Layout::Parsable { trailing: false }, false, 0);
        assert_eq!(out, "7.0|OUT_OF_MEMORY|0:9\n7.1|COMPLETED|0:0\n");
    }

    #[test]
    fn usage_fills_total_cpu_and_max_rss_per_line() {
        let part = |node: &str, part: &str, us: u64, peak: u64| crate::protocol::PartUsage {
            node: node.into(),
            part: part.into(),
            user_us: us,
            system_us: 0,
            peak_memory: Some(peak),
            memory_limit: None,
            out_of_memory: None,
        };
        let mut j = job(7, "COMPLETED", Some(0));
        j.usage = vec![
            part("node1", "job", 3_000_000, 4 << 20), // node2 reported only its step (counted too)
            part("node1", "batch", 1_000_000, 1 << 20),
            part("node1", "step 0", 1_500_000, 2 << 20),
            part("node2", "step 0", 500_000, 3 << 20),
        ];
        let step = StepRecord {
            step: 0,
            command: "app".into(),
            start: 1_000,
            end: Some((2_000, Some(0))),
            placed: None,
        };
        let lines = [
            Line { job: &j, batch_step: false, step: None },
            Line { job: &j, batch_step: true, step: None },
            Line { job: &j, batch_step: false, step: Some(&step) },
        ];
        let out =
            render("JobID,TotalCPU,MaxRSS", &lines, Layout::Parsable { trailing: false }, false, 0);
        // As sacct prints sizes: the largest exact unit, or the one --units names.
        // As sacct prints CPU time: milliseconds under an hour, none when they are 0.
        assert_eq!(out, "7|00:03.500|4M\n7.batch|00:00:01|1M\n7.0|00:00:02|3M\n");
        let parsable = Layout::Parsable { trailing: false };
        let out = render_in("JobID,MaxRSS", &lines, parsable, false, 0, Some(Unit::Kilo));
        assert_eq!(out, "7|4096K\n7.batch|1024K\n7.0|3072K\n");
        let out = render_in("MaxRSS", &lines[..1], parsable, false, 0, Some(Unit::Giga));
        assert_eq!(out, "0.00G\n");
    }

    #[test]
    fn a_cancelled_job_names_who_cancelled_it_by_uid_as_slurm() {
        let mut j = job(7, "CANCELLED", None);
        j.reason = "cancelled by root".into();
        let mut never = job(8, "CANCELLED", None);
        never.reason = "DependencyNeverSatisfied".into();
        let lines = [
            Line { job: &j, batch_step: false, step: None },
            Line { job: &j, batch_step: true, step: None },
            Line { job: &never, batch_step: false, step: None },
        ];
        let out = render("JobID,State", &lines, Layout::Parsable { trailing: false }, false, 0);
        assert_eq!(out, "7|CANCELLED by 0\n7.batch|CANCELLED\n8|CANCELLED\n");
    }

    #[test]
    fn duplicates_print_each_attempt_with_its_own_steps() {
        let mut j = job(7, "COMPLETED", Some(0));
        j.start_time = Some(12_000);
        j.end_time = Some(30_000);
        j.attempt = 2;
        let events: Vec<(u64, String, String)> = [
            (2_000, "start", "attempt 1 on node1"),
            (3_000, "step", "step 0: first"),
            (9_000, "requeue", "attempt 2 asked by root"),
            (12_000, "start", "attempt 2 on node1,node2,node3"),
            (13_000, "step", "step 0: second"),
            (14_000, "step_end", "step 0: exit 0"),
        ]
        .iter()
        .map(|(t, k, d)| (*t, k.to_string(), d.to_string()))
        .collect();
        let steps = steps_of(&events);
        let earlier: Vec<JobInfo> =
            attempts::earlier(&events).iter().map(|a| a.record(&j)).collect();
        let mut lines = Vec::new();
        for r in &earlier {
            lines.extend(lines_of(r, &steps, false));
        }
        lines.extend(lines_of(&j, &steps, false));
        let out = render(
            "JobID,JobName,State,Restarts,NodeList,Elapsed",
            &lines,
            Layout::Parsable { trailing: false },
            false,
            0,
        );
        assert_eq!(
            out,
            "7|hybrid|REQUEUED|0|node1|00:00:07\n\
             7.batch|batch|REQUEUED|0|node1|00:00:07\n\
             7.0|first|CANCELLED|||00:00:06\n\
             7|hybrid|COMPLETED|1|node[1-3]|00:00:18\n\
             7.batch|batch|COMPLETED|1|node1|00:00:18\n\
             7.0|second|COMPLETED|||00:00:01\n"
        );
        // Without -D only the last attempt, and only its own steps.
        let out = render(
            "JobID,JobName",
            &lines_of(&j, &steps, false),
            Layout::Parsable { trailing: false },
            false,
            0,
        );
        assert_eq!(out, "7|hybrid\n7.batch|batch\n7.0|second\n");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = fields("JobID,Bogus").unwrap_err();
        assert!(err.to_string().contains("'Bogus'"), "{err}");
    }
}
