//! Encrypted, mutually authenticated message links over byte streams, and accept loops that
//! survive running out of file descriptors.
//!
//! Every gangway connection that crosses a network (agent ↔ controller, commands over TCP,
//! launcher ↔ agent step port, the proxies' call-back) runs the Noise protocol
//! `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (through the `snow` crate, not a cipher of our own):
//! both sides prove they know a 32-byte pre-shared key before anything else is read, each
//! connection gets fresh keys from an ephemeral Diffie-Hellman exchange (a stolen key does not
//! decrypt a recorded session), and every message is encrypted and authenticated, so nothing
//! can be read, forged, replayed, reordered or moved to another connection.
//!
//! Which key a connection uses is the caller's choice: the cluster key for agents, a key
//! derived from a user's token or a step credential, or a per-job random key for proxies. A
//! cleartext preamble (what the responder needs to pick the key, e.g. `USER 1000`) is bound into
//! the handshake as its prologue, so tampering with it breaks the handshake.
//!
//! The core ([`Handshake`], [`Sealer`], [`Opener`]) is sans-IO; [`tokio_io`] and [`blocking`]
//! drive it over async and blocking streams.

pub mod accept;
pub mod blocking;
pub mod tokio_io;

use std::sync::Arc;

use snow::{HandshakeState, StatelessTransportState};

/// The Noise protocol every link runs.
pub const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Largest Noise message (ciphertext) on the wire; each travels behind a 2-byte length.
const MAX_FRAME: usize = 65535;
/// AEAD tag per frame.
const TAG: usize = 16;
/// Plaintext bytes per frame: one flag byte (more frames follow or not) and the chunk.
const CHUNK: usize = MAX_FRAME - TAG - 1;

/// The default bound on one received message (larger ones end the link).
pub const DEFAULT_MESSAGE_LIMIT: usize = 16 << 20;

/// A 32-byte pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(pub [u8; 32]);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(..)")
    }
}

impl Psk {
    /// 32 fresh random bytes (a per-job key).
    pub fn random() -> Psk {
        let mut b = [0u8; 32];
        // Linux always has a random source; without one, refuse to make a guessable key.
        getrandom::fill(&mut b).unwrap_or_else(|e| panic!("no random source: {e}"));
        Psk(b)
    }

    /// Lower-case hex (how a key travels on a command line or a start line).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Psk> {
        let s = s.trim();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, x) in out.iter_mut().enumerate() {
            *x = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Psk(out))
    }
}

/// Why a link could not be set up or broke.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the peer could not prove it holds the same key (a wrong key file, an expired token or credential, or not a gangway peer)"
    )]
    WrongKey,
    #[error(
        "the peer closed the connection during the secure handshake (it refused our key, or is not a gangway peer)"
    )]
    Refused,
    #[error("the secure handshake failed: {0}")]
    Handshake(String),
    #[error("a message of {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("a message failed authentication (corrupted, forged or replayed)")]
    Corrupt,
    #[error("the connection closed in the middle of a message")]
    Truncated,
    #[error("the connection broke: {0}")]
    Io(#[from] std::io::Error),
}

fn params() -> snow::params::NoiseParams {
    // The pattern string is a constant the crate knows; parsing it cannot fail.
    PATTERN.parse().unwrap_or_else(|e| panic!("{PATTERN}: {e}"))
}

/// One side of a handshake in progress (two messages: initiator → responder → initiator).
#[derive(Debug)]
pub struct Handshake {
    state: HandshakeState,
}

impl Handshake {
    /// The connecting side: returns the handshake and its first message (to send).
    pub fn initiator(psk: &Psk, prologue: &[u8]) -> Result<(Handshake, Vec<u8>), LinkError> {
        let state = snow::Builder::new(params())
            .prologue(prologue)
            .and_then(|b| b.psk(0, &psk.0))
            .and_then(|b| b.build_initiator())
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        let mut h = Handshake { state };
        let first = h.write()?;
        Ok((h, first))
    }

