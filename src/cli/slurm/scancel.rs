//! `scancel`: `Request::Cancel`, with Slurm's filters (`-u`, `-t`, `-n`, `-p`, `--me`) resolved
//! against the queue first when they narrow more than a user; silent on success, as scancel is.

use std::ffi::OsString;

use clap::Args;

use super::{current_user, list, parse};
use crate::cli::error::{CliError, ask};
use crate::cli::flag_values::Signal;
use crate::cli::query::short_state;
use crate::protocol::{JobInfo, Reply, Request};

/// scancel's flags.
#[derive(Debug, Args)]
pub struct ScancelArgs {
    /// Job ids.
    #[arg(value_name = "JOBID")]
    ids: Vec<String>,
    /// Send this signal instead of ending the jobs (TERM, USR1, 10, ...).
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
    /// Only this user's jobs.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Only your jobs.
    #[arg(long)]
    me: bool,
    /// Only jobs in this state (PENDING, RUNNING, PD, R).
    #[arg(short = 't', long = "state", value_name = "STATE")]
    state: Option<String>,
    /// Only jobs with this name.
    #[arg(short = 'n', long = "name", alias = "jobname", value_name = "NAME")]
    name: Option<String>,
    /// Only jobs in this partition.
    #[arg(short = 'p', long = "partition", value_name = "PARTITION")]
    partition: Option<String>,
    /// Signal only the batch script (gangway signals the job's processes).
    #[arg(short = 'b', long = "batch")]
    batch: bool,
    /// Say nothing (scancel says nothing anyway).
    #[arg(short = 'Q', long = "quiet")]
    quiet: bool,
}

/// Runs `scancel`.
pub fn main(args: Vec<OsString>) -> Result<(), CliError> {
    let command = ScancelArgs::augment_args(clap::Command::new("scancel"))
        .about("Cancel jobs, or signal them (gangway's scancel)");
    let args: ScancelArgs = parse(command, "scancel", args)?;
    let signal = match args.signal.as_deref() {
        None => None,
        Some(s) => {
            Some(s.parse::<Signal>().map_err(|e| CliError::Usage(format!("--signal {s}: {e}")))?)
        }
    };
    let crate::cli::cancel::Named { ids, tasks } = crate::cli::cancel::job_addresses(&args.ids)?;
    let user = if args.me { Some(current_user()) } else { args.user.clone() };
    let narrows = args.state.is_some() || args.name.is_some() || args.partition.is_some();
    if ids.is_empty() && tasks.is_empty() && user.is_none() && !narrows {
        return Err(CliError::Usage("no job identification provided".into()));
    }
    let request = if narrows || (!ids.is_empty() && user.is_some()) {
        let jobs = match ask(&Request::Queue)? {
            Reply::Jobs { jobs } => jobs,
            other => return Err(CliError::UnexpectedReply(Box::new(other))),
        };
        let chosen = select(&args, &ids, user.as_deref(), &jobs);
        if chosen.is_empty() && tasks.is_empty() {
            return Ok(());
        }
        Request::Cancel { ids: chosen, signal, user: None, tasks }
    } else {
        Request::Cancel { ids, signal, user, tasks }
    };
    ask(&request).map(drop)
}

/// The ids of the queued jobs every filter lets through.
fn select(args: &ScancelArgs, ids: &[u64], user: Option<&str>, jobs: &[JobInfo]) -> Vec<u64> {
    let states = args
        .state
        .as_deref()
        .map(|s| list(s).iter().map(|x| x.to_ascii_uppercase()).collect::<Vec<_>>());
    jobs.iter()
        .filter(|j| ids.is_empty() || ids.contains(&j.id))
        .filter(|j| user.is_none_or(|u| j.user == u))
        .filter(|j| args.name.as_ref().is_none_or(|n| &j.name == n))
        .filter(|j| args.partition.as_ref().is_none_or(|p| &j.partition == p))
        .filter(|j| {
            states
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| *x == j.state || x == short_state(&j.state)))
        })
        .map(|j| j.id)
        .collect()
}
