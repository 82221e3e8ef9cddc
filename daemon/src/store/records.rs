//! The records the database keeps, bincode-encoded: index entries (packed by hand, 17
//! bytes), downloads and their files, web UI sessions, content hashes.

use serde::{Deserialize, Serialize};

/// What the share index keeps per path: no hashes, so indexing never reads file contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexValue {
    pub size: u64,
    pub mtime: u64,
    pub is_dir: bool,
}

impl IndexValue {
    pub fn pack(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..16].copy_from_slice(&self.mtime.to_le_bytes());
        out[16] = self.is_dir as u8;
        out
    }

    pub fn unpack(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 17] = bytes.try_into().ok()?;
        Some(Self {
            size: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            mtime: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            is_dir: bytes[16] != 0,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadState {
    Queued,
    Paused,
    Done,
    /// Every remaining file failed permanently; details are on the files.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRecord {
    pub peer: String,
    pub path: String,
    pub state: DownloadState,
    /// The remote listing has been stored as file records.
    pub expanded: bool,
    pub added_at: u64,
    /// Queue position: lower goes first; the user can reorder.
    pub priority: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    Pending,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Size and mtime the remote reported; a change restarts the file instead of appending.
    pub size: u64,
    pub mtime: u64,
    pub state: FileState,
    pub attempts: u32,
    pub error: Option<String>,
    /// Unix seconds before which a failed file is not retried.
    pub retry_at: u64,
    /// Root hash of the content being fetched, once the piece list is known and verified.
    pub root: Option<[u8; 32]>,
    /// Pieces of that content already verified in the `.part` file.
    pub have: Option<crate::content::Bitfield>,
}

impl FileRecord {
    /// A file just listed by the peer: pending, never tried.
    pub fn pending(size: u64, mtime: u64) -> Self {
        Self {
            size,
            mtime,
            state: FileState::Pending,
            attempts: 0,
            error: None,
            retry_at: 0,
            root: None,
            have: None,
        }
    }
}

/// A web UI session's times, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiSession {
    pub created: u64,
    pub last_used: u64,
}

/// Cached content hashes of one shared file, valid while size, mtime and inode match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashRecord {
    pub size: u64,
    pub mtime: u64,
    pub inode: u64,
    pub root: [u8; 32],
    pub pieces: Vec<[u8; 32]>,
}
