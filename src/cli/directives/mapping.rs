//! What directives mean to a command: each line checked against the command's flags, Slurm
//! options gangway does not take yet, and the merge in front of the command line (the mapping
//! half of [the directives module](super); see there for the precedence rules).

use std::ffi::OsString;
use std::fmt;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use gangway_launcher::output::{BatchPatternVars, PatternError, expand_batch_pattern};
use gangway_launcher::time_limit::{TimeSpecError, parse_time_limit};

use super::extract::{Directive, DirectiveError, Directives, Problem, Sentinel};

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

    if unknown == UnknownDirectives::Error {
        // Every Slurm-only flag of the script at once, not one per try.
        let mut all = directives.directives.iter().flat_map(|d| {
            drop_slurm_only(&d.args, &relaxed).1.into_iter().map(move |(flag, _)| (d, flag))
        });
        if let Some((d, first)) = all.next() {
            let others: Vec<(usize, String)> = all.map(|(o, flag)| (o.line, flag)).collect();
            let problem = if others.is_empty() {
                Problem::Unsupported(first)
            } else {
                Problem::UnsupportedSeveral { first, others }
            };
            return Err(DirectiveError { line: d.line, text: d.text.clone(), problem });
        }
    }
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
    let probe =
        BatchPatternVars { job_id: "1", job_name: "j", user: "u", first_node: "n", array: None };
    expand_batch_pattern(value, &probe).map(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::extract::extract;
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
        let several =
            extract("#SBATCH --account=x\n#SBATCH --level 2 --qos=high --mail-type=END\n").unwrap();
        let e = validate(&several, &cmd, UnknownDirectives::Error).unwrap_err();
        assert_eq!(
            (e.line, e.problem.clone()),
            (
                1,
                Problem::UnsupportedSeveral {
                    first: "--account".into(),
                    others: vec![(2, "--qos".into()), (2, "--mail-type".into())]
                }
            )
        );
        assert!(e.to_string().contains("and so are --qos (line 2), --mail-type (line 2)"), "{e}");
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
