//! `scancel`: `Request::Cancel`, with Slurm's filters (`-u`, `-t`, `-n`, `-p`, `--me`) resolved
//! against the queue first when they narrow more than a user; silent on success, as scancel is.

use std::ffi::OsString;

use clap::Args;

use super::args::{list, parse};
use crate::cli::cancel::Named;
use crate::cli::error::{CliError, ask};
use crate::cli::flag_values::Signal;
use crate::cli::query::short_state;
use crate::cli::user::current_user;
use crate::protocol::{ArrayInfo, JobInfo, Reply, Request};

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
        let mut chosen = select(&args, &ids, user.as_deref(), &jobs);
        chosen.tasks.extend(tasks);
        if chosen.ids.is_empty() && chosen.tasks.is_empty() {
            return Ok(());
        }
        Request::Cancel { ids: chosen.ids, signal, user: None, tasks: chosen.tasks }
    } else {
        Request::Cancel { ids, signal, user, tasks }
    };
    ask(&request).map(drop)
}

/// The queued jobs every filter lets through. An id names an array's tasks too; a filter
/// that picks an array's pending line picks its pending tasks by index, not the array (whose
/// running tasks `-t PENDING` must leave alone).
fn select(args: &ScancelArgs, ids: &[u64], user: Option<&str>, jobs: &[JobInfo]) -> Named {
    let states = args
        .state
        .as_deref()
        .map(|s| list(s).iter().map(|x| x.to_ascii_uppercase()).collect::<Vec<_>>());
    let mut chosen = Named::default();
    let picked = jobs
        .iter()
        .filter(|j| {
            ids.is_empty()
                || ids.contains(&j.id)
                || j.array.as_ref().is_some_and(|a| ids.contains(&a.job))
        })
        .filter(|j| user.is_none_or(|u| j.user == u))
        .filter(|j| args.name.as_ref().is_none_or(|n| &j.name == n))
        .filter(|j| args.partition.as_ref().is_none_or(|p| &j.partition == p))
        .filter(|j| {
            states
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| *x == j.state || x == short_state(&j.state)))
        });
    for j in picked {
        match &j.array {
            Some(ArrayInfo { job, task: None, pending: Some(p), .. }) => {
                chosen.tasks.extend(p.iter().map(|i| (*job, i)));
            }
            _ => chosen.ids.push(j.id),
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn args(words: &[&str]) -> ScancelArgs {
        let command = ScancelArgs::augment_args(clap::Command::new("scancel"));
        let m =
            command.try_get_matches_from(std::iter::once("scancel").chain(words.iter().copied()));
        ScancelArgs::from_arg_matches(&m.expect("flags")).expect("args")
    }

    #[test]
    fn a_state_filter_cancels_an_arrays_pending_tasks_not_its_running_ones() {
        let line = |id, state: &str, array: ArrayInfo| {
            crate::cli::array_rows::test_line(id, state, Some(array))
        };
        let pending = "3-5".parse().ok();
        let jobs = vec![
            line(7, "PENDING", ArrayInfo { job: 7, task: None, pending, throttle: Some(2) }),
            line(8, "RUNNING", ArrayInfo { job: 7, task: Some(1), pending: None, throttle: None }),
            line(9, "RUNNING", ArrayInfo { job: 7, task: Some(2), pending: None, throttle: None }),
        ];
        let chosen = select(&args(&["-t", "PD", "7"]), &[7], None, &jobs);
        assert_eq!(chosen, Named { ids: vec![], tasks: vec![(7, 3), (7, 4), (7, 5)] });
        let chosen = select(&args(&["-t", "R", "7"]), &[7], None, &jobs);
        assert_eq!(chosen, Named { ids: vec![8, 9], tasks: vec![] });
    }
}
