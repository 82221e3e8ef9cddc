//! The download side: a persisted wishlist of requests (files or whole directories),
//! expanded into per-file records, scheduled under total and per-peer limits, fetched into
//! `.part` files that resume by appending, and renamed only when complete and synced.

use portable_atomic::AtomicU64;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};

use super::plan::{self, RateMeter};
use super::rate::RateLimiter;
use super::swarm::{self, Offered, Partials, Source, SourceEnd, SourceId, Swarm};
use super::{ActiveFile, FailedFile, SourceView, TransferState, TransferView};
use crate::content::{Bitfield, Hash};
use crate::events::{Event, EventSender};
use crate::net::peers::{PeerConnection, PeerTable};
use crate::net::rpc::{self, Holding, RpcError};
use crate::store::{DownloadRecord, DownloadState, FileRecord, FileState, Store, StoreError};
use crate::wire::WireError;

/// A file that fails this often (for reasons other than a lost peer or a full disk) is given up.
const MAX_ATTEMPTS: u32 = 5;
const DISK_FULL_RETRY: Duration = Duration::from_secs(15);
const EXPAND_RETRY: Duration = Duration::from_secs(10);
const MAX_LISTED_FAILURES: usize = 50;
/// How long a peer gets to answer "do you have this content?".
const HAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a peer still downloading the file is asked which pieces it holds now: one
/// small request per partial source per interval, for as long as the fetch runs.
const AVAILABILITY_INTERVAL: Duration = Duration::from_secs(3);

pub struct DownloadLimits {
    pub total: usize,
    pub per_peer: usize,
    /// Free space to leave on the download disk: below it downloads pause.
    pub min_free_space: u64,
}

