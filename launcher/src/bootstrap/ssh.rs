//! The in-process SSH transport (libssh2 through the `ssh2` crate): resolve, connect, handshake,
//! known_hosts check, public-key auth (agent, then key files), exec of the wrapper script, and
//! one OS thread per session that bridges the channel to tokio channels.
//!
//! Everything up to "the command runs" happens on the caller's thread under one deadline (the
//! connect timeout), so [`Bootstrap::start`] answers within it; the session then moves to its
//! own thread, which runs libssh2 in non-blocking mode around `poll(2)`.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ssh2::{CheckResult, HashType, HostKeyType, KnownHostFileKind, MethodType, Session};

use super::error::BootstrapError;
use super::error::HostKeyId;
use super::host::HostSpec;
use super::marker::{MarkerLine, parse_marker};
use super::quote::wrapper_script;
use super::remote::{Feed, RemoteCommand, RemoteExit, RemoteStdin, Started, feed};
pub use super::ssh_config::HostKeyPolicy;
use super::ssh_config::{HostConfig, SshConfig};
use super::transport::{Bootstrap, DEFAULT_CONNECT_TIMEOUT, check_argv};
use super::wake::WakePipe;

/// Key files tried when the config names none, in OpenSSH's order.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// OpenSSH's host key preference, so libssh2 asks for the key type ssh recorded.
const HOST_KEY_PREFS: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";

/// How often the session thread sends an SSH keepalive (keeps NATs and firewalls open).
const KEEPALIVE_SECS: u32 = 15;

/// After `terminate`, how long to wait for the node to close the channel before giving up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Settings that override the ssh config (the command-line side).
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// Read only this config file (like `ssh -F`); `None` reads `~/.ssh/config` and
    /// `/etc/ssh/ssh_config`.
    pub config_file: Option<PathBuf>,
    /// Host key policy; `None` takes StrictHostKeyChecking from the config, else strict.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Connect timeout; `None` takes ConnectTimeout from the config, else 5 s.
    pub connect_timeout: Option<Duration>,
    /// Key files tried before the config's (like `ssh -i`).
    pub identity_files: Vec<PathBuf>,
    /// known_hosts files replacing the config's UserKnownHostsFile (the first one is where
    /// accept-new records keys).
    pub known_hosts_files: Option<Vec<PathBuf>>,
    /// Do not ask ssh-agent even when `SSH_AUTH_SOCK` is set.
    pub no_agent: bool,
}

/// Starts commands over SSH with libssh2.
#[derive(Debug)]
pub struct Ssh2Bootstrap {
    options: SshOptions,
    config: SshConfig,
    home: PathBuf,
    local_user: String,
}

impl Ssh2Bootstrap {
    /// Reads the ssh config once; a config that cannot be read or parsed is an error here.
    pub fn new(options: SshOptions) -> Result<Ssh2Bootstrap, BootstrapError> {
        let (home, local_user) = home_and_user();
        let config = SshConfig::load(options.config_file.as_deref(), &home)?;
        Ok(Ssh2Bootstrap { options, config, home, local_user })
    }

    /// What `start` will use for `target`: its config entry merged with the host spec.
    pub fn settings(&self, target: &HostSpec) -> Settings {
        let cfg = self.config.resolve(&target.host, &self.local_user);
        let user = target
            .user
            .clone()
            .or_else(|| cfg.user.clone())
            .unwrap_or_else(|| self.local_user.clone());
        let port = target.port.or(cfg.port).unwrap_or(22);
        let timeout =
            self.options.connect_timeout.or(cfg.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let policy = self.options.host_key_policy.or(cfg.host_key_policy).unwrap_or_default();
        let ssh_dir = self.home.join(".ssh");
        let known_hosts = self
            .options
            .known_hosts_files
            .clone()
            .or_else(|| cfg.user_known_hosts.clone())
            .unwrap_or_else(|| vec![ssh_dir.join("known_hosts"), ssh_dir.join("known_hosts2")]);
        let global_known_hosts = cfg.global_known_hosts.clone().unwrap_or_else(|| {
            vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ]
        });
        let mut keys = self.options.identity_files.clone();
        keys.extend(cfg.identity_files.iter().cloned());
        if keys.is_empty() {
            keys.extend(DEFAULT_KEYS.iter().map(|k| ssh_dir.join(k)));
        }
        Settings {
            user,
            port,
            timeout,
            policy,
            known_hosts,
            global_known_hosts,
            keys,
            use_agent: !self.options.no_agent && !cfg.identities_only,
            config: cfg,
        }
    }
}

