//! The content-hash cache of shared files: hashes computed on demand (a peer waits) or by
//! the paced background pass, one file at a time, kept while size, mtime and inode hold.

use std::fs;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::content::FileHasher;
use crate::store::HashRecord;
use crate::wire::WireError;

use super::*;

impl Shares {
    /// Content hashes of a shared file: from the cache while its size, mtime and inode are
    /// unchanged, else computed now (blocking: call from a blocking thread) and cached.
    pub fn content_hashes(&self, path: &str) -> Result<HashRecord, WireError> {
        // A peer is waiting: a paced background pass holding the lock stops pacing meanwhile.
        self.demand.fetch_add(1, Ordering::Relaxed);
        let result = self
            .content_hashes_paced(path, &mut |_| true)
            .map(|(record, _)| record);
        self.demand.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Whether a peer's request is waiting for content hashes.
    pub fn demand_waiting(&self) -> bool {
        self.demand.load(Ordering::Relaxed) > 0
    }

    /// As [`Shares::content_hashes`], calling `pace` with each chunk read (it may sleep, and
    /// returns false to stop). Also says whether the hashes were computed now (not cached).
    /// One file is hashed at a time: a second request for the same file waits and then
    /// finds it in the cache.
    pub fn content_hashes_paced(
        &self,
        path: &str,
        pace: &mut dyn FnMut(u64) -> bool,
    ) -> Result<(HashRecord, bool), WireError> {
        let _one_at_a_time = self.hash_lock.lock().unwrap_or_else(|e| e.into_inner());
        let real = self.resolve(path)?;
        let meta = fs::metadata(&real).map_err(|e| WireError::Io(e.kind().to_string()))?;
        let (size, mtime, inode) = (
            meta.len(),
            mtime_secs(&meta),
            std::os::unix::fs::MetadataExt::ino(&meta),
        );
        let key = split_request_path(path)?.join("/");
        if let Ok(Some(cached)) = self.store.hash_record(&key) {
            if (cached.size, cached.mtime, cached.inode) == (size, mtime, inode) {
                return Ok((cached, false));
            }
        }
        let started = Instant::now();
        let mut file = fs::File::open(&real).map_err(|e| WireError::Io(e.kind().to_string()))?;
        let mut hasher = FileHasher::default();
        let mut buf = vec![0u8; size.clamp(1, 1 << 20) as usize];
        loop {
            match std::io::Read::read(&mut file, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    if !pace(n as u64) {
                        return Err(WireError::Io("hashing stopped".into()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WireError::Io(e.kind().to_string())),
            }
        }
        let (hashed, root, pieces) = hasher.finish();
        // The file changed while it was read: the hashes describe no version of it.
        let after = fs::metadata(&real).map_err(|e| WireError::Io(e.kind().to_string()))?;
        if hashed != size || after.len() != size || mtime_secs(&after) != mtime {
            return Err(WireError::Io(
                "file changed while it was being hashed".into(),
            ));
        }
        tracing::debug!("hashed {key} ({size} bytes) in {:.2?}", started.elapsed());
        let record = HashRecord {
            size,
            mtime,
            inode,
            root,
            pieces,
        };
        if let Err(e) = self.store.put_hash_record(&key, &record) {
            tracing::warn!("cannot cache hashes of {key}: {e}");
        }
        Ok((record, true))
    }

    /// A shared path whose current content has this root hash, if we know one.
    pub fn find_root(&self, root: &[u8; 32]) -> Option<(String, HashRecord)> {
        let path = self.store.path_for_root(root).ok()??;
        let record = self.store.hash_record(&path).ok()??;
        let real = self.resolve(&path).ok()?;
        let meta = fs::metadata(real).ok()?;
        let current = (
            meta.len(),
            mtime_secs(&meta),
            std::os::unix::fs::MetadataExt::ino(&meta),
        );
        (record.root == *root && current == (record.size, record.mtime, record.inode))
            .then_some((path, record))
    }
}
