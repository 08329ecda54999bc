//! Which lines of a batch script are directives, and their words: the reading half of
//! [the directives module](super) (see there for the rules), which knows no flag.

use std::fmt;

/// Which tag a directive line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sentinel {
    /// `#GANGWAY`: gangway's own directives; they win over `#SBATCH` ones.
    Gangway,
    /// `#SBATCH`: Slurm's, read so that existing scripts run unchanged.
    Sbatch,
}

impl Sentinel {
    /// The tag as written in a script.
    pub fn tag(self) -> &'static str {
        match self {
            Sentinel::Gangway => "#GANGWAY",
            Sentinel::Sbatch => "#SBATCH",
        }
    }
}

impl fmt::Display for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// One directive line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Its line number in the script, from 1.
    pub line: usize,
    pub sentinel: Sentinel,
    /// The line as written (without its line ending or trailing whitespace), for messages.
    pub text: String,
    /// Its words, split like a shell would; the first is always a flag.
    pub args: Vec<String>,
}

/// A tagged line after the script's first command: not a directive (Slurm ignores it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateDirective {
    pub line: usize,
    pub text: String,
}

/// What the top of a batch script asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// The `#!` line, when the script starts with one.
    pub shebang: Option<String>,
    /// The directive lines, in file order.
    pub directives: Vec<Directive>,
    /// The line of the script's first command, where reading stopped (`None`: none).
    pub first_command_line: Option<usize>,
    /// Tagged lines after the first command, which are not read: worth a warning.
    pub late: Vec<LateDirective>,
}

impl Directives {
    /// No directive at all.
    pub fn is_empty(&self) -> bool {
        self.directives.is_empty()
    }

    /// The directives in the order they are merged: `#SBATCH` lines, then `#GANGWAY` lines, each
    /// in file order, so that `#GANGWAY` wins for a flag both set.
    pub fn in_merge_order(&self) -> impl Iterator<Item = &Directive> {
        let of = |s: Sentinel| self.directives.iter().filter(move |d| d.sentinel == s);
        of(Sentinel::Sbatch).chain(of(Sentinel::Gangway))
    }

    /// Whether some directive holds exactly this word (say, `--ignore-unknown-directives` in a
    /// `#GANGWAY` line, which the batch command may honour like the command-line flag).
    pub fn mentions(&self, word: &str) -> bool {
        self.directives.iter().any(|d| d.args.iter().any(|a| a == word))
    }
}

/// A directive line that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text}: {problem}")]
pub struct DirectiveError {
    /// The line number in the script, from 1.
    pub line: usize,
    /// The line as written (non-UTF-8 bytes shown as U+FFFD).
    pub text: String,
    pub problem: Problem,
}

impl DirectiveError {
    /// The message with the script's name in front, as compilers write it:
    /// `job.sh:3: #SBATCH --time=1:99: ...`.
    pub fn located(&self, script: &str) -> String {
        format!("{script}:{}: {}: {}", self.line, self.text, self.problem)
    }
}

/// What is wrong with a directive line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("unterminated quote ({0})")]
    UnterminatedQuote(char),
    #[error("ends with a lone backslash")]
    TrailingBackslash,
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("no flag after {0}")]
    NoFlag(Sentinel),
    #[error("expected a space after {0}")]
    NoSpace(Sentinel),
    #[error(
        "'{0}' is not a flag (directives hold flags; arguments for the script go after it on the command line)"
    )]
    NotAFlag(String),
    #[error(
        "{0} is a Slurm option gangway does not support yet (delete it, or pass --ignore-unknown-directives to skip such flags)"
    )]
    Unsupported(String),
    /// More than one: every one is named, so that one try finds them all.
    #[error(
        "{first} is a Slurm option gangway does not support yet, and so are {} (delete them, or pass --ignore-unknown-directives to skip such flags)",
        others.iter().map(|(line, flag)| format!("{flag} (line {line})")).collect::<Vec<_>>().join(", ")
    )]
    UnsupportedSeveral { first: String, others: Vec<(usize, String)> },
    #[error("{0} cannot be used in a directive")]
    NotInDirective(String),
    /// What clap (or a value parser) said about the line.
    #[error("{0}")]
    Invalid(String),
}

/// Reads the directives of a script held as text.
pub fn extract(script: &str) -> Result<Directives, DirectiveError> {
    extract_bytes(script.as_bytes())
}

/// Reads the directives of a script as read from disk: only the directive lines must be UTF-8.
pub fn extract_bytes(script: &[u8]) -> Result<Directives, DirectiveError> {
    let script = script.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(script);
    let mut found = Directives::default();
    let mut lines = script.split(|b| *b == b'\n').enumerate().map(|(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (i + 1, line)
    });
    for (number, line) in lines.by_ref() {
        if number == 1 && line.starts_with(b"#!") {
            found.shebang = Some(display_text(line));
            continue;
        }
        if let Some((sentinel, rest)) = tagged(line) {
            found.directives.push(directive(number, line, sentinel, rest)?);
            continue;
        }
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            None | Some(b'#') => continue,
            Some(_) => {
                found.first_command_line = Some(number);
                break;
            }
        }
    }
    // Tagged lines below the first command are not read, but a user who put them there meant
    // something: keep them for a warning. A glued tag is no directive here either.
    found.late = lines
        .filter(|(_, line)| matches!(tagged(line), Some((_, rest)) if starts_with_space(rest)))
        .map(|(line, text)| LateDirective { line, text: display_text(text) })
        .collect();
    Ok(found)
}

