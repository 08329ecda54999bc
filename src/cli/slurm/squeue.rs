//! `squeue`: the queue (`Request::Queue`, as `gangway queue` asks it) filtered by Slurm's flags,
//! sorted as Slurm sorts it (`-S`, by default partition, state, then priority highest first),
//! and printed in Slurm's formats (`-o` letters, `-O` names, `-l`, `--start`, `--json`), once
//! or every `-i` seconds.

use std::cmp::Ordering;
use std::ffi::OsString;

use clap::Args;

use super::args::{list, parse};
use super::format::{self, Item, Key};
use super::sort::{self, SortKey, natural};
use super::{iterate, time};
use crate::cli::array_rows;
use crate::cli::begin_time::now_ms;
use crate::cli::error::{CliError, ask};
use crate::cli::query::{clock, short_state};
use crate::cli::user::current_user;
use crate::protocol::{JobInfo, Reply, Request};

/// squeue's default columns.
pub const DEFAULT: &str = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R";
/// `-l`.
pub const LONG: &str = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R";
/// `--start`.
pub const START: &str = "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %R";

/// Slurm's order when `-S` is not given: partition, compact state, priority (highest first).
pub const DEFAULT_SORT: &str = "P,t,-p";
/// The letters squeue's `-S` takes (Slurm's). Those gangway has no figure for (`c d f g G h H
/// I J n O v z`: group, disk, features, sockets, reservation, ...) order nothing, as several
/// already do in Slurm.
const SORT_FIELDS: &str = "BcCdDefgGhHiIjJlLmMnNOpPQStTuUvVz";

/// squeue's flags (Slurm's spellings).
#[derive(Debug, Args)]
pub struct SqueueArgs {
    /// Only these jobs (comma-separated ids).
    #[arg(short = 'j', long = "jobs", value_name = "LIST")]
    jobs: Option<String>,
    /// Only jobs in these partitions.
    #[arg(short = 'p', long = "partition", value_name = "LIST")]
    partition: Option<String>,
    /// Only jobs in these states (PD, R, pending, running, all).
    #[arg(short = 't', long = "states", value_name = "LIST")]
    states: Option<String>,
    /// Only these users' jobs.
    #[arg(short = 'u', long = "user", value_name = "LIST")]
    user: Option<String>,
    /// Only your jobs.
    #[arg(long)]
    me: bool,
    /// Only jobs with these names.
    #[arg(short = 'n', long = "name", value_name = "LIST")]
    name: Option<String>,
    /// Columns as %-letters with widths (%.18i %.9P %j|%T ...).
    #[arg(short = 'o', long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Columns by name (JobID,Name:30,State).
    #[arg(short = 'O', long = "Format", value_name = "FIELDS")]
    format_names: Option<String>,
    /// Pending jobs with their expected start.
    #[arg(long)]
    start: bool,
    /// The long format (state spelled out, time limit).
    #[arg(short = 'l', long)]
    long: bool,
    /// One line per array task (pending ones too), instead of 7_[3-999%50].
    #[arg(short = 'r', long = "array")]
    array: bool,
    /// No header line.
    #[arg(short = 'h', long = "noheader")]
    noheader: bool,
    /// Every partition, hidden ones too (all are shown anyway).
    #[arg(short = 'a', long)]
    all: bool,
    /// JSON: the jobs as the controller reports them.
    #[arg(long)]
    json: bool,
    /// Only jobs on these nodes (node[1-3],node7).
    #[arg(short = 'w', long = "nodelist", value_name = "HOSTLIST")]
    nodelist: Option<String>,
    /// Only jobs charged to these accounts.
    #[arg(short = 'A', long = "account", value_name = "LIST")]
    account: Option<String>,
    /// Only jobs at these QOS.
    #[arg(short = 'q', long = "qos", value_name = "LIST")]
    qos: Option<String>,
    /// Sort by these fields, each after + (ascending) or - (descending): -S -t,i (default P,t,-p).
    #[arg(short = 'S', long = "sort", value_name = "FIELDS", allow_hyphen_values = true)]
    sort: Option<String>,
    /// Print the report again every N seconds, each under the date, until interrupted (Ctrl-C).
    #[arg(short = 'i', long = "iterate", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    iterate: Option<u64>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn command() -> clap::Command {
    SqueueArgs::augment_args(clap::Command::new("squeue").disable_help_flag(true))
        .about("Pending and running jobs, as Slurm's squeue prints them (gangway)")
        .after_help(
            "Examples:\n  squeue -u $USER -S -t,i          pending and running by state, then id\n  squeue -O JobID:10,Name:.30,State  columns by name, with widths\n  squeue -i 5 --me                  your jobs every 5 seconds (Ctrl-C ends it)",
        )
}

