//! Queueing a download. The peer must be one this node knows (remembered or connected) and
//! the path a plain path on it, checked with the same rule that later maps it to a local
//! file: a typo is an error at once, never a download that waits forever.

use std::path::Path;

use super::Node;
use crate::transfer::download::DownloadError;
use harddrive_party_core::plan::{local_path, UnsafePath};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("give a path on the peer: peer/path")]
    NoPath,
    #[error(transparent)]
    UnsafePath(#[from] UnsafePath),
    #[error("no peer named {0} is known here: connect to it first (`peers` lists the known ones)")]
    UnknownPeer(String),
    #[error(transparent)]
    Download(#[from] DownloadError),
}

impl Node {
    /// Adds a download of `path` on `peer` at the end of the queue; its id.
    pub fn queue_download(&self, peer: &str, path: &str) -> Result<u64, QueueError> {
        if path.is_empty() {
            return Err(QueueError::NoPath);
        }
        local_path(Path::new("/"), peer, path)?;
        let known = self.store.known_peer(peer).ok().flatten().is_some();
        if !known && self.peers.get(peer).is_none() {
            return Err(QueueError::UnknownPeer(peer.to_string()));
        }
        Ok(self.downloads.add(peer, path)?)
    }
}
