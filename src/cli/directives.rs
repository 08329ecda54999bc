//! Batch-script directives: the `#GANGWAY` and `#SBATCH` lines at the top of a script given to
//! `gangway batch`, read the way Slurm's `sbatch` reads them, checked line by line against the
//! batch command's flags, and merged in front of the command line so the command line wins.
//!
//! # Which lines are directives
//!
//! The script is split into lines at `\n`; a `\r` before it is dropped (CRLF scripts), and a UTF-8
//! byte-order mark before the first line is skipped. Line numbers count from 1. From the top:
//!
//! - A line that starts, in column 0, with `#GANGWAY` or `#SBATCH` followed by a space, a tab or
//!   the end of the line is a **directive**. The tags are case-sensitive, as in Slurm: `#sbatch` and
//!   an indented `  #SBATCH` are ordinary comments. A tag glued to more text (`#SBATCH--nodes=2`) is
//!   an error rather than a comment, so a mistyped directive is never silently dropped.
//! - A line that is empty, only whitespace, or whose first non-whitespace character is `#` (the
//!   `#!` line, any other comment) is skipped.
//! - The first other line is the script's first command: reading stops there (Slurm's rule). Tagged
//!   lines after it are not directives; they are reported in [`Directives::late`] so the batch
//!   command can warn about them.
//!
//! A script without `#!`, or an empty one, is fine: it simply has no [`Directives::shebang`] (or no
//! directives). Directive lines must be UTF-8; other lines (comments, the body) may hold any bytes.
//!
//! # How a directive's words are split
//!
//! The text after the tag is split like a POSIX shell splits a command line, with the `shlex`
//! crate: whitespace separates words; `'...'` and `"..."` group them (`--job-name="my job"` is
//! one word, `--job-name=my job`); a backslash escapes the next character; a `#` that starts a word
//! begins a comment to the end of the line (`#SBATCH -N 2  # two nodes`). Two deliberate
//! differences from `sbatch`, which has its own splitter: a `#` inside a word is kept
//! (`-J run#3` is `run#3`; Slurm would cut the line at it), and inside single quotes a backslash is
//! literal, as in a shell. An unterminated quote or a lone trailing backslash is an error naming
//! the line, as is a directive with no words or whose first word is not a flag.
//!
//! `shlex` was chosen over `shell-words`: both follow POSIX quoting, but `shlex` is already in
//! the build (through `cc`), is widely used, has no dependencies, and handles `#` comments.
//!
//! # Precedence
//!
//! [`merged_args`] puts every `#SBATCH` directive first (in file order), then every `#GANGWAY`
//! directive (in file order), then the command line. With clap's "last one wins"
//! (`Command::args_override_self(true)`, which the batch command must set), a flag given on the
//! command line beats both kinds of directive, a `#GANGWAY` line beats an `#SBATCH` line for the same
//! flag wherever the two stand in the file (a script adapted for gangway keeps its Slurm lines for
//! Slurm and adds gangway-specific ones), and among lines of one kind the later wins, as in
//! `sbatch`. Flags that accumulate (a `Vec` of values) collect from all of them, in that order.
//!
//! # Checking, and errors that name the line
//!
//! [`validate`] parses each directive line on its own against the batch command's
//! [`clap::Command`] (any command: nothing here knows the batch flags), so a bad value is reported
//! with the line it came from:
//!
//! ```text
//! job.sh:3: #SBATCH --time=1:99: invalid value '1:99' for '--time <TIME>': time limit '1:99': seconds must be 0-59 (...)
//! ```
//!
//! Errors that only a combination of lines can show (a flag that requires another one set on a
//! different line, two conflicting flags on different lines) are left to the final parse of the
//! merged arguments; [`Validated::source_of`] tells which directive set a flag, so a later
//! check of a value (one done after parsing, as `run` does) can still name the line.
//!
//! # Slurm options gangway does not support yet
//!
//! A flag the batch command does not know but `sbatch` does (`--account`, `--qos`,
//! `--mail-type`, ... see [`SLURM_OPTIONS`]) is an error naming the line and the flag, unless the
//! user opts out with [`IGNORE_UNKNOWN_FLAG`] (`--ignore-unknown-directives`): then the flag and its
//! value are dropped, the rest of the line is kept, and each drop is listed in
//! [`Validated::ignored`] for a warning. A flag neither knows (a typo such as `--tiem`) is always
//! an error, with clap's suggestion.
//!
//! The batch command is expected to accept at least [`EXPECTED_BATCH_FLAGS`]: the `#SBATCH`
//! flags most scripts use.

