//! Fetching one file from one or more sources, piece by piece. Every piece is checked
//! against the verified piece list before it is written at its offset; the whole file is
//! re-hashed before it is marked complete. The piece picker is a pure struct.

use portable_atomic::AtomicU64;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::buffers::BUFFERS;
use super::upload::OpenRange;
use crate::content::{hash_piece, piece_count, piece_len, Bitfield, FileHasher, Hash, PIECE_SIZE};
use crate::net::rpc::{self, ContentHashes};
use crate::wire::{WireError, RESET_FILE_CHANGED};

/// Pieces asked for in one `Read`: long enough to amortise a request, short enough that a
/// slow source holds little back.
pub const RUN_PIECES: u64 = 8;
/// Piece checks (hash + write) a source may have in flight while it keeps reading.
const VERIFY_DEPTH: usize = 4;
/// A source that goes silent this long mid-run is dropped for the file (a peer claiming
/// content it cannot serve, or a wedged one); its pieces go to the others.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

pub type SourceId = usize;

/// What a source's worker should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Run(Range<u64>),
    /// Nothing for this source right now; ask again when pieces or availability change.
    Wait,
    /// Nothing left for this source to do.
    Done,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    /// The pieces a partial source (a peer still downloading the file) holds; `None` for a
    /// source holding the whole file.
    pieces: Option<Bitfield>,
    ended: bool,
    bad: bool,
}

/// Which pieces are wanted, being fetched (and by whom), or done; which pieces each source
/// can supply; and which sources are bad.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    have: Bitfield,
    in_flight: HashMap<u64, HashSet<SourceId>>,
    sources: Vec<SourceState>,
}

impl PiecePicker {
    pub fn new(have: Bitfield) -> Self {
        Self {
            have,
            in_flight: HashMap::new(),
            sources: Vec::new(),
        }
    }

    /// Adds a source holding the whole file (`None`) or only `pieces`; ids count from 0.
    pub fn add_source(&mut self, pieces: Option<Bitfield>) -> SourceId {
        let len = self.have.len();
        self.sources.push(SourceState {
            pieces: pieces.map(|p| {
                if p.len() == len {
                    p
                } else {
                    Bitfield::new(len)
                }
            }),
            ..SourceState::default()
        });
        self.sources.len() - 1
    }

    /// A partial source reported the pieces it holds now. A bitfield for another piece
    /// count is ignored, and a complete source stays complete.
    pub fn set_available(&mut self, source: SourceId, pieces: Bitfield) {
        if pieces.len() != self.have.len() {
            return;
        }
        if let Some(SourceState {
            pieces: Some(held), ..
        }) = self.sources.get_mut(source)
        {
            *held = pieces;
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn complete(&self) -> bool {
        self.have.complete()
    }

    pub fn is_bad(&self, source: SourceId) -> bool {
        self.sources.get(source).is_none_or(|s| s.bad)
    }

    /// A partial source still worth asking for its availability.
    pub fn is_partial_and_active(&self, source: SourceId) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.pieces.is_some() && !s.ended && !s.bad)
    }

