//! Which parts of the share index to bring up to date after the kernel reported changes
//! (PROTOCOL.md §6.1, "Visibility"). The daemon's watcher (`shares/watch.rs`) feeds every
//! inotify event in here as a directory key of the index (`share/sub/dir`) and the child
//! name it concerns, and asks what is due; this module owns the rules:
//!
//! * **Coalescing.** Events for one directory are gathered for `batch` (250 ms) and that
//!   directory is re-indexed once, however many events came.
//! * **The stable rule.** A file that is being written (created, modified, its attributes
//!   or mtime changed) is listed only once it has had no such event for `quiet` (1 s);
//!   until then the re-index keeps its previous entry, or leaves a new file out, and
//!   [`Coalescer::take_writing_news`] names it so the share refuses to serve it. A file that is
//!   renamed into place, removed, or a new directory, needs no wait.
//! * **Bounded memory.** At most `max_pending` directories and files being written are
//!   remembered. An event that would go past it drops what is pending for its share and
//!   asks for one rescan of that share instead, so a burst of 100,000 renames costs a
//!   fixed amount of memory. While a share waits for its rescan, only files being written
//!   are still remembered (so the rescan holds them back too), within the same cap.
//! * **Cost per event independent of how many files are being written.** A folder of
//!   small files arriving holds a second's worth of them (hundreds) as "being written":
//!   the files are also kept in the order they go quiet, and the share hears only what
//!   changed, so an event costs O(log n), never a walk of them all.
//!
//! Time is handed in (`now`), so the tests drive it with a fake clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How the watcher tunes the rules; [`Limits::default`] is what the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long events for one directory are gathered before it is re-indexed.
    pub batch: Duration,
    /// How long a file must go without a write before it is listed.
    pub quiet: Duration,
    /// Pending directories plus files being written, over all shares.
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch: Duration::from_millis(250),
            quiet: Duration::from_secs(1),
            max_pending: 4096,
        }
    }
}

/// What an event says about the child it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Its content, size or mtime changed (create, modify, attrib, close after write):
    /// it waits until it has been quiet for `quiet`.
    Written,
    /// It appeared complete or went away (renamed in or out, deleted, a new directory):
    /// the directory is re-indexed after `batch`.
    Settled,
}

/// One piece of work for the index, handed out by [`Coalescer::poll_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Walk the whole share again (after an overflow or past the pending cap).
    Rescan(String),
    /// Re-read the directory `key`; children named in `keep` are still being written and
    /// keep their previous entry (or stay out if they have none).
    Dir { key: String, keep: Vec<String> },
}

#[derive(Debug, Default)]
struct PendingDir {
    /// When the directory must be re-read for settled changes (`None`: none waiting).
    due: Option<Instant>,
    /// Files being written, with the time of their last write.
    writing: BTreeMap<String, Instant>,
    /// When it was last re-read while it stayed pending.
    read_at: Option<Instant>,
}

/// The pending changes; see the module documentation.
#[derive(Debug)]
pub struct Coalescer {
    limits: Limits,
    dirs: BTreeMap<String, PendingDir>,
    /// Shares to walk whole, with when.
    rescans: BTreeMap<String, Instant>,
    /// `dirs.len()` plus every `writing` entry: what the cap bounds.
    count: usize,
    /// Writes as (time, directory, name), in time order (`now` never goes back): the first
    /// goes quiet first. An entry whose file was written again, settled or dropped since is
    /// stale and skipped when it comes up; [`QUIET_ORDER_SLACK`] bounds how many there are.
    /// (A queue, not an ordered set: the MIPS builds have no room for another B-tree.)
    quiet_order: VecDeque<(Instant, String, String)>,
    /// Files that started (`true`) or stopped (`false`) being written since the last
    /// [`Coalescer::take_writing_news`], by index key, in order. The watcher takes it every
    /// turn.
    writing_news: Vec<(String, bool)>,
}

/// Stale entries `quiet_order` may hold beyond one per file being written before it is
/// compacted.
const QUIET_ORDER_SLACK: usize = 1024;

