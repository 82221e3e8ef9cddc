//! The library: the shares and their index, kept current by a periodic rescan, and the
//! paced background pass that hashes what is not hashed yet. The HTTP API manages shares
//! and lists our own index through it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_atomic::AtomicU64;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};

use super::settings::SavedSettings;
use crate::events::{Event, EventSender};
use crate::locks::lock;
use crate::shares::{ScanStats, ShareInfo, Shares, SharesError};
use crate::transfer::rate::{Rate, TokenBucket};
use crate::wire::{Entry, LsChunker, WireError};

/// The background pass, between two chunks, waits in slices of this while a friend's
/// request hashes another file; after the last slice it reads one more chunk, so a stream
/// of requests slows the pass down without stopping it.
const DEMAND_PAUSE: Duration = Duration::from_millis(20);
const MAX_DEMAND_PAUSES: u32 = 500;
/// Paths the background pass reads from the index at a time.
const HASH_BATCH: usize = 1024;

/// What the index loop starts from.
pub(super) struct IndexStart {
    pub share_dirs: Vec<PathBuf>,
    pub download_dir: PathBuf,
    /// `seed_downloads` as given at start, if it was.
    pub seed_given: Option<bool>,
}

/// A chunk of a listing streamed to the API, or the error that cut it short.
pub type ListingChunk = Result<Vec<Entry>, String>;

/// Progress of the background hashing pass (`hashing` in `/api/info`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HashingProgress {
    pub active: bool,
    pub hashed_files: u64,
}

pub struct Library {
    pub(super) shares: Arc<Shares>,
    pub(super) events: EventSender,
    /// Where `seed_downloads` and the seeded share's name are kept (`seeding.rs`).
    pub(super) saved: SavedSettings,
    /// One change of the seeded share at a time.
    pub(super) seeding_lock: Mutex<()>,
    /// Off: files are hashed only when first requested.
    background_hashing: bool,
    /// The pass's read rate (0: unpaced); a change applies to the next chunk read.
    hash_rate: Mutex<Rate>,
    rescan_interval: Mutex<Duration>,
    /// Wakes the index loop to wait for a changed interval instead of the old one.
    rescan_interval_changed: Notify,
    hashing: AtomicBool,
    /// Files hashed (or found hashed) by background passes since start.
    hashed_files: AtomicU64,
    /// A permit once the pass has hashed a file: friends are told (`Hashed`), coalesced.
    fresh: Notify,
    shutdown: watch::Receiver<bool>,
}

/// How often the shares are rescanned and how fast the background pass reads.
pub(super) struct Pacing {
    pub background_hashing: bool,
    pub hash_rate: Rate,
    pub rescan_interval: Duration,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SharesError> + Send + 'static,
) -> Result<T, SharesError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SharesError::Task(e.to_string()))?
}

impl Library {
    pub(super) fn new(
        shares: Arc<Shares>,
        events: EventSender,
        pacing: Pacing,
        shutdown: watch::Receiver<bool>,
        saved: SavedSettings,
    ) -> Self {
        Self {
            shares,
            events,
            saved,
            seeding_lock: Mutex::new(()),
            background_hashing: pacing.background_hashing,
            hash_rate: Mutex::new(pacing.hash_rate),
            rescan_interval: Mutex::new(pacing.rescan_interval),
            rescan_interval_changed: Notify::new(),
            hashing: AtomicBool::new(false),
            hashed_files: AtomicU64::new(0),
            fresh: Notify::new(),
            shutdown,
        }
    }

    /// Returns once the background pass has hashed a file since the last return.
    pub(super) async fn hashed_new_content(&self) {
        self.fresh.notified().await;
    }

    pub(super) fn shares(&self) -> &Arc<Shares> {
        &self.shares
    }

    pub fn hash_rate(&self) -> Rate {
        *lock(&self.hash_rate)
    }

    pub fn set_hash_rate(&self, rate: Rate) {
        *lock(&self.hash_rate) = rate;
    }

    pub fn rescan_interval(&self) -> Duration {
        *lock(&self.rescan_interval)
    }

    pub fn set_rescan_interval(&self, interval: Duration) {
        *lock(&self.rescan_interval) = interval;
        self.rescan_interval_changed.notify_one();
    }

    pub fn hashing(&self) -> HashingProgress {
        HashingProgress {
            active: self.hashing.load(Ordering::Relaxed),
            hashed_files: self.hashed_files.load(Ordering::Relaxed),
        }
    }

    pub fn list(&self) -> Result<Vec<ShareInfo>, SharesError> {
        self.shares.list()
    }

    /// Shares a directory and indexes it at once.
    pub async fn add(&self, dir: PathBuf) -> Result<(String, ScanStats), SharesError> {
        let shares = self.shares.clone();
        let added = blocking(move || shares.add(&dir)).await?;
        let _ = self.events.send(Event::SharesChanged);
        Ok(added)
    }

    pub fn remove(&self, name: &str) -> Result<(), SharesError> {
        self.shares.remove(name)?;
        self.forget_seeded_share(name)?;
        let _ = self.events.send(Event::SharesChanged);
        Ok(())
    }

    pub async fn rescan(&self) -> Result<ScanStats, SharesError> {
        let shares = self.shares.clone();
        let stats = blocking(move || shares.rescan_all()).await?;
        let _ = self.events.send(Event::SharesChanged);
        Ok(stats)
    }

