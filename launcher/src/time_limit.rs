//! Job time limits and grace periods as users write them (Slurm's `--time` formats).

use std::time::Duration;

/// A `--time` or `--kill-grace` value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeSpecError {
    #[error(
        "time limit '{value}': {problem} (accepted: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED)"
    )]
    TimeLimit { value: String, problem: String },
    #[error("duration '{value}': {problem} (examples: 10, 10s, 500ms, 2m)")]
    Duration { value: String, problem: String },
}

/// Reads a Slurm-style time limit. `None` means no limit (`0`, `UNLIMITED`, `INFINITE`).
///
/// A bare number is minutes, as in Slurm, so `-t 5` is five minutes, not five seconds.
pub fn parse_time_limit(value: &str) -> Result<Option<Duration>, TimeSpecError> {
    let fail = |problem: &str| TimeSpecError::TimeLimit {
        value: value.to_string(),
        problem: problem.to_string(),
    };
    let text = value.trim();
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("infinite") {
        return Ok(None);
    }
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(number(d, "days").map_err(|p| fail(&p))?), rest),
        None => (None, text),
    };
    let fields: Vec<&str> = rest.split(':').collect();
    if fields.len() > 3 {
        return Err(fail("too many ':' fields"));
    }
    let nums = fields
        .iter()
        .zip(["first", "second", "third"])
        .map(|(f, which)| number(f, which))
        .collect::<Result<Vec<u64>, String>>()
        .map_err(|p| fail(&p))?;
    let below_60 = |n: u64, what: &str| {
        if n < 60 { Ok(n) } else { Err(fail(&format!("{what} must be 0-59, got {n}"))) }
    };
    let seconds = match (days, nums.as_slice()) {
        (None, [m]) => m.saturating_mul(60),
        (None, [m, s]) => m.saturating_mul(60) + below_60(*s, "seconds")?,
        (None, [h, m, s]) => {
            h.saturating_mul(3600) + below_60(*m, "minutes")? * 60 + below_60(*s, "seconds")?
        }
        (Some(d), [h]) => d.saturating_mul(86400) + below_24(*h).map_err(|p| fail(&p))? * 3600,
        (Some(d), [h, m]) => {
            d.saturating_mul(86400)
                + below_24(*h).map_err(|p| fail(&p))? * 3600
                + below_60(*m, "minutes")? * 60
        }
        (Some(d), [h, m, s]) => {
            d.saturating_mul(86400)
                + below_24(*h).map_err(|p| fail(&p))? * 3600
                + below_60(*m, "minutes")? * 60
                + below_60(*s, "seconds")?
        }
        _ => return Err(fail("too many ':' fields")),
    };
    Ok(if seconds == 0 { None } else { Some(Duration::from_secs(seconds)) })
}

fn below_24(hours: u64) -> Result<u64, String> {
    if hours < 24 { Ok(hours) } else { Err(format!("hours after 'D-' must be 0-23, got {hours}")) }
}

fn number(field: &str, which: &str) -> Result<u64, String> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the {which} field '{field}' is not a whole number"));
    }
    field.parse().map_err(|_| format!("the {which} field '{field}' is too large"))
}

/// Formats a duration the way `--time` accepts it back: `HH:MM:SS` or `D-HH:MM:SS`.
pub fn format_time_limit(limit: Duration) -> String {
    let total = limit.as_secs();
    let (d, h, m, s) = (total / 86400, total / 3600 % 24, total / 60 % 60, total % 60);
    if d > 0 { format!("{d}-{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}") }
}

/// Reads a short duration such as a grace period: a bare number is seconds, or a unit suffix.
pub fn parse_duration(value: &str) -> Result<Duration, TimeSpecError> {
    let text = value.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if (0.0..1e9).contains(&seconds) {
            return Ok(Duration::from_secs_f64(seconds));
        }
        return Err(TimeSpecError::Duration {
            value: value.to_string(),
            problem: "must be a non-negative number of seconds".into(),
        });
    }
    humantime::parse_duration(text)
        .map_err(|e| TimeSpecError::Duration { value: value.to_string(), problem: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &str) -> Option<u64> {
        parse_time_limit(v).unwrap().map(|d| d.as_secs())
    }

    #[test]
    fn slurm_formats() {
        assert_eq!(secs("5"), Some(300));
        assert_eq!(secs("1:30"), Some(90));
        assert_eq!(secs("1:02:03"), Some(3723));
        assert_eq!(secs("2-3"), Some(2 * 86400 + 3 * 3600));
        assert_eq!(secs("2-3:04"), Some(2 * 86400 + 3 * 3600 + 240));
        assert_eq!(secs("1-00:00:05"), Some(86405));
        assert_eq!(secs("0"), None);
        assert_eq!(secs("UNLIMITED"), None);
        assert_eq!(secs("infinite"), None);
    }

    #[test]
    fn rejects_out_of_range_and_junk() {
        for bad in
            ["1:99", "1:60:00", "1-24", "", "abc", "1:2:3:4", "-5", "1.5", "1-2:3:4:5", "1::2"]
        {
            let err = parse_time_limit(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        assert!(parse_time_limit("1:99").unwrap_err().to_string().contains("seconds must be 0-59"));
    }

    #[test]
    fn formats_round_trip() {
        for v in ["00:00:05", "01:02:03", "3-04:05:06"] {
            let d = parse_time_limit(v).unwrap().unwrap();
            assert_eq!(format_time_limit(d), v);
        }
    }

    #[test]
    fn grace_durations() {
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").unwrap_err().to_string().contains("'soon'"));
    }
}
