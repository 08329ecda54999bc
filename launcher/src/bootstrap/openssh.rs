//! The system-`ssh` transport (`--launcher openssh`), for what libssh2 cannot do: ProxyJump,
//! ProxyCommand, Match, certificates, ControlMaster and the rest of a full `ssh_config`.
//!
//! `ssh` cannot tell us which local address its connection uses, so the node tells us: the
//! wrapper script prints `SSH_CONNECTION` (`client_ip client_port server_ip server_port`) as the
//! first stdout line before it execs the command. That line is also our "the command runs"
//! signal, and where a missing program is reported. Failures of `ssh` itself (exit 255) are
//! mapped from its stderr onto the same error kinds as the ssh2 transport.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::child;
use super::error::BootstrapError;
use super::error::HostKeyId;
use super::host::HostSpec;
use super::marker::{MarkerLine, parse_marker, parse_ssh_connection};
use super::quote::wrapper_script;
use super::remote::{RemoteCommand, RemoteExit, Started};
use super::ssh_config::HostKeyPolicy;
use super::transport::{Bootstrap, DEFAULT_CONNECT_TIMEOUT, check_argv};

/// Beyond ConnectTimeout (which covers the TCP connect and the banner, not key exchange and
/// auth), how long we give `ssh` to get the command running before we kill it.
const START_SLACK: Duration = Duration::from_secs(3);

/// Settings for the `ssh` command line.
#[derive(Debug, Clone)]
pub struct OpenSshOptions {
    /// The client binary.
    pub program: PathBuf,
    /// `-F`: read only this config file.
    pub config_file: Option<PathBuf>,
    /// `-o ConnectTimeout=` (whole seconds, at least 1); default 5 s.
    pub connect_timeout: Option<Duration>,
    /// `-o StrictHostKeyChecking=`; `None` leaves it to the config.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// `-i` key files.
    pub identity_files: Vec<PathBuf>,
    /// More `-o Key=Value` options, passed as given.
    pub options: Vec<String>,
}

impl Default for OpenSshOptions {
    fn default() -> OpenSshOptions {
        OpenSshOptions {
            program: PathBuf::from("ssh"),
            config_file: None,
            connect_timeout: None,
            host_key_policy: None,
            identity_files: Vec::new(),
            options: Vec::new(),
        }
    }
}

/// Starts commands with the system `ssh` client.
#[derive(Debug, Clone, Default)]
pub struct OpenSshBootstrap {
    /// Command-line settings.
    pub options: OpenSshOptions,
}

impl OpenSshBootstrap {
    /// A transport with these settings.
    pub fn new(options: OpenSshOptions) -> OpenSshBootstrap {
        OpenSshBootstrap { options }
    }

