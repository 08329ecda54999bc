//! `gangway queue`: pending and running jobs (like squeue).

use clap::Args;

use super::error::{CliError, ask};
use super::query::{render_queue, short_state};
use crate::cli::begin_time::now_ms;
use crate::protocol::{JobInfo, Reply, Request};

/// Flags of `gangway queue`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gangway queue --me\n  gangway queue --state pending\n  gangway queue --format '%i %u %T %R'\n  gangway queue --json\n  gangway queue --start       pending jobs: expected start and reserved nodes\n  gangway queue -r            an array's pending tasks one per line (7_3, 7_4 ...), not 7_[3-999%50]\nFormat fields: %i id, %P partition, %j name, %u user, %t state (short), %T state, %M time used,\n%l time limit, %D nodes, %C CPUs, %R nodes or reason, %r reason, %p position, %a account,\n%q QOS, %Q priority, %S expected start, %Y reserved nodes, %E dependency left."
)]
pub struct QueueArgs {
    /// Only your jobs.
    #[arg(long)]
    pub me: bool,
    /// Only this user's jobs.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Only jobs in these states (pending, running; comma-separated).
    #[arg(short = 't', long, value_name = "STATES")]
    pub state: Option<String>,
    /// Columns, squeue style (default "%i %P %j %u %t %M %D %R").
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No header line.
    #[arg(long = "noheader")]
    pub no_header: bool,
    /// Pending jobs with their expected start time and the nodes reserved for them.
    #[arg(long)]
    pub start: bool,
    /// One line per array task, pending ones too (instead of 7_[3-999%50]).
    #[arg(short = 'r', long = "array")]
    pub array: bool,
}

/// Runs `gangway queue`.
pub fn main(args: QueueArgs) -> Result<(), CliError> {
    let jobs = match ask(&Request::Queue)? {
        Reply::Jobs { jobs } => jobs,
        other => return Err(CliError::UnexpectedReply(Box::new(other))),
    };
    let me = args.me.then(crate::cli::user::current_user);
    let states: Option<Vec<String>> =
        args.state.as_ref().map(|s| s.split(',').map(|x| x.trim().to_ascii_uppercase()).collect());
    let jobs: Vec<JobInfo> = jobs
        .into_iter()
        .filter(|j| me.as_ref().is_none_or(|m| &j.user == m))
        .filter(|j| args.user.as_ref().is_none_or(|u| &j.user == u))
        .filter(|j| {
            states
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| *x == j.state || x == short_state(&j.state)))
        })
        .filter(|j| !args.start || j.state == "PENDING")
        .collect();
    let jobs = if args.array { super::array_rows::one_line_per_task(jobs) } else { jobs };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs).unwrap_or_default());
    } else {
        let default =
            if args.start { "%i %P %j %u %t %S %Y %R" } else { "%i %P %j %u %t %M %D %R" };
        let format = args.format.as_deref().unwrap_or(default);
        print!("{}", render_queue(&jobs, format, !args.no_header, now_ms()));
    }
    Ok(())
}
