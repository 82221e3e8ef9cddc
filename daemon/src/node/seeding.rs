//! Seeding what we fetch (`seed_downloads`, on by default): the download folder is offered
//! to friends as a share of its own, so finished downloads are listed and found by `Have`,
//! and a later friend's swarm uses them (PROTOCOL.md §10.2). It is a share like any other:
//! per-share access applies, and removing it through the API turns seeding off. A folder
//! that already lies in a share of the user's is not shared twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::library::Library;
use crate::config::registry as setting;
use crate::events::Event;
use crate::locks::lock;
use crate::shares::SharesError;
use crate::store::StoreError;

impl Library {
    /// Whether finished downloads are offered: the stored value, which the start-up value
    /// (if one was given) replaced at start.
    pub fn seeding(&self) -> bool {
        self.saved
            .flag(setting::SEED_DOWNLOADS.key)
            .ok()
            .flatten()
            .unwrap_or(true)
    }

    /// Keeps a start-up value of `seed_downloads`, then makes the shares agree with it.
    pub(super) fn start_seeding(&self, given: Option<bool>, download_dir: &Path) {
        if let Some(on) = given
            .filter(|on| self.saved.flag(setting::SEED_DOWNLOADS.key).ok().flatten() != Some(*on))
        {
            if let Err(e) = self.saved.set_flag(setting::SEED_DOWNLOADS.key, on) {
                tracing::warn!("cannot keep seed_downloads: {e}");
            }
        }
        self.seed_folder_logged(download_dir);
    }

    /// Turns seeding on or off for now and the next start; the share follows in the
    /// background (sharing a folder indexes it).
    pub fn set_seeding(
        self: &Arc<Self>,
        on: bool,
        download_dir: PathBuf,
    ) -> Result<(), StoreError> {
        self.saved.set_flag(setting::SEED_DOWNLOADS.key, on)?;
        self.follow_download_dir(download_dir);
        Ok(())
    }

    /// After a change of setting or download folder: the share follows in the background.
    pub fn follow_download_dir(self: &Arc<Self>, download_dir: PathBuf) {
        let library = self.clone();
        tokio::task::spawn_blocking(move || library.seed_folder_logged(&download_dir));
    }

    fn seed_folder_logged(&self, download_dir: &Path) {
        if let Err(e) = self.seed_folder(download_dir) {
            tracing::warn!("cannot share the download folder: {e}");
        }
    }

    /// Makes the shares agree with the setting and the current download folder (canonical):
    /// the folder's `.part` files are never indexed nor served; with seeding on it is shared
    /// unless a share of the user's holds it already; the seeded share of an old folder, or
    /// with seeding off, is removed. Blocking (a new share is indexed).
    fn seed_folder(&self, download_dir: &Path) -> Result<(), SharesError> {
        let _one_at_a_time = lock(&self.seeding_lock);
        self.shares.set_download_dir(download_dir);
        let seeded = self.saved.seeded_share()?;
        let roots = self.shares.roots();
        let in_users_share = roots
            .iter()
            .any(|(name, root)| Some(name) != seeded.as_ref() && download_dir.starts_with(root));
        let wanted = self.seeding() && !in_users_share;
        if let Some(name) = seeded {
            if wanted && roots.get(&name).map(PathBuf::as_path) == Some(download_dir) {
                return Ok(());
            }
            match self.shares.remove(&name) {
                Ok(()) | Err(SharesError::UnknownShare(_)) => {}
                Err(e) => return Err(e),
            }
            self.saved.set_seeded_share(None)?;
            tracing::info!("finished downloads are no longer offered (share {name} removed)");
        }
        if wanted {
            let (name, _) = self.shares.add(download_dir)?;
            self.saved.set_seeded_share(Some(&name))?;
            tracing::info!(
                "finished downloads are offered to friends as share {name} ({})",
                download_dir.display()
            );
        }
        let _ = self.events.send(Event::SharesChanged);
        Ok(())
    }

    /// Removing the seeded share is how a user stops seeding from the shares screen.
    pub(super) fn forget_seeded_share(&self, name: &str) -> Result<(), SharesError> {
        let _one_at_a_time = lock(&self.seeding_lock);
        if self.saved.seeded_share()?.as_deref() == Some(name) {
            self.saved.set_seeded_share(None)?;
            self.saved.set_flag(setting::SEED_DOWNLOADS.key, false)?;
            tracing::info!("share {name} removed: finished downloads are no longer offered");
        }
        Ok(())
    }
}
