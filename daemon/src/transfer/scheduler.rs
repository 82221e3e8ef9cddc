//! The scheduler: when to expand a request into files, which file to fetch next under
//! the total and per-peer slots, and how a finished fetch is recorded. The choices are
//! pure (`queue`, `outcome`); this is the loop that applies them to `Downloads`' jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::download::{stored_files, unix_now, Downloads};
use super::job::{FileProgress, InFlight, Job};
use super::outcome::{self, Outcome};
use super::queue::{self, Next, PendingScan, Slots};
use crate::events::Event;
use crate::net::peers::PeerConnection;
use crate::net::rpc::{self, RpcError};
use crate::store::{DownloadState, FileRecord, FileState, StoreError};
use crate::wire::WireError;

const EXPAND_RETRY: Duration = Duration::from_secs(10);
/// With nothing in flight and nothing held, the queue still looks again this often, in
/// case a change went unsignalled.
const IDLE_SAFETY_NET: Duration = Duration::from_secs(60);

impl Downloads {
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

    pub(super) fn send_view(&self, id: u64, job: &Job) {
        let _ = self
            .events
            .send(Event::Transfer(Box::new(self.view_of(id, job))));
    }

    fn schedule(self: &Arc<Self>) {
        let now = Instant::now();
        let mut jobs = self.jobs();
        let limits = self.limits();
        let mut slots = Slots::new(limits.total, limits.per_peer);
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