/// Runs `squeue`.
pub fn main(args: Vec<OsString>) -> Result<(), CliError> {
    let args: SqueueArgs = parse(command(), "squeue", args)?;
    let keys = sort::parse(args.sort.as_deref().unwrap_or(DEFAULT_SORT), SORT_FIELDS)
        .map_err(CliError::Usage)?;
    let items = if let Some(names) = &args.format_names {
        format::parse_names(names, 20)
    } else {
        format::parse_letters(args.format.as_deref().unwrap_or(if args.start {
            START
        } else if args.long {
            LONG
        } else {
            DEFAULT
        }))
    };
    let report = || -> Result<String, CliError> {
        let jobs = match ask(&Request::Queue)? {
            Reply::Jobs { jobs } => jobs,
            other => return Err(CliError::UnexpectedReply(Box::new(other))),
        };
        let jobs = select(&args, jobs, &current_user())?;
        let mut jobs = by_place_and_charge(&args, jobs)?;
        let now = now_ms();
        sort_jobs(&mut jobs, &keys, now);
        if args.json {
            return Ok(format!("{}\n", serde_json::json!({ "jobs": jobs })));
        }
        Ok(render(&items, &jobs, !args.noheader, now))
    };
    iterate::print("squeue", args.iterate, args.long, !args.noheader && !args.json, report)
}

/// Sorts jobs by `-S` keys, comparing as Slurm's squeue does: a job not started yet sorts by
/// start as if it started in 100 seconds, an unlimited time limit above every limit.
pub fn sort_jobs(jobs: &mut [JobInfo], keys: &[SortKey], now: u64) {
    let used = |j: &JobInfo| {
        j.start_time.map_or(0, |s| j.end_time.unwrap_or(now).saturating_sub(s) / 1000)
    };
    fn first_node(j: &JobInfo) -> &str {
        j.nodes.first().map_or("", String::as_str)
    }
    let memory = |j: &JobInfo| j.shape.mem_per_node.or(j.shape.mem_per_cpu).unwrap_or(0);
    let start = |j: &JobInfo| match j.start_time {
        None => now + 100_000,
        Some(s) if j.state == "PENDING" => s.max(now),
        Some(s) => s,
    };
    sort::sort_by(jobs, keys, |a, b, k| match k.field {
        'B' | 'N' => natural(first_node(a), first_node(b)),
        'C' => a.cpus.cmp(&b.cpus),
        'D' => node_count(a).cmp(&node_count(b)),
        'e' => a.end_time.cmp(&b.end_time),
        'i' => array_rows::order_key(a).cmp(&array_rows::order_key(b)),
        'j' => a.name.cmp(&b.name),
        'l' => a.time_limit.unwrap_or(u64::MAX).cmp(&b.time_limit.unwrap_or(u64::MAX)),
        'L' => {
            let left = |j: &JobInfo| j.time_limit.map_or(u64::MAX, |l| l.saturating_sub(used(j)));
            left(a).cmp(&left(b))
        }
        'm' => memory(a).cmp(&memory(b)),
        'M' => used(a).cmp(&used(b)),
        'p' | 'Q' => a.priority.cmp(&b.priority),
        'P' => a.partition.cmp(&b.partition),
        'S' => start(a).cmp(&start(b)),
        't' => short_state(&a.state).cmp(short_state(&b.state)),
        'T' => a.state.cmp(&b.state),
        'u' => a.user.cmp(&b.user),
        'U' => a.uid.cmp(&b.uid),
        'V' => a.submit_time.cmp(&b.submit_time),
        _ => Ordering::Equal,
    });
}

