//! The download side: a persisted wishlist of requests (files or whole directories),
//! expanded into per-file records, and the queue's controls (add, pause, resume, cancel,
//! reorder, views). `scheduler` decides what runs; each file is fetched by `fetch`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, Notify};

use super::job::{Job, Presence};
use super::outcome::RetryPolicy;
use super::partials::{Offered, Partials};
use super::plan;
use super::queue::{self, queue_order};
use super::rate::RateLimiter;
use super::TransferView;
use crate::content::Hash;
use crate::events::EventSender;
use crate::locks::lock;
use crate::net::peers::PeerTable;
use crate::shares::Shares;
use crate::store::{DownloadRecord, DownloadState, FileRecord, FileState, Store, StoreError};

pub use super::disk::free_space;

/// How downloads start out: where they go, how many at once, how failures are retried.
pub struct DownloadSettings {
    pub folder: PathBuf,
    pub limits: DownloadLimits,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy)]
pub struct DownloadLimits {
    pub total: usize,
    pub per_peer: usize,
    /// Free space to leave on the download disk: below it downloads pause.
    pub min_free_space: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no download with id {0}")]
    Unknown(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every file record of download `id`, in path order.
pub(super) fn stored_files(
    store: &Store,
    id: u64,
) -> Result<Vec<(String, FileRecord)>, StoreError> {
    let mut files = Vec::new();
    store.visit_download_files(id, None, |path, file| {
        files.push((path.to_string(), file));
        true
    })?;
    Ok(files)
}

pub struct Downloads {
    pub(super) store: Arc<Store>,
    pub(super) peers: Arc<PeerTable>,
    pub(super) events: EventSender,
    /// Changeable live: files whose fetch starts after a change go to the new directory.
    download_dir: Mutex<PathBuf>,
    /// Changeable live: the next dispatch and the next disk check use a change.
    limits: Mutex<DownloadLimits>,
    pub(super) rate: Arc<RateLimiter>,
    jobs: Mutex<BTreeMap<u64, Job>>,
    pub(super) wake: Notify,
    /// Files being fetched, whose verified pieces other peers may read.
    pub(super) partials: Arc<Partials>,
    /// Given the hashes of each finished file, so a seeded download is found by `Have` at
    /// once (`Shares::adopt_hashes`).
    pub(super) shares: Arc<Shares>,
    /// Names of peers that connected or pushed `Hashed`: each running fetch may ask them
    /// `Have` again. A fetch that falls behind the ring hears of every connected peer.
    pub(super) news: broadcast::Sender<String>,
    /// Changeable live: applies from the next failure on.
    retry: Mutex<RetryPolicy>,
}

/// Peer news held for fetches that have not read it yet.
const NEWS_BACKLOG: usize = 64;

impl Downloads {
    pub fn load(
        store: Arc<Store>,
        peers: Arc<PeerTable>,
        events: EventSender,
        settings: DownloadSettings,
        rate: Arc<RateLimiter>,
        shares: Arc<Shares>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut jobs = BTreeMap::new();
        for (id, record) in store.downloads()? {
            let mut job = Job::from_files(record, &stored_files(&store, id)?);
            job.to = store.download_destination(id)?.map(PathBuf::from);
            job.to.iter().for_each(|to| shares.add_destination(to));
            jobs.insert(id, job);
        }
        Ok(Arc::new(Self {
            store,
            peers,
            events,
            download_dir: Mutex::new(settings.folder),
            limits: Mutex::new(settings.limits),
            rate,
            jobs: Mutex::new(jobs),
            wake: Notify::new(),
            news: broadcast::channel(NEWS_BACKLOG).0,
            retry: Mutex::new(settings.retry),
            partials: Arc::default(),
            shares,
        }))
    }

    pub(super) fn jobs(&self) -> MutexGuard<'_, BTreeMap<u64, Job>> {
        lock(&self.jobs)
    }

    pub fn download_dir(&self) -> PathBuf {
        lock(&self.download_dir).clone()
    }

    /// `dir` must be canonical. Fetches already running finish in the old directory.
    /// Where download `id`'s `file` lands, and the folder whose disk it fills.
    pub(super) fn placement(&self, id: u64, file: &str) -> Result<(PathBuf, PathBuf), String> {
        let download_dir = self.download_dir();
        let jobs = self.jobs();
        let job = jobs.get(&id).ok_or("the download was cancelled")?;
        let local = job.place(&download_dir, file).map_err(|e| e.to_string())?;
        Ok((job.to.clone().unwrap_or(download_dir), local))
    }

    /// Records a file just finished (or found whole) at `local` in the library.
    pub(super) fn shelve(&self, local: &std::path::Path, size: u64, from: String) {
        // Kept as the path with no symlink in it, which is what the library serves.
        let Some(path) = std::fs::canonicalize(local)
            .ok()
            .and_then(|p| p.to_str().map(String::from))
        else {
            return;
        };
        let entry = crate::store::LibraryEntry {
            path,
            size,
            finished: unix_now(),
            from,
        };
        if let Err(e) = self.store.add_to_library(&entry) {
            tracing::error!("cannot record {} in the library: {e}", local.display());
        }
    }

    pub fn set_download_dir(&self, dir: PathBuf) {
        *lock(&self.download_dir) = dir;
        self.wake();
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        *lock(&self.retry)
    }

    pub fn set_retry_policy(&self, retry: RetryPolicy) {
        *lock(&self.retry) = retry;
    }

    pub fn limits(&self) -> DownloadLimits {
        *lock(&self.limits)
    }

    /// More slots start waiting files at once; fewer let running fetches finish.
    pub fn set_limits(&self, limits: DownloadLimits) {
        *lock(&self.limits) = limits;
        self.wake();
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// `peer` connected or has hashed new content: running fetches may find it a source.
    pub fn swarm_news(&self, peer: &str) {
        // No fetch running is no receiver, which is fine.
        let _ = self.news.send(peer.to_string());
    }

    /// The file with this root being fetched right now, if any: a partial source for others.
    pub fn partial(&self, root: &Hash) -> Option<Offered> {
        self.partials.get(root)
    }

    /// Queues `peer/path`, into the folder `to` if given (checked by the caller); asking
    /// again for something still queued there returns the same id.
    pub fn add(&self, peer: &str, path: &str, to: Option<PathBuf>) -> Result<u64, DownloadError> {
        let mut jobs = self.jobs();
        let path = path.trim_matches('/').to_string();
        if let Some((id, _)) = jobs.iter().find(|(_, j)| {
            j.record.peer == peer
                && j.record.path == path
                && j.to == to
                && j.record.state != DownloadState::Done
        }) {
            return Ok(*id);
        }
        let priority = jobs
            .values()
            .map(|j| j.record.priority + 1)
            .max()
            .unwrap_or(0);
        let record = DownloadRecord {
            peer: peer.to_string(),
            path,
            state: DownloadState::Queued,
            expanded: false,
            added_at: unix_now(),
            priority,
        };
        let text = to.as_ref().and_then(|t| t.to_str());
        let id = self.store.add_download(&record, text)?;
        let mut job = Job::new(record);
        if let Some(to) = &to {
            self.shares.add_destination(to);
        }
        job.to = to;
        jobs.insert(id, job);
        drop(jobs);
        self.wake();
        Ok(id)
    }

    /// Download ids in queue order.
    pub(super) fn order(jobs: &BTreeMap<u64, Job>) -> Vec<u64> {
        queue_order(jobs.iter().map(|(id, j)| (*id, j.record.priority)))
    }

    /// Every download, in queue order.
    pub fn views(&self) -> Vec<TransferView> {
        let jobs = self.jobs();
        Self::order(&jobs)
            .into_iter()
            .filter_map(|id| jobs.get(&id).map(|job| self.view_of(id, job)))
            .collect()
    }

    /// Connected, known but offline, or forgotten: what a queued download waits for.
    fn presence(&self, peer: &str) -> Presence {
        if self.peers.get(peer).is_some() {
            Presence::Online
        } else if matches!(self.store.known_peer(peer), Ok(None)) {
            Presence::Unknown
        } else {
            Presence::Offline
        }
    }

    pub(super) fn view_of(&self, id: u64, job: &Job) -> TransferView {
        job.view(id, self.presence(&job.record.peer))
    }

    /// Forgets every finished download (`done`); its files stay on disk. Returns how many.
    pub fn clear_finished(&self) -> Result<usize, DownloadError> {
        let mut jobs = self.jobs();
        let done: Vec<u64> = jobs
            .iter()
            .filter(|(_, j)| j.record.state == DownloadState::Done)
            .map(|(id, _)| *id)
            .collect();
        for id in &done {
            self.store.remove_download(*id)?;
            jobs.remove(id);
        }
        Ok(done.len())
    }

    /// Moves a download to `position` in the queue (0 = first) and saves the new order.
    pub fn move_to(&self, id: u64, position: usize) -> Result<(), DownloadError> {
        let mut jobs = self.jobs();
        if !jobs.contains_key(&id) {
            return Err(DownloadError::Unknown(id));
        }
        let order = plan::reorder(&Self::order(&jobs), id, position);
        for (priority, job_id) in order.into_iter().enumerate() {
            if let Some(job) = jobs.get_mut(&job_id) {
                if job.record.priority != priority as i64 {
                    job.record.priority = priority as i64;
                    self.store.put_download(job_id, &job.record)?;
                }
            }
        }
        drop(jobs);
        self.wake();
        Ok(())
    }

    pub fn view(&self, id: u64) -> Option<TransferView> {
        self.jobs().get(&id).map(|job| self.view_of(id, job))
    }

    fn set_state(&self, id: u64, state: DownloadState) -> Result<(), DownloadError> {
        let mut jobs = self.jobs();
        let job = jobs.get_mut(&id).ok_or(DownloadError::Unknown(id))?;
        job.record.state = state;
        if state == DownloadState::Paused {
            job.abort_all();
        }
        job.hold_until = None;
        job.cursor = None;
        self.store.put_download(id, &job.record)?;
        self.send_view(id, job);
        drop(jobs);
        self.wake();
        Ok(())
    }

    pub fn pause(&self, id: u64) -> Result<(), DownloadError> {
        self.set_state(id, DownloadState::Paused)
    }

    /// Resumes a paused download, or retries a failed one from its failed files.
    pub fn resume(&self, id: u64) -> Result<(), DownloadError> {
        let mut reset = Vec::new();
        self.store.visit_download_files(id, None, |path, file| {
            reset.extend(queue::retry_failed(file).map(|file| (path.to_string(), file)));
            true
        })?;
        for (path, file) in &reset {
            self.store.put_download_file(id, path, file, true)?;
        }
        if let Some(job) = self.jobs().get_mut(&id) {
            job.failures.clear();
            job.retryable_failures = 0;
            job.disk_full = None;
            job.error = None;
        }
        self.set_state(id, DownloadState::Queued)
    }

    /// Forgets the download and deletes its unfinished `.part` files; finished files stay.
    pub fn cancel(&self, id: u64) -> Result<(), DownloadError> {
        let mut jobs = self.jobs();
        let mut job = jobs.remove(&id).ok_or(DownloadError::Unknown(id))?;
        job.abort_all();
        let mut parts = Vec::new();
        let download_dir = self.download_dir();
        self.store.visit_download_files(id, None, |path, file| {
            if file.state != FileState::Done {
                if let Ok(local) = job.place(&download_dir, path) {
                    parts.push(plan::part_path(&local));
                }
            }
            true
        })?;
        self.store.remove_download(id)?;
        for part in parts {
            let _ = std::fs::remove_file(part);
        }
        Ok(())
    }

    pub fn abort_all(&self) {
        for job in self.jobs().values_mut() {
            job.abort_all();
        }
    }
}