use std::ffi::OsString;
use std::fmt;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use gangway_launcher::output::{BatchPatternVars, PatternError, expand_batch_pattern};
use gangway_launcher::time_limit::{TimeSpecError, parse_time_limit};

/// The flag with which a user skips Slurm options gangway does not support yet.
pub const IGNORE_UNKNOWN_FLAG: &str = "--ignore-unknown-directives";

/// The `sbatch` flags (long names) the `batch` command is expected to accept, so that common
/// Slurm scripts run unchanged: the shape, time, placement, naming, output and job-control ones.
pub const EXPECTED_BATCH_FLAGS: &[&str] = &[
    "nodes",
    "ntasks",
    "ntasks-per-node",
    "cpus-per-task",
    "mem",
    "mem-per-cpu",
    "gres",
    "gpus",
    "gpus-per-node",
    "gpus-per-task",
    "time",
    "partition",
    "job-name",
    "output",
    "error",
    "requeue",
    "no-requeue",
    "exclusive",
    "nodelist",
    "exclude",
    "chdir",
    "export",
    "hold",
    "dependency",
    "parsable",
    "wrap",
];

/// Whether a Slurm option takes a value, which decides how many words dropping it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlurmValue {
    /// `--hold`: never a value.
    None,
    /// `--exclusive[=user]`: a value only when attached (`=...`, or glued to a short flag).
    Optional,
    /// `--account=A` or `--account A`: always a value.
    Required,
}

/// `sbatch`'s options: long name, short letter, and whether they take a value. Used to tell a
/// Slurm option gangway has not implemented (an error naming it, or skipped on request) from a
/// typo (always an error).
pub const SLURM_OPTIONS: &[(&str, Option<char>, SlurmValue)] = {
    use SlurmValue::{None as N, Optional as O, Required as R};
    &[
        ("account", Some('A'), R),
        ("acctg-freq", None, R),
        ("array", Some('a'), R),
        ("batch", None, R),
        ("bb", None, R),
        ("bbf", None, R),
        ("begin", Some('b'), R),
        ("chdir", Some('D'), R),
        ("cluster-constraint", None, R),
        ("clusters", Some('M'), R),
        ("comment", None, R),
        ("constraint", Some('C'), R),
        ("container", None, R),
        ("container-id", None, R),
        ("contiguous", None, N),
        ("core-spec", Some('S'), R),
        ("cores-per-socket", None, R),
        ("cpu-freq", None, R),
        ("cpus-per-gpu", None, R),
        ("cpus-per-task", Some('c'), R),
        ("deadline", None, R),
        ("delay-boot", None, R),
        ("dependency", Some('d'), R),
        ("distribution", Some('m'), R),
        ("error", Some('e'), R),
        ("exclude", Some('x'), R),
        ("exclusive", None, O),
        ("export", None, R),
        ("export-file", None, R),
        ("extra", None, R),
        ("extra-node-info", Some('B'), R),
        ("get-user-env", None, O),
        ("gid", None, R),
        ("gpu-bind", None, R),
        ("gpu-freq", None, R),
        ("gpus", Some('G'), R),
        ("gpus-per-node", None, R),
        ("gpus-per-socket", None, R),
        ("gpus-per-task", None, R),
        ("gres", None, R),
        ("gres-flags", None, R),
        ("hint", None, R),
        ("hold", Some('H'), N),
        ("ignore-pbs", None, N),
        ("input", Some('i'), R),
        ("job-name", Some('J'), R),
        ("kill-on-invalid-dep", None, R),
        ("licenses", Some('L'), R),
        ("mail-type", None, R),
        ("mail-user", None, R),
        ("mcs-label", None, R),
        ("mem", None, R),
        ("mem-bind", None, R),
        ("mem-per-cpu", None, R),
        ("mem-per-gpu", None, R),
        ("mincpus", None, R),
        ("network", None, R),
        ("nice", None, O),
        ("no-kill", Some('k'), O),
        ("no-requeue", None, N),
        ("nodefile", Some('F'), R),
        ("nodelist", Some('w'), R),
        ("nodes", Some('N'), R),
        ("ntasks", Some('n'), R),
        ("ntasks-per-core", None, R),
        ("ntasks-per-gpu", None, R),
        ("ntasks-per-node", None, R),
        ("ntasks-per-socket", None, R),
        ("open-mode", None, R),
        ("output", Some('o'), R),
        ("overcommit", Some('O'), N),
        ("oversubscribe", Some('s'), N),
        ("parsable", None, N),
        ("partition", Some('p'), R),
        ("power", None, R),
        ("prefer", None, R),
        ("priority", None, R),
        ("profile", None, R),
        ("propagate", None, O),
        ("qos", Some('q'), R),
        ("quiet", Some('Q'), N),
        ("reboot", None, N),
        ("requeue", None, N),
        ("reservation", None, R),
        ("signal", None, R),
        ("sockets-per-node", None, R),
        ("spread-job", None, N),
        ("switches", None, R),
        ("test-only", None, N),
        ("thread-spec", None, R),
        ("threads-per-core", None, R),
        ("time", Some('t'), R),
        ("time-min", None, R),
        ("tmp", None, R),
        ("tres-bind", None, R),
        ("tres-per-task", None, R),
        ("uid", None, R),
        ("use-min-nodes", None, N),
        ("verbose", Some('v'), N),
        ("wait", Some('W'), N),
        ("wait-all-nodes", None, R),
        ("wckey", None, R),
        ("wrap", None, R),
    ]
};

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

    /// Whether some directive holds exactly this word (say, [`IGNORE_UNKNOWN_FLAG`] in a
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