    /// The accepting side, given the initiator's first message: returns the reply to send and
    /// the finished link.
    pub fn respond(
        psk: &Psk,
        prologue: &[u8],
        first: &[u8],
    ) -> Result<(Vec<u8>, Sealer, Opener), LinkError> {
        let state = snow::Builder::new(params())
            .prologue(prologue)
            .and_then(|b| b.psk(0, &psk.0))
            .and_then(|b| b.build_responder())
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        let mut h = Handshake { state };
        h.read(first)?;
        let reply = h.write()?;
        let (s, o) = h.finish()?;
        Ok((reply, s, o))
    }

    /// The initiator, given the responder's reply: the finished link.
    pub fn complete(mut self, reply: &[u8]) -> Result<(Sealer, Opener), LinkError> {
        self.read(reply)?;
        self.finish()
    }

    fn write(&mut self) -> Result<Vec<u8>, LinkError> {
        let mut buf = vec![0u8; 256];
        let n = self
            .state
            .write_message(&[], &mut buf)
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn read(&mut self, msg: &[u8]) -> Result<(), LinkError> {
        let mut buf = vec![0u8; MAX_FRAME];
        self.state.read_message(msg, &mut buf).map(|_| ()).map_err(|e| match e {
            snow::Error::Decrypt => LinkError::WrongKey,
            other => LinkError::Handshake(other.to_string()),
        })
    }

    fn finish(self) -> Result<(Sealer, Opener), LinkError> {
        let t = self
            .state
            .into_stateless_transport_mode()
            .map_err(|e| LinkError::Handshake(e.to_string()))?;
        let t = Arc::new(t);
        Ok((
            Sealer { state: Arc::clone(&t), nonce: 0 },
            Opener { state: t, nonce: 0, limit: DEFAULT_MESSAGE_LIMIT, partial: Vec::new() },
        ))
    }
}

/// The sending half of a link: turns messages into wire bytes.
#[derive(Debug)]
pub struct Sealer {
    state: Arc<StatelessTransportState>,
    nonce: u64,
}

impl Sealer {
    /// The wire bytes of one message: one or more frames, each `[u16 length][ciphertext]`.
    pub fn seal(&mut self, msg: &[u8]) -> Result<Vec<u8>, LinkError> {
        let chunks: Vec<&[u8]> =
            if msg.is_empty() { vec![&[][..]] } else { msg.chunks(CHUNK).collect() };
        let mut wire = Vec::with_capacity(msg.len() + chunks.len() * (2 + TAG + 1));
        let mut plain = Vec::with_capacity(CHUNK + 1);
        let mut cipher = vec![0u8; MAX_FRAME];
        for (i, chunk) in chunks.iter().enumerate() {
            plain.clear();
            plain.push(u8::from(i + 1 < chunks.len()));
            plain.extend_from_slice(chunk);
            let n = self
                .state
                .write_message(self.nonce, &plain, &mut cipher)
                .map_err(|e| LinkError::Handshake(e.to_string()))?;
            self.nonce += 1;
            wire.extend_from_slice(&(n as u16).to_be_bytes());
            wire.extend_from_slice(&cipher[..n]);
        }
        Ok(wire)
    }
}

/// The receiving half of a link: turns frames back into messages.
#[derive(Debug)]
pub struct Opener {
    state: Arc<StatelessTransportState>,
    nonce: u64,
    limit: usize,
    partial: Vec<u8>,
}

impl Opener {
    /// Bounds one message's size (default [`DEFAULT_MESSAGE_LIMIT`]).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Takes one frame's ciphertext; returns a message once its last frame has arrived.
    pub fn open(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, LinkError> {
        let mut plain = vec![0u8; frame.len()];
        let n = self
            .state
            .read_message(self.nonce, frame, &mut plain)
            .map_err(|_| LinkError::Corrupt)?;
        self.nonce += 1;
        let Some((&more, chunk)) = plain[..n].split_first() else {
            return Err(LinkError::Corrupt);
        };
        if self.partial.len() + chunk.len() > self.limit {
            return Err(LinkError::TooLarge {
                len: self.partial.len() + chunk.len(),
                limit: self.limit,
            });
        }
        self.partial.extend_from_slice(chunk);
        Ok((more == 0).then(|| std::mem::take(&mut self.partial)))
    }

    /// Whether a message is half received (EOF now would cut it).
    pub fn in_message(&self) -> bool {
        !self.partial.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ends = ((Sealer, Opener), (Sealer, Opener));

    fn pair(a: &Psk, b: &Psk, pa: &[u8], pb: &[u8]) -> Result<Ends, LinkError> {
        let (h, first) = Handshake::initiator(a, pa)?;
        let (reply, rs, ro) = Handshake::respond(b, pb, &first)?;
        let (is, io) = h.complete(&reply)?;
        Ok(((is, io), (rs, ro)))
    }

    fn frames(wire: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = wire;
        while rest.len() >= 2 {
            let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            out.push(&rest[2..2 + n]);
            rest = &rest[2 + n..];
        }
        out
    }

    fn deliver(o: &mut Opener, wire: &[u8]) -> Result<Option<Vec<u8>>, LinkError> {
        let mut got = None;
        for f in frames(wire) {
            got = o.open(f)?;
        }
        Ok(got)
    }

    #[test]
    fn messages_of_every_size_round_trip_both_ways() {
        let k = Psk([7; 32]);
        let ((mut is, mut io), (mut rs, mut ro)) = pair(&k, &k, b"p", b"p").unwrap();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(deliver(&mut ro, &is.seal(&msg).unwrap()).unwrap(), Some(msg.clone()));
            assert_eq!(deliver(&mut io, &rs.seal(&msg).unwrap()).unwrap(), Some(msg));
        }
    }

    #[test]
    fn a_wrong_key_or_prologue_fails_the_handshake() {
        let err = pair(&Psk([1; 32]), &Psk([2; 32]), b"p", b"p").expect_err("wrong key");
        assert!(matches!(err, LinkError::WrongKey), "{err}");
        let err = pair(&Psk([1; 32]), &Psk([1; 32]), b"USER 1", b"USER 0").expect_err("prologue");
        assert!(matches!(err, LinkError::WrongKey), "{err}");
    }

    #[test]
    fn replayed_reordered_or_altered_frames_are_refused() {
        let k = Psk([3; 32]);
        let ((mut is, _), (_, mut ro)) = pair(&k, &k, b"", b"").unwrap();
        let m1 = is.seal(b"one").unwrap();
        let m2 = is.seal(b"two").unwrap();
        assert!(deliver(&mut ro, &m2).is_err(), "out of order");
        let ((mut is, _), (_, mut ro)) = pair(&k, &k, b"", b"").unwrap();
        let m1b = is.seal(b"one").unwrap();
        assert_eq!(deliver(&mut ro, &m1b).unwrap(), Some(b"one".to_vec()));
        assert!(deliver(&mut ro, &m1b).is_err(), "replayed");
        let ((mut is, _), (_, mut ro)) = pair(&k, &k, b"", b"").unwrap();
        let mut bad = is.seal(b"one").unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(deliver(&mut ro, &bad).is_err(), "altered");
        // Frames of another connection (same key) do not open here either.
        let ((_, _), (_, mut ro2)) = pair(&k, &k, b"", b"").unwrap();
        assert!(deliver(&mut ro2, &m1).is_err(), "moved to another connection");
    }

    #[test]
    fn the_ciphertext_does_not_contain_the_message() {
        let k = Psk([9; 32]);
        let ((mut is, _), _) = pair(&k, &k, b"", b"").unwrap();
        let secret = b"GANGWAY_SECRET=hunter2 hunter2 hunter2";
        let wire = is.seal(secret).unwrap();
        assert!(!wire.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn oversized_messages_are_refused_before_they_are_buffered() {
        let k = Psk([4; 32]);
        let ((mut is, _), (_, mut ro)) = pair(&k, &k, b"", b"").unwrap();
        ro.set_limit(1000);
        let err = deliver(&mut ro, &is.seal(&vec![0u8; 5000]).unwrap()).expect_err("too large");
        assert!(matches!(err, LinkError::TooLarge { limit: 1000, .. }), "{err}");
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let k = Psk::random();
        assert_eq!(Psk::from_hex(&k.to_hex()), Some(k));
        assert_eq!(Psk::from_hex("zz"), None);
    }
}
