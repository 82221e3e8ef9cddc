//! What the share watcher (`watch.rs`) asks of the index: re-read one directory and carry
//! the size change up to the share root, say whether a share's directory is there, and
//! keep files still being written from being served (PROTOCOL.md §6.1).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;

use super::scan::Scan;
use super::*;

/// A share root's identity: a directory replaced by another one at the same path (or an
/// unmount uncovering the mount point) is a new tree to watch and index.
pub type RootId = (u64, u64);

impl Shares {
    /// Whether share `name`'s directory is there, updating its `available` flag and logging
    /// each change once. `None` for a share that is missing, not a directory, or unknown.
    pub fn check_root(&self, name: &str) -> Option<RootId> {
        let root = self.roots().get(name).cloned()?;
        let problem = match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {
                self.mark_available(name, None);
                return Some((meta.dev(), meta.ino()));
            }
            Ok(_) => "it is not a directory any more".to_string(),
            Err(e) => e.to_string(),
        };
        let message = format!("{} is unavailable: {problem}", root.display());
        self.mark_available(name, Some(message));
        None
    }

    fn mark_available(&self, name: &str, problem: Option<String>) {
        let Ok(mut missing) = self.unavailable.write() else {
            return;
        };
        match problem {
            Some(problem) => {
                if missing.insert(name.to_string()) {
                    tracing::warn!(
                        "share {name}: {problem}; it is hidden from friends until it is back"
                    );
                }
            }
            None => {
                if missing.remove(name) {
                    tracing::info!("share {name} is available again");
                }
            }
        }
    }

    /// False while the share's directory is missing or not a directory.
    pub fn is_available(&self, name: &str) -> bool {
        self.unavailable
            .read()
            .map(|m| !m.contains(name))
            .unwrap_or(true)
    }

    /// Files that started (`true`) or stopped (`false`) being written, by index key, in
    /// order (from the watcher): none being written is served.
    pub fn update_writing(&self, news: Vec<(String, bool)>) {
        if let Ok(mut writing) = self.writing.write() {
            for (key, now_writing) in news {
                if now_writing {
                    writing.insert(key);
                } else {
                    writing.remove(&key);
                }
            }
        }
    }

    pub(super) fn is_writing(&self, key: &str) -> bool {
        self.writing.read().is_ok_and(|w| w.contains(key))
    }

    /// Re-reads directory `key` (`share/sub/dir`): its direct children are brought up to
    /// date, new subdirectories walked whole, vanished ones dropped with their subtree, and
    /// the sizes of its ancestors recomputed from their direct children. Children named in
    /// `keep` are still being written and keep their previous entry. A directory that is
    /// gone leaves its nearest existing ancestor to re-read.
    pub fn reindex_dir(&self, key: &str, keep: &[String]) -> Result<ScanStats, SharesError> {
        let parts: Vec<&str> = key.split('/').collect();
        let share = parts[0];
        let Some(root) = self.roots().get(share).cloned() else {
            return Ok(ScanStats::default()); // unshared since the event
        };
        if !self.is_available(share) {
            return Ok(ScanStats::default());
        }
        let _index = self.index_lock.lock().map_err(|_| lock_poisoned())?;
        let mut depth = parts.len() - 1;
        let (dir, meta) = loop {
            let dir = parts[1..=depth].iter().fold(root.clone(), |p, c| p.join(c));
            // Not following symlinks: a symlinked directory is never indexed.
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => break (dir, meta),
                _ if depth == 0 => return Ok(ScanStats::default()), // the root check's case
                _ => depth -= 1,
            }
        };
        if depth > MAX_DEPTH {
            return Ok(ScanStats::default());
        }
        let dir_key = parts[..=depth].join("/");
        let keep: BTreeSet<&str> = if depth == parts.len() - 1 {
            keep.iter().map(String::as_str).collect()
        } else {
            BTreeSet::new()
        };
        let mut scan = Scan::new(&self.store, &root).skipping_parts_in(self.part_dirs());
        let size = scan.dir_shallow(&dir, &dir_key, depth, &keep)?;
        let value = IndexValue {
            size,
            mtime: mtime_secs(&meta),
            is_dir: true,
        };
        scan.put_if_changed(&dir_key, value)?;
        for up in (0..depth).rev() {
            scan.refresh_size(&parts[..=up].join("/"))?;
        }
        scan.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Shares, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("storage"), 1 << 20).unwrap());
        let shares = Shares::open(store).unwrap();
        let root = dir.path().join("s");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/old"), b"0123456789").unwrap();
        fs::write(root.join("top"), b"1").unwrap();
        shares.add(&root).unwrap();
        (dir, shares, root)
    }

    fn sizes(shares: &Shares) -> Vec<String> {
        let mut out = Vec::new();
        shares
            .ls("", None, true, |e| {
                out.push(format!("{}:{}", e.path, e.size));
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn a_reread_directory_updates_its_children_and_its_ancestors_sizes() {
        let (_tmp, shares, root) = setup();
        fs::write(root.join("a/b/new"), b"12345").unwrap();
        fs::create_dir_all(root.join("a/b/fresh/deeper")).unwrap();
        fs::write(root.join("a/b/fresh/deeper/f"), b"12").unwrap();
        let stats = shares.reindex_dir("s/a/b", &[]).unwrap();
        assert_eq!(
            stats.dirs, 3,
            "b, and the new subtree walked whole: {stats:?}"
        );
        assert_eq!(
            sizes(&shares),
            [
                "s:18",
                "s/a:17",
                "s/a/b:17",
                "s/a/b/fresh:2",
                "s/a/b/fresh/deeper:2",
                "s/a/b/fresh/deeper/f:2",
                "s/a/b/new:5",
                "s/a/b/old:10",
                "s/top:1"
            ]
        );
        // A file still being written keeps its old entry; a new one stays out.
        fs::write(root.join("a/b/old"), b"0").unwrap();
        fs::write(root.join("a/b/partial"), b"xyz").unwrap();
        let keep = ["old".to_string(), "partial".to_string()];
        shares.reindex_dir("s/a/b", &keep).unwrap();
        assert!(sizes(&shares).contains(&"s/a/b/old:10".to_string()));
        assert!(!sizes(&shares)
            .iter()
            .any(|e| e.starts_with("s/a/b/partial")));
        // A directory gone since its event: its nearest existing ancestor is re-read.
        fs::remove_dir_all(root.join("a/b")).unwrap();
        shares.reindex_dir("s/a/b/fresh/deeper", &[]).unwrap();
        assert_eq!(sizes(&shares), ["s:1", "s/a:0", "s/top:1"]);
    }

    #[test]
    fn a_missing_root_makes_the_share_unavailable_until_it_is_back() {
        let (_tmp, shares, root) = setup();
        assert!(shares.check_root("s").is_some());
        fs::rename(&root, root.with_file_name("elsewhere")).unwrap();
        assert_eq!(shares.check_root("s"), None);
        assert!(!shares.is_available("s"));
        assert_eq!(shares.rescan("s").unwrap(), ScanStats::default());
        assert!(!shares.list().unwrap()[0].available);
        fs::write(&root, b"a file now").unwrap();
        assert_eq!(shares.check_root("s"), None);
        fs::remove_file(&root).unwrap();
        fs::rename(root.with_file_name("elsewhere"), &root).unwrap();
        assert!(shares.check_root("s").is_some());
        assert!(shares.list().unwrap()[0].available);
    }

    #[test]
    fn a_file_being_written_is_not_served() {
        let (_tmp, shares, _root) = setup();
        assert!(shares.resolve("s/top").is_ok());
        shares.update_writing(vec![("s/top".to_string(), true)]);
        assert_eq!(
            shares.resolve("s/top"),
            Err(WireError::Io(BEING_WRITTEN.into()))
        );
        shares.update_writing(vec![("s/top".to_string(), false)]);
        assert!(shares.resolve("s/top").is_ok());
    }
}
