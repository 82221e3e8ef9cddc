//! Serving `Read` and `ReadPieces` requests: upload slots (total and per peer) with a FIFO
//! queue behind them, the file streamed from a blocking reader thread so the async side never
//! copies twice.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use portable_atomic::AtomicU64;
use tokio::sync::{mpsc, Semaphore};

use super::buffers::{PooledBuf, BUFFERS};
use super::plan::RateMeter;
use super::rate::{Direction, RateLimiter};
use super::{TransferState, TransferView};
use crate::content::{hash_piece, Hash, PIECE_SIZE};
use crate::events::{Event, EventSender};
use crate::wire::{
    write_frame, ReadHeader, ReplyStream, WireError, MAX_RESPONSE_FRAME, RESET_FILE_CHANGED,
    RESET_IO_ERROR,
};

const READ_CHUNK: usize = PIECE_SIZE as usize;
const KEEP_FINISHED: usize = 100;

/// Upload slots: `Read`s served at once, in total and per peer; more wait in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadLimits {
    pub total: usize,
    pub per_peer: usize,
}

/// An upload whose peer takes no bytes for this long is cancelled and its slot freed: a peer
/// that opens `Read`s and never grants flow-control credit keeps its connection alive through
/// ACKs, so nothing else would ever end them.
pub const UPLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream reset code of an upload cancelled by `UPLOAD_STALL_TIMEOUT` (PROTOCOL.md §6.8).
const RESET_STALLED: u32 = 5;

/// More slots than this would only queue on the disk and the rate limits instead.
pub const MAX_UPLOAD_SLOTS: usize = 1024;

impl UploadLimits {
    fn clamped(self) -> Self {
        Self {
            total: self.total.clamp(1, MAX_UPLOAD_SLOTS),
            per_peer: self.per_peer.clamp(1, MAX_UPLOAD_SLOTS),
        }
    }
}

/// Changes a semaphore's capacity from `from` to `to` permits. Growing adds permits at once.
/// Shrinking takes free permits away now and the rest as uploads holding them finish: tokio's
/// semaphore is fair, so requests queued behind the shrink wait until it is complete.
fn resize(slots: &Arc<Semaphore>, from: usize, to: usize) {
    if to >= from {
        slots.add_permits(to - from);
        return;
    }
    let surplus = from - to;
    let rest = surplus - slots.forget_permits(surplus);
    if rest > 0 {
        let slots = slots.clone();
        tokio::spawn(async move {
            // `rest` is below MAX_UPLOAD_SLOTS, so it fits.
            if let Ok(permits) = slots.acquire_many_owned(rest as u32).await {
                permits.forget();
            }
        });
    }
}

/// One file sent to one peer: every `Read`/`ReadPieces` run of it adds to the same row, so
/// the row's bytes mean what the downloader's `received` means for that file, and it is
/// `done` only once the whole file went out (not when one run of it did).
struct Upload {
    id: u64,
    peer: String,
    /// The peer connection (`quinn::Connection::stable_id`) every run of the row came on.
    connection: usize,
    path: String,
    /// Start of the first range served.
    start: u64,
    /// The file's size as last served.
    size: AtomicU64,
    sent: AtomicU64,
    runs: Mutex<Runs>,
    meter: Mutex<RateMeter>,
}

/// The requests of one row in progress, and how the last one ended.
#[derive(Default)]
struct Runs {
    queued: u32,
    active: u32,
    error: Option<String>,
}

pub struct Uploads {
    rate: Arc<RateLimiter>,
    total_slots: Arc<Semaphore>,
    /// The capacities of `total_slots` and of each semaphore in `peer_slots`. Held while
    /// they are resized or a peer's semaphore is made, so none misses a change.
    limits: Mutex<UploadLimits>,
    peer_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    recent: Mutex<VecDeque<Arc<Upload>>>,
    next_id: AtomicU64,
    events: EventSender,
    /// Wakes the progress ticker, which sleeps while nothing is being sent.
    started: tokio::sync::Notify,
}

enum ReaderError {
    ShortFile,
    /// A piece of a partial file no longer matches its hash.
    Corrupt(u64),
    Io(std::io::Error),
}

