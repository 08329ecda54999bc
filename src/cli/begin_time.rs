//! `--begin TIME` as sbatch reads it, turned into an instant (Unix milliseconds) on the
//! submitting machine: `now`, `now+90` (seconds), `now+2hours` (seconds, minutes, hours, days,
//! weeks), `16:00` or `16:00:30` (today, or tomorrow once passed), `2026-12-24`,
//! `2026-12-24T08:00[:00]`, `midnight`, `noon`, `teatime` (16:00), `today`, `tomorrow`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Reads `--begin`'s value, relative to `now_ms`, in the local time zone.
pub fn parse_begin(text: &str, now_ms: u64) -> Result<u64, String> {
    let s = text.trim().to_ascii_lowercase();
    let now = now_ms / 1000;
    let at =
        |secs: i64| u64::try_from(secs).map(|s| s * 1000).map_err(|_| "before 1970".to_string());
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(rest) = s.strip_prefix("now+") {
        let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (n, unit) = rest.split_at(split);
        let n: u64 = n.parse().map_err(|_| format!("'{text}': a number must follow 'now+'"))?;
        let scale = match unit {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            "w" | "week" | "weeks" => 7 * 86400,
            other => {
                return Err(format!(
                    "'{text}': unknown unit '{other}' (seconds, minutes, hours, days, weeks)"
                ));
            }
        };
        return n
            .checked_mul(scale * 1000)
            .and_then(|d| d.checked_add(now_ms))
            .ok_or_else(|| format!("'{text}' is too far ahead"));
    }
    let today = local_fields(now);
    let (date, time) = match s.split_once('t') {
        Some((d, t)) if d.contains('-') => (Some(d), Some(t)),
        _ if s.contains('-') => (Some(s.as_str()), None),
        _ => (None, Some(s.as_str())),
    };
    let (y, mo, d) = match date {
        Some(d) => {
            let p: Vec<&str> = d.split('-').collect();
            let num =
                |x: &str| x.parse::<i32>().map_err(|_| format!("'{text}': expected YYYY-MM-DD"));
            match p[..] {
                [y, m, d] => (num(y)?, num(m)?, num(d)?),
                _ => return Err(format!("'{text}': expected YYYY-MM-DD[THH:MM[:SS]]")),
            }
        }
        None => (today.0, today.1, today.2),
    };
    let (h, mi, se, roll) = match time {
        None | Some("today") => (0, 0, 0, false),
        Some("midnight") => (0, 0, 0, true),
        Some("noon") => (12, 0, 0, true),
        Some("teatime") => (16, 0, 0, true),
        Some("tomorrow") => return at(local_instant(y, mo, d + 1, 0, 0, 0)?),
        Some(t) => {
            let p: Vec<&str> = t.split(':').collect();
            let num = |x: &str, max: i32| {
                x.parse::<i32>().ok().filter(|v| (0..=max).contains(v)).ok_or_else(|| {
                    format!("'{text}': not a time of day (HH:MM[:SS]) or a date (YYYY-MM-DD)")
                })
            };
            match p[..] {
                [h, m] => (num(h, 23)?, num(m, 59)?, 0, date.is_none()),
                [h, m, s] => (num(h, 23)?, num(m, 59)?, num(s, 59)?, date.is_none()),
                _ => {
                    return Err(format!(
                        "'{text}': not a time of day (HH:MM[:SS]) or a date (YYYY-MM-DD)"
                    ));
                }
            }
        }
    };
    let mut t = local_instant(y, mo, d, h, mi, se)?;
    // A time of day already passed today means tomorrow, as sbatch reads it.
    if roll && t < now as i64 {
        t = local_instant(y, mo, d + 1, h, mi, se)?;
    }
    at(t)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// (year, month 1-12, day) of `secs` in the local time zone.
fn local_fields(secs: u64) -> (i32, i32, i32) {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    (tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday)
}

/// The instant of a local date and time (mktime normalises a day past the month's end).
fn local_instant(y: i32, mo: i32, d: i32, h: i32, mi: i32, s: i32) -> Result<i64, String> {
    if !(1..=12).contains(&mo) || !(1..=32).contains(&d) {
        return Err(format!("{y:04}-{mo:02}-{d:02} is not a date"));
    }
    // SAFETY: mktime reads and normalises `tm`, which lives across the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    tm.tm_isdst = -1;
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 {
        return Err(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} is not a local time"));
    }
    Ok(t as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_count_from_now() {
        let now = 1_796_000_000_000;
        assert_eq!(parse_begin("now", now), Ok(now));
        assert_eq!(parse_begin("now+90", now), Ok(now + 90_000));
        assert_eq!(parse_begin("now+2hours", now), Ok(now + 7_200_000));
        assert_eq!(parse_begin("NOW+1day", now), Ok(now + 86_400_000));
        assert!(parse_begin("now+3fortnights", now).unwrap_err().contains("unknown unit"));
        assert!(parse_begin("now+", now).is_err());
    }

    #[test]
    fn times_of_day_and_dates_are_local() {
        let now = 1_796_000_000_000;
        let t = parse_begin("2027-01-02T03:04:05", now).unwrap();
        assert_eq!(local_fields(t / 1000), (2027, 1, 2));
        assert_eq!(parse_begin("2027-01-02", now).unwrap() + 3 * 3_600_000 + 4 * 60_000 + 5_000, t);
        // A time of day: within the next day, never in the past.
        let h = parse_begin("16:00", now).unwrap();
        assert!(h >= now - 1000 && h < now + 86_400_000, "{h}");
        assert!(parse_begin("25:00", now).is_err());
        assert!(parse_begin("2027-13-01", now).is_err());
        assert!(parse_begin("soon", now).is_err());
        let tomorrow = parse_begin("tomorrow", now).unwrap();
        assert!(tomorrow > now && tomorrow <= now + 86_400_000);
    }
}
