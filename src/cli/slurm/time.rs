//! Times as Slurm's commands print and read them: local `YYYY-MM-DDTHH:MM:SS`, elapsed
//! `[D-]HH:MM:SS` and CPU time (sacct), the `-S`/`-E` forms sacct takes, and the date line above an
//! iterated report.

use crate::protocol::end_handling::{self, local_time};

/// Local time of `ms` since the epoch, as Slurm prints it (`Unknown` when there is none).
pub fn local(ms: Option<u64>) -> String {
    ms.and_then(|ms| local_time(ms / 1000)).unwrap_or_else(|| "Unknown".into())
}

/// `HH:MM:SS`, or `D-HH:MM:SS` past a day, as sacct prints durations.
pub fn elapsed(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 { format!("{d}-{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}") }
}

/// CPU time (`TotalCPU`, `UserCPU`, `SystemCPU`) as sacct prints it: `MM:SS.mmm` under an
/// hour, `HH:MM:SS` past it, `D-HH:MM:SS` past a day, and `00:MM:SS` when the milliseconds
/// are 0 (Slurm 22.05's `_elapsed_time`, whose formats `strings /usr/bin/sacct` shows).
pub fn cpu_time(us: u64) -> String {
    let (secs, milli) = (us / 1_000_000, us / 1000 % 1000);
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else if h > 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else if milli > 0 {
        format!("{m:02}:{s:02}.{milli:03}")
    } else {
        format!("00:{m:02}:{s:02}")
    }
}

/// The date line `squeue`/`sinfo` print above each report of `-i` and `-l`, as Slurm's
/// `print_date` does (`Sun Dec 06 18:58:22 2026`, local time).
pub fn date_line(ms: u64) -> String {
    end_handling::date_line(ms / 1000).unwrap_or_else(|| local(Some(ms)))
}

/// A `-S`/`-E` value: `YYYY-MM-DD[THH:MM[:SS]]` in local time, `now`, or `now-N[days|hours|
/// minutes|seconds]`; milliseconds since the epoch.
pub fn parse(value: &str, now_ms: u64) -> Result<u64, String> {
    let bad = || format!("'{value}' is not a time (YYYY-MM-DD[THH:MM[:SS]], now, now-2days)");
    if let Some(rest) = value.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let rest = rest.strip_prefix('-').ok_or_else(bad)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let unit = match &rest[digits.len()..] {
            "" | "s" | "seconds" => 1,
            "minutes" | "min" => 60,
            "hours" | "h" => 3600,
            "days" | "d" => 86400,
            "weeks" => 7 * 86400,
            _ => return Err(bad()),
        };
        return Ok(now_ms.saturating_sub(n * unit * 1000));
    }
    let (date, clock) = value.split_once('T').unwrap_or((value, "00:00:00"));
    let d: Vec<i32> =
        date.split('-').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let t: Vec<i32> =
        clock.split(':').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    if d.len() != 3 || t.is_empty() || t.len() > 3 {
        return Err(bad());
    }
    // SAFETY: a zeroed tm is valid; mktime reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = d[0] - 1900;
    tm.tm_mon = d[1] - 1;
    tm.tm_mday = d[2];
    tm.tm_hour = t[0];
    tm.tm_min = t.get(1).copied().unwrap_or(0);
    tm.tm_sec = t.get(2).copied().unwrap_or(0);
    tm.tm_isdst = -1;
    let secs = unsafe { libc::mktime(&mut tm) };
    if secs < 0 {
        return Err(bad());
    }
    Ok(secs as u64 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_is_zero_padded_with_days_in_front() {
        assert_eq!(elapsed(5), "00:00:05");
        assert_eq!(elapsed(90061), "1-01:01:01");
    }

    #[test]
    fn cpu_time_is_printed_as_sacct_prints_it() {
        assert_eq!(cpu_time(1_171_000), "00:01.171");
        assert_eq!(cpu_time(61_005_999), "01:01.005");
        assert_eq!(cpu_time(3_000_000), "00:00:03");
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3_723_400_000), "01:02:03");
        assert_eq!(cpu_time(93_784_000_000), "1-02:03:04");
    }

    #[test]
    fn times_read_back_as_printed() {
        let t = parse("2026-03-04T05:06:07", 0).unwrap();
        assert_eq!(local(Some(t)), "2026-03-04T05:06:07");
        assert_eq!(parse("now-2days", 3 * 86_400_000).unwrap(), 86_400_000);
        assert!(parse("yesterday", 0).is_err());
    }

    #[test]
    fn the_date_line_is_slurms_ctime() {
        let t = parse("2026-12-06T18:58:22", 0).unwrap();
        assert_eq!(date_line(t), "Sun Dec 06 18:58:22 2026");
        let t = parse("2024-02-29T00:00:00", 0).unwrap();
        assert_eq!(date_line(t), "Thu Feb 29 00:00:00 2024");
        let t = parse("2000-03-01T12:00:00", 0).unwrap();
        assert_eq!(date_line(t), "Wed Mar 01 12:00:00 2000");
    }
}