    fn holds(&self, source: SourceId, piece: u64) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.pieces.as_ref().is_none_or(|held| held.get(piece)))
    }

    /// A source holding the whole file is still at work, so a partial source with nothing
    /// to give yet may get more: waiting for it is bounded by that source.
    fn complete_source_active(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.pieces.is_none() && !s.ended && !s.bad)
    }

    /// The next step for `source`: a run of missing pieces it holds, to fetch; wait; or done.
    pub fn pick(&mut self, source: SourceId, max: u64) -> Pick {
        if self.complete() || self.is_bad(source) {
            return Pick::Done;
        }
        if let Some(run) = self.next_run(source, max) {
            return Pick::Run(run);
        }
        let partial = self.sources.get(source).is_some_and(|s| s.pieces.is_some());
        if partial && !self.complete_source_active() {
            return Pick::Done;
        }
        Pick::Wait
    }

    /// The first missing pieces `source` holds that nobody is fetching, up to `max` in a
    /// row. When every such piece is already being fetched (endgame), a piece held by
    /// another source is duplicated, so a stalled source cannot hold the file back.
    fn next_run(&mut self, source: SourceId, max: u64) -> Option<Range<u64>> {
        let free = self
            .have
            .missing()
            .find(|p| !self.in_flight.contains_key(p) && self.holds(source, *p));
        let run = match free {
            Some(first) => {
                let mut end = first + 1;
                while end < self.have.len()
                    && end - first < max
                    && !self.have.get(end)
                    && !self.in_flight.contains_key(&end)
                    && self.holds(source, end)
                {
                    end += 1;
                }
                first..end
            }
            None => {
                let stolen = self.have.missing().find(|p| {
                    self.holds(source, *p)
                        && self.in_flight.get(p).is_some_and(|s| !s.contains(&source))
                })?;
                stolen..stolen + 1
            }
        };
        for p in run.clone() {
            self.in_flight.entry(p).or_default().insert(source);
        }
        Some(run)
    }

    /// A verified piece arrived. Returns false if another source had already delivered it.
    pub fn completed(&mut self, piece: u64) -> bool {
        self.in_flight.remove(&piece);
        let new = !self.have.get(piece);
        self.have.set(piece);
        new
    }

    /// `source` will not deliver these pieces after all.
    pub fn abandon(&mut self, source: SourceId, pieces: Range<u64>) {
        for p in pieces {
            if let Some(holders) = self.in_flight.get_mut(&p) {
                holders.remove(&source);
                if holders.is_empty() {
                    self.in_flight.remove(&p);
                }
            }
        }
    }

    /// `source`'s worker has stopped: partial sources waiting on it may stop too.
    pub fn ended(&mut self, source: SourceId) {
        if let Some(s) = self.sources.get_mut(source) {
            s.ended = true;
        }
    }

    /// `source` served bytes that do not match the list: it is dropped for this file.
    pub fn mark_bad(&mut self, source: SourceId) {
        if let Some(s) = self.sources.get_mut(source) {
            s.bad = true;
        }
        let held: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, s)| s.contains(&source))
            .map(|(p, _)| *p)
            .collect();
        for p in held {
            self.abandon(source, p..p + 1);
        }
    }
}

/// Whether a partial holder serves `pieces`: only a range within the file whose every
/// piece it holds verified.
pub fn check_served(have: &Bitfield, pieces: Range<u64>) -> Result<(), WireError> {
    if pieces.end > have.len() {
        return Err(WireError::BadRequest(format!(
            "piece range ends past the file's {} pieces",
            have.len()
        )));
    }
    if !have.holds_all(pieces) {
        return Err(WireError::NotHeld);
    }
    Ok(())
}

/// One place the file can come from.
#[derive(Clone)]
pub struct Source {
    pub peer: String,
    pub connection: quinn::Connection,
    /// The file's path on a peer holding it whole (read with `Read`); `None` for a peer
    /// still downloading it (read by root with `ReadPieces`).
    pub path: Option<String>,
    /// Bytes of verified pieces this source delivered.
    pub delivered: Arc<AtomicU64>,
}

/// What every worker of one file shares.
pub struct Swarm {
    pub file: Arc<File>,
    /// One piece write at a time. Writes to one file serialize on its inode lock anyway, and
    /// the kernel's waiters spin on that lock while the holder copies a whole piece (9 % of
    /// the receiver's CPU in a 2 GiB profile); waiting here sleeps instead. Hashing, the
    /// larger cost, stays parallel.
    writes: Arc<Mutex<()>>,
    pub size: u64,
    /// The remote file's mtime: the version being fetched.
    pub mtime: u64,
    pub root: Hash,
    pub pieces: Arc<Vec<Hash>>,
    pub picker: Mutex<PiecePicker>,
    pub progress: Notify,
    /// Verified bytes on disk.
    pub verified_bytes: AtomicU64,
    pub rate: Arc<super::rate::RateLimiter>,
}

