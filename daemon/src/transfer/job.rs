//! One download as the scheduler sees it: counters, the files in flight, and the view of it
//! shown in `/api/transfers`. Updated under the `Downloads` lock, from records and from the
//! settled outcomes of its fetches.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portable_atomic::AtomicU64;
use tokio::task::AbortHandle;

use super::outcome::{self, Settled, DISK_FULL_RETRY};
use super::picker::verified_bytes;
use super::plan::{self, RateMeter};
use super::{ActiveFile, FailedFile, SourceView, TransferState, TransferView};
use crate::content::Hash;
use crate::store::{DownloadRecord, DownloadState, FileRecord, FileState};

const MAX_LISTED_FAILURES: usize = 50;

pub(super) struct FileProgress {
    pub(super) download: u64,
    pub(super) size: u64,
    /// Verified bytes plus bytes of pieces arriving: the progress shown.
    pub(super) received: AtomicU64,
    /// Verified bytes only: what the part file keeps if the fetch stops now.
    pub(super) verified: AtomicU64,
    pub(super) start: AtomicU64,
    /// Each source of this file and the verified bytes it delivered.
    pub(super) sources: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl FileProgress {
    pub(super) fn new(download: u64, size: u64) -> Self {
        Self {
            download,
            size,
            received: AtomicU64::new(0),
            verified: AtomicU64::new(0),
            start: AtomicU64::new(0),
            sources: Mutex::new(Vec::new()),
        }
    }

    /// Each source so far and the verified bytes it delivered.
    pub(super) fn sources(&self) -> Vec<(String, Arc<AtomicU64>)> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Where the peer a download names stands, for its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    Online,
    Offline,
    /// Not a known peer any more (forgotten).
    Unknown,
}

pub(super) struct InFlight {
    pub(super) progress: Arc<FileProgress>,
    pub(super) abort: AbortHandle,
}

pub(super) struct Job {
    pub(super) record: DownloadRecord,
    /// The folder the download was sent to (`download --to`); `None`: the download folder.
    pub(super) to: Option<PathBuf>,
    pub(super) size: u64,
    pub(super) done_bytes: u64,
    pub(super) files_total: u64,
    pub(super) files_done: u64,
    pub(super) failures: Vec<FailedFile>,
    /// Failed files that may work on `resume` (all of them, not only those listed).
    pub(super) retryable_failures: u64,
    pub(super) expanding: bool,
    /// Last path dispatched; the next scan for pending files starts after it.
    pub(super) cursor: Option<String>,
    pub(super) in_flight: HashMap<String, InFlight>,
    pub(super) hold_until: Option<Instant>,
    pub(super) disk_full: Option<String>,
    pub(super) error: Option<String>,
    pub(super) meter: RateMeter,
    /// Verified bytes each peer delivered for finished fetches of this download.
    pub(super) source_bytes: HashMap<String, u64>,
    /// Root hash of a single-file download, once known.
    pub(super) root: Option<Hash>,
    /// Verified bytes in the part files of unfinished files not being fetched right now.
    pub(super) held: HashMap<String, u64>,
}

impl Job {
    pub(super) fn new(record: DownloadRecord) -> Self {
        Job {
            record,
            to: None,
            size: 0,
            done_bytes: 0,
            files_total: 0,
            files_done: 0,
            failures: Vec::new(),
            retryable_failures: 0,
            expanding: false,
            cursor: None,
            in_flight: HashMap::new(),
            hold_until: None,
            disk_full: None,
            error: None,
            meter: RateMeter::default(),
            source_bytes: HashMap::new(),
            root: None,
            held: HashMap::new(),
        }
    }

    /// A job for a stored download and its file records.
    /// Where this download's `file` lands (`core::plan::placed_path`).
    pub(super) fn place(
        &self,
        download_dir: &std::path::Path,
        file: &str,
    ) -> Result<PathBuf, plan::UnsafePath> {
        plan::placed_path(
            download_dir,
            self.to.as_deref(),
            &self.record.peer,
            &self.record.path,
            file,
        )
    }

    pub(super) fn from_files(record: DownloadRecord, files: &[(String, FileRecord)]) -> Self {
        let mut job = Job::new(record);
        if let [(_, only)] = files {
            job.root = only.root;
        }
        for (path, file) in files {
            job.count_file(path, file);
        }
        if job.record.state == DownloadState::Failed && !job.record.expanded {
            // Only a refused listing fails a download before it is expanded.
            job.error = Some(format!(
                "{}/{}: the peer refused the path (not found or not shared)",
                job.record.peer, job.record.path
            ));
        }
        job
    }

