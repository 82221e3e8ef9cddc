//! Client side of the wire protocol over one QUIC connection: one bidirectional stream per request.

use crate::content::{piece_count, Bitfield, Hash, PieceList};
use crate::wire::{
    read_frame, write_frame, AnnounceReply, Entry, FrameError, LsChunk, ReadHeader, Request,
    WireError, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};
use crate::wire::{HashChunk, HashesHeader, HaveReply};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("peer refused: {0}")]
    Refused(WireError),
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    #[error("bad reply from peer: {0}")]
    Protocol(#[from] FrameError),
    #[error("peer sent bad content: {0}")]
    BadContent(String),
}

impl RpcError {
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, RpcError::ConnectionLost(_))
    }
}

fn lost(e: impl std::fmt::Display) -> RpcError {
    RpcError::ConnectionLost(e.to_string())
}

async fn send_request(
    conn: &quinn::Connection,
    request: &Request,
) -> Result<quinn::RecvStream, RpcError> {
    let (mut send, recv) = conn.open_bi().await.map_err(lost)?;
    write_frame(&mut send, request, MAX_REQUEST_FRAME)
        .await
        .map_err(|e| match e {
            FrameError::Io(io) => lost(io),
            other => RpcError::Protocol(other),
        })?;
    send.finish().map_err(lost)?;
    Ok(recv)
}

/// Maps a failed frame read to a connection loss when the connection itself is gone.
fn frame_failure(conn: &quinn::Connection, e: FrameError) -> RpcError {
    match conn.close_reason() {
        Some(reason) => lost(reason),
        None => RpcError::Protocol(e),
    }
}

/// An `Ls` answer being received chunk by chunk (a listing is never held whole).
pub struct Listing {
    conn: quinn::Connection,
    recv: quinn::RecvStream,
}

impl Listing {
    /// The next chunk, or None once the peer has finished the listing.
    pub async fn next(&mut self) -> Result<Option<Vec<Entry>>, RpcError> {
        match read_frame::<LsChunk, _>(&mut self.recv, MAX_RESPONSE_FRAME).await {
            Ok(LsChunk::Entries(entries)) => Ok(Some(entries)),
            Ok(LsChunk::Error(e)) => Err(RpcError::Refused(e)),
            Err(FrameError::Eof) => Ok(None),
            Err(e) => Err(frame_failure(&self.conn, e)),
        }
    }
}

pub async fn ls(
    conn: &quinn::Connection,
    path: &str,
    searchterm: Option<String>,
    recursive: bool,
) -> Result<Listing, RpcError> {
    let request = Request::Ls {
        path: path.to_string(),
        searchterm,
        recursive,
    };
    let recv = send_request(conn, &request).await?;
    Ok(Listing {
        conn: conn.clone(),
        recv,
    })
}

/// Sends `Read` and returns the header's size and mtime with the stream positioned at the body.
pub async fn read(
    conn: &quinn::Connection,
    path: &str,
    start: u64,
    end: Option<u64>,
) -> Result<(u64, u64, quinn::RecvStream), RpcError> {
    let request = Request::Read {
        path: path.to_string(),
        start,
        end,
    };
    read_body(conn, &request).await
}

/// Sends `ReadPieces` to a peer still downloading the content; answered like `read`.
pub async fn read_pieces(
    conn: &quinn::Connection,
    root: Hash,
    pieces: std::ops::Range<u64>,
) -> Result<(u64, u64, quinn::RecvStream), RpcError> {
    let request = Request::ReadPieces {
        root,
        first: pieces.start,
        end: pieces.end,
    };
    read_body(conn, &request).await
}

