//! `gangway cancel`: ends jobs, or sends them a signal (like scancel).

use clap::Args;

use super::error::{CliError, ask};
use super::flag_values::Signal;
use super::ok_reply::print_ok;
use crate::protocol::{JobId, Request};

/// Flags of `gangway cancel`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gangway cancel 42 43\n  gangway cancel --signal USR1 42     signal a running job instead of ending it\n  gangway cancel --user alice        every job of alice (her own, or an administrator)"
)]
pub struct CancelArgs {
    /// Job ids.
    #[arg(value_name = "ID")]
    pub ids: Vec<u64>,
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
        Ok(CancelRequest { ids: self.ids, signal, user: self.user })
    }
}

impl CancelRequest {
    /// The request as the protocol carries it.
    pub fn to_protocol(&self) -> Request {
        Request::Cancel { ids: self.ids.clone(), signal: self.signal, user: self.user.clone() }
    }
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
            ids: ids.to_vec(),
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
                Request::Cancel { ids, signal, user } => {
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
    fn nothing_to_cancel_is_a_usage_error() {
        let err = args(&[], None, None).into_request().unwrap_err();
        assert_eq!(err.to_string(), "give job ids or --user");
        assert!(args(&[], None, Some("alice")).into_request().is_ok());
    }
}
