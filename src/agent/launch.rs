//! The agent's step port: launchers ask it to start a step's proxy. The request line (with the
//! credential the controller sealed) comes in clear and is checked here; the agent answers `ok`
//! or `error <why>` in clear (nothing secret in either); then the link is encrypted with the key
//! derived from the credential, which only the step's launcher was given, and the checked
//! request goes to the agent's owner task with the link. See
//! `gangway_launcher::bootstrap::agent` for the launcher's side.

use std::time::Duration;

use gangway_launcher::bootstrap::agent::{LAUNCH_VERSION, LaunchRequest};
use gangway_link::{Opener, Sealer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;

use crate::auth::Key;
use crate::protocol::credential::StepCredential;

/// Longest request line (a credential lists every node of the step).
const REQUEST_MAX: usize = 64 * 1024;

/// A checked request on its encrypted link, for the owner task to run (or refuse, if it does
/// not know the job).
#[derive(Debug)]
pub struct StepLaunch {
    pub credential: StepCredential,
    pub node_id: u32,
    pub stream: TcpStream,
    pub sealer: Sealer,
    pub opener: Opener,
    /// When its link was set up: the start of the agent's share of the step's launch path.
    pub received: std::time::Instant,
}

/// Accepts launch requests for as long as the agent lives.
pub async fn serve(
    listener: TcpListener,
    key: Key,
    name: String,
    to_owner: UnboundedSender<StepLaunch>,
) {
    gangway_link::accept::serve(listener, "step port", move |stream| {
        let (key, name, tx) = (key.clone(), name.clone(), to_owner.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let checked = tokio::time::timeout(Duration::from_secs(10), check(stream, &key, &name));
            if let Ok(Some(launch)) = checked.await {
                let _ = tx.send(launch);
            }
        });
    })
    .await;
}

async fn check(mut stream: TcpStream, key: &Key, name: &str) -> Option<StepLaunch> {
    let line = gangway_link::tokio_io::read_preamble(&mut stream, REQUEST_MAX).await.ok()??;
    match verify(line.as_bytes(), key, name) {
        Ok((credential, node_id, sealed)) => {
            stream.write_all(b"ok\n").await.ok()?;
            let psk = key.step_psk(&sealed);
            match gangway_link::tokio_io::respond(&mut stream, &psk, line.as_bytes()).await {
                Ok((sealer, opener)) => Some(StepLaunch {
                    credential,
                    node_id,
                    stream,
                    sealer,
                    opener,
                    received: std::time::Instant::now(),
                }),
                Err(e) => {
                    // A credential seen on the wire, replayed without its key.
                    tracing::warn!(job = credential.job, error = %e, "step link refused");
                    None
                }
            }
        }
        Err(why) => {
            tracing::warn!(reason = %why, "step launch refused");
            let _ = stream.write_all(format!("error {why}\n").as_bytes()).await;
            None
        }
    }
}

/// Checks a launch request line: its version, the credential's MAC, and that it names us.
/// Returns the credential, the proxy's node id and the sealed credential (the link key's input).
fn verify(line: &[u8], key: &Key, name: &str) -> Result<(StepCredential, u32, String), String> {
    let request: LaunchRequest =
        serde_json::from_slice(line).map_err(|e| format!("malformed launch request: {e}"))?;
    if request.version != LAUNCH_VERSION {
        return Err(format!(
            "launch protocol {} but this agent speaks {LAUNCH_VERSION}; install the same gangway everywhere",
            request.version
        ));
    }
    let text = key.open("step", &request.credential).ok_or(
        "the step credential does not verify (forged, or signed with another cluster key)",
    )?;
    let credential = StepCredential::parse(text).ok_or("the step credential does not parse")?;
    match credential.nodes.get(request.node_id as usize) {
        Some((n, _)) if n == name => Ok((credential, request.node_id, request.credential)),
        _ => Err(format!("node id {} of this step is not {name}", request.node_id)),
    }
}
