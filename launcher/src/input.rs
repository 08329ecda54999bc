//! Our standard input, forwarded to the ranks chosen with `--input`.

use std::io::IsTerminal;
use std::io::Read;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc::unbounded_channel;

/// Which ranks read the launcher's standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputMode {
    /// Every rank gets its own copy.
    All,
    /// No rank: all read from /dev/null.
    None,
    /// Only this rank (the default is rank 0, as in srun).
    Rank(u32),
}

/// An `--input` value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--input '{0}': expected 'all', 'none' or a rank number")]
pub struct InputModeError(String);

impl std::str::FromStr for InputMode {
    type Err = InputModeError;

    fn from_str(value: &str) -> Result<Self, InputModeError> {
        match value {
            "all" => Ok(InputMode::All),
            "none" => Ok(InputMode::None),
            n => n.parse().map(InputMode::Rank).map_err(|_| InputModeError(value.to_string())),
        }
    }
}

impl InputMode {
    /// Whether `rank` reads standard input.
    pub fn reaches(self, rank: u32) -> bool {
        match self {
            InputMode::All => true,
            InputMode::None => false,
            InputMode::Rank(r) => r == rank,
        }
    }
}

/// Whether one rank can be handed our stdin directly instead of through a pipe.
///
/// A terminal cannot be shared that way: ranks live in their own process groups, and a
/// background group that reads the terminal is stopped with SIGTTIN.
pub fn can_inherit_stdin(mode: InputMode) -> bool {
    matches!(mode, InputMode::Rank(_)) && !std::io::stdin().is_terminal()
}

/// Copies our stdin to the given rank pipes until end of file, then closes them.
///
/// The blocking read runs on a plain thread: a process exit ends it, and it never holds up
/// the runtime.
pub fn forward(mut targets: Vec<pipe::Sender>) {
    if targets.is_empty() {
        return;
    }
    let (tx, mut rx) = unbounded_channel::<Vec<u8>>();
    let reader = std::thread::Builder::new().name("gangway-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    if reader.is_err() {
        return;
    }
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            let mut still_reading = Vec::with_capacity(targets.len());
            for mut pipe in targets {
                // A rank that closed its stdin or exited just stops getting input.
                if pipe.write_all(&chunk).await.is_ok() {
                    still_reading.push(pipe);
                }
            }
            targets = still_reading;
            if targets.is_empty() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!("all".parse::<InputMode>().unwrap(), InputMode::All);
        assert_eq!("none".parse::<InputMode>().unwrap(), InputMode::None);
        assert_eq!("3".parse::<InputMode>().unwrap(), InputMode::Rank(3));
        assert!("x".parse::<InputMode>().unwrap_err().to_string().contains("'x'"));
        assert!(InputMode::Rank(2).reaches(2) && !InputMode::Rank(2).reaches(0));
    }
}
