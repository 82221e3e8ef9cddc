//! The shares as one friend may see them. The wire server reaches shared files only through
//! [`FriendView`], so the per-share access rule is enforced here, once, for every request
//! type: a hidden share answers exactly like one that does not exist (`NotFound`, no name,
//! no size), in listings, searches, reads, hashes and `Have`. So does a share whose
//! directory is missing, while it is.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::{split_request_path, Shares};
use crate::store::HashRecord;
use crate::wire::{Entry, WireError};

/// The share a request path (or an entry's path) lies in: its first component.
fn share_of(path: &str) -> &str {
    path.split('/').next().unwrap_or_default()
}

pub struct FriendView {
    shares: Arc<Shares>,
    visible: BTreeSet<String>,
}

impl FriendView {
    /// `visible`: the names of the shares this friend may see.
    pub fn new(shares: Arc<Shares>, visible: BTreeSet<String>) -> Self {
        Self { shares, visible }
    }

    /// A share whose directory is missing (`Shares::check_root`) is hidden like one this
    /// friend may not see, until it is back.
    fn sees(&self, path: &str) -> bool {
        let share = share_of(path);
        self.visible.contains(share) && self.shares.is_available(share)
    }

    /// `path` if it is well-formed and in a share this friend sees: a malformed path is
    /// `Forbidden` whatever its first component, as for the owner.
    fn visible_path<'a>(&self, path: &'a str) -> Result<&'a str, WireError> {
        split_request_path(path)?;
        if self.sees(path) {
            Ok(path)
        } else {
            Err(WireError::NotFound)
        }
    }

    /// As [`Shares::ls`]; the root listing and searches across all shares leave out what
    /// this friend may not see.
    pub fn ls(
        &self,
        path: &str,
        searchterm: Option<&str>,
        recursive: bool,
        mut sink: impl FnMut(Entry) -> bool,
    ) -> Result<(), WireError> {
        if !split_request_path(path)?.is_empty() {
            self.visible_path(path)?;
        }
        self.shares.ls(path, searchterm, recursive, |entry| {
            !self.sees(&entry.path) || sink(entry)
        })
    }

    pub fn resolve(&self, path: &str) -> Result<PathBuf, WireError> {
        self.shares.resolve(self.visible_path(path)?)
    }

    /// Blocking, as [`Shares::content_hashes`].
    pub fn content_hashes(&self, path: &str) -> Result<HashRecord, WireError> {
        self.shares.content_hashes(self.visible_path(path)?)
    }

    /// As [`Shares::find_root`], for content in a share this friend sees.
    pub fn find_root(&self, root: &[u8; 32]) -> Option<(String, HashRecord)> {
        self.shares
            .find_root(root)
            .filter(|(path, _)| self.sees(path))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::Store;

    fn two_shares() -> (tempfile::TempDir, Arc<Shares>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("storage"), 1 << 20).unwrap());
        let shares = Arc::new(Shares::open(store).unwrap());
        for (share, file) in [("Music", "song.flac"), ("Private", "diary.txt")] {
            let root = dir.path().join(share);
            fs::create_dir_all(&root).unwrap();
            fs::write(root.join(file), format!("{share} bytes")).unwrap();
            shares.add(&root).unwrap();
        }
        (dir, shares)
    }

    fn listing(
        view: &FriendView,
        path: &str,
        search: Option<&str>,
    ) -> Result<Vec<String>, WireError> {
        let mut out = Vec::new();
        view.ls(path, search, true, |e| {
            out.push(e.path);
            true
        })?;
        Ok(out)
    }

    #[test]
    fn a_hidden_share_is_indistinguishable_from_a_missing_one() {
        let (_dir, shares) = two_shares();
        let view = FriendView::new(shares.clone(), BTreeSet::from(["Music".to_string()]));
        assert_eq!(
            listing(&view, "", None).unwrap(),
            ["Music", "Music/song.flac"]
        );
        assert_eq!(listing(&view, "", Some("a")).unwrap(), ["Music/song.flac"]);
        for path in ["Private", "Private/", "Private/diary.txt", "Nowhere/x"] {
            assert_eq!(
                listing(&view, path, None),
                Err(WireError::NotFound),
                "{path}"
            );
            assert_eq!(view.resolve(path), Err(WireError::NotFound), "{path}");
        }
        assert_eq!(
            view.content_hashes("Private/diary.txt"),
            Err(WireError::NotFound)
        );
        assert!(view.resolve("Music/song.flac").is_ok());
        let hidden = shares.content_hashes("Private/diary.txt").unwrap();
        assert!(view.find_root(&hidden.root).is_none());
        let shown = view.content_hashes("Music/song.flac").unwrap();
        assert_eq!(
            view.find_root(&shown.root).map(|(p, _)| p).as_deref(),
            Some("Music/song.flac")
        );
        // Traversal is still refused before visibility is even asked.
        assert_eq!(
            view.resolve("Music/../Private/diary.txt"),
            Err(WireError::Forbidden)
        );
        let none = FriendView::new(shares, BTreeSet::new());
        assert!(listing(&none, "", None).unwrap().is_empty());
    }
}
