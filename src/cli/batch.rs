//! `gangway batch`: submits a script (with its `#GANGWAY`/`#SBATCH` directives) or a `--wrap`ped
//! command as a batch job, and prints its id.

use std::ffi::OsString;

use clap::{Args, Command, FromArgMatches};

use super::begin_time::{now_ms, parse_begin};
use super::directives::{self, IGNORE_UNKNOWN_FLAG, UnknownDirectives, valid_output_pattern};
use super::error::{CliError, refused};
use super::shape::ShapeArgs;
use super::submission::{submit_host, submitter_umask};
use crate::client::{Client, ClientError};
use crate::controller::config::{DEFAULT_MAX_SCRIPT_SIZE, MAX_SCRIPT_SIZE_CEILING};
use crate::controller::disk::human;
use crate::controller::slurm_env::SUBMIT_HOST;
use crate::protocol::array::ArraySpec;
use crate::protocol::constraint::Constraint;
use crate::protocol::end_handling::parse_mail_types;
use crate::protocol::{
    EndHandling, JobKind, MailEvent, MailRequest, Reply, Request, Submission, WarningSignal,
};
use gangway_launcher::rank_env::{ExportPolicy, base_environment};

const EXAMPLES: &str = "\
Examples:
  gangway batch job.sh                     run job.sh on one core of one node; output in gangway-<id>.out
  gangway batch -N 3 -n 12 -t 30 job.sh    12 tasks on 3 nodes, 30 minutes at most
  gangway batch --wrap 'hostname; date'    a one-line job without a script file
  gangway batch -o run-%j.log --parsable job.sh   print only the id; output to run-<id>.log
  gangway batch -A physics -q urgent job.sh   charged to account physics at QOS urgent (see `gangway share`)
  gangway batch -d afterok:$(gangway batch --parsable a.sh) b.sh   b.sh once a.sh succeeded
  gangway batch --test-only -N 4 job.sh    when and where it would start; nothing submitted
  gangway batch -n 2 --gpus-per-task=k40m:1 job.sh   one Tesla K40m per task (types: `sinfo -o %G`)
  gangway batch --array=0-999%50 -o out_%A_%a.txt job.sh   1000 tasks, at most 50 running at once;
                                           each sees SLURM_ARRAY_TASK_ID (0..999) and writes out_<array>_<task>.txt
Directives: lines '#GANGWAY -N 2' or '#SBATCH --ntasks=8' at the top of the script, before its
first command; command-line flags win over them. Batch jobs are requeued if a node fails
(--no-requeue: fail instead); they see GANGWAY_JOB_ID, GANGWAY_NODELIST, GANGWAY_RESTART_COUNT...";