/// The directive arguments in front of the command line's, so that the command line wins (see
/// the module docs). `cli` is what follows the subcommand (`-N 2 job.sh a b`), and so is the
/// result: parse it with a command built with `no_binary_name(true)` and
/// `args_override_self(true)`, or put a program name in front. Call [`validate`] first: it makes
/// sure every line is complete on its own, so no directive can swallow the next one's words.
pub fn merged_args(directives: &Directives, cli: &[OsString]) -> Vec<OsString> {
    directives
        .in_merge_order()
        .flat_map(|d| d.args.iter().map(OsString::from))
        .chain(cli.iter().cloned())
        .collect()
}

/// What to do with a Slurm option the batch command does not support yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownDirectives {
    /// Stop with an error naming the line and the flag (the default: nothing is silently lost).
    #[default]
    Error,
    /// Drop the flag and its value, and list it in [`Validated::ignored`].
    Ignore,
}

/// A Slurm option dropped from a directive at the user's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub line: usize,
    pub text: String,
    /// The dropped words: the flag, and its value when it had one.
    pub words: Vec<String>,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}: ignoring '{}' (not supported by gangway yet)",
            self.line,
            self.text,
            self.words.join(" ")
        )
    }
}

/// Directives that passed [`validate`], ready to merge.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The directives, without the words that were ignored (and without lines left empty).
    pub directives: Directives,
    /// Slurm options dropped under [`UnknownDirectives::Ignore`], for a warning each.
    pub ignored: Vec<Ignored>,
    /// Argument id -> index into `directives.directives` of the line that sets it last in
    /// merge order (the value the merged parse keeps, unless the command line sets it).
    setters: Vec<(String, usize)>,
}

impl Validated {
    /// [`merged_args`] of the validated directives.
    pub fn merged_args(&self, cli: &[OsString]) -> Vec<OsString> {
        merged_args(&self.directives, cli)
    }

