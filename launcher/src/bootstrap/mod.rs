//! Starting one command on one node: the `Bootstrap` trait, the host spec, the handle to a running
//! remote command, and the error kinds every transport maps its failures onto.
//!
//! Three transports, one file each, chosen once and passed as a value: [`ssh::Ssh2Bootstrap`]
//! (libssh2 in-process), [`openssh::OpenSshBootstrap`] (the system `ssh` binary) and
//! [`local::LocalBootstrap`] (plain spawn). Every transport runs its blocking work on its own OS
//! threads and hands results to async code through tokio channels, so a `current_thread` runtime
//! is never blocked once [`start_async`] is used.
//!
//! What the transports share lives in leaf modules they import directly: `transport` (the
//! trait), `host`, `remote` (the running command), `marker` (the wrapper's first line),
//! `quote`, `child` (local child processes), `wake` and `error`. This module only names them.

pub mod agent;
pub mod local;
pub mod openssh;
pub mod ssh;
pub mod ssh_config;

mod child;
mod error;
mod host;
mod marker;
mod quote;
mod remote;
mod transport;
mod wake;

pub use child::exit_of;
pub use error::{BootstrapError, HostKeyId};
pub use host::HostSpec;
pub use marker::parse_ssh_connection;
pub use quote::{remote_command_line, shell_quote};
pub use remote::{RemoteCommand, RemoteExit, RemoteStdin};
pub use transport::{Bootstrap, DEFAULT_CONNECT_TIMEOUT, start_async};