    fn timeout(&self) -> Duration {
        self.options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// The full `ssh` argument list for `argv` on `target`.
    pub fn command_args(&self, target: &HostSpec, argv: &[String]) -> Vec<String> {
        let o = &self.options;
        let secs = self.timeout().as_secs_f64().ceil().max(1.0);
        let mut args: Vec<String> = vec![
            "-T".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={secs}"),
        ];
        if let Some(p) = o.host_key_policy {
            let v = match p {
                HostKeyPolicy::Strict => "yes",
                HostKeyPolicy::AcceptNew => "accept-new",
                HostKeyPolicy::Off => "no",
            };
            args.extend(["-o".into(), format!("StrictHostKeyChecking={v}")]);
        }
        for opt in &o.options {
            args.extend(["-o".into(), opt.clone()]);
        }
        if let Some(f) = &o.config_file {
            args.extend(["-F".into(), f.display().to_string()]);
        }
        for k in &o.identity_files {
            args.extend(["-i".into(), k.display().to_string()]);
        }
        if let Some(u) = &target.user {
            args.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = target.port {
            args.extend(["-p".into(), p.to_string()]);
        }
        // `--` ends ssh's options, so no host name can ever be read as one.
        args.extend(["--".into(), target.host.clone(), wrapper_script(argv)]);
        args
    }
}

impl Bootstrap for OpenSshBootstrap {
    fn start(&self, target: &HostSpec, argv: &[String]) -> Result<RemoteCommand, BootstrapError> {
        let program = check_argv(argv)?;
        let timeout = self.timeout();
        let deadline = Instant::now() + timeout + START_SLACK;
        let mut cmd = Command::new(&self.options.program);
        cmd.args(self.command_args(target, argv));
        let what = format!("the ssh client {}", self.options.program.display());
        let mut running = child::spawn(cmd, &what, true)?;
        let first = running.first_line.take().and_then(|rx| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
        });
        let kill = running.terminator();
        let host = target.host.clone();
        let marker = match first {
            // No line in time: ssh is stuck somewhere (a slow auth, a ProxyCommand that hangs).
            None => {
                kill();
                return Err(BootstrapError::Timeout {
                    host,
                    addr: None,
                    stage: "ssh connect and login",
                    after: timeout + START_SLACK,
                });
            }
            Some(line) => line.as_deref().and_then(parse_marker),
        };
        match marker {
            Some(MarkerLine::Running { ssh_connection }) => {
                let (local_addr, peer_addr) = parse_ssh_connection(&ssh_connection)
                    .ok_or_else(|| BootstrapError::Ssh {
                        host: host.clone(),
                        addr: None,
                        stage: "starting the command",
                        message: format!(
                            "the node's SSH_CONNECTION is {ssh_connection:?}, not `client_ip client_port server_ip server_port`"
                        ),
                    })?;
                let terminate = running.terminator();
                Ok(running.receivers.into_command(Started {
                    host,
                    program: program.to_string(),
                    local_addr,
                    peer_addr,
                    stdin: running.stdin,
                    terminate,
                }))
            }
            Some(MarkerLine::Missing) => {
                Err(BootstrapError::ProgramNotFound { host, program: program.to_string() })
            }
            None => {
                let exit = running.wait_exit_blocking(deadline + Duration::from_secs(1));
                if exit.is_none() {
                    kill();
                }
                let stderr =
                    running.stderr_copy.wait_text(Instant::now() + Duration::from_millis(500));
                Err(map_ssh_failure(&host, exit.as_ref(), &stderr, timeout))
            }
        }
    }
}

/// Turns a failed `ssh` run (usually exit 255) and its stderr into an error kind.
pub fn map_ssh_failure(
    host: &str,
    exit: Option<&RemoteExit>,
    stderr: &str,
    timeout: Duration,
) -> BootstrapError {
    let host = host.to_string();
    let addr = connect_addr(stderr);
    let has = |s: &str| stderr.contains(s);
    if let Some(line) = stderr.lines().find(|l| l.contains("Could not resolve hostname")) {
        let reason = line.rsplit(": ").next().unwrap_or(line).trim().to_string();
        return BootstrapError::Unresolvable { host, reason };
    }
    if has("Connection refused") {
        return BootstrapError::Refused { host, addr };
    }
    if has("timed out") {
        return BootstrapError::Timeout { host, addr, stage: "connecting", after: timeout };
    }
    if has("No route to host") || has("Network is unreachable") {
        let reason =
            if has("No route to host") { "no route to host" } else { "network is unreachable" };
        return BootstrapError::Unreachable { host, addr, reason: reason.into() };
    }
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        let (file, line) =
            offending_key(stderr).unwrap_or_else(|| (PathBuf::from("known_hosts"), 0));
        return BootstrapError::HostKeyMismatch {
            name: host.clone(),
            host,
            addr,
            key: Box::new(HostKeyId {
                key_type: word_after(stderr, "fingerprint for the ").unwrap_or_else(|| "?".into()),
                fingerprint: stderr
                    .split_whitespace()
                    .find(|w| w.starts_with("SHA256:"))
                    .unwrap_or("(see above)")
                    .trim_end_matches('.')
                    .to_string(),
            }),
            file,
            line,
        };
    }
    if has("Host key verification failed") {
        return BootstrapError::HostKeyUnknown {
            name: host.clone(),
            host,
            addr,
            key: Box::new(HostKeyId {
                key_type: word_after(stderr, "No ").unwrap_or_else(|| "?".into()),
                fingerprint: "(fingerprint not printed by ssh in batch mode)".into(),
            }),
            files: Vec::new(),
        };
    }
    if has("Permission denied (") {
        let mut tried: Vec<String> = stderr
            .lines()
            .filter(|l| l.starts_with("Load key") || l.contains("no such identity"))
            .map(|l| l.trim().to_string())
            .collect();
        tried.push("the agent and keys ssh's config names (run `ssh -v` to see which)".into());
        return BootstrapError::AuthFailed {
            host,
            addr,
            // ssh prints `user@host: Permission denied (publickey).`
            user: stderr
                .lines()
                .find_map(|l| l.split_once(": Permission denied ("))
                .and_then(|(who, _)| who.rsplit_once('@'))
                .map_or_else(|| "the configured user".into(), |(u, _)| u.to_string()),
            tried,
        };
    }
    let said = stderr.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" / ");
    BootstrapError::Ssh {
        host,
        addr,
        stage: "ssh",
        message: match exit {
            Some(RemoteExit::Code(255)) | None => format!("ssh failed: {said}"),
            Some(e) => format!("the remote shell ended ({e}) before the command started: {said}"),
        },
    }
}

