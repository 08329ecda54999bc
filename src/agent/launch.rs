//! The agent's step port: launchers ask it to start a step's proxy, showing a credential the
//! controller signed; the request is checked here and handed to the agent's owner task.

use std::time::Duration;

use gangway_launcher::bootstrap::agent::{LAUNCH_VERSION, LaunchRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;

use crate::auth::Key;
use crate::controller::cluster::StepCredential;

/// A checked request, for the owner task to run (or refuse, if it does not know the job).
#[derive(Debug)]
pub struct StepLaunch {
    pub credential: StepCredential,
    pub node_id: u32,
    pub stream: TcpStream,
}

/// Accepts launch requests until the listener fails.
pub async fn serve(
    listener: TcpListener,
    key: Key,
    name: String,
    to_owner: UnboundedSender<StepLaunch>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (key, name, tx) = (key.clone(), name.clone(), to_owner.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Some(launch) = check(stream, &key, &name).await {
                let _ = tx.send(launch);
            }
        });
    }
}

async fn check(mut stream: TcpStream, key: &Key, name: &str) -> Option<StepLaunch> {
    // Byte by byte: nothing after the line may be consumed, it belongs to the proxy.
    let mut line = Vec::new();
    let read = async {
        let mut b = [0u8; 1];
        while line.len() < 64 * 1024 {
            if stream.read(&mut b).await.ok()? == 0 {
                return None;
            }
            if b[0] == b'\n' {
                return Some(());
            }
            line.push(b[0]);
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok()??;
    let outcome = verify(&line, key, name);
    match outcome {
        Ok((credential, node_id)) => Some(StepLaunch { credential, node_id, stream }),
        Err(why) => {
            tracing::warn!(reason = %why, "step launch refused");
            let _ = stream.write_all(format!("error {why}\n").as_bytes()).await;
            None
        }
    }
}

/// Checks a launch request line: its version, the credential's MAC, and that it names us.
fn verify(line: &[u8], key: &Key, name: &str) -> Result<(StepCredential, u32), String> {
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
        Some((n, _)) if n == name => Ok((credential, request.node_id)),
        _ => Err(format!("node id {} of this step is not {name}", request.node_id)),
    }
}
