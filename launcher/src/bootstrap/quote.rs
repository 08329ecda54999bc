//! Quoting argv for the node's POSIX shell, and the small wrapper script both ssh transports run.
//!
//! sshd hands the command to the user's login shell as one string, so every argument must be
//! quoted for `sh`; the wrapper checks the program exists before it reports "running", so a
//! missing program is an error from `start`, not a mystery exit later.

use super::marker::MARKER;

/// Quotes one word for a POSIX shell: bare when it only holds characters no shell treats
/// specially, else single-quoted with each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    // A leading '=' or '%' is harmless to sh but '~' and '#' are not, and neither is in the set.
    if safe {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins argv into one shell command line.
pub fn remote_command_line(argv: &[String]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// The script run on the node: report `SSH_CONNECTION` (or that the program is missing) on the
/// first stdout line, then `exec` the command so it replaces the shell.
pub(crate) fn wrapper_script(argv: &[String]) -> String {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    format!(
        "if command -v {p} >/dev/null 2>&1; then printf '\\036{tag} ok %s\\n' \"$SSH_CONNECTION\"; exec {cmd}; \
         else printf '\\036{tag} missing\\n'; exit 127; fi",
        p = shell_quote(program),
        tag = MARKER.trim_start_matches('\u{1e}'),
        cmd = remote_command_line(argv),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc-1.2/x:y=z"), "abc-1.2/x:y=z");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("~"), "'~'");
        assert_eq!(shell_quote("#x"), "'#x'");
    }

    /// The real test of quoting: sh must give every argument back byte for byte.
    #[test]
    fn quoting_round_trips_through_sh() {
        let argv: Vec<String> = [
            "printf",
            "%s\\n",
            "plain",
            "with space",
            "it's",
            "$(touch /nonexistent)",
            "`id`",
            "a\"b",
            "tab\there",
            "new\nline",
            "*",
            "~root",
            ";|&<>",
            "",
            "ünïcødé",
            "!bang",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out =
            Command::new("sh").arg("-c").arg(remote_command_line(&argv)).output().expect("run sh");
        let expected: String = argv[2..].iter().map(|a| format!("{a}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }

    #[test]
    fn wrapper_reports_then_execs() {
        let argv = vec!["printf".to_string(), "%s".into(), "x y".into()];
        let out = Command::new("sh")
            .arg("-c")
            .arg(wrapper_script(&argv))
            .env("SSH_CONNECTION", "10.0.0.254 5000 10.0.0.1 22")
            .output()
            .expect("run sh");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "\u{1e}gangway-bootstrap ok 10.0.0.254 5000 10.0.0.1 22\nx y"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(wrapper_script(&["/no/such/gangway".to_string()]))
            .output()
            .expect("run sh");
        assert_eq!(out.status.code(), Some(127));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "\u{1e}gangway-bootstrap missing\n");
    }
}
