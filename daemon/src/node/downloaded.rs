//! The local library: files this node finished downloading, wherever they were saved
//! (`store/library.rs`). Only a path recorded there is ever served or deleted, and only
//! while it is still the regular file it was, reached without a symlink.

use std::path::PathBuf;

use super::Node;
use crate::store::{LibraryEntry, StoreError};
use crate::transfer::download::free_space;

/// Entries per page of `/api/library`: a phone shows one page; a large library is paged.
pub const LIBRARY_PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("not a downloaded file recorded here")]
    NotRecorded,
    #[error("{0} is gone or is no longer a plain file")]
    Gone(String),
    #[error("cannot delete {0}: {1}")]
    Delete(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of the library and the room left where downloads go.
pub struct LibraryPage {
    pub entries: Vec<LibraryEntry>,
    pub total: u64,
    pub free: Option<u64>,
}

impl Node {
    /// The library's entries from `offset` on, at most [`LIBRARY_PAGE`].
    pub fn library_page(&self, offset: usize) -> Result<LibraryPage, LibraryError> {
        let (entries, total) = self.store.library(offset, LIBRARY_PAGE)?;
        Ok(LibraryPage {
            entries,
            total,
            free: free_space(&self.download_dir()),
        })
    }

    /// The file at `path` if it is recorded and still a regular file whose path holds no
    /// symlink (it was recorded without one, so a link planted since changes its form).
    pub fn library_file(&self, path: &str) -> Result<PathBuf, LibraryError> {
        self.store
            .library_entry(path)?
            .ok_or(LibraryError::NotRecorded)?;
        let gone = || LibraryError::Gone(path.to_string());
        let meta = std::fs::symlink_metadata(path).map_err(|_| gone())?;
        let unlinked = std::fs::canonicalize(path).is_ok_and(|c| c.as_os_str() == path);
        if !meta.is_file() || !unlinked {
            return Err(gone());
        }
        Ok(PathBuf::from(path))
    }

    /// Deletes a recorded file and its record; a file already gone only loses its record.
    pub fn delete_downloaded(&self, path: &str) -> Result<(), LibraryError> {
        match self.library_file(path) {
            Ok(file) => std::fs::remove_file(&file)
                .map_err(|e| LibraryError::Delete(path.to_string(), e))?,
            Err(LibraryError::Gone(_)) => {}
            Err(e) => return Err(e),
        }
        self.store.remove_from_library(path)?;
        tracing::info!("deleted downloaded file {path}");
        Ok(())
    }
}