/// Flags of `gangway batch`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES, args_override_self = true)]
pub struct BatchArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Output file pattern: %j job id, %x job name, %u user, %N first node, %A array job id, %a
    /// array task index (default gangway-%j.out; an array task gangway-%A_%a.out).
    #[arg(short = 'o', long, value_name = "PATTERN", value_parser = valid_output_pattern)]
    pub output: Option<String>,
    /// Error file pattern (default: with the output).
    #[arg(short = 'e', long, value_name = "PATTERN", value_parser = valid_output_pattern)]
    pub error: Option<String>,
    /// Requeue the job if a node fails (the default for batch jobs).
    #[arg(long, overrides_with = "no_requeue")]
    pub requeue: bool,
    /// Fail the job (NODE_FAIL) instead of requeuing it if a node fails.
    #[arg(long)]
    pub no_requeue: bool,
    /// Working directory of the job (default: the current one).
    #[arg(short = 'D', long, value_name = "DIR")]
    pub chdir: Option<String>,
    /// Environment for the job: ALL (default), NONE, or a list such as ALL,FOO=bar or PATH,HOME.
    #[arg(long, value_name = "LIST")]
    pub export: Option<String>,
    /// The MPI wire-up the job's steps (`gangway run`) get unless they say otherwise: pmi2,
    /// pmix, none or auto (sets GANGWAY_MPI in the job's environment).
    #[arg(long, value_name = "KIND")]
    pub mpi: Option<gangway_launcher::pmi::pmix::MpiKind>,
    /// Print only the job id.
    #[arg(long)]
    pub parsable: bool,
    /// Send SIG to the job TIME seconds (default 60) before its time limit: to its steps, or with
    /// B: to the batch shell only (for a trap in the script). R: is accepted and changes nothing.
    #[arg(long, value_name = "[B:]SIG[@TIME]", value_parser = parse_warning)]
    pub signal: Option<WarningSignal>,
    /// Output and error files: truncate (default for a first run) or append; a requeued job
    /// appends unless this says truncate.
    #[arg(long, value_name = "MODE")]
    pub open_mode: Option<OpenMode>,
    /// Mail on these changes of the job: BEGIN, END, FAIL, REQUEUE, ALL, TIME_LIMIT,
    /// TIME_LIMIT_50/80/90, NONE (comma-separated), if the controller has a mail_program.
    #[arg(long, value_name = "TYPES", value_parser = |s: &str| parse_mail_types(s).map(MailTypes))]
    pub mail_type: Option<MailTypes>,
    /// Only nodes with these features (from the controller's configuration): gpu, a100&ib,
    /// skylake|icelake, (a|b)&ib.
    #[arg(short = 'C', long, value_name = "FEATURES")]
    pub constraint: Option<Constraint>,
    /// Not before this time: now+90 (seconds), now+2hours, 16:00, 2026-12-24T08:00, tomorrow.
    #[arg(short = 'b', long, value_name = "TIME")]
    pub begin: Option<String>,
    /// Free text kept with the job (shown by `gangway show job`).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Where the mail goes (default: the job's user).
    #[arg(long, value_name = "ADDRESS")]
    pub mail_user: Option<String>,
    /// A job array: one task per index (0-999, 1,3,5-9:2), each a job of its own with
    /// SLURM_ARRAY_TASK_ID set; %N runs at most N at once (0-999%50).
    #[arg(short = 'a', long, value_name = "INDEXES[%N]", value_parser = parse_array)]
    pub array: Option<ArraySpec>,
    /// Submit this command (run by /bin/sh) instead of a script.
    #[arg(long, value_name = "COMMAND", conflicts_with = "script")]
    pub wrap: Option<String>,
    /// Skip #SBATCH options gangway does not support yet (with a warning) instead of refusing.
    #[arg(long)]
    pub ignore_unknown_directives: bool,
    /// Wait for the job to end, and exit with its exit code (1 if it ended without one).
    #[arg(short = 'W', long)]
    pub wait: bool,
    /// Submit nothing: print when and where the job would start, as things stand.
    #[arg(long, conflicts_with = "wait")]
    pub test_only: bool,
    /// `SCRIPT [ARGS]`: the script and its arguments.
    #[arg(
        help = "SCRIPT [ARGS]: the script and its arguments (none: the script is read from standard input)",
        trailing_var_arg = true,
        num_args = 1..,
        value_name = "SCRIPT [ARGS]"
    )]
    pub script: Vec<String>,
}

fn batch_command() -> Command {
    BatchArgs::augment_args(Command::new("batch"))
}

/// The words after `batch` on the command line, as typed.
pub fn raw_args() -> Vec<OsString> {
    std::env::args_os().skip_while(|a| a != "batch").skip(1).collect()
}

