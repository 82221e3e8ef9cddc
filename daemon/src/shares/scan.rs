//! A rescan of one share: walks the directory tree and writes only what changed to the
//! index, in bounded transactions, dropping subtrees that disappeared.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{Durability, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::store::{IndexValue, Store, StoreError, INDEX};

use super::*;

pub(super) struct Scan<'a> {
    store: &'a Store,
    root: &'a Path,
    /// Open only while there are changes to write, so an unchanged rescan never blocks writers.
    txn: Option<(WriteTransaction, Instant)>,
    ops: usize,
    /// Non-durable commits were made; a final durable commit must follow.
    unsynced: bool,
    stats: ScanStats,
    /// Index keys of files the watcher sees being written: they keep their stored entry
    /// (or stay out) in a rescan too, so the stable rule holds whichever walk lists them.
    writing: BTreeSet<String>,
    /// The download folder and `--to` destinations: their `.part` files are downloads in
    /// progress, never indexed.
    part_dirs: Vec<PathBuf>,
}

struct Child {
    name: String,
    path: PathBuf,
    value: IndexValue,
}

fn db_error(e: impl Into<redb::Error>) -> SharesError {
    SharesError::Store(StoreError::Db(e.into().to_string()))
}

impl Scan<'_> {
    pub(super) fn new<'a>(store: &'a Store, root: &'a Path) -> Scan<'a> {
        Scan {
            store,
            root,
            txn: None,
            ops: 0,
            unsynced: false,
            stats: ScanStats::default(),
            writing: BTreeSet::new(),
            part_dirs: Vec::new(),
        }
    }

    pub(super) fn skipping_parts_in(mut self, part_dirs: Vec<PathBuf>) -> Self {
        self.part_dirs = part_dirs;
        self
    }

    pub(super) fn with_writing(mut self, writing: BTreeSet<String>) -> Self {
        self.writing = writing;
        self
    }

    /// Files being written keep their stored entry, or are left out if they have none.
    fn hold_writing(&self, key: &str, children: &mut Vec<Child>) -> Result<(), SharesError> {
        let busy =
            |c: &Child| !c.value.is_dir && self.writing.contains(&format!("{key}/{}", c.name));
        if self.writing.is_empty() || !children.iter().any(busy) {
            return Ok(());
        }
        let stored = self.stored_children(key)?;
        children.retain_mut(|c| {
            if !busy(c) {
                return true;
            }
            match stored.get(&c.name) {
                Some(value) => {
                    c.value = *value;
                    true
                }
                None => false,
            }
        });
        Ok(())
    }

    fn write_txn(&mut self) -> Result<&WriteTransaction, SharesError> {
        if self.txn.is_none() {
            let mut txn = self.store.db().begin_write().map_err(db_error)?;
            // Slices are committed cheaply; `finish` makes them durable in one fsync.
            txn.set_durability(Durability::None)
                .map_err(|e| SharesError::Store(StoreError::Db(e.to_string())))?;
            self.txn = Some((txn, Instant::now()));
        }
        self.txn
            .as_ref()
            .map(|(t, _)| t)
            .ok_or_else(|| SharesError::Store(StoreError::Db("no transaction".into())))
    }

    /// Commits the current slice if it is big or old enough that other writers would notice.
    fn maybe_commit(&mut self) -> Result<(), SharesError> {
        let due = self.txn.as_ref().is_some_and(|(_, opened)| {
            self.ops >= OPS_PER_COMMIT || opened.elapsed() >= SLICE_TIME
        });
        if due {
            if let Some((txn, _)) = self.txn.take() {
                txn.commit().map_err(db_error)?;
                self.unsynced = true;
                self.ops = 0;
            }
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<ScanStats, SharesError> {
        let txn = match self.txn.take() {
            Some((txn, _)) => Some(txn),
            None if self.unsynced => Some(self.store.db().begin_write().map_err(db_error)?),
            None => None,
        };
        if let Some(mut txn) = txn {
            txn.set_durability(Durability::Immediate)
                .map_err(|e| SharesError::Store(StoreError::Db(e.to_string())))?;
            txn.commit().map_err(db_error)?;
        }
        Ok(self.stats)
    }

    /// The direct children of `key` as stored: from the open slice if any, else a read snapshot.
    fn stored_children(&self, key: &str) -> Result<BTreeMap<String, IndexValue>, SharesError> {
        match &self.txn {
            Some((txn, _)) => stored_children(&txn.open_table(INDEX).map_err(db_error)?, key),
            None => {
                let read = self.store.db().begin_read().map_err(db_error)?;
                stored_children(&read.open_table(INDEX).map_err(db_error)?, key)
            }
        }
    }

    pub(super) fn put_if_changed(
        &mut self,
        key: &str,
        value: IndexValue,
    ) -> Result<(), SharesError> {
        let current = match &self.txn {
            Some((txn, _)) => stored_value(&txn.open_table(INDEX).map_err(db_error)?, key)?,
            None => {
                let read = self.store.db().begin_read().map_err(db_error)?;
                stored_value(&read.open_table(INDEX).map_err(db_error)?, key)?
            }
        };
        if current != Some(value) {
            let txn = self.write_txn()?;
            txn.open_table(INDEX)
                .map_err(db_error)?
                .insert(key, value.pack().as_slice())
                .map_err(db_error)?;
            self.stats.written += 1;
        }
        Ok(())
    }

    /// Indexes `dir` (stored under `key`) and returns its cumulative size.
    pub(super) fn dir(&mut self, dir: &Path, key: &str, depth: usize) -> Result<u64, SharesError> {
        self.stats.dirs += 1;
        let mut children = Vec::new();
        if depth < MAX_DEPTH {
            match fs::read_dir(dir) {
                Ok(entries) => {
                    children.extend(entries.flatten().filter_map(|entry| self.child(entry)))
                }
                Err(e) => tracing::warn!("cannot read {}: {e}", dir.display()),
            }
        }
        self.hold_writing(key, &mut children)?;
        children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut total = 0u64;
        for child in &mut children {
            if child.value.is_dir {
                let child_key = format!("{key}/{}", child.name);
                child.value.size = self.dir(&child.path, &child_key, depth + 1)?;
            } else {
                self.stats.files += 1;
            }
            total = total.saturating_add(child.value.size);
        }
        self.merge_children(key, &children)?;
        Ok(total)
    }

    /// Like [`Scan::dir`] for one directory whose subdirectories are already indexed: their
    /// stored sizes are taken as they are (their own events keep them current), and only a
    /// subdirectory the index does not know yet is walked. Children in `keep` keep their
    /// stored entry, or stay out if they have none (the stable rule, PROTOCOL.md §6.1).
    pub(super) fn dir_shallow(
        &mut self,
        dir: &Path,
        key: &str,
        depth: usize,
        keep: &BTreeSet<&str>,
    ) -> Result<u64, SharesError> {
        self.stats.dirs += 1;
        let stored = self.stored_children(key)?;
        let mut children = Vec::new();
        match fs::read_dir(dir) {
            Ok(entries) => children.extend(
                entries
                    .flatten()
                    .filter_map(|entry| self.child(entry))
                    .filter(|c| !keep.contains(c.name.as_str())),
            ),
            Err(e) => tracing::warn!("cannot read {}: {e}", dir.display()),
        }
        for name in keep {
            if let Some(value) = stored.get(*name) {
                let path = dir.join(name);
                let name = name.to_string();
                children.push(Child {
                    name,
                    path,
                    value: *value,
                });
            }
        }
        children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut total = 0u64;
        for child in &mut children {
            if child.value.is_dir {
                child.value.size = match stored.get(&child.name) {
                    Some(known) if known.is_dir => known.size,
                    _ => {
                        let child_key = format!("{key}/{}", child.name);
                        self.dir(&child.path, &child_key, depth + 1)?
                    }
                };
            } else {
                self.stats.files += 1;
            }
            total = total.saturating_add(child.value.size);
        }
        self.merge_children(key, &children)?;
        Ok(total)
    }

    /// Sets the stored size of directory `key` to the sum of its direct children's.
    pub(super) fn refresh_size(&mut self, key: &str) -> Result<(), SharesError> {
        let current = match &self.txn {
            Some((txn, _)) => stored_value(&txn.open_table(INDEX).map_err(db_error)?, key)?,
            None => {
                let read = self.store.db().begin_read().map_err(db_error)?;
                stored_value(&read.open_table(INDEX).map_err(db_error)?, key)?
            }
        };
        let Some(current) = current else {
            return Ok(());
        };
        let size = self
            .stored_children(key)?
            .values()
            .fold(0u64, |sum, v| sum.saturating_add(v.size));
        self.put_if_changed(key, IndexValue { size, ..current })
    }

    fn child(&self, entry: fs::DirEntry) -> Option<Child> {
        let name = match entry.file_name().into_string() {
            Ok(name) => name,
            Err(_) => {
                tracing::debug!("skipping non-UTF-8 name in {}", entry.path().display());
                return None;
            }
        };
        let path = entry.path();
        let file_type = entry.file_type().ok()?;
        let meta = if file_type.is_symlink() {
            // Symlinks are indexed only when they point at a file inside this share;
            // symlinked directories are skipped so loops cannot form.
            let target = path.canonicalize().ok()?;
            if !target.starts_with(self.root) || !target.is_file() {
                return None;
            }
            fs::metadata(&target).ok()?
        } else {
            entry.metadata().ok()?
        };
        if !meta.is_dir() && !meta.is_file() {
            return None;
        }
        if meta.is_file() && is_partial_download(&path, &self.part_dirs) {
            return None;
        }
        let value = IndexValue {
            size: if meta.is_dir() { 0 } else { meta.len() },
            mtime: mtime_secs(&meta),
            is_dir: meta.is_dir(),
        };
        Some(Child { name, path, value })
    }

    /// Writes changed children of `key` and removes children (and their subtrees) that vanished.
    fn merge_children(&mut self, key: &str, children: &[Child]) -> Result<(), SharesError> {
        let mut stored = self.stored_children(key)?;
        let changed: Vec<&Child> = children
            .iter()
            .filter(|c| stored.remove(&c.name) != Some(c.value))
            .collect();
        if changed.is_empty() && stored.is_empty() {
            return Ok(());
        }
        let prefix = format!("{key}/");
        {
            let txn = self.write_txn()?;
            let mut index = txn.open_table(INDEX).map_err(db_error)?;
            for child in &changed {
                let child_key = format!("{prefix}{}", child.name);
                index
                    .insert(child_key.as_str(), child.value.pack().as_slice())
                    .map_err(db_error)?;
            }
            for (gone, value) in &stored {
                let gone_key = format!("{prefix}{gone}");
                index.remove(gone_key.as_str()).map_err(db_error)?;
                if value.is_dir {
                    let sub_start = format!("{gone_key}/");
                    let sub_end = subtree_end(&gone_key);
                    index
                        .retain_in(sub_start.as_str()..sub_end.as_str(), |_, _| false)
                        .map_err(db_error)?;
                }
            }
        }
        self.stats.written += changed.len() as u64;
        self.stats.removed += stored.len() as u64;
        self.ops += changed.len() + stored.len();
        self.maybe_commit()
    }
}

fn stored_value(
    index: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<IndexValue>, SharesError> {
    Ok(index
        .get(key)
        .map_err(db_error)?
        .and_then(|v| IndexValue::unpack(v.value())))
}

/// Direct children of `key`, jumping over each child directory's subtree.
fn stored_children(
    index: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<BTreeMap<String, IndexValue>, SharesError> {
    let prefix = format!("{key}/");
    let end = subtree_end(key);
    let mut out = BTreeMap::new();
    let mut start = prefix.clone();
    'outer: loop {
        for row in index
            .range(start.as_str()..end.as_str())
            .map_err(db_error)?
        {
            let (k, v) = row.map_err(db_error)?;
            let rest = &k.value()[prefix.len()..];
            if let Some(slash) = rest.find('/') {
                start = subtree_end(&k.value()[..prefix.len() + slash]);
                continue 'outer;
            }
            if let Some(v) = IndexValue::unpack(v.value()) {
                out.insert(rest.to_string(), v);
            }
        }
        return Ok(out);
    }
}
