//! The spawner: the threads that start the agent's job processes (batch scripts, step
//! proxies), so that a start that blocks never holds up the owner task. A start waits for the
//! child's exec: for the fork (slow under memory pressure), the child's cgroup join, its setup
//! as the job's user, the batch output files it opens (a hung NFS server, a FIFO nobody reads).
//! On the runtime thread, no heartbeat left meanwhile; a start longer than the lease fenced the
//! node's jobs and the controller requeued them, for nothing but a slow fork.
//!
//! Why threads of its own and not `spawn_blocking`: the children get `PR_SET_PDEATHSIG`
//! (`process::spawn`), which Linux ties to the *thread* that forked them, and the blocking
//! pool's threads end after idling, which would kill them. The spawner's threads live as long
//! as the agent: they end only when the [`Spawner`] is dropped (the agent's end), and a panic
//! in one start is caught (that start fails, the thread goes on). There is one, and one more
//! whenever a start finds every one busy: a start stuck in the kernel holds its own thread,
//! never the starts of the node's other jobs. Each extra thread stays, idle, for the agent's
//! life (so many were once stuck at once).
//!
//! The threads own nothing but their forks: the owner task decides everything before the request
//! (the job, its identity, its lease) and after the answer (a tokio oneshot): whether the new
//! session is kept, or killed at once because its job was fenced or released meanwhile
//! (`jobs::answered`). Reaping is not tied to the forking thread: the child is a
//! `tokio::process::Child` of the agent's runtime (each spawner thread enters it), which waits for it
//! through a pidfd or `waitpid` on the runtime thread; Linux lets any thread of a process wait
//! for a child another of its threads forked.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use tokio::sync::mpsc::UnboundedSender;

use super::events::Event;
use super::options::AgentOptions;
use super::process::{self, BatchOutput, RunAs, Spawned};
use crate::protocol::JobId;

/// The cgroup a child joins before it execs.
pub enum Join {
    /// Its `cgroup.procs` files, already open (none: it joins nothing).
    Ready(Vec<OwnedFd>),
    /// Made on the spawner's thread first: making a cgroup takes the kernel's global cgroup lock,
    /// which a busy node can hold for long.
    Make(Box<dyn FnOnce() -> Vec<OwnedFd> + Send>),
}

/// One process to start for a job (see [`process::spawn`] for the fields).
pub struct Start {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub run_as: RunAs,
    pub batch: Option<BatchOutput>,
    pub piped: bool,
    pub join: Join,
    /// What it is and for which job, for the slow-start warning.
    pub what: &'static str,
    pub job: JobId,
    /// When its start began (the owner's share of it included).
    pub began: Instant,
}

/// The spawner's answer: the process, or why it did not start.
pub type Answer = std::io::Result<Spawned>;

/// What the owner task lends a start: its options, its events (where the answer comes back)
/// and the spawner.
#[derive(Clone, Copy)]
pub struct Owner<'a> {
    pub opts: &'a AgentOptions,
    pub ev_tx: &'a UnboundedSender<Event>,
    pub spawner: &'a Spawner,
}

struct Request {
    start: Start,
    answer: oneshot::Sender<Answer>,
}