/// A line's tag and what follows it, when it starts with one in column 0.
fn tagged(line: &[u8]) -> Option<(Sentinel, &[u8])> {
    [Sentinel::Gangway, Sentinel::Sbatch]
        .into_iter()
        .find_map(|s| line.strip_prefix(s.tag().as_bytes()).map(|rest| (s, rest)))
}

fn starts_with_space(rest: &[u8]) -> bool {
    matches!(rest.first(), None | Some(b' ' | b'\t'))
}

/// The line for messages: trailing whitespace off, bad bytes replaced.
fn display_text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim_end().to_string()
}

fn directive(
    line: usize,
    raw: &[u8],
    sentinel: Sentinel,
    rest: &[u8],
) -> Result<Directive, DirectiveError> {
    let text = display_text(raw);
    let fail = |problem: Problem| DirectiveError { line, text: text.clone(), problem };
    if !starts_with_space(rest) {
        return Err(fail(Problem::NoSpace(sentinel)));
    }
    let rest = std::str::from_utf8(rest).map_err(|_| fail(Problem::NotUtf8))?;
    let args = shlex::split(rest).ok_or_else(|| fail(split_problem(rest)))?;
    match args.first() {
        None => Err(fail(Problem::NoFlag(sentinel))),
        Some(first) if !is_flag(first) => Err(fail(Problem::NotAFlag(first.clone()))),
        Some(_) => Ok(Directive { line, sentinel, text, args }),
    }
}

fn is_flag(word: &str) -> bool {
    word.len() > 1 && word.starts_with('-')
}

