//! `srun`: `gangway run` under Slurm's name: inside a job a step (through the controller),
//! outside one a job of its own, as srun does. Slurm's spellings map onto `run`'s flags; a step
//! inherits the job's `--cpus-per-task` when it gives none (Slurm 23.11 and later do the same
//! through `SLURM_CPUS_PER_TASK`), so `OMP_NUM_THREADS` follows it.

use std::ffi::OsString;

use clap::Args;

use super::args::parse;
use crate::cli::error::CliError;
use crate::cli::run::{self, RunArgs};

/// srun flags gangway accepts and needs nothing for: `--exact` (a step gets exactly the CPUs
/// it asks for anyway), `--overlap`, `--quiet`, `--unbuffered` (output is passed on by lines).
const ACCEPTED: &[&str] = &["--exact", "--overlap", "--quiet", "-Q", "--unbuffered", "-u"];

/// The words for `run`: the no-op flags dropped, the job's `-c` added when none is given.
pub fn rewrite(args: Vec<OsString>, job_cpus_per_task: Option<u32>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut gives_c = false;
    let mut words = args.into_iter().peekable();
    while let Some(word) = words.next() {
        let s = word.to_string_lossy();
        // Slurm's -K/--kill-on-bad-exit takes its value attached only: a bare one is 1, and
        // the word after it is the program, never the value.
        if (s == "-K" || s == "--kill-on-bad-exit")
            && !words.peek().is_some_and(|n| n == "0" || n == "1")
        {
            out.push("--kill-on-bad-exit=1".into());
            continue;
        }
        // The program's own words are not ours to read.
        if !s.starts_with('-') && !out.last().is_some_and(|p: &OsString| takes_value(p)) {
            out.push(word);
            break;
        }
        if s == "--" {
            out.push(word);
            break;
        }
        if ACCEPTED.contains(&s.as_ref()) {
            continue;
        }
        // Slurm still takes the old underscore spellings (Open MPI's mpirun uses one).
        if let Some(rest) = s.strip_prefix("--cpu_bind") {
            out.push(format!("--cpu-bind{rest}").into());
            continue;
        }
        if s == "-c"
            || s.starts_with("--cpus-per-task")
            || (s.starts_with("-c") && !s.starts_with("--"))
        {
            gives_c = true;
        }
        out.push(word);
    }
    let rest: Vec<OsString> = words.collect();
    if !gives_c && let Some(c) = job_cpus_per_task {
        out.insert(0, format!("--cpus-per-task={c}").into());
    }
    out.extend(rest);
    out
}

/// Flags of `run` that take a separate value word (so the word after them is not the program).
fn takes_value(flag: &OsString) -> bool {
    let f = flag.to_string_lossy();
    if f.contains('=') {
        return false;
    }
    const SHORT: &[&str] = &[
        "-n", "-N", "-c", "-o", "-e", "-i", "-t", "-m", "-p", "-w", "-x", "-J", "-D", "-d", "-C",
        "-G",
    ];
    SHORT.contains(&f.as_ref())
        || (f.starts_with("--")
            && !matches!(
                f.as_ref(),
                "--label"
                    | "--oversubscribe"
                    | "--dry-run"
                    | "--json"
                    | "--exclusive"
                    | "--requeue"
                    | "--verbose"
            ))
}

/// Runs `srun`; returns the ranks' exit code.
pub fn main(args: Vec<OsString>) -> Result<u8, CliError> {
    let inherited = ["GANGWAY_CPUS_PER_TASK", "SLURM_CPUS_PER_TASK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .filter(|_| std::env::var_os("GANGWAY_JOB_ID").is_some());
    let command = RunArgs::augment_args(clap::Command::new("srun"))
        .about("Run a parallel program: a step inside a job, or a job of its own (gangway's srun)");
    run::main(parse(command, "srun", rewrite(args, inherited))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_jobs_cpus_per_task_is_inherited_unless_given() {
        assert_eq!(
            rewrite(words(&["-n", "6", "--exact", "./app", "-c", "9"]), Some(2)),
            words(&["--cpus-per-task=2", "-n", "6", "./app", "-c", "9"])
        );
        assert_eq!(rewrite(words(&["-c", "4", "./app"]), Some(2)), words(&["-c", "4", "./app"]));
        assert_eq!(rewrite(words(&["./app"]), None), words(&["./app"]));
    }

    #[test]
    fn a_bare_kill_on_bad_exit_never_takes_the_program_as_its_value() {
        assert_eq!(
            rewrite(words(&["-K", "./app", "1"]), None),
            words(&["--kill-on-bad-exit=1", "./app", "1"])
        );
        assert_eq!(rewrite(words(&["-K", "0", "./app"]), None), words(&["-K", "0", "./app"]));
    }
}