impl Upload {
    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        crate::locks::lock(&self.runs)
    }

    /// Active while a run is sent, queued while one waits for a slot; once none is left,
    /// failed if the last run failed, done if the whole file went out, else waiting (the
    /// peer may ask for more, or have had the rest from others).
    fn state(&self) -> (TransferState, Option<String>) {
        let runs = self.runs();
        let whole = self.sent.load(Ordering::Relaxed) >= self.size.load(Ordering::Relaxed);
        let state = match &*runs {
            r if r.active > 0 => TransferState::Active,
            r if r.queued > 0 => TransferState::Queued,
            Runs { error: Some(_), .. } => TransferState::Failed,
            _ if whole => TransferState::Done,
            _ => TransferState::Waiting,
        };
        (state, runs.error.clone())
    }

    /// Whether a run arriving on `connection` continues this row: only on the connection of
    /// its runs so far, and not once it is done or failed. A new connection means the peer
    /// reconnected or restarted and resumes from what it kept, which is a new row whose
    /// `resumed_from` shows where (bytes the old connection sent may never have arrived).
    fn takes_run_on(&self, connection: usize) -> bool {
        self.connection == connection
            && !matches!(self.state().0, TransferState::Done | TransferState::Failed)
    }

    fn finished(&self) -> bool {
        !matches!(
            self.state().0,
            TransferState::Active | TransferState::Queued
        )
    }

    fn view(&self, now: Instant) -> TransferView {
        let (state, error) = self.state();
        let size = self.size.load(Ordering::Relaxed);
        // Runs fetched again after a failure count again; the row shows at most the file.
        let sent = self.sent.load(Ordering::Relaxed).min(size);
        let rate = self
            .meter
            .lock()
            .map(|mut m| {
                if state == TransferState::Active {
                    m.update(now, sent)
                } else {
                    m.rate()
                }
            })
            .unwrap_or(0);
        TransferView::upload(
            self.id, &self.peer, &self.path, size, sent, state, error, rate, self.start,
        )
    }
}

impl Uploads {
    pub fn new(limits: UploadLimits, rate: Arc<RateLimiter>, events: EventSender) -> Self {
        let limits = limits.clamped();
        Self {
            rate,
            total_slots: Arc::new(Semaphore::new(limits.total)),
            limits: Mutex::new(limits),
            peer_slots: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            events,
            started: tokio::sync::Notify::new(),
        }
    }

    pub fn views(&self) -> Vec<TransferView> {
        let now = Instant::now();
        self.recent
            .lock()
            .map(|r| r.iter().map(|u| u.view(now)).collect())
            .unwrap_or_default()
    }

    /// Emits progress for uploads in flight; called from the progress ticker. Returns
    /// whether any was in flight: when none is, the ticker waits for `run_started`.
    pub fn emit_progress(&self) -> bool {
        let now = Instant::now();
        let active: Vec<_> = self
            .recent
            .lock()
            .map(|r| r.iter().filter(|u| u.runs().active > 0).cloned().collect())
            .unwrap_or_default();
        let any = !active.is_empty();
        for upload in active {
            let _ = self
                .events
                .send(Event::Transfer(Box::new(upload.view(now))));
        }
        any
    }

    /// Resolves once an upload run starts (at once if one started since the last call).
    pub async fn run_started(&self) {
        self.started.notified().await;
    }

    /// The row for another run of `path` to `peer` on `connection`: the one already there
    /// unless that is done (a new download of the same file), failed, or of another
    /// connection (`Upload::takes_run_on`). Counted as queued.
    fn row(&self, peer: &str, connection: usize, path: &str, range: &OpenRange) -> Arc<Upload> {
        let mut recent = crate::locks::lock(&self.recent);
        let found = recent
            .iter()
            .rev()
            .find(|u| u.peer == peer && u.path == path && u.takes_run_on(connection))
            .cloned();
        let upload = found.unwrap_or_else(|| {
            let fresh = Arc::new(Upload {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                peer: peer.to_string(),
                connection,
                path: path.to_string(),
                start: range.start,
                size: AtomicU64::new(range.size),
                sent: AtomicU64::new(0),
                runs: Mutex::default(),
                meter: Mutex::new(RateMeter::default()),
            });
            recent.push_back(fresh.clone());
            fresh
        });
        upload.size.store(range.size, Ordering::Relaxed);
        upload.runs().queued += 1;
        while recent.len() > KEEP_FINISHED {
            match recent.iter().position(|u| u.finished()) {
                Some(i) => drop(recent.remove(i)),
                None => break,
            }
        }
        upload
    }

    /// Drops the rows of finished uploads (done, failed, or waiting for more requests) from
    /// the list; nothing on disk changes. Returns how many.
    pub fn clear_finished(&self) -> usize {
        let mut recent = crate::locks::lock(&self.recent);
        let before = recent.len();
        recent.retain(|u| !u.finished());
        before - recent.len()
    }

