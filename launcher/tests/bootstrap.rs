//! End-to-end tests of the bootstrap transports against real sshd on a virtual cluster
//! (`tests/cluster/vcluster`): names, addresses, and every failure a user can hit, each bounded
//! in time. They skip loudly when not root, and fail when `GANGWAY_REQUIRE_VCLUSTER=1`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gangway_launcher::bootstrap::openssh::{OpenSshBootstrap, OpenSshOptions};
use gangway_launcher::bootstrap::ssh::{HostKeyPolicy, Ssh2Bootstrap, SshOptions};
use gangway_launcher::bootstrap::{
    Bootstrap, BootstrapError, HostSpec, RemoteCommand, RemoteExit, start_async,
};

/// A cluster for one test; always brought down on drop (also on panic).
struct VCluster {
    script: PathBuf,
    prefix: String,
    env: HashMap<String, String>,
}

impl VCluster {
    /// None = skipped (not root / no namespaces / no sshd); panics in CI (GANGWAY_REQUIRE_VCLUSTER=1).
    fn up(n: usize) -> Option<VCluster> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cluster/vcluster");
        let prefix = format!(
            "t{:06x}{:02x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed) & 0xff
        );
        let run = |args: &[&str]| {
            Command::new(&script).args(args).stdin(Stdio::null()).output().expect("run vcluster")
        };
        let out = run(&["up", &n.to_string(), "--prefix", &prefix]);
        if out.status.code() == Some(77) {
            let why = String::from_utf8_lossy(&out.stderr);
            if std::env::var_os("GANGWAY_REQUIRE_VCLUSTER").is_some() {
                panic!("virtual cluster required: {why}");
            }
            eprintln!("SKIPPED (virtual cluster): {why}");
            return None;
        }
        let mut vc =
            VCluster { script: script.clone(), prefix: prefix.clone(), env: HashMap::new() };
        assert!(
            out.status.success(),
            "vcluster up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["env", "--prefix", &prefix]);
        vc.env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        Some(vc)
    }

    fn nodes(&self) -> Vec<String> {
        self.env["VCLUSTER_NODES"].split(' ').map(String::from).collect()
    }

    fn addr(&self, i: usize) -> String {
        self.env[&format!("VCLUSTER_NODE{i}_ADDR")].clone()
    }

    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(&self.env[key])
    }

    fn ctl(&self, args: &[&str]) {
        let out = Command::new(&self.script)
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vcluster");
        assert!(
            out.status.success(),
            "vcluster {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The ssh2 transport through the cluster's generated ssh config (node names).
    fn ssh2(&self) -> Arc<dyn Bootstrap> {
        Arc::new(
            Ssh2Bootstrap::new(SshOptions {
                config_file: Some(self.path("VCLUSTER_SSH_CONFIG")),
                connect_timeout: Some(Duration::from_secs(2)),
                ..SshOptions::default()
            })
            .expect("ssh config"),
        )
    }

    /// The ssh2 transport by address, with explicit key and known_hosts and no config file.
    fn ssh2_by_address(&self, opts: SshOptions) -> Ssh2Bootstrap {
        Ssh2Bootstrap::new(SshOptions {
            config_file: Some(PathBuf::from("/dev/null")),
            connect_timeout: Some(Duration::from_secs(2)),
            no_agent: true,
            ..opts
        })
        .expect("ssh config")
    }

    fn openssh(&self) -> Arc<dyn Bootstrap> {
        Arc::new(OpenSshBootstrap::new(OpenSshOptions {
            config_file: Some(self.path("VCLUSTER_SSH_CONFIG")),
            connect_timeout: Some(Duration::from_secs(2)),
            ..OpenSshOptions::default()
        }))
    }

    fn user_at(&self, i: usize) -> HostSpec {
        format!("{}@{}", self.env["VCLUSTER_USER"], self.addr(i)).parse().expect("spec")
    }
}

impl Drop for VCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .args(["down", "--prefix", &self.prefix])
            .stdin(Stdio::null())
            .output();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn spec(s: &str) -> HostSpec {
    s.parse().expect("spec")
}

/// A scratch directory unique to this test process and name.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gw-boot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir scratch");
    d
}

