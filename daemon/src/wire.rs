//! The async side of the wire protocol: reading and writing whole frames on any
//! `AsyncRead`/`AsyncWrite` (a QUIC stream, or a buffer in tests). Messages, limits and the
//! frame encoding are the pure core's (`harddrive_party_core::wire`), re-exported here.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use harddrive_party_core::wire::*;

/// Reads one frame. The length is checked before anything is allocated, so a hostile
/// length prefix costs nothing. A clean end of stream before a frame starts is `Eof`.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                FrameError::Eof
            } else {
                FrameError::Malformed("stream ended inside a length prefix".into())
            });
        }
        filled += n;
    }
    let mut payload = vec![0u8; payload_len(header, limit)?];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                FrameError::Malformed("stream ended inside a frame".into())
            }
            _ => FrameError::Io(e),
        })?;
    decode_payload(&payload)
}

pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &T,
    limit: usize,
) -> Result<(), FrameError> {
    let frame = encode_frame(message, limit)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let req = Request::Read {
            path: "Music/a.flac".into(),
            start: 5,
            end: Some(10),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req, MAX_REQUEST_FRAME)
            .await
            .unwrap();
        let mut reader = buf.as_slice();
        let back: Request = read_frame(&mut reader, MAX_REQUEST_FRAME).await.unwrap();
        assert_eq!(back, req);
        assert!(matches!(
            read_frame::<Request, _>(&mut reader, MAX_REQUEST_FRAME).await,
            Err(FrameError::Eof)
        ));
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_refused_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = read_frame::<Request, _>(&mut bytes.as_slice(), MAX_REQUEST_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_malformed() {
        let garbage = [0, 0, 0, 3, 0xee, 0xee, 0xee];
        assert!(matches!(
            read_frame::<Request, _>(&mut garbage.as_slice(), MAX_REQUEST_FRAME).await,
            Err(FrameError::Malformed(_))
        ));
        let truncated = [0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame::<Request, _>(&mut truncated.as_slice(), MAX_REQUEST_FRAME).await,
            Err(FrameError::Malformed(_))
        ));
        let half_prefix = [0, 0];
        assert!(matches!(
            read_frame::<Request, _>(&mut half_prefix.as_slice(), MAX_REQUEST_FRAME).await,
            Err(FrameError::Malformed(_))
        ));
    }
}
