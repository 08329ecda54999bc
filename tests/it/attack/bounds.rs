//! Taking the controller out of service: running it out of file descriptors, a client that
//! never reads, over-long request lines, huge scripts, a full state disk, and a submission sent
//! twice after a broken connection. Each test prints the figures the closing note gives.

use std::io::{BufRead, BufReader, Read, Write};

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::controlled::{Managed, Setup, text};
use crate::support::wait_until;

/// `(VmRSS, VmHWM)` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn controller_pid(m: &Managed) -> u32 {
    m.controller.as_ref().expect("the controller runs").id()
}

/// Whether the controller process is still the one the test started, alive.
fn controller_alive(m: &mut Managed) -> bool {
    m.controller.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `gangway ARGS` as `user`, talking to this controller's socket; killed after 30 s (exit
/// 124), so that a controller that stopped answering fails the test instead of hanging it.
fn as_user(m: &Managed, user: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--", "timeout", "30"])
        .arg(m.gangway_bin())
        .args(args)
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The nodes' states, asked with a bound.
fn node_states(m: &Managed) -> Vec<String> {
    let out = as_user(m, "root", &["nodes", "--json"]);
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    nodes.iter().map(|n| n["state"].as_str().unwrap_or_default().to_string()).collect()
}

/// A local connection made without blocking (`None` when the controller's backlog is full).
fn connect_nonblocking(path: &Path) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let (addr, len) = unix_addr(path);
    // SAFETY: plain system calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return None;
        }
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        (libc::connect(fd, (&raw const addr).cast(), len) == 0).then_some(owned)
    }
}

fn unix_addr(path: &Path) -> (libc::sockaddr_un, libc::socklen_t) {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: an all-zero sockaddr_un is a valid value of the type.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *d = *s as libc::c_char;
    }
    (addr, std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t)
}

fn socket(m: &Managed) -> PathBuf {
    m.dir.join("ctl.sock")
}

/// A batch submission as the protocol carries it (what `gangway batch` sends).
fn submission(name: &str, command: &str, key: Option<&str>, hold: bool) -> serde_json::Value {
    let mut sub = serde_json::json!({
        "kind": "batch", "name": name, "shape": {
            "min_nodes": null, "max_nodes": null, "ntasks": null, "ntasks_per_node": null,
            "cpus_per_task": null, "mem_per_node": null, "mem_per_cpu": null,
            "gpus_per_task": null, "exclusive": false, "partition": null,
            "time_limit_secs": null, "nodelist": [], "exclude": []
        },
        "cwd": "/tmp", "env": [["PATH", "/usr/bin:/bin"]], "script": "#!/bin/sh\ntrue\n",
        "args": [], "command": command, "output": "/dev/null", "error": null,
        "requeue": false, "hold": hold
    });
    if let Some(k) = key {
        sub["idempotency_key"] = k.into();
    }
    serde_json::json!({ "submit": sub })
}