#[derive(Debug)]
pub enum SourceEnd {
    /// Nothing left for this source to do.
    Finished,
    /// The source sent a piece that does not match its hash.
    BadPiece(u64),
    /// The connection or stream failed.
    Failed(String),
    /// Writing to disk failed: the whole file stops.
    Disk(std::io::Error),
}

fn lock(picker: &Mutex<PiecePicker>) -> std::sync::MutexGuard<'_, PiecePicker> {
    picker.lock().unwrap_or_else(|e| e.into_inner())
}

impl Swarm {
    pub fn new(
        file: File,
        content: ContentHashes,
        have: Bitfield,
        rate: Arc<super::rate::RateLimiter>,
    ) -> Self {
        let size = content.size;
        let verified = (0..have.len())
            .filter(|p| have.get(*p))
            .map(|p| piece_len(size, p))
            .sum();
        Self {
            file: Arc::new(file),
            writes: Arc::default(),
            size,
            mtime: content.mtime,
            root: content.root,
            pieces: Arc::new(content.pieces),
            picker: Mutex::new(PiecePicker::new(have)),
            progress: Notify::new(),
            verified_bytes: AtomicU64::new(verified),
            rate,
        }
    }

    pub fn have(&self) -> Bitfield {
        lock(&self.picker).have().clone()
    }

    pub fn complete(&self) -> bool {
        lock(&self.picker).complete()
    }

    pub fn add_source(&self, pieces: Option<Bitfield>) -> SourceId {
        lock(&self.picker).add_source(pieces)
    }

    pub fn is_partial_and_active(&self, source: SourceId) -> bool {
        lock(&self.picker).is_partial_and_active(source)
    }

    /// New availability from a partial source; its waiting worker looks again at once.
    pub fn set_available(&self, source: SourceId, pieces: Bitfield) {
        lock(&self.picker).set_available(source, pieces);
        self.progress.notify_waiters();
    }

    /// Opens pieces of this file for a peer: only verified ones, checked again as they are
    /// read, so a `.part` damaged on disk is never passed on.
    pub fn open_pieces(&self, pieces: Range<u64>) -> Result<OpenRange, WireError> {
        check_served(lock(&self.picker).have(), pieces.clone())?;
        Ok(OpenRange::pieces(
            self.file.clone(),
            self.size,
            self.mtime,
            pieces,
            self.pieces.clone(),
        ))
    }

    /// Fetches runs from `source` (added with `add_source`) until nothing is left for it,
    /// or it fails.
    pub async fn work(&self, id: SourceId, source: &Source) -> SourceEnd {
        let end = self.work_runs(id, source).await;
        lock(&self.picker).ended(id);
        self.progress.notify_waiters();
        end
    }

    async fn work_runs(&self, id: SourceId, source: &Source) -> SourceEnd {
        loop {
            let pick = lock(&self.picker).pick(id, RUN_PIECES);
            let run = match pick {
                Pick::Run(run) => run,
                Pick::Done => return SourceEnd::Finished,
                Pick::Wait => {
                    // Everything this source can give is being fetched already; wait for news.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), self.progress.notified())
                            .await;
                    continue;
                }
            };
            let outcome = self.fetch_run(source, run.clone()).await;
            lock(&self.picker).abandon(id, run);
            self.progress.notify_waiters();
            match outcome {
                Ok(()) => {}
                Err(SourceEnd::BadPiece(piece)) => {
                    lock(&self.picker).mark_bad(id);
                    return SourceEnd::BadPiece(piece);
                }
                Err(end) => return end,
            }
        }
    }

