//! The content-hash cache of shared files, kept while size, mtime and inode hold.
//!
//! Hashes are computed on demand (a friend waits) or by the paced background pass, and a
//! friend never waits behind the pass (PROTOCOL.md §10.1):
//! - every file is hashed by one "flight" at a time; a second request for a file in flight
//!   waits for that one result instead of hashing the file again, and while anyone waits
//!   for it the flight runs unpaced;
//! - on-demand hashing takes one of [`ON_DEMAND_HASHERS`] permits, so a burst of requests
//!   cannot thrash a NAS disk;
//! - the background pass pauses between chunks while any on-demand hashing runs or waits
//!   for a permit (its pace callback decides; see `node/library.rs`).

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::content::{FileHasher, Hash};
use crate::locks::lock;
use crate::store::HashRecord;
use crate::wire::WireError;

use super::*;

/// Files hashed on demand at once; further requests queue for a permit.
pub const ON_DEMAND_HASHERS: usize = 2;

/// The background pass's callback, called after each chunk read with the bytes read and
/// whether somebody waits for this file (then it should not sleep). It returns false to stop.
pub type Pace<'a> = &'a mut dyn FnMut(u64, bool) -> bool;

/// Hashing in progress, and the on-demand permits.
#[derive(Default)]
pub(super) struct HashFlights {
    /// Index key -> the flight hashing that file now.
    running: Mutex<HashMap<String, Arc<Flight>>>,
    /// On-demand hashes running or queued for a permit.
    demand: AtomicUsize,
    permits_taken: Mutex<usize>,
    permit_freed: Condvar,
}

/// One file being hashed, and its result for whoever waits.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<HashRecord, WireError>>>,
    landed: Condvar,
    waiters: AtomicUsize,
}

impl Flight {
    fn wait(&self) -> Result<HashRecord, WireError> {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let mut result = lock(&self.result);
        while result.is_none() {
            result = self.landed.wait(result).unwrap_or_else(|e| e.into_inner());
        }
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        result
            .clone()
            .unwrap_or_else(|| Err(WireError::Io("hashing was interrupted".into())))
    }

    fn someone_waits(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }
}

/// The leader of a flight: lands its result (an error if it never got one) when dropped,
/// so a waiter never waits for a leader that is gone.
struct Leader<'a> {
    flights: &'a HashFlights,
    key: String,
    flight: Arc<Flight>,
    result: Option<Result<HashRecord, WireError>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        lock(&self.flights.running).remove(&self.key);
        let result = self
            .result
            .take()
            .unwrap_or_else(|| Err(WireError::Io("hashing was interrupted".into())));
        *lock(&self.flight.result) = Some(result);
        self.flight.landed.notify_all();
    }
}

/// Counts an on-demand request from its arrival until its hashing ends.
struct Demand<'a>(&'a HashFlights);

impl Drop for Demand<'_> {
    fn drop(&mut self) {
        self.0.demand.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Permit<'a>(&'a HashFlights);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.permits_taken) -= 1;
        self.0.permit_freed.notify_one();
    }
}

enum Joined<'a> {
    Leader(Leader<'a>),
    Waiter(Arc<Flight>),
}

impl HashFlights {
    fn join(&self, key: &str) -> Joined<'_> {
        let mut running = lock(&self.running);
        if let Some(flight) = running.get(key) {
            return Joined::Waiter(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        running.insert(key.to_string(), flight.clone());
        Joined::Leader(Leader {
            flights: self,
            key: key.to_string(),
            flight,
            result: None,
        })
    }

    fn demand(&self) -> Demand<'_> {
        self.demand.fetch_add(1, Ordering::Relaxed);
        Demand(self)
    }

    fn permit(&self) -> Permit<'_> {
        let mut taken = lock(&self.permits_taken);
        while *taken >= ON_DEMAND_HASHERS {
            taken = self
                .permit_freed
                .wait(taken)
                .unwrap_or_else(|e| e.into_inner());
        }
        *taken += 1;
        Permit(self)
    }
}

/// What identifies a version of a file for the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: u64,
    inode: u64,
}