    pub fn limits(&self) -> UploadLimits {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the slots live. Uploads already running keep going; a smaller limit is
    /// reached as they finish. Returns the limits in force (clamped to 1..=MAX_UPLOAD_SLOTS).
    pub fn set_limits(&self, new: UploadLimits) -> UploadLimits {
        let new = new.clamped();
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        resize(&self.total_slots, limits.total, new.total);
        for slots in self
            .peer_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            resize(slots, limits.per_peer, new.per_peer);
        }
        *limits = new;
        new
    }

    fn peer_slots(&self, peer: &str) -> Arc<Semaphore> {
        let limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.peer_slots.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(peer.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(limits.per_peer)))
            .clone()
    }

    /// Answers one `Read` or `ReadPieces`: header, then the bytes, then FIN. A file that ends
    /// early resets the stream so the downloader never mistakes a truncated body for a
    /// complete one.
    pub async fn serve(
        &self,
        peer: &str,
        connection: usize,
        remote_path: &str,
        range: Result<OpenRange, WireError>,
        send: &mut impl ReplyStream,
    ) {
        let range = match range {
            Ok(range) => range,
            Err(e) => {
                let _ = write_frame(send, &ReadHeader::Error(e), MAX_RESPONSE_FRAME).await;
                send.finish();
                return;
            }
        };
        let upload = self.row(peer, connection, remote_path, &range);
        let peer_slots = self.peer_slots(peer);
        let slots = async {
            let mine = peer_slots.acquire_owned().await;
            let total = self.total_slots.clone().acquire_owned().await;
            (mine, total)
        };
        // A requester that gives up while queued frees its place at once.
        let acquired = tokio::select! {
            slots = slots => Some(slots),
            _ = send.stopped() => None,
        };
        upload.runs().queued -= 1;
        let (_mine, _total) = match acquired {
            Some((Ok(mine), Ok(total))) => (mine, total),
            Some(_) => return,
            None => {
                upload.runs().error = Some("cancelled by the peer while queued".into());
                return;
            }
        };
        upload.runs().active += 1;
        self.started.notify_one();
        self.send_event(&upload);
        let result = stream_file(range, send, &upload, &self.rate).await;
        {
            let mut runs = upload.runs();
            runs.active -= 1;
            runs.error = result.as_ref().err().cloned();
        }
        if let Err(reason) = result {
            tracing::info!("upload of {remote_path} to {peer} ended early: {reason}");
        }
        self.send_event(&upload);
    }

    fn send_event(&self, upload: &Upload) {
        let view = upload.view(Instant::now());
        let _ = self.events.send(Event::Transfer(Box::new(view)));
    }
}

/// An open file and the byte range of it to send.
pub struct OpenRange {
    file: Arc<File>,
    size: u64,
    mtime: u64,
    start: u64,
    end: u64,
    /// For a file still being downloaded: its piece hashes. The range is then whole pieces,
    /// each checked as it is read.
    check: Option<Arc<Vec<Hash>>>,
}

impl OpenRange {
    /// Bytes `start..end` of a shared file (clamped to its current size).
    pub fn open(path: &std::path::Path, start: u64, end: Option<u64>) -> Result<Self, WireError> {
        let io = |e: std::io::Error| WireError::Io(e.kind().to_string());
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let size = meta.len();
        // A start past the end (the file shrank since the requester's last session) is
        // answered with the current size and an empty body, so the requester sees the change.
        let end = end.unwrap_or(size).min(size).max(start.min(size));
        Ok(Self {
            file: Arc::new(file),
            size,
            mtime,
            start: start.min(end),
            end,
            check: None,
        })
    }

    /// Whole pieces of a `.part` file of `size` bytes whose piece hashes are `hashes`; the
    /// caller has checked that `pieces` lies within the file.
    pub fn pieces(
        file: Arc<File>,
        size: u64,
        mtime: u64,
        pieces: Range<u64>,
        hashes: Arc<Vec<Hash>>,
    ) -> Self {
        let end = pieces.end.saturating_mul(PIECE_SIZE).min(size);
        Self {
            file,
            size,
            mtime,
            start: pieces.start.saturating_mul(PIECE_SIZE).min(end),
            end,
            check: Some(hashes),
        }
    }
}

