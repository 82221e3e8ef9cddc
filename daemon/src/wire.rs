//! The async side of the wire protocol: reading and writing whole frames on any
//! `AsyncRead`/`AsyncWrite` (a QUIC stream, or a buffer in tests). Messages, limits and the
//! frame encoding are the pure core's (`harddrive_party_core::wire`), re-exported here.

use std::future::Future;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use harddrive_party_core::wire::*;

/// The answering half of a request stream, as the serving side (`node/server.rs`,
/// `transfer/upload.rs`) uses it: a QUIC send stream in the daemon, a `tokio::io::duplex`
/// pipe in the unit tests ([`tests::PipeReply`]).
pub trait ReplyStream: AsyncWrite + Unpin + Send {
    /// Writes `bytes` whole (QUIC takes them without a copy).
    fn write_chunk(&mut self, bytes: Bytes) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Ends the answer: the requester reads the end of the stream after the last byte.
    fn finish(&mut self);
    /// Abandons the answer: the requester sees the stream reset with `code`, never a cut
    /// answer that looks whole.
    fn reset(&mut self, code: u32);
    /// Resolves once the requester will read no more: it stopped the stream, or it has
    /// acknowledged everything after [`ReplyStream::finish`].
    fn stopped(&mut self) -> impl Future<Output = ()> + Send;
}

/// The asking half of a request stream, as the serving side reads it.
pub trait RequestStream: AsyncRead + Unpin + Send {
    /// Tells the requester nothing more is read from it, with `code`.
    fn stop(&mut self, code: u32);
}

impl ReplyStream for quinn::SendStream {
    async fn write_chunk(&mut self, bytes: Bytes) -> std::io::Result<()> {
        quinn::SendStream::write_chunk(self, bytes)
            .await
            .map_err(Into::into)
    }

    fn finish(&mut self) {
        // Already finished or reset: nothing more to end.
        let _ = quinn::SendStream::finish(self);
    }

    fn reset(&mut self, code: u32) {
        let _ = quinn::SendStream::reset(self, code.into());
    }

    async fn stopped(&mut self) {
        let _ = quinn::SendStream::stopped(self).await;
    }
}

impl RequestStream for quinn::RecvStream {
    fn stop(&mut self, code: u32) {
        let _ = quinn::RecvStream::stop(self, code.into());
    }
}

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
pub(crate) mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// How an answer on a [`PipeReply`] ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Ended {
        Finished,
        Reset(u32),
    }

    /// A [`ReplyStream`] over one end of a `tokio::io::duplex` pipe: the test reads the
    /// answer from the other end, and `ended` tells whether it was finished or reset.
    pub(crate) struct PipeReply {
        pub pipe: tokio::io::DuplexStream,
        pub ended: Option<Ended>,
    }

    impl PipeReply {
        /// The reply end, and the end the test reads from; `room` bytes fit in the pipe.
        pub(crate) fn new(room: usize) -> (Self, tokio::io::DuplexStream) {
            let (pipe, requester) = tokio::io::duplex(room);
            (Self { pipe, ended: None }, requester)
        }
    }

    impl AsyncWrite for PipeReply {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.pipe).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.pipe).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.pipe).poll_shutdown(cx)
        }
    }

    impl ReplyStream for PipeReply {
        async fn write_chunk(&mut self, bytes: Bytes) -> std::io::Result<()> {
            self.pipe.write_all(&bytes).await
        }

        fn finish(&mut self) {
            self.ended.get_or_insert(Ended::Finished);
        }

        fn reset(&mut self, code: u32) {
            self.ended.get_or_insert(Ended::Reset(code));
        }

        async fn stopped(&mut self) {
            // The requester in these tests reads everything it is sent.
            if self.ended.is_none() {
                std::future::pending::<()>().await;
            }
        }
    }

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
