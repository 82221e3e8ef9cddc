//! Queueing a download. The peer must be one this node knows (remembered or connected) and
//! the path a plain path on it, checked with the same rule that later maps it to a local
//! file: a typo is an error at once, never a download that waits forever. A destination
//! (`download --to`) must be one of the folders configured here: the download folder or a
//! share's, never any path a browser or a peer names.

use std::path::{Path, PathBuf};

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
    #[error("{0} is not a folder configured here: a download goes to the download folder or a share's folder")]
    NotAFolderHere(String),
    #[error(transparent)]
    Download(#[from] DownloadError),
}

impl Node {
    /// Adds a download of `path` on `peer` at the end of the queue, sent to the folder `to`
    /// if given; its id.
    pub fn queue_download(
        &self,
        peer: &str,
        path: &str,
        to: Option<&Path>,
    ) -> Result<u64, QueueError> {
        if path.is_empty() {
            return Err(QueueError::NoPath);
        }
        local_path(Path::new("/"), peer, path)?;
        let to = to.map(|to| self.configured_folder(to)).transpose()?;
        let known = self.store.known_peer(peer).ok().flatten().is_some();
        if !known && self.peers.get(peer).is_none() {
            return Err(QueueError::UnknownPeer(peer.to_string()));
        }
        Ok(self.downloads.add(peer, path, to)?)
    }

    /// `to` as the folder it is (no symlink, no `..`) if it is the download folder or a
    /// share's; `None` (the download folder itself) keeps downloads in their usual place.
    fn configured_folder(&self, to: &Path) -> Result<PathBuf, QueueError> {
        let refused = || QueueError::NotAFolderHere(to.display().to_string());
        let asked = std::fs::canonicalize(to).map_err(|_| refused())?;
        std::iter::once(self.download_dir())
            .chain(self.library.shares.roots().into_values())
            .filter_map(|dir| std::fs::canonicalize(dir).ok())
            .find(|dir| *dir == asked)
            .ok_or_else(refused)
    }
}