/// The effective settings for one host.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Remote user.
    pub user: String,
    /// sshd port.
    pub port: u16,
    /// Budget for everything up to "the command runs".
    pub timeout: Duration,
    /// Host key policy.
    pub policy: HostKeyPolicy,
    /// User known_hosts files (the first receives accept-new entries).
    pub known_hosts: Vec<PathBuf>,
    /// System known_hosts files.
    pub global_known_hosts: Vec<PathBuf>,
    /// Key files, in the order tried.
    pub keys: Vec<PathBuf>,
    /// Whether ssh-agent is asked first.
    pub use_agent: bool,
    /// The config entry (HostName etc.).
    pub config: HostConfig,
}

/// One start attempt: the target, its settings and the deadline they all share.
struct Attempt<'a> {
    host: &'a str,
    s: Settings,
    deadline: Instant,
}

impl Attempt<'_> {
    fn remaining(
        &self,
        stage: &'static str,
        addr: Option<SocketAddr>,
    ) -> Result<Duration, BootstrapError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout(stage, addr));
        }
        Ok(left)
    }

    fn timeout(&self, stage: &'static str, addr: Option<SocketAddr>) -> BootstrapError {
        BootstrapError::Timeout { host: self.host.to_string(), addr, stage, after: self.s.timeout }
    }

    /// Gives the session what is left of the budget for its next blocking call.
    fn arm(
        &self,
        sess: &Session,
        stage: &'static str,
        addr: SocketAddr,
    ) -> Result<(), BootstrapError> {
        let left = self.remaining(stage, Some(addr))?;
        sess.set_timeout(u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1));
        Ok(())
    }

    fn ssh_err(&self, stage: &'static str, addr: SocketAddr, e: &ssh2::Error) -> BootstrapError {
        if is_code(e, LIBSSH2_ERROR_TIMEOUT) {
            return self.timeout(stage, Some(addr));
        }
        BootstrapError::Ssh {
            host: self.host.to_string(),
            addr: Some(addr),
            stage,
            message: e.message().to_string(),
        }
    }
}