    /// Counts the files again after an expansion added them.
    pub(super) fn recount(&mut self, files: &[(String, FileRecord)]) {
        let fresh = Job::from_files(self.record.clone(), files);
        self.size = fresh.size;
        self.files_total = fresh.files_total;
        self.files_done = fresh.files_done;
        self.done_bytes = fresh.done_bytes;
    }

    /// A fetch of `path` has ended: the bytes its sources delivered stay counted.
    pub(super) fn fetch_ended(&mut self, path: &str, progress: &FileProgress, record: &FileRecord) {
        self.in_flight.remove(path);
        for (peer, bytes) in progress.sources() {
            *self.source_bytes.entry(peer).or_default() += bytes.load(Ordering::Relaxed);
        }
        if self.files_total == 1 {
            self.root = record.root;
        }
    }

    /// Takes in how a fetch of `path` ended, `record` being its record as now settled.
    pub(super) fn settle(
        &mut self,
        path: &str,
        record: &FileRecord,
        settled: Settled,
        now: Instant,
    ) {
        let peer = &self.record.peer;
        match settled {
            Settled::Done => {
                self.files_done += 1;
                self.done_bytes += record.size;
                self.disk_full = None;
                self.error = None;
            }
            Settled::Restarted { old_size } => {
                tracing::info!("{peer}/{path} changed on the peer; restarting it");
                self.size = self.size - old_size + record.size;
            }
            Settled::WaitingForPeer(reason) => {
                self.error = Some(format!("{path}: {reason}; waiting for the peer"));
            }
            Settled::RetryIn { reason, seconds } => {
                tracing::warn!(
                    "{peer}/{path} failed (attempt {}): {reason}",
                    record.attempts
                );
                self.error = Some(format!("{path}: {reason}; retrying in {seconds} s"));
            }
            Settled::GaveUp(reason) => {
                tracing::warn!(
                    "{peer}/{path} failed (attempt {}): {reason}",
                    record.attempts
                );
                self.note_failure(path, reason, true);
            }
            Settled::Failed(reason) => {
                tracing::warn!("{peer}/{path} failed: {reason}");
                self.note_failure(path, reason, false);
            }
            Settled::DiskFull(reason) => {
                tracing::warn!("download paused, disk full: {reason}");
                self.disk_full = Some(format!("no space left on the download disk: {reason}"));
                self.hold_until = Some(now + DISK_FULL_RETRY);
            }
        }
        if record.state != FileState::Done {
            self.cursor = None;
        }
        if record.state == FileState::Pending {
            self.note_held(path, record);
        } else {
            self.held.remove(path);
        }
    }

    pub(super) fn count_file(&mut self, path: &str, file: &FileRecord) {
        self.files_total += 1;
        self.size += file.size;
        match file.state {
            FileState::Done => {
                self.files_done += 1;
                self.done_bytes += file.size;
            }
            FileState::Failed => self.note_failure(
                path,
                file.error.clone().unwrap_or_default(),
                outcome::heals(file),
            ),
            FileState::Pending => self.note_held(path, file),
        }
    }

    /// Remembers how much of an unfinished file is verified on disk (from its bitfield).
    pub(super) fn note_held(&mut self, path: &str, file: &FileRecord) {
        match &file.have {
            Some(have) if have.count() > 0 => {
                self.held
                    .insert(path.to_string(), verified_bytes(file.size, have));
            }
            _ => {
                self.held.remove(path);
            }
        }
    }

    pub(super) fn note_failure(&mut self, path: &str, reason: String, retryable: bool) {
        self.retryable_failures += retryable as u64;
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push(FailedFile {
                path: path.to_string(),
                reason,
                retryable,
            });
        }
    }

    /// Bytes of finished files, of unfinished ones held on disk, and of the files in flight
    /// as they arrive.
    pub(super) fn received(&self) -> u64 {
        self.counted(|f| f.received.load(Ordering::Relaxed))
    }

    /// Like `received`, but of the files in flight only their verified bytes.
    pub(super) fn verified_bytes(&self) -> u64 {
        self.counted(|f| f.verified.load(Ordering::Relaxed))
    }

