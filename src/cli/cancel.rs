//! `gangway cancel`: ends jobs, or sends them a signal (like scancel).

use clap::Args;

use super::error::{CliError, ask};
use super::flag_values::Signal;
use super::ok_reply::print_ok;
use crate::protocol::array::JobAddress;
use crate::protocol::{JobId, Request};

/// Flags of `gangway cancel`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gangway cancel 42 43\n  gangway cancel 7                   a job array: every task, pending or running\n  gangway cancel 7_3 7_[5-9]         tasks of array 7\n  gangway cancel --signal USR1 42     signal a running job instead of ending it\n  gangway cancel --user alice        every job of alice (her own, or an administrator)"
)]
pub struct CancelArgs {
    /// Job ids; an array's id stands for all its tasks, 7_3 for one of them.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Send this signal to the job's processes instead of ending it (TERM, USR1, 10, ...).
    #[arg(short = 's', long, value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// Every pending or running job of this user.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
}

/// A checked `gangway cancel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub ids: Vec<JobId>,
    /// Array tasks by index.
    pub tasks: Vec<(JobId, u32)>,
    /// Signal the jobs instead of ending them.
    pub signal: Option<Signal>,
    pub user: Option<String>,
}

impl CancelArgs {
    /// Checks the flags: jobs or a user to cancel, and a signal that exists.
    pub fn into_request(self) -> Result<CancelRequest, CliError> {
        if self.ids.is_empty() && self.user.is_none() {
            return Err(CliError::Usage("give job ids or --user".into()));
        }
        let signal = match self.signal.as_deref() {
            None => None,
            Some(s) => Some(
                s.parse::<Signal>().map_err(|e| CliError::Usage(format!("--signal {s}: {e}")))?,
            ),
        };
        let Named { ids, tasks } = job_addresses(&self.ids)?;
        Ok(CancelRequest { ids, tasks, signal, user: self.user })
    }
}

impl CancelRequest {
    /// The request as the protocol carries it.
    pub fn to_protocol(&self) -> Request {
        Request::Cancel {
            ids: self.ids.clone(),
            signal: self.signal,
            user: self.user.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

/// Jobs named on a command line: by id (a whole array too), and array tasks by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    pub ids: Vec<JobId>,
    /// (array, index).
    pub tasks: Vec<(JobId, u32)>,
}

/// Job ids as users write them: jobs (and whole arrays) by id, array tasks as `7_3` or
/// `7_[1-3]`; the error names the word that is neither.
pub fn job_addresses(words: &[String]) -> Result<Named, CliError> {
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for w in words {
        match w.parse::<JobAddress>().map_err(|e| CliError::Usage(e.to_string()))? {
            JobAddress::Job(id) => ids.push(id),
            JobAddress::Tasks(t) => tasks.extend(t.tasks.iter().map(|i| (t.array, i))),
        }
    }
    Ok(Named { ids, tasks })
}

/// Runs `gangway cancel`: the flags are checked before the controller is asked.
pub fn main(args: CancelArgs) -> Result<(), CliError> {
    let request = args.into_request()?;
    print_ok(ask(&request.to_protocol())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ids: &[u64], signal: Option<&str>, user: Option<&str>) -> CancelArgs {
        CancelArgs {
            ids: ids.iter().map(u64::to_string).collect(),
            signal: signal.map(String::from),
            user: user.map(String::from),
        }
    }

    #[test]
    fn a_bad_signal_is_a_usage_error_before_any_controller_is_asked() {
        let err = args(&[1], Some("BOGUS"), None).into_request().unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{err:?}");
        assert_eq!(err.to_string(), "--signal BOGUS: no such signal (e.g. TERM, USR1, 10)");
        let err = args(&[1], Some("99"), None).into_request().unwrap_err();
        assert_eq!(err.to_string(), "--signal 99: no such signal");
    }

    #[test]
    fn signals_by_name_or_number_reach_the_controller_by_name() {
        for given in ["USR1", "usr1", "SIGUSR1", "10"] {
            let request = args(&[4], Some(given), None).into_request().unwrap();
            match request.to_protocol() {
                Request::Cancel { ids, signal, user, .. } => {
                    assert_eq!(
                        (ids, signal.map(Signal::name), user),
                        (vec![4], Some("SIGUSR1"), None)
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn array_tasks_are_sent_by_index_and_a_bad_id_is_named() {
        let a = CancelArgs {
            ids: vec!["7".into(), "8_3".into(), "9_[1-2]".into()],
            signal: None,
            user: None,
        };
        let request = a.into_request().expect("request");
        assert_eq!(request.ids, [7]);
        assert_eq!(request.tasks, [(8, 3), (9, 1), (9, 2)]);
        let bad = CancelArgs { ids: vec!["8_x".into()], signal: None, user: None };
        assert!(bad.into_request().unwrap_err().to_string().contains("'8_x'"));
    }

    #[test]
    fn nothing_to_cancel_is_a_usage_error() {
        let err = args(&[], None, None).into_request().unwrap_err();
        assert_eq!(err.to_string(), "give job ids or --user");
        assert!(args(&[], None, Some("alice")).into_request().is_ok());
    }
}