impl Bootstrap for Ssh2Bootstrap {
    fn start(&self, target: &HostSpec, argv: &[String]) -> Result<RemoteCommand, BootstrapError> {
        let program = check_argv(argv)?;
        let s = self.settings(target);
        if let Some(proxy) = &s.config.proxy {
            return Err(BootstrapError::Ssh {
                host: target.host.clone(),
                addr: None,
                stage: "reading the ssh config",
                message: format!(
                    "its config entry uses {proxy}, which the built-in ssh client does not support; use --launcher openssh"
                ),
            });
        }
        let a = Attempt { host: &target.host, deadline: Instant::now() + s.timeout, s };
        let (stream, peer) = connect(&a)?;
        let local = stream.local_addr().map_err(|e| BootstrapError::Ssh {
            host: a.host.to_string(),
            addr: Some(peer),
            stage: "connecting",
            message: e.to_string(),
        })?;
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();

        let mut sess = Session::new().map_err(|e| a.ssh_err("creating a session", peer, &e))?;
        let _ = sess.method_pref(MethodType::HostKey, HOST_KEY_PREFS);
        sess.set_tcp_stream(stream);
        a.arm(&sess, "SSH handshake", peer)?;
        sess.handshake().map_err(|e| a.ssh_err("SSH handshake", peer, &e))?;
        check_host_key(&a, &sess, peer)?;
        authenticate(&a, &sess, peer)?;

        a.arm(&sess, "starting the command", peer)?;
        let mut ch =
            sess.channel_session().map_err(|e| a.ssh_err("opening a channel", peer, &e))?;
        ch.exec(&wrapper_script(argv)).map_err(|e| a.ssh_err("starting the command", peer, &e))?;
        let (line, rest) = read_first_line(&a, &mut ch, peer)?;
        match line.as_deref().and_then(parse_marker) {
            Some(MarkerLine::Running { .. }) => {}
            Some(MarkerLine::Missing) => {
                return Err(BootstrapError::ProgramNotFound {
                    host: a.host.to_string(),
                    program: program.to_string(),
                });
            }
            None => {
                // The login shell never ran our script: show what it said instead.
                let mut err = String::new();
                let _ = ch.stderr().read_to_string(&mut err);
                let _ = ch.wait_close();
                let status = ch.exit_status().unwrap_or(-1);
                let said = line.unwrap_or_default();
                return Err(BootstrapError::Ssh {
                    host: a.host.to_string(),
                    addr: Some(peer),
                    stage: "starting the command",
                    message: format!(
                        "the remote shell exited ({status}) without running it; is the login shell of {} a POSIX shell? it said: {}",
                        a.s.user,
                        format!("{said}{err}").trim()
                    ),
                });
            }
        }

        let wake = Arc::new(
            WakePipe::new()
                .map_err(|source| BootstrapError::Spawn { what: "a wake pipe".into(), source })?,
        );
        let (feed, receivers) = feed();
        let (in_tx, in_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let pump =
            Pump { sess, ch, fd, wake: Arc::clone(&wake), stdin: in_rx, stop: Arc::clone(&stop) };
        std::thread::Builder::new()
            .name(format!("ssh {}", a.host))
            .spawn(move || pump.run(feed, rest))
            .map_err(|source| BootstrapError::Spawn {
                what: "an ssh session thread".into(),
                source,
            })?;
        let wake2 = Arc::clone(&wake);
        Ok(receivers.into_command(Started {
            host: a.host.to_string(),
            program: program.to_string(),
            local_addr: local,
            peer_addr: peer,
            stdin: RemoteStdin { tx: Some(in_tx), wake: Some(wake) },
            terminate: Box::new(move || {
                stop.store(true, Ordering::SeqCst);
                wake2.wake();
            }),
        }))
    }
}

/// Resolves (on a helper thread, so a hanging resolver cannot outlast the deadline) and connects
/// to the first address that answers.
fn connect(a: &Attempt<'_>) -> Result<(TcpStream, SocketAddr), BootstrapError> {
    let name = a.s.config.host_name.clone();
    let port = a.s.port;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ssh resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|source| BootstrapError::Spawn { what: "a resolver thread".into(), source })?;
    let unresolvable = |reason: String| BootstrapError::Unresolvable {
        host: if a.s.config.host_name == a.host {
            a.host.to_string()
        } else {
            format!("{} (HostName {})", a.host, a.s.config.host_name)
        },
        reason,
    };
    let addrs = match rx.recv_timeout(a.remaining("name resolution", None)?) {
        Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
        Ok(Ok(_)) => return Err(unresolvable("no addresses".into())),
        Ok(Err(e)) => return Err(unresolvable(e.to_string())),
        Err(_) => return Err(a.timeout("name resolution", None)),
    };
    let mut last = None;
    for addr in addrs {
        let left = a.remaining("connecting", Some(addr))?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = Some((addr, e)),
        }
    }
    let Some((addr, e)) = last else {
        return Err(unresolvable("no addresses".into()));
    };
    let host = a.host.to_string();
    Err(match e.kind() {
        io::ErrorKind::ConnectionRefused => BootstrapError::Refused { host, addr: Some(addr) },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => a.timeout("connecting", Some(addr)),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            BootstrapError::Unreachable { host, addr: Some(addr), reason: e.to_string() }
        }
        _ => BootstrapError::Ssh {
            host,
            addr: Some(addr),
            stage: "connecting",
            message: e.to_string(),
        },
    })
}

/// ssh's name for a host key type, as written in known_hosts.
fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// How known_hosts names a host: `name`, or `[name]:port` off port 22.
fn known_hosts_name(name: &str, port: u16) -> String {
    if port == 22 { name.to_string() } else { format!("[{name}]:{port}") }
}

