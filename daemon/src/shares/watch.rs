//! The share watcher: the I/O shell of `core::watch`. One thread holds an inotify instance
//! with a watch on every directory of every available share, turns the kernel's events
//! into index keys for the `Coalescer`, and applies the work it hands out
//! (`Shares::reindex_dir`, or `Shares::rescan` for a whole share). It also stats each
//! share root every 5 s, which is how a share that disappeared, was replaced by a file,
//! was remounted or came back is noticed; and how shares added or removed through the API
//! are picked up. The periodic rescan (`--rescan-interval`) stays the safety net for
//! whatever the kernel cannot report (see ARCHITECTURE.md, "The share watcher").
//!
//! inotify through `nix` rather than the `notify` crate: nix is linked anyway, and notify
//! (with its own thread, channels and platform backends) would cost the static router
//! builds size they do not have.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};

use super::{subtree_end, RootId, Shares, MAX_DEPTH};
use crate::watch::{share_of, Change, Coalescer, Limits, Work};

/// How often share roots are checked (missing, replaced, back, added, removed). A root
/// deleted, moved or unmounted while watched is noticed at once through its own events;
/// this catches the rest, and is the watcher's one timer when idle (a router's idle budget:
/// no timer more often than once a second).
const ROOT_CHECK: Duration = Duration::from_secs(5);
/// Longest sleep in `poll`, so a stop is noticed within it.
const MAX_SLEEP: Duration = ROOT_CHECK;
/// Event buffers read per wake-up (4 KiB each); the rest waits for the next turn, so the
/// work due is applied even under a flood. An overflowing kernel queue says so itself.
const READS_PER_TURN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start watching the shares (inotify): {0}; changes show at the next rescan")]
    Init(Errno),
    #[error("cannot start the share watcher thread: {0}; changes show at the next rescan")]
    Thread(std::io::Error),
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// Starts the watcher thread. `stopping` is polled at least every 5 s; `changed` is
/// called after each batch of index updates (for the UI's `shares_changed`).
pub fn spawn(
    shares: Arc<Shares>,
    stopping: impl Fn() -> bool + Send + 'static,
    changed: impl Fn() + Send + 'static,
) -> Result<(), WatchError> {
    let inotify =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(WatchError::Init)?;
    let mut watcher = Watcher {
        inotify,
        shares: Arc::downgrade(&shares),
        coalescer: Coalescer::new(Limits::default()),
        by_wd: HashMap::new(),
        by_key: BTreeMap::new(),
        roots: BTreeMap::new(),
        limit_warned: false,
        check_roots_at: Instant::now(),
    };
    std::thread::Builder::new()
        .name("share-watcher".into())
        .spawn(move || watcher.run(stopping, changed))
        .map_err(WatchError::Thread)?;
    Ok(())
}

struct Watcher {
    inotify: Inotify,
    /// Held only while working, never across the wait: at shutdown the database closes
    /// (cleanly, so `repair` can read it) without waiting for this thread's next turn.
    shares: Weak<Shares>,
    coalescer: Coalescer,
    /// Watched directories: descriptor -> index key, and back.
    by_wd: HashMap<WatchDescriptor, String>,
    by_key: BTreeMap<String, WatchDescriptor>,
    /// Watched shares: name -> (root, identity of the root directory watched).
    roots: BTreeMap<String, (PathBuf, RootId)>,
    /// The watch limit warning is logged once per run.
    limit_warned: bool,
    check_roots_at: Instant,
}

impl Watcher {
    fn run(&mut self, stopping: impl Fn() -> bool, changed: impl Fn()) {
        while !stopping() {
            let now = Instant::now();
            let Some(shares) = self.shares.upgrade() else {
                return;
            };
            if now >= self.check_roots_at {
                if self.check_roots(&shares, now) {
                    changed();
                }
                self.check_roots_at = now + ROOT_CHECK;
            }
            let wake = self
                .coalescer
                .next_due()
                .map_or(self.check_roots_at, |due| due.min(self.check_roots_at))
                .min(now + MAX_SLEEP);
            let timeout = PollTimeout::try_from(wake.saturating_duration_since(now))
                .unwrap_or(PollTimeout::ZERO);
            drop(shares);
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            let readable = match poll(&mut fds, timeout) {
                Ok(n) => n > 0,
                Err(Errno::EINTR) => false,
                Err(e) => {
                    tracing::warn!("share watcher stopped: {e}; changes show at the next rescan");
                    return;
                }
            };
            if readable {
                self.read_events();
            }
            let work = self.coalescer.poll_due(Instant::now());
            let Some(shares) = self.shares.upgrade() else {
                return;
            };
            let news = self.coalescer.take_writing_news();
            if !news.is_empty() {
                shares.update_writing(news);
            }
            if !work.is_empty() {
                Self::apply(&shares, work);
                changed();
            }
        }
    }