/// Collects all of stdout, then the exit.
async fn output(mut c: RemoteCommand) -> (String, Result<RemoteExit, BootstrapError>) {
    let mut out = Vec::new();
    while let Some(chunk) = c.stdout.recv().await {
        out.extend(chunk);
    }
    let exit =
        tokio::time::timeout(Duration::from_secs(10), c.finish()).await.expect("command ends");
    (String::from_utf8_lossy(&out).into_owned(), exit)
}

/// `hostname` on every node in parallel: the names match, and our address is the bridge's.
fn hostname_everywhere(vc: &VCluster, b: Arc<dyn Bootstrap>) {
    let host_addr: IpAddr = vc.env["VCLUSTER_HOST_ADDR"].parse().expect("host addr");
    rt().block_on(async {
        let starts: Vec<_> = vc
            .nodes()
            .into_iter()
            .map(|n| {
                let b = Arc::clone(&b);
                tokio::spawn(async move {
                    let c = start_async(b, spec(&n), argv(&["hostname"])).await;
                    (n, c)
                })
            })
            .collect();
        for (i, s) in starts.into_iter().enumerate() {
            let (name, c) = s.await.expect("join");
            let c = c.unwrap_or_else(|e| panic!("start on {name}: {e}"));
            assert_eq!(c.local_addr.ip(), host_addr, "callback address for {name}");
            assert_eq!(c.peer_addr.ip().to_string(), vc.addr(i + 1));
            assert_eq!(c.peer_addr.port(), 22);
            let (out, exit) = output(c).await;
            assert_eq!(out, format!("{name}\n"));
            assert_eq!(exit.expect("exit"), RemoteExit::Code(0));
        }
    });
}

#[test]
fn hostname_on_every_node_with_ssh2() {
    let Some(vc) = VCluster::up(3) else { return };
    hostname_everywhere(&vc, vc.ssh2());
}

#[test]
fn hostname_on_every_node_with_openssh() {
    let Some(vc) = VCluster::up(3) else { return };
    hostname_everywhere(&vc, vc.openssh());
}

#[test]
fn ssh2_by_address_with_explicit_key_exit_codes_signals_stdin_terminate() {
    let Some(vc) = VCluster::up(3) else { return };
    let b = vc.ssh2_by_address(SshOptions {
        identity_files: vec![vc.path("VCLUSTER_SSH_KEY")],
        known_hosts_files: Some(vec![vc.path("VCLUSTER_KNOWN_HOSTS")]),
        ..SshOptions::default()
    });
    rt().block_on(async {
        let c = b.start(&vc.user_at(2), &argv(&["hostname"])).expect("start");
        assert_eq!(output(c).await.0, "node2\n");

        let c = b
            .start(&vc.user_at(1), &argv(&["sh", "-c", "echo 'a b' \"$0\" >&2; exit 7", "it's"]))
            .expect("start");
        let mut c = c;
        let mut err = Vec::new();
        while let Some(chunk) = c.stderr.recv().await {
            err.extend(chunk);
        }
        assert_eq!(String::from_utf8_lossy(&err), "a b it's\n");
        assert_eq!(c.finish().await.expect("exit"), RemoteExit::Code(7));

        let c = b.start(&vc.user_at(1), &argv(&["sh", "-c", "kill -TERM $$"])).expect("start");
        assert_eq!(output(c).await.1.expect("exit"), RemoteExit::Signal("TERM".into()));

        let mut c = b.start(&vc.user_at(3), &argv(&["cat"])).expect("start");
        let stdin = c.stdin.take().expect("stdin");
        stdin.write(b"ping\n".to_vec()).expect("write");
        assert_eq!(c.stdout.recv().await.as_deref(), Some(&b"ping\n"[..]));
        stdin.close();
        assert_eq!(output(c).await.1.expect("exit"), RemoteExit::Code(0));

        // terminate: EOF to a `cat` that never gets one otherwise; it must end promptly.
        let mut c = b.start(&vc.user_at(3), &argv(&["cat"])).expect("start");
        let t = Instant::now();
        c.terminate();
        let exit = tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .expect("ends after terminate");
        assert!(matches!(exit, RemoteExit::Code(0) | RemoteExit::Terminated), "{exit}");
        assert!(t.elapsed() < Duration::from_secs(3));
    });
}

