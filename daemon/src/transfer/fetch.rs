//! Fetching one file of a download: the verified piece list from the peer the download
//! names, the `.part` for that version, every connected peer holding the same content as a
//! source of the swarm, progress saved while it runs, and the whole-file check and rename.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use portable_atomic::AtomicU64;
use tokio::sync::broadcast;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::download::Downloads;
use super::job::FileProgress;
use super::outcome::Outcome;
use super::part::{self, Opened, PartError};
use super::peer_source::{gone, holder, other_holders, refresh_availability, PeerSource};
use super::plan;
use super::prefetch::{read_ahead, ReadAhead, Target, READ_AHEAD_AFTER};
use super::swarm::{SourceEnd, Swarm};
use crate::content::{Bitfield, Hash};
use crate::net::peers::PeerConnection;
use crate::net::rpc::{self, ContentHashes, RpcError};
use crate::store::FileRecord;
use harddrive_party_core::membership::{Membership, MAX_SOURCES};

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
        let (download_dir, local) = match self.placement(progress.download, path) {
            Ok(placed) => placed,
            Err(e) => return Outcome::Permanent(e),
        };
        let from = format!("{}/{path}", peer.name);
        let found = std::fs::metadata(&local).ok();
        if plan::already_have(found.as_ref(), record.size, record.mtime) {
            self.shelve(&local, record.size, from);
            return Outcome::Done;
        }
        let part = plan::part_path(&local);
        // The size listed first, then the one the piece list is for: neither is trusted with
        // memory or disk (nor read ahead) before it fits.
        if let Err(held) = self.room_for(record.size, &part, &download_dir) {
            return held;
        }
        let hashes = match self.piece_list(peer, path, record, &part, progress).await {
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
        let _offer = self.partials.offer(&swarm, &from);
        let start = swarm.verified_bytes.load(Ordering::Relaxed);
        progress.start.store(start, Ordering::Relaxed);
        progress.received.store(start, Ordering::Relaxed);
        progress.verified.store(start, Ordering::Relaxed);
        // Before the first round of asks, so no news in between is missed.
        let news = self.news.subscribe();
        let sources = self.sources(peer, path, root, size).await;
        let ends = match self
            .run_swarm(&swarm, sources, news, path, record, progress)
            .await
        {
            Ok(ends) => ends,
            Err(held) => return held,
        };
        if !swarm.complete() {
            let named_peer_gone = gone(&peer.connection, root).await;
            return Outcome::of_unfinished(ends, &part, named_peer_gone);
        }
        let file = swarm.file.clone();
        match part::finish(file, &part, &local, size, root, record.mtime).await {
            Ok(()) => {
                record.have = None;
                self.shelve(&local, size, from);
                let (shares, pieces) = (self.shares.clone(), swarm.pieces.to_vec());
                let _ = tokio::task::spawn_blocking(move || {
                    shares.adopt_hashes(&local, size, root, pieces)
                })
                .await;
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

    /// The piece list from the named peer. A new file whose list is slow to come (its sharer
    /// is reading it to hash it) is read ahead meanwhile (`prefetch.rs`), and the pieces read
    /// that match the list become `record.have`, which the `.part` opens with.
    async fn piece_list(
        &self,
        peer: &PeerConnection,
        path: &str,
        record: &mut FileRecord,
        part: &Path,
        progress: &FileProgress,
    ) -> Result<ContentHashes, RpcError> {
        let list = rpc::hashes(&peer.connection, path);
        tokio::pin!(list);
        let new_file = record.root.is_none() && record.have.is_none() && !part.exists();
        if !new_file {
            return list.await;
        }
        if let Ok(answer) = tokio::time::timeout(READ_AHEAD_AFTER, &mut list).await {
            return answer;
        }
        let (stop, mut read) = (Notify::new(), ReadAhead::default());
        let answer = {
            let target = Target {
                connection: &peer.connection,
                peer: &peer.name,
                path,
                size: record.size,
                part,
            };
            let reading = read_ahead(target, &self.rate, progress, &stop, &mut read);
            tokio::pin!(reading);
            let list_first = tokio::select! {
                answer = &mut list => Some(answer),
                () = &mut reading => None,
            };
            match list_first {
                Some(answer) => {
                    stop.notify_one();
                    reading.await;
                    answer
                }
                None => list.await,
            }
        };
        if let Ok(list) = &answer {
            if (list.size, list.mtime) == (record.size, record.mtime) {
                record.have = read.verified(list.size, &list.pieces);
            }
        }
        answer
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
        sources.truncate(MAX_SOURCES);
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
    /// asking peers with news whether they joined, publishing progress, saving the bitfield
    /// and watching the free-space reserve (`Err` when it holds the download). Returns how
    /// each source ended; `record.have` is the swarm's bitfield.
    async fn run_swarm(
        &self,
        swarm: &Arc<Swarm>,
        sources: Sources,
        mut news: broadcast::Receiver<String>,
        path: &str,
        record: &mut FileRecord,
        progress: &FileProgress,
    ) -> Result<Vec<SourceEnd>, Outcome> {
        let download_dir = self
            .placement(progress.download, path)
            .map_or_else(|_| self.download_dir(), |(dir, _)| dir);
        let began = Instant::now();
        // Dropped on return, which stops the asking (and any worker still running).
        let mut crew = Crew {
            swarm,
            progress,
            workers: JoinSet::new(),
            refresh: JoinSet::new(),
            asks: JoinSet::new(),
            membership: Membership::default(),
        };
        // The first round asked every connected peer.
        for other in self.peers.all() {
            crew.membership.asked(&other.name, 0);
        }
        for (source, pieces) in sources {
            crew.join(source, pieces);
        }
        let mut ends = Vec::new();
        let mut tick = tokio::time::interval(super::PROGRESS_INTERVAL);
        let mut ticks = 0u64;
        // Every piece in: a source still waiting on a dead connection must not hold the
        // file back until its idle timeout.
        while !swarm.complete() {
            tokio::select! {
                Some(done) = crew.workers.join_next(), if !crew.workers.is_empty() => match done {
                    Ok((source_peer, end)) => {
                        let bad = matches!(end, SourceEnd::BadPiece(_));
                        if let SourceEnd::BadPiece(piece) = &end {
                            tracing::warn!("{source_peer} served a bad piece {piece} of {path}; dropped as a source for it");
                        }
                        crew.membership.left(&source_peer, bad);
                        ends.push(end);
                    }
                    Err(e) => ends.push(SourceEnd::Failed(e.to_string())),
                },
                Some(found) = crew.asks.join_next(), if !crew.asks.is_empty() => {
                    if let Ok(Some((source, pieces))) = found {
                        tracing::info!("{path}: {} joins the swarm", source.peer);
                        crew.join(source, pieces);
                    }
                }
                heard = news.recv() => match heard {
                    Ok(peer) => crew.membership.news(&peer),
                    // Lagged behind the ring (closed cannot happen: `self` holds the sender).
                    Err(_) => self.peers.all().iter().for_each(|p| crew.membership.news(&p.name)),
                },
                _ = tick.tick() => {
                    ticks += 1;
                    let elapsed_ms = began.elapsed().as_millis() as u64;
                    self.on_tick(&mut crew, ticks, elapsed_ms, &download_dir, path, record)?;
                }
            }
            if crew.workers.is_empty() && crew.asks.is_empty() {
                break;
            }
        }
        show_progress(swarm, progress);
        record.have = Some(swarm.have());
        Ok(ends)
    }
}

impl Downloads {
    /// Each progress tick of a swarm: counters published, peers due asked again whether
    /// they hold the file, and now and then the disk reserve checked and progress saved.
    fn on_tick(
        &self,
        crew: &mut Crew,
        ticks: u64,
        elapsed_ms: u64,
        download_dir: &Path,
        path: &str,
        record: &mut FileRecord,
    ) -> Result<(), Outcome> {
        let swarm = crew.swarm;
        show_progress(swarm, crew.progress);
        for peer in crew.membership.due(elapsed_ms) {
            if let Some(other) = self.peers.get(&peer) {
                crew.asks.spawn(holder(other, swarm.root, swarm.size));
            }
        }
        if ticks % RESERVE_CHECK_TICKS == 0 {
            if let Some(low) = self.below_reserve(download_dir) {
                record.have = Some(swarm.have());
                return Err(Outcome::DiskFull(low));
            }
        }
        if ticks % SAVE_TICKS == 0 {
            record.have = Some(swarm.have());
            if let Err(e) = self
                .store
                .put_download_file(crew.progress.download, path, record, true)
            {
                tracing::debug!("cannot save progress of {path}: {e}");
            }
        }
        Ok(())
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

/// The running parts of one swarm: a worker per source, a task per partial source asking
/// for its bitfield, the `Have` asks of peers with news, and who is in.
struct Crew<'a> {
    swarm: &'a Arc<Swarm>,
    progress: &'a FileProgress,
    workers: JoinSet<(String, SourceEnd)>,
    refresh: JoinSet<()>,
    asks: JoinSet<Option<(PeerSource, Option<Bitfield>)>>,
    membership: Membership,
}

impl Crew<'_> {
    /// Starts a worker for `source`. A peer that joins again counts on in its old counter,
    /// so the list shown stays one entry per peer.
    fn join(&mut self, source: PeerSource, pieces: Option<Bitfield>) {
        let id = self.swarm.add_source(pieces);
        if source.path.is_none() {
            self.refresh.spawn(refresh_availability(
                self.swarm.clone(),
                id,
                source.connection.clone(),
            ));
        }
        self.membership.joined(&source.peer);
        let delivered = match self.progress.sources.lock() {
            Ok(mut shown) => match shown.iter().find(|(peer, _)| *peer == source.peer) {
                Some((_, counter)) => counter.clone(),
                None => {
                    let counter = Arc::new(AtomicU64::new(0));
                    shown.push((source.peer.clone(), counter.clone()));
                    counter
                }
            },
            Err(_) => Arc::new(AtomicU64::new(0)),
        };
        let swarm = self.swarm.clone();
        self.workers.spawn(async move {
            let end = swarm.work(id, &source, &delivered).await;
            (source.peer, end)
        });
    }
}