    fn counted(&self, in_flight: impl Fn(&FileProgress) -> u64) -> u64 {
        let fetching: u64 = self
            .in_flight
            .values()
            .map(|f| in_flight(&f.progress))
            .sum();
        let parked: u64 = self
            .held
            .iter()
            .filter(|(p, _)| !self.in_flight.contains_key(*p))
            .map(|(_, b)| b)
            .sum();
        self.done_bytes + fetching + parked
    }

    pub(super) fn state(&self, peer: Presence) -> TransferState {
        match self.record.state {
            DownloadState::Done => TransferState::Done,
            DownloadState::Failed => TransferState::Failed,
            DownloadState::Paused => TransferState::Paused,
            DownloadState::Queued if self.disk_full.is_some() => TransferState::DiskFull,
            DownloadState::Queued if !self.in_flight.is_empty() => TransferState::Active,
            DownloadState::Queued if peer == Presence::Unknown => TransferState::PeerUnknown,
            DownloadState::Queued if peer == Presence::Offline => TransferState::Waiting,
            DownloadState::Queued => TransferState::Queued,
        }
    }

    /// Whether `resume` can help: a paused download, or a failed one with a file that gave
    /// up after transient failures. A refused path (not found) cannot heal.
    pub(super) fn resumable(&self) -> bool {
        match self.record.state {
            DownloadState::Paused => true,
            DownloadState::Failed => self.record.expanded && self.retryable_failures > 0,
            _ => false,
        }
    }

    pub(super) fn view(&self, id: u64, peer: Presence) -> TransferView {
        let received = self.received();
        let state = self.state(peer);
        let rate = self.meter.rate();
        TransferView {
            id,
            direction: "download",
            peer: self.record.peer.clone(),
            path: self.record.path.clone(),
            size: self.size,
            received,
            verified_bytes: self.verified_bytes(),
            state,
            waiting_for: (state == TransferState::Waiting).then(|| self.record.peer.clone()),
            resumable: self.resumable(),
            rate,
            eta_seconds: plan::eta_seconds(self.size.saturating_sub(received), rate),
            error: self.disk_full.clone().or_else(|| self.error.clone()),
            files_total: self.files_total,
            files_done: self.files_done,
            failures: self.failures.clone(),
            resumed_from: self
                .in_flight
                .values()
                .map(|f| f.progress.start.load(Ordering::Relaxed))
                .sum(),
            active_files: self
                .in_flight
                .iter()
                .map(|(path, f)| ActiveFile {
                    path: path.clone(),
                    size: f.progress.size,
                    received: f.progress.received.load(Ordering::Relaxed),
                })
                .collect(),
            // Every file is verified piece by piece and as a whole before it counts as done.
            verified: self.record.state == DownloadState::Done,
            hash: self
                .root
                .map(|r| r.iter().map(|b| format!("{b:02x}")).collect()),
            sources: self.sources(),
        }
    }

