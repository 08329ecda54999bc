//! Shared helpers: the gangway binary, the example programs, bounded waits, process-table checks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every test run is bounded: a hang is a failure, never a stuck CI job.
pub const HARD_LIMIT: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `gangway` command.
pub fn gangway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gangway"))
}

/// A program from `examples/bin`, built on first use (`make -C examples`).
///
/// Tests run as separate processes under nextest, so the build is serialised with a file lock.
pub fn program(name: &str) -> PathBuf {
    static BUILT_C: OnceLock<()> = OnceLock::new();
    static BUILT_RUST: OnceLock<()> = OnceLock::new();
    let target = if name == "rust-ring" { "rust" } else { "c" };
    let once = if name == "rust-ring" { &BUILT_RUST } else { &BUILT_C };
    once.get_or_init(|| {
        let lock_path = repo_root().join("target").join("examples.lock");
        let _ = std::fs::create_dir_all(lock_path.parent().unwrap());
        let lock = std::fs::File::create(&lock_path).unwrap();
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        let status = Command::new("make")
            .args(["-s", "-C"])
            .arg(repo_root().join("examples"))
            .arg(target)
            .status()
            .expect("make is installed");
        assert!(status.success(), "make -C examples {target} failed");
    });
    let path = repo_root().join("examples/bin").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// What a finished command left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Stdout lines, sorted (rank order is not deterministic).
    pub fn sorted_lines(&self) -> Vec<&str> {
        let mut lines: Vec<&str> = self.stdout.lines().collect();
        lines.sort_unstable();
        lines
    }

    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs to completion with stdin from /dev/null; fails the test if it takes over [`HARD_LIMIT`].
pub fn run(cmd: &mut Command) -> Finished {
    run_with_input(cmd, None)
}

/// Runs to completion feeding `input` to stdin.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Finished {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn gangway");
    if let Some(data) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(data).unwrap();
    }
    wait_bounded(child)
}

/// Waits for a spawned child (stdout/stderr piped), killing it and failing after [`HARD_LIMIT`].
pub fn wait_bounded(mut child: Child) -> Finished {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > HARD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {HARD_LIMIT:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Finished { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// Polls until `cond` holds, failing the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PIDs of live processes whose environment has `NAME=value` (zombies excluded).
///
/// Every rank and everything it starts inherits `GANGWAY_JOB_ID`, so this finds any process of
/// a job that outlived it, wherever it was reparented.
pub fn processes_with_env(name: &str, value: &str) -> Vec<i32> {
    let needle = format!("{name}={value}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == std::process::id() as i32 || !is_alive(pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Whether a process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z")
        }
        Err(_) => false,
    }
}

/// The state letter of a process (`R`, `S`, `T`, ...).
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// The process group of a process.
pub fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// A fresh scratch directory, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Reads `label pid` lines written by `spawn_children`.
pub fn read_pidfile(path: &Path) -> Vec<(String, i32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (label, pid) = l.split_once(' ')?;
            Some((label.to_string(), pid.trim().parse().ok()?))
        })
        .collect()
}

/// A running gangway whose stdout is collected line by line while the test acts on it.
pub struct Live {
    pub child: Option<Child>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    pub fn start(cmd: &mut Command) -> Live {
        use std::io::BufRead;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gangway");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Live { child: Some(child), lines, stderr: Some(stderr), reader: Some(reader) }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn count(&self, line: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| *l == line).count()
    }

    /// Waits until `line` has appeared `times` times.
    pub fn expect(&self, line: &str, times: usize) {
        wait_until(
            &format!("{times} x '{line}' (have {:?})", self.lines.lock().unwrap()),
            Duration::from_secs(20),
            || self.count(line) >= times,
        );
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits for the exit (bounded) and returns status, all stdout lines and stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > HARD_LIMIT {
                let _ = child.kill();
                panic!("gangway did not exit within {HARD_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        (status, lines, stderr)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