/// Runs `gangway batch`; `raw` is what followed the subcommand, as typed (`raw_args`), for
/// the merge with the script's directives.
pub fn main(first: BatchArgs, raw: Vec<OsString>) -> Result<u8, CliError> {
    let usage = |m: String| Err(CliError::Usage(m));
    // The script (if any) decides the directives; re-parse with them in front.
    let (text, script_path) = match (&first.wrap, first.script.first()) {
        (Some(cmd), _) => (format!("#!/bin/sh\n{cmd}\n"), None),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => (t, Some(path.clone())),
                Err(_) => return usage(format!("{path}: not a text file; give a shell script")),
            },
            Err(e) => return usage(format!("cannot read the script {path}: {e}")),
        },
        (None, None) => {
            use std::io::{IsTerminal, Read};
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                return usage(
                    "give a script, pipe one into standard input, or --wrap COMMAND".into(),
                );
            }
            let mut bytes = Vec::new();
            // One byte past the ceiling is enough to say it is too big.
            let ceiling = MAX_SCRIPT_SIZE_CEILING + 1;
            if let Err(e) = stdin.by_ref().take(ceiling).read_to_end(&mut bytes) {
                return usage(format!("cannot read the script from standard input: {e}"));
            }
            match String::from_utf8(bytes) {
                Ok(t) if t.trim().is_empty() => {
                    return usage(
                        "standard input held no script; give a script or --wrap COMMAND".into(),
                    );
                }
                Ok(t) => (t, None),
                Err(_) => {
                    return usage("standard input: not a text file; give a shell script".into());
                }
            }
        }
    };
    if text.len() as u64 > MAX_SCRIPT_SIZE_CEILING {
        return usage(format!(
            "{}: the script is {}; no controller takes more than {} (its max_script_size, default {}). Keep data in files the script reads",
            script_path.as_deref().unwrap_or(if first.wrap.is_some() {
                "--wrap"
            } else {
                "(standard input)"
            }),
            human(text.len() as u64),
            human(MAX_SCRIPT_SIZE_CEILING),
            human(DEFAULT_MAX_SCRIPT_SIZE)
        ));
    }
    let name_for_errors = script_path.clone().unwrap_or_else(|| {
        if first.wrap.is_some() { "--wrap".into() } else { "(standard input)".into() }
    });
    let found = match directives::extract(&text) {
        Ok(d) => d,
        Err(e) => return usage(e.located(&name_for_errors)),
    };
    for late in &found.late {
        eprintln!(
            "gangway: warning: {name_for_errors}:{}: {} after the first command is ignored (as sbatch does)",
            late.line,
            late.text.trim()
        );
    }
    let mode = if first.ignore_unknown_directives || found.mentions(IGNORE_UNKNOWN_FLAG) {
        UnknownDirectives::Ignore
    } else {
        UnknownDirectives::Error
    };
    let validated = match directives::validate(&found, &batch_command(), mode) {
        Ok(v) => v,
        Err(e) => return usage(e.located(&name_for_errors)),
    };
    for i in &validated.ignored {
        eprintln!("gangway: warning: {name_for_errors}: {i}");
    }
    let merged = validated.merged_args(&raw);
    let args = match batch_command()
        .no_binary_name(true)
        .args_override_self(true)
        .try_get_matches_from(merged)
        .and_then(|m| BatchArgs::from_arg_matches(&m))
    {
        Ok(a) => a,
        Err(e) => return usage(e.to_string().trim_start_matches("error: ").trim().to_string()),
    };
    let job_shape = args.shape.to_shape()?;
    let shape = job_shape.to_protocol();
    let cwd = match &args.chdir {
        Some(d) => std::path::Path::new(d).to_path_buf(),
        None => std::env::current_dir().unwrap_or_else(|_| "/".into()),
    };
    let cwd = std::path::absolute(&cwd).unwrap_or(cwd);
    let mut env = match export_env(args.export.as_deref()) {
        Ok(e) => e,
        Err(m) => return usage(m),
    };
    env.retain(|(k, _)| k != SUBMIT_HOST);
    env.push(submit_host());
    if let Some(mpi) = args.mpi {
        env.retain(|(k, _)| k != "GANGWAY_MPI");
        env.push(("GANGWAY_MPI".into(), mpi.to_string()));
    }
    let name = args.shape.job_name.clone().unwrap_or_else(|| match &script_path {
        Some(p) => std::path::Path::new(p)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.clone()),
        // sbatch's name for a script from standard input.
        None if args.wrap.is_none() => "sbatch".into(),
        None => "wrap".into(),
    });
    let sub = Submission {
        kind: JobKind::Batch,
        name,
        shape,
        cwd: cwd.display().to_string(),
        env,
        script: Some(text),
        args: args.script.iter().skip(1).cloned().collect(),
        command: script_path.clone().or(args.wrap.clone()).unwrap_or_default(),
        output: args.output.clone(),
        error: args.error.clone(),
        requeue: !args.no_requeue,
        hold: args.shape.hold,
        umask: Some(submitter_umask()),
        idempotency_key: Some(new_key()),
        constraint: args.constraint.clone(),
        comment: args.comment.clone(),
        dependency: job_shape.dependency.clone(),
        kill_on_invalid_dep: job_shape.kill_on_invalid_dep,
        array: args.array.clone(),
        begin: match args.begin.as_deref().map(|b| parse_begin(b, now_ms())).transpose() {
            Ok(b) => b,
            Err(m) => return usage(format!("--begin: {m}")),
        },
        end_handling: EndHandling {
            warning: args.signal,
            append: args.open_mode.map(|m| m == OpenMode::Append),
            mail: args
                .mail_type
                .clone()
                .map(|t| t.0)
                .filter(|events| !events.is_empty())
                .map(|events| MailRequest { events, user: args.mail_user.clone() }),
        },
    };
    if args.test_only {
        let reply = submit(&Request::TestOnly(Box::new(sub)))?;
        eprintln!("{}", would_start(&invoked_as("sbatch", "batch"), &reply)?);
        return Ok(crate::exit_code::SUCCESS);
    }
    match submit(&Request::Submit(Box::new(sub)))? {
        Reply::Submitted { id } => {
            if args.parsable {
                println!("{id}");
            } else {
                println!("Submitted batch job {id}");
            }
            if args.wait { wait_for_end(id) } else { Ok(crate::exit_code::SUCCESS) }
        }
        other => Err(CliError::UnexpectedReply(Box::new(other))),
    }
}