/// The share a directory key belongs to: its first component.
pub fn share_of(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

impl Coalescer {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            dirs: BTreeMap::new(),
            rescans: BTreeMap::new(),
            count: 0,
            quiet_order: VecDeque::new(),
            writing_news: Vec::new(),
        }
    }

    /// Pending directories and files being written (never more than `max_pending`).
    pub fn pending(&self) -> usize {
        self.count
    }

    /// Records that child `name` of directory `dir` (an index key) changed at `now`.
    pub fn handle_event(&mut self, now: Instant, dir: &str, name: &str, change: Change) {
        let share = share_of(dir);
        let rescanning = self.rescans.contains_key(share);
        if rescanning && change == Change::Settled {
            return; // the rescan will see it
        }
        let new_dir = !self.dirs.contains_key(dir);
        let new_name = change == Change::Written
            && self
                .dirs
                .get(dir)
                .is_none_or(|d| !d.writing.contains_key(name));
        let grows = usize::from(new_dir) + usize::from(new_name);
        if self.count + grows > self.limits.max_pending {
            if !rescanning {
                self.rescan(now, share);
            }
            return;
        }
        self.count += grows;
        let pending = self.dirs.entry(dir.to_string()).or_default();
        match change {
            Change::Written => {
                if pending.writing.insert(name.to_string(), now).is_none() {
                    self.writing_news.push((format!("{dir}/{name}"), true));
                }
                self.quiet_order
                    .push_back((now, dir.to_string(), name.to_string()));
                if self.quiet_order.len() > self.count + QUIET_ORDER_SLACK {
                    let dirs = &self.dirs;
                    self.quiet_order
                        .retain(|(at, d, n)| is_last_write(dirs, at, d, n));
                }
            }
            Change::Settled => {
                if pending.writing.remove(name).is_some() {
                    self.count -= 1;
                    self.writing_news.push((format!("{dir}/{name}"), false));
                }
                let due = now + self.limits.batch;
                pending.due = Some(pending.due.map_or(due, |d| d.min(due)));
            }
        }
    }

    /// Asks for a walk of the whole share `share` (the kernel lost events, or the share
    /// came back); whatever was pending for it is dropped, the walk covers it.
    pub fn rescan(&mut self, now: Instant, share: &str) {
        self.drop_share(share);
        let due = now + self.limits.batch;
        let at = self.rescans.entry(share.to_string()).or_insert(due);
        *at = (*at).min(due);
    }

    /// Forgets a share that is no longer shared (or no longer there).
    pub fn forget_share(&mut self, share: &str) {
        self.drop_share(share);
        self.rescans.remove(share);
    }

    fn drop_share(&mut self, share: &str) {
        let mut freed = 0;
        let news = &mut self.writing_news;
        self.dirs.retain(|key, d| {
            let keep = share_of(key) != share;
            if !keep {
                freed += 1 + d.writing.len();
                news.extend(
                    d.writing
                        .keys()
                        .map(|name| (format!("{key}/{name}"), false)),
                );
            }
            keep
        });
        self.count -= freed;
    }

    /// The work due at `now`, each directory and share once. Directories whose only news
    /// is a file still being written are not re-read until that file is quiet.
    pub fn poll_due(&mut self, now: Instant) -> Vec<Work> {
        let mut work: Vec<Work> = Vec::new();
        let due_shares: Vec<String> = self
            .rescans
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for share in due_shares {
            self.rescans.remove(&share);
            work.push(Work::Rescan(share));
        }
        let quiet = self.limits.quiet;
        while self
            .quiet_order
            .front()
            .is_some_and(|(at, _, _)| *at + quiet <= now)
        {
            let Some((at, dir, name)) = self.quiet_order.pop_front() else {
                break;
            };
            if !is_last_write(&self.dirs, &at, &dir, &name) {
                continue;
            }
            let Some(pending) = self.dirs.get_mut(&dir) else {
                continue;
            };
            pending.writing.remove(&name);
            self.count -= 1;
            self.writing_news.push((format!("{dir}/{name}"), false));
            if pending.due.is_none() {
                // Each file goes quiet at its own time: a folder filled file by file (a
                // download of many small files) would be read whole once per file. A
                // directory is re-read for quiet files at most once per batch.
                let at = pending.read_at.map_or(now, |read| read + self.limits.batch);
                pending.due = Some(at);
            }
        }
        let mut emptied = Vec::new();
        for (key, pending) in &mut self.dirs {
            if pending.due.is_some_and(|d| d <= now) {
                pending.due = None;
                pending.read_at = Some(now);
                work.push(Work::Dir {
                    key: key.clone(),
                    keep: pending.writing.keys().cloned().collect(),
                });
            }
            if pending.due.is_none() && pending.writing.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.dirs.remove(&key);
            self.count -= 1;
        }
        work
    }

    /// When [`Coalescer::poll_due`] will next have work, if anything is pending.
    pub fn next_due(&self) -> Option<Instant> {
        let first_quiet = self
            .quiet_order
            .front()
            .map(|(at, _, _)| *at + self.limits.quiet);
        let dirs = self.dirs.values().filter_map(|d| d.due);
        self.rescans
            .values()
            .copied()
            .chain(dirs)
            .chain(first_quiet)
            .min()
    }

    /// Index keys (`share/dir/name`) of the files that started (`true`) or stopped
    /// (`false`) being written since the last call: the share serves none being written.
    pub fn take_writing_news(&mut self) -> Vec<(String, bool)> {
        std::mem::take(&mut self.writing_news)
    }
}