async fn read_body(
    conn: &quinn::Connection,
    request: &Request,
) -> Result<(u64, u64, quinn::RecvStream), RpcError> {
    let mut recv = send_request(conn, request).await?;
    match read_frame::<ReadHeader, _>(&mut recv, MAX_RESPONSE_FRAME).await {
        Ok(ReadHeader::Ok { size, mtime }) => Ok((size, mtime, recv)),
        Ok(ReadHeader::Error(e)) => Err(RpcError::Refused(e)),
        Err(e) => Err(frame_failure(conn, e)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHashes {
    pub size: u64,
    pub mtime: u64,
    pub root: Hash,
    pub pieces: Vec<Hash>,
}

/// Fetches a file's piece list and accepts it only if it matches its root hash. A peer
/// sending more hashes than the announced size allows is cut off as soon as it does.
pub async fn hashes(conn: &quinn::Connection, path: &str) -> Result<ContentHashes, RpcError> {
    let mut recv = send_request(
        conn,
        &Request::Hashes {
            path: path.to_string(),
        },
    )
    .await?;
    let (size, mtime, root) =
        match read_frame::<HashesHeader, _>(&mut recv, MAX_RESPONSE_FRAME).await {
            Ok(HashesHeader::Ok { size, mtime, root }) => (size, mtime, root),
            Ok(HashesHeader::Error(e)) => return Err(RpcError::Refused(e)),
            Err(e) => return Err(frame_failure(conn, e)),
        };
    let mut list = match PieceList::new(size, root) {
        Ok(list) => list,
        Err(e) => {
            let _ = recv.stop(0u32.into());
            return Err(RpcError::BadContent(e.to_string()));
        }
    };
    loop {
        match read_frame::<HashChunk, _>(&mut recv, MAX_RESPONSE_FRAME).await {
            Ok(HashChunk(chunk)) => {
                if let Err(e) = list.extend(chunk) {
                    let _ = recv.stop(0u32.into());
                    return Err(RpcError::BadContent(e.to_string()));
                }
            }
            Err(FrameError::Eof) => break,
            Err(e) => return Err(frame_failure(conn, e)),
        }
    }
    let pieces = list
        .finish()
        .map_err(|e| RpcError::BadContent(e.to_string()))?;
    Ok(ContentHashes {
        size,
        mtime,
        root,
        pieces,
    })
}

/// What a peer holds of some content, from its `Have` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// A complete shared file, readable by path.
    Complete { path: String, size: u64 },
    /// A file it is still downloading: the pieces it holds verified, readable by root.
    Partial { size: u64, pieces: Bitfield },
}

impl Holding {
    pub fn size(&self) -> u64 {
        match self {
            Holding::Complete { size, .. } | Holding::Partial { size, .. } => *size,
        }
    }
}

/// Asks a peer what it holds of `root`. A bitfield that does not fit the size it claims is
/// bad content.
pub async fn have(conn: &quinn::Connection, root: Hash) -> Result<Option<Holding>, RpcError> {
    let mut recv = send_request(conn, &Request::Have { root }).await?;
    match read_frame::<HaveReply, _>(&mut recv, MAX_RESPONSE_FRAME).await {
        Ok(HaveReply::Found { path, size }) => Ok(Some(Holding::Complete { path, size })),
        Ok(HaveReply::NotFound) => Ok(None),
        Ok(HaveReply::Partial { size, pieces }) => Bitfield::from_bytes(piece_count(size), pieces)
            .map(|pieces| Some(Holding::Partial { size, pieces }))
            .map_err(|e| RpcError::BadContent(e.to_string())),
        Ok(HaveReply::Refused(e)) => Err(RpcError::Refused(e)),
        Err(e) => Err(frame_failure(conn, e)),
    }
}

/// Pushes `Hashed` to a peer; nothing comes back (a peer built before the message resets
/// the stream, which is as good).
pub async fn hashed(conn: &quinn::Connection) {
    let _ = send_request(conn, &Request::Hashed).await;
}

pub async fn announce(conn: &quinn::Connection, announce_address: String) -> Result<(), RpcError> {
    let mut recv = send_request(conn, &Request::AnnouncePeer { announce_address }).await?;
    match read_frame::<AnnounceReply, _>(&mut recv, MAX_RESPONSE_FRAME).await {
        Ok(AnnounceReply::Ok) => Ok(()),
        Ok(AnnounceReply::Error(e)) => Err(RpcError::Refused(e)),
        Err(e) => Err(frame_failure(conn, e)),
    }
}

/// Asks `conn`'s peer to pass our `announce_address` to its connected peer `target`.
pub async fn introduce(
    conn: &quinn::Connection,
    target: String,
    announce_address: String,
) -> Result<(), RpcError> {
    let request = Request::Introduce {
        target,
        announce_address,
    };
    let mut recv = send_request(conn, &request).await?;
    match read_frame::<AnnounceReply, _>(&mut recv, MAX_RESPONSE_FRAME).await {
        Ok(AnnounceReply::Ok) => Ok(()),
        Ok(AnnounceReply::Error(e)) => Err(RpcError::Refused(e)),
        Err(e) => Err(frame_failure(conn, e)),
    }
}