    pub(super) fn sources(&self) -> Vec<SourceView> {
        let mut bytes = self.source_bytes.clone();
        for f in self.in_flight.values() {
            for (peer, delivered) in f.progress.sources() {
                *bytes.entry(peer).or_default() += delivered.load(Ordering::Relaxed);
            }
        }
        let mut out: Vec<SourceView> = bytes
            .into_iter()
            .map(|(peer, bytes)| SourceView { peer, bytes })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    /// Stops every fetch; what each had verified stays counted (the part files keep it).
    pub(super) fn abort_all(&mut self) {
        for (path, f) in self.in_flight.drain() {
            f.abort.abort();
            self.held
                .insert(path, f.progress.verified.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Bitfield;
    use crate::content::PIECE_SIZE;

    fn job(files: &[(String, FileRecord)]) -> Job {
        let record = DownloadRecord {
            peer: "p".into(),
            path: "share/dir".into(),
            state: DownloadState::Queued,
            expanded: true,
            added_at: 0,
            priority: 0,
        };
        Job::from_files(record, files)
    }

    fn file(size: u64, state: FileState, pieces_held: &[u64]) -> FileRecord {
        let have = Bitfield::with_pieces(
            crate::content::piece_count(size),
            pieces_held.iter().copied(),
        );
        FileRecord {
            state,
            error: Some("no space".into()),
            have: Some(have),
            ..crate::store::FileRecord::pending(size, 1)
        }
    }

    #[test]
    fn stored_files_count_as_done_failed_or_verified_so_far() {
        let files = [
            ("a".to_string(), file(10, FileState::Done, &[])),
            (
                "b".to_string(),
                file(3 * PIECE_SIZE, FileState::Pending, &[0, 2]),
            ),
            ("c".to_string(), file(7, FileState::Failed, &[])),
        ];
        let job = job(&files);
        assert_eq!((job.files_total, job.files_done), (3, 1));
        assert_eq!(job.size, 17 + 3 * PIECE_SIZE);
        assert_eq!(job.received(), 10 + 2 * PIECE_SIZE);
        assert_eq!(job.failures.len(), 1);
        assert_eq!(job.root, None, "only a single-file download shows a root");
        assert_eq!(job.state(Presence::Online), TransferState::Queued);
    }

    #[test]
    fn a_full_disk_holds_the_download_and_a_finished_file_clears_it() {
        let files = [("a".to_string(), file(10, FileState::Pending, &[]))];
        let mut job = job(&files);
        job.cursor = Some("a".into());
        let now = Instant::now();
        job.settle(
            "a",
            &files[0].1,
            Settled::DiskFull("f: no space".into()),
            now,
        );
        assert_eq!(job.state(Presence::Online), TransferState::DiskFull);
        assert_eq!(job.hold_until, Some(now + DISK_FULL_RETRY));
        assert_eq!(job.cursor, None, "the file is looked at again");
        let done = FileRecord {
            state: FileState::Done,
            ..files[0].1.clone()
        };
        job.settle("a", &done, Settled::Done, now);
        assert_eq!((job.files_done, job.received()), (1, 10));
        assert_eq!(
            (job.disk_full.as_deref(), job.state(Presence::Online)),
            (None, TransferState::Queued)
        );
    }

    #[test]
    fn retries_and_failures_show_why_and_a_restart_corrects_the_size() {
        let files = [("a".to_string(), file(10, FileState::Pending, &[]))];
        let mut job = job(&files);
        let now = Instant::now();
        let retry = Settled::RetryIn {
            reason: "reset".into(),
            seconds: 20,
        };
        job.settle("a", &files[0].1, retry, now);
        assert_eq!(job.error.as_deref(), Some("a: reset; retrying in 20 s"));
        job.settle(
            "a",
            &files[0].1,
            Settled::WaitingForPeer("gone".into()),
            now,
        );
        assert_eq!(job.error.as_deref(), Some("a: gone; waiting for the peer"));
        let bigger = file(25, FileState::Pending, &[]);
        job.settle("a", &bigger, Settled::Restarted { old_size: 10 }, now);
        assert_eq!(job.size, 25);
        let failed = file(25, FileState::Failed, &[]);
        for _ in 0..MAX_LISTED_FAILURES + 5 {
            job.settle("a", &failed, Settled::Failed("not found".into()), now);
        }
        assert_eq!(
            job.failures.len(),
            MAX_LISTED_FAILURES,
            "the list is capped"
        );
        assert_eq!(job.failures[0].reason, "not found");
        assert!(!job.failures[0].retryable);
    }

    #[test]
    fn an_offline_peer_is_waited_for_and_only_healable_failures_resume() {
        let files = [("a".to_string(), file(10, FileState::Pending, &[]))];
        let mut job = job(&files);
        let view = job.view(1, Presence::Offline);
        assert_eq!(view.state, TransferState::Waiting);
        assert_eq!(view.waiting_for.as_deref(), Some("p"));
        let view = job.view(1, Presence::Unknown);
        assert_eq!(
            (view.state, view.waiting_for),
            (TransferState::PeerUnknown, None)
        );
        let now = Instant::now();
        let failed = file(10, FileState::Failed, &[]);
        job.settle("a", &failed, Settled::Failed("no such file".into()), now);
        job.record.state = DownloadState::Failed;
        assert!(
            !job.view(1, Presence::Online).resumable,
            "not found cannot heal"
        );
        job.settle("a", &failed, Settled::GaveUp("reset".into()), now);
        assert!(
            job.view(1, Presence::Online).resumable,
            "a give-up may heal"
        );
        job.record.state = DownloadState::Paused;
        assert!(job.resumable());
        // A download whose listing was refused, as loaded after a restart.
        let mut refused = job.record.clone();
        (refused.state, refused.expanded) = (DownloadState::Failed, false);
        let loaded = Job::from_files(refused, &[]);
        assert!(!loaded.resumable());
        assert!(loaded.error.unwrap().contains("refused the path"));
    }
}