    /// Our own index under `path`, streamed in bounded chunks. A bad path is an error here,
    /// before anything streams.
    pub fn listing(
        &self,
        path: String,
        searchterm: Option<String>,
        recursive: bool,
    ) -> Result<mpsc::Receiver<ListingChunk>, WireError> {
        self.shares.ls(&path, None, false, |_| false)?;
        let shares = self.shares.clone();
        let (tx, rx) = mpsc::channel::<ListingChunk>(2);
        tokio::task::spawn_blocking(move || {
            let mut chunker = LsChunker::default();
            let mut open = true;
            let result = shares.ls(&path, searchterm.as_deref(), recursive, |entry| {
                if let Some(chunk) = chunker.push(entry) {
                    open = tx.blocking_send(Ok(chunk)).is_ok();
                }
                open
            });
            let _ = tx.blocking_send(Ok(chunker.take()));
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e.to_string()));
            }
        });
        Ok(rx)
    }

    /// Indexes every share once at start (new `--share-dir`s are registered first, then the
    /// download folder is seeded or not), then rescans periodically; after each scan, hashes
    /// what is not hashed yet in the background.
    pub(super) async fn index_loop(self: Arc<Self>, start: IndexStart) {
        let library = self.clone();
        let IndexStart {
            share_dirs,
            download_dir,
            seed_given,
        } = start;
        let _ = tokio::task::spawn_blocking(move || {
            for dir in share_dirs {
                library.register_share(&dir);
            }
            library.start_seeding(seed_given, &download_dir);
        })
        .await;
        // After the registration, so the watcher's first look finds every share.
        self.start_watcher();
        loop {
            let scanned = tokio::time::Instant::now();
            let library = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                library.rescan_logged();
                if library.background_hashing {
                    library.hash_in_background();
                }
            })
            .await;
            let _ = self.events.send(Event::SharesChanged);
            // Due an interval after the last scan began, re-read when the interval changes.
            while tokio::time::timeout_at(
                scanned + self.rescan_interval(),
                self.rescan_interval_changed.notified(),
            )
            .await
            .is_ok()
            {}
        }
    }

    /// Starts the share watcher (`shares/watch.rs`); without it (no inotify instance left,
    /// say) changes show at the next rescan, as they always did.
    fn start_watcher(&self) {
        let shutdown = self.shutdown.clone();
        let events = self.events.clone();
        let started = crate::shares::watch::spawn(
            self.shares.clone(),
            move || *shutdown.borrow(),
            move || {
                let _ = events.send(Event::SharesChanged);
            },
        );
        if let Err(e) = started {
            tracing::warn!("{e}");
        }
    }

    fn register_share(&self, dir: &Path) {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if self.shares.roots().values().any(|r| *r == canonical) {
            return;
        }
        match self.shares.register(dir) {
            Ok(name) => tracing::info!("sharing {} as {name}", dir.display()),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Computes content hashes of every shared file not hashed yet, paced so that a NAS
    /// keeps serving while it works. Blocking.
    fn hash_in_background(&self) {
        self.hashing.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let mut bucket = TokenBucket::new(self.hash_rate(), started);
        // Paced by the bucket and paused while a friend's request hashes another file, but
        // unpaced while a friend waits for this very file; stopped mid-file at shutdown so a
        // stop never waits for a big file to finish hashing.
        let mut pace = |bytes: u64, awaited: bool| {
            let now = Instant::now();
            let rate = self.hash_rate();
            if rate != bucket.rate() {
                bucket.set_rate(rate, now);
            }
            let wait = bucket.take(bytes, now);
            if !awaited {
                std::thread::sleep(wait);
                for _ in 0..MAX_DEMAND_PAUSES {
                    if !self.shares.demand_waiting() || self.stopping() {
                        break;
                    }
                    std::thread::sleep(DEMAND_PAUSE);
                }
            }
            !self.stopping()
        };
        // In batches from the index, so a library of millions of files costs one batch of
        // paths in memory, not all of them.
        let mut after: Option<String> = None;
        'pass: loop {
            let batch = match self.shares.files_after(after.as_deref(), HASH_BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!("background hashing stopped: {e}");
                    break;
                }
            };
            for path in &batch {
                if self.stopping() {
                    break 'pass;
                }
                match self.shares.content_hashes_paced(path, &mut pace) {
                    Ok((_, true)) => {
                        self.hashed_files.fetch_add(1, Ordering::Relaxed);
                        self.fresh.notify_one();
                    }
                    Ok((_, false)) => {}
                    Err(e) => tracing::debug!("background hashing skipped {path}: {e}"),
                }
            }
            if batch.len() < HASH_BATCH {
                break;
            }
            after = batch.last().cloned();
        }
        self.hashing.store(false, Ordering::Relaxed);
        tracing::debug!("background hashing pass took {:.2?}", started.elapsed());
    }

    fn rescan_logged(&self) {
        let started = Instant::now();
        match self.shares.rescan_all() {
            Ok(stats) => tracing::info!(
                "indexed {} files in {} dirs in {:.2?} ({} entries written, {} removed)",
                stats.files,
                stats.dirs,
                started.elapsed(),
                stats.written,
                stats.removed
            ),
            Err(e) => tracing::error!("rescan failed: {e}"),
        }
    }
}
