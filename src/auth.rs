//! The cluster's shared secret and what is derived from it: the pre-shared keys of the encrypted
//! links (agents, users' tokens, step launches), users' tokens with their expiry, and the
//! step credentials agents check before starting a proxy.
//!
//! Everything is HMAC-SHA256 over explicit, length-prefixed byte strings. The links themselves
//! (handshake, encryption, replay protection) are `gangway_link`'s; this module only picks keys.

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

    /// A pre-shared key for one kind of link, derived from the cluster key: HMAC-SHA256 over
    /// `"psk"`, the label and the parts. The leading `"psk"` keeps every derived key apart from
    /// every MAC [`Key::sign`] makes for the same label and text (a step credential's MAC travels
    /// in clear; the key derived from that credential must not be that MAC).
    pub fn psk(&self, label: &str, parts: &[&[u8]]) -> gangway_link::Psk {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
        all.push(b"psk");
        all.push(label.as_bytes());
        all.extend_from_slice(parts);
        gangway_link::Psk(self.sign(&all))
    }

    /// A user's token for commands over TCP, valid until `expiry` (Unix seconds).
    pub fn user_token(&self, uid: u32, expiry: u64) -> UserToken {
        UserToken { uid, expiry, psk: self.user_psk(uid, expiry) }
    }

    /// The key a TCP command with `USER <uid> <expiry>` must hold.
    pub fn user_psk(&self, uid: u32, expiry: u64) -> gangway_link::Psk {
        self.psk("user-token", &[uid.to_string().as_bytes(), expiry.to_string().as_bytes()])
    }

    /// The key of a step's launch links (launcher ↔ agent step port), from its sealed
    /// credential: the controller hands it to the step's launcher, agents derive it.
    pub fn step_psk(&self, sealed_credential: &str) -> gangway_link::Psk {
        self.psk("step", &[sealed_credential.as_bytes()])
    }

    /// The key of agent links (`AGENT <node>` and `VOUCH <node>` connections).
    pub fn agent_psk(&self) -> gangway_link::Psk {
        self.psk("agent-link", &[])
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

/// A user's token: who it speaks for, until when, and the key it holds. Printed by
/// `gangway token` as `u1.<uid>.<expiry>.<key hex>`; a command over TCP sends only
/// `USER <uid> <expiry>` and proves it holds the key in the handshake, so the token itself never
/// crosses the network.
#[derive(Clone, PartialEq, Eq)]
pub struct UserToken {
    pub uid: u32,
    /// Unix seconds; the controller refuses the token from then on.
    pub expiry: u64,
    pub psk: gangway_link::Psk,
}

impl std::fmt::Debug for UserToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserToken(uid {}, expiry {}, ..)", self.uid, self.expiry)
    }
}

impl std::fmt::Display for UserToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "u1.{}.{}.{}", self.uid, self.expiry, self.psk.to_hex())
    }
}

impl std::str::FromStr for UserToken {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<UserToken, AuthError> {
        let bad = || {
            AuthError::Bad(
                "this is not a gangway token (expected u1.UID.EXPIRY.KEY, as `gangway token` prints it)"
                    .into(),
            )
        };
        let mut it = s.trim().split('.');
        let (Some("u1"), Some(uid), Some(expiry), Some(key), None) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        Ok(UserToken {
            uid: uid.parse().map_err(|_| bad())?,
            expiry: expiry.parse().map_err(|_| bad())?,
            psk: gangway_link::Psk::from_hex(key).ok_or_else(bad)?,
        })
    }
}

impl UserToken {
    /// Whether it has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expiry
    }
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Unix time as people read it (UTC, RFC 3339).
pub fn show_time(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
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
    fn tokens_round_trip_and_hold_a_key_bound_to_uid_expiry_and_cluster_key() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let other = Key::from_bytes(b"fedcba9876543210fedc");
        let t = k.user_token(1000, 1_900_000_000);
        let parsed: UserToken = t.to_string().parse().expect("round trip");
        assert_eq!(parsed, t);
        assert_eq!(parsed.psk, k.user_psk(1000, 1_900_000_000));
        // Another uid, another expiry or another cluster key: another key, so a token edited to
        // say uid 0 or a later expiry fails the handshake.
        assert_ne!(k.user_psk(0, 1_900_000_000), t.psk);
        assert_ne!(k.user_psk(1000, 1_900_000_001), t.psk);
        assert_ne!(other.user_psk(1000, 1_900_000_000), t.psk);
        for bad in ["garbage", "u.1000.abc", "u1.1000.5", "u1.x.5.00", "u1.1.2.zz", ""] {
            let err = bad.parse::<UserToken>().expect_err(bad);
            assert!(err.to_string().contains("gangway token"), "{err}");
        }
        assert!(!format!("{t:?}").contains(&t.psk.to_hex()), "Debug hides the key");
    }

    #[test]
    fn tokens_expire() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let t = k.user_token(7, 1000);
        assert!(!t.expired(999));
        assert!(t.expired(1000));
        assert!(t.expired(5000));
    }

    #[test]
    fn derived_keys_are_apart_from_each_other_and_from_macs() {
        let k = Key::from_bytes(b"0123456789abcdef0123");
        let sealed = k.seal("step", "v1;job=1");
        let mac = sealed.rsplit_once('|').expect("sealed").1;
        // The credential's MAC crosses the network in clear; its link key must not be it.
        assert_ne!(k.step_psk(&sealed).to_hex(), mac);
        assert_ne!(k.step_psk(&sealed).to_hex(), hex(&k.sign(&[b"step", sealed.as_bytes()])));
        assert_ne!(k.step_psk(&sealed), k.step_psk(&k.seal("step", "v1;job=2")));
        assert_ne!(k.agent_psk(), k.psk("agent-link", &[b""]));
        assert_ne!(k.agent_psk(), Key::from_bytes(b"another key 123456").agent_psk());
        // Deterministic: both ends derive the same key.
        assert_eq!(k.agent_psk(), Key::from_bytes(b"0123456789abcdef0123").agent_psk());
        assert_ne!(k.psk("a", &[b"bc"]), k.psk("ab", &[b"c"]), "parts are length-prefixed");
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