/// Sends one request line on a fresh local connection and reads one reply.
fn call(m: &Managed, request: &serde_json::Value) -> serde_json::Value {
    let mut s = UnixStream::connect(socket(m)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    writeln!(s, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Keeps opening unauthenticated TCP connections to `port` (holding the newest `keep`) until
/// dropped: an attacker that holds every place it can, all the time.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, usize)>>,
}

impl Flood {
    fn start(port: u16, keep: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut held = std::collections::VecDeque::new();
            let (mut opened, mut failed) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    Ok(s) => {
                        opened += 1;
                        held.push_back(s);
                        if held.len() > keep {
                            held.pop_front();
                        }
                    }
                    Err(_) => failed += 1,
                }
                if opened >= keep {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            (opened, failed)
        });
        Flood { stop, thread: Some(thread) }
    }

    fn stop(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or_default()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A process of `uid` holding `n` connections to the controller's socket (made before it
/// execs `sleep`, so they carry that user's credentials); killed on drop.
struct Holder(std::process::Child);

impl Holder {
    fn start(path: &Path, uid: u32, n: usize) -> Holder {
        use std::os::unix::process::CommandExt;
        let (addr, len) = unix_addr(path);
        let mut cmd = Command::new("sleep");
        cmd.arg("120").uid(uid).gid(uid).stdin(Stdio::null());
        // SAFETY: only async-signal-safe calls (socket, connect) on values copied in here.
        unsafe {
            cmd.pre_exec(move || {
                for _ in 0..n {
                    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    if fd < 0 {
                        break;
                    }
                    libc::connect(fd, (&raw const addr).cast(), len);
                }
                Ok(())
            });
        }
        Holder(cmd.spawn().unwrap())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn running_the_controller_out_of_descriptors_does_not_take_it_out_of_service() {
    let setup = Setup {
        config: "max_connections_per_user = 8\nmax_unauthenticated_per_host = 16\n".into(),
        controller_nofile: Some(256),
        ..Setup::default()
    };
    let Some(mut m) = Managed::up_with(1, setup) else { return };

    // 1. An attacker without any key floods the TCP port with more connections than the
    //    controller has descriptors, and keeps doing so. Commands and a (re)registering agent
    //    still get in.
    let out = m.vc.ctl(&["kill", "node1"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until("the node noticed gone", Duration::from_secs(20), || {
        node_states(&m).iter().all(|s| s != "idle")
    });
    let flood = Flood::start(m.port, 400);
    std::thread::sleep(Duration::from_secs(2));
    let out = as_user(&m, "root", &["queue"]);
    assert!(out.status.success(), "queue under a TCP flood: {}", text(&out));
    let out = Command::new(crate::support::repo_root().join("tests/cluster/vcluster"))
        .args(["up", "1", "--prefix", &m.vc.prefix])
        .output()
        .unwrap();
    assert!(out.status.success(), "the node back: {}", text(&out));
    if let Some(mut old) = m.agents.remove(&1) {
        let _ = old.kill();
        let _ = old.wait();
    }
    m.start_agent(1);
    let start = Instant::now();
    wait_until("the agent registered under the flood", Duration::from_secs(30), || {
        node_states(&m).iter().any(|s| s == "idle")
    });
    let registered_after = start.elapsed();
    let (opened, failed) = flood.stop();
    eprintln!(
        "fd exhaustion: {opened} unauthenticated TCP connections opened ({failed} failed) against a controller limited to 256 descriptors; `queue` answered; the agent registered {:.1} s after it started",
        registered_after.as_secs_f64()
    );
    assert!(opened > 256, "the flood must outnumber the descriptors: {opened}");

    // 2. Root (exempt from the per-user cap) really uses up every descriptor; the accept loops
    //    wait it out and serve again once descriptors are free.
    let held: Vec<_> = (0..400).filter_map(|_| connect_nonblocking(&socket(&m))).collect();
    wait_until("the controller out of descriptors", Duration::from_secs(20), || {
        m.logs().contains("cannot accept connections")
    });
    eprintln!("fd exhaustion: {} local connections held; the controller ran out", held.len());
    drop(held);
    let out = as_user(&m, "root", &["queue"]);
    assert!(out.status.success(), "queue after the descriptors came back: {}", text(&out));

    // 3. A local user holding many connections reaches the per-user cap; others still get in.
    let _holder = Holder::start(&socket(&m), uid_of("gwtest"), 40);
    let mut refused = String::new();
    wait_until("gwtest at its connection limit", Duration::from_secs(20), || {
        let out = as_user(&m, "gwtest", &["queue"]);
        refused = text(&out);
        out.status.code() == Some(119)
    });
    assert!(refused.contains("max_connections_per_user = 8"), "{refused}");
    let other = as_user(&m, "nobody", &["queue"]);
    assert!(other.status.success(), "another user is not affected: {}", text(&other));
    assert!(as_user(&m, "root", &["queue"]).status.success());
    eprintln!("per-user cap: gwtest refused with: {}", refused.trim());
    drop(_holder);
    wait_until("gwtest back under its limit", Duration::from_secs(20), || {
        as_user(&m, "gwtest", &["queue"]).status.success()
    });
    assert!(controller_alive(&mut m), "the controller never exited");
}

#[test]
fn a_client_that_never_reads_is_disconnected_and_memory_stays_bounded() {
    let Some(m) = Managed::up(1) else { return };
    // Held jobs with long commands make every `queue` answer large (~400 KB).
    let long = "x".repeat(2000);
    for i in 0..200 {
        let reply = call(&m, &submission(&format!("held{i}"), &long, None, true));
        assert!(reply.get("submitted").is_some(), "{reply}");
    }
    let pid = controller_pid(&m);
    let before = memory_kib(pid);

    let mut s = UnixStream::connect(socket(&m)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let requests = 1000;
    let mut sent = 0;
    for _ in 0..requests {
        if s.write_all(b"\"queue\"\n").is_err() {
            break;
        }
        sent += 1;
    }
    // Never read: wait for the controller to hang up (poll for the peer's close).
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let start = Instant::now();
    let closed = loop {
        let mut p = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one pollfd this function owns; a zero timeout never blocks.
        unsafe { libc::poll(&mut p, 1, 0) };
        let hung_up = p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0;
        if hung_up || start.elapsed() > Duration::from_secs(60) {
            break hung_up;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = memory_kib(pid);
    eprintln!(
        "no-read client: {sent} `queue` requests ({} bytes) never read; controller RSS {} MiB before, {} MiB after, peak {} MiB; disconnected: {closed}",
        sent * 8,
        before.0 / 1024,
        after.0 / 1024,
        after.1 / 1024
    );
    assert!(closed, "the controller kept a client that does not read; {}", m.logs());
    assert!(
        after.1 < before.1 + 256 * 1024,
        "the controller's memory grew with the unread replies: peak {} MiB",
        after.1 / 1024
    );
    // What the client can still read is bounded too: then the end.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let _ = s.take(256 << 20).read_to_end(&mut got);
    assert!(got.len() < 64 << 20, "{} bytes were waiting", got.len());
    assert!(m.cli_out(&["queue"]).status.success(), "others are served");
}

#[test]
fn over_long_request_lines_are_cut_off_before_and_after_authentication() {
    let setup = Setup { config: "max_script_size = \"64K\"\n".into(), ..Setup::default() };
    let Some(m) = Managed::up_with(1, setup) else { return };
    let pid = controller_pid(&m);
    let before = memory_kib(pid);

    // Before authentication (TCP, no key): the controller stops reading after a small preamble.
    let mut tcp = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = vec![b'A'; 1 << 20];
    let mut sent = 0usize;
    while sent < 256 << 20 {
        if tcp.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let after = memory_kib(pid);
    eprintln!(
        "over-long line before authentication: cut off after {} KiB sent; controller peak {} MiB (was {} MiB)",
        sent / 1024,
        after.1 / 1024,
        before.1 / 1024
    );
    assert!(sent < 64 << 20, "the controller took {} MiB of one unauthenticated line", sent >> 20);

    // After authentication (local socket): a line over max_script_size + the envelope gets a
    // clear answer, then the connection ends.
    let mut s = UnixStream::connect(socket(&m)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut written = 0usize;
    while written < 8 << 20 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        written += chunk.len();
    }
    let _ = s.write_all(b"\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    eprintln!("over-long line after authentication: {}", answer.trim());
    assert!(answer.contains("over this controller's limit"), "{answer:?}");
    assert!(answer.contains("max_script_size"), "{answer}");
    assert_eq!(answer.lines().count(), 1, "then the connection closed: {answer}");
    let after = memory_kib(pid);
    assert!(after.1 < before.1 + 64 * 1024, "peak {} MiB", after.1 / 1024);

    // Scripts over max_script_size are refused, naming the size and the setting; far larger
    // ones are refused by the client before they are sent.
    let big = m.dir.join("big.sh");
    std::fs::write(&big, format!("#!/bin/sh\n#{}\ntrue\n", "x".repeat(100 << 10))).unwrap();
    let out = m.cli().args(["batch"]).arg(&big).output().unwrap();
    eprintln!("a 100 KiB script, max_script_size 64K: {}", text(&out).trim());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("max_script_size") && text(&out).contains("100.0 KiB"),
        "{}",
        text(&out)
    );
    std::fs::write(&big, format!("#!/bin/sh\n#{}\ntrue\n", "x".repeat(30 << 20))).unwrap();
    let out = m.cli().args(["batch"]).arg(&big).output().unwrap();
    eprintln!("a 30 MiB script: {}", text(&out).trim());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("max_script_size"), "{}", text(&out));
    assert!(m.cli_out(&["queue"]).status.success());
}

/// Unmounts the test's tmpfs (lazily: the controller may still have files open there).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_disk_refuses_new_work_and_recovers() {
    let setup = Setup {
        config: "min_free_space = \"2M\"\nstate_reserve = \"1M\"\n".into(),
        prepare_state_dir: Some(Box::new(|dir: &Path| {
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success(), "mount a tmpfs on {}", dir.display());
        })),
        ..Setup::default()
    };
    let Some(mut m) = Managed::up_with(1, setup) else { return };
    let state = m.dir.join("state");
    let _mounted = Mounted(state.clone());
    let flag = m.dir.join("finish");
    let running = m.submit(&[
        "--wrap",
        &format!("while [ ! -e {} ]; do sleep 0.1; done; echo finished", flag.display()),
    ]);
    wait_until("the job running", Duration::from_secs(20), || m.job(running)["state"] == "RUNNING");

    // The disk fills up (as a user's huge submissions would).
    let mut filler = std::fs::File::create(state.join("filler")).unwrap();
    let block = vec![0u8; 64 << 10];
    while filler.write_all(&block).is_ok() {}
    let _ = filler.sync_all();
    drop(filler);

    let out = as_user(&m, "gwtest", &["batch", "--wrap", "true"]);
    eprintln!(
        "submission on a full state disk: exit {:?}: {}",
        out.status.code(),
        text(&out).trim()
    );
    assert_eq!(out.status.code(), Some(119), "{}", text(&out));
    assert!(text(&out).contains("cannot take new work now"), "{}", text(&out));
    assert!(text(&out).contains("min_free_space"), "{}", text(&out));

    let q = m.cli_out(&["queue"]);
    assert!(q.status.success() && text(&q).contains(&running.to_string()), "{}", text(&q));
    std::fs::write(&flag, "").unwrap();
    m.wait_done(&[running], Duration::from_secs(30));
    assert_eq!(m.job(running)["state"], "COMPLETED", "{}", m.logs());
    assert!(m.output_of(running).contains("finished"));
    assert!(controller_alive(&mut m), "the controller never exited: {}", m.logs());

    // Space returns: submissions are taken again, by themselves.
    std::fs::remove_file(state.join("filler")).unwrap();
    let id = m.submit(&["--wrap", "echo again"]);
    m.wait_done(&[id], Duration::from_secs(30));
    assert_eq!(m.job(id)["state"], "COMPLETED");
    assert!(controller_alive(&mut m), "the controller never exited: {}", m.logs());
}

#[test]
fn a_submission_sent_again_with_its_key_creates_one_job() {
    let Some(mut m) = Managed::up(1) else { return };
    let request = submission("once", "once", Some("retry-test-0001"), true);
    let first = call(&m, &request);
    let id = first["submitted"]["id"].as_u64().unwrap_or_else(|| panic!("{first}"));
    // The same submission on another connection (as after a broken one), and after a restart.
    let again = call(&m, &request);
    assert_eq!(again["submitted"]["id"].as_u64(), Some(id), "{again}");
    m.kill_controller();
    m.start_controller();
    let after_restart = call(&m, &request);
    assert_eq!(after_restart["submitted"]["id"].as_u64(), Some(id), "{after_restart}");
    // Another key is another job (keys are per user: see the unit test in idempotency.rs).
    let other = call(&m, &submission("once", "once", Some("retry-test-0002"), true));
    assert_ne!(other["submitted"]["id"].as_u64(), Some(id), "{other}");
    let out = m.cli_out(&["queue", "--json"]);
    let q: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let ids: Vec<u64> = q.iter().filter_map(|j| j["id"].as_u64()).collect();
    eprintln!("the same key three times (two connections and a restart): jobs {ids:?}");
    assert_eq!(ids.len(), 2, "{q:?}");
    let bad = call(&m, &submission("once", "once", Some("has a space"), true));
    assert_eq!(bad["error"]["code"], 2, "{bad}");
}

#[test]
fn the_batch_command_sends_a_submission_again_with_its_key_after_a_broken_connection() {
    // A stand-in controller that stores the first submission but breaks the connection before
    // answering, then answers the second.
    let dir = crate::support::scratch();
    let path = dir.path().join("ctl.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let start = Instant::now();
        for answer in [false, true] {
            // Bounded: a client that does not come back must not hang the test.
            let s = loop {
                match listener.accept() {
                    Ok((s, _)) => break Some(s),
                    Err(_) if start.elapsed() < Duration::from_secs(20) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => break None,
                }
            };
            let Some(s) = s else { break };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            seen.push(v["submit"]["idempotency_key"].clone());
            if answer {
                writeln!(&s, "{{\"submitted\":{{\"id\":42}}}}").unwrap();
            }
        }
        seen
    });
    let out = crate::support::run(
        crate::support::gangway()
            .args(["batch", "--parsable", "--wrap", "true"])
            .env("GANGWAY_CONTROLLER", &path),
    );
    let keys = server.join().unwrap();
    eprintln!(
        "retried submission: keys sent {keys:?}; batch said {:?} / {:?}",
        out.stdout, out.stderr
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "42");
    assert!(out.stderr.contains("sending the submission again"), "{}", out.stderr);
    assert!(
        keys.len() == 2 && keys[0].is_string() && keys[0] == keys[1],
        "the same key both times: {keys:?}"
    );
}

/// A local user holding connections to a node's agent socket reaches the agent's own per-user
/// cap (`gangway agent --max-connections-per-user`): one more is refused at once, with exit code
/// 119 and a message naming the flag, before anything reaches the controller; other users and
/// root still get in, and so does the user once it lets go.
#[test]
fn a_local_user_cannot_hold_more_than_its_share_of_an_agent_socket() {
    use std::os::unix::fs::PermissionsExt;
    // A node-visible socket (one node only: one agent per socket), so that the test, on the
    // host, can connect to it as another user.
    let dir = crate::support::node_visible_dir().join(format!("agent-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.join("agent.sock");
    let agent_args = ["--socket", sock.to_str().unwrap(), "--max-connections-per-user", "4"];
    let setup = Setup {
        agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
        ..Setup::default()
    };
    let Some(m) = Managed::up_with(1, setup) else { return };
    let queue_as = |user: &str| {
        Command::new("runuser")
            .args(["-u", user, "--", "timeout", "30"])
            .arg(m.gangway_bin())
            .arg("queue")
            .env("GANGWAY_CONTROLLER", &sock)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = queue_as("gwtest");
    assert!(out.status.success(), "through the agent: {}", text(&out));
    let holder = Holder::start(&sock, uid_of("gwtest"), 4);
    let mut refused = String::new();
    wait_until("gwtest at the agent's limit", Duration::from_secs(20), || {
        let out = queue_as("gwtest");
        refused = text(&out);
        out.status.code() == Some(119)
    });
    assert!(
        refused.contains("--max-connections-per-user 4")
            && refused.contains("too many connections"),
        "{refused}"
    );
    for other in ["nobody", "root"] {
        let out = queue_as(other);
        assert!(out.status.success(), "{other} is not affected: {}", text(&out));
    }
    eprintln!(
        "agent socket per-user cap: gwtest holding 4, the 5th refused with: {}",
        refused.trim()
    );
    drop(holder);
    wait_until("gwtest back under the agent's limit", Duration::from_secs(20), || {
        queue_as("gwtest").status.success()
    });
    let _ = std::fs::remove_dir_all(&dir);
}
