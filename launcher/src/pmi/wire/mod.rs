//! The PMI wire formats: decoding PMI-1 lines and PMI-2 frames into [`Request`]s, and encoding
//! [`Reply`]s back into the exact bytes MPICH's clients expect.
//!
//! Pure: bytes in, values out. The server owns the sockets and feeds whatever each read returned
//! into one [`Decoder`] per connection.
//!
//! Error replies that the protocols leave open are our choice and are written down here:
//! an unknown PMI-1 command `X` is answered `cmd=X rc=-1 msg=unknown_command_X`, an unknown PMI-2
//! command `X` is answered `cmd=X-response;rc=-1;errmsg=unknown command X;`. Replies that exist
//! only in one protocol (e.g. `fullinit` in PMI-2, `initack` in PMI-1) are still encodable in the
//! other, using the same command name, so that [`encode`] is total.
//!
//! `message` holds the requests and replies both protocols share, `decode` reads client bytes
//! into requests, `encode` writes replies in either protocol.

mod decode;
mod encode;
mod message;

pub use decode::{Decoder, WireError};
pub use encode::encode;
pub use message::{
    Framed, KEYLEN_MAX, KVSNAME_MAX, PMI1_MAX_LINE, PMI2_HEADER_LEN, PMI2_MAX_FRAME, Protocol,
    Reply, Request, VALLEN_MAX,
};

#[cfg(test)]
mod tests;