/// The jobs the flags select.
fn select(args: &SqueueArgs, jobs: Vec<JobInfo>, me: &str) -> Result<Vec<JobInfo>, CliError> {
    let jobs = match &args.jobs {
        None => jobs,
        Some(l) => {
            let ids =
                array_rows::addresses(&format!("-j {l}"), &list(l)).map_err(CliError::Usage)?;
            array_rows::select(&ids, jobs)
        }
    };
    let jobs = if args.array { array_rows::one_line_per_task(jobs) } else { jobs };
    let partitions = args.partition.as_deref().map(list);
    let users = args.user.as_deref().map(list);
    let names = args.name.as_deref().map(list);
    let states: Option<Vec<String>> =
        args.states.as_deref().map(|s| list(s).iter().map(|x| x.to_ascii_uppercase()).collect());
    Ok(jobs
        .into_iter()
        .filter(|j| partitions.as_ref().is_none_or(|p| p.contains(&j.partition)))
        .filter(|j| users.as_ref().is_none_or(|u| u.contains(&j.user)))
        .filter(|j| !args.me || j.user == me)
        .filter(|j| names.as_ref().is_none_or(|n| n.contains(&j.name)))
        .filter(|j| {
            states.as_ref().is_none_or(|s| {
                s.iter().any(|x| x == "ALL" || *x == j.state || x == short_state(&j.state))
            })
        })
        .filter(|j| !args.start || j.state == "PENDING")
        .collect())
}

/// `-w`, `-A`, `-q`: the jobs on these nodes, charged to these accounts, at these QOS.
fn by_place_and_charge(args: &SqueueArgs, jobs: Vec<JobInfo>) -> Result<Vec<JobInfo>, CliError> {
    let nodes = match &args.nodelist {
        Some(l) => Some(
            gangway_launcher::nodes::hostlist::expand(l)
                .map_err(|e| CliError::Usage(format!("--nodelist {l}: {e}")))?,
        ),
        None => None,
    };
    let accounts = args.account.as_deref().map(list);
    let qos = args.qos.as_deref().map(list);
    let account = |j: &JobInfo| {
        j.sched.as_ref().map(|s| s.account.clone()).or(j.shape.account.clone()).unwrap_or_default()
    };
    let qos_of = |j: &JobInfo| {
        j.sched.as_ref().map(|s| s.qos.clone()).or(j.shape.qos.clone()).unwrap_or_default()
    };
    Ok(jobs
        .into_iter()
        .filter(|j| nodes.as_ref().is_none_or(|n| j.nodes.iter().any(|x| n.contains(x))))
        .filter(|j| accounts.as_ref().is_none_or(|a| a.contains(&account(j))))
        .filter(|j| qos.as_ref().is_none_or(|q| q.contains(&qos_of(j))))
        .collect())
}

/// The table (pure, for snapshots).
pub fn render(items: &[Item], jobs: &[JobInfo], header: bool, now: u64) -> String {
    let head = |k: &Key| heading(k).to_string();
    format::render(items, jobs, header.then_some(&head as &dyn Fn(&Key) -> String), |j, k| {
        value(j, k, now)
    })
}

/// A `-O` name as its `-o` letter.
fn letter(key: &Key) -> Option<char> {
    Some(match key {
        Key::Letter(c) => *c,
        Key::Name(n) => match n.as_str() {
            "jobid" => 'i',
            "arrayjobid" => 'F',
            "arraytaskid" => 'K',
            "jobarrayid" => 'i',
            "name" => 'j',
            "username" | "user" => 'u',
            "userid" => 'U',
            "state" => 'T',
            "statecompact" => 't',
            "timeused" => 'M',
            "timelimit" => 'l',
            "timeleft" => 'L',
            "numnodes" => 'D',
            "numcpus" => 'C',
            "numtasks" => 'n',
            "nodelist" => 'N',
            "reason" => 'r',
            "reasonlist" => 'R',
            "partition" => 'P',
            "starttime" => 'S',
            "endtime" => 'e',
            "submittime" => 'V',
            "workdir" => 'Z',
            "command" => 'o',
            "priority" => 'Q',
            "cpuspertask" | "cpus-per-task" => 'c',
            "minmemory" => 'm',
            "stdout" => 'O',
            "stderr" => 'E',
            "account" => 'a',
            "qos" => 'q',
            "tres-per-node" | "gres" => 'b',
            _ => return None,
        },
    })
}

