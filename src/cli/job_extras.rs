//! The flags beyond its shape that `alloc`/`salloc` and `run`/`srun` (as a job of its own) take
//! as `batch` does: `--signal`, `--mail-type`/`--mail-user` and `--constraint`, turned into the
//! submission's end handling and constraint. A `run` step inside a job refuses them by name (the
//! job already has its own).

use clap::Args;

use super::batch::MailTypes;
use crate::protocol::constraint::Constraint;
use crate::protocol::end_handling::{SignalTarget, parse_mail_types};
use crate::protocol::{EndHandling, MailRequest, WarningSignal};

/// `--signal`, `--mail-type`, `--mail-user`, `--constraint` for a job that is not a batch job.
#[derive(Debug, Clone, Default, Args)]
pub struct JobExtras {
    /// Send SIG to the job's processes TIME seconds (default 60) before its time limit. R: is
    /// accepted and changes nothing; B: (the batch shell) is for batch jobs only.
    #[arg(long, value_name = "[R:]SIG[@TIME]", value_parser = parse_step_warning)]
    pub signal: Option<WarningSignal>,
    /// Mail on these changes of the job: BEGIN, END, FAIL, REQUEUE, ALL, TIME_LIMIT,
    /// TIME_LIMIT_50/80/90, NONE (comma-separated), if the controller has a mail_program.
    #[arg(long, value_name = "TYPES", value_parser = |s: &str| parse_mail_types(s).map(MailTypes))]
    pub mail_type: Option<MailTypes>,
    /// Where the mail goes (default: the job's user).
    #[arg(long, value_name = "ADDRESS")]
    pub mail_user: Option<String>,
    /// Only nodes with these features (from the controller's configuration): gpu, a100&ib,
    /// skylake|icelake, (a|b)&ib.
    #[arg(short = 'C', long, value_name = "FEATURES")]
    pub constraint: Option<Constraint>,
}

/// `--signal` for a job without a batch shell: `B:` has nothing to reach.
fn parse_step_warning(s: &str) -> Result<WarningSignal, String> {
    let w: WarningSignal = s.parse()?;
    if w.target == SignalTarget::BatchShell {
        return Err(
            "B: signals a batch job's shell; this job has none (use sbatch, or leave out B:)"
                .into(),
        );
    }
    Ok(w)
}

impl JobExtras {
    /// The end handling these flags ask for (`append` is the caller's: only `run` has output
    /// files).
    pub fn end_handling(&self) -> EndHandling {
        EndHandling {
            warning: self.signal,
            append: None,
            mail: self
                .mail_type
                .clone()
                .map(|t| t.0)
                .filter(|events| !events.is_empty())
                .map(|events| MailRequest { events, user: self.mail_user.clone() }),
        }
    }

    /// The first of these flags given, by name (for a step, which refuses them).
    pub fn given(&self) -> Option<&'static str> {
        if self.signal.is_some() {
            Some("--signal")
        } else if self.mail_type.is_some() || self.mail_user.is_some() {
            Some("--mail-type/--mail-user")
        } else if self.constraint.is_some() {
            Some("--constraint")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        extras: JobExtras,
    }

    fn parse(args: &[&str]) -> Result<JobExtras, String> {
        Probe::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map(|p| p.extras)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_flags_become_the_submissions_end_handling() {
        let e =
            parse(&["--signal=USR1@30", "--mail-type=END,FAIL", "--mail-user=a@b", "-C", "gpu"])
                .unwrap();
        let h = e.end_handling();
        let w = h.warning.unwrap();
        assert_eq!((w.before_secs, w.target), (30, SignalTarget::Steps));
        let mail = h.mail.unwrap();
        assert_eq!(mail.events.len(), 2);
        assert_eq!(mail.user.as_deref(), Some("a@b"));
        assert_eq!(e.constraint.as_ref().map(ToString::to_string).as_deref(), Some("gpu"));
        assert_eq!(e.given(), Some("--signal"));
    }

    #[test]
    fn b_is_refused_without_a_batch_shell_and_none_means_no_mail() {
        let err = parse(&["--signal=B:USR1@10"]).unwrap_err();
        assert!(err.contains("B: signals a batch job's shell"), "{err}");
        let e = parse(&["--mail-type=NONE"]).unwrap();
        assert!(e.end_handling().mail.is_none());
        assert_eq!(e.given(), Some("--mail-type/--mail-user"));
        assert_eq!(parse(&[]).unwrap().given(), None);
    }
}
