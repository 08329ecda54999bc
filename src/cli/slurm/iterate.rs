//! `-i`/`--iterate SECONDS` of `squeue` and `sinfo`: the report again every N seconds until
//! interrupted, as Slurm's do: a date line above each report (unless `-h`), a blank line
//! after it. The wait is tokio's timer. SIGINT keeps its default disposition, so Ctrl-C ends
//! the command as it ends Slurm's, killed by that signal (a shell loop around it stops too),
//! whenever it comes, also while a report waits for the controller; each report is written
//! and flushed in one go. A report that fails (the controller restarting) is said on stderr
//! and the next one is tried, as Slurm's commands keep iterating through errors.

use std::io::Write;
use std::time::Duration;

use super::time::date_line;
use crate::cli::begin_time::now_ms;
use crate::cli::error::CliError;

/// Prints `report()` once, or with `-i` every `seconds` (below). `long`: a `-l`
/// report, dated as Slurm dates its long reports; `header`: not `-h` nor `--json`.
pub fn print(
    command: &str,
    iterate: Option<u64>,
    long: bool,
    header: bool,
    mut report: impl FnMut() -> Result<String, CliError>,
) -> Result<(), CliError> {
    match iterate {
        Some(seconds) => repeat(command, seconds, header, report),
        None => {
            if long && header {
                println!("{}", date_line(now_ms()));
            }
            print!("{}", report()?);
            Ok(())
        }
    }
}

/// Prints `report()` every `seconds` until SIGINT (or until standard output is closed). A
/// usage error (a bad `-j` or `-w`) ends it at once: it would be the same every time.
fn repeat(
    command: &str,
    seconds: u64,
    header: bool,
    mut report: impl FnMut() -> Result<String, CliError>,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start a timer: {e}")))?;
    loop {
        let mut text = String::new();
        if header {
            text.push_str(&date_line(now_ms()));
            text.push('\n');
        }
        match report() {
            Ok(t) => text.push_str(&t),
            Err(e @ CliError::Usage(_)) => return Err(e),
            Err(e) => eprintln!("{command}: error: {e}"),
        }
        text.push('\n');
        let mut out = std::io::stdout().lock();
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            // Whoever read it is gone (`squeue -i 5 | head`): nothing more to do.
            return Ok(());
        }
        drop(out);
        runtime.block_on(async { tokio::time::sleep(Duration::from_secs(seconds)).await });
    }
}