fn heading(key: &Key) -> &'static str {
    match letter(key) {
        Some('i') => "JOBID",
        Some('F') => "ARRAY_JOB_ID",
        Some('K') => "ARRAY_TASK_ID",
        Some('A') => "JOBID",
        Some('j') => "NAME",
        Some('u') => "USER",
        Some('U') => "UID",
        Some('T') => "STATE",
        Some('t') => "ST",
        Some('M') => "TIME",
        Some('l') => "TIME_LIMIT",
        Some('L') => "TIME_LEFT",
        Some('D') => "NODES",
        Some('C') => "CPUS",
        Some('n') => "TASKS",
        Some('N') => "NODELIST",
        Some('r') => "REASON",
        Some('R') => "NODELIST(REASON)",
        Some('P') => "PARTITION",
        Some('S') => "START_TIME",
        Some('e') => "END_TIME",
        Some('V') => "SUBMIT_TIME",
        Some('Z') => "WORK_DIR",
        Some('o') => "COMMAND",
        Some('Q') => "PRIORITY",
        Some('c') => "MIN_CPUS",
        Some('m') => "MIN_MEMORY",
        Some('O') => "STDOUT",
        Some('E') => "STDERR",
        Some('a') => "ACCOUNT",
        Some('q') => "QOS",
        Some('b') => "TRES_PER_NODE",
        _ => "N/A",
    }
}

/// The nodes a job has, or asks for while it waits.
fn node_count(j: &JobInfo) -> usize {
    if j.nodes.is_empty() { j.shape.min_nodes.unwrap_or(1) as usize } else { j.nodes.len() }
}

fn nodelist(j: &JobInfo) -> String {
    gangway_launcher::nodes::hostlist::compress(&j.nodes).unwrap_or_else(|_| j.nodes.join(","))
}