/// `ssh: connect to host 10.0.0.2 port 22: Connection refused` → 10.0.0.2:22.
fn connect_addr(stderr: &str) -> Option<SocketAddr> {
    let rest = stderr.split("connect to host ").nth(1)?;
    let mut w = rest.split_whitespace();
    let ip: IpAddr = w.next()?.parse().ok()?;
    (w.next()? == "port").then_some(())?;
    let port: u16 = w.next()?.trim_end_matches(':').parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// `Offending ED25519 key in /root/.ssh/known_hosts:3` → (file, 3).
fn offending_key(stderr: &str) -> Option<(PathBuf, usize)> {
    let line = stderr.lines().find(|l| l.contains("Offending"))?;
    let loc = line.split(" key in ").nth(1)?.trim();
    let (file, n) = loc.rsplit_once(':')?;
    Some((PathBuf::from(file), n.trim().parse().ok()?))
}

fn word_after(text: &str, prefix: &str) -> Option<String> {
    let rest = text.split(prefix).nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Duration {
        Duration::from_secs(3)
    }

    #[test]
    fn command_line() {
        let b = OpenSshBootstrap::new(OpenSshOptions {
            config_file: Some("/run/cfg".into()),
            connect_timeout: Some(Duration::from_millis(2500)),
            host_key_policy: Some(HostKeyPolicy::AcceptNew),
            ..OpenSshOptions::default()
        });
        let args = b.command_args(&"alice@node2:2222".parse().expect("spec"), &["hostname".into()]);
        let joined = args[..args.len() - 1].join(" ");
        assert_eq!(
            joined,
            "-T -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=accept-new -F /run/cfg -l alice -p 2222 -- node2"
        );
        assert!(args.last().is_some_and(|s| s.contains("exec hostname")));
    }

    #[test]
    fn maps_ssh_errors() {
        let e = map_ssh_failure(
            "nope",
            Some(&RemoteExit::Code(255)),
            "ssh: Could not resolve hostname nope: Name or service not known\r\n",
            t(),
        );
        assert!(
            matches!(e, BootstrapError::Unresolvable { ref reason, .. } if reason == "Name or service not known"),
            "{e}"
        );

        let e = map_ssh_failure(
            "node2",
            Some(&RemoteExit::Code(255)),
            "ssh: connect to host 10.77.0.2 port 22: Connection refused\r\n",
            t(),
        );
        assert!(
            matches!(e, BootstrapError::Refused { addr: Some(a), .. } if a.to_string() == "10.77.0.2:22"),
            "{e}"
        );
        assert!(e.to_string().starts_with("node2 (10.77.0.2:22): connection refused"));

        let e = map_ssh_failure(
            "node3",
            Some(&RemoteExit::Code(255)),
            "ssh: connect to host 10.77.0.3 port 22: Connection timed out\r\n",
            t(),
        );
        assert!(matches!(e, BootstrapError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("node3 (10.77.0.3:22): no answer within 3s"), "{e}");

        let e = map_ssh_failure(
            "node3",
            Some(&RemoteExit::Code(255)),
            "ssh: connect to host 10.77.0.3 port 22: No route to host\r\n",
            t(),
        );
        assert!(matches!(e, BootstrapError::Unreachable { .. }), "{e}");

        let e = map_ssh_failure(
            "node1",
            Some(&RemoteExit::Code(255)),
            "gwtest@10.77.0.1: Permission denied (publickey).\r\n",
            t(),
        );
        assert!(
            matches!(e, BootstrapError::AuthFailed { ref user, .. } if user == "gwtest"),
            "{e}"
        );

        let e = map_ssh_failure(
            "node1",
            Some(&RemoteExit::Code(255)),
            "No ED25519 host key is known for 10.77.0.1 and you have requested strict checking.\r\nHost key verification failed.\r\n",
            t(),
        );
        assert!(
            matches!(e, BootstrapError::HostKeyUnknown { ref key, .. } if key.key_type == "ED25519"),
            "{e}"
        );

        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            The fingerprint for the ED25519 key sent by the remote host is\nSHA256:abcDEF.\n\
            Offending ED25519 key in /root/.ssh/known_hosts:7\nHost key verification failed.\n";
        let e = map_ssh_failure("node1", Some(&RemoteExit::Code(255)), changed, t());
        match &e {
            BootstrapError::HostKeyMismatch { file, line, key, .. } => {
                assert_eq!((file.to_str(), *line), (Some("/root/.ssh/known_hosts"), 7));
                assert_eq!(key.fingerprint, "SHA256:abcDEF");
            }
            other => panic!("{other}"),
        }
        assert!(e.to_string().contains("man-in-the-middle"));

        let e = map_ssh_failure(
            "n",
            Some(&RemoteExit::Code(1)),
            "This account is currently not available.\n",
            t(),
        );
        assert!(e.to_string().contains("not available"), "{e}");
    }
}