    async fn fetch_run(&self, source: &Source, run: Range<u64>) -> Result<(), SourceEnd> {
        let reply = match &source.path {
            Some(path) => {
                let start = run.start * PIECE_SIZE;
                let end = (run.end * PIECE_SIZE).min(self.size);
                rpc::read(&source.connection, path, start, Some(end)).await
            }
            None => rpc::read_pieces(&source.connection, self.root, run.clone()).await,
        };
        let what = source.path.as_deref().unwrap_or("the partial file");
        let (size, _mtime, mut recv) = reply.map_err(|e| SourceEnd::Failed(e.to_string()))?;
        if size != self.size {
            return Err(SourceEnd::Failed(format!(
                "{what} changed on {}: {size} bytes now, {} expected",
                source.peer, self.size
            )));
        }
        let mut checks: JoinSet<Result<Option<u64>, SourceEnd>> = JoinSet::new();
        for piece in run {
            let want = piece_len(self.size, piece) as usize;
            let mut buf = BUFFERS.take(want);
            while buf.len() < want {
                let next =
                    tokio::time::timeout(STALL_TIMEOUT, recv.read_chunk(want - buf.len(), true))
                        .await;
                let Ok(next) = next else {
                    return Err(SourceEnd::Failed(format!(
                        "{} sent nothing for {STALL_TIMEOUT:?}",
                        source.peer
                    )));
                };
                match next {
                    Ok(Some(chunk)) => {
                        self.rate
                            .pace(
                                &source.peer,
                                super::rate::Direction::Download,
                                chunk.bytes.len() as u64,
                            )
                            .await;
                        buf.extend_from_slice(&chunk.bytes);
                    }
                    Ok(None) => return Err(SourceEnd::Failed("stream ended early".into())),
                    Err(quinn::ReadError::Reset(code))
                        if code.into_inner() == u64::from(RESET_FILE_CHANGED) =>
                    {
                        return Err(SourceEnd::Failed(format!(
                            "{what} changed on {} during the transfer",
                            source.peer
                        )))
                    }
                    Err(e) => return Err(SourceEnd::Failed(e.to_string())),
                }
            }
            while checks.len() >= VERIFY_DEPTH {
                self.settle(checks.join_next().await, source)?;
            }
            let (file, writes, size) = (self.file.clone(), self.writes.clone(), self.size);
            let expected = self.pieces.get(piece as usize).copied();
            checks.spawn_blocking(move || {
                if expected != Some(hash_piece(&buf)) {
                    return Err(SourceEnd::BadPiece(piece));
                }
                {
                    let _one_writer = writes.lock().unwrap_or_else(|e| e.into_inner());
                    file.write_all_at(&buf, piece * PIECE_SIZE)
                        .map_err(SourceEnd::Disk)?;
                }
                drop_behind(&file, size, piece);
                Ok(Some(piece))
            });
        }
        while let Some(done) = checks.join_next().await {
            self.settle(Some(done), source)?;
        }
        Ok(())
    }

    fn settle(
        &self,
        done: Option<Result<Result<Option<u64>, SourceEnd>, tokio::task::JoinError>>,
        source: &Source,
    ) -> Result<(), SourceEnd> {
        match done {
            Some(Ok(Ok(Some(piece)))) => {
                if lock(&self.picker).completed(piece) {
                    let len = piece_len(self.size, piece);
                    self.verified_bytes.fetch_add(len, Ordering::Relaxed);
                    source.delivered.fetch_add(len, Ordering::Relaxed);
                }
                self.progress.notify_waiters();
                Ok(())
            }
            Some(Ok(Ok(None))) | None => Ok(()),
            Some(Ok(Err(end))) => Err(end),
            Some(Err(e)) => Err(SourceEnd::Failed(e.to_string())),
        }
    }
}

/// Files this node is fetching, by root: their verified pieces are served to other peers
/// before the file is complete.
#[derive(Default)]
pub struct Partials {
    /// Two downloads may fetch the same content at once (from different peers' paths);
    /// the first one offered is served, the next takes over when it ends.
    fetching: Mutex<HashMap<Hash, Vec<Offered>>>,
}