/// Where the owner task sends its starts.
pub struct Spawner {
    requests: Sender<Request>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

/// What the spawner threads share.
struct Shared {
    /// The starts asked for; a free thread takes the next one.
    queue: Mutex<Receiver<Request>>,
    /// Threads free and not counted on by a start already asked for.
    free: AtomicUsize,
    /// Starts queued behind a busy thread because no new one could be started: the next
    /// threads to finish serve them instead of counting themselves free.
    owed: AtomicUsize,
    /// Threads started (they never end before the agent does).
    threads: AtomicUsize,
}

impl Spawner {
    /// Starts the first spawner thread; the children are children of `runtime`'s (the agent's).
    pub fn start(runtime: tokio::runtime::Handle) -> std::io::Result<Spawner> {
        let (requests, queue) = channel::<Request>();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            free: AtomicUsize::new(0),
            owed: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
        });
        let spawner = Spawner { requests, shared, runtime };
        spawner.add_thread()?;
        spawner.shared.free.fetch_add(1, Ordering::SeqCst);
        Ok(spawner)
    }

    /// Asks for `start`; the answer comes when the returned future is awaited (an error if no
    /// spawner thread is left). A start never waits behind another that is stuck: when every
    /// thread is busy, one more is started (and kept, as they all are).
    pub fn spawn(&self, start: Start) -> impl std::future::Future<Output = Answer> + use<> {
        let free =
            self.shared.free.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if free.is_err()
            && let Err(e) = self.add_thread()
        {
            // The start waits for a busy thread instead, which owes it the slot it would free.
            self.shared.owed.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start another spawner thread");
        }
        let (answer, rx) = oneshot::channel();
        let sent = self.requests.send(Request { start, answer });
        async move {
            sent.map_err(|_| std::io::Error::other("the agent's spawner threads are gone"))?;
            rx.await.unwrap_or_else(|_| Err(std::io::Error::other("the spawner dropped a start")))
        }
    }

    fn add_thread(&self) -> std::io::Result<()> {
        let n = self.shared.threads.fetch_add(1, Ordering::SeqCst) + 1;
        let (shared, runtime) = (self.shared.clone(), self.runtime.clone());
        let started =
            std::thread::Builder::new().name(format!("gangway-spawner-{n}")).spawn(move || {
                let _in_runtime = runtime.enter();
                loop {
                    // The lock is held while waiting only: a start is served without it.
                    let next = shared.queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(Request { start, answer }) = next else { return };
                    let what = start.what;
                    let done =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(start)));
                    let answer_now = done.unwrap_or_else(|_| {
                        Err(std::io::Error::other(format!(
                            "starting {what} panicked in the spawner"
                        )))
                    });
                    // The owner may have stopped waiting (the agent is ending): the child is
                    // then dropped here, and the runtime reaps it.
                    let _ = answer.send(answer_now);
                    let owed = shared
                        .owed
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                    if owed.is_err() {
                        shared.free.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        match started {
            Ok(_) => {
                if n > 1 {
                    tracing::info!(threads = n, "every spawner thread was busy; started another");
                }
                Ok(())
            }
            Err(e) => {
                self.shared.threads.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

fn serve(start: Start) -> Answer {
    let Start { program, args, env, run_as, batch, piped, join, what, job, began } = start;
    let queued = began.elapsed();
    let picked = Instant::now();
    let join = match join {
        Join::Ready(fds) => fds,
        Join::Make(make) => make(),
    };
    let ready = queued + picked.elapsed();
    let spawned = process::spawn(&program, &args, &env, &run_as, batch.as_ref(), piped, &join);
    process::warn_if_slow(what, job, ready, began.elapsed());
    spawned
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn start(script: &str, output: &std::path::Path) -> Start {
        Start {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            run_as: RunAs { ids: None, cwd: "/".into(), cpus: None, umask: 0o022 },
            batch: Some(BatchOutput {
                output: output.display().to_string(),
                error: None,
                truncate: true,
                marker: None,
            }),
            piped: false,
            join: Join::Make(Box::new(Vec::new)),
            what: "a test script",
            job: 1,
            began: Instant::now(),
        }
    }

    /// A start stuck before its exec (its output is a FIFO nobody reads) holds up neither the
    /// runtime nor a later start, which gets a thread of its own; once the FIFO is read, the
    /// stuck one answers too, and both children are reaped on the runtime's thread.
    #[test]
    fn a_stuck_start_holds_up_neither_the_runtime_nor_another_start() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let spawner = Spawner::start(tokio::runtime::Handle::current()).unwrap();
            let stuck = spawner.spawn(start("echo stuck; exit 3", &fifo));
            tokio::pin!(stuck);
            let waited = tokio::time::timeout(Duration::from_millis(300), &mut stuck).await;
            assert!(waited.is_err(), "the start waits for its output file");
            let other = spawner.spawn(start("echo other", &dir.path().join("other.out")));
            let other = tokio::time::timeout(Duration::from_secs(10), other).await;
            let mut other = other.expect("another start is not held up").unwrap();
            assert!(other.child.wait().await.unwrap().success());
            assert_eq!(std::fs::read_to_string(dir.path().join("other.out")).unwrap(), "other\n");
            assert_eq!(spawner.shared.threads.load(Ordering::SeqCst), 2);
            let reader = fifo.clone();
            let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(reader));
            let mut stuck = stuck.await.unwrap();
            assert_eq!(stuck.child.wait().await.unwrap().code(), Some(3));
            assert_eq!(read.await.unwrap().unwrap(), "stuck\n");
            // Both threads are free again: the next start needs no third.
            let next = spawner.spawn(start("true", &dir.path().join("next.out"))).await;
            assert!(next.unwrap().child.wait().await.unwrap().success());
            assert_eq!(spawner.shared.threads.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_start_that_fails_says_why() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let spawner = Spawner::start(tokio::runtime::Handle::current()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("no-such-dir/out");
            let failed = spawner.spawn(start("true", &out)).await;
            let e = failed.expect_err("the output file cannot be made");
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        });
    }
}
