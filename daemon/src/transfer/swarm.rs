//! Fetching one file from one or more sources, piece by piece. Every piece is checked
//! against the verified piece list before it is written at its offset. The swarm knows its
//! sources only as `PieceSource`s, so it runs the same over QUIC peers (`peer_source`) and
//! over in-memory fakes in the tests below.

use std::fs::File;
use std::future::Future;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use portable_atomic::AtomicU64;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};

use super::buffers::{PooledBuf, BUFFERS};
use super::disk::drop_behind;
use super::picker::{verified_bytes, Pick, PiecePicker, SourceId, RUN_PIECES};
use super::rate::{Direction, RateLimiter};
use super::upload::OpenRange;
use crate::content::{hash_piece, piece_len, Bitfield, Hash, PIECE_SIZE};
use crate::net::rpc::ContentHashes;
use crate::wire::WireError;

/// Piece checks (hash + write) a source may have in flight while it keeps reading.
const VERIFY_DEPTH: usize = 4;
/// A source that goes silent this long mid-run is dropped for the file (a peer claiming
/// content it cannot serve, or a wedged one); its pieces go to the others.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a source with nothing to fetch sleeps before looking again, should a wake-up
/// be missed between its pick and its wait.
const IDLE_RECHECK: Duration = Duration::from_millis(200);

/// A place the pieces of one file can be read from, a run of consecutive pieces per request.
pub trait PieceSource: Send + Sync {
    type Error: std::fmt::Display + Send;
    type Body: RunBody<Error = Self::Error>;

    /// The peer's name, for messages and its download rate limit.
    fn peer(&self) -> &str;

    /// What is read from it, for messages: a path, or "the partial file".
    fn describe(&self) -> &str;

    /// Asks for `pieces`, which are bytes `bytes` of the file. Answers the size of the file
    /// as the source sees it, and the body.
    fn open_run(
        &self,
        pieces: Range<u64>,
        bytes: Range<u64>,
    ) -> impl Future<Output = Result<(u64, Self::Body), Self::Error>> + Send;
}

/// How the swarm waits: tokio's timer in the daemon, a clock moved by hand in tests, so a
/// 30 s stall is tested without waiting 30 s.
pub trait Clock: Send + Sync {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

struct TokioClock;

impl Clock for TokioClock {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The bytes of one run, in order.
pub trait RunBody: Send {
    type Error: std::fmt::Display + Send;

    /// The next at most `max` bytes; `None` once the body has ended.
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Bytes>, Self::Error>> + Send;
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
    picker: Mutex<PiecePicker>,
    progress: Notify,
    /// Verified bytes on disk.
    pub verified_bytes: AtomicU64,
    /// Bytes read off the wire for pieces not yet checked: shown as progress between piece
    /// checks (a 1 MiB piece takes a second at 1 MB/s), taken back out if a piece fails.
    arriving: AtomicU64,
    rate: Arc<RateLimiter>,
    clock: Arc<dyn Clock>,
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

type Check = Option<Result<Result<u64, SourceEnd>, JoinError>>;

fn lock(picker: &Mutex<PiecePicker>) -> std::sync::MutexGuard<'_, PiecePicker> {
    picker.lock().unwrap_or_else(|e| e.into_inner())
}

impl Swarm {
    pub fn new(file: File, content: ContentHashes, have: Bitfield, rate: Arc<RateLimiter>) -> Self {
        let size = content.size;
        Self {
            file: Arc::new(file),
            writes: Arc::default(),
            size,
            mtime: content.mtime,
            root: content.root,
            pieces: Arc::new(content.pieces),
            verified_bytes: AtomicU64::new(verified_bytes(size, &have)),
            arriving: AtomicU64::new(0),
            picker: Mutex::new(PiecePicker::new(have)),
            progress: Notify::new(),
            rate,
            clock: Arc::new(TokioClock),
        }
    }

    /// Verified bytes plus bytes of pieces still arriving or being checked, at most the
    /// size (in the endgame two sources may be receiving the same piece).
    pub fn received_bytes(&self) -> u64 {
        let verified = self.verified_bytes.load(Ordering::Relaxed);
        (verified + self.arriving.load(Ordering::Relaxed)).min(self.size)
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
        super::partials::check_served(lock(&self.picker).have(), pieces.clone())?;
        Ok(OpenRange::pieces(
            self.file.clone(),
            self.size,
            self.mtime,
            pieces,
            self.pieces.clone(),
        ))
    }

