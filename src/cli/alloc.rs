//! `gangway alloc`: waits for an allocation (showing its place in the queue), runs a command or
//! a shell in it, and gives it back when that ends.

use std::ffi::OsString;
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use gangway_launcher::exit_status::RankStatus;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use super::allocation::wait_for_grant;
use super::batch::invoked_as;
use super::error::CliError;
use super::shape::ShapeArgs;
use super::submission::{command_name, submit_dir, submit_host, submitter_umask};
use crate::client::Client;
use crate::protocol::{Grant, JobKind, Reply, Request, Submission};

const EXAMPLES: &str = "\
Examples:
  gangway alloc -N 2                  a shell holding 2 nodes; `gangway run ./app` inside uses them
  gangway alloc -N 3 -n 12 -t 10 -- ./driver.sh   run a script inside a 3-node allocation
  gangway alloc -n 4 --qos scavenger --nice 50    preemptable, lower priority (docs/scheduling.md)
  gangway alloc -d afterok:12 -- ./post.sh         once job 12 has succeeded
  gangway alloc -N 4 --test-only                   when and where it would start; nothing allocated
  gangway alloc --gres=gpu:a100:2                  two A100 GPUs (any GPUs: --gres=gpu:2)
Inside: GANGWAY_JOB_ID, GANGWAY_NODELIST, GANGWAY_NTASKS, ... The allocation ends when the
command exits (exit code: the command's), or earlier if it is cancelled (118) or times out.";

/// Flags of `gangway alloc`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct AllocArgs {
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub extras: crate::cli::job_extras::JobExtras,
    /// No progress display while waiting.
    #[arg(short = 'Q', long)]
    pub quiet: bool,
    /// Allocate nothing: print when and where the allocation would start, as things stand.
    #[arg(long)]
    pub test_only: bool,
    /// The command to run in the allocation (default: $SHELL).
    #[arg(trailing_var_arg = true, value_name = "COMMAND [ARGS]")]
    pub command: Vec<OsString>,
}

/// What the command's wait is woken by.
enum AllocEvent {
    /// The command exited (not reaped yet).
    CommandExited,
    /// The controller ended the job under the command (cancel, time limit, node loss).
    JobEnded(String),
}

/// How long a command hung up on (its job ended) gets before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// Runs `gangway alloc`; returns the command's exit code.
pub fn main(args: AllocArgs) -> Result<u8, CliError> {
    let job_shape = args.shape.to_shape()?;
    let shape = job_shape.to_protocol();
    let command: Vec<OsString> = if args.command.is_empty() {
        vec![std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())]
    } else {
        args.command.clone()
    };
    let display = command.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let sub = Submission {
        kind: JobKind::Alloc,
        name: args.shape.job_name.clone().unwrap_or_else(|| command_name(&command[0], "alloc")),
        shape,
        cwd: submit_dir(),
        env: vec![submit_host()],
        script: None,
        args: Vec::new(),
        command: display,
        output: None,
        error: None,
        requeue: false,
        hold: args.shape.hold,
        umask: Some(submitter_umask()),
        // Held by this connection: a second connection could not take the job over anyway.
        idempotency_key: None,
        end_handling: args.extras.end_handling(),
        constraint: args.extras.constraint.clone(),
        begin: None,
        comment: None,
        dependency: job_shape.dependency.clone(),
        kill_on_invalid_dep: job_shape.kill_on_invalid_dep,
        array: None,
    };
    if args.test_only {
        let reply = super::error::ask(&Request::TestOnly(Box::new(sub)))?;
        eprintln!("{}", super::batch::would_start(&invoked_as("salloc", "alloc"), &reply)?);
        return Ok(crate::exit_code::SUCCESS);
    }
    let mut client = Client::connect()?;
    let grant = wait_for_grant(&mut client, sub, args.quiet)?;
    eprintln!("gangway: granted job {} on {}", grant.job, node_list(&grant));
    let target = client.target.clone();
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    for (k, v) in &grant.env {
        // The cluster's default MPI kind yields to the user's own `GANGWAY_MPI`.
        if k == "GANGWAY_MPI" && std::env::var_os(k).is_some() {
            continue;
        }
        cmd.env(k, v);
    }
    cmd.env("GANGWAY_CONTROLLER", &target);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(source) => {
            let _ = client.call(&Request::Done { exit_code: 127 });
            let program = command[0].to_string_lossy().into_owned();
            return Err(CliError::Spawn { program, source });
        }
    };
    let (mut link, mut replies) = client.split();
    let (events, woken) = mpsc::channel();
    // Watch the connection: the job may end under the command.
    let ended = events.clone();
    std::thread::spawn(move || {
        while let Ok(reply) = replies.recv() {
            if let Reply::Ended { id, state, reason } = reply {
                let _ =
                    ended.send(AllocEvent::JobEnded(format!("job {id} ended: {state} ({reason})")));
                return;
            }
        }
    });
    // Watch the command without reaping it (WNOWAIT): only this thread reaps the child, after
    // its last signal, so a signal never reaches a reused pid.
    let pid = Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        while let Err(nix::errno::Errno::EINTR) =
            waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
        let _ = events.send(AllocEvent::CommandExited);
    });
    let mut ended = None;
    if let Ok(AllocEvent::JobEnded(message)) = woken.recv() {
        ended = Some(message);
        // Hang up on the command as a closing terminal would; kill it after a grace.
        let _ = kill(pid, Signal::SIGHUP);
        if woken.recv_timeout(HANGUP_GRACE).is_err() {
            let _ = child.kill();
        }
    }
    let status = child.wait().ok();
    let ended = ended.or_else(|| {
        woken.try_iter().find_map(|event| match event {
            AllocEvent::JobEnded(message) => Some(message),
            AllocEvent::CommandExited => None,
        })
    });
    if let Some(message) = ended {
        return Err(CliError::JobEnded(message));
    }
    let code = match status {
        Some(s) => RankStatus::of(s).map_or(128, RankStatus::shell_code),
        None => 1,
    };
    // Tell the controller we are done, on the connection that holds the job.
    let _ = link.send(&Request::Done { exit_code: code });
    eprintln!("gangway: released job allocation");
    Ok(code.clamp(0, 255) as u8)
}

fn node_list(grant: &Grant) -> String {
    let names: Vec<&str> = grant.nodes.iter().map(|n| n.name.as_str()).collect();
    gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","))
}
