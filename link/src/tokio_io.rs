//! Links over tokio streams: the handshake, one message out, one message in, and the cleartext
//! preamble line a responder reads before it knows which key to use.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Handshake, LinkError, Opener, Psk, Sealer};

/// Runs the connecting side's handshake on `stream`.
pub async fn initiate<S>(
    stream: &mut S,
    psk: &Psk,
    prologue: &[u8],
) -> Result<(Sealer, Opener), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (h, first) = Handshake::initiator(psk, prologue)?;
    write_frame(stream, &first).await?;
    let reply = read_frame(stream).await?.ok_or(LinkError::Refused)?;
    h.complete(&reply)
}

/// Runs the accepting side's handshake on `stream`.
pub async fn respond<S>(
    stream: &mut S,
    psk: &Psk,
    prologue: &[u8],
) -> Result<(Sealer, Opener), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = read_frame(stream).await?.ok_or(LinkError::Refused)?;
    let (reply, s, o) = Handshake::respond(psk, prologue, &first)?;
    write_frame(stream, &reply).await?;
    Ok((s, o))
}

/// Sends one message.
pub async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    sealer: &mut Sealer,
    msg: &[u8],
) -> Result<(), LinkError> {
    let wire = sealer.seal(msg)?;
    w.write_all(&wire).await?;
    Ok(())
}

/// Receives one message; `None` when the peer closed the connection between messages.
pub async fn recv<R: AsyncRead + Unpin>(
    r: &mut R,
    opener: &mut Opener,
) -> Result<Option<Vec<u8>>, LinkError> {
    loop {
        let Some(frame) = read_frame(r).await? else {
            return if opener.in_message() { Err(LinkError::Truncated) } else { Ok(None) };
        };
        if let Some(msg) = opener.open(&frame)? {
            return Ok(Some(msg));
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), LinkError> {
    let mut wire = Vec::with_capacity(2 + frame.len());
    wire.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    wire.extend_from_slice(frame);
    w.write_all(&wire).await?;
    Ok(())
}

/// One frame, or `None` at a clean end of stream before it.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, LinkError> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut len[1..]).await.map_err(truncated)?;
    let mut frame = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut frame).await.map_err(truncated)?;
    Ok(Some(frame))
}

fn truncated(e: std::io::Error) -> LinkError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { LinkError::Truncated } else { e.into() }
}

/// Reads one `\n`-ended cleartext line of at most `max` bytes, a byte at a time so that nothing
/// after it is consumed. `None` at end of stream or when the line is too long.
pub async fn read_preamble<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() <= max {
        if r.read(&mut b).await? == 0 {
            return Ok(None);
        }
        if b[0] == b'\n' {
            return Ok(String::from_utf8(line).ok());
        }
        line.push(b[0]);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_link_over_a_socket_pair() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let k = Psk([5; 32]);
        let k2 = k.clone();
        let server = tokio::spawn(async move {
            let line = read_preamble(&mut b, 64).await.unwrap().unwrap();
            let (mut s, mut o) = respond(&mut b, &k2, line.as_bytes()).await.unwrap();
            let got = recv(&mut b, &mut o).await.unwrap().unwrap();
            send(&mut b, &mut s, &got).await.unwrap();
            assert!(recv(&mut b, &mut o).await.unwrap().is_none(), "clean end");
        });
        a.write_all(b"HELLO 1\n").await.unwrap();
        let (mut s, mut o) = initiate(&mut a, &k, b"HELLO 1").await.unwrap();
        let big = vec![42u8; 200_000];
        send(&mut a, &mut s, &big).await.unwrap();
        assert_eq!(recv(&mut a, &mut o).await.unwrap(), Some(big));
        drop(a);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_responder_with_another_key_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let r = respond(&mut b, &Psk([2; 32]), b"").await;
            assert!(matches!(r, Err(LinkError::WrongKey)), "{r:?}");
        });
        let r = initiate(&mut a, &Psk([1; 32]), b"").await;
        assert!(matches!(r, Err(LinkError::Refused)), "{r:?}");
        server.await.unwrap();
    }
}