/// Free bytes on the filesystem holding `path`, if it can tell.
pub fn free_space(path: &std::path::Path) -> Option<u64> {
    // The conversions are no-ops on 64-bit targets but widen c_ulong on armv7.
    #[allow(clippy::useless_conversion)]
    nix::sys::statvfs::statvfs(path)
        .ok()
        .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no download with id {0}")]
    Unknown(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct FileProgress {
    download: u64,
    size: u64,
    received: AtomicU64,
    start: AtomicU64,
    /// Each source of this file and the verified bytes it delivered.
    sources: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

struct InFlight {
    progress: Arc<FileProgress>,
    abort: AbortHandle,
}

struct Job {
    record: DownloadRecord,
    size: u64,
    done_bytes: u64,
    files_total: u64,
    files_done: u64,
    failures: Vec<FailedFile>,
    expanding: bool,
    /// Last path dispatched; the next scan for pending files starts after it.
    cursor: Option<String>,
    in_flight: HashMap<String, InFlight>,
    hold_until: Option<Instant>,
    disk_full: Option<String>,
    error: Option<String>,
    meter: RateMeter,
    /// Verified bytes each peer delivered for finished fetches of this download.
    source_bytes: HashMap<String, u64>,
    /// Root hash of a single-file download, once known.
    root: Option<crate::content::Hash>,
    /// Verified bytes in the part files of unfinished files not being fetched right now.
    held: HashMap<String, u64>,
}

enum Outcome {
    Done,
    /// The remote file's size or mtime changed: restart it from zero.
    Changed {
        size: u64,
        mtime: u64,
    },
    /// The connection went away: retry when the peer is back, without counting an attempt.
    PeerGone(String),
    Retry(String),
    Permanent(String),
    DiskFull(String),
}

enum Next {
    File(String, FileRecord),
    Wait(Option<Instant>),
    Complete,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn retry_delay(attempts: u32) -> u64 {
    (10u64 << attempts.min(6)).min(600)
}

/// Download ids by queue position (priority, then age).
fn queue_order(jobs: &BTreeMap<u64, Job>) -> Vec<u64> {
    let mut order: Vec<(i64, u64)> = jobs
        .iter()
        .map(|(id, j)| (j.record.priority, *id))
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, id)| id).collect()
}

pub struct Downloads {
    store: Arc<Store>,
    peers: Arc<PeerTable>,
    events: EventSender,
    /// Changeable live: files whose fetch starts after a change go to the new directory.
    download_dir: Mutex<PathBuf>,
    limits: DownloadLimits,
    rate: Arc<RateLimiter>,
    jobs: Mutex<BTreeMap<u64, Job>>,
    wake: Notify,
    /// Files being fetched, whose verified pieces other peers may read.
    partials: Arc<Partials>,
}

impl Job {
    fn new(record: DownloadRecord) -> Self {
        Job {
            record,
            size: 0,
            done_bytes: 0,
            files_total: 0,
            files_done: 0,
            failures: Vec::new(),
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

    fn count_file(&mut self, path: &str, file: &FileRecord) {
        self.files_total += 1;
        self.size += file.size;
        match file.state {
            FileState::Done => {
                self.files_done += 1;
                self.done_bytes += file.size;
            }
            FileState::Failed => self.note_failure(path, file.error.clone().unwrap_or_default()),
            FileState::Pending => self.note_held(path, file),
        }
    }

    /// Remembers how much of an unfinished file is verified on disk (from its bitfield).
    fn note_held(&mut self, path: &str, file: &FileRecord) {
        match &file.have {
            Some(have) if have.count() > 0 => {
                let bytes = (0..have.len())
                    .filter(|p| have.get(*p))
                    .map(|p| crate::content::piece_len(file.size, p))
                    .sum();
                self.held.insert(path.to_string(), bytes);
            }
            _ => {
                self.held.remove(path);
            }
        }
    }

    fn note_failure(&mut self, path: &str, reason: String) {
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push(FailedFile {
                path: path.to_string(),
                reason,
            });
        }
    }

    fn received(&self) -> u64 {
        let fetching: u64 = self
            .in_flight
            .values()
            .map(|f| f.progress.received.load(Ordering::Relaxed))
            .sum();
        let parked: u64 = self
            .held
            .iter()
            .filter(|(p, _)| !self.in_flight.contains_key(*p))
            .map(|(_, b)| b)
            .sum();
        self.done_bytes + fetching + parked
    }

    fn state(&self) -> TransferState {
        match self.record.state {
            DownloadState::Done => TransferState::Done,
            DownloadState::Failed => TransferState::Failed,
            DownloadState::Paused => TransferState::Paused,
            DownloadState::Queued if self.disk_full.is_some() => TransferState::DiskFull,
            DownloadState::Queued if !self.in_flight.is_empty() => TransferState::Active,
            DownloadState::Queued => TransferState::Queued,
        }
    }

    fn view(&self, id: u64) -> TransferView {
        let received = self.received();
        let rate = self.meter.rate();
        TransferView {
            id,
            direction: "download",
            peer: self.record.peer.clone(),
            path: self.record.path.clone(),
            size: self.size,
            received,
            state: self.state(),
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

    fn sources(&self) -> Vec<SourceView> {
        let mut bytes = self.source_bytes.clone();
        for f in self.in_flight.values() {
            for (peer, delivered) in f
                .progress
                .sources
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default()
            {
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
    fn abort_all(&mut self) {
        for (path, f) in self.in_flight.drain() {
            f.abort.abort();
            self.held
                .insert(path, f.progress.received.load(Ordering::Relaxed));
        }
    }
}

impl Downloads {
    pub fn load(
        store: Arc<Store>,
        peers: Arc<PeerTable>,
        events: EventSender,
        download_dir: PathBuf,
        limits: DownloadLimits,
        rate: Arc<RateLimiter>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut jobs = BTreeMap::new();
        for (id, record) in store.downloads()? {
            let mut job = Job::new(record);
            let mut files = Vec::new();
            store.visit_download_files(id, None, |path, file| {
                files.push((path.to_string(), file));
                true
            })?;
            if let [(_, only)] = files.as_slice() {
                job.root = only.root;
            }
            for (path, file) in files {
                job.count_file(&path, &file);
            }
            jobs.insert(id, job);
        }
        Ok(Arc::new(Self {
            store,
            peers,
            events,
            download_dir: Mutex::new(download_dir),
            limits,
            rate,
            jobs: Mutex::new(jobs),
            wake: Notify::new(),
            partials: Arc::default(),
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
    pub fn set_download_dir(&self, dir: PathBuf) {
        *self.download_dir.lock().unwrap_or_else(|e| e.into_inner()) = dir;
        self.wake();
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The file with this root being fetched right now, if any: a partial source for others.
    pub fn partial(&self, root: &Hash) -> Option<Offered> {
        self.partials.get(root)
    }

    /// Queues `peer/path`; asking again for something still queued returns the same id.
    pub fn add(&self, peer: &str, path: &str) -> Result<u64, DownloadError> {
        let mut jobs = self.jobs();
        let path = path.trim_matches('/').to_string();
        if let Some((id, _)) = jobs.iter().find(|(_, j)| {
            j.record.peer == peer && j.record.path == path && j.record.state != DownloadState::Done
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
        let id = self.store.add_download(&record)?;
        jobs.insert(id, Job::new(record));
        drop(jobs);
        self.wake();
        Ok(id)
    }

    /// Every download, in queue order.
    pub fn views(&self) -> Vec<TransferView> {
        let jobs = self.jobs();
        queue_order(&jobs)
            .into_iter()
            .filter_map(|id| jobs.get(&id).map(|job| job.view(id)))
            .collect()
    }

    /// Moves a download to `position` in the queue (0 = first) and saves the new order.
    pub fn move_to(&self, id: u64, position: usize) -> Result<(), DownloadError> {
        let mut jobs = self.jobs();
        if !jobs.contains_key(&id) {
            return Err(DownloadError::Unknown(id));
        }
        let order = plan::reorder(&queue_order(&jobs), id, position);
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
        self.jobs().get(&id).map(|job| job.view(id))
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
        let _ = self.events.send(Event::Transfer(Box::new(job.view(id))));
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
            if file.state == FileState::Failed {
                reset.push((
                    path.to_string(),
                    FileRecord {
                        state: FileState::Pending,
                        attempts: 0,
                        retry_at: 0,
                        ..file
                    },
                ));
            }
            true
        })?;
        for (path, file) in &reset {
            self.store.put_download_file(id, path, file)?;
        }
        if let Some(job) = self.jobs().get_mut(&id) {
            job.failures.clear();
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
                if let Ok(local) = plan::local_path(&download_dir, &job.record.peer, path) {
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
    /// finished) and every second for retries; emits progress every `PROGRESS_INTERVAL`.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(super::PROGRESS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tick.tick() => {
                    ticks += 1;
                    self.emit_progress();
                    if ticks % 4 != 0 { continue; }
                }
            }
            self.schedule();
        }
    }

    fn emit_progress(&self) {
        let now = Instant::now();
        let mut jobs = self.jobs();
        for (id, job) in jobs.iter_mut() {
            if !job.in_flight.is_empty() {
                let received = job.received();
                job.meter.update(now, received);
                let _ = self.events.send(Event::Transfer(Box::new(job.view(*id))));
            }
        }
    }

    fn schedule(self: &Arc<Self>) {
        let now = Instant::now();
        let mut jobs = self.jobs();
        let mut active_total: usize = jobs.values().map(|j| j.in_flight.len()).sum();
        let mut per_peer: HashMap<String, usize> = HashMap::new();
        // Two requests can name the same file (a folder and a file inside it): only one
        // fetch may write its `.part` at a time.
        let mut busy: HashSet<(String, String)> = HashSet::new();
        for job in jobs.values() {
            *per_peer.entry(job.record.peer.clone()).or_default() += job.in_flight.len();
            busy.extend(
                job.in_flight
                    .keys()
                    .map(|p| (job.record.peer.clone(), p.clone())),
            );
        }
        for id in queue_order(&jobs) {
            let Some(job) = jobs.get_mut(&id) else {
                continue;
            };
            if job.record.state != DownloadState::Queued || job.hold_until.is_some_and(|t| now < t)
            {
                continue;
            }
            job.hold_until = None;
            let Some(peer) = self.peers.get(&job.record.peer) else {
                continue;
            };
            if !job.record.expanded {
                if !job.expanding {
                    job.expanding = true;
                    tokio::spawn(self.clone().expand(id, peer, job.record.path.clone()));
                }
                continue;
            }
            let peer_active = per_peer.entry(job.record.peer.clone()).or_default();
            while active_total < self.limits.total && *peer_active < self.limits.per_peer {
                match self.next_file(id, job, &busy) {
                    Next::File(path, record) => {
                        busy.insert((job.record.peer.clone(), path.clone()));
                        let progress = Arc::new(FileProgress {
                            download: id,
                            size: record.size,
                            received: AtomicU64::new(0),
                            start: AtomicU64::new(0),
                            sources: Mutex::new(Vec::new()),
                        });
                        let task = tokio::spawn(self.clone().fetch_task(
                            id,
                            peer.clone(),
                            path.clone(),
                            record,
                            progress.clone(),
                        ));
                        job.in_flight.insert(
                            path.clone(),
                            InFlight {
                                progress,
                                abort: task.abort_handle(),
                            },
                        );
                        job.cursor = Some(path);
                        active_total += 1;
                        *peer_active += 1;
                    }
                    Next::Wait(until) => {
                        job.hold_until = until;
                        break;
                    }
                    Next::Complete => {
                        job.record.state =
                            if job.failures.is_empty() && job.files_done == job.files_total {
                                DownloadState::Done
                            } else {
                                DownloadState::Failed
                            };
                        if let Err(e) = self.store.put_download(id, &job.record) {
                            tracing::error!("cannot record completion of download {id}: {e}");
                        }
                        tracing::info!(
                            "download {}/{} finished: {:?}",
                            job.record.peer,
                            job.record.path,
                            job.record.state
                        );
                        let _ = self.events.send(Event::Transfer(Box::new(job.view(id))));
                        break;
                    }
                }
            }
        }
    }

    /// Finds the next pending file that is due, scanning after the cursor and then once from the start.
    fn next_file(&self, id: u64, job: &mut Job, busy: &HashSet<(String, String)>) -> Next {
        let now = unix_now();
        let mut earliest_retry: Option<u64> = None;
        let mut blocked = false;
        for pass in 0..2 {
            let mut found = None;
            let after = if pass == 0 { job.cursor.clone() } else { None };
            let scan = self
                .store
                .visit_download_files(id, after.as_deref(), |path, file| {
                    if file.state != FileState::Pending || job.in_flight.contains_key(path) {
                        return true;
                    }
                    if busy.contains(&(job.record.peer.clone(), path.to_string())) {
                        blocked = true;
                        return true;
                    }
                    if file.retry_at <= now {
                        found = Some((path.to_string(), file));
                        return false;
                    }
                    earliest_retry =
                        Some(earliest_retry.map_or(file.retry_at, |e| e.min(file.retry_at)));
                    true
                });
            if let Err(e) = scan {
                tracing::error!("cannot read download {id} from the store: {e}");
                return Next::Wait(Some(Instant::now() + EXPAND_RETRY));
            }
            if let Some((path, file)) = found {
                return Next::File(path, file);
            }
            if after.is_none() {
                break;
            }
        }
        match earliest_retry {
            Some(at) => Next::Wait(Some(
                Instant::now() + Duration::from_secs(at.saturating_sub(now)),
            )),
            None if job.in_flight.is_empty() && !blocked => Next::Complete,
            None => Next::Wait(None),
        }
    }

    async fn expand(self: Arc<Self>, id: u64, peer: Arc<PeerConnection>, path: String) {
        let mut batch_error = None;
        let listed = async {
            let mut listing = rpc::ls(&peer.connection, &path, None, true).await?;
            while let Some(entries) = listing.next().await? {
                let files: Vec<(String, FileRecord)> = entries
                    .into_iter()
                    // Only what lies under the requested path, whatever the peer sends.
                    .filter(|e| {
                        !e.is_dir && (e.path == path || e.path.starts_with(&format!("{path}/")))
                    })
                    .map(|e| {
                        (
                            e.path,
                            FileRecord {
                                size: e.size,
                                mtime: e.mtime,
                                state: FileState::Pending,
                                attempts: 0,
                                error: None,
                                retry_at: 0,
                                root: None,
                                have: None,
                            },
                        )
                    })
                    .collect();
                if let Err(e) = self.store.add_download_files(id, &files) {
                    batch_error = Some(e.to_string());
                    break;
                }
            }
            Ok::<(), RpcError>(())
        }
        .await;
        let mut jobs = self.jobs();
        let Some(job) = jobs.get_mut(&id) else { return };
        job.expanding = false;
        match (listed, batch_error) {
            (Ok(()), None) => {
                job.record.expanded = true;
                job.error = None;
                let (mut fresh, mut files) = (Job::new(job.record.clone()), Vec::new());
                let _ = self.store.visit_download_files(id, None, |p, f| {
                    files.push((p.to_string(), f));
                    true
                });
                for (p, f) in &files {
                    fresh.count_file(p, f);
                }
                job.size = fresh.size;
                job.files_total = fresh.files_total;
                job.files_done = fresh.files_done;
                job.done_bytes = fresh.done_bytes;
                if let Err(e) = self.store.put_download(id, &job.record) {
                    tracing::error!("cannot save download {id}: {e}");
                }
            }
            (Err(RpcError::Refused(e @ (WireError::NotFound | WireError::Forbidden))), _) => {
                job.record.state = DownloadState::Failed;
                job.error = Some(format!("{}/{}: {e}", job.record.peer, job.record.path));
                let _ = self.store.put_download(id, &job.record);
            }
            (Err(e), _) => {
                job.error = Some(format!("listing failed, will retry: {e}"));
                job.hold_until = Some(Instant::now() + EXPAND_RETRY);
            }
            (Ok(()), Some(e)) => {
                job.error = Some(format!("cannot store the listing, will retry: {e}"));
                job.hold_until = Some(Instant::now() + EXPAND_RETRY);
            }
        }
        let _ = self.events.send(Event::Transfer(Box::new(job.view(id))));
        drop(jobs);
        self.wake();
    }

    async fn fetch_task(
        self: Arc<Self>,
        id: u64,
        peer: Arc<PeerConnection>,
        path: String,
        record: FileRecord,
        progress: Arc<FileProgress>,
    ) {
        let mut record = record;
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
        job.in_flight.remove(path);
        for (peer, bytes) in progress
            .sources
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
        {
            *job.source_bytes.entry(peer).or_default() += bytes.load(Ordering::Relaxed);
        }
        if job.files_total == 1 {
            job.root = record.root;
        }
        let now = unix_now();
        match outcome {
            Outcome::Done => {
                record.state = FileState::Done;
                record.error = None;
                job.files_done += 1;
                job.done_bytes += record.size;
                job.disk_full = None;
                job.error = None;
            }
            Outcome::Changed { size, mtime } => {
                tracing::info!(
                    "{}/{path} changed on the peer; restarting it",
                    job.record.peer
                );
                job.size = job.size - record.size + size;
                record.size = size;
                record.mtime = mtime;
                record.attempts += 1;
                record.retry_at = now;
            }
            Outcome::PeerGone(reason) => {
                job.error = Some(format!("{path}: {reason}; waiting for the peer"));
                record.error = Some(reason);
                record.retry_at = now;
            }
            Outcome::Retry(reason) => {
                record.attempts += 1;
                tracing::warn!(
                    "{}/{path} failed (attempt {}): {reason}",
                    job.record.peer,
                    record.attempts
                );
                if record.attempts >= MAX_ATTEMPTS {
                    record.state = FileState::Failed;
                    job.note_failure(path, reason.clone());
                } else {
                    record.retry_at = now + retry_delay(record.attempts);
                    job.error = Some(format!(
                        "{path}: {reason}; retrying in {} s",
                        retry_delay(record.attempts)
                    ));
                }
                record.error = Some(reason);
            }
            Outcome::Permanent(reason) => {
                tracing::warn!("{}/{path} failed: {reason}", job.record.peer);
                record.state = FileState::Failed;
                job.note_failure(path, reason.clone());
                record.error = Some(reason);
            }
            Outcome::DiskFull(reason) => {
                tracing::warn!("download paused, disk full: {reason}");
                job.disk_full = Some(format!("no space left on the download disk: {reason}"));
                job.hold_until = Some(Instant::now() + DISK_FULL_RETRY);
            }
        }
        if record.state != FileState::Done {
            job.cursor = None;
        }
        if record.state == FileState::Pending {
            job.note_held(path, &record);
        } else {
            job.held.remove(path);
        }
        if let Err(e) = self.store.put_download_file(id, path, &record) {
            tracing::error!("cannot save progress of {path}: {e}");
        }
        let _ = self.events.send(Event::Transfer(Box::new(job.view(id))));
        drop(jobs);
        self.wake();
    }

    /// Fetches one file: the verified piece list from the peer the request names, pieces
    /// from every connected peer that has the same content, a whole-file check, then the rename.
    async fn fetch(
        &self,
        peer: &PeerConnection,
        path: &str,
        record: &mut FileRecord,
        progress: &FileProgress,
    ) -> Outcome {
        let download_dir = self.download_dir();
        let local = match plan::local_path(&download_dir, &peer.name, path) {
            Ok(p) => p,
            Err(e) => return Outcome::Permanent(e.to_string()),
        };
        if plan::already_have(
            std::fs::metadata(&local).ok().as_ref(),
            record.size,
            record.mtime,
        ) {
            return Outcome::Done;
        }
        let hashes = match rpc::hashes(&peer.connection, path).await {
            Ok(h) => h,
            Err(RpcError::Refused(
                e @ (WireError::NotFound | WireError::Forbidden | WireError::BadRequest(_)),
            )) => return Outcome::Permanent(e.to_string()),
            Err(e) if e.is_connection_loss() => return Outcome::PeerGone(e.to_string()),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        if let Some(low) = self.below_reserve(&download_dir) {
            return Outcome::DiskFull(low);
        }
        let part = plan::part_path(&local);
        let opened = local
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&part)
            });
        let file = match opened {
            Ok(f) => f,
            Err(e) => return io_outcome(&e, &part),
        };
        let changed = (hashes.size, hashes.mtime) != (record.size, record.mtime);
        if changed || record.root.is_some_and(|r| r != hashes.root) {
            // Another version of the file: nothing in the part file belongs to it.
            record.have = None;
            if let Err(e) = file.set_len(0) {
                return io_outcome(&e, &part);
            }
            if changed {
                record.root = None;
                return Outcome::Changed {
                    size: hashes.size,
                    mtime: hashes.mtime,
                };
            }
        }
        record.root = Some(hashes.root);
        let size = hashes.size;
        // Reserve the blocks up front where the filesystem can (fewer fragments, and a full
        // disk shows early); KEEP_SIZE leaves the length showing how far writing got.
        if let Err(e) = nix::fcntl::fallocate(
            &file,
            nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            0,
            size as i64,
        ) {
            tracing::debug!("no preallocation for {}: {e}", part.display());
        }
        let (pieces, saved) = (hashes.pieces.clone(), record.have.take());
        let recovered = tokio::task::spawn_blocking(move || {
            let have = swarm::recover_pieces(&file, size, &pieces, saved);
            (file, have)
        })
        .await;
        let (file, have) = match recovered {
            Ok((file, Ok(have))) => (file, have),
            Ok((_, Err(e))) => return io_outcome(&e, &part),
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let root = hashes.root;
        let swarm = Arc::new(Swarm::new(file, hashes, have, self.rate.clone()));
        // From here on, peers may read the pieces verified so far.
        let _offer = self
            .partials
            .offer(&swarm, &format!("{}/{path}", peer.name));
        let start = swarm.verified_bytes.load(Ordering::Relaxed);
        progress.start.store(start, Ordering::Relaxed);
        progress.received.store(start, Ordering::Relaxed);

        let mut sources = vec![(
            Source {
                peer: peer.name.clone(),
                connection: peer.connection.clone(),
                path: Some(path.to_string()),
                delivered: Arc::default(),
            },
            None,
        )];
        sources.extend(self.other_holders(&peer.name, root, size).await);
        if let Ok(mut s) = progress.sources.lock() {
            *s = sources
                .iter()
                .map(|(src, _)| (src.peer.clone(), src.delivered.clone()))
                .collect();
        }
        if sources.len() > 1 {
            tracing::info!(
                "{}/{path}: fetching from {} peers ({} still downloading it)",
                peer.name,
                sources.len(),
                sources.iter().filter(|(s, _)| s.path.is_none()).count()
            );
        }
        let mut workers = JoinSet::new();
        let mut partial = Vec::new();
        for (source, pieces) in sources {
            let id = swarm.add_source(pieces);
            if source.path.is_none() {
                partial.push((id, source.connection.clone()));
            }
            let swarm = swarm.clone();
            workers.spawn(async move {
                let end = swarm.work(id, &source).await;
                (source.peer, end)
            });
        }
        // Dropped with the fetch, which stops the asking.
        let mut refresh = JoinSet::new();
        if !partial.is_empty() {
            refresh.spawn(refresh_availability(swarm.clone(), partial));
        }
        let mut ends = Vec::new();
        let mut tick = tokio::time::interval(super::PROGRESS_INTERVAL);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                done = workers.join_next() => match done {
                    Some(Ok((source_peer, end))) => {
                        if let SourceEnd::BadPiece(piece) = &end {
                            tracing::warn!("{source_peer} served a bad piece {piece} of {path}; dropped as a source for it");
                        }
                        ends.push(end);
                    }
                    Some(Err(e)) => ends.push(SourceEnd::Failed(e.to_string())),
                    None => break,
                },
                _ = tick.tick() => {
                    ticks += 1;
                    progress.received.store(swarm.verified_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
                    // The bitfield is only a hint (recovery re-checks the part file), so a
                    // save every couple of seconds is plenty.
                    if ticks % 4 == 0 {
                        if let Some(low) = self.below_reserve(&download_dir) {
                            workers.abort_all();
                            record.have = Some(swarm.have());
                            return Outcome::DiskFull(low);
                        }
                    }
                    if ticks % 8 == 0 {
                        record.have = Some(swarm.have());
                        if let Err(e) = self.store.put_download_file(progress.download, path, record) {
                            tracing::debug!("cannot save progress of {path}: {e}");
                        }
                    }
                }
            }
            // Every piece is in: a source still waiting on a dead connection must not hold
            // the file back until its idle timeout.
            if swarm.complete() {
                workers.abort_all();
                break;
            }
        }
        progress.received.store(
            swarm.verified_bytes.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        record.have = Some(swarm.have());
        if !swarm.complete() {
            return match ends.into_iter().find(|e| !matches!(e, SourceEnd::Finished)) {
                Some(SourceEnd::Disk(e)) => io_outcome(&e, &part),
                Some(SourceEnd::BadPiece(_)) => {
                    Outcome::Retry("every source served bad pieces".into())
                }
                Some(SourceEnd::Failed(reason)) if peer.connection.close_reason().is_some() => {
                    Outcome::PeerGone(reason)
                }
                Some(SourceEnd::Failed(reason)) => Outcome::Retry(reason),
                _ => Outcome::Retry("no source could supply the missing pieces".into()),
            };
        }
        let file = swarm.file.clone();
        let checked = tokio::task::spawn_blocking(move || {
            // A longer leftover part (an older version) must not keep its tail.
            file.set_len(size)?;
            let whole = swarm::verify_whole(&file, size, &root)?;
            if whole {
                file.sync_all()?;
                swarm::forget_synced(&file, size);
            }
            Ok::<bool, std::io::Error>(whole)
        })
        .await;
        match checked {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                // Something on disk changed under us: start the file over rather than trust it.
                record.have = None;
                return Outcome::Retry(
                    "the finished file did not match its root hash; fetching it again".into(),
                );
            }
            Ok(Err(e)) => return io_outcome(&e, &part),
            Err(e) => return Outcome::Retry(e.to_string()),
        }
        if let Err(e) = std::fs::rename(&part, &local) {
            return io_outcome(&e, &local);
        }
        // The remote mtime marks the file as this exact version: asking for it again is free.
        let mtime = UNIX_EPOCH + Duration::from_secs(record.mtime);
        if let Err(e) = std::fs::File::options()
            .write(true)
            .open(&local)
            .and_then(|f| f.set_modified(mtime))
        {
            tracing::debug!("cannot set mtime of {}: {e}", local.display());
        }
        record.have = None;
        Outcome::Done
    }

    /// Why downloads must wait now, if the download disk is below the free-space reserve.
    pub fn download_disk_low(&self) -> Option<String> {
        self.below_reserve(&self.download_dir())
    }

    /// Why downloads must wait, if the download disk is below the free-space reserve.
    fn below_reserve(&self, download_dir: &std::path::Path) -> Option<String> {
        let free = free_space(download_dir)?;
        (free < self.limits.min_free_space).then(|| {
            format!(
                "{} MiB free, below the {} MiB reserve (--min-free-space)",
                free / (1024 * 1024),
                self.limits.min_free_space / (1024 * 1024)
            )
        })
    }

    /// Other connected peers holding content with this root: extra sources for the swarm,
    /// each with the pieces it holds if it is still downloading the file itself.
    async fn other_holders(
        &self,
        named: &str,
        root: Hash,
        size: u64,
    ) -> Vec<(Source, Option<Bitfield>)> {
        let mut asks = JoinSet::new();
        for other in self.peers.all().into_iter().filter(|p| p.name != named) {
            asks.spawn(async move {
                let found =
                    tokio::time::timeout(HAVE_TIMEOUT, rpc::have(&other.connection, root)).await;
                let (path, pieces) = match found {
                    Ok(Ok(Some(holding))) if holding.size() == size => match holding {
                        Holding::Complete { path, .. } => (Some(path), None),
                        Holding::Partial { pieces, .. } => (None, Some(pieces)),
                    },
                    _ => return None,
                };
                let source = Source {
                    peer: other.name.clone(),
                    connection: other.connection.clone(),
                    path,
                    delivered: Arc::default(),
                };
                Some((source, pieces))
            });
        }
        let mut sources = Vec::new();
        while let Some(found) = asks.join_next().await {
            if let Ok(Some(source)) = found {
                sources.push(source);
            }
        }
        sources.sort_by(|(a, _), (b, _)| a.peer.cmp(&b.peer));
        sources
    }
}

/// Asks the partial sources of a fetch which pieces they hold, every
/// `AVAILABILITY_INTERVAL`, until none is left at work. Answers other than a bitfield for
/// the same size leave a source's availability as it was: a source that can no longer serve
/// is dropped when its next read is refused.
async fn refresh_availability(swarm: Arc<Swarm>, mut partial: Vec<(SourceId, quinn::Connection)>) {
    loop {
        tokio::time::sleep(AVAILABILITY_INTERVAL).await;
        partial.retain(|(id, _)| swarm.is_partial_and_active(*id));
        if partial.is_empty() {
            return;
        }
        let root = swarm.root;
        let asks = partial.iter().map(|(id, connection)| async move {
            let answer = tokio::time::timeout(HAVE_TIMEOUT, rpc::have(connection, root)).await;
            (*id, answer)
        });
        for (id, answer) in futures_util::future::join_all(asks).await {
            if let Ok(Ok(Some(Holding::Partial { size, pieces }))) = answer {
                if size == swarm.size {
                    swarm.set_available(id, pieces);
                }
            }
        }
    }
}

fn io_outcome(e: &std::io::Error, path: &std::path::Path) -> Outcome {
    if e.kind() == std::io::ErrorKind::StorageFull {
        Outcome::DiskFull(format!("{}: {e}", path.display()))
    } else {
        Outcome::Retry(format!("{}: {e}", path.display()))
    }
}
