//! The cluster's shared secret and what is signed with it: per-connection message MACs for
//! agents, user and job tokens for TCP clients, and step credentials for agent launches.
//!
//! Everything is HMAC-SHA256 over explicit, unambiguous byte strings. Nothing depends on clocks:
//! replay on an agent connection is stopped by a per-direction counter bound to two fresh nonces.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Fewest bytes a key file must hold.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a key, a token or a signed message was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "cannot read the key file {}: {source}; create one with `gangway keygen {}` and copy it to every node",
        path.display(), path.display()
    )]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the key file {} holds {len} bytes; a key needs at least {MIN_KEY_BYTES} (make one with `gangway keygen`)",
        path.display()
    )]
    KeyTooShort { path: PathBuf, len: usize },
    #[error(
        "the key file {} may be read by other users (mode {mode:o}); run `chmod 600 {}`",
        path.display(), path.display()
    )]
    KeyFileOpen { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Bad(String),
}

/// The shared cluster key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Reads a key file: its bytes (surrounding white space trimmed) are the key. Refuses a file
    /// others may read.
    pub fn load(path: &Path) -> Result<Key, AuthError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |source| AuthError::KeyFile { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuthError::KeyFileOpen { path: path.to_owned(), mode });
        }
        let bytes = std::fs::read(path).map_err(err)?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(AuthError::KeyTooShort { path: path.to_owned(), len: trimmed.len() });
        }
        Ok(Key(trimmed.to_vec()))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(bytes.to_vec())
    }

    /// 32 random bytes as hex: the content of a new key file.
    pub fn generate_hex() -> String {
        hex(&random_bytes::<32>())
    }

    /// HMAC-SHA256 over the parts, each length-prefixed so no two lists of parts collide.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag_hex` is the MAC of the parts (constant time).
    pub fn verify(&self, parts: &[&[u8]], tag_hex: &str) -> bool {
        let Some(tag) = unhex(tag_hex) else { return false };
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        mac.verify_slice(&tag).is_ok()
    }

    /// A user's token for TCP clients: `u.<uid>.<mac>`.
    pub fn user_token(&self, uid: u32) -> String {
        format!("u.{uid}.{}", hex(&self.sign(&[b"user-token", uid.to_string().as_bytes()])))
    }

    /// A job's token, handed to its processes so `gangway run` inside it can reach the controller:
    /// `j.<job>.<mac>`.
    pub fn job_token(&self, job: u64) -> String {
        format!("j.{job}.{}", hex(&self.sign(&[b"job-token", job.to_string().as_bytes()])))
    }

    /// Checks a token; returns who it speaks for.
    pub fn check_token(&self, token: &str) -> Option<TokenSubject> {
        let mut it = token.trim().splitn(3, '.');
        let (kind, id, tag) = (it.next()?, it.next()?, it.next()?);
        match kind {
            "u" => {
                let uid: u32 = id.parse().ok()?;
                self.verify(&[b"user-token", id.as_bytes()], tag).then_some(TokenSubject::User(uid))
            }
            "j" => {
                let job: u64 = id.parse().ok()?;
                self.verify(&[b"job-token", id.as_bytes()], tag).then_some(TokenSubject::Job(job))
            }
            _ => None,
        }
    }

    /// Signs a step credential's text: `<text>|<mac>`.
    pub fn seal(&self, what: &str, text: &str) -> String {
        format!("{text}|{}", hex(&self.sign(&[what.as_bytes(), text.as_bytes()])))
    }

    /// The text of a sealed string, if its MAC is right.
    pub fn open<'a>(&self, what: &str, sealed: &'a str) -> Option<&'a str> {
        let (text, tag) = sealed.rsplit_once('|')?;
        self.verify(&[what.as_bytes(), text.as_bytes()], tag).then_some(text)
    }
}

/// Who a TCP client's token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSubject {
    User(u32),
    Job(u64),
}

/// MACs for one agent connection: each side's messages carry a counter that must grow by one,
/// bound to both sides' nonces, so nothing can be replayed, reordered or moved to another
/// connection.
#[derive(Debug)]
pub struct Session {
    key: Key,
    nonces: Vec<u8>,
    sent: u64,
    received: u64,
    /// `b"a"` on the agent's side, `b"c"` on the controller's: the direction of what we send.
    me: &'static [u8],
    peer: &'static [u8],
}

