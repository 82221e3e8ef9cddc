//! Fetching one file from one or more sources, piece by piece. Every piece is checked
//! against the verified piece list before it is written at its offset; the whole file is
//! re-hashed before it is marked complete. The piece picker is a pure struct.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::content::{hash_piece, piece_count, piece_len, Bitfield, FileHasher, Hash, PIECE_SIZE};
use crate::wire::RESET_FILE_CHANGED;

/// Pieces asked for in one `Read`: long enough to amortise a request, short enough that a
/// slow source holds little back.
pub const RUN_PIECES: u64 = 8;
/// Piece checks (hash + write) a source may have in flight while it keeps reading.
const VERIFY_DEPTH: usize = 4;
/// A source that goes silent this long mid-run is dropped for the file (a peer claiming
/// content it cannot serve, or a wedged one); its pieces go to the others.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

pub type SourceId = usize;

/// Which pieces are wanted, being fetched (and by whom), or done; and which sources are bad.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    have: Bitfield,
    in_flight: HashMap<u64, HashSet<SourceId>>,
    bad_sources: HashSet<SourceId>,
}

impl PiecePicker {
    pub fn new(have: Bitfield) -> Self {
        Self {
            have,
            in_flight: HashMap::new(),
            bad_sources: HashSet::new(),
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn complete(&self) -> bool {
        self.have.complete()
    }

    pub fn is_bad(&self, source: SourceId) -> bool {
        self.bad_sources.contains(&source)
    }

    /// The next run for `source`: the first missing pieces nobody is fetching, up to `max`
    /// in a row. When every missing piece is already being fetched (endgame), a piece held
    /// by another source is duplicated, so a stalled source cannot hold the file back.
    pub fn next_run(&mut self, source: SourceId, max: u64) -> Option<Range<u64>> {
        if self.is_bad(source) {
            return None;
        }
        let free = self
            .have
            .missing()
            .find(|p| !self.in_flight.contains_key(p));
        let run = match free {
            Some(first) => {
                let mut end = first + 1;
                while end < self.have.len()
                    && end - first < max
                    && !self.have.get(end)
                    && !self.in_flight.contains_key(&end)
                {
                    end += 1;
                }
                first..end
            }
            None => {
                let stolen = self
                    .have
                    .missing()
                    .find(|p| self.in_flight.get(p).is_some_and(|s| !s.contains(&source)))?;
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

    /// `source` served bytes that do not match the list: it is dropped for this file.
    pub fn mark_bad(&mut self, source: SourceId) {
        self.bad_sources.insert(source);
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

/// One place the file can come from.
#[derive(Clone)]
pub struct Source {
    pub peer: String,
    pub connection: quinn::Connection,
    pub path: String,
    /// Bytes of verified pieces this source delivered.
    pub delivered: Arc<AtomicU64>,
}

/// What every worker of one file shares.
pub struct Swarm {
    pub file: Arc<File>,
    pub size: u64,
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
        size: u64,
        pieces: Vec<Hash>,
        have: Bitfield,
        rate: Arc<super::rate::RateLimiter>,
    ) -> Self {
        let verified = (0..have.len())
            .filter(|p| have.get(*p))
            .map(|p| piece_len(size, p))
            .sum();
        Self {
            file: Arc::new(file),
            size,
            pieces: Arc::new(pieces),
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

    /// Fetches runs from `source` until nothing is left for it, or it fails.
    pub async fn work(&self, id: SourceId, source: &Source) -> SourceEnd {
        loop {
            let run = lock(&self.picker).next_run(id, RUN_PIECES);
            let Some(run) = run else {
                if self.complete() || lock(&self.picker).is_bad(id) {
                    return SourceEnd::Finished;
                }
                // Everything missing is being fetched by this source already; wait for news.
                let _ = tokio::time::timeout(Duration::from_millis(200), self.progress.notified())
                    .await;
                continue;
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
        let start = run.start * PIECE_SIZE;
        let end = (run.end * PIECE_SIZE).min(self.size);
        let (size, _mtime, mut recv) =
            super::super::net::rpc::read(&source.connection, &source.path, start, Some(end))
                .await
                .map_err(|e| SourceEnd::Failed(e.to_string()))?;
        if size != self.size {
            return Err(SourceEnd::Failed(format!(
                "{} changed on {}: {size} bytes now, {} expected",
                source.path, source.peer, self.size
            )));
        }
        let mut checks: JoinSet<Result<Option<u64>, SourceEnd>> = JoinSet::new();
        for piece in run {
            let want = piece_len(self.size, piece) as usize;
            let mut buf = BytesMut::with_capacity(want);
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
                            "{} changed on {} during the transfer",
                            source.path, source.peer
                        )))
                    }
                    Err(e) => return Err(SourceEnd::Failed(e.to_string())),
                }
            }
            while checks.len() >= VERIFY_DEPTH {
                self.settle(checks.join_next().await, source)?;
            }
            let (file, expected) = (self.file.clone(), self.pieces.get(piece as usize).copied());
            checks.spawn_blocking(move || {
                if expected != Some(hash_piece(&buf)) {
                    return Err(SourceEnd::BadPiece(piece));
                }
                file.write_all_at(&buf, piece * PIECE_SIZE)
                    .map_err(SourceEnd::Disk)?;
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

/// Re-reads the finished file and checks it against the root: the last word before a file
/// is called complete. Blocking.
pub fn verify_whole(file: &File, size: u64, root: &Hash) -> std::io::Result<bool> {
    let mut hasher = FileHasher::default();
    let mut buf = vec![0u8; PIECE_SIZE as usize];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(PIECE_SIZE) as usize;
        file.read_exact_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let (hashed, got, _) = hasher.finish();
    Ok(hashed == size && got == *root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(len: u64) -> PiecePicker {
        PiecePicker::new(Bitfield::new(len))
    }

    #[test]
    fn sources_get_disjoint_runs_in_order() {
        let mut p = picker(20);
        assert_eq!(p.next_run(0, 8), Some(0..8));
        assert_eq!(p.next_run(1, 8), Some(8..16));
        assert_eq!(p.next_run(2, 8), Some(16..20));
        for piece in 0..8 {
            assert!(p.completed(piece));
        }
        p.abandon(0, 0..8);
        // Endgame: nothing free, so source 0 duplicates the first piece someone else holds.
        assert_eq!(p.next_run(0, 8), Some(8..9));
        assert!(p.completed(8));
        assert!(!p.completed(8), "a duplicate delivery is not counted twice");
    }

    #[test]
    fn a_bad_source_loses_its_pieces_and_gets_no_more() {
        let mut p = picker(4);
        assert_eq!(p.next_run(0, 2), Some(0..2));
        p.mark_bad(0);
        assert_eq!(p.next_run(0, 2), None);
        assert_eq!(p.next_run(1, 8), Some(0..4));
    }

    #[test]
    fn runs_skip_pieces_already_held() {
        let mut have = Bitfield::new(6);
        have.set(1);
        have.set(3);
        let mut p = PiecePicker::new(have);
        assert_eq!(p.next_run(0, 8), Some(0..1));
        assert_eq!(p.next_run(0, 8), Some(2..3));
        assert_eq!(p.next_run(1, 8), Some(4..6));
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
}
