//! How a job wants its end handled, beyond its time limit: a warning signal before the limit
//! (`--signal=[{R|B}:]SIG[@TIME]`) and whether its output files are appended to
//! (`--open-mode`). Typed where the flags enter, so the controller and agents only see valid
//! values; and the Slurm-shaped notice a stopped job's error output gets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::signal::Signal;

/// Options of a submission that say how its end is handled (all off by default, which is what
/// submissions from older commands mean).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndHandling {
    /// Sent `before` the time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<WarningSignal>,
    /// Output files opened for appending even on the first attempt (`--open-mode=append`);
    /// `Some(false)`: truncated even on a requeued attempt (`--open-mode=truncate`); `None`:
    /// Slurm's default, truncate the first attempt and append requeued ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
    /// `--mail-type`/`--mail-user`: which changes of the job are mailed, and to whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailRequest>,
}

/// The changes `--mail-type` can ask to be told of (Slurm's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MailEvent {
    Begin,
    End,
    Fail,
    Requeue,
    /// Reached the time limit.
    TimeLimit,
    TimeLimit50,
    TimeLimit80,
    TimeLimit90,
    /// Each task of an array mailed as a job of its own (without it: one mail per array).
    ArrayTasks,
}

/// `--mail-type=BEGIN,END --mail-user=ann`: the events, and the address (none: the job's user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRequest {
    pub events: Vec<MailEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl MailRequest {
    pub fn wants(&self, e: MailEvent) -> bool {
        self.events.contains(&e)
    }
}

/// Reads `--mail-type`'s list. `ALL` is BEGIN, END, FAIL, REQUEUE (and STAGE_OUT, INVALID_DEPEND,
/// which gangway never sends); `TIME_LIMIT` alone is the limit itself plus its 50/80/90 %
/// marks, as Slurm reads them; `NONE` clears; `ARRAY_TASKS` mails an array's tasks one by
/// one; `INVALID_DEPEND`, `STAGE_OUT` are accepted and send nothing here.
pub fn parse_mail_types(s: &str) -> Result<Vec<MailEvent>, String> {
    use MailEvent::*;
    let mut out = Vec::new();
    for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let add: &[MailEvent] = match word.to_ascii_uppercase().as_str() {
            "NONE" => {
                out.clear();
                &[]
            }
            "BEGIN" => &[Begin],
            "END" => &[End],
            "FAIL" => &[Fail],
            "REQUEUE" => &[Requeue],
            "ALL" => &[Begin, End, Fail, Requeue],
            "TIME_LIMIT" => &[TimeLimit, TimeLimit50, TimeLimit80, TimeLimit90],
            "TIME_LIMIT_50" => &[TimeLimit50],
            "TIME_LIMIT_80" => &[TimeLimit80],
            "TIME_LIMIT_90" => &[TimeLimit90],
            "ARRAY_TASKS" => &[ArrayTasks],
            "INVALID_DEPEND" | "STAGE_OUT" => &[],
            other => {
                return Err(format!(
                    "unknown mail type '{other}' (NONE, BEGIN, END, FAIL, REQUEUE, ALL, TIME_LIMIT, TIME_LIMIT_90, TIME_LIMIT_80, TIME_LIMIT_50, ARRAY_TASKS)"
                ));
            }
        };
        for e in add {
            if !out.contains(e) {
                out.push(*e);
            }
        }
    }
    Ok(out)
}

/// Which processes of a job a signal reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalTarget {
    /// Everything of the job (a `cancel --signal`).
    #[default]
    All,
    /// Only the batch shell itself (`--signal=B:`).
    BatchShell,
    /// The job's steps and an allocation's or run's processes, not the batch shell (Slurm's
    /// default for `--signal`).
    Steps,
}

/// `--signal=[{R|B}:]SIG[@TIME]`: `signal` sent `before_secs` seconds before the time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningSignal {
    pub signal: Signal,
    pub before_secs: u64,
    pub target: SignalTarget,
}

/// Slurm's default warning time.
const DEFAULT_WARNING_SECS: u64 = 60;
/// Slurm's largest warning time.
const MAX_WARNING_SECS: u64 = 65535;

impl FromStr for WarningSignal {
    type Err = String;

    fn from_str(s: &str) -> Result<WarningSignal, String> {
        let (flags, rest) = match s.split_once(':') {
            Some((f, r)) => (f, r),
            None => ("", s),
        };
        let mut target = SignalTarget::Steps;
        for flag in flags.chars() {
            match flag.to_ascii_uppercase() {
                'B' => target = SignalTarget::BatchShell,
                // Reservation ends: gangway has no reservations, so there is nothing to warn
                // of beyond the time limit; accepted so that scripts run unchanged.
                'R' => {}
                other => {
                    return Err(format!("unknown flag '{other}' before ':' (B: batch shell, R:)"));
                }
            }
        }
        let (name, before) = match rest.split_once('@') {
            Some((n, t)) => {
                let secs: u64 =
                    t.parse().map_err(|_| format!("'{t}' after '@' is not a number of seconds"))?;
                if secs > MAX_WARNING_SECS {
                    return Err(format!("at most {MAX_WARNING_SECS} seconds before the limit"));
                }
                (n, secs)
            }
            None => (rest, DEFAULT_WARNING_SECS),
        };
        let signal: Signal = name.parse().map_err(|e| format!("signal '{name}': {e}"))?;
        Ok(WarningSignal { signal, before_secs: before, target })
    }
}