fn value(j: &JobInfo, key: &Key, now: u64) -> String {
    let used =
        j.start_time.map(|s| (j.end_time.unwrap_or(now).saturating_sub(s)) / 1000).unwrap_or(0);
    let Some(c) = letter(key) else { return "N/A".into() };
    match c {
        'i' => j.label(),
        'A' => j.id.to_string(),
        'F' => j.array.as_ref().map_or(j.id, |a| a.job).to_string(),
        'K' => match &j.array {
            Some(a) => match (a.task, &a.pending) {
                (Some(i), _) => i.to_string(),
                (None, Some(p)) => match a.throttle {
                    Some(t) => format!("{p}%{t}"),
                    None => p.to_string(),
                },
                (None, None) => "N/A".into(),
            },
            None => "N/A".into(),
        },
        'j' => j.name.clone(),
        'u' => j.user.clone(),
        'U' => j.uid.to_string(),
        'T' => j.state.clone(),
        't' => short_state(&j.state).into(),
        'M' => clock(used),
        'l' => j.time_limit.map(clock).unwrap_or_else(|| "UNLIMITED".into()),
        'L' => match j.time_limit {
            Some(limit) => clock(limit.saturating_sub(used)),
            None => "UNLIMITED".into(),
        },
        'D' => node_count(j).to_string(),
        'C' => j.cpus.to_string(),
        'n' => j.ntasks.to_string(),
        'N' => nodelist(j),
        'r' => j.reason.clone(),
        'R' if j.state == "PENDING" => format!("({})", j.reason),
        'R' => nodelist(j),
        'P' => j.partition.clone(),
        'S' if j.start_time.is_none() => "N/A".into(),
        'S' => time::local(j.start_time),
        'e' if j.end_time.is_none() => "N/A".into(),
        'e' => time::local(j.end_time),
        'V' => time::local(Some(j.submit_time)),
        'Z' => j.cwd.clone(),
        'o' => j.command.clone(),
        'Q' => j.priority.to_string(),
        'a' => j
            .sched
            .as_ref()
            .map(|s| s.account.clone())
            .or(j.shape.account.clone())
            .unwrap_or_else(|| "(null)".into()),
        'q' => j
            .sched
            .as_ref()
            .map(|s| s.qos.clone())
            .or(j.shape.qos.clone())
            .unwrap_or_else(|| "normal".into()),
        'c' => j.shape.cpus_per_task.unwrap_or(1).to_string(),
        'm' => j
            .shape
            .mem_per_node
            .map(|b| format!("{}M", b >> 20))
            .or(j.shape.mem_per_cpu.map(|b| format!("{}M", b >> 20)))
            .unwrap_or_else(|| "0".into()),
        'b' => super::tres::per_node(j).unwrap_or_else(|| "N/A".into()),
        'O' => j.output.clone().unwrap_or_default(),
        'E' => j.error.clone().or(j.output.clone()).unwrap_or_default(),
        _ => "N/A".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shape;

    fn job(id: u64, name: &str, state: &str, nodes: &[&str]) -> JobInfo {
        JobInfo {
            name: name.into(),
            user: "alice".into(),
            uid: 1000,
            reason: if state == "PENDING" { "Resources".into() } else { "None".into() },
            partition: "batch".into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            ntasks: 6,
            cpus: 12,
            start_time: (state == "RUNNING").then_some(1_000),
            time_limit: Some(3600),
            priority: 100,
            command: "job.sh".into(),
            cwd: "/home/alice".into(),
            shape: Shape { min_nodes: Some(3), cpus_per_task: Some(2), ..Shape::default() },
            ..crate::cli::array_rows::test_line(id, state, None)
        }
    }

    fn jobs() -> Vec<JobInfo> {
        vec![
            job(7, "hybrid-mpi-openmp", "RUNNING", &["node1", "node2", "node3"]),
            job(8, "post", "PENDING", &[]),
        ]
    }

    #[test]
    fn default_columns() {
        let out = render(&format::parse_letters(DEFAULT), &jobs(), true, 66_000);
        insta::assert_snapshot!(out);
    }

    #[test]
    fn long_columns() {
        let out = render(&format::parse_letters(LONG), &jobs(), true, 66_000);
        insta::assert_snapshot!(out);
    }

    #[test]
    fn custom_separator_and_field_names() {
        let out = render(&format::parse_letters("%i|%T|%j|%D"), &jobs(), false, 0);
        assert_eq!(out, "7|RUNNING|hybrid-mpi-openmp|3\n8|PENDING|post|3\n");
        let out =
            render(&format::parse_names("JobID:6,Name:.10,State,ReasonList", 20), &jobs(), true, 0);
        insta::assert_snapshot!(out);
    }

    #[test]
    fn sort_keys_order_as_slurms_squeue() {
        let mut jobs = jobs();
        let mut third = job(9, "zz-first-by-name", "PENDING", &[]);
        third.priority = 500;
        jobs.push(third);
        let ids = |jobs: &mut Vec<JobInfo>, spec: &str| {
            let keys = sort::parse(spec, SORT_FIELDS).unwrap();
            sort_jobs(jobs, &keys, 66_000);
            jobs.iter().map(|j| j.id).collect::<Vec<_>>()
        };
        // Slurm's default: pending (PD) before running (R), the higher priority first.
        assert_eq!(ids(&mut jobs, DEFAULT_SORT), [9, 8, 7]);
        assert_eq!(ids(&mut jobs, "i"), [7, 8, 9]);
        assert_eq!(ids(&mut jobs, "-t,i"), [7, 8, 9]);
        assert_eq!(ids(&mut jobs, "-t,-i"), [7, 9, 8]);
        assert_eq!(ids(&mut jobs, "-j"), [9, 8, 7]);
        assert_eq!(ids(&mut jobs, "S,i"), [7, 8, 9], "not started: as if in 100 s");
        // A field gangway has no figure for orders nothing: the next key decides.
        assert_eq!(ids(&mut jobs, "v,-i"), [9, 8, 7]);
        assert!(sort::parse("-t,%", SORT_FIELDS).is_err());
    }

    #[test]
    fn a_sort_starting_with_a_minus_is_the_value_of_s() {
        let m = command().try_get_matches_from(["squeue", "-S", "-t,i", "-h"]).unwrap();
        let args = <SqueueArgs as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!((args.sort.as_deref(), args.noheader), (Some("-t,i"), true));
        assert!(command().try_get_matches_from(["squeue", "-i", "0"]).is_err(), "-i 0 never ends");
    }

    #[test]
    fn nodelist_account_and_qos_select() {
        let mut jobs = jobs();
        jobs[1].shape.account = Some("physics".into());
        jobs[1].shape.qos = Some("urgent".into());
        let ids = |argv: &[&str]| {
            let m = command()
                .try_get_matches_from(std::iter::once("squeue").chain(argv.iter().copied()));
            let args = <SqueueArgs as clap::FromArgMatches>::from_arg_matches(&m.unwrap()).unwrap();
            by_place_and_charge(&args, jobs.clone())
                .map(|js| js.iter().map(|j| j.id).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        };
        assert_eq!(ids(&["-w", "node[2-4]"]), Ok(vec![7]));
        assert_eq!(ids(&["--nodelist=node9"]), Ok(vec![]));
        assert_eq!(ids(&["-A", "physics,chem"]), Ok(vec![8]));
        assert_eq!(ids(&["-q", "normal"]), Ok(vec![]));
        assert_eq!(ids(&["-q", "urgent", "-A", "physics"]), Ok(vec![8]));
        assert!(ids(&["-w", "node[3-"]).unwrap_err().contains("--nodelist node[3-"));
    }
}
