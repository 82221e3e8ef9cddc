//! The download side: a persisted wishlist of requests (files or whole directories),
//! expanded into per-file records and scheduled under total and per-peer limits. The
//! decisions are pure (`queue`, `outcome`); each file is fetched by `fetch`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, Notify};

use super::job::{FileProgress, InFlight, Job, Presence};
use super::outcome::{self, Outcome, RetryPolicy};
use super::partials::{Offered, Partials};
use super::plan;
use super::queue::{self, queue_order, Next, PendingScan, Slots};
use super::rate::RateLimiter;
use super::TransferView;
use crate::content::Hash;
use crate::events::{Event, EventSender};
use crate::net::peers::{PeerConnection, PeerTable};
use crate::net::rpc::{self, RpcError};
use crate::shares::Shares;
use crate::store::{DownloadRecord, DownloadState, FileRecord, FileState, Store, StoreError};
use crate::wire::WireError;

pub use super::disk::free_space;

const EXPAND_RETRY: Duration = Duration::from_secs(10);
/// With nothing in flight and nothing held, the queue still looks again this often, in
/// case a change went unsignalled.
const IDLE_SAFETY_NET: Duration = Duration::from_secs(60);

/// How downloads start out: where they go, how many at once, how failures are retried.
pub struct DownloadSettings {
    pub folder: PathBuf,
    pub limits: DownloadLimits,
    pub retry: RetryPolicy,
}

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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every file record of download `id`, in path order.
fn stored_files(store: &Store, id: u64) -> Result<Vec<(String, FileRecord)>, StoreError> {
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
    events: EventSender,
    /// Changeable live: files whose fetch starts after a change go to the new directory.
    download_dir: Mutex<PathBuf>,
    pub(super) limits: DownloadLimits,
    pub(super) rate: Arc<RateLimiter>,
    jobs: Mutex<BTreeMap<u64, Job>>,
    wake: Notify,
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
            limits: settings.limits,
            rate,
            jobs: Mutex::new(jobs),
            wake: Notify::new(),
            news: broadcast::channel(NEWS_BACKLOG).0,
            retry: Mutex::new(settings.retry),
            partials: Arc::default(),
            shares,
        }))
    }

    fn jobs(&self) -> MutexGuard<'_, BTreeMap<u64, Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn download_dir(&self) -> PathBuf {
        self.download_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        *self.download_dir.lock().unwrap_or_else(|e| e.into_inner()) = dir;
        self.wake();
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        *self.retry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_retry_policy(&self, retry: RetryPolicy) {
        *self.retry.lock().unwrap_or_else(|e| e.into_inner()) = retry;
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
    fn order(jobs: &BTreeMap<u64, Job>) -> Vec<u64> {
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

    fn view_of(&self, id: u64, job: &Job) -> TransferView {
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

    /// The scheduler: dispatches work whenever woken (new request, peer connected, file
    /// finished), and once a second while files are in flight, with progress every
    /// `PROGRESS_INTERVAL`. With nothing in flight it sleeps until the earliest hold (a
    /// retry) ends: an idle daemon has no timer here (the router idle budget).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(super::PROGRESS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            let (in_flight, next_hold) = self.timers();
            if in_flight {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tick.tick() => {
                        ticks += 1;
                        self.emit_progress();
                        if ticks % 4 != 0 { continue; }
                    }
                }
            } else {
                let wait = next_hold.map_or(IDLE_SAFETY_NET, |at| {
                    at.saturating_duration_since(Instant::now())
                        .min(IDLE_SAFETY_NET)
                });
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                tick.reset();
            }
            self.schedule();
        }
    }

    /// Whether any file is in flight, and when the earliest held download is due again.
    fn timers(&self) -> (bool, Option<Instant>) {
        let jobs = self.jobs();
        let in_flight = jobs.values().any(|job| !job.in_flight.is_empty());
        let next_hold = jobs.values().filter_map(|job| job.hold_until).min();
        (in_flight, next_hold)
    }

    fn emit_progress(&self) {
        let now = Instant::now();
        let mut jobs = self.jobs();
        for (id, job) in jobs.iter_mut() {
            if !job.in_flight.is_empty() {
                let received = job.received();
                job.meter.update(now, received);
                self.send_view(*id, job);
            }
        }
    }

    fn send_view(&self, id: u64, job: &Job) {
        let _ = self
            .events
            .send(Event::Transfer(Box::new(self.view_of(id, job))));
    }

    fn schedule(self: &Arc<Self>) {
        let now = Instant::now();
        let mut jobs = self.jobs();
        let mut slots = Slots::new(self.limits.total, self.limits.per_peer);
        for job in jobs.values() {
            for (path, file) in &job.in_flight {
                slots.take(&job.record.peer, path, file.progress.size);
            }
        }
        for id in Self::order(&jobs) {
            let Some(job) = jobs.get_mut(&id) else {
                continue;
            };
            if !queue::due(job.record.state, job.hold_until, now) {
                continue;
            }
            job.hold_until = None;
            let Some(peer) = self.peers.get(&job.record.peer) else {
                continue;
            };
            if job.record.expanded {
                self.dispatch(id, job, &peer, &mut slots);
            } else if !job.expanding {
                job.expanding = true;
                tokio::spawn(self.clone().expand(id, peer, job.record.path.clone()));
            }
        }
    }

    /// Starts fetches of the download's pending files while slots are free.
    fn dispatch(
        self: &Arc<Self>,
        id: u64,
        job: &mut Job,
        peer: &Arc<PeerConnection>,
        slots: &mut Slots,
    ) {
        while slots.has_room(&job.record.peer, 0) {
            match self.next_file(id, job, slots) {
                // A big file waits for a whole slot; it stays next, so small files queued
                // behind it cannot starve it.
                Next::File(_, record) if !slots.has_room(&job.record.peer, record.size) => break,
                Next::File(path, record) => {
                    slots.take(&job.record.peer, &path, record.size);
                    let progress = Arc::new(FileProgress::new(id, record.size));
                    let task = tokio::spawn(self.clone().fetch_task(
                        id,
                        peer.clone(),
                        path.clone(),
                        record,
                        progress.clone(),
                    ));
                    let abort = task.abort_handle();
                    job.in_flight
                        .insert(path.clone(), InFlight { progress, abort });
                    job.cursor = Some(path);
                }
                Next::Wait(until) => {
                    job.hold_until = until;
                    break;
                }
                Next::Complete => {
                    self.complete(id, job);
                    break;
                }
            }
        }
    }

    fn complete(&self, id: u64, job: &mut Job) {
        job.record.state = queue::final_state(job.files_done, job.files_total, job.failures.len());
        if let Err(e) = self.store.put_download(id, &job.record) {
            tracing::error!("cannot record completion of download {id}: {e}");
        }
        tracing::info!(
            "download {}/{} finished: {:?}",
            job.record.peer,
            job.record.path,
            job.record.state
        );
        self.send_view(id, job);
    }

    /// Finds the next pending file that is due, scanning after the cursor and then once from
    /// the start.
    fn next_file(&self, id: u64, job: &Job, slots: &Slots) -> Next {
        let mut scan = PendingScan::new(unix_now());
        let passes = match &job.cursor {
            Some(cursor) => vec![Some(cursor.as_str()), None],
            None => vec![None],
        };
        for after in passes {
            let visited = self.store.visit_download_files(id, after, |path, file| {
                let in_flight = job.in_flight.contains_key(path);
                scan.visit(path, file, in_flight, slots.is_busy(&job.record.peer, path))
            });
            if let Err(e) = visited {
                tracing::error!("cannot read download {id} from the store: {e}");
                return Next::Wait(Some(Instant::now() + EXPAND_RETRY));
            }
            if let Some((path, file)) = scan.take_found() {
                return Next::File(path, file);
            }
        }
        scan.verdict(Instant::now(), !job.in_flight.is_empty())
    }

    /// Stores the download's files as the peer lists them; then counts them.
    async fn expand(self: Arc<Self>, id: u64, peer: Arc<PeerConnection>, path: String) {
        let listed = self.store_listing(id, &peer, &path).await;
        let mut jobs = self.jobs();
        let Some(job) = jobs.get_mut(&id) else { return };
        job.expanding = false;
        match listed {
            Ok(Ok(())) => {
                job.record.expanded = true;
                job.error = None;
                if let Ok(files) = stored_files(&self.store, id) {
                    job.recount(&files);
                }
                if let Err(e) = self.store.put_download(id, &job.record) {
                    tracing::error!("cannot save download {id}: {e}");
                }
            }
            Err(RpcError::Refused(e @ (WireError::NotFound | WireError::Forbidden))) => {
                job.record.state = DownloadState::Failed;
                job.error = Some(format!("{}/{}: {e}", job.record.peer, job.record.path));
                let _ = self.store.put_download(id, &job.record);
            }
            Err(e) => {
                job.error = Some(format!("listing failed, will retry: {e}"));
                job.hold_until = Some(Instant::now() + EXPAND_RETRY);
            }
            Ok(Err(e)) => {
                job.error = Some(format!("cannot store the listing, will retry: {e}"));
                job.hold_until = Some(Instant::now() + EXPAND_RETRY);
            }
        }
        self.send_view(id, job);
        drop(jobs);
        self.wake();
    }

    /// Lists `path` recursively on the peer and stores every file at or under it, chunk by
    /// chunk. The outer error is the listing's, the inner one the store's.
    async fn store_listing(
        &self,
        id: u64,
        peer: &PeerConnection,
        path: &str,
    ) -> Result<Result<(), StoreError>, RpcError> {
        let mut listing = rpc::ls(&peer.connection, path, None, true).await?;
        while let Some(entries) = listing.next().await? {
            let files: Vec<(String, FileRecord)> = entries
                .into_iter()
                // Only what lies under the requested path, whatever the peer sends.
                .filter(|e| {
                    !e.is_dir && (e.path == path || e.path.starts_with(&format!("{path}/")))
                })
                .map(|e| {
                    let record = crate::store::FileRecord::pending(e.size, e.mtime);
                    (e.path, record)
                })
                .collect();
            if let Err(e) = self.store.add_download_files(id, &files) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn fetch_task(
        self: Arc<Self>,
        id: u64,
        peer: Arc<PeerConnection>,
        path: String,
        mut record: FileRecord,
        progress: Arc<FileProgress>,
    ) {
        let outcome = self.fetch(&peer, &path, &mut record, &progress).await;
        self.finish_file(id, &path, record, outcome, &progress);
    }

    fn finish_file(
        &self,
        id: u64,
        path: &str,
        mut record: FileRecord,
        outcome: Outcome,
        progress: &FileProgress,
    ) {
        let mut jobs = self.jobs();
        let Some(job) = jobs.get_mut(&id) else { return };
        job.fetch_ended(path, progress, &record);
        let settled = outcome::settle(outcome, &mut record, unix_now(), self.retry_policy());
        job.settle(path, &record, settled, Instant::now());
        // A finished file's record rides along with the next durable commit (the download's
        // end at the latest): one sync per file fewer, and `plan::already_have` finds the
        // file again if a crash loses the record.
        let durable = record.state != FileState::Done;
        if let Err(e) = self.store.put_download_file(id, path, &record, durable) {
            tracing::error!("cannot save progress of {path}: {e}");
        }
        self.send_view(id, job);
        drop(jobs);
        self.wake();
    }
}