#[derive(Clone)]
pub struct Offered {
    pub swarm: Arc<Swarm>,
    /// How uploads from it are shown: the download's `peer/path`.
    pub label: Arc<str>,
}

impl Partials {
    /// Offers `swarm`'s pieces until the returned guard is dropped, which happens however
    /// the fetch ends, aborts included.
    pub fn offer(self: &Arc<Self>, swarm: &Arc<Swarm>, label: &str) -> OfferGuard {
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        fetching.entry(swarm.root).or_default().push(Offered {
            swarm: swarm.clone(),
            label: label.into(),
        });
        OfferGuard {
            partials: self.clone(),
            swarm: swarm.clone(),
        }
    }

    pub fn get(&self, root: &Hash) -> Option<Offered> {
        self.fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(root)
            .and_then(|offers| offers.first())
            .cloned()
    }
}

pub struct OfferGuard {
    partials: Arc<Partials>,
    swarm: Arc<Swarm>,
}

impl Drop for OfferGuard {
    fn drop(&mut self) {
        let mut fetching = self
            .partials
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(offers) = fetching.get_mut(&self.swarm.root) {
            offers.retain(|o| !Arc::ptr_eq(&o.swarm, &self.swarm));
            if offers.is_empty() {
                fetching.remove(&self.swarm.root);
            }
        }
    }
}

/// Marks the pieces already present in a partial file: those the saved bitfield lists, and
/// any other piece below the file's length whose bytes match (written before a crash, not
/// yet recorded). Blocking.
pub fn recover_pieces(
    file: &File,
    size: u64,
    pieces: &[Hash],
    saved: Option<Bitfield>,
) -> std::io::Result<Bitfield> {
    let count = piece_count(size);
    let mut have = saved
        .filter(|b| b.len() == count)
        .unwrap_or_else(|| Bitfield::new(count));
    let on_disk = file.metadata()?.len();
    let mut buf = vec![0u8; PIECE_SIZE as usize];
    for piece in 0..count {
        let len = piece_len(size, piece);
        if have.get(piece) || piece * PIECE_SIZE + len > on_disk {
            continue;
        }
        let buf = &mut buf[..len as usize];
        file.read_exact_at(buf, piece * PIECE_SIZE)?;
        if pieces.get(piece as usize) == Some(&hash_piece(buf)) {
            have.set(piece);
        }
    }
    Ok(have)
}

/// Downloads at least this large do not stay in the page cache (see `drop_behind`).
const DROP_BEHIND_MIN_SIZE: u64 = 64 * 1024 * 1024;
/// Pieces written this long ago have normally been written back and can be dropped.
const DROP_BEHIND_LAG: u64 = 16;

/// Whether a download of `size` bytes keeps out of the page cache.
fn drops_behind(size: u64) -> bool {
    size >= DROP_BEHIND_MIN_SIZE
}

