//! Peers as swarm sources: the `PieceSource` adapter over a QUIC connection (`Read` to a
//! peer holding the whole file, `ReadPieces` to one still downloading it), and asking peers
//! with `Have` which of them hold the content, and which pieces of it.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::picker::SourceId;
use super::swarm::{PieceSource, RunBody, Swarm};
use crate::content::{Bitfield, Hash};
use crate::net::peers::{PeerConnection, PeerTable};
use crate::net::rpc::{self, Holding, RpcError};
use crate::wire::RESET_FILE_CHANGED;
use harddrive_party_core::peer_policy::CLOSE_UNRESPONSIVE;

/// How long a peer gets to answer "do you have this content?".
const HAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a peer still downloading the file is asked which pieces it holds now: one
/// small request per partial source per interval, for as long as the fetch runs.
const AVAILABILITY_INTERVAL: Duration = Duration::from_secs(3);

/// One peer the file can come from.
#[derive(Clone)]
pub struct PeerSource {
    pub peer: String,
    pub connection: quinn::Connection,
    /// The file's path on a peer holding it whole (read with `Read`); `None` for a peer
    /// still downloading it (read by root with `ReadPieces`).
    pub path: Option<String>,
    pub root: Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerSourceError {
    #[error(transparent)]
    Request(#[from] RpcError),
    #[error("{what} changed on {peer} during the transfer")]
    Changed { what: String, peer: String },
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
}

/// The body of one `Read` or `ReadPieces` answer.
pub struct PeerBody {
    recv: quinn::RecvStream,
    what: String,
    peer: String,
}

impl PieceSource for PeerSource {
    type Error = PeerSourceError;
    type Body = PeerBody;

    fn peer(&self) -> &str {
        &self.peer
    }

    fn describe(&self) -> &str {
        self.path.as_deref().unwrap_or("the partial file")
    }

    async fn open_run(
        &self,
        pieces: Range<u64>,
        bytes: Range<u64>,
    ) -> Result<(u64, PeerBody), PeerSourceError> {
        let (size, _mtime, recv) = match &self.path {
            Some(path) => rpc::read(&self.connection, path, bytes.start, Some(bytes.end)).await,
            None => rpc::read_pieces(&self.connection, self.root, pieces).await,
        }?;
        let body = PeerBody {
            recv,
            what: self.describe().to_string(),
            peer: self.peer.clone(),
        };
        Ok((size, body))
    }
}

impl RunBody for PeerBody {
    type Error = PeerSourceError;

    async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, PeerSourceError> {
        match self.recv.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(quinn::ReadError::Reset(code))
                if code.into_inner() == u64::from(RESET_FILE_CHANGED) =>
            {
                Err(PeerSourceError::Changed {
                    what: self.what.clone(),
                    peer: self.peer.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Connected peers other than `named` holding content with this root and size: extra
/// sources for the swarm, each with the pieces it holds if it is still downloading the file
/// itself. Sorted by peer name.
pub async fn other_holders(
    peers: &PeerTable,
    named: &str,
    root: Hash,
    size: u64,
) -> Vec<(PeerSource, Option<Bitfield>)> {
    let mut asks = JoinSet::new();
    for other in peers.all().into_iter().filter(|p| p.name != named) {
        asks.spawn(holder(other, root, size));
    }
    let mut sources = Vec::new();
    while let Some(found) = asks.join_next().await {
        if let Ok(Some(source)) = found {
            sources.push(source);
        }
    }
    sources.sort_by(|(a, _), (b, _)| a.peer.cmp(&b.peer));
    sources
}

/// Asks `other` for the content: a source if it holds it whole or in part at this size.
pub async fn holder(
    other: Arc<PeerConnection>,
    root: Hash,
    size: u64,
) -> Option<(PeerSource, Option<Bitfield>)> {
    let found = tokio::time::timeout(HAVE_TIMEOUT, rpc::have(&other.connection, root)).await;
    let (path, pieces) = match found {
        Ok(Ok(Some(holding))) if holding.size() == size => match holding {
            Holding::Complete { path, .. } => (Some(path), None),
            Holding::Partial { pieces, .. } => (None, Some(pieces)),
        },
        _ => return None,
    };
    let source = PeerSource {
        peer: other.name.clone(),
        connection: other.connection.clone(),
        path,
        root,
    };
    Some((source, pieces))
}

/// Whether the peer of `connection` is gone: closed, or silent to a `Have` for
/// `HAVE_TIMEOUT`. A peer that vanished without a word (power cut, `kill -9`) stays
/// connected until the idle timeout (60 s) while its source stalls at 30 s; it is closed
/// here, so the file waits for the peer instead of spending a try, and the reconnect policy
/// takes over.
pub async fn gone(connection: &quinn::Connection, root: Hash) -> bool {
    if connection.close_reason().is_some() {
        return true;
    }
    match tokio::time::timeout(HAVE_TIMEOUT, rpc::have(connection, root)).await {
        Ok(Err(e)) => e.is_connection_loss(),
        Ok(Ok(_)) => false,
        Err(_) => {
            connection.close(CLOSE_UNRESPONSIVE.into(), b"unresponsive");
            true
        }
    }
}

/// Asks a partial source of a fetch which pieces it holds, every `AVAILABILITY_INTERVAL`,
/// until it is no longer at work. Answers other than a bitfield for the same size leave its
/// availability as it was: a source that can no longer serve is dropped when its next read
/// is refused.
pub async fn refresh_availability(swarm: Arc<Swarm>, id: SourceId, connection: quinn::Connection) {
    loop {
        tokio::time::sleep(AVAILABILITY_INTERVAL).await;
        if !swarm.is_partial_and_active(id) {
            return;
        }
        let answer = tokio::time::timeout(HAVE_TIMEOUT, rpc::have(&connection, swarm.root)).await;
        if let Ok(Ok(Some(Holding::Partial { size, pieces }))) = answer {
            if size == swarm.size {
                swarm.set_available(id, pieces);
            }
        }
    }
}
