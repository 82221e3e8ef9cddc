//! Friends' files seen from here: listings of one peer's folder or of every connected
//! peer's top level (paths prefixed with the peer's name), and reads of a remote file,
//! streamed to the HTTP API.

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::library::ListingChunk;
use super::Node;
use crate::net::peers::PeerConnection;
use crate::net::rpc::{self, Listing, RpcError};
use crate::wire::Entry;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("peer {0} is not connected")]
    NotConnected(String),
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// A remote file being read: its size and the bytes of the range asked for. A stream that
/// fails ends with an error, so a short body never passes for a whole file.
pub struct RemoteRead {
    pub size: u64,
    pub body: Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin>,
}

fn prefixed(peer: &str, entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|e| Entry {
            path: format!("{peer}/{}", e.path),
            ..e
        })
        .collect()
}

/// Forwards the rest of a listing; an error ends it with an error chunk.
async fn forward(
    peer: &str,
    listing: &mut Listing,
    tx: &mpsc::Sender<ListingChunk>,
) -> Result<(), RpcError> {
    while let Some(entries) = listing.next().await? {
        if tx.send(Ok(prefixed(peer, entries))).await.is_err() {
            break;
        }
    }
    Ok(())
}

impl Node {
    fn connected(&self, peer: &str) -> Result<std::sync::Arc<PeerConnection>, RemoteError> {
        self.peers
            .get(peer)
            .ok_or_else(|| RemoteError::NotConnected(peer.to_string()))
    }

    /// The top level (or, with `recursive`, everything matching `searchterm`) of every
    /// connected peer, one after the other; a peer that fails adds an error chunk and the
    /// others still list.
    pub fn everyones_listing(
        &self,
        searchterm: Option<String>,
        recursive: bool,
    ) -> mpsc::Receiver<ListingChunk> {
        let (tx, rx) = mpsc::channel::<ListingChunk>(2);
        let peers = self.peers.all();
        tokio::spawn(async move {
            for peer in peers {
                let result = async {
                    let mut listing =
                        rpc::ls(&peer.connection, "", searchterm.clone(), recursive).await?;
                    forward(&peer.name, &mut listing, &tx).await
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(format!("{}: {e}", peer.name))).await;
                }
            }
        });
        rx
    }

    /// One peer's folder. The first chunk arrives before this returns, so a bad path or an
    /// offline peer is an error here, before anything streams.
    pub async fn peer_listing(
        &self,
        peer: &str,
        path: &str,
        searchterm: Option<String>,
        recursive: bool,
    ) -> Result<mpsc::Receiver<ListingChunk>, RemoteError> {
        let connection = self.connected(peer)?;
        let mut listing = rpc::ls(&connection.connection, path, searchterm, recursive).await?;
        let first = listing.next().await?;
        let (tx, rx) = mpsc::channel::<ListingChunk>(2);
        let peer = peer.to_string();
        tokio::spawn(async move {
            let Some(first) = first else { return };
            if tx.send(Ok(prefixed(&peer, first))).await.is_err() {
                return;
            }
            if let Err(e) = forward(&peer, &mut listing, &tx).await {
                let _ = tx.send(Err(e.to_string())).await;
            }
        });
        Ok(rx)
    }

    /// Reads `path` on `peer` from `start` to `end` (or its end).
    pub async fn read_remote(
        &self,
        peer: &str,
        path: &str,
        start: u64,
        end: Option<u64>,
    ) -> Result<RemoteRead, RemoteError> {
        let connection = self.connected(peer)?;
        let (size, _mtime, recv) = rpc::read(&connection.connection, path, start, end).await?;
        let body = futures_util::stream::unfold(Some(recv), |recv| async move {
            let mut recv = recv?;
            match recv.read_chunk(1 << 20, true).await {
                Ok(Some(chunk)) => Some((Ok::<Bytes, std::io::Error>(chunk.bytes), Some(recv))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        });
        Ok(RemoteRead {
            size,
            body: Box::new(Box::pin(body)),
        })
    }
}