impl fmt::Display for WarningSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.target == SignalTarget::BatchShell { "B:" } else { "" };
        let name = self.signal.name().trim_start_matches("SIG");
        write!(f, "{prefix}{name}@{}", self.before_secs)
    }
}

/// Why a job was stopped, for its notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    Cancelled,
    TimeLimit,
}

/// The line Slurm's step daemon writes to a stopped job's error output, word for word (sites'
/// scripts and monitoring look for it): `slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT
/// 2026-12-06T13:01:02 DUE TO TIME LIMIT ***`, at local time as Slurm prints it.
pub fn stop_notice(job: u64, node: &str, unix_ms: u64, cause: StopCause) -> String {
    let due = match cause {
        StopCause::Cancelled => "",
        StopCause::TimeLimit => " DUE TO TIME LIMIT",
    };
    let secs = unix_ms / 1000;
    let at = local_time(secs).unwrap_or_else(|| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        )
        .to_string()
    });
    format!("slurmstepd: error: *** JOB {job} ON {node} CANCELLED AT {at}{due} ***")
}

/// `2026-12-06T13:01:02` in the local time zone, as Slurm prints times (`None`: the C library
/// could not convert it). The one such formatter: Slurm's commands (`cli/slurm/time.rs`) use it too.
pub fn local_time(secs: u64) -> Option<String> {
    let tm = local_fields(secs)?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}

/// `Sun Dec 06 18:58:22 2026` in the local time zone: the date line Slurm's `squeue`/`sinfo`
/// print above a `-i` or `-l` report.
pub fn date_line(secs: u64) -> Option<String> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let tm = local_fields(secs)?;
    Some(format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}",
        DAYS.get(usize::try_from(tm.tm_wday).ok()?)?,
        MONTHS.get(usize::try_from(tm.tm_mon).ok()?)?,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    ))
}

/// The C library's broken-down local time of `secs`.
fn local_fields(secs: u64) -> Option<libc::tm> {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm).is_null() } {
        return None;
    }
    Some(tm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_signals_parse_as_slurm_spells_them() {
        let w: WarningSignal = "B:USR1@90".parse().expect("parses");
        assert_eq!(w.target, SignalTarget::BatchShell);
        assert_eq!(w.signal.name(), "SIGUSR1");
        assert_eq!(w.before_secs, 90);
        let w: WarningSignal = "SIGTERM".parse().expect("parses");
        assert_eq!((w.target, w.before_secs), (SignalTarget::Steps, 60));
        let w: WarningSignal = "R:10@5".parse().expect("parses");
        assert_eq!((w.signal.name(), w.before_secs), ("SIGUSR1", 5));
        assert_eq!("RB:USR2@1".parse::<WarningSignal>().expect("parses").to_string(), "B:USR2@1");
        assert!("X:USR1".parse::<WarningSignal>().unwrap_err().contains("'X'"));
        assert!("USR1@soon".parse::<WarningSignal>().unwrap_err().contains("'soon'"));
        assert!("NOPE@3".parse::<WarningSignal>().unwrap_err().contains("'NOPE'"));
        assert!("USR1@70000".parse::<WarningSignal>().is_err());
    }

    #[test]
    fn mail_types_read_as_slurm_reads_them() {
        use MailEvent::*;
        assert_eq!(parse_mail_types("END,FAIL").unwrap(), [End, Fail]);
        assert_eq!(parse_mail_types("all").unwrap(), [Begin, End, Fail, Requeue]);
        assert_eq!(parse_mail_types("BEGIN,NONE,TIME_LIMIT_80").unwrap(), [TimeLimit80]);
        assert_eq!(parse_mail_types("ARRAY_TASKS").unwrap(), [ArrayTasks]);
        assert!(parse_mail_types("BEGIN,SOON").unwrap_err().contains("'SOON'"));
    }

    #[test]
    fn the_stop_notice_is_slurms_line() {
        let n = stop_notice(7, "n1", 1_796_000_000_000, StopCause::TimeLimit);
        assert!(n.starts_with("slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 20"), "{n}");
        assert!(n.ends_with(" DUE TO TIME LIMIT ***"), "{n}");
        let n = stop_notice(8, "n2", 1_796_000_000_000, StopCause::Cancelled);
        assert!(n.ends_with(":20 ***") || n.ends_with(" ***"), "{n}");
        assert!(!n.contains("DUE TO"), "{n}");
    }
}
