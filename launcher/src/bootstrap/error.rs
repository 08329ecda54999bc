//! The failures of starting a command on a node, one variant per thing the user must do
//! differently; every message names the host, the address when known, and the fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A host key as a person compares it: its type and SHA256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyId {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, ... (or ssh's `ED25519` from the openssh transport).
    pub key_type: String,
    /// `SHA256:...` as ssh prints it.
    pub fingerprint: String,
}

impl std::fmt::Display for HostKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.key_type, self.fingerprint)
    }
}

/// Why a command could not be started on (or was lost from) a node.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A `[user@]host[:port]` that does not parse.
    #[error("invalid host spec {spec:?}: {reason} (expected [user@]host[:port], [v6addr]:port)")]
    InvalidHostSpec { spec: String, reason: String },

    /// The command itself cannot be sent.
    #[error("invalid command: {reason}")]
    InvalidArgument { reason: String },

    /// An ssh config file that cannot be read or parsed.
    #[error("ssh config {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    /// The name does not resolve to an address.
    #[error(
        "cannot resolve host name {host:?}: {reason}; check the spelling, /etc/hosts or DNS, or give the address (or a HostName in the ssh config)"
    )]
    Unresolvable { host: String, reason: String },

    /// Something answered, but nothing listens on the port (or the node is down with its
    /// address still up).
    #[error("{host}{}: connection refused; is the node up and sshd running on it, listening on {}?", at(addr), addr.map_or_else(|| "the ssh port".to_string(), |a| format!("port {}", a.port())))]
    Refused { host: String, addr: Option<SocketAddr> },

    /// No route to the node.
    #[error("{host}{}: unreachable: {reason}; is the node up and on the network?", at(addr))]
    Unreachable { host: String, addr: Option<SocketAddr>, reason: String },

    /// No answer within the connect timeout.
    #[error("{host}{}: no answer within {} during {stage}; the node may be down or partitioned (raise the timeout with ConnectTimeout if it is just slow)", at(addr), humantime::format_duration(*after))]
    Timeout { host: String, addr: Option<SocketAddr>, stage: &'static str, after: Duration },

    /// The node's host key is in no known_hosts file and the policy is strict.
    #[error("{host}{}: host key not known ({key}) for {name} in {files}. If this is the right node, add it: `ssh-keyscan{} {} >> {first}` (compare the fingerprint first), or connect once with `ssh {host}`, or choose the accept-new host key policy", at(addr), port_flag(addr), name.trim_start_matches('[').split(']').next().unwrap_or(name), files = join_paths(files), first = files.first().map_or_else(|| "~/.ssh/known_hosts".to_string(), |p| p.display().to_string()))]
    HostKeyUnknown {
        host: String,
        /// The name looked up in known_hosts.
        name: String,
        addr: Option<SocketAddr>,
        key: Box<HostKeyId>,
        files: Vec<PathBuf>,
    },

    /// The node offered a different host key than the one on record.
    #[error("{host}{}: HOST KEY MISMATCH: the node offered {key}, but {}:{line} records another key for {name}. This may be a man-in-the-middle attack, or the node was reinstalled; if you know it was, remove the old key with `ssh-keygen -R {name} -f {}`", at(addr), file.display(), file.display())]
    HostKeyMismatch {
        host: String,
        name: String,
        addr: Option<SocketAddr>,
        key: Box<HostKeyId>,
        file: PathBuf,
        line: usize,
    },

    /// Every key was refused (or none could be loaded).
    #[error("{host}{}: authentication as {user:?} failed; tried: {}. Add one of these public keys to ~{user}/.ssh/authorized_keys on the node, load the right key into ssh-agent, or name it with IdentityFile", at(addr), if tried.is_empty() { "no keys at all".to_string() } else { tried.join("; ") })]
    AuthFailed { host: String, addr: Option<SocketAddr>, user: String, tried: Vec<String> },

    /// The remote program does not exist on the node.
    #[error(
        "{program} not found on {host}: install gangway there or give its path on the nodes (the nodes must see it at the same path, e.g. on a shared filesystem)"
    )]
    ProgramNotFound { host: String, program: String },

    /// The remote program exists but cannot be executed.
    #[error(
        "{program} on {host} is not executable (exit 126); check its permissions for the remote user"
    )]
    NotExecutable { host: String, program: String },

    /// The connection broke after the command started.
    #[error("{host}{}: connection lost: {reason}", at(addr))]
    ConnectionLost { host: String, addr: Option<SocketAddr>, reason: String },

    /// Any other ssh failure, with what ssh said.
    #[error("{host}{}: ssh failed during {stage}: {message}", at(addr))]
    Ssh { host: String, addr: Option<SocketAddr>, stage: &'static str, message: String },

    /// A local process or thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// Writing to a command whose stdin is closed.
    #[error("the remote command's stdin is closed")]
    StdinClosed,

    /// The node's gangway agent could not be reached or refused to start the step.
    #[error("{host}{}: {reason}", at(addr))]
    Agent { host: String, addr: Option<SocketAddr>, reason: String },

    /// A bug or an impossible state in the bootstrap layer itself.
    #[error("internal bootstrap error: {reason}")]
    Internal { reason: String },
}

/// ` (10.0.0.2:22)` when the address is known.
fn at(addr: &Option<SocketAddr>) -> String {
    addr.map_or_else(String::new, |a| format!(" ({a})"))
}

fn port_flag(addr: &Option<SocketAddr>) -> String {
    match addr {
        Some(a) if a.port() != 22 => format!(" -p {}", a.port()),
        _ => String::new(),
    }
}

fn join_paths(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "the known_hosts files ssh reads".into();
    }
    files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl BootstrapError {
    /// The host the error is about, when it is about one.
    pub fn host(&self) -> Option<&str> {
        match self {
            BootstrapError::Unresolvable { host, .. }
            | BootstrapError::Refused { host, .. }
            | BootstrapError::Unreachable { host, .. }
            | BootstrapError::Timeout { host, .. }
            | BootstrapError::HostKeyUnknown { host, .. }
            | BootstrapError::HostKeyMismatch { host, .. }
            | BootstrapError::AuthFailed { host, .. }
            | BootstrapError::ProgramNotFound { host, .. }
            | BootstrapError::NotExecutable { host, .. }
            | BootstrapError::ConnectionLost { host, .. }
            | BootstrapError::Ssh { host, .. } => Some(host),
            _ => None,
        }
    }
}