/// Checks the node's key line by line (so a mismatch can name its file and line), comparing
/// only lines of the offered key type: a recorded key of another type is not a change.
fn check_host_key(a: &Attempt<'_>, sess: &Session, peer: SocketAddr) -> Result<(), BootstrapError> {
    if a.s.policy == HostKeyPolicy::Off {
        return Ok(());
    }
    let Some((key, ktype)) = sess.host_key() else {
        return Err(BootstrapError::Ssh {
            host: a.host.to_string(),
            addr: Some(peer),
            stage: "host key check",
            message: "the node sent no host key".into(),
        });
    };
    let type_name = key_type_name(ktype);
    let fingerprint = sess
        .host_key_hash(HashType::Sha256)
        .map_or_else(|| "(no fingerprint)".to_string(), |h| format!("SHA256:{}", base64(h, false)));
    let name = &a.s.config.host_name;
    let mut mismatch: Option<(PathBuf, usize)> = None;
    for file in a.s.known_hosts.iter().chain(&a.s.global_known_hosts) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Markers (@cert-authority, @revoked) and comments are not plain host keys.
            if fields.len() < 3 || fields[0].starts_with('#') || fields[0].starts_with('@') {
                continue;
            }
            let Ok(mut kh) = sess.known_hosts() else {
                continue;
            };
            if kh.read_str(line, KnownHostFileKind::OpenSSH).is_err() {
                continue;
            }
            match kh.check_port(name, a.s.port, key) {
                CheckResult::Match => return Ok(()),
                CheckResult::Mismatch if fields[1] == type_name && mismatch.is_none() => {
                    mismatch = Some((file.clone(), i + 1));
                }
                _ => {}
            }
        }
    }
    if let Some((file, line)) = mismatch {
        return Err(BootstrapError::HostKeyMismatch {
            host: a.host.to_string(),
            name: name.clone(),
            addr: Some(peer),
            key: Box::new(HostKeyId { key_type: type_name.into(), fingerprint }),
            file,
            line,
        });
    }
    if a.s.policy == HostKeyPolicy::AcceptNew
        && let Some(file) = a.s.known_hosts.first()
    {
        let entry =
            format!("{} {type_name} {}\n", known_hosts_name(name, a.s.port), base64(key, true));
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| OpenOptions::new().append(true).create(true).mode(0o600).open(file))
            .and_then(|mut f| f.write_all(entry.as_bytes()));
        return match written {
            Ok(()) => {
                tracing::info!(host = a.host, file = %file.display(), "recorded the new host key {type_name} {fingerprint}");
                Ok(())
            }
            Err(e) => Err(BootstrapError::Ssh {
                host: a.host.to_string(),
                addr: Some(peer),
                stage: "host key check",
                message: format!("cannot record the new host key in {}: {e}", file.display()),
            }),
        };
    }
    Err(BootstrapError::HostKeyUnknown {
        host: a.host.to_string(),
        name: known_hosts_name(name, a.s.port),
        addr: Some(peer),
        key: Box::new(HostKeyId { key_type: type_name.into(), fingerprint }),
        files: a.s.known_hosts.clone(),
    })
}

/// ssh-agent first (unless IdentitiesOnly), then each key file; every attempt is recorded for
/// the error message.
fn authenticate(a: &Attempt<'_>, sess: &Session, peer: SocketAddr) -> Result<(), BootstrapError> {
    let user = &a.s.user;
    let mut tried = Vec::new();
    if !a.s.use_agent {
        tried.push("ssh-agent (not asked: IdentitiesOnly or no-agent)".to_string());
    } else if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        tried.push("ssh-agent (SSH_AUTH_SOCK not set)".to_string());
    } else {
        a.arm(sess, "authentication", peer)?;
        match agent_auth(sess, user) {
            Ok(true) => return Ok(()),
            Ok(false) => tried.push("ssh-agent (no key accepted)".into()),
            Err(e) => tried.push(format!("ssh-agent ({})", e.message())),
        }
    }
    for key in &a.s.keys {
        if !key.exists() {
            tried.push(format!("{} (no such file)", key.display()));
            continue;
        }
        a.arm(sess, "authentication", peer)?;
        let public = PathBuf::from(format!("{}.pub", key.display()));
        let public = public.exists().then_some(public);
        match sess.userauth_pubkey_file(user, public.as_deref(), key, None) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push(format!("{} (refused)", key.display())),
            Err(e) if is_code(&e, LIBSSH2_ERROR_TIMEOUT) => {
                return Err(a.timeout("authentication", Some(peer)));
            }
            Err(e) => tried.push(format!("{} ({})", key.display(), auth_failure(&e))),
        }
    }
    Err(BootstrapError::AuthFailed {
        host: a.host.to_string(),
        addr: Some(peer),
        user: user.clone(),
        tried,
    })
}

