//! Shared directories and their index: names, sizes and mtimes only (never hashes, so
//! start-up never waits on file contents). Answers `Ls` queries straight from the index and
//! resolves `Read` paths safely, refusing anything that leaves a share root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use redb::{ReadableDatabase, ReadableTable};
use serde::Serialize;

mod audience;
mod hashes;
mod live;
mod scan;
pub mod watch;

pub use audience::FriendView;
pub use live::RootId;

use crate::store::{IndexValue, Store, StoreError, INDEX, SHARES, SHARE_ACCESS};
use crate::wire::{split_request_path, Entry, WireError};
use scan::Scan;

/// A rescan commits in slices, so a huge share never holds one giant transaction in memory
/// and other writers (download progress) never wait long behind it.
const OPS_PER_COMMIT: usize = 20_000;
const SLICE_TIME: Duration = Duration::from_millis(50);
/// The answer to a request for a file the watcher sees being written.
pub const BEING_WRITTEN: &str = "the file is still being written; try again in a moment";
/// Deeper trees are not indexed: protects against pathological nesting.
const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SharesError {
    #[error("{path} cannot be shared: {reason}")]
    BadDirectory { path: PathBuf, reason: String },
    #[error("{0} is already shared")]
    AlreadyShared(PathBuf),
    #[error("no share named {0}")]
    UnknownShare(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the indexing task failed: {0}")]
    Task(String),
}

impl From<redb::Error> for SharesError {
    fn from(e: redb::Error) -> Self {
        SharesError::Store(StoreError::Db(e.to_string()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ShareInfo {
    pub name: String,
    pub dir: PathBuf,
    pub size: u64,
    /// False while the share's directory is missing or not a directory: it is hidden from
    /// friends then, and comes back by itself when the directory does.
    pub available: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    pub files: u64,
    pub dirs: u64,
    pub written: u64,
    pub removed: u64,
}

pub struct Shares {
    store: Arc<Store>,
    /// share name -> canonical root directory
    roots: RwLock<BTreeMap<String, PathBuf>>,
    /// Files being hashed, and the on-demand hashing permits (`hashes.rs`).
    hashing: hashes::HashFlights,
    /// Shares whose directory is missing or not a directory (`live.rs`).
    unavailable: RwLock<BTreeSet<String>>,
    /// Index keys of files being written, from the watcher: not served until stable.
    writing: RwLock<BTreeSet<String>>,
    /// Held while the index of a share is written by a rescan or the watcher, so the two
    /// never interleave their writes to one directory.
    index_lock: Mutex<()>,
    /// The download folder (canonical), wherever it lies: its `.part` files are neither
    /// indexed nor served, whether it is a share, inside one, or seeded.
    download_dir: RwLock<Option<PathBuf>>,
    /// Folders downloads were sent to (`download --to`: the download folder or a share's,
    /// so a handful at most); their `.part` files likewise.
    destinations: RwLock<BTreeSet<PathBuf>>,
}

/// A `.part` file in the download folder or a destination: a download in progress, which
/// is offered piece by piece while it runs (`transfer/partials.rs`), never as a file.
fn is_partial_download(path: &Path, part_dirs: &[PathBuf]) -> bool {
    part_dirs.iter().any(|dir| path.starts_with(dir))
        && path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.ends_with(crate::transfer::plan::PART_SUFFIX))
}

fn lock_poisoned() -> SharesError {
    SharesError::Store(StoreError::Db("share list lock poisoned".into()))
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The first key after every key that starts with `prefix/`: '0' is the byte after '/'.
fn subtree_end(key: &str) -> String {
    format!("{key}0")
}

impl Shares {
    pub fn open(store: Arc<Store>) -> Result<Self, SharesError> {
        let mut roots = BTreeMap::new();
        {
            let txn = store.db().begin_read().map_err(StoreError::from)?;
            let table = txn.open_table(SHARES).map_err(StoreError::from)?;
            for row in table.iter().map_err(StoreError::from)? {
                let (name, dir) = row.map_err(StoreError::from)?;
                roots.insert(name.value().to_string(), PathBuf::from(dir.value()));
            }
        }
        Ok(Self {
            store,
            roots: RwLock::new(roots),
            hashing: hashes::HashFlights::default(),
            unavailable: RwLock::new(BTreeSet::new()),
            writing: RwLock::new(BTreeSet::new()),
            index_lock: Mutex::new(()),
            download_dir: RwLock::new(None),
            destinations: RwLock::default(),
        })
    }

    pub fn set_download_dir(&self, dir: &Path) {
        if let Ok(mut current) = self.download_dir.write() {
            *current = Some(dir.to_path_buf());
        }
    }

    /// Notes a folder a download was sent to (canonical), whose `.part` files are skipped.
    pub fn add_destination(&self, dir: &Path) {
        if let Ok(mut all) = self.destinations.write() {
            all.insert(dir.to_path_buf());
        }
    }

    fn part_dirs(&self) -> Vec<PathBuf> {
        let download_dir = self.download_dir.read().ok().and_then(|d| d.clone());
        let destinations = self.destinations.read().map(|d| d.clone());
        download_dir
            .into_iter()
            .chain(destinations.unwrap_or_default())
            .collect()
    }

    pub fn roots(&self) -> BTreeMap<String, PathBuf> {
        self.roots.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn list(&self) -> Result<Vec<ShareInfo>, SharesError> {
        let txn = self.store.db().begin_read().map_err(StoreError::from)?;
        let index = txn.open_table(INDEX).map_err(StoreError::from)?;
        let mut out = Vec::new();
        for (name, dir) in self.roots() {
            let size = index
                .get(name.as_str())
                .map_err(StoreError::from)?
                .and_then(|v| IndexValue::unpack(v.value()))
                .map_or(0, |v| v.size);
            let available = self.is_available(&name);
            out.push(ShareInfo {
                name,
                dir,
                size,
                available,
            });
        }
        Ok(out)
    }

    /// Shares a directory under a display name derived from its base name, made unique
    /// with a numeric suffix, then indexes it.
    pub fn add(&self, dir: &Path) -> Result<(String, ScanStats), SharesError> {
        let name = self.register(dir)?;
        let stats = self.rescan(&name)?;
        Ok((name, stats))
    }

    /// Records a new share without indexing it yet (start-up indexes every share once).
    pub fn register(&self, dir: &Path) -> Result<String, SharesError> {
        let bad = |reason: String| SharesError::BadDirectory {
            path: dir.to_path_buf(),
            reason,
        };
        let root = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
        if !root.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let root_str = root
            .to_str()
            .ok_or_else(|| bad("path is not valid UTF-8".into()))?
            .to_string();
        let name = {
            let mut roots = self.roots.write().map_err(|_| lock_poisoned())?;
            if roots.values().any(|r| *r == root) {
                return Err(SharesError::AlreadyShared(root));
            }
            let base = root
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .unwrap_or("share")
                .to_string();
            let name = (1..)
                .map(|i| {
                    if i == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{i}")
                    }
                })
                .find(|candidate| !roots.contains_key(candidate))
                .unwrap_or(base);
            let txn = self.store.db().begin_write().map_err(StoreError::from)?;
            txn.open_table(SHARES)
                .map_err(StoreError::from)?
                .insert(name.as_str(), root_str.as_str())
                .map_err(StoreError::from)?;
            txn.commit().map_err(StoreError::from)?;
            roots.insert(name.clone(), root);
            name
        };
        Ok(name)
    }

    pub fn remove(&self, name: &str) -> Result<(), SharesError> {
        let mut roots = self.roots.write().map_err(|_| lock_poisoned())?;
        if roots.remove(name).is_none() {
            return Err(SharesError::UnknownShare(name.to_string()));
        }
        let txn = self.store.db().begin_write().map_err(StoreError::from)?;
        txn.open_table(SHARES)
            .map_err(StoreError::from)?
            .remove(name)
            .map_err(StoreError::from)?;
        // A share added again later under this name starts open to all friends.
        txn.open_table(SHARE_ACCESS)
            .map_err(StoreError::from)?
            .remove(name)
            .map_err(StoreError::from)?;
        {
            let mut index = txn.open_table(INDEX).map_err(StoreError::from)?;
            index.remove(name).map_err(StoreError::from)?;
            let start = format!("{name}/");
            let end = subtree_end(name);
            index
                .retain_in(start.as_str()..end.as_str(), |_, _| false)
                .map_err(StoreError::from)?;
        }
        txn.commit().map_err(StoreError::from)?;
        Ok(())
    }

    pub fn rescan_all(&self) -> Result<ScanStats, SharesError> {
        let mut total = ScanStats::default();
        for name in self.roots().into_keys() {
            let s = self.rescan(&name)?;
            total.files += s.files;
            total.dirs += s.dirs;
            total.written += s.written;
            total.removed += s.removed;
        }
        Ok(total)
    }

    /// Re-walks one share and writes only entries whose size, mtime or kind changed.
    pub fn rescan(&self, name: &str) -> Result<ScanStats, SharesError> {
        let root = self
            .roots()
            .get(name)
            .cloned()
            .ok_or_else(|| SharesError::UnknownShare(name.into()))?;
        // A missing root keeps its index (hidden meanwhile), so a disk that comes back
        // costs no re-indexing from scratch.
        if self.check_root(name).is_none() {
            return Ok(ScanStats::default());
        }
        let _index = self.index_lock.lock().map_err(|_| lock_poisoned())?;
        let writing = self.writing.read().map(|w| w.clone()).unwrap_or_default();
        let mut scan = Scan::new(&self.store, &root)
            .with_writing(writing)
            .skipping_parts_in(self.part_dirs());
        let meta = fs::metadata(&root).map_err(|e| SharesError::BadDirectory {
            path: root.clone(),
            reason: e.to_string(),
        })?;
        let (size, mtime) = (scan.dir(&root, name, 0)?, mtime_secs(&meta));
        scan.put_if_changed(
            name,
            IndexValue {
                size,
                mtime,
                is_dir: true,
            },
        )?;
        scan.finish()
    }

    /// Streams entries under `path` to `sink` (which returns false to stop early).
    /// Non-recursive listings jump over each child directory's subtree instead of reading it.
    pub fn ls(
        &self,
        path: &str,
        searchterm: Option<&str>,
        recursive: bool,
        mut sink: impl FnMut(Entry) -> bool,
    ) -> Result<(), WireError> {
        let parts = split_request_path(path)?;
        let key = parts.join("/");
        let needle = searchterm.map(str::to_lowercase).filter(|s| !s.is_empty());
        let matches = |p: &str| {
            needle
                .as_deref()
                .is_none_or(|n| p.to_lowercase().contains(n))
        };
        let io = |e: redb::Error| WireError::Io(e.to_string());
        let txn = self.store.db().begin_read().map_err(|e| io(e.into()))?;
        let index = txn.open_table(INDEX).map_err(|e| io(e.into()))?;
        let entry = |k: &str, v: &[u8]| {
            IndexValue::unpack(v).map(|v| Entry {
                path: k.to_string(),
                size: v.size,
                mtime: v.mtime,
                is_dir: v.is_dir,
            })
        };
        let prefix = if key.is_empty() {
            String::new()
        } else {
            let own = index
                .get(key.as_str())
                .map_err(|e| io(e.into()))?
                .ok_or(WireError::NotFound)?;
            let own = entry(&key, own.value())
                .ok_or_else(|| WireError::Io("damaged index entry".into()))?;
            if !own.is_dir {
                if matches(&own.path) {
                    sink(own);
                }
                return Ok(());
            }
            format!("{key}/")
        };
        let end = if key.is_empty() {
            None
        } else {
            Some(subtree_end(&key))
        };
        let mut start = prefix.clone();
        loop {
            let range = match &end {
                Some(end) => index.range(start.as_str()..end.as_str()),
                None => index.range(start.as_str()..),
            }
            .map_err(|e| io(e.into()))?;
            let mut jump_to = None;
            for row in range {
                let (k, v) = row.map_err(|e| io(e.into()))?;
                let k = k.value();
                if !recursive {
                    if let Some(slash) = k[prefix.len()..].find('/') {
                        jump_to = Some(subtree_end(&k[..prefix.len() + slash]));
                        break;
                    }
                }
                if matches(k) {
                    if let Some(e) = entry(k, v.value()) {
                        if !sink(e) {
                            return Ok(());
                        }
                    }
                }
            }
            match jump_to {
                Some(next) => start = next,
                None => return Ok(()),
            }
        }
    }

    /// Up to `limit` indexed files in key order, starting after `after`: a walk over the
    /// whole library in bounded batches (the background hashing pass).
    pub fn files_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, WireError> {
        use std::ops::Bound;
        let io = |e: redb::Error| WireError::Io(e.to_string());
        let txn = self.store.db().begin_read().map_err(|e| io(e.into()))?;
        let index = txn.open_table(INDEX).map_err(|e| io(e.into()))?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut files = Vec::new();
        for row in index
            .range::<&str>((start, Bound::Unbounded))
            .map_err(|e| io(e.into()))?
        {
            let (k, v) = row.map_err(|e| io(e.into()))?;
            if IndexValue::unpack(v.value()).is_some_and(|v| !v.is_dir) {
                files.push(k.value().to_string());
                if files.len() == limit {
                    break;
                }
            }
        }
        Ok(files)
    }

    /// Maps a request path to a regular file inside a share, following symlinks only while
    /// they stay inside that share's root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, WireError> {
        let parts = split_request_path(path)?;
        let (share, rest) = parts.split_first().ok_or(WireError::NotFound)?;
        // A file still being written is not served until it is stable (PROTOCOL.md §6.1).
        // An I/O error, not NotFound: a downloader retries the former and gives up on the
        // latter, and the file will be there in a moment.
        if self.is_writing(&parts.join("/")) {
            return Err(WireError::Io(BEING_WRITTEN.into()));
        }
        let root = self
            .roots()
            .get(*share)
            .cloned()
            .ok_or(WireError::NotFound)?;
        let joined = rest.iter().fold(root.clone(), |p, part| p.join(part));
        let real = joined.canonicalize().map_err(|_| WireError::NotFound)?;
        if !real.starts_with(&root) {
            return Err(WireError::Forbidden);
        }
        if !real.is_file() || is_partial_download(&real, &self.part_dirs()) {
            return Err(WireError::NotFound);
        }
        Ok(real)
    }
}

#[cfg(test)]
mod tests;
