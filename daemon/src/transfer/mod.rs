//! Downloads (wishlist, scheduling, resume) and uploads (slots, streaming). The decisions
//! are pure and tested on their own: `plan`, `queue`, `outcome`, `picker`, `rate`; the
//! swarm runs over the `PieceSource` trait, so it is tested with in-memory sources.

pub mod buffers;
mod disk;
pub mod download;
#[cfg(test)]
mod fakes;
mod fetch;
mod job;
mod outcome;
pub use outcome::RetryPolicy;
mod part;
pub mod partials;
mod peer_source;
mod prefetch;
pub use harddrive_party_core::picker;
pub mod plan;
mod queue;
pub mod rate;
mod scheduler;
pub mod swarm;
pub mod upload;

use serde::Serialize;

/// Reads at `offset` until at least `want` bytes are in `buf`, which may be longer (direct
/// reads ask for whole blocks past the end of the file). A file that ends first gives
/// `UnexpectedEof`.
pub fn read_at_least(
    file: &std::fs::File,
    buf: &mut [u8],
    offset: u64,
    want: usize,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How often progress (bytes, rate, ETA) of active transfers goes out as events.
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Waiting for a slot.
    Queued,
    /// Download: the named peer is offline (`waiting_for` names it); it starts when the
    /// peer is back. Upload: no request of the peer in progress and part of the file sent;
    /// it may ask for more, or have the rest from other peers.
    Waiting,
    /// The named peer is no longer known here (forgotten): nothing can reach it.
    PeerUnknown,
    Active,
    Paused,
    /// Paused because the download disk is full; retried automatically.
    DiskFull,
    Done,
    Failed,
}

/// A file of a download that is being fetched right now.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFile {
    pub path: String,
    pub size: u64,
    pub received: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedFile {
    pub path: String,
    pub reason: String,
    /// Whether `resume` may help: false for refusals (not found, outside the shares).
    pub retryable: bool,
}

/// One row of `transfers`: a download request (file or whole directory) or an upload.
#[derive(Debug, Clone, Serialize)]
pub struct TransferView {
    pub id: u64,
    pub direction: &'static str,
    pub peer: String,
    pub path: String,
    pub size: u64,
    /// Bytes received (download) or sent (upload) so far, moving as they arrive; for a
    /// download this includes pieces still being checked (`verified_bytes` does not).
    pub received: u64,
    /// Download: bytes checked against their piece hashes. Upload: equal to `received`.
    pub verified_bytes: u64,
    pub state: TransferState,
    /// The offline peer a `waiting` download waits for.
    pub waiting_for: Option<String>,
    /// Whether `resume` can help: paused, or failed with a failure that may heal.
    pub resumable: bool,
    pub rate: u64,
    pub eta_seconds: Option<u64>,
    pub error: Option<String>,
    pub files_total: u64,
    pub files_done: u64,
    pub failures: Vec<FailedFile>,
    /// Offset the current read started from: shows how much a resume skipped.
    pub resumed_from: u64,
    pub active_files: Vec<ActiveFile>,
    /// Finished and checked against its root hash (every piece, then the whole file).
    pub verified: bool,
    /// Hex root hash of a single-file download, once known.
    pub hash: Option<String>,
    /// Verified bytes each peer contributed.
    pub sources: Vec<SourceView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    pub peer: String,
    pub bytes: u64,
}

impl TransferView {
    #[allow(clippy::too_many_arguments)]
    pub fn upload(
        id: u64,
        peer: &str,
        path: &str,
        size: u64,
        sent: u64,
        state: TransferState,
        error: Option<String>,
        rate: u64,
        start: u64,
    ) -> Self {
        Self {
            id,
            direction: "upload",
            peer: peer.to_string(),
            path: path.to_string(),
            size,
            received: sent,
            verified_bytes: sent,
            state,
            waiting_for: None,
            resumable: false,
            rate,
            eta_seconds: plan::eta_seconds(size.saturating_sub(sent), rate),
            error,
            files_total: 1,
            files_done: (state == TransferState::Done) as u64,
            failures: Vec::new(),
            resumed_from: start,
            active_files: Vec::new(),
            verified: false,
            hash: None,
            sources: Vec::new(),
        }
    }
}