    /// The directive whose value of the argument `id` (clap's id: the field name, `time`) the
    /// merged parse keeps, or `None` when the command line sets it (`cli`: the command line parsed
    /// on its own) or nothing does. For errors found after parsing, to name the line.
    pub fn source_of(&self, id: &str, cli: &ArgMatches) -> Option<&Directive> {
        let on_command_line = cli
            .ids()
            .any(|i| i.as_str() == id && cli.value_source(id) == Some(ValueSource::CommandLine));
        if on_command_line {
            return None;
        }
        let (_, index) = self.setters.iter().rev().find(|(i, _)| i == id)?;
        self.directives.directives.get(*index)
    }
}

/// Checks every directive line on its own against `command` (the batch command, or any other),
/// so each error names its line; drops or refuses Slurm options `command` lacks, per `unknown`.
///
/// Required arguments and `requires` relations are not checked per line (the script name comes
/// from the command line, and a required flag may stand on another line): the parse of the
/// merged arguments does that.
pub fn validate(
    directives: &Directives,
    command: &Command,
    unknown: UnknownDirectives,
) -> Result<Validated, DirectiveError> {
    let mut relaxed = command
        .clone()
        .no_binary_name(true)
        .args_override_self(true)
        .arg_required_else_help(false)
        .subcommand_required(false)
        // A positional that takes hyphenated words (`SCRIPT [ARGS]...`) would swallow a mistyped
        // flag; per line, no positional may take one, so clap reports the flag as unknown.
        .mut_args(|a| {
            let positional = a.is_positional();
            let a = a.required(false);
            if positional { a.allow_hyphen_values(false) } else { a }
        });
    let groups: Vec<String> = relaxed.get_groups().map(|g| g.get_id().to_string()).collect();
    for group in groups {
        relaxed = relaxed.mut_group(group, |g| g.required(false));
    }
    // Building fills in what introspection needs (value counts, the help flag).
    relaxed.build();

    let mut kept = Directives { directives: Vec::new(), ..directives.clone() };
    let mut ignored = Vec::new();
    for d in &directives.directives {
        let fail =
            |problem: Problem| DirectiveError { line: d.line, text: d.text.clone(), problem };
        let (args, dropped) = drop_slurm_only(&d.args, &relaxed);
        if let Some((first, _)) = dropped.first()
            && unknown == UnknownDirectives::Error
        {
            return Err(fail(Problem::Unsupported(first.clone())));
        }
        ignored.extend(dropped.into_iter().map(|(_, words)| Ignored {
            line: d.line,
            text: d.text.clone(),
            words,
        }));
        if args.is_empty() {
            continue;
        }
        if let Some(word) = args.iter().find(|a| matches!(a.as_str(), "-h" | "--help" | "-V")) {
            return Err(fail(Problem::NotInDirective(word.clone())));
        }
        kept.directives.push(Directive { args, ..d.clone() });
    }

    let mut setters = Vec::new();
    let order: Vec<usize> = {
        let sbatch =
            kept.directives.iter().enumerate().filter(|(_, d)| d.sentinel == Sentinel::Sbatch);
        let gangway =
            kept.directives.iter().enumerate().filter(|(_, d)| d.sentinel == Sentinel::Gangway);
        sbatch.chain(gangway).map(|(i, _)| i).collect()
    };
    for index in order {
        let Some(d) = kept.directives.get(index) else { continue };
        let fail =
            |problem: Problem| DirectiveError { line: d.line, text: d.text.clone(), problem };
        let matches = match relaxed.clone().try_get_matches_from(&d.args) {
            Ok(m) => m,
            Err(e) => match e.kind() {
                // Conflicts and values are checked before required arguments, so the line is
                // fine on its own: parse it again only to learn which flags it sets.
                ErrorKind::MissingRequiredArgument => {
                    match relaxed.clone().ignore_errors(true).try_get_matches_from(&d.args) {
                        Ok(m) => m,
                        Err(_) => continue,
                    }
                }
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    return Err(fail(Problem::NotInDirective("--help/--version".into())));
                }
                _ => return Err(fail(Problem::Invalid(clap_message(&e)))),
            },
        };
        for arg in relaxed.get_arguments() {
            let id = arg.get_id().as_str();
            if !matches.ids().any(|i| i.as_str() == id)
                || matches.value_source(id) != Some(ValueSource::CommandLine)
            {
                continue;
            }
            if arg.is_positional() {
                let value = matches
                    .get_raw(id)
                    .and_then(|mut v| v.next())
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(fail(Problem::NotAFlag(value)));
            }
            setters.push((id.to_string(), index));
        }
    }
    Ok(Validated { directives: kept, ignored, setters })
}