    /// Fetches runs from `source` (added with `add_source` as `id`) until nothing is left
    /// for it, or it fails. `delivered` counts the verified bytes it brought.
    pub async fn work<S: PieceSource>(
        &self,
        id: SourceId,
        source: &S,
        delivered: &AtomicU64,
    ) -> SourceEnd {
        let end = self.work_runs(id, source, delivered).await;
        lock(&self.picker).ended(id);
        self.progress.notify_waiters();
        end
    }

    async fn work_runs<S: PieceSource>(
        &self,
        id: SourceId,
        source: &S,
        delivered: &AtomicU64,
    ) -> SourceEnd {
        loop {
            let pick = lock(&self.picker).pick(id, RUN_PIECES);
            let run = match pick {
                Pick::Run(run) => run,
                Pick::Done => return SourceEnd::Finished,
                Pick::Wait => {
                    // Everything this source can give is being fetched already; wait for news.
                    tokio::select! {
                        _ = self.progress.notified() => {}
                        _ = self.clock.sleep(IDLE_RECHECK) => {}
                    }
                    continue;
                }
            };
            let outcome = self.fetch_run(source, run.clone(), delivered).await;
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

    async fn fetch_run<S: PieceSource>(
        &self,
        source: &S,
        run: Range<u64>,
        delivered: &AtomicU64,
    ) -> Result<(), SourceEnd> {
        let bytes = run.start * PIECE_SIZE..(run.end * PIECE_SIZE).min(self.size);
        let (size, mut body) = source
            .open_run(run.clone(), bytes)
            .await
            .map_err(|e| SourceEnd::Failed(e.to_string()))?;
        if size != self.size {
            return Err(SourceEnd::Failed(format!(
                "{} changed on {}: {size} bytes now, {} expected",
                source.describe(),
                source.peer(),
                self.size
            )));
        }
        let mut checks = JoinSet::new();
        // Whatever has arrived but is not settled when this returns is taken back out.
        let mut arriving = Arriving::new(&self.arriving);
        for piece in run {
            let buf = self
                .receive_piece(source, &mut body, piece, &mut arriving)
                .await?;
            // Settle finished checks at once, so verified bytes and sources move piece by
            // piece rather than only when the verify queue is full.
            while let Some(done) = checks.try_join_next() {
                self.settle(Some(done), delivered, &mut arriving)?;
            }
            while checks.len() >= VERIFY_DEPTH {
                self.settle(checks.join_next().await, delivered, &mut arriving)?;
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
                Ok(piece)
            });
        }
        while let Some(done) = checks.join_next().await {
            self.settle(Some(done), delivered, &mut arriving)?;
        }
        Ok(())
    }

    /// Reads one piece's bytes from the body, paced by the download limits.
    async fn receive_piece<S: PieceSource>(
        &self,
        source: &S,
        body: &mut S::Body,
        piece: u64,
        arriving: &mut Arriving<'_>,
    ) -> Result<PooledBuf, SourceEnd> {
        let want = piece_len(self.size, piece) as usize;
        let mut buf = BUFFERS.take(want);
        while buf.len() < want {
            let next = tokio::select! {
                biased;
                next = body.next_chunk(want - buf.len()) => next,
                _ = self.clock.sleep(STALL_TIMEOUT) => {
                    return Err(SourceEnd::Failed(format!(
                        "{} sent nothing for {STALL_TIMEOUT:?}",
                        source.peer()
                    )));
                }
            };
            match next {
                Ok(Some(chunk)) => {
                    let len = chunk.len() as u64;
                    self.rate
                        .pace(source.peer(), Direction::Download, len)
                        .await;
                    buf.extend_from_slice(&chunk);
                    arriving.add(len);
                }
                Ok(None) => return Err(SourceEnd::Failed("stream ended early".into())),
                Err(e) => return Err(SourceEnd::Failed(e.to_string())),
            }
        }
        Ok(buf)
    }

    /// Counts a checked piece, or turns a failed check into the source's end.
    fn settle(
        &self,
        done: Check,
        delivered: &AtomicU64,
        arriving: &mut Arriving<'_>,
    ) -> Result<(), SourceEnd> {
        match done {
            Some(Ok(Ok(piece))) => {
                let len = piece_len(self.size, piece);
                if lock(&self.picker).completed(piece) {
                    self.verified_bytes.fetch_add(len, Ordering::Relaxed);
                    delivered.fetch_add(len, Ordering::Relaxed);
                }
                // After the verified count grew, so the shown total never dips.
                arriving.settled(len);
                self.progress.notify_waiters();
                Ok(())
            }
            None => Ok(()),
            Some(Ok(Err(end))) => Err(end),
            Some(Err(e)) => Err(SourceEnd::Failed(e.to_string())),
        }
    }
}

/// One run's share of `Swarm::arriving`: bytes received and not yet settled. Dropping it
/// (the run ended, well or not) takes back whatever is still counted.
struct Arriving<'a> {
    shared: &'a AtomicU64,
    held: u64,
}

impl<'a> Arriving<'a> {
    fn new(shared: &'a AtomicU64) -> Self {
        Self { shared, held: 0 }
    }