/// Reads the chunk of `len` bytes at `offset`. With piece hashes, the chunk is one whole
/// piece and must match its hash.
fn read_chunk(
    file: &File,
    offset: u64,
    len: usize,
    check: Option<&[Hash]>,
) -> Result<Bytes, ReaderError> {
    let buf = read_exact_at(file, offset, len)?;
    let piece = offset / PIECE_SIZE;
    match check {
        Some(hashes) if hashes.get(piece as usize) != Some(&hash_piece(&buf)) => {
            Err(ReaderError::Corrupt(piece))
        }
        _ => Ok(buf.freeze()),
    }
}

/// Reads exactly `len` bytes at `offset`; a file that ends first has shrunk.
fn read_exact_at(file: &File, offset: u64, len: usize) -> Result<PooledBuf, ReaderError> {
    let mut buf = BUFFERS.take(len);
    buf.resize(len, 0);
    match super::read_at_least(file, &mut buf, offset, len) {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReaderError::ShortFile),
        Err(e) => Err(ReaderError::Io(e)),
    }
}

/// Bytes go out in slices of this size, each paced under a limit: a whole 1 MiB chunk would
/// leave in one burst a second apart at 1 MB/s, and both sides' progress with it. A slice is
/// also the progress `UPLOAD_STALL_TIMEOUT` waits for, so a peer slower than 64 KiB per 30 s
/// is treated as stalled.
const PACED_SLICE: usize = 64 * 1024;

/// Runs one write to the peer; `None` if it took nothing for `UPLOAD_STALL_TIMEOUT`.
async fn unstalled<E: std::fmt::Display>(
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Option<Result<(), String>> {
    let done = tokio::time::timeout(UPLOAD_STALL_TIMEOUT, write)
        .await
        .ok()?;
    Some(done.map_err(|e| e.to_string()))
}

/// Cancels a stalled upload: the stream is reset and the reason returned.
fn stalled(send: &mut impl ReplyStream) -> String {
    send.reset(RESET_STALLED);
    format!(
        "stalled: the peer took no data for {} s",
        UPLOAD_STALL_TIMEOUT.as_secs()
    )
}

/// Sends one chunk, paced by the upload limits, counting it as sent slice by slice.
async fn send_paced(
    mut bytes: Bytes,
    send: &mut impl ReplyStream,
    upload: &Upload,
    rate: &RateLimiter,
) -> Result<(), String> {
    while !bytes.is_empty() {
        let part = bytes.split_to(PACED_SLICE.min(bytes.len()));
        let n = part.len() as u64;
        rate.pace(&upload.peer, Direction::Upload, n).await;
        unstalled(send.write_chunk(part))
            .await
            .unwrap_or_else(|| Err(stalled(send)))?;
        upload.sent.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}

async fn stream_file(
    range: OpenRange,
    send: &mut impl ReplyStream,
    upload: &Upload,
    rate: &RateLimiter,
) -> Result<(), String> {
    let OpenRange {
        file,
        size,
        mtime,
        start,
        end,
        check,
    } = range;
    let header = ReadHeader::Ok { size, mtime };
    unstalled(write_frame(send, &header, MAX_RESPONSE_FRAME))
        .await
        .unwrap_or_else(|| Err(stalled(send)))?;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ReaderError>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        // Checked reads go piece by piece: a piece is hashed whole before any of it is sent.
        let chunk = if check.is_some() {
            PIECE_SIZE
        } else {
            READ_CHUNK as u64
        };
        let mut offset = start;
        while offset < end {
            let want = (end - offset).min(chunk) as usize;
            let got = read_chunk(&file, offset, want, check.as_deref().map(Vec::as_slice));
            let failed = got.is_err();
            if tx.blocking_send(got).is_err() || failed {
                return;
            }
            offset += want as u64;
        }
    });
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(bytes) => send_paced(bytes, send, upload, rate).await?,
            Err(ReaderError::ShortFile) => {
                send.reset(RESET_FILE_CHANGED);
                return Err("the file shrank while it was being sent".into());
            }
            Err(ReaderError::Corrupt(piece)) => {
                send.reset(RESET_IO_ERROR);
                return Err(format!(
                    "piece {piece} no longer matches its hash on disk; not sent"
                ));
            }
            Err(ReaderError::Io(e)) => {
                send.reset(RESET_IO_ERROR);
                return Err(format!("read error: {e}"));
            }
        }
    }
    let _ = reader.await;
    send.finish();
    // Wait until the peer has everything, so "done" means delivered, not just queued. Only
    // ACKs are missing by now (the credit was granted), so past the stall time the stream is
    // left to QUIC to deliver within the connection's send window and the slot is freed.
    let _ = tokio::time::timeout(UPLOAD_STALL_TIMEOUT, send.stopped()).await;
    Ok(())
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