/// Splits a directive's words into those to keep and the Slurm options `command` lacks (each
/// with the words that dropping it removes). Words the command does not know and Slurm does
/// not either are kept, for clap to report with its suggestions.
fn drop_slurm_only(
    args: &[String],
    command: &Command,
) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut words = args.iter().peekable();
    while let Some(word) = words.next() {
        if word == "--" {
            // What follows is positional; keep it whole so the positional check reports it.
            kept.push(word.clone());
            kept.extend(words.by_ref().cloned());
            break;
        }
        let (known, slurm, glued) = if let Some(long) = word.strip_prefix("--") {
            let (name, glued) = match long.split_once('=') {
                Some((name, _)) => (name, true),
                None => (long, false),
            };
            let known = command.get_arguments().find(|a| {
                a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
            });
            let slurm = SLURM_OPTIONS.iter().find(|(l, _, _)| *l == name);
            (known, slurm, glued)
        } else if let Some(short) = word.strip_prefix('-').and_then(|s| s.chars().next()) {
            let known = command.get_arguments().find(|a| {
                a.get_short() == Some(short)
                    || a.get_all_short_aliases().is_some_and(|v| v.contains(&short))
            });
            let slurm = SLURM_OPTIONS.iter().find(|(_, s, _)| *s == Some(short));
            (known, slurm, word.chars().count() > 2)
        } else {
            kept.push(word.clone());
            continue;
        };
        match (known, slurm) {
            (Some(arg), _) => {
                kept.push(word.clone());
                let needs_value = arg.get_action().takes_values()
                    && arg.get_num_args().is_none_or(|r| r.min_values() > 0);
                // Its value is the next word, even one starting with '-': never a flag to judge.
                if needs_value && !glued {
                    kept.extend(words.next().cloned());
                }
            }
            (None, Some((long, short, takes))) => {
                let flag = match (word.starts_with("--"), short) {
                    (false, Some(s)) => format!("-{s}"),
                    _ => format!("--{long}"),
                };
                let mut removed = vec![word.clone()];
                if *takes == SlurmValue::Required && !glued {
                    removed.extend(words.next().cloned());
                }
                dropped.push((flag, removed));
            }
            (None, None) => kept.push(word.clone()),
        }
    }
    (kept, dropped)
}

