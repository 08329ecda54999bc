//! Who a caller is, and what crosses the network: the root chain of issue 9 (read root's job
//! output, reuse its job token after the job ended, submit `id` as root), output files under the
//! submitter's umask, capturing relays on the agent link, a token link and the step port, forged
//! vouches, and a socket squatter. The unprivileged attacker is the vcluster user `gwtest`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::controlled::{Managed, free_port, text};
use crate::support::{repo_root, wait_until};

const ATTACKER: &str = "gwtest";

fn attacker_ids() -> (u32, u32) {
    let u = nix::unistd::User::from_name(ATTACKER).unwrap().expect("the vcluster test user");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// `program` run as the attacker (on the host).
fn as_attacker(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", ATTACKER, "--"]).arg(program).stdin(Stdio::null());
    c
}

/// `args` run inside a node, as root.
fn on_node(m: &Managed, node: &str, args: &[&str]) -> Command {
    let mut c = Command::new(repo_root().join("tests/cluster/vcluster"));
    c.args(["--prefix", &m.vc.prefix, "exec", node]).args(args).stdin(Stdio::null());
    c
}

/// A directory of the attacker's own, where every node sees it (jobs' submit directory).
fn attacker_dir(m: &Managed) -> std::path::PathBuf {
    let dir = m.dir.join("attacker");
    std::fs::create_dir_all(&dir).unwrap();
    let (uid, gid) = attacker_ids();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    dir
}

fn submitted(out: &Output) -> u64 {
    assert!(out.status.success(), "{}", text(out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn history(m: &Managed) -> Vec<serde_json::Value> {
    serde_json::from_slice(&m.cli_out(&["history", "--json", "-n", "1000"]).stdout).unwrap()
}

#[test]
fn the_root_chain_is_closed() {
    let Some(m) = Managed::up(2) else { return };
    let bin = m.gangway_bin();
    let secret = format!("root-secret-{}", std::process::id());

    // Root's job, submitted under umask 077, prints a secret and its whole environment.
    let submit = format!(
        "umask 077; exec {} batch --parsable -o root-%j.out --wrap 'echo {secret}; env'",
        bin.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&submit)
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .current_dir(&m.dir)
        .output()
        .unwrap();
    let root_job = submitted(&out);
    m.wait_done(&[root_job], Duration::from_secs(30));
    let path = m.dir.join(format!("root-{root_job}.out"));
    let output = std::fs::read_to_string(&path).unwrap();
    assert!(output.contains(&secret), "{output}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    eprintln!("root job output under umask 077: mode {mode:o}");

    // The attacker cannot read it.
    let cat = as_attacker(Path::new("/bin/cat")).arg(&path).output().unwrap();
    eprintln!("{ATTACKER} reading it: exit {:?}, {}", cat.status.code(), text(&cat).trim());
    assert!(!String::from_utf8_lossy(&cat.stdout).contains(&secret), "{ATTACKER} read it");
    assert!(text(&cat).contains("Permission denied"), "{}", text(&cat));
    assert_eq!(mode, 0o600);

    // Nothing in the job's environment is a credential: commands inside reach the controller
    // through their node's agent socket.
    let tokens: Vec<&str> = output.lines().filter(|l| l.contains("TOKEN")).collect();
    assert!(tokens.is_empty(), "a token in the job's environment: {tokens:?}");
    assert!(output.contains("GANGWAY_CONTROLLER=/tmp/gangway-spool/agent.sock"), "{output}");

    // Every way of acting as root through the controller, tried as the attacker.
    let held = m.submit(&["--hold", "--wrap", "id"]);
    let tcp = format!("127.0.0.1:{}", m.port);
    let work = attacker_dir(&m);
    let over_tcp = |token: Option<&str>, args: &[&str]| {
        let mut c = as_attacker(&bin);
        c.args(args).env("GANGWAY_CONTROLLER", &tcp).current_dir(&work);
        if let Some(t) = token {
            c.env("GANGWAY_TOKEN", t);
        }
        c.output().unwrap()
    };
    let key = gangway::auth::Key::load(&m.dir.join("key")).unwrap();
    let forged = format!("u1.0.{}.{}", unix_now() + 3600, gangway_link::Psk::random().to_hex());
    let expired = key.user_token(0, unix_now() - 60).to_string();
    // The attacker's own token, edited to say root.
    let own = as_attacker(&bin)
        .args(["token", "--valid", "1h"])
        .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
        .output()
        .unwrap();
    assert!(own.status.success(), "{}", text(&own));
    let own = String::from_utf8_lossy(&own.stdout).trim().to_string();
    let (uid, _) = attacker_ids();
    let edited = own.replacen(&format!("u1.{uid}."), "u1.0.", 1);
    assert_ne!(edited, own);
    let cases: [(&str, Option<&str>, &str); 4] = [
        ("no token", None, "needs a token"),
        ("a forged root token", Some(&forged), "refused your token"),
        ("root's token, expired", Some(&expired), "expired"),
        ("its own token edited to uid 0", Some(&edited), "refused your token"),
    ];
    for (what, token, needle) in cases {
        for args in [&["batch", "--wrap", "id"][..], &["cancel", &held.to_string()][..]] {
            let out = over_tcp(token, args);
            eprintln!("{what}, {args:?}: exit {:?}: {}", out.status.code(), text(&out).trim());
            assert_eq!(out.status.code(), Some(116), "{what}: {}", text(&out));
            assert!(text(&out).contains(needle), "{what}: {}", text(&out));
        }
    }
    // Its own token works, as itself.
    let mine = submitted(&over_tcp(Some(&own), &["batch", "--parsable", "--wrap", "id"]));

    // The agent socket on a node: the kernel says who calls, the agent vouches for that.
    let socket = "/tmp/gangway-spool/agent.sock";
    let mut via_agent = Vec::new();
    for node in ["node1", "node2"] {
        let work = work.display().to_string();
        let out = on_node(&m, node, &["runuser", "-u", ATTACKER, "--", "env"])
            .arg(format!("GANGWAY_CONTROLLER={socket}"))
            .arg(&bin)
            .args(["batch", "--parsable", "-D", &work, "--wrap", "id"])
            .output()
            .unwrap();
        via_agent.push(submitted(&out));
        let out = on_node(&m, node, &["runuser", "-u", ATTACKER, "--", "env"])
            .arg(format!("GANGWAY_CONTROLLER={socket}"))
            .arg(&bin)
            .args(["cancel", &held.to_string()])
            .output()
            .unwrap();
        eprintln!("agent socket on {node}, cancel root's job: {}", text(&out).trim());
        assert_eq!(out.status.code(), Some(117), "{}", text(&out));
    }
    let mut ids = via_agent.clone();
    ids.push(mine);
    m.wait_done(&ids, Duration::from_secs(30));
    for id in &ids {
        let out = std::fs::read_to_string(work.join(format!("gangway-{id}.out"))).unwrap();
        eprintln!("job {id}: {}", out.trim());
        assert!(out.contains(&format!("uid={uid}({ATTACKER})")), "{out}");
        assert!(!out.contains("uid=0"), "job {id} ran as root: {out}");
    }
    // Nothing else was accepted: root has exactly its own two jobs, the held one untouched.
    let jobs = history(&m);
    let by_root: Vec<u64> = jobs
        .iter()
        .chain(
            serde_json::from_slice::<Vec<serde_json::Value>>(
                &m.cli_out(&["queue", "--json"]).stdout,
            )
            .unwrap()
            .iter(),
        )
        .filter(|j| j["user"] == "root")
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(by_root.iter().filter(|i| **i == root_job).count(), 1, "{jobs:?}");
    assert!(by_root.iter().all(|i| *i == root_job || *i == held), "{by_root:?}");
    assert_eq!(m.job(held)["state"], "PENDING", "{}", m.job(held));
}

#[test]
fn commands_inside_a_job_reach_the_controller_without_a_secret() {
    let Some(m) = Managed::up(2) else { return };
    let bin = m.gangway_bin().display().to_string();
    // The script on node1 and a rank on each node ask the controller, and one rank submits a
    // job: all through their own node's agent socket.
    let rank = format!(
        "{bin} queue >/dev/null && echo \"queue ok on $(hostname) via $GANGWAY_CONTROLLER\"; if [ $GANGWAY_RANK = 1 ]; then {bin} batch --parsable --wrap id; fi"
    );
    let script = format!(
        "{bin} queue >/dev/null && echo \"script ok via $GANGWAY_CONTROLLER\"\n{bin} run -N 2 -n 2 sh -c '{rank}'\n"
    );
    let id = m.submit(&["-N", "2", "-n", "2", "--wrap", &script]);
    m.wait_done(&[id], Duration::from_secs(30));
    let out = m.output_of(id);
    eprintln!("{out}");
    let socket = "/tmp/gangway-spool/agent.sock";
    assert!(out.contains(&format!("script ok via {socket}")), "{out}\n{}", m.logs());
    for node in ["node1", "node2"] {
        assert!(out.contains(&format!("queue ok on {node} via {socket}")), "{out}");
    }
    let inner: u64 = out.lines().find_map(|l| l.trim().parse().ok()).expect("a job id");
    m.wait_done(&[inner], Duration::from_secs(30));
    let job = m.job(inner);
    assert_eq!(job["user"], "root", "{job}");
    assert!(m.output_of(inner).contains("uid=0(root)"), "{}", m.output_of(inner));
}

#[test]
fn batch_output_follows_the_submitters_umask() {
    let Some(m) = Managed::up(1) else { return };
    let bin = m.gangway_bin();
    for (umask, want) in [("077", 0o600), ("022", 0o644), ("027", 0o640)] {
        let submit = format!(
            "umask {umask}; exec {} batch --parsable -o out-%j.txt -e err-%j.txt --wrap 'echo hi; echo oops >&2; touch made-{umask}'",
            bin.display()
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&submit)
            .env("GANGWAY_CONTROLLER", m.dir.join("ctl.sock"))
            .current_dir(&m.dir)
            .output()
            .unwrap();
        let id = submitted(&out);
        m.wait_done(&[id], Duration::from_secs(30));
        for file in [format!("out-{id}.txt"), format!("err-{id}.txt"), format!("made-{umask}")] {
            let mode = std::fs::metadata(m.dir.join(&file)).unwrap().permissions().mode() & 0o777;
            eprintln!("umask {umask}: {file} mode {mode:o}");
            assert_eq!(mode, want, "umask {umask}: {file} is {mode:o}, want {want:o}");
        }
    }
}

/// One connection's bytes: (client → server, server → client).
type Record = Arc<Mutex<(Vec<u8>, Vec<u8>)>>;

/// A TCP relay that records every byte it forwards, per connection and direction.
struct Tap {
    port: u16,
    conns: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    fn start(listen_port: u16, target: SocketAddr) -> Tap {
        let listener = TcpListener::bind(("0.0.0.0", listen_port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Record>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let record: Record = Arc::default();
                c.lock().unwrap().push(record.clone());
                let pipe = |mut from: TcpStream, mut to: TcpStream, up: bool| {
                    let record = record.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            let mut r = record.lock().unwrap();
                            if up { &mut r.0 } else { &mut r.1 }.extend_from_slice(&buf[..n]);
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), true);
                pipe(server, client, false);
            }
        });
        Tap { port, conns, stop }
    }

    fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.conns.lock().unwrap().iter().map(|r| r.lock().unwrap().clone()).collect()
    }

    fn bytes(&self) -> usize {
        self.records().iter().map(|(a, b)| a.len() + b.len()).sum()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The longest run of printable ASCII (text in clear shows as one).
fn longest_text_run(bytes: &[u8]) -> usize {
    let (mut best, mut run) = (0, 0);
    for b in bytes {
        run = if b.is_ascii_graphic() || *b == b' ' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// The clear first line (a preamble, or the step port's `ok`), if the bytes start with one.
fn clear_line(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    bytes[..end].iter().all(|b| b.is_ascii_graphic() || *b == b' ').then_some(&bytes[..end])
}

/// What follows the clear first line, or everything without one.
fn after_first_line(bytes: &[u8]) -> &[u8] {
    clear_line(bytes).map_or(bytes, |l| &bytes[l.len() + 1..])
}

/// Stops node `i`'s agent (by its pid inside the node) and starts it again with these flags.
fn restart_agent(m: &mut Managed, i: usize, extra: &[String]) {
    let node = format!("node{i}");
    let pids = on_node(m, &node, &["pgrep", "-x", "gangway"]).output().unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = on_node(m, &node, &["kill", "-9", pid]).output();
    }
    if let Some(mut old) = m.agents.remove(&i) {
        let _ = old.kill();
        let _ = old.wait();
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.dir.join(format!("agent{i}.log")))
        .unwrap();
    let child = on_node(m, &node, &[])
        .arg(m.gangway_bin())
        .args(["agent", "--key-file"])
        .arg(m.dir.join("key"))
        .args(["--spool", "/tmp/gangway-spool", "--kill-grace", "1s"])
        .args(extra)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    m.agents.insert(i, child);
}

#[test]
fn nothing_readable_crosses_the_network() {
    let Some(mut m) = Managed::up(1) else { return };
    let host = m.vc.env["VCLUSTER_HOST_ADDR"].clone();
    let node_addr: std::net::IpAddr = m.vc.env["VCLUSTER_NODE1_ADDR"].parse().unwrap();
    let key_hex = std::fs::read_to_string(m.dir.join("key")).unwrap().trim().to_string();
    // Between node1's agent and the controller, and between launchers and node1's step port.
    let agent_tap = Tap::start(0, SocketAddr::from(([127, 0, 0, 1], m.port)));
    let step_port = free_port();
    let step_tap = Tap::start(step_port, SocketAddr::new(node_addr, step_port));
    restart_agent(
        &mut m,
        1,
        &[
            "--controller".into(),
            format!("{host}:{}", agent_tap.port),
            "--address".into(),
            host.clone(),
            "--port".into(),
            step_port.to_string(),
        ],
    );
    wait_until("node1 registered through the tap", Duration::from_secs(20), || {
        agent_tap.bytes() > 0
            && m.nodes_json().iter().any(|n| n["state"] == "idle" && n["addr"] == host.as_str())
    });

    // A job whose environment, script and step carry distinctive text.
    let tag = format!("{:x}", unix_now() ^ u64::from(std::process::id()));
    let canary = format!("canary-env-{tag}");
    let script_marker = format!("script-marker-{tag}");
    let step_marker = format!("step-marker-{tag}");
    let script = format!(
        "#!/bin/sh\n# {script_marker}\necho \"env $GW_CANARY\"\n{} run -n 1 echo {step_marker}\n",
        m.gangway_bin().display()
    );
    std::fs::write(m.dir.join("tapped.sh"), script).unwrap();
    let out = m
        .cli()
        .args(["batch", "--parsable", "tapped.sh"])
        .env("GW_CANARY", &canary)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let id = submitted(&out);
    m.wait_done(&[id], Duration::from_secs(30));
    let output = m.output_of(id);
    assert!(output.contains(&format!("env {canary}")), "{output}\n{}", m.logs());
    assert!(output.contains(&step_marker), "the step ran: {output}\n{}", m.logs());

    // A command over TCP with a token, through a third tap.
    let user_tap = Tap::start(0, SocketAddr::from(([127, 0, 0, 1], m.port)));
    let token = m.cli_out(&["token", "--valid", "1h"]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let token_key = token.rsplit('.').next().unwrap().to_string();
    let tcp_marker = format!("tcp-marker-{tag}");
    let out = m
        .cli()
        .args(["batch", "--parsable", "--wrap", &format!("echo {tcp_marker}")])
        .env("GANGWAY_CONTROLLER", format!("127.0.0.1:{}", user_tap.port))
        .env("GANGWAY_TOKEN", &token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let over_tcp = submitted(&out);
    m.wait_done(&[over_tcp], Duration::from_secs(30));
    assert!(m.output_of(over_tcp).contains(&tcp_marker), "{}", m.logs());

    let secrets: [(&str, &[u8]); 7] = [
        ("the job's environment", canary.as_bytes()),
        ("the script", script_marker.as_bytes()),
        ("the step's command", step_marker.as_bytes()),
        ("the TCP command's script", tcp_marker.as_bytes()),
        ("the cluster key", key_hex.as_bytes()),
        ("the user's token", token.as_bytes()),
        ("the token's key", token_key.as_bytes()),
    ];
    let taps = [("agent link", &agent_tap), ("step port", &step_tap), ("token link", &user_tap)];
    for (name, tap) in taps {
        let records = tap.records();
        let total: usize = records.iter().map(|(a, b)| a.len() + b.len()).sum();
        eprintln!("{name}: {} connections, {total} bytes captured", records.len());
        assert!(!records.is_empty(), "nothing went through the {name} tap");
        for (up, down) in &records {
            for (what, secret) in secrets {
                assert!(!contains(up, secret) && !contains(down, secret), "{what} on the {name}");
            }
            // Past the clear first line (a preamble, or the step port's `ok`), nothing reads
            // as text: the proxy's start line, with its call-back key, is encrypted too.
            let run = longest_text_run(after_first_line(up))
                .max(longest_text_run(after_first_line(down)));
            let first = String::from_utf8_lossy(clear_line(up).unwrap_or_default());
            let first: String = first.chars().take(60).collect();
            eprintln!("{name}: clear first line {first:?}, then at most {run} printable bytes");
            assert!(run < 24, "{run} bytes of text in clear on the {name}");
        }
    }
    let step_conns = step_tap.records().len();
    assert!(step_conns >= 1, "the step went through the step port tap");
}

#[test]
fn a_vouch_without_the_key_is_refused() {
    let Some(m) = Managed::up(1) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = ("127.0.0.1", m.port);
    let vouch = gangway::protocol::wire::Vouch { uid: 0, gid: 0, pid: 1, job: None };
    let submit = gangway::protocol::Request::Submit(Box::new(gangway::protocol::Submission {
        kind: gangway::protocol::JobKind::Batch,
        name: "forged".into(),
        shape: Default::default(),
        cwd: "/".into(),
        env: Vec::new(),
        script: Some("#!/bin/sh\nid\n".into()),
        args: Vec::new(),
        command: "forged".into(),
        output: Some("/tmp/forged.out".into()),
        error: None,
        requeue: false,
        hold: false,
        umask: None,
        idempotency_key: None,
        end_handling: Default::default(),
        constraint: None,
        begin: None,
        comment: None,
        dependency: None,
        kill_on_invalid_dep: None,
        array: None,
    }));
    rt.block_on(async {
        // Without the key: the handshake fails, nothing is read.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let guess = gangway::auth::Key::from_bytes(b"not the cluster key at all");
        let preamble = gangway::protocol::wire::Preamble::Vouch { node: "node1".into() };
        let r = gangway::protocol::wire::initiate(&mut s, &preamble, &guess).await;
        eprintln!("VOUCH node1 with a guessed key: {r:?}");
        assert!(r.is_err(), "a handshake without the key succeeded");

        // In clear after the preamble: closed, never read as a vouch.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let clear = format!(
            "VOUCH node1\n{}\n{}\n",
            serde_json::to_string(&vouch).unwrap(),
            serde_json::to_string(&submit).unwrap()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = s.write_all(clear.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer)).await;
        eprintln!("VOUCH in clear: answered {} bytes", answer.len());

        // With the key but for a node that is not the cluster's: refused by the controller.
        let key = gangway::auth::Key::load(&m.dir.join("key")).unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let preamble = gangway::protocol::wire::Preamble::Vouch { node: "node9".into() };
        let (mut sealer, mut opener) =
            gangway::protocol::wire::initiate(&mut s, &preamble, &key).await.unwrap();
        gangway::protocol::wire::send(&mut s, &mut sealer, &vouch).await.unwrap();
        gangway::protocol::wire::send(&mut s, &mut sealer, &submit).await.unwrap();
        let reply: Option<gangway::protocol::Reply> =
            gangway::protocol::wire::recv(&mut s, &mut opener).await.unwrap();
        eprintln!("VOUCH node9 with the key: {reply:?}");
        match reply {
            Some(gangway::protocol::Reply::Error { code: 116, message }) => {
                assert!(message.contains("node9"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
    // Nothing was submitted.
    let queue = m.cli_out(&["queue", "--json"]);
    let q: Vec<serde_json::Value> = serde_json::from_slice(&queue.stdout).unwrap();
    assert!(q.is_empty() && history(&m).is_empty(), "{q:?} {:?}", history(&m));
}

#[test]
fn clients_refuse_a_socket_another_user_serves() {
    if !nix::unistd::geteuid().is_root()
        || nix::unistd::User::from_name(ATTACKER).ok().flatten().is_none()
    {
        eprintln!("SKIPPED: needs root and the user {ATTACKER}");
        return;
    }
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("SKIPPED: needs /usr/bin/python3 for the squatter");
        return;
    }
    let dir = tempfile::Builder::new().prefix("gangway-squat").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.path().join("controller.sock");
    let caught = dir.path().join("caught");
    // The attacker squats a socket and records what comes in.
    let squatter = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\nimport os; os.chmod(sys.argv[1], 0o777)\ns.listen()\ns.settimeout(30)\nc, _ = s.accept()\nc.settimeout(5)\ndata = b''\ntry:\n    while True:\n        d = c.recv(65536)\n        if not d: break\n        data += d\nexcept Exception:\n    pass\nopen(sys.argv[2], 'wb').write(data)\n";
    let mut child =
        as_attacker(python).args(["-c", squatter]).arg(&sock).arg(&caught).spawn().unwrap();
    wait_until("the squatter listening", Duration::from_secs(10), || sock.exists());
    let marker = format!("squatted-script-{}", std::process::id());
    let out = crate::support::gangway()
        .args(["batch", "--wrap", &format!("echo {marker}")])
        .env("GANGWAY_CONTROLLER", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "root's batch to the squatted socket: exit {:?}: {}",
        out.status.code(),
        text(&out).trim()
    );
    let _ = child.wait();
    let got = std::fs::read(&caught).unwrap_or_default();
    eprintln!("the squatter caught {} bytes", got.len());
    assert!(!contains(&got, marker.as_bytes()), "the squatter read the script");
    assert_eq!(out.status.code(), Some(116), "{}", text(&out));
    assert!(text(&out).contains("neither root nor you"), "{}", text(&out));
}