    fn add(&mut self, n: u64) {
        self.held += n;
        self.shared.fetch_add(n, Ordering::Relaxed);
    }

    fn settled(&mut self, n: u64) {
        let n = n.min(self.held);
        self.held -= n;
        self.shared.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        self.shared.fetch_sub(self.held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::root_of;
    use crate::transfer::fakes::{Fake, FakeClock, Manner};

    struct Setup {
        _dir: tempfile::TempDir,
        content: Bytes,
        swarm: Swarm,
        clock: Arc<FakeClock>,
    }

    /// A swarm for a file of `pieces` pieces (the last one short), none held yet.
    fn setup(pieces: u64) -> Setup {
        let size = pieces * PIECE_SIZE - 1234;
        let content: Bytes = (0..size)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let hashes: Vec<Hash> = content
            .chunks(PIECE_SIZE as usize)
            .map(hash_piece)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f.part"))
            .unwrap();
        let list = ContentHashes {
            size,
            mtime: 7,
            root: root_of(size, &hashes),
            pieces: hashes,
        };
        let rate = Arc::new(RateLimiter::new(Default::default()));
        let mut swarm = Swarm::new(file, list, Bitfield::new(pieces), rate);
        let clock = Arc::new(FakeClock::new());
        swarm.clock = clock.clone();
        Setup {
            _dir: dir,
            content,
            swarm,
            clock,
        }
    }

    fn fake(setup: &Setup, name: &'static str, manner: Manner) -> Fake {
        Fake {
            name,
            content: setup.content.clone(),
            manner,
            runs: Mutex::default(),
        }
    }

    /// Runs `work`, then lets the stall timeout pass for the sources still waiting. Also
    /// tells whether the file was whole before that.
    async fn then_the_stall_passes(
        setup: &Setup,
        work: impl Future<Output = SourceEnd>,
    ) -> (SourceEnd, bool) {
        let end = work.await;
        let whole = setup.swarm.complete();
        setup.clock.advance(STALL_TIMEOUT);
        (end, whole)
    }

    fn on_disk(setup: &Setup) -> Vec<u8> {
        let mut buf = vec![0; setup.content.len()];
        setup.swarm.file.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    #[tokio::test]
    async fn a_lying_source_is_dropped_and_its_pieces_come_from_the_others() {
        let s = setup(12);
        let (liar, honest) = (
            fake(&s, "liar", Manner::Lies),
            fake(&s, "honest", Manner::Honest),
        );
        let (liar_id, honest_id) = (s.swarm.add_source(None), s.swarm.add_source(None));
        let (from_liar, from_honest) = (AtomicU64::new(0), AtomicU64::new(0));
        let (liar_end, honest_end) = tokio::join!(
            s.swarm.work(liar_id, &liar, &from_liar),
            s.swarm.work(honest_id, &honest, &from_honest),
        );
        assert!(matches!(liar_end, SourceEnd::BadPiece(0)), "{liar_end:?}");
        assert!(matches!(honest_end, SourceEnd::Finished), "{honest_end:?}");
        assert_eq!(
            liar.runs.lock().unwrap().len(),
            1,
            "no second run for a liar"
        );
        assert!(s.swarm.complete());
        assert_eq!(on_disk(&s), s.content, "none of the liar's bytes were kept");
        // The liar's other pieces of its run may have verified before the bad one did.
        let size = s.content.len() as u64;
        let delivered = from_liar.load(Ordering::Relaxed) + from_honest.load(Ordering::Relaxed);
        assert_eq!(delivered, size, "every byte counted once");
        assert_eq!(s.swarm.verified_bytes.load(Ordering::Relaxed), size);
        // The liar's unverified bytes were shown while they arrived, and taken back out.
        assert_eq!(s.swarm.arriving.load(Ordering::Relaxed), 0);
        assert_eq!(s.swarm.received_bytes(), size);
        // The honest source fetched again the run the liar had been given.
        assert!(honest.runs.lock().unwrap().iter().any(|r| r.start == 0));
    }

    #[tokio::test]
    async fn a_stalled_source_is_dropped_and_the_others_take_over() {
        let s = setup(20);
        let staller = fake(&s, "staller", Manner::Stalls);
        let honest = fake(&s, "honest", Manner::Honest);
        let (staller_id, honest_id) = (s.swarm.add_source(None), s.swarm.add_source(None));
        let counters = (AtomicU64::new(0), AtomicU64::new(0));
        let (staller_end, (honest_end, whole_before_the_stall)) = tokio::join!(
            s.swarm.work(staller_id, &staller, &counters.0),
            then_the_stall_passes(&s, s.swarm.work(honest_id, &honest, &counters.1)),
        );
        assert!(
            whole_before_the_stall,
            "the honest source did not wait out the staller"
        );
        match staller_end {
            SourceEnd::Failed(reason) => assert!(reason.contains("staller sent nothing")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(honest_end, SourceEnd::Finished));
        let runs = staller.runs.lock().unwrap().clone();
        assert_eq!((runs.len(), runs.first()), (1, Some(&(0..8))));
        assert_eq!(on_disk(&s), s.content);
        assert_eq!(counters.0.load(Ordering::Relaxed), 0);
        assert_eq!(counters.1.load(Ordering::Relaxed), s.content.len() as u64);
    }

    #[tokio::test]
    async fn a_source_silent_for_30_s_is_dropped_and_its_run_goes_back_to_the_pool() {
        let s = setup(3);
        let staller = fake(&s, "staller", Manner::Stalls);
        let id = s.swarm.add_source(None);
        let delivered = AtomicU64::new(0);
        let mut work = std::pin::pin!(s.swarm.work(id, &staller, &delivered));
        // Real time here only bounds how long the worker is polled; it waits on the fake clock.
        let poll = Duration::from_millis(50);
        assert!(tokio::time::timeout(poll, &mut work).await.is_err());
        s.clock.advance(STALL_TIMEOUT - Duration::from_secs(1));
        let early = tokio::time::timeout(poll, &mut work).await;
        assert!(early.is_err(), "still within the stall timeout");
        s.clock.advance(Duration::from_secs(1));
        let end = tokio::time::timeout(Duration::from_secs(5), &mut work).await;
        assert!(matches!(end, Ok(SourceEnd::Failed(_))), "{end:?}");
        assert!(!s.swarm.complete());
        let next = s.swarm.add_source(None);
        assert_eq!(
            lock(&s.swarm.picker).pick(next, RUN_PIECES),
            Pick::Run(0..3)
        );
    }

    #[tokio::test]
    async fn a_source_reporting_another_size_is_dropped_before_its_bytes_are_read() {
        let s = setup(2);
        let resized = fake(&s, "resized", Manner::Resized);
        let id = s.swarm.add_source(None);
        let delivered = AtomicU64::new(0);
        match s.swarm.work(id, &resized, &delivered).await {
            SourceEnd::Failed(reason) => {
                assert!(
                    reason.starts_with("the test file changed on resized"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(delivered.load(Ordering::Relaxed), 0);
        assert_eq!(s.swarm.have().count(), 0);
    }

    #[tokio::test]
    async fn a_partial_source_fetches_what_it_announces_later() {
        let s = setup(4);
        let partial = fake(&s, "partial", Manner::Honest);
        let slow = fake(&s, "slow", Manner::Stalls);
        let slow_id = s.swarm.add_source(None);
        let partial_id = s.swarm.add_source(Some(Bitfield::new(4)));
        let all = crate::content::Bitfield::with_pieces(4, 0..4);
        let counters = (AtomicU64::new(0), AtomicU64::new(0));
        let announce = async {
            tokio::task::yield_now().await;
            s.swarm.set_available(partial_id, all);
        };
        let (_, (partial_end, _), slow_end) = tokio::join!(
            announce,
            then_the_stall_passes(&s, s.swarm.work(partial_id, &partial, &counters.1)),
            s.swarm.work(slow_id, &slow, &counters.0),
        );
        assert!(
            matches!(partial_end, SourceEnd::Finished),
            "{partial_end:?}"
        );
        assert!(matches!(slow_end, SourceEnd::Failed(_)), "{slow_end:?}");
        assert_eq!(on_disk(&s), s.content);
        assert_eq!(counters.1.load(Ordering::Relaxed), s.content.len() as u64);
    }
}
