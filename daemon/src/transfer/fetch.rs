//! Fetching one file of a download: the verified piece list from the peer the download
//! names, the `.part` for that version, every connected peer holding the same content as a
//! source of the swarm, progress saved while it runs, and the whole-file check and rename.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use portable_atomic::AtomicU64;
use tokio::task::JoinSet;

use super::download::Downloads;
use super::job::FileProgress;
use super::outcome::Outcome;
use super::part::{self, Opened, PartError};
use super::peer_source::{other_holders, refresh_availability, PeerSource};
use super::plan;
use super::swarm::{SourceEnd, Swarm};
use crate::content::{Bitfield, Hash};
use crate::net::peers::PeerConnection;
use crate::net::rpc;
use crate::store::FileRecord;

/// Progress ticks between checks of the free-space reserve (about every second).
const RESERVE_CHECK_TICKS: u64 = 4;
/// Progress ticks between saves of the bitfield (about every 2 s). It is only a hint, as
/// recovery re-checks the part file, so this is plenty.
const SAVE_TICKS: u64 = 8;

type Sources = Vec<(PeerSource, Option<Bitfield>)>;

impl Downloads {
    /// Fetches one file: the verified piece list from the peer the request names, pieces
    /// from every connected peer that has the same content, a whole-file check, then the
    /// rename. `record` comes back as it should be stored.
    pub(super) async fn fetch(
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
        let found = std::fs::metadata(&local).ok();
        if plan::already_have(found.as_ref(), record.size, record.mtime) {
            return Outcome::Done;
        }
        let part = plan::part_path(&local);
        // The size listed first, then the one the piece list is for: neither is trusted with
        // memory or disk before it fits.
        if let Err(held) = self.room_for(record.size, &part, &download_dir) {
            return held;
        }
        let hashes = match rpc::hashes(&peer.connection, path).await {
            Ok(h) => h,
            Err(e) => return Outcome::of_hashes(e),
        };
        if let Err(held) = self.room_for(hashes.size, &part, &download_dir) {
            return held;
        }
        let (file, have) = match part::open(&local, &part, &hashes, record).await {
            Ok(Opened::Ready { file, have }) => (file, have),
            Ok(Opened::Changed { size, mtime }) => return Outcome::Changed { size, mtime },
            Err(e) => return e.into(),
        };
        let (size, root) = (hashes.size, hashes.root);
        let swarm = Arc::new(Swarm::new(file, hashes, have, self.rate.clone()));
        // From here on, peers may read the pieces verified so far.
        let _offer = self
            .partials
            .offer(&swarm, &format!("{}/{path}", peer.name));
        let start = swarm.verified_bytes.load(Ordering::Relaxed);
        progress.start.store(start, Ordering::Relaxed);
        progress.received.store(start, Ordering::Relaxed);
        progress.verified.store(start, Ordering::Relaxed);
        let sources = self.sources(peer, path, root, size).await;
        let ends = match self
            .run_swarm(&swarm, sources, path, record, progress)
            .await
        {
            Ok(ends) => ends,
            Err(held) => return held,
        };
        if !swarm.complete() {
            let named_peer_gone = peer.connection.close_reason().is_some();
            return Outcome::of_unfinished(ends, &part, named_peer_gone);
        }
        let file = swarm.file.clone();
        match part::finish(file, &part, &local, size, root, record.mtime).await {
            Ok(()) => {
                record.have = None;
                Outcome::Done
            }
            Err(e) => {
                // Something on disk changed under us: start the file over rather than trust it.
                if matches!(e, PartError::NotWhole) {
                    record.have = None;
                }
                e.into()
            }
        }
    }

    /// The named peer with the requested path, then every other connected peer that holds
    /// the content.
    async fn sources(&self, peer: &PeerConnection, path: &str, root: Hash, size: u64) -> Sources {
        let named = PeerSource {
            peer: peer.name.clone(),
            connection: peer.connection.clone(),
            path: Some(path.to_string()),
            root,
        };
        let mut sources = vec![(named, None)];
        sources.extend(other_holders(&self.peers, &peer.name, root, size).await);
        if sources.len() > 1 {
            tracing::info!(
                "{}/{path}: fetching from {} peers ({} still downloading it)",
                peer.name,
                sources.len(),
                sources.iter().filter(|(s, _)| s.path.is_none()).count()
            );
        }
        sources
    }

    /// Runs the swarm until every source has stopped or the file is complete, meanwhile
    /// publishing progress, saving the bitfield and watching the free-space reserve (`Err`
    /// when it holds the download). Returns how each source ended; `record.have` is the
    /// swarm's bitfield.
    async fn run_swarm(
        &self,
        swarm: &Arc<Swarm>,
        sources: Sources,
        path: &str,
        record: &mut FileRecord,
        progress: &FileProgress,
    ) -> Result<Vec<SourceEnd>, Outcome> {
        let download_dir = self.download_dir();
        // Dropped on return, which stops the asking (and any worker still running).
        let (mut workers, _refresh) = start_workers(swarm, sources, progress);
        let mut ends = Vec::new();
        let mut tick = tokio::time::interval(super::PROGRESS_INTERVAL);
        let mut ticks = 0u64;
        // Every piece in: a source still waiting on a dead connection must not hold the
        // file back until its idle timeout.
        while !swarm.complete() {
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
                    show_progress(swarm, progress);
                    if ticks % RESERVE_CHECK_TICKS == 0 {
                        if let Some(low) = self.below_reserve(&download_dir) {
                            record.have = Some(swarm.have());
                            return Err(Outcome::DiskFull(low));
                        }
                    }
                    if ticks % SAVE_TICKS == 0 {
                        record.have = Some(swarm.have());
                        if let Err(e) = self.store.put_download_file(progress.download, path, record) {
                            tracing::debug!("cannot save progress of {path}: {e}");
                        }
                    }
                }
            }
        }
        show_progress(swarm, progress);
        record.have = Some(swarm.have());
        Ok(ends)
    }
}

/// Publishes the swarm's counters; the scheduler turns them into events every 0.25 s.
fn show_progress(swarm: &Swarm, progress: &FileProgress) {
    let verified = swarm.verified_bytes.load(Ordering::Relaxed);
    progress.verified.store(verified, Ordering::Relaxed);
    progress
        .received
        .store(swarm.received_bytes(), Ordering::Relaxed);
}

/// A worker task per source, and for partial sources a task asking for their bitfields.
fn start_workers(
    swarm: &Arc<Swarm>,
    sources: Sources,
    progress: &FileProgress,
) -> (JoinSet<(String, SourceEnd)>, JoinSet<()>) {
    let mut workers = JoinSet::new();
    let mut partial = Vec::new();
    let mut counters = Vec::new();
    for (source, pieces) in sources {
        let id = swarm.add_source(pieces);
        if source.path.is_none() {
            partial.push((id, source.connection.clone()));
        }
        let delivered = Arc::new(AtomicU64::new(0));
        counters.push((source.peer.clone(), delivered.clone()));
        let swarm = swarm.clone();
        workers.spawn(async move {
            let end = swarm.work(id, &source, &delivered).await;
            (source.peer, end)
        });
    }
    if let Ok(mut shown) = progress.sources.lock() {
        *shown = counters;
    }
    let mut refresh = JoinSet::new();
    if !partial.is_empty() {
        refresh.spawn(refresh_availability(swarm.clone(), partial));
    }
    (workers, refresh)
}