/// Whether the write at `at` is still the last one of `dir`/`name` being written.
fn is_last_write(dirs: &BTreeMap<String, PendingDir>, at: &Instant, dir: &str, name: &str) -> bool {
    dirs.get(dir)
        .and_then(|d| d.writing.get(name))
        .is_some_and(|last| last == at)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The set the share keeps, brought up to date from the news.
    #[derive(Default)]
    struct Served(BTreeSet<String>);

    impl Served {
        fn now(&mut self, c: &mut Coalescer) -> &BTreeSet<String> {
            for (key, writing) in c.take_writing_news() {
                if writing {
                    self.0.insert(key);
                } else {
                    self.0.remove(&key);
                }
            }
            &self.0
        }
    }

    fn dir(key: &str, keep: &[&str]) -> Work {
        Work::Dir {
            key: key.into(),
            keep: keep.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_news_and_the_quiet_order_track_every_file_being_written() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 200,
            ..Limits::default()
        };
        let (mut c, mut served) = (Coalescer::new(limits), Served::default());
        // A fixed pseudo-random mix of writes, settles, polls and rescans over two shares.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let now = t0 + ms(step);
            let dir = ["s/a", "s/b", "t/a", "t"][(seed % 4) as usize];
            let name = format!("f{}", (seed >> 8) % 300);
            match (seed >> 20) % 16 {
                0..=8 => c.handle_event(now, dir, &name, Change::Written),
                9..=13 => c.handle_event(now, dir, &name, Change::Settled),
                14 => drop(c.poll_due(now)),
                _ => c.rescan(now, share_of(dir)),
            }
            let held: BTreeSet<String> = c
                .dirs
                .iter()
                .flat_map(|(d, p)| p.writing.keys().map(move |n| format!("{d}/{n}")))
                .collect();
            let live = c
                .quiet_order
                .iter()
                .filter(|(at, d, n)| is_last_write(&c.dirs, at, d, n))
                .count();
            assert_eq!(live, held.len(), "step {step}");
            assert!(c.quiet_order.len() <= c.pending() + QUIET_ORDER_SLACK + 1);
            assert_eq!(served.now(&mut c), &held, "step {step}");
            assert!(c.pending() <= 200);
        }
    }

    #[test]
    fn a_burst_in_one_directory_is_one_reindex_after_the_batch_time() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Limits::default());
        for i in 0..1000 {
            c.handle_event(t0 + ms(i / 10), "s/a", &format!("f{i}"), Change::Settled);
        }
        assert_eq!(c.pending(), 1);
        assert_eq!(c.next_due(), Some(t0 + ms(250)));
        assert!(c.poll_due(t0 + ms(249)).is_empty());
        assert_eq!(c.poll_due(t0 + ms(250)), [dir("s/a", &[])]);
        assert!(c.poll_due(t0 + ms(5000)).is_empty());
        assert_eq!(c.pending(), 0);
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn a_file_being_written_is_listed_only_after_a_quiet_second() {
        let t0 = Instant::now();
        let (mut c, mut served) = (Coalescer::new(Limits::default()), Served::default());
        c.handle_event(t0, "s", "big.iso", Change::Written);
        assert!(served.now(&mut c).contains("s/big.iso"));
        // Writes every 400 ms for 2 s, and a neighbour renamed in meanwhile.
        for i in 1..=5 {
            c.handle_event(t0 + ms(400 * i), "s", "big.iso", Change::Written);
        }
        c.handle_event(t0 + ms(500), "s", "done.txt", Change::Settled);
        // The neighbour shows at once; the file being written is kept out.
        assert_eq!(c.poll_due(t0 + ms(750)), [dir("s", &["big.iso"])]);
        // Nothing new to read while it is still written.
        assert!(c.poll_due(t0 + ms(2000)).is_empty());
        assert!(c.poll_due(t0 + ms(2999)).is_empty());
        assert_eq!(c.next_due(), Some(t0 + ms(3000)));
        assert_eq!(c.poll_due(t0 + ms(3000)), [dir("s", &[])]);
        assert!(served.now(&mut c).is_empty());
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn files_going_quiet_one_after_another_reread_their_directory_once_per_batch() {
        let t0 = Instant::now();
        let (mut c, mut served) = (Coalescer::new(Limits::default()), Served::default());
        // A file written every 10 ms for 2 s, each once: one goes quiet every 10 ms.
        for i in 0..200u64 {
            c.handle_event(t0 + ms(10 * i), "s/d", &format!("f{i}"), Change::Written);
        }
        assert_eq!(served.now(&mut c).len(), 200);
        let mut reads = Vec::new();
        for t in (1000..=3000).step_by(10) {
            for work in c.poll_due(t0 + ms(t)) {
                reads.push(t);
                assert!(matches!(work, Work::Dir { key, .. } if key == "s/d"));
            }
        }
        assert_eq!(reads.first(), Some(&1000), "the first quiet file at once");
        assert!(reads.windows(2).all(|w| w[1] - w[0] >= 250), "{reads:?}");
        assert!(served.now(&mut c).is_empty());
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn a_rename_over_a_file_being_written_settles_it() {
        let t0 = Instant::now();
        let (mut c, mut served) = (Coalescer::new(Limits::default()), Served::default());
        c.handle_event(t0, "s/d", "x", Change::Written);
        assert!(served.now(&mut c).contains("s/d/x"));
        c.handle_event(t0 + ms(10), "s/d", "x", Change::Settled);
        assert!(served.now(&mut c).is_empty());
        assert_eq!(c.poll_due(t0 + ms(260)), [dir("s/d", &[])]);
    }

    #[test]
    fn a_rename_storm_stays_within_the_cap_and_becomes_one_rescan() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: 64,
            ..Limits::default()
        };
        let mut c = Coalescer::new(limits);
        c.handle_event(t0, "other/x", "f", Change::Written);
        for i in 0..100_000u64 {
            let d = format!("s/dir{}", i % 5000);
            c.handle_event(t0 + ms(i / 1000), &d, &format!("n{i}"), Change::Settled);
            c.handle_event(t0 + ms(i / 1000), &d, &format!("w{i}"), Change::Written);
            assert!(c.pending() <= 64, "{} pending at {i}", c.pending());
        }
        // Everything of share "s" became one rescan, apart from files being written (kept
        // out of it while the cap allows); the other share kept its file.
        let work = c.poll_due(t0 + ms(100_000));
        assert_eq!(work[0], Work::Rescan("s".into()));
        assert!(work.contains(&dir("other/x", &[])));
        let rest = work.iter().filter(|w| **w != dir("other/x", &[])).skip(1);
        assert!(rest
            .clone()
            .all(|w| matches!(w, Work::Dir { key, .. } if key.starts_with("s/"))));
        assert!(rest.count() < 64);
        assert_eq!(c.pending(), 0);
        // After the rescan, events are coalesced per directory again.
        c.handle_event(t0 + ms(200_000), "s/a", "f", Change::Settled);
        assert_eq!(c.pending(), 1);
    }

    #[test]
    fn an_overflow_rescan_replaces_what_was_pending_for_that_share() {
        let t0 = Instant::now();
        let (mut c, mut served) = (Coalescer::new(Limits::default()), Served::default());
        c.handle_event(t0, "s/a", "f", Change::Written);
        c.handle_event(t0, "t/a", "g", Change::Settled);
        assert!(served.now(&mut c).contains("s/a/f"));
        c.rescan(t0 + ms(100), "s");
        assert_eq!(c.pending(), 1);
        assert!(served.now(&mut c).is_empty());
        c.handle_event(t0 + ms(120), "s/b", "f", Change::Settled);
        assert_eq!(c.pending(), 1, "the rescan covers later events");
        // Except that a file being written is still held back, from the rescan too.
        c.handle_event(t0 + ms(130), "s/b", "g", Change::Written);
        assert!(served.now(&mut c).contains("s/b/g"));
        assert_eq!(c.poll_due(t0 + ms(250)), [dir("t/a", &[])]);
        assert_eq!(c.poll_due(t0 + ms(350)), [Work::Rescan("s".into())]);
        assert_eq!(c.poll_due(t0 + ms(1130)), [dir("s/b", &[])]);
        c.forget_share("t");
        assert_eq!(c.next_due(), None);
    }
}
