//! The local transport: the same [`Bootstrap`] contract for this machine, by a plain spawn (the
//! single-node path, and tests that cannot bring up a virtual cluster).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use super::child;
use super::error::BootstrapError;
use super::host::HostSpec;
use super::remote::{RemoteCommand, Started};
use super::transport::{Bootstrap, check_argv};

/// Starts commands on this machine; the host spec is only used as a label.
#[derive(Debug, Clone, Default)]
pub struct LocalBootstrap {
    /// Address reported as `local_addr`/`peer_addr` (a proxy started here calls back on it).
    pub callback_ip: Option<IpAddr>,
}

impl Bootstrap for LocalBootstrap {
    fn start(&self, target: &HostSpec, argv: &[String]) -> Result<RemoteCommand, BootstrapError> {
        let program = check_argv(argv)?;
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..]);
        let running = child::spawn(cmd, program, false).map_err(|e| match e {
            BootstrapError::Spawn { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                BootstrapError::ProgramNotFound {
                    host: target.host.clone(),
                    program: program.to_string(),
                }
            }
            BootstrapError::Spawn { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                BootstrapError::NotExecutable {
                    host: target.host.clone(),
                    program: program.to_string(),
                }
            }
            other => other,
        })?;
        let ip = self.callback_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let terminate = running.terminator();
        Ok(running.receivers.into_command(Started {
            host: target.host.clone(),
            program: program.to_string(),
            local_addr: SocketAddr::new(ip, 0),
            peer_addr: SocketAddr::new(ip, 0),
            stdin: running.stdin,
            terminate,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{RemoteExit, start_async};
    use std::sync::Arc;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_and_exit() {
        rt().block_on(async {
            let b: Arc<dyn Bootstrap> = Arc::new(LocalBootstrap::default());
            let mut c = start_async(
                b,
                HostSpec::new("localhost"),
                argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            )
            .await
            .expect("start");
            let mut out = Vec::new();
            while let Some(chunk) = c.stdout.recv().await {
                out.extend(chunk);
            }
            let mut err = Vec::new();
            while let Some(chunk) = c.stderr.recv().await {
                err.extend(chunk);
            }
            assert_eq!(out, b"out\n");
            assert_eq!(err, b"err\n");
            assert_eq!(c.wait().await, RemoteExit::Code(3));
            assert_eq!(c.finish().await.expect("finish"), RemoteExit::Code(3));
        });
    }

    #[test]
    fn stdin_then_eof() {
        rt().block_on(async {
            let mut c = LocalBootstrap::default()
                .start(&HostSpec::new("localhost"), &argv(&["cat"]))
                .expect("start");
            let stdin = c.stdin.take().expect("stdin");
            stdin.write(b"hello ".to_vec()).expect("write");
            stdin.write(b"world".to_vec()).expect("write");
            stdin.close();
            let mut out = Vec::new();
            while let Some(chunk) = c.stdout.recv().await {
                out.extend(chunk);
            }
            assert_eq!(out, b"hello world");
            assert!(c.wait().await.success());
        });
    }

    #[test]
    fn terminate_kills_the_group() {
        rt().block_on(async {
            let mut c = LocalBootstrap::default()
                .start(&HostSpec::new("localhost"), &argv(&["sleep", "30"]))
                .expect("start");
            c.terminate();
            let exit = tokio::time::timeout(Duration::from_secs(5), c.wait()).await.expect("ends");
            assert_eq!(exit, RemoteExit::Signal("TERM".into()));
            c.terminate(); // after the reap: must not signal anything
        });
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = LocalBootstrap::default()
            .start(&HostSpec::new("here"), &argv(&["/no/such/gangway"]))
            .expect_err("missing");
        assert!(matches!(err, BootstrapError::ProgramNotFound { .. }));
        assert_eq!(err.to_string().split(':').next(), Some("/no/such/gangway not found on here"));
    }
}
