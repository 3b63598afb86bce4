//! Kafka framing: a 4-byte big-endian size, then the request. Reading does no
//! decoding; it only bounds sizes, so a frame claiming 2 GiB is refused before a
//! byte of it is buffered, and memory grows only with bytes actually received.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame size {0} is invalid (limit {1})")]
    BadSize(i64, u64),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame body. `Closed` if the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<Bytes, FrameError> {
    let n = read_size(r, max).await?;
    read_body(r, n).await
}

/// Reads and checks a frame's size prefix.
pub async fn read_size<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<usize, FrameError> {
    let mut size = [0u8; 4];
    match r.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let n = i32::from_be_bytes(size);
    // The smallest request header (api key, version, correlation id) is 8 bytes.
    if n < 8 || n as u64 > max {
        return Err(FrameError::BadSize(n as i64, max));
    }
    Ok(n as usize)
}

/// Reads a frame body of `n` bytes, growing the buffer only as bytes arrive.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::with_capacity(n.min(64 * 1024));
    while buf.len() < n {
        if buf.capacity() == buf.len() {
            buf.reserve((n - buf.len()).min(1 << 20));
        }
        let got = (&mut *r)
            .take((n - buf.len()) as u64)
            .read_buf(&mut buf)
            .await?;
        if got == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_and_eof() {
        let mut ok: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(read_frame(&mut ok, 100).await.unwrap().len(), 8);
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 1 << 20).await,
            Err(FrameError::BadSize(..))
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 1 << 20).await,
            Err(FrameError::BadSize(..))
        ));
        let mut short: &[u8] = &[0, 0, 0, 20, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 100).await,
            Err(FrameError::Io(_))
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 100).await,
            Err(FrameError::Closed)
        ));
    }
}
