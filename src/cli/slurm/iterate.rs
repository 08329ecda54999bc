//! `-i`/`--iterate SECONDS` of `squeue` and `sinfo`: the report again every N seconds until
//! interrupted, as Slurm's do: a date line above each report (unless `-h`), a blank line
//! after it. The wait is tokio's timer raced against SIGINT; on SIGINT the command ends as
//! Slurm's does, killed by that signal (a shell loop around it stops too), after what it
//! printed is flushed. A report that fails (the controller restarting) is said on stderr
//! and the next one is tried, as Slurm's commands keep iterating through errors.

use std::io::Write;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::time::date_line;
use crate::cli::begin_time::now_ms;
use crate::cli::error::CliError;

/// Prints `report()` once, or with `-i` every `seconds` (see [`repeat`]). `long`: a `-l`
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

/// Prints `report()` every `seconds` until SIGINT (or until standard output is closed).
fn repeat(
    command: &str,
    seconds: u64,
    header: bool,
    mut report: impl FnMut() -> Result<String, CliError>,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start a timer: {e}")))?;
    // Before the first report: an interrupt from then on ends the command between reports.
    let mut interrupt = runtime
        .block_on(async { signal(SignalKind::interrupt()) })
        .map_err(|e| CliError::Failed(format!("cannot watch for SIGINT: {e}")))?;
    loop {
        let mut text = String::new();
        if header {
            text.push_str(&date_line(now_ms()));
            text.push('\n');
        }
        match report() {
            Ok(t) => text.push_str(&t),
            Err(e) => eprintln!("{command}: error: {e}"),
        }
        text.push('\n');
        let mut out = std::io::stdout().lock();
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            // Whoever read it is gone (`squeue -i 5 | head`): nothing more to do.
            return Ok(());
        }
        drop(out);
        let interrupted = runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(seconds)) => false,
                _ = interrupt.recv() => true,
            }
        });
        if interrupted {
            die_of_sigint();
            return Ok(());
        }
    }
}

/// Ends the process by SIGINT, as a command without a handler for it would (returns only
/// where the caller blocked SIGINT: the command then ends as asked, successfully).
fn die_of_sigint() {
    use nix::sys::signal::{SigHandler, Signal, raise, signal};
    let _ = std::io::stdout().flush();
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigDfl) };
    let _ = raise(Signal::SIGINT);
}