fn auth_failure(e: &ssh2::Error) -> String {
    let m = e.message();
    // libssh2 says "Unable to extract public key from private key file" or similar for keys it
    // cannot open: most often a passphrase.
    if m.contains("extract") || m.contains("decrypt") || m.contains("passphrase") {
        format!("unreadable, perhaps passphrase-protected: load it into ssh-agent; {m}")
    } else if m.contains("Username/PublicKey combination invalid") || m.contains("publickey") {
        "refused by the node".into()
    } else {
        m.to_string()
    }
}

fn agent_auth(sess: &Session, user: &str) -> Result<bool, ssh2::Error> {
    let mut agent = sess.agent()?;
    agent.connect()?;
    agent.list_identities()?;
    for id in agent.identities()? {
        if agent.userauth(user, &id).is_ok() && sess.authenticated() {
            let _ = agent.disconnect();
            return Ok(true);
        }
    }
    let _ = agent.disconnect();
    Ok(false)
}

/// Reads stdout up to the wrapper's first newline; returns that line and whatever followed it.
fn read_first_line(
    a: &Attempt<'_>,
    ch: &mut ssh2::Channel,
    peer: SocketAddr,
) -> Result<(Option<String>, Vec<u8>), BootstrapError> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match ch.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(a.timeout("starting the command", Some(peer)));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BootstrapError::Ssh {
                    host: a.host.to_string(),
                    addr: Some(peer),
                    stage: "starting the command",
                    message: e.to_string(),
                });
            }
        };
        if n == 0 {
            return Ok((
                (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned()),
                Vec::new(),
            ));
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.iter().position(|&b| b == b'\n') {
            let rest = got.split_off(i + 1);
            return Ok((Some(String::from_utf8_lossy(&got).into_owned()), rest));
        }
        if got.len() > 4096 {
            return Ok((Some(String::from_utf8_lossy(&got).into_owned()), Vec::new()));
        }
        // Each read is bounded by the session timeout; keep the overall deadline too.
        a.remaining("starting the command", Some(peer))?;
    }
}

/// The session thread: owns the session and channel after start.
struct Pump {
    sess: Session,
    ch: ssh2::Channel,
    fd: RawFd,
    wake: Arc<WakePipe>,
    stdin: std::sync::mpsc::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
}

enum Step {
    Continue,
    Done(RemoteExit),
}

impl Pump {
    fn run(mut self, feed: Feed, first: Vec<u8>) {
        let mut out_open = true;
        if !first.is_empty() && feed.stdout.blocking_send(first).is_err() {
            out_open = false;
        }
        self.sess.set_blocking(false);
        self.sess.set_keepalive(false, KEEPALIVE_SECS);
        let mut st = PumpState {
            out_open,
            err_open: true,
            pending: Vec::new(),
            stdin_closed: false,
            eof_sent: false,
            closing_since: None,
        };
        let exit = loop {
            match self.step(&feed, &mut st) {
                Ok(Step::Done(exit)) => break exit,
                Ok(Step::Continue) => {}
                Err(reason) => break RemoteExit::ConnectionLost(reason),
            }
            let next_keepalive = self.sess.keepalive_send().unwrap_or(KEEPALIVE_SECS);
            let timeout = if st.closing_since.is_some() {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(u64::from(next_keepalive.max(1)))
            };
            self.poll(timeout, !st.pending.is_empty());
        };
        // Output channels close as `feed` drops, after the exit is published.
        feed.exit.send_replace(Some(exit));
        let _ = self.sess.disconnect(None, "gangway: command finished", None);
    }