/// Asks the kernel to drop `len` bytes at `offset` from the page cache. On dirty pages this
/// only starts their write-back; a later call drops them once clean. Advice, never an error.
fn forget_cached(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        file,
        offset,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// After writing `piece` of a large download: start its write-back and drop the piece
/// written `DROP_BEHIND_LAG` before it. A seedbox fetching a file bigger than its RAM
/// would otherwise push everything else out of the page cache (shares being served, the
/// index), and filling new page-cache pages is also most of what writing costs the
/// receiver: 4 CPU s per GiB on the benchmark VM against under 0.5 s this way.
fn drop_behind(file: &File, size: u64, piece: u64) {
    if !drops_behind(size) {
        return;
    }
    forget_cached(file, piece * PIECE_SIZE, piece_len(size, piece));
    if let Some(old) = piece.checked_sub(DROP_BEHIND_LAG) {
        forget_cached(file, old * PIECE_SIZE, PIECE_SIZE);
    }
}

/// Once a large download is synced: drops what is still cached of it (the pieces that
/// were dirty while `verify_whole` read them).
pub fn forget_synced(file: &File, size: u64) {
    if drops_behind(size) {
        forget_cached(file, 0, size);
    }
}

/// Re-reads the finished file and checks it against the root: the last word before a file
/// is called complete. A large file is read straight from the disk (`O_DIRECT`), as the
/// page cache no longer holds it and filling fresh cache pages only to hash them once
/// costs more than the read; where the filesystem refuses direct reads, through the cache,
/// dropping what was read. Blocking.
pub fn verify_whole(file: &File, size: u64, root: &Hash) -> std::io::Result<bool> {
    let mut direct = drops_behind(size).then(|| open_direct(file)).flatten();
    let mut hasher = FileHasher::default();
    // Direct reads need a block-aligned buffer: take an aligned window of a larger one.
    let mut backing = vec![0u8; PIECE_SIZE as usize + DIRECT_ALIGN];
    let start = backing.as_ptr().align_offset(DIRECT_ALIGN);
    let buf = &mut backing[start..start + PIECE_SIZE as usize];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(PIECE_SIZE) as usize;
        if let Some(direct_file) = &direct {
            // The last chunk is asked for in whole blocks; the read stops at the end of file.
            let whole_blocks = n.next_multiple_of(DIRECT_ALIGN);
            match super::read_at_least(direct_file, &mut buf[..whole_blocks], offset, n) {
                Ok(()) => {}
                // Opened, but the filesystem refuses direct reads: read through the cache.
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32) => {
                    direct = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            file.read_exact_at(&mut buf[..n], offset)?;
            if drops_behind(size) {
                forget_cached(file, offset, n as u64);
            }
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let (hashed, got, _) = hasher.finish();
    Ok(hashed == size && got == *root)
}

/// Offsets, lengths and buffers of direct reads must be multiples of the device's logical
/// block size; 4096 covers every common one (512 and 4K sectors).
const DIRECT_ALIGN: usize = 4096;

/// A second, read-only descriptor of `file` with `O_DIRECT`, opened through /proc so it
/// is the very same inode. Its own flags leave the shared descriptor alone, which may be
/// serving verified pieces to other peers meanwhile. `None` where the filesystem or a
/// missing /proc refuses it.
fn open_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picker for `len` pieces with `complete` sources holding the whole file.
    fn picker(len: u64, complete: usize) -> PiecePicker {
        let mut p = PiecePicker::new(Bitfield::new(len));
        for _ in 0..complete {
            p.add_source(None);
        }
        p
    }

    fn bits(len: u64, set: impl IntoIterator<Item = u64>) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in set {
            b.set(i);
        }
        b
    }

    #[test]
    fn sources_get_disjoint_runs_in_order() {
        let mut p = picker(20, 3);
        assert_eq!(p.pick(0, 8), Pick::Run(0..8));
        assert_eq!(p.pick(1, 8), Pick::Run(8..16));
        assert_eq!(p.pick(2, 8), Pick::Run(16..20));
        for piece in 0..8 {
            assert!(p.completed(piece));
        }
        p.abandon(0, 0..8);
        // Endgame: nothing free, so source 0 duplicates the first piece someone else holds.
        assert_eq!(p.pick(0, 8), Pick::Run(8..9));
        assert!(p.completed(8));
        assert!(!p.completed(8), "a duplicate delivery is not counted twice");
    }

    #[test]
    fn a_bad_source_loses_its_pieces_and_gets_no_more() {
        let mut p = picker(4, 2);
        assert_eq!(p.pick(0, 2), Pick::Run(0..2));
        p.mark_bad(0);
        assert_eq!(p.pick(0, 2), Pick::Done);
        assert_eq!(p.pick(1, 8), Pick::Run(0..4));
        assert_eq!(p.pick(7, 8), Pick::Done, "an unknown source gets nothing");
    }

    #[test]
    fn runs_skip_pieces_already_held() {
        let mut p = PiecePicker::new(bits(6, [1, 3]));
        p.add_source(None);
        p.add_source(None);
        assert_eq!(p.pick(0, 8), Pick::Run(0..1));
        assert_eq!(p.pick(0, 8), Pick::Run(2..3));
        assert_eq!(p.pick(1, 8), Pick::Run(4..6));
    }

    #[test]
    fn partial_sources_get_only_pieces_they_hold() {
        let mut p = picker(12, 1);
        let a = p.add_source(Some(bits(12, [0, 1, 2, 5, 6])));
        let b = p.add_source(Some(bits(12, [2, 3, 4, 9])));
        // Runs stop at the first piece the partial source lacks.
        assert_eq!(p.pick(a, 8), Pick::Run(0..3));
        assert_eq!(p.pick(b, 8), Pick::Run(3..5));
        assert_eq!(p.pick(a, 8), Pick::Run(5..7));
        assert_eq!(p.pick(b, 8), Pick::Run(9..10));
        assert_eq!(p.pick(0, 8), Pick::Run(7..9));
        assert_eq!(p.pick(0, 8), Pick::Run(10..12));
        // Everything is in flight. Endgame duplicates only what a source holds.
        p.completed(2);
        assert_eq!(p.pick(b, 8), Pick::Wait, "all b holds is done or its own");
        assert_eq!(
            p.pick(0, 8),
            Pick::Run(0..1),
            "the complete source duplicates"
        );
        p.abandon(b, 3..5);
        assert_eq!(p.pick(a, 8), Pick::Wait, "a lacks the pieces b gave back");
        assert_eq!(p.pick(b, 8), Pick::Run(3..5));
    }

    #[test]
    fn availability_updates_reach_the_partial_source() {
        let mut p = picker(4, 1);
        let a = p.add_source(Some(Bitfield::new(4)));
        assert_eq!(
            p.pick(a, 8),
            Pick::Wait,
            "nothing yet, a complete source is busy"
        );
        assert!(p.is_partial_and_active(a));
        assert!(!p.is_partial_and_active(0));
        p.set_available(a, bits(4, [2, 3]));
        assert_eq!(p.pick(a, 8), Pick::Run(2..4));
        // A bitfield for another piece count is ignored; a complete source stays complete.
        p.set_available(a, bits(5, [0, 1, 2, 3, 4]));
        p.set_available(0, Bitfield::new(4));
        assert_eq!(p.pick(a, 8), Pick::Wait);
        assert_eq!(p.pick(0, 8), Pick::Run(0..2));
        // A partial bitfield of the wrong length at the start counts as holding nothing.
        let c = p.add_source(Some(bits(9, [0, 1])));
        assert!(p.is_partial_and_active(c));
        p.abandon(0, 0..2);
        assert_eq!(p.pick(c, 8), Pick::Wait);
    }

    #[test]
    fn a_partial_source_stops_waiting_once_no_complete_source_is_left() {
        let mut p = picker(4, 2);
        let a = p.add_source(Some(bits(4, [0])));
        assert_eq!(p.pick(a, 8), Pick::Run(0..1));
        assert_eq!(p.pick(a, 8), Pick::Wait);
        p.ended(0);
        assert_eq!(p.pick(a, 8), Pick::Wait, "source 1 may still bring news");
        p.mark_bad(1);
        assert_eq!(p.pick(a, 8), Pick::Done);
        assert!(p.is_partial_and_active(a), "until its worker ends");
        p.ended(a);
        assert!(!p.is_partial_and_active(a));
        // A partial source that lies is dropped like any other.
        let mut p = picker(4, 1);
        let liar = p.add_source(Some(bits(4, [0, 1, 2, 3])));
        assert_eq!(p.pick(liar, 8), Pick::Run(0..4));
        p.mark_bad(liar);
        assert_eq!(p.pick(liar, 8), Pick::Done);
        assert_eq!(p.pick(0, 8), Pick::Run(0..4));
    }

    #[test]
    fn partial_holders_serve_only_verified_pieces_within_the_file() {
        let have = bits(5, [1, 2, 4]);
        assert_eq!(check_served(&have, 1..3), Ok(()));
        assert_eq!(check_served(&have, 4..5), Ok(()));
        assert_eq!(check_served(&have, 0..2), Err(WireError::NotHeld));
        assert_eq!(check_served(&have, 2..5), Err(WireError::NotHeld));
        assert!(matches!(
            check_served(&have, 4..6),
            Err(WireError::BadRequest(_))
        ));
    }

    #[test]
    fn a_fetch_is_offered_until_it_ends_and_a_second_one_of_the_same_root_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let content = || ContentHashes {
            size: 3,
            mtime: 0,
            root: [9; 32],
            pieces: vec![hash_piece(b"abc")],
        };
        let rate = Arc::new(super::super::rate::RateLimiter::new(Default::default()));
        let swarm = || {
            let file = File::create(dir.path().join("f.part")).unwrap();
            Arc::new(Swarm::new(file, content(), Bitfield::new(1), rate.clone()))
        };
        let (first, second) = (swarm(), swarm());
        let partials = Arc::new(Partials::default());
        let first_offer = partials.offer(&first, "p/first");
        let second_offer = partials.offer(&second, "p/second");
        let served = |root| partials.get(&root).map(|o| o.label.to_string());
        assert_eq!(served([9; 32]).as_deref(), Some("p/first"));
        assert_eq!(served([8; 32]), None);
        drop(first_offer);
        assert_eq!(served([9; 32]).as_deref(), Some("p/second"));
        drop(second_offer);
        assert_eq!(served([9; 32]), None);
    }

    #[test]
    fn recovery_keeps_only_pieces_that_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.part");
        let size = 3 * PIECE_SIZE + 10;
        let content: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let pieces: Vec<Hash> = content
            .chunks(PIECE_SIZE as usize)
            .map(hash_piece)
            .collect();
        let mut written = content[..(2 * PIECE_SIZE + 5) as usize].to_vec();
        written[(PIECE_SIZE + 3) as usize] ^= 0xff;
        std::fs::write(&path, &written).unwrap();
        let file = File::open(&path).unwrap();
        let have = recover_pieces(&file, size, &pieces, None).unwrap();
        assert_eq!(
            (0..4).map(|i| have.get(i)).collect::<Vec<_>>(),
            [true, false, false, false]
        );
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        assert!(verify_whole(&file, size, &crate::content::root_of(size, &pieces)).unwrap());
        assert!(!verify_whole(&file, size, &[0; 32]).unwrap());
    }

    /// Large files are verified with direct reads (or, where refused, through the cache):
    /// the result must be the same, including the unaligned tail, and the shared
    /// descriptor's flags (other peers may be reading pieces through it) stay untouched.
    #[test]
    fn large_files_verify_the_same_read_past_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.part");
        let size = DROP_BEHIND_MIN_SIZE + 3 * PIECE_SIZE / 2 + 777;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(size).unwrap();
        let tail: Vec<u8> = (0..PIECE_SIZE + 777).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&tail, size - tail.len() as u64).unwrap();
        let mut hasher = FileHasher::default();
        hasher.update(&std::fs::read(&path).unwrap());
        let (_, root, _) = hasher.finish();
        let flags = || nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let before = flags();
        assert!(verify_whole(&file, size, &root).unwrap());
        assert_eq!(flags(), before, "the shared descriptor keeps its flags");
        file.write_all_at(&[1], size - 1).unwrap();
        assert!(
            !verify_whole(&file, size, &root).unwrap(),
            "a changed last byte"
        );
    }
}