/// clap's error as one line: its message and tips, without the usage and help pointers.
fn clap_message(error: &clap::Error) -> String {
    error
        .render()
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A clap value parser for `--time`: Slurm's formats, checked when parsed, so a bad value in a
/// directive is reported with its line. Returns the text unchanged for later conversion.
pub fn valid_time_limit(value: &str) -> Result<String, TimeSpecError> {
    parse_time_limit(value).map(|_| value.to_string())
}

/// A clap value parser for a batch job's `--output`/`--error`: the escapes of
/// [`expand_batch_pattern`], checked when parsed. Returns the pattern unchanged.
pub fn valid_output_pattern(value: &str) -> Result<String, PatternError> {
    let probe = BatchPatternVars { job_id: "1", job_name: "j", user: "u", first_node: "n" };
    expand_batch_pattern(value, &probe).map(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, CommandFactory, FromArgMatches, Parser};
    use proptest::prelude::*;

    /// A stand-in for the future `gangway batch` flags: the ones [`EXPECTED_BATCH_FLAGS`] lists.
    #[derive(Debug, Parser)]
    #[command(name = "batch", args_override_self = true)]
    struct TestBatch {
        #[arg(short = 'N', long)]
        nodes: Option<String>,
        #[arg(short = 'n', long)]
        ntasks: Option<u32>,
        #[arg(long)]
        ntasks_per_node: Option<u32>,
        #[arg(short = 'c', long)]
        cpus_per_task: Option<u32>,
        #[arg(long)]
        mem: Option<String>,
        #[arg(long)]
        mem_per_cpu: Option<String>,
        #[arg(long)]
        gres: Vec<String>,
        #[arg(short = 'G', long)]
        gpus: Option<String>,
        #[arg(long)]
        gpus_per_node: Option<String>,
        #[arg(long)]
        gpus_per_task: Option<String>,
        #[arg(short = 't', long, value_parser = valid_time_limit)]
        time: Option<String>,
        #[arg(short = 'p', long)]
        partition: Option<String>,
        #[arg(short = 'J', long)]
        job_name: Option<String>,
        #[arg(short = 'o', long, value_parser = valid_output_pattern)]
        output: Option<String>,
        #[arg(short = 'e', long, value_parser = valid_output_pattern)]
        error: Option<String>,
        #[arg(long, overrides_with = "no_requeue")]
        requeue: bool,
        #[arg(long)]
        no_requeue: bool,
        #[arg(long)]
        exclusive: bool,
        #[arg(short = 'w', long)]
        nodelist: Option<String>,
        #[arg(short = 'x', long)]
        exclude: Option<String>,
        #[arg(short = 'D', long)]
        chdir: Option<String>,
        #[arg(long)]
        export: Option<String>,
        #[arg(short = 'H', long)]
        hold: bool,
        #[arg(short = 'd', long)]
        dependency: Option<String>,
        #[arg(long)]
        parsable: bool,
        #[arg(long, requires = "parsable")]
        json: bool,
        #[arg(long)]
        wrap: Option<String>,
        #[arg(long)]
        ignore_unknown_directives: bool,
        /// SCRIPT [ARGS]: one trailing list, so the script's arguments are never read as flags.
        #[arg(
            required_unless_present = "wrap",
            trailing_var_arg = true,
            allow_hyphen_values = true,
            num_args = 1..
        )]
        script: Vec<String>,
    }

    fn command() -> Command {
        TestBatch::command()
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse_merged(v: &Validated, cli: &[&str]) -> TestBatch {
        let mut argv = os(&["batch"]);
        argv.extend(v.merged_args(&os(cli)));
        let matches = command().try_get_matches_from(argv).unwrap();
        TestBatch::from_arg_matches(&matches).unwrap()
    }

    fn check(script: &str) -> Result<Validated, DirectiveError> {
        validate(&extract(script).unwrap(), &command(), UnknownDirectives::Error)
    }

    fn err(script: &str) -> DirectiveError {
        match extract(script) {
            Err(e) => e,
            Ok(d) => validate(&d, &command(), UnknownDirectives::Error).unwrap_err(),
        }
    }

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

    #[test]
    fn command_line_overrides_gangway_overrides_sbatch() {
        let v = check(
            "#!/bin/bash\n\
             #GANGWAY --partition=gw -t 10\n\
             #SBATCH --partition=slurm -J fromslurm -t 20 --no-requeue\n\
             #SBATCH -N 3 --gres=gpu:1\n\
             #GANGWAY --gres=gpu:2\n\
             #SBATCH -N 4\n",
        )
        .unwrap();
        let merged: Vec<String> = v
            .merged_args(&os(&["-t", "5", "job.sh"]))
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert_eq!(
            merged,
            [
                "--partition=slurm",
                "-J",
                "fromslurm",
                "-t",
                "20",
                "--no-requeue",
                "-N",
                "3",
                "--gres=gpu:1",
                "-N",
                "4",
                "--partition=gw",
                "-t",
                "10",
                "--gres=gpu:2",
                "-t",
                "5",
                "job.sh"
            ]
        );
        let b = parse_merged(&v, &["-t", "5", "--requeue", "job.sh", "--nodes", "99"]);
        assert_eq!(b.partition.as_deref(), Some("gw"));
        assert_eq!(b.job_name.as_deref(), Some("fromslurm"));
        assert_eq!(b.time.as_deref(), Some("5"));
        assert_eq!(b.nodes.as_deref(), Some("4"));
        assert_eq!(b.gres, ["gpu:1", "gpu:2"]);
        assert!(b.requeue && !b.no_requeue);
        assert_eq!(b.script, ["job.sh", "--nodes", "99"]);
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = err("#!/bin/bash\n#SBATCH -N 2\n#SBATCH --time=1:99\nsrun x\n");
        let located = e.located("job.sh");
        assert!(located.starts_with("job.sh:3: #SBATCH --time=1:99: "), "{located}");
        assert!(located.contains("seconds must be 0-59"), "{located}");
        assert!(!located.contains("Usage") && !located.contains('\n'), "{located}");

        let e = err("#SBATCH -n 2 -o out-%q.txt\n");
        assert!(e.to_string().contains("unknown '%q'"), "{e}");
        let e = err("#SBATCH -n two\n");
        assert!(e.to_string().contains("'two'"), "{e}");
        // A flag missing its value must not swallow the next line's flag.
        let e = err("#SBATCH -J\n#SBATCH -N 2\n");
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("value is required"), "{e}");
    }

    #[test]
    fn typos_are_errors_with_a_tip_even_when_ignoring() {
        let d = extract("#SBATCH --tiem=5\n").unwrap();
        for policy in [UnknownDirectives::Error, UnknownDirectives::Ignore] {
            let e = validate(&d, &command(), policy).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("--tiem") && text.contains("--time"), "{text}");
        }
    }

    #[test]
    fn unsupported_slurm_options_are_refused_by_default() {
        for (script, flag) in [
            ("#SBATCH --account=proj\n", "--account"),
            ("#SBATCH -N 1 -A proj\n", "-A"),
            ("#SBATCH --mail-type END\n", "--mail-type"),
            ("#SBATCH --qos=high -N 1\n", "--qos"),
        ] {
            let e = err(script);
            assert_eq!(e.problem, Problem::Unsupported(flag.into()), "{script}");
            assert!(e.located("s.sh").starts_with("s.sh:1: #SBATCH"), "{e}");
            assert!(e.to_string().contains(IGNORE_UNKNOWN_FLAG), "{e}");
        }
    }

    #[test]
    fn unsupported_slurm_options_can_be_skipped() {
        let d = extract(
            "#SBATCH --account proj -N 2 --mail-type=END\n\
             #SBATCH -Aproj\n\
             #SBATCH --nice -q high --contiguous -J x\n",
        )
        .unwrap();
        let v = validate(&d, &command(), UnknownDirectives::Ignore).unwrap();
        assert_eq!(args(&v.directives), [vec!["-N", "2"], vec!["-J", "x"]]);
        let dropped: Vec<(usize, String)> =
            v.ignored.iter().map(|i| (i.line, i.words.join(" "))).collect();
        assert_eq!(
            dropped,
            [
                (1, "--account proj".into()),
                (1, "--mail-type=END".into()),
                (2, "-Aproj".into()),
                (3, "--nice".into()),
                (3, "-q high".into()),
                (3, "--contiguous".into()),
            ]
        );
        assert!(v.ignored[0].to_string().contains("ignoring '--account proj'"));
        let b = parse_merged(&v, &["job.sh"]);
        assert_eq!((b.nodes.as_deref(), b.job_name.as_deref()), (Some("2"), Some("x")));
    }

    #[test]
    fn positionals_help_and_version_are_refused() {
        let e = err("#SBATCH -N 2 extra\n");
        assert_eq!(e.problem, Problem::NotAFlag("extra".into()));
        let e = err("#SBATCH -N 2 -- job.sh\n");
        assert_eq!(e.problem, Problem::NotAFlag("job.sh".into()));
        for script in ["#SBATCH --help\n", "#SBATCH -h\n", "#GANGWAY -V\n"] {
            assert!(matches!(err(script).problem, Problem::NotInDirective(_)), "{script}");
        }
    }

    #[test]
    fn cross_line_requirements_are_left_to_the_merged_parse() {
        // `--json` requires `--parsable`, given on another line: fine per line, fine merged.
        let v = check("#GANGWAY --json\n#GANGWAY --parsable\n").unwrap();
        let b = parse_merged(&v, &["s.sh"]);
        assert!(b.json && b.parsable);
        // And the script itself comes from the command line, not a directive.
        assert!(check("#SBATCH -N 1\n").is_ok());
    }

    #[test]
    fn source_of_names_the_line_the_value_came_from() {
        let v = check("#SBATCH -t 20\n#SBATCH -J a\n#GANGWAY -t 30\n#SBATCH -J b\n").unwrap();
        let cli = command().try_get_matches_from(["batch", "-N", "2", "job.sh"]).unwrap();
        assert_eq!(v.source_of("time", &cli).map(|d| d.line), Some(3));
        assert_eq!(v.source_of("job_name", &cli).map(|d| d.line), Some(4));
        assert_eq!(v.source_of("nodes", &cli), None, "set on the command line");
        assert_eq!(v.source_of("partition", &cli), None, "set nowhere");
        assert_eq!(v.source_of("no_such_id", &cli), None);
        let cli = command().try_get_matches_from(["batch", "-t", "5", "job.sh"]).unwrap();
        assert_eq!(v.source_of("time", &cli), None);
    }

    #[test]
    fn expected_flags_are_slurm_flags_the_test_command_takes() {
        let mut cmd = command();
        cmd.build();
        for flag in EXPECTED_BATCH_FLAGS {
            assert!(SLURM_OPTIONS.iter().any(|(l, _, _)| l == flag), "{flag}");
            assert!(cmd.get_arguments().any(|a| a.get_long() == Some(flag)), "{flag}");
        }
        assert!(
            cmd.get_arguments().any(|a| a.get_long() == IGNORE_UNKNOWN_FLAG.strip_prefix("--"))
        );
        let d = extract("#GANGWAY --ignore-unknown-directives\n#SBATCH --account=x\n").unwrap();
        assert!(d.mentions(IGNORE_UNKNOWN_FLAG));
    }

    #[test]
    fn works_with_any_command() {
        // Nothing batch-specific: a bare command with one flag.
        let cmd = Command::new("tiny").arg(clap::Arg::new("level").long("level").short('l'));
        let d = extract("#GANGWAY --level 3\n#GANGWAY --account=x\n").unwrap();
        let e = validate(&d, &cmd, UnknownDirectives::Error).unwrap_err();
        assert_eq!((e.line, e.problem), (2, Problem::Unsupported("--account".into())));
        let v = validate(&d, &cmd, UnknownDirectives::Ignore).unwrap();
        assert_eq!(args(&v.directives), [vec!["--level", "3"]]);
        // A derived Args struct under another name works too.
        #[derive(Debug, Args)]
        struct Few {
            #[arg(short = 'N', long)]
            nodes: u32,
        }
        let cmd = Few::augment_args(Command::new("few"));
        assert!(
            validate(&extract("#SBATCH -N 3\n").unwrap(), &cmd, UnknownDirectives::Error).is_ok()
        );
        let e = validate(&extract("#SBATCH -N x\n").unwrap(), &cmd, UnknownDirectives::Error)
            .unwrap_err();
        assert!(e.to_string().contains("invalid value 'x'"), "{e}");
    }

    #[test]
    fn value_parsers() {
        assert_eq!(valid_time_limit("1-00:00:00").unwrap(), "1-00:00:00");
        assert!(valid_time_limit("1:99").unwrap_err().to_string().contains("seconds must be 0-59"));
        assert_eq!(valid_output_pattern("%x-%j.out").unwrap(), "%x-%j.out");
        assert!(valid_output_pattern("%t").unwrap_err().to_string().contains("unknown '%t'"));
    }

    proptest! {
        #[test]
        fn extraction_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = extract_bytes(&bytes);
        }

        #[test]
        fn directive_like_input_never_panics(
            lines in proptest::collection::vec(
                "(#SBATCH|#GANGWAY|#|  |echo)( |\t)?[-a-zA-Z0-9=:%'\"\\\\# \r]{0,30}",
                0..8,
            )
        ) {
            let script = lines.join("\n");
            if let Ok(d) = extract(&script) {
                for policy in [UnknownDirectives::Error, UnknownDirectives::Ignore] {
                    if let Ok(v) = validate(&d, &command(), policy) {
                        let _ = v.merged_args(&os(&["job.sh"]));
                    }
                }
            }
        }
    }
}