impl Stamp {
    fn of(real: &Path) -> Result<Self, WireError> {
        let meta = fs::metadata(real).map_err(|e| WireError::Io(e.kind().to_string()))?;
        Ok(Self {
            size: meta.len(),
            mtime: mtime_secs(&meta),
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }

    fn matches(&self, record: &HashRecord) -> bool {
        *self
            == Stamp {
                size: record.size,
                mtime: record.mtime,
                inode: record.inode,
            }
    }
}

impl Shares {
    /// Content hashes of a shared file for a friend who waits: from the cache while the
    /// file is unchanged, else computed now, ahead of the background pass (blocking: call
    /// from a blocking thread) and cached.
    pub fn content_hashes(&self, path: &str) -> Result<HashRecord, WireError> {
        self.hashes_of(path, None).map(|(record, _)| record)
    }

    /// Whether a friend's request is hashing or queued to hash: the background pass pauses.
    pub fn demand_waiting(&self) -> bool {
        self.hashing.demand.load(Ordering::Relaxed) > 0
    }

    /// As [`Shares::content_hashes`] for the background pass, calling `pace` after each
    /// chunk. Also says whether the hashes were computed now (not cached).
    pub fn content_hashes_paced(
        &self,
        path: &str,
        pace: Pace<'_>,
    ) -> Result<(HashRecord, bool), WireError> {
        self.hashes_of(path, Some(pace))
    }

    fn hashes_of(
        &self,
        path: &str,
        pace: Option<Pace<'_>>,
    ) -> Result<(HashRecord, bool), WireError> {
        let demand = pace.is_none().then(|| self.hashing.demand());
        let real = self.resolve(path)?;
        let key = split_request_path(path)?.join("/");
        let stamp = Stamp::of(&real)?;
        if let Some(cached) = self.cached_hashes(&key, stamp) {
            return Ok((cached, false));
        }
        let mut leader = match self.hashing.join(&key) {
            Joined::Leader(leader) => leader,
            Joined::Waiter(flight) => {
                // Waiting on a flight is not hashing: the pass may be the one we wait for.
                drop(demand);
                return flight.wait().map(|record| (record, false));
            }
        };
        // A flight that landed between the cache lookup and the join has cached its result.
        if let Some(cached) = self.cached_hashes(&key, stamp) {
            leader.result = Some(Ok(cached.clone()));
            return Ok((cached, false));
        }
        let _permit = pace.is_none().then(|| self.hashing.permit());
        let result = self.hash_file(&real, &key, stamp, &leader.flight, pace);
        leader.result = Some(result.clone());
        result.map(|record| (record, true))
    }

    fn cached_hashes(&self, key: &str, stamp: Stamp) -> Option<HashRecord> {
        let cached = self.store.hash_record(key).ok()??;
        stamp.matches(&cached).then_some(cached)
    }

    fn hash_file(
        &self,
        real: &Path,
        key: &str,
        stamp: Stamp,
        flight: &Flight,
        mut pace: Option<Pace<'_>>,
    ) -> Result<HashRecord, WireError> {
        let started = Instant::now();
        let mut file = fs::File::open(real).map_err(|e| WireError::Io(e.kind().to_string()))?;
        let mut hasher = FileHasher::default();
        let mut buf = vec![0u8; stamp.size.clamp(1, 1 << 20) as usize];
        loop {
            match std::io::Read::read(&mut file, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    if let Some(pace) = pace.as_mut() {
                        if !pace(n as u64, flight.someone_waits()) {
                            return Err(WireError::Io("hashing stopped".into()));
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WireError::Io(e.kind().to_string())),
            }
        }
        let (hashed, root, pieces) = hasher.finish();
        // The file changed while it was read: the hashes describe no version of it.
        let after = Stamp::of(real)?;
        if hashed != stamp.size || after.size != stamp.size || after.mtime != stamp.mtime {
            return Err(WireError::Io(
                "file changed while it was being hashed".into(),
            ));
        }
        tracing::debug!(
            "hashed {key} ({} bytes) in {:.2?}",
            stamp.size,
            started.elapsed()
        );
        let record = HashRecord {
            size: stamp.size,
            mtime: stamp.mtime,
            inode: stamp.inode,
            root,
            pieces,
        };
        if let Err(e) = self.store.put_hash_record(key, &record) {
            tracing::warn!("cannot cache hashes of {key}: {e}");
        }
        Ok(record)
    }

    /// Caches the hashes a download has just verified for its final file, when that file is
    /// in a share (the seeded download folder, or a share holding it), so `Have` finds it at
    /// once without reading it again. Nothing is cached if the file is no longer `size`
    /// bytes. Blocking (a database write).
    pub fn adopt_hashes(&self, real: &Path, size: u64, root: Hash, pieces: Vec<Hash>) {
        let Some(key) = self.key_of(real) else {
            return;
        };
        let Ok(stamp) = Stamp::of(real) else {
            return;
        };
        if stamp.size != size {
            return;
        }
        let record = HashRecord {
            size,
            mtime: stamp.mtime,
            inode: stamp.inode,
            root,
            pieces,
        };
        if let Err(e) = self.store.put_hash_record(&key, &record) {
            tracing::warn!("cannot cache hashes of {key}: {e}");
        }
    }

    /// The index key of a real path inside a share root.
    fn key_of(&self, real: &Path) -> Option<String> {
        self.roots().into_iter().find_map(|(name, root)| {
            let below = real.strip_prefix(&root).ok()?;
            let parts: Option<Vec<&str>> = below.iter().map(|part| part.to_str()).collect();
            Some(
                std::iter::once(name.as_str())
                    .chain(parts?)
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        })
    }

    /// A shared path whose current content has this root hash, if we know one.
    pub fn find_root(&self, root: &[u8; 32]) -> Option<(String, HashRecord)> {
        let path = self.store.path_for_root(root).ok()??;
        let record = self.store.hash_record(&path).ok()??;
        let current = Stamp::of(&self.resolve(&path).ok()?).ok()?;
        (record.root == *root && current.matches(&record)).then_some((path, record))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A share holding `big.bin` (3 pieces) and `small.txt`.
    fn share() -> (tempfile::TempDir, Arc<Shares>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("storage"), 1 << 20).unwrap());
        let shares = Arc::new(Shares::open(store).unwrap());
        let root = dir.path().join("S");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("big.bin"), vec![5u8; 3 << 20]).unwrap();
        fs::write(root.join("small.txt"), b"hello").unwrap();
        shares.add(&root).unwrap();
        (dir, shares)
    }

    /// A friend's request for hashes, on its own thread; its answer comes on the channel.
    fn friend_asks(
        shares: &Arc<Shares>,
        path: &'static str,
    ) -> mpsc::Receiver<Result<HashRecord, WireError>> {
        let (done_tx, done) = mpsc::channel();
        let friend = shares.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(friend.content_hashes(path));
        });
        done
    }