/// Why `shlex` refused a line (it only says that it did): walks the same POSIX rules to find
/// the quote left open, or else the trailing backslash.
fn split_problem(text: &str) -> Problem {
    let mut open: Option<char> = None;
    let mut chars = text.chars().peekable();
    let mut word_start = true;
    while let Some(c) = chars.next() {
        match (open, c) {
            // The guard consumes the escaped character; only a missing one is an error.
            (None | Some('"'), '\\') if chars.next().is_none() => {
                return Problem::TrailingBackslash;
            }
            (None, '#') if word_start => break,
            (None, '\'' | '"') => open = Some(c),
            (Some(q), c) if c == q => open = None,
            _ => {}
        }
        word_start = open.is_none() && matches!(c, ' ' | '\t');
    }
    match open {
        Some(q) => Problem::UnterminatedQuote(q),
        None => Problem::TrailingBackslash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args(d: &Directives) -> Vec<Vec<&str>> {
        d.directives.iter().map(|d| d.args.iter().map(String::as_str).collect()).collect()
    }

    const JOB: &str = "#!/bin/bash\n\
        #SBATCH -N 2\n\
        #SBATCH --job-name=\"my job\"\n\
        #SBATCH -J name --time=1:00:00 -n 8\n\
        \n\
        # an ordinary comment\n\
        #SBATCH --partition=debug   # the short queue\n\
        srun hostname\n";

    #[test]
    fn reads_the_leading_block_like_a_shell() {
        let d = extract(JOB).unwrap();
        assert_eq!(d.shebang.as_deref(), Some("#!/bin/bash"));
        assert_eq!(
            args(&d),
            [
                vec!["-N", "2"],
                vec!["--job-name=my job"],
                vec!["-J", "name", "--time=1:00:00", "-n", "8"],
                vec!["--partition=debug"],
            ]
        );
        let lines: Vec<usize> = d.directives.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3, 4, 7]);
        assert_eq!(d.directives[3].text, "#SBATCH --partition=debug   # the short queue");
        assert_eq!(d.first_command_line, Some(8));
        assert!(d.late.is_empty());
    }

    #[test]
    fn shell_quoting_rules() {
        let d = extract(
            "#GANGWAY -J 'a # not a comment' --export=A\\ B\n\
             #GANGWAY -J run#3 --wrap \"echo \\\"hi\\\"\"\n\
             #GANGWAY -J ''\n",
        )
        .unwrap();
        assert_eq!(
            args(&d),
            [
                vec!["-J", "a # not a comment", "--export=A B"],
                vec!["-J", "run#3", "--wrap", "echo \"hi\""],
                vec!["-J", ""],
            ]
        );
        assert!(d.directives.iter().all(|d| d.sentinel == Sentinel::Gangway));
    }

    #[test]
    fn stops_at_the_first_command() {
        let d = extract("#!/bin/sh\n#SBATCH -N 1\necho hi\n#SBATCH -N 9\n#GANGWAY -n 3\n").unwrap();
        assert_eq!(args(&d), [vec!["-N", "1"]]);
        assert_eq!(d.first_command_line, Some(3));
        let late: Vec<(usize, &str)> = d.late.iter().map(|l| (l.line, l.text.as_str())).collect();
        assert_eq!(late, [(4, "#SBATCH -N 9"), (5, "#GANGWAY -n 3")]);
    }

    #[test]
    fn blank_lines_and_comments_do_not_stop_reading() {
        let d =
            extract("\n   \n\t# indented comment\n  #SBATCH -N 5\n#sbatch -N 6\n#SBATCH -N 7\n")
                .unwrap();
        // Indented or lower-case tags are comments, as in Slurm.
        assert_eq!(args(&d), [vec!["-N", "7"]]);
        assert_eq!(d.directives[0].line, 6);
        assert_eq!(d.first_command_line, None);
        assert_eq!(d.shebang, None);
    }

    #[test]
    fn crlf_line_endings() {
        let d =
            extract("#!/bin/bash\r\n#SBATCH -J x\r\n#SBATCH --time=5 # c\r\n\r\nrun\r\n").unwrap();
        assert_eq!(args(&d), [vec!["-J", "x"], vec!["--time=5"]]);
        assert_eq!(d.shebang.as_deref(), Some("#!/bin/bash"));
        assert_eq!(d.directives[0].text, "#SBATCH -J x");
        assert_eq!(d.first_command_line, Some(5));
    }

    #[test]
    fn empty_script_and_no_shebang() {
        assert_eq!(extract("").unwrap(), Directives::default());
        assert!(extract("\n\n").unwrap().is_empty());
        let d = extract("#SBATCH -n 4\nhostname\n").unwrap();
        assert_eq!(d.shebang, None);
        assert_eq!(args(&d), [vec!["-n", "4"]]);
        // `#!` only counts on line 1.
        let d = extract("# hi\n#!/bin/sh\n#SBATCH -n 1\n").unwrap();
        assert_eq!((d.shebang, d.directives.len()), (None, 1));
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let d = extract("\u{feff}#!/bin/bash\n#SBATCH -n 2\n").unwrap();
        assert_eq!(d.shebang.as_deref(), Some("#!/bin/bash"));
        assert_eq!(args(&d), [vec!["-n", "2"]]);
    }

    #[test]
    fn unterminated_quotes_and_backslashes() {
        let e = extract("#!/bin/sh\n#SBATCH --job-name=\"my job\n").unwrap_err();
        assert_eq!((e.line, e.problem.clone()), (2, Problem::UnterminatedQuote('"')));
        assert_eq!(e.to_string(), "line 2: #SBATCH --job-name=\"my job: unterminated quote (\")");
        let e = extract("#SBATCH -J 'abc\n").unwrap_err();
        assert_eq!(e.problem, Problem::UnterminatedQuote('\''));
        let e = extract("#SBATCH -J \"a\\\"b\n").unwrap_err();
        assert_eq!(e.problem, Problem::UnterminatedQuote('"'));
        let e = extract("#SBATCH -J abc\\").unwrap_err();
        assert_eq!(e.problem, Problem::TrailingBackslash);
        // A quote inside a comment is fine.
        assert!(extract("#SBATCH -J abc # don't\n").is_ok());
    }

    #[test]
    fn directives_without_a_flag() {
        for (script, problem) in [
            ("#SBATCH\n", Problem::NoFlag(Sentinel::Sbatch)),
            ("#GANGWAY   \n", Problem::NoFlag(Sentinel::Gangway)),
            ("#SBATCH  # just a comment\n", Problem::NoFlag(Sentinel::Sbatch)),
            ("#SBATCH nodes=2\n", Problem::NotAFlag("nodes=2".into())),
            ("#SBATCH - x\n", Problem::NotAFlag("-".into())),
            ("#SBATCH--nodes=2\n", Problem::NoSpace(Sentinel::Sbatch)),
            ("#GANGWAYX -n 1\n", Problem::NoSpace(Sentinel::Gangway)),
        ] {
            let e = extract(script).unwrap_err();
            assert_eq!((e.line, e.problem), (1, problem), "{script:?}");
        }
    }

    #[test]
    fn non_utf8_bytes() {
        let e = extract_bytes(b"#!/bin/sh\n#SBATCH -J caf\xe9\n").unwrap_err();
        assert_eq!((e.line, e.problem.clone()), (2, Problem::NotUtf8));
        assert!(e.to_string().contains("caf\u{fffd}"), "{e}");
        // Bad bytes anywhere else are the script's business.
        let d = extract_bytes(b"#!/bin/sh\n# caf\xe9\n#SBATCH -n 2\necho caf\xe9\n#SBATCH \xff\n")
            .unwrap();
        assert_eq!(args(&d), [vec!["-n", "2"]]);
        assert_eq!(d.late.len(), 1);
    }

    proptest! {
        #[test]
        fn extraction_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = extract_bytes(&bytes);
        }
    }
}