    /// Reads what the kernel queued (bounded per turn) into the coalescer.
    fn read_events(&mut self) {
        for _ in 0..READS_PER_TURN {
            match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => {
                    let now = Instant::now();
                    for event in events {
                        self.on_event(now, event);
                    }
                }
                Ok(_) | Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!("reading share events: {e}");
                    break;
                }
            }
        }
    }

    fn apply(shares: &Shares, work: Vec<Work>) {
        for item in work {
            let result = match &item {
                Work::Rescan(share) => shares.rescan(share),
                Work::Dir { key, keep } => shares.reindex_dir(key, keep),
            };
            match result {
                Ok(stats) => tracing::debug!("watcher: {item:?}: {stats:?}"),
                Err(e) => tracing::warn!("updating the index after a change failed: {e}"),
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: InotifyEvent) {
        let mask = event.mask;
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            tracing::info!("the kernel dropped file events (queue full): rescanning the shares");
            for share in self.roots.keys() {
                self.coalescer.rescan(now, share);
            }
            return;
        }
        let Some(dir) = self.by_wd.get(&event.wd).cloned() else {
            return; // a watch removed since
        };
        if mask.contains(AddWatchFlags::IN_IGNORED) {
            self.forget_watch(&dir, event.wd);
            return;
        }
        let gone_self =
            AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_UNMOUNT;
        if mask.intersects(gone_self) {
            // A share root: check it now. A subdirectory: its parent's event covers it.
            if !dir.contains('/') {
                self.check_roots_at = now;
            }
            return;
        }
        // Names that are not UTF-8 are never indexed (scan.rs), so their events are moot.
        let Some(name) = event.name.as_ref().and_then(|n| n.to_str()) else {
            return;
        };
        let child = format!("{dir}/{name}");
        let is_dir = mask.contains(AddWatchFlags::IN_ISDIR);
        let arrived = mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
        let left = mask.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM);
        if is_dir && left {
            self.unwatch_tree(&child);
        }
        if is_dir && arrived {
            if let Some(path) = self.path_of(&child) {
                self.watch_tree(now, &child, &path, true);
            }
        }
        let change = if is_dir || left || mask.contains(AddWatchFlags::IN_MOVED_TO) {
            Change::Settled
        } else {
            Change::Written
        };
        self.coalescer.handle_event(now, &dir, name, change);
    }

    /// The directory an index key names, from its share's root.
    fn path_of(&self, key: &str) -> Option<PathBuf> {
        let (root, _) = self.roots.get(share_of(key))?;
        Some(key.split('/').skip(1).fold(root.clone(), |p, c| p.join(c)))
    }

    /// Watches `path` (index key `key`) and every directory under it. With `fresh`, each is
    /// also queued for a re-read: a tree moved in may hold what the index never saw.
    fn watch_tree(&mut self, now: Instant, key: &str, path: &Path, fresh: bool) {
        let mut stack = vec![(key.to_string(), path.to_path_buf())];
        while let Some((key, path)) = stack.pop() {
            if !self.watch_one(&key, &path) {
                continue;
            }
            if fresh {
                self.coalescer.handle_event(now, &key, "", Change::Settled);
            }
            if key.split('/').count() > MAX_DEPTH {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                // file_type does not follow symlinks: symlinked directories are not indexed.
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if let (true, Ok(name)) = (is_dir, entry.file_name().into_string()) {
                    stack.push((format!("{key}/{name}"), entry.path()));
                }
            }
        }
    }

    /// Adds one watch; false if the directory cannot be watched (its subtree is skipped).
    fn watch_one(&mut self, key: &str, path: &Path) -> bool {
        match self.inotify.add_watch(path, mask()) {
            Ok(wd) => {
                if let Some(old) = self.by_wd.insert(wd, key.to_string()) {
                    self.by_key.remove(&old);
                }
                self.by_key.insert(key.to_string(), wd);
                true
            }
            Err(Errno::ENOSPC) => {
                if !self.limit_warned {
                    self.limit_warned = true;
                    tracing::warn!(
                        "the kernel's inotify watch limit is reached ({} directories watched): \
                         changes elsewhere in the shares show at the next rescan; raise \
                         fs.inotify.max_user_watches (sysctl) to watch them all",
                        self.by_wd.len()
                    );
                }
                false
            }
            Err(e) => {
                tracing::debug!("cannot watch {}: {e}", path.display());
                false
            }
        }
    }

    fn forget_watch(&mut self, key: &str, wd: WatchDescriptor) {
        self.by_wd.remove(&wd);
        if self.by_key.get(key) == Some(&wd) {
            self.by_key.remove(key);
        }
    }

    /// Removes the watches of `key` and every directory under it.
    fn unwatch_tree(&mut self, key: &str) {
        let below = format!("{key}/");
        let end = subtree_end(key);
        let mut keys: Vec<String> = self
            .by_key
            .range(below..end)
            .map(|(k, _)| k.clone())
            .collect();
        keys.push(key.to_string());
        for k in keys {
            if let Some(wd) = self.by_key.remove(&k) {
                self.by_wd.remove(&wd);
                // Already gone with its directory, or removed here: either way not watched.
                let _ = self.inotify.rm_watch(wd);
            }
        }
    }

    /// Picks up added, removed, vanished, replaced and returned share roots; true if a share
    /// went missing or came back. That is news of its own: a root that vanished before its
    /// watch was in place (just after the share was added) sends no inotify event.
    fn check_roots(&mut self, shares: &Shares, now: Instant) -> bool {
        let current = shares.roots();
        let mut availability_changed = false;
        let dropped: Vec<String> = self
            .roots
            .keys()
            .filter(|name| !current.contains_key(*name))
            .cloned()
            .collect();
        for name in dropped {
            self.drop_share(&name);
        }
        for (name, root) in current {
            let was_available = shares.is_available(&name);
            let id = shares.check_root(&name);
            availability_changed |= shares.is_available(&name) != was_available;
            let watched = self.roots.get(&name).map(|(_, id)| *id);
            if id == watched {
                continue;
            }
            self.drop_share(&name);
            if let Some(id) = id {
                self.roots.insert(name.clone(), (root.clone(), id));
                self.watch_tree(now, &name, &root, false);
                // Whatever changed before the watches were in place (or while the share
                // was away) is found by one walk of the share.
                self.coalescer.rescan(now, &name);
            }
        }
        availability_changed
    }

    fn drop_share(&mut self, name: &str) {
        if self.roots.remove(name).is_some() {
            self.unwatch_tree(name);
            self.coalescer.forget_share(name);
        }
    }
}