    /// A background pass over one file whose first chunk blocks until `release` is sent.
    struct BlockedPass {
        /// Reports the first chunk.
        started: mpsc::Receiver<()>,
        release: mpsc::Sender<()>,
        /// Every later chunk's `awaited` flag.
        awaited: mpsc::Receiver<bool>,
        pass: std::thread::JoinHandle<Result<(HashRecord, bool), WireError>>,
    }

    fn blocked_pass(shares: &Arc<Shares>, path: &'static str) -> BlockedPass {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (awaited_tx, awaited) = mpsc::channel();
        let shares = shares.clone();
        let pass = std::thread::spawn(move || {
            let mut first = true;
            shares.content_hashes_paced(path, &mut |_, awaited| {
                if first {
                    first = false;
                    let _ = started_tx.send(());
                    return release_rx.recv_timeout(PATIENCE).is_ok();
                }
                let _ = awaited_tx.send(awaited);
                true
            })
        });
        BlockedPass {
            started,
            release,
            awaited,
            pass,
        }
    }

    #[test]
    fn a_friends_request_does_not_wait_behind_the_pass_on_another_file() {
        let (_dir, shares) = share();
        let BlockedPass {
            started,
            release,
            pass,
            ..
        } = blocked_pass(&shares, "S/big.bin");
        started.recv_timeout(PATIENCE).unwrap();
        assert!(!shares.demand_waiting());
        let done = friend_asks(&shares, "S/small.txt");
        // The pass is stuck mid-file; the friend's file is hashed regardless.
        let small = done
            .recv_timeout(PATIENCE)
            .expect("answered while the pass is mid-file");
        assert_eq!(small.unwrap().size, 5);
        assert!(!shares.demand_waiting());
        release.send(()).unwrap();
        let (big, computed) = pass.join().unwrap().unwrap();
        assert!(computed);
        assert_eq!(big.pieces.len(), 3);
    }

    #[test]
    fn a_request_for_the_file_in_flight_waits_for_it_and_hurries_it() {
        let (_dir, shares) = share();
        let BlockedPass {
            started,
            release,
            awaited,
            pass,
        } = blocked_pass(&shares, "S/big.bin");
        started.recv_timeout(PATIENCE).unwrap();
        let done = friend_asks(&shares, "S/big.bin");
        let joined = || {
            lock(&shares.hashing.running)
                .get("S/big.bin")
                .is_some_and(|flight| flight.someone_waits())
        };
        for _ in 0..1000 {
            if joined() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(joined(), "the friend's request joined the pass's flight");
        // Waiting on the pass's flight is not on-demand hashing: the pass must not pause.
        assert!(!shares.demand_waiting());
        release.send(()).unwrap();
        let (by_pass, computed) = pass.join().unwrap().unwrap();
        assert!(computed);
        let by_friend = done.recv_timeout(PATIENCE).unwrap().unwrap();
        assert_eq!(by_friend, by_pass);
        // The chunks after the friend joined ran unpaced.
        assert_eq!(awaited.try_iter().collect::<Vec<_>>(), vec![true, true]);
        assert!(lock(&shares.hashing.running).is_empty());
    }

    #[test]
    fn on_demand_hashing_queues_for_a_permit_and_pauses_the_pass_meanwhile() {
        let (_dir, shares) = share();
        let held: Vec<_> = (0..ON_DEMAND_HASHERS)
            .map(|_| shares.hashing.permit())
            .collect();
        let done = friend_asks(&shares, "S/small.txt");
        // Every permit is taken: the request queues, and counts as demand while it does.
        for _ in 0..1000 {
            if shares.demand_waiting() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(shares.demand_waiting());
        assert!(done.recv_timeout(Duration::from_millis(300)).is_err());
        drop(held);
        assert_eq!(done.recv_timeout(PATIENCE).unwrap().unwrap().size, 5);
        assert!(!shares.demand_waiting());
        assert_eq!(*lock(&shares.hashing.permits_taken), 0);
    }
}