/// Asserts the error names `node`, and came within `limit`.
fn expect_failure(
    b: &dyn Bootstrap,
    target: &HostSpec,
    program: &str,
    limit: Duration,
) -> BootstrapError {
    let t = Instant::now();
    let err = match b.start(target, &argv(&[program])) {
        Ok(c) => panic!("{target}: started {c:?}"),
        Err(e) => e,
    };
    let took = t.elapsed();
    assert!(took < limit, "{target}: took {took:?}: {err}");
    eprintln!("{target} -> {err} ({took:.2?})");
    err
}

#[test]
fn killed_node_is_refused_by_name() {
    let Some(vc) = VCluster::up(3) else { return };
    vc.ctl(&["kill", "node2"]);
    for b in [vc.ssh2(), vc.openssh()] {
        let err = expect_failure(&*b, &spec("node2"), "true", Duration::from_secs(5));
        assert!(matches!(err, BootstrapError::Refused { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("node2 ({}:22)", vc.addr(2))), "{msg}");
    }
}

#[test]
fn partitioned_node_times_out_by_name() {
    let Some(vc) = VCluster::up(3) else { return };
    vc.ctl(&["partition", "node3"]);
    for b in [vc.ssh2(), vc.openssh()] {
        let err = expect_failure(&*b, &spec("node3"), "true", Duration::from_secs(5));
        assert!(
            matches!(err, BootstrapError::Timeout { .. } | BootstrapError::Unreachable { .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("node3"), "{err}");
    }
    vc.ctl(&["heal", "node3"]);
}

#[test]
fn unknown_host_name_fails_at_once() {
    let Some(vc) = VCluster::up(1) else { return };
    for b in [vc.ssh2(), vc.openssh()] {
        let err = expect_failure(&*b, &spec("nosuchnode.invalid"), "true", Duration::from_secs(1));
        assert!(matches!(err, BootstrapError::Unresolvable { .. }), "{err}");
        assert!(err.to_string().contains("nosuchnode.invalid"), "{err}");
    }
}

#[test]
fn wrong_key_is_an_auth_error_naming_the_keys() {
    let Some(vc) = VCluster::up(1) else { return };
    let dir = scratch("wrongkey");
    let key = dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let missing = dir.join("id_missing");
    let b = vc.ssh2_by_address(SshOptions {
        identity_files: vec![missing.clone(), key.clone()],
        known_hosts_files: Some(vec![vc.path("VCLUSTER_KNOWN_HOSTS")]),
        ..SshOptions::default()
    });
    let err = expect_failure(&b, &vc.user_at(1), "true", Duration::from_secs(5));
    assert!(matches!(err, BootstrapError::AuthFailed { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("{} (no such file)", missing.display())), "{msg}");
    assert!(msg.contains("\"gwtest\""), "{msg}");

    let o = OpenSshBootstrap::new(OpenSshOptions {
        connect_timeout: Some(Duration::from_secs(2)),
        identity_files: vec![key],
        options: vec![
            "IdentitiesOnly=yes".into(),
            format!("UserKnownHostsFile={}", vc.env["VCLUSTER_KNOWN_HOSTS"]),
        ],
        config_file: Some(PathBuf::from("/dev/null")),
        ..OpenSshOptions::default()
    });
    let err = expect_failure(&o, &vc.user_at(1), "true", Duration::from_secs(5));
    assert!(matches!(err, BootstrapError::AuthFailed { .. }), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn host_key_policies() {
    let Some(vc) = VCluster::up(1) else { return };
    let dir = scratch("hostkeys");
    let kh = dir.join("known_hosts");
    std::fs::write(&kh, "# nothing yet\n").expect("write");
    let with = |policy| {
        vc.ssh2_by_address(SshOptions {
            identity_files: vec![vc.path("VCLUSTER_SSH_KEY")],
            known_hosts_files: Some(vec![kh.clone()]),
            host_key_policy: Some(policy),
            ..SshOptions::default()
        })
    };
    let node = vc.user_at(1);

    // Unknown under strict: says what to run, with the fingerprint.
    let err = expect_failure(&with(HostKeyPolicy::Strict), &node, "true", Duration::from_secs(5));
    assert!(matches!(err, BootstrapError::HostKeyUnknown { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("host key not known (ssh-ed25519 SHA256:"), "{msg}");
    assert!(msg.contains(&format!("ssh-keyscan {} >> {}", vc.addr(1), kh.display())), "{msg}");

    // The system ssh says the same in its own words.
    let o = OpenSshBootstrap::new(OpenSshOptions {
        connect_timeout: Some(Duration::from_secs(2)),
        identity_files: vec![vc.path("VCLUSTER_SSH_KEY")],
        host_key_policy: Some(HostKeyPolicy::Strict),
        options: vec![format!("UserKnownHostsFile={}", kh.display())],
        config_file: Some(PathBuf::from("/dev/null")),
        ..OpenSshOptions::default()
    });
    let err = expect_failure(&o, &node, "true", Duration::from_secs(5));
    assert!(matches!(err, BootstrapError::HostKeyUnknown { .. }), "{err}");

    // accept-new records it; strict then accepts.
    rt().block_on(async {
        let c = with(HostKeyPolicy::AcceptNew).start(&node, &argv(&["true"])).expect("accept-new");
        assert!(output(c).await.1.expect("exit").success());
        let c = with(HostKeyPolicy::Strict)
            .start(&node, &argv(&["true"]))
            .expect("recorded key accepted");
        assert!(output(c).await.1.expect("exit").success());
    });
    let recorded = std::fs::read_to_string(&kh).expect("read");
    assert!(recorded.contains(&format!("{} ssh-ed25519 ", vc.addr(1))), "{recorded}");

    // A different ed25519 key on record (the client key's public half stands in): mismatch,
    // naming the file and line.
    let fake = std::fs::read_to_string(format!("{}.pub", vc.env["VCLUSTER_SSH_KEY"])).expect("pub");
    let fake_key = fake.split_whitespace().nth(1).expect("key field");
    std::fs::write(&kh, format!("# line 1\n{} ssh-ed25519 {fake_key}\n", vc.addr(1)))
        .expect("write");
    let err =
        expect_failure(&with(HostKeyPolicy::AcceptNew), &node, "true", Duration::from_secs(5));
    assert!(matches!(err, BootstrapError::HostKeyMismatch { line: 2, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("{}:2", kh.display())), "{msg}");
    assert!(msg.contains("man-in-the-middle"), "{msg}");

    // Off: anything goes.
    rt().block_on(async {
        let c = with(HostKeyPolicy::Off).start(&node, &argv(&["true"])).expect("policy off");
        assert!(output(c).await.1.expect("exit").success());
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_remote_program_is_not_found_on_the_node() {
    let Some(vc) = VCluster::up(2) else { return };
    for b in [vc.ssh2(), vc.openssh()] {
        let err = expect_failure(&*b, &spec("node2"), "/no/such/gangway", Duration::from_secs(5));
        assert!(matches!(err, BootstrapError::ProgramNotFound { .. }), "{err}");
        assert!(err.to_string().starts_with("/no/such/gangway not found on node2"), "{err}");
    }
}

/// Cold start of `true` (connect, handshake, auth, exec, exit) through each transport.
#[test]
fn cold_start_timings() {
    let Some(vc) = VCluster::up(1) else { return };
    let mut report = Vec::new();
    for (name, b) in [("ssh2", vc.ssh2()), ("openssh", vc.openssh())] {
        let mut times: Vec<Duration> = (0..7)
            .map(|_| {
                let t = Instant::now();
                rt().block_on(async {
                    let c = b.start(&spec("node1"), &argv(&["true"])).expect("start");
                    assert!(output(c).await.1.expect("exit").success());
                });
                t.elapsed()
            })
            .collect();
        times.sort();
        report.push(format!(
            "{name}: median {:.0?} (min {:.0?}, max {:.0?})",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        ));
    }
    eprintln!("cold `true` on a vcluster node: {}", report.join("; "));
}
