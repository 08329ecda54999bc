//! `gangway alloc`: waits for an allocation (showing its place in the queue), runs a command or
//! a shell in it, and gives it back when that ends.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;
use gangway_launcher::exit_status::RankStatus;

use super::shape::ShapeArgs;
use crate::client::{Client, ClientError};
use crate::exit_code;
use crate::protocol::{Grant, JobKind, Reply, Request, Submission};

const EXAMPLES: &str = "\
Examples:
  gangway alloc -N 2                  a shell holding 2 nodes; `gangway run ./app` inside uses them
  gangway alloc -N 3 -n 12 -t 10 -- ./driver.sh   run a script inside a 3-node allocation
Inside: GANGWAY_JOB_ID, GANGWAY_NODELIST, GANGWAY_NTASKS, ... The allocation ends when the
command exits (exit code: the command's), or earlier if it is cancelled (118) or times out.";

/// Flags of `gangway alloc`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct AllocArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// No progress display while waiting.
    #[arg(short = 'Q', long)]
    pub quiet: bool,
    /// The command to run in the allocation (default: $SHELL).
    #[arg(trailing_var_arg = true, value_name = "COMMAND [ARGS]")]
    pub command: Vec<OsString>,
}

/// Runs `gangway alloc`.
pub fn main(args: AllocArgs) -> u8 {
    let shape = match args.shape.to_shape() {
        Ok(s) => s,
        Err(m) => {
            eprintln!("gangway: error: {m}");
            return exit_code::USAGE;
        }
    };
    let command: Vec<OsString> = if args.command.is_empty() {
        vec![std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())]
    } else {
        args.command.clone()
    };
    let display = command.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let cwd =
        std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "/".into());
    let sub = Submission {
        kind: JobKind::Alloc,
        name: args.shape.job_name.clone().unwrap_or_else(|| {
            std::path::Path::new(&command[0])
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "alloc".into())
        }),
        shape,
        cwd,
        env: Vec::new(),
        script: None,
        args: Vec::new(),
        command: display,
        output: None,
        error: None,
        requeue: false,
        hold: args.shape.hold,
        umask: Some(super::batch::submitter_umask()),
        // Held by this connection: a second connection could not take the job over anyway.
        idempotency_key: None,
    };
    let mut client = match Client::connect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gangway: error: {e}");
            return e.exit_code();
        }
    };
    let grant = match wait_for_grant(&mut client, sub, args.quiet) {
        Ok(g) => g,
        Err(code) => return code,
    };
    eprintln!("gangway: granted job {} on {}", grant.job, node_list(&grant));
    let target = client.target.clone();
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    for (k, v) in &grant.env {
        cmd.env(k, v);
    }
    cmd.env("GANGWAY_CONTROLLER", &target);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gangway: error: cannot start {}: {e}", command[0].to_string_lossy());
            let _ = client.call(&Request::Done { exit_code: 127 });
            return if e.kind() == std::io::ErrorKind::NotFound {
                exit_code::NOT_FOUND
            } else {
                exit_code::NOT_EXECUTABLE
            };
        }
    };
    // Watch the connection: the job may end under the command (cancel, time limit, node loss).
    let (mut link, mut replies) = client.split();
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        while let Ok(reply) = replies.recv() {
            if let Reply::Ended { id, state, reason } = reply {
                let _ = ended_tx.send(format!("job {id} ended: {state} ({reason})"));
                return;
            }
        }
    });
    // Only this thread touches the child, so a signal never reaches a reaped (reused) pid.
    let mut hung_up: Option<std::time::Instant> = None;
    let mut ended = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if ended.is_none()
            && let Ok(message) = ended_rx.try_recv()
        {
            ended = Some(message);
            // Hang up on the command as a closing terminal would; kill it after a grace.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
            hung_up = Some(std::time::Instant::now());
        }
        if hung_up.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            let _ = child.kill();
        }
        #[expect(clippy::disallowed_methods, reason = "a plain blocking loop: no runtime here")]
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(message) = ended.or_else(|| ended_rx.try_recv().ok()) {
        eprintln!("gangway: {message}");
        return exit_code::JOB_ENDED;
    }
    let code = match status {
        Some(s) => RankStatus::of(s).map_or(128, RankStatus::shell_code),
        None => 1,
    };
    // Tell the controller we are done, on the connection that holds the job.
    let _ = link.send(&Request::Done { exit_code: code });
    eprintln!("gangway: released job allocation");
    code.clamp(0, 255) as u8
}

fn node_list(grant: &Grant) -> String {
    let names: Vec<&str> = grant.nodes.iter().map(|n| n.name.as_str()).collect();
    gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","))
}

/// Submits an alloc/run job and waits for its grant, showing the queue position meanwhile.
pub fn wait_for_grant(client: &mut Client, sub: Submission, quiet: bool) -> Result<Grant, u8> {
    let fail = |e: ClientError| {
        eprintln!("gangway: error: {e}");
        e.exit_code()
    };
    client.send(&Request::Submit(Box::new(sub))).map_err(fail)?;
    wait_granted(client, quiet)
}

/// Waits on a job's connection for its (next) grant, showing the queue position meanwhile.
pub fn wait_granted(client: &mut Client, quiet: bool) -> Result<Grant, u8> {
    let fail = |e: ClientError| {
        eprintln!("gangway: error: {e}");
        e.exit_code()
    };
    let bar = (!quiet).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let result = loop {
        match client.recv() {
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
            Ok(Reply::Error { code, message }) => {
                for l in message.lines() {
                    eprintln!("gangway: error: {l}");
                }
                break Err(code);
            }
            Ok(Reply::Ended { id, state, reason }) => {
                eprintln!("gangway: job {id} ended before it started: {state} ({reason})");
                break Err(exit_code::JOB_ENDED);
            }
            Ok(_) => {}
            Err(e) => break Err(fail(e)),
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}