/// What a message names the command: `slurm_name` when run under that name (the symlink),
/// else `gangway` and its own.
pub fn invoked_as(slurm_name: &str, own: &str) -> String {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0).file_name().map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() == Some(slurm_name) { slurm_name.into() } else { format!("gangway {own}") }
}

/// Slurm's `--test-only` line: `PROG: Job N to start at TIME using C processors on nodes LIST
/// in partition P` (N: the id the job would get; TIME `Unknown` when no start can be foreseen).
pub fn would_start(prog: &str, reply: &Reply) -> Result<String, CliError> {
    let Reply::WouldStart { id, start, cpus, nodes, partition } = reply else {
        return Err(CliError::UnexpectedReply(Box::new(reply.clone())));
    };
    let nodes =
        gangway_launcher::nodes::hostlist::compress(nodes).unwrap_or_else(|_| nodes.join(","));
    let nodes = if nodes.is_empty() { "(null)".to_string() } else { nodes };
    let at = super::slurm::time::local(*start);
    Ok(format!(
        "{prog}: Job {id} to start at {at} using {cpus} processors on nodes {nodes} in partition {partition}"
    ))
}

/// `--wait`: asks after the job until it has ended (every 0.2 s at first, then every 2 s: a
/// long job costs the controller one small request every 2 s), says how it ended unless it
/// completed, and gives its exit code.
fn wait_for_end(id: crate::protocol::JobId) -> Result<u8, CliError> {
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        let info = match Client::connect().and_then(|mut c| c.call(&Request::ShowJob { id })) {
            Ok(Reply::Job(info)) => Some(info),
            Ok(other) => return Err(CliError::UnexpectedReply(Box::new(refused(other)?))),
            // The controller restarting: keep waiting for it.
            Err(ClientError::Unreachable { .. } | ClientError::Broken(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(info) = info
            && !ACTIVE_STATES.contains(&info.state.as_str())
            && info.end_time.is_some()
        {
            if info.state != "COMPLETED" {
                eprintln!("gangway: job {id} ended: {} ({})", info.state, info.reason);
            }
            let code = match info.exit_code {
                Some(c) if c != 0 => u8::try_from(c).unwrap_or(1),
                Some(_) if info.state == "COMPLETED" => 0,
                _ => 1,
            };
            return Ok(code);
        }
        #[expect(clippy::disallowed_methods, reason = "a plain blocking command: no runtime here")]
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
}

/// The states of a job that has not ended (every other one, with an end time, is final).
const ACTIVE_STATES: &[&str] = &["PENDING", "RUNNING"];

/// `--mail-type`'s list, as one value.
#[derive(Debug, Clone)]
pub struct MailTypes(pub Vec<MailEvent>);

/// `--open-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpenMode {
    Append,
    Truncate,
}

fn parse_array(s: &str) -> Result<ArraySpec, String> {
    s.parse().map_err(|e: crate::protocol::array::ArrayError| e.to_string())
}

fn parse_warning(s: &str) -> Result<WarningSignal, String> {
    s.parse()
}

/// A fresh idempotency key: 128 random bits.
fn new_key() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No random source: time and pid still make a key no earlier submission used.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("t{t:x}p{:x}", std::process::id());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sends a submission, sending it again (same idempotency key, so never a second job) when the
/// connection broke before the answer came: the controller may have stored it, or not.
fn submit(request: &Request) -> Result<Reply, CliError> {
    const RETRIES: [u64; 2] = [200, 1000];
    let mut broke = false;
    let mut waits = RETRIES.iter();
    loop {
        let result = Client::connect().and_then(|mut c| c.call(request));
        let retry = match &result {
            Err(e @ ClientError::Broken(_)) => {
                broke = true;
                Some(e.to_string())
            }
            // Right after a break the controller may be restarting: wait for it as well.
            Err(e @ ClientError::Unreachable { .. }) if broke => Some(e.to_string()),
            _ => None,
        };
        match (retry, waits.next()) {
            (Some(why), Some(ms)) => {
                eprintln!(
                    "gangway: warning: {why}; sending the submission again (it carries the same key, so it cannot create a second job)"
                );
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a plain blocking command: no runtime here"
                )]
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
            _ => return refused(result?),
        }
    }
}

/// The job's environment per `--export` (the forms `run` takes: ALL, the default; NONE; or a
/// list of names and NAME=value). Without ALL the job still gets the user's identity and
/// `PATH`, as a login would.
pub fn export_env(export: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let policy: ExportPolicy = match export {
        Some(spec) => spec.parse().map_err(|e| format!("{e}"))?,
        None => ExportPolicy::default(),
    };
    let mut env: Vec<(String, String)> = base_environment(&policy, std::env::vars_os())
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    if !policy.all {
        for name in ["HOME", "USER", "LOGNAME", "PATH", "SHELL"] {
            if !env.iter().any(|(k, _)| k == name)
                && let Ok(value) = std::env::var(name)
            {
                env.push((name.to_string(), value));
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive_check(script: &str) -> Result<Option<ArraySpec>, String> {
        let found = directives::extract(script).map_err(|e| e.located("job.sh"))?;
        let validated = directives::validate(&found, &batch_command(), UnknownDirectives::Error)
            .map_err(|e| e.located("job.sh"))?;
        let merged = validated.merged_args(&["job.sh".into()]);
        let m = batch_command()
            .no_binary_name(true)
            .try_get_matches_from(merged)
            .map_err(|e| e.to_string())?;
        BatchArgs::from_arg_matches(&m).map(|a| a.array).map_err(|e| e.to_string())
    }

    #[test]
    fn an_array_directive_is_taken_and_a_bad_one_names_the_flag_and_the_fix() {
        let spec = directive_check("#!/bin/sh\n#SBATCH --array=1-6%2\necho $SLURM_ARRAY_TASK_ID\n");
        assert_eq!(spec.expect("accepted").map(|s| s.to_string()).as_deref(), Some("1-6%2"));
        let spec = directive_check("#!/bin/sh\n#SBATCH -a 1,3,5-9:2\ntrue\n");
        assert_eq!(spec.expect("accepted").map(|s| s.indexes.len()), Some(5));
        for (bad, fix) in [
            ("9-1", "write 1-9"),
            ("1-9:0", ":1 or more"),
            ("1-9%0", "%1 or more"),
            ("", "write them as 0-99"),
        ] {
            let err = directive_check(&format!("#!/bin/sh\n#SBATCH --array={bad}\ntrue\n"))
                .expect_err(bad);
            assert!(err.contains("--array") && err.contains(fix), "{bad}: {err}");
        }
    }
}