impl Session {
    /// The agent's side of a connection.
    pub fn agent(key: Key, agent_nonce: &str, controller_nonce: &str) -> Session {
        Session::new(key, agent_nonce, controller_nonce, b"a", b"c")
    }

    /// The controller's side of a connection.
    pub fn controller(key: Key, agent_nonce: &str, controller_nonce: &str) -> Session {
        Session::new(key, agent_nonce, controller_nonce, b"c", b"a")
    }

    fn new(
        key: Key,
        agent_nonce: &str,
        controller_nonce: &str,
        me: &'static [u8],
        peer: &'static [u8],
    ) -> Session {
        let nonces = format!("{agent_nonce}/{controller_nonce}").into_bytes();
        Session { key, nonces, sent: 0, received: 0, me, peer }
    }

    /// The line to send for a message body: `<counter> <mac> <body>`.
    pub fn seal(&mut self, body: &str) -> String {
        self.sent += 1;
        let n = self.sent.to_string();
        let tag = self.key.sign(&[&self.nonces, self.me, n.as_bytes(), body.as_bytes()]);
        format!("{n} {} {body}", hex(&tag))
    }

    /// The body of a received line, if its counter and MAC are right.
    pub fn open<'a>(&mut self, line: &'a str) -> Result<&'a str, AuthError> {
        let mut it = line.splitn(3, ' ');
        let (n, tag, body) = match (it.next(), it.next(), it.next()) {
            (Some(n), Some(t), Some(b)) => (n, t, b),
            _ => return Err(AuthError::Bad("a message without counter and MAC".into())),
        };
        let expected = self.received + 1;
        if n.parse::<u64>().ok() != Some(expected) {
            return Err(AuthError::Bad(format!(
                "message counter {n}, expected {expected} (replayed or reordered)"
            )));
        }
        if !self.key.verify(&[&self.nonces, self.peer, n.as_bytes(), body.as_bytes()], tag) {
            return Err(AuthError::Bad(
                "bad message authentication code: the two sides do not share the same key".into(),
            ));
        }
        self.received = expected;
        Ok(body)
    }
}

/// `N` bytes from the OS's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Without a random source nothing here is safe; the OS always has one on Linux.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (std::process::id() as u8);
        }
    }
    b
}

/// A fresh nonce (hex).
pub fn nonce() -> String {
    hex(&random_bytes::<16>())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_keys() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let other = Key::from_bytes(b"fedcba9876543210fedc");
        assert_eq!(k.check_token(&k.user_token(1000)), Some(TokenSubject::User(1000)));
        assert_eq!(k.check_token(&k.job_token(7)), Some(TokenSubject::Job(7)));
        assert_eq!(other.check_token(&k.user_token(1000)), None);
        let forged = k.user_token(1000).replace("u.1000.", "u.0.");
        assert_eq!(k.check_token(&forged), None);
        assert_eq!(k.check_token("garbage"), None);
    }

    #[test]
    fn sessions_refuse_replay_reorder_and_wrong_keys() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let mut a = Session::agent(k.clone(), "na", "nc");
        let mut c = Session::controller(k.clone(), "na", "nc");
        let m1 = a.seal("{\"x\":1}");
        let m2 = a.seal("{\"x\":2}");
        assert!(c.open(&m2).is_err(), "out of order");
        assert_eq!(c.open(&m1).expect("first"), "{\"x\":1}");
        assert!(c.open(&m1).is_err(), "replayed");
        assert_eq!(c.open(&m2).expect("second"), "{\"x\":2}");
        // A message the controller sent cannot be reflected back to it.
        let back = c.seal("{}");
        let mut c2 = Session::controller(k.clone(), "na", "nc");
        assert!(c2.open(&back).is_err());
        let mut wrong = Session::controller(Key::from_bytes(b"another key 123456"), "na", "nc");
        let mut a2 = Session::agent(k, "na", "nc");
        let err = wrong.open(&a2.seal("{}")).expect_err("wrong key");
        assert!(err.to_string().contains("same key"), "{err}");
    }

    #[test]
    fn sealed_text_is_checked() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let s = k.seal("step", "job=1;nodes=a");
        assert_eq!(k.open("step", &s), Some("job=1;nodes=a"));
        assert_eq!(k.open("other", &s), None);
        assert_eq!(k.open("step", &s.replace("nodes=a", "nodes=b")), None);
    }
}
