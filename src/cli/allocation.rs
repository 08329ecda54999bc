//! Waiting for an allocation (`alloc`, and `run` as a job of its own): submit on a connection
//! the job then lasts as long as, and wait for the controller to grant it, showing the place in
//! the queue meanwhile. The controller tells the connection every change (queued, waiting,
//! granted, ended), so waiting is reading: nothing polls.

use std::time::Duration;

use super::error::{CliError, refused};
use crate::client::Client;
use crate::protocol::{Grant, Reply, Request, Submission};

/// Submits an alloc/run job and waits for its grant, showing the queue position meanwhile.
pub fn wait_for_grant(
    client: &mut Client,
    sub: Submission,
    quiet: bool,
) -> Result<Grant, CliError> {
    client.send(&Request::Submit(Box::new(sub)))?;
    wait_granted(client, quiet)
}

/// Waits on a job's connection for its (next) grant, showing the queue position meanwhile.
pub fn wait_granted(client: &mut Client, quiet: bool) -> Result<Grant, CliError> {
    let bar = (!quiet).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let result = loop {
        match client.recv().map_err(CliError::from).and_then(refused) {
            Ok(Reply::Submitted { id }) => {
                if let Some(b) = &bar {
                    b.set_message(format!("job {id} queued, waiting for resources"));
                }
            }
            Ok(Reply::Waiting { id, position, reason }) => {
                if let Some(b) = &bar {
                    b.set_message(format!(
                        "job {id} pending: position {position} in the queue, reason {reason}"
                    ));
                }
            }
            Ok(Reply::Granted(g)) => break Ok(g),
            Ok(Reply::Ended { id, state, reason }) => {
                break Err(CliError::JobEnded(format!(
                    "job {id} ended before it started: {state} ({reason})"
                )));
            }
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}
