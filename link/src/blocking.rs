//! Links over blocking streams (the `gangway` commands' connection to the controller).

use std::io::{Read, Write};

use crate::{Handshake, LinkError, Opener, Psk, Sealer};

/// Runs the connecting side's handshake on `stream`.
pub fn initiate<S: Read + Write>(
    stream: &mut S,
    psk: &Psk,
    prologue: &[u8],
) -> Result<(Sealer, Opener), LinkError> {
    let (h, first) = Handshake::initiator(psk, prologue)?;
    write_frame(stream, &first)?;
    let reply = read_frame(stream)?.ok_or(LinkError::Refused)?;
    h.complete(&reply)
}

/// Runs the accepting side's handshake on `stream`.
pub fn respond<S: Read + Write>(
    stream: &mut S,
    psk: &Psk,
    prologue: &[u8],
) -> Result<(Sealer, Opener), LinkError> {
    let first = read_frame(stream)?.ok_or(LinkError::Refused)?;
    let (reply, s, o) = Handshake::respond(psk, prologue, &first)?;
    write_frame(stream, &reply)?;
    Ok((s, o))
}

/// Sends one message.
pub fn send<W: Write>(w: &mut W, sealer: &mut Sealer, msg: &[u8]) -> Result<(), LinkError> {
    let wire = sealer.seal(msg)?;
    w.write_all(&wire)?;
    Ok(())
}

/// Receives one message; `None` when the peer closed the connection between messages.
pub fn recv<R: Read>(r: &mut R, opener: &mut Opener) -> Result<Option<Vec<u8>>, LinkError> {
    loop {
        let Some(frame) = read_frame(r)? else {
            return if opener.in_message() { Err(LinkError::Truncated) } else { Ok(None) };
        };
        if let Some(msg) = opener.open(&frame)? {
            return Ok(Some(msg));
        }
    }
}

fn write_frame<W: Write>(w: &mut W, frame: &[u8]) -> Result<(), LinkError> {
    let mut wire = Vec::with_capacity(2 + frame.len());
    wire.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    wire.extend_from_slice(frame);
    w.write_all(&wire)?;
    Ok(())
}

fn read_frame<R: Read>(r: &mut R) -> Result<Option<Vec<u8>>, LinkError> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut len[1..]).map_err(truncated)?;
    let mut frame = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut frame).map_err(truncated)?;
    Ok(Some(frame))
}

fn truncated(e: std::io::Error) -> LinkError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { LinkError::Truncated } else { e.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_and_async_sides_talk() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let k = Psk([8; 32]);
        let k2 = k.clone();
        let t = std::thread::spawn(move || {
            let mut b = b;
            let (mut s, mut o) = respond(&mut b, &k2, b"x").unwrap();
            let m = recv(&mut b, &mut o).unwrap().unwrap();
            send(&mut b, &mut s, &m).unwrap();
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            a.set_nonblocking(true).unwrap();
            let mut a = tokio::net::UnixStream::from_std(a).unwrap();
            let (mut s, mut o) = crate::tokio_io::initiate(&mut a, &k, b"x").await.unwrap();
            crate::tokio_io::send(&mut a, &mut s, b"ping").await.unwrap();
            assert_eq!(
                crate::tokio_io::recv(&mut a, &mut o).await.unwrap(),
                Some(b"ping".to_vec())
            );
        });
        t.join().unwrap();
    }
}