    fn step(&mut self, feed: &Feed, st: &mut PumpState) -> Result<Step, String> {
        self.wake.drain();
        if self.stop.load(Ordering::SeqCst) && st.closing_since.is_none() {
            st.closing_since = Some(Instant::now());
        }
        if let Some(since) = st.closing_since {
            // EOF first (a proxy exits on it), then close; both may need several tries.
            if !st.eof_sent && retry(self.ch.send_eof())? {
                st.eof_sent = true;
            }
            if st.eof_sent {
                let _ = self.ch.close();
            }
            if since.elapsed() > CLOSE_GRACE {
                return Ok(Step::Done(RemoteExit::Terminated));
            }
        } else {
            self.feed_stdin(st)?;
        }
        let mut buf = [0u8; 32 * 1024];
        loop {
            match self.ch.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if st.out_open && feed.stdout.blocking_send(buf[..n].to_vec()).is_err() {
                        st.out_open = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        loop {
            match self.ch.stderr().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if st.err_open && feed.stderr.blocking_send(buf[..n].to_vec()).is_err() {
                        st.err_open = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if self.ch.eof() {
            match self.ch.wait_close() {
                Ok(()) => {
                    if let Ok(sig) = self.ch.exit_signal()
                        && let Some(name) = sig.exit_signal
                    {
                        return Ok(Step::Done(RemoteExit::Signal(name)));
                    }
                    return match self.ch.exit_status() {
                        Ok(code) => Ok(Step::Done(RemoteExit::Code(code))),
                        Err(e) => Err(e.message().to_string()),
                    };
                }
                Err(e) if is_code(&e, LIBSSH2_ERROR_EAGAIN) => {}
                Err(e) => return Err(e.message().to_string()),
            }
        }
        Ok(Step::Continue)
    }

    fn feed_stdin(&mut self, st: &mut PumpState) -> Result<(), String> {
        loop {
            if st.pending.is_empty() && !st.stdin_closed {
                match self.stdin.try_recv() {
                    Ok(d) => st.pending = d,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => st.stdin_closed = true,
                }
            }
            if st.pending.is_empty() {
                break;
            }
            match self.ch.write(&st.pending) {
                Ok(n) => {
                    st.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
        if st.stdin_closed && !st.eof_sent && retry(self.ch.send_eof())? {
            st.eof_sent = true;
        }
        Ok(())
    }

    fn poll(&self, timeout: Duration, want_write: bool) {
        let out = want_write
            || matches!(
                self.sess.block_directions(),
                ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
            );
        let mut fds = [
            libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN | if out { libc::POLLOUT } else { 0 },
                revents: 0,
            },
            libc::pollfd { fd: self.wake.read_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call; both fds
        // stay open (the session owns the socket, `self.wake` the pipe).
        let _ = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    }
}

struct PumpState {
    out_open: bool,
    err_open: bool,
    pending: Vec<u8>,
    stdin_closed: bool,
    eof_sent: bool,
    closing_since: Option<Instant>,
}

/// Ok(true) done, Ok(false) try again later, Err the connection is gone.
fn retry(r: Result<(), ssh2::Error>) -> Result<bool, String> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if is_code(&e, LIBSSH2_ERROR_EAGAIN) => Ok(false),
        Err(e) => Err(e.message().to_string()),
    }
}

// libssh2's error codes (libssh2.h); the ssh2 crate exposes them only as raw numbers.
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_EAGAIN: i32 = -37;

fn is_code(e: &ssh2::Error, code: i32) -> bool {
    e.code() == ssh2::ErrorCode::Session(code)
}

/// The home directory and user name of the local user ($HOME first, as ssh does).
fn home_and_user() -> (PathBuf, String) {
    let pw = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten();
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| pw.as_ref().map(|p| p.dir.clone()))
        .unwrap_or_else(|| PathBuf::from("/"));
    let user =
        pw.map(|p| p.name).or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "root".into());
    (home, user)
}

/// Standard base64 (ssh's fingerprints drop the padding, known_hosts keeps it).
fn base64(data: &[u8], pad: bool) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Used by tests and tools: the known_hosts name for a host spec (`[h]:p` off port 22).
pub fn known_hosts_entry_name(host: &str, port: u16) -> String {
    known_hosts_name(host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (raw, padded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes(), true), padded);
            assert_eq!(base64(raw.as_bytes(), false), padded.trim_end_matches('='));
        }
    }

    #[test]
    fn known_hosts_names() {
        assert_eq!(known_hosts_entry_name("node1", 22), "node1");
        assert_eq!(known_hosts_entry_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    fn bootstrap_with(config: &str) -> (Ssh2Bootstrap, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("gw-ssh-{}-{}", std::process::id(), config.len()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("config");
        std::fs::write(&path, config).expect("write");
        let b = Ssh2Bootstrap::new(SshOptions { config_file: Some(path), ..SshOptions::default() })
            .expect("config");
        (b, dir)
    }

    #[test]
    fn settings_merge_spec_config_defaults() {
        let (b, dir) = bootstrap_with(
            "Host n1\n  HostName 10.1.1.1\n  User cfguser\n  Port 2200\n  StrictHostKeyChecking accept-new\n  IdentityFile /k/one\n  UserKnownHostsFile /k/kh\n  ConnectTimeout 2\n",
        );
        let s = b.settings(&"n1".parse().expect("spec"));
        assert_eq!((s.user.as_str(), s.port), ("cfguser", 2200));
        assert_eq!(s.config.host_name, "10.1.1.1");
        assert_eq!(s.policy, HostKeyPolicy::AcceptNew);
        assert_eq!(s.keys, vec![PathBuf::from("/k/one")]);
        assert_eq!(s.known_hosts, vec![PathBuf::from("/k/kh")]);
        assert_eq!(s.timeout, Duration::from_secs(2));
        let s = b.settings(&"me@n1:2022".parse().expect("spec"));
        assert_eq!((s.user.as_str(), s.port), ("me", 2022), "the host spec wins");
        let other = b.settings(&"elsewhere".parse().expect("spec"));
        assert_eq!(other.policy, HostKeyPolicy::Strict, "strict by default");
        assert_eq!(other.timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(other.port, 22);
        assert!(other.keys.iter().any(|k| k.ends_with(".ssh/id_ed25519")));
        assert!(other.keys.iter().any(|k| k.ends_with(".ssh/id_rsa")));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn proxy_jump_is_refused_with_advice() {
        let (b, dir) = bootstrap_with("Host j\n  ProxyJump bastion\n");
        let err = b.start(&"j".parse().expect("spec"), &["true".to_string()]).expect_err("refused");
        assert!(err.to_string().contains("--launcher openssh"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unresolvable_name_fails_at_once() {
        let b = Ssh2Bootstrap::new(SshOptions {
            config_file: Some(PathBuf::from("/dev/null")),
            ..SshOptions::default()
        })
        .expect("config");
        let t = Instant::now();
        let err = b
            .start(&"no-such-node.invalid".parse().expect("spec"), &["true".to_string()])
            .expect_err("unresolvable");
        assert!(matches!(err, BootstrapError::Unresolvable { .. }), "{err}");
        assert!(err.to_string().contains("no-such-node.invalid"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn refused_port_names_host_and_address() {
        // Port 1 on loopback: nothing listens there, so the kernel refuses at once.
        let b = Ssh2Bootstrap::new(SshOptions {
            config_file: Some(PathBuf::from("/dev/null")),
            ..SshOptions::default()
        })
        .expect("config");
        let err = b
            .start(&"127.0.0.1:1".parse().expect("spec"), &["true".to_string()])
            .expect_err("refused");
        assert!(matches!(err, BootstrapError::Refused { .. }), "{err}");
        assert!(
            err.to_string().starts_with("127.0.0.1 (127.0.0.1:1): connection refused"),
            "{err}"
        );
    }
}
