//! The download scheduler's decisions, pure: queue order, which file of a download goes
//! next, how many fetches may start, when a download is over, and what `resume` resets.
//! `Downloads` brings the records from the store and carries the decisions out.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::store::{DownloadState, FileRecord, FileState};

/// Download ids in queue order: by priority, then age (the id), from `(id, priority)` pairs.
pub fn queue_order(jobs: impl IntoIterator<Item = (u64, i64)>) -> Vec<u64> {
    let mut order: Vec<(i64, u64)> = jobs.into_iter().map(|(id, p)| (p, id)).collect();
    order.sort_unstable();
    order.into_iter().map(|(_, id)| id).collect()
}

/// Whether the scheduler looks at a download now: it is queued and not held (after a
/// failed listing or a full disk) past `now`.
pub fn due(state: DownloadState, hold_until: Option<Instant>, now: Instant) -> bool {
    state == DownloadState::Queued && hold_until.is_none_or(|t| now >= t)
}

/// The next step for one download.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    File(String, FileRecord),
    /// Nothing to start now; look again at this instant, or when woken.
    Wait(Option<Instant>),
    /// Every file is done or failed: the download is over.
    Complete,
}

/// A scan over a download's file records in path order for the next file to fetch. It may
/// run twice (after the cursor, then from the start); what it learns adds up across both.
#[derive(Debug, Default)]
pub struct PendingScan {
    /// Unix seconds.
    now: u64,
    earliest_retry: Option<u64>,
    /// A pending file whose `.part` another download is writing.
    blocked: bool,
    found: Option<(String, FileRecord)>,
}

impl PendingScan {
    pub fn new(now: u64) -> Self {
        Self {
            now,
            ..Self::default()
        }
    }

    /// Looks at one record; returns whether to go on. `in_flight`: this download is fetching
    /// it; `busy`: another fetch is writing its `.part`.
    pub fn visit(&mut self, path: &str, file: FileRecord, in_flight: bool, busy: bool) -> bool {
        if file.state != FileState::Pending || in_flight {
            return true;
        }
        if busy {
            self.blocked = true;
            return true;
        }
        if file.retry_at <= self.now {
            self.found = Some((path.to_string(), file));
            return false;
        }
        self.earliest_retry = Some(
            self.earliest_retry
                .map_or(file.retry_at, |e| e.min(file.retry_at)),
        );
        true
    }

    pub fn take_found(&mut self) -> Option<(String, FileRecord)> {
        self.found.take()
    }

    /// With no file found: wait for the earliest retry; or, while fetches of this download
    /// run (`fetching`) or a file is blocked, until woken; else the download is complete.
    pub fn verdict(self, now: Instant, fetching: bool) -> Next {
        match self.earliest_retry {
            Some(at) => Next::Wait(Some(now + Duration::from_secs(at.saturating_sub(self.now)))),
            None if !fetching && !self.blocked => Next::Complete,
            None => Next::Wait(None),
        }
    }
}

/// Files of at most this many bytes are small: fetching one is a few round trips and a
/// sync, mostly waiting, so one per slot leaves the link and the disk idle.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024;
/// How many small files share one fetch slot. Bounded like the slots themselves: a full
/// slot of small files holds 16 `.part` files and at most 1 MiB of their pieces, as one
/// big file's fetch does.
pub const SMALL_FILES_PER_SLOT: usize = 16;

/// The share of a slot a fetch of `size` bytes takes, in units of a small file's.
fn units(size: u64) -> usize {
    if size <= SMALL_FILE_BYTES {
        1
    } else {
        SMALL_FILES_PER_SLOT
    }
}

/// Fetch slots in use, in total and per peer, and the `.part` files being written (by
/// peer and path): two requests can name the same file (a folder and a file inside it),
/// and only one fetch may write a `.part` at a time. A slot holds one file or
/// [`SMALL_FILES_PER_SLOT`] small ones.
#[derive(Debug)]
pub struct Slots {
    total_limit: usize,
    per_peer_limit: usize,
    total: usize,
    per_peer: HashMap<String, usize>,
    busy: HashSet<(String, String)>,
}

impl Slots {
    pub fn new(total_limit: usize, per_peer_limit: usize) -> Self {
        Self {
            total_limit: total_limit * SMALL_FILES_PER_SLOT,
            per_peer_limit: per_peer_limit * SMALL_FILES_PER_SLOT,
            total: 0,
            per_peer: HashMap::new(),
            busy: HashSet::new(),
        }
    }

    /// Counts a fetch of `peer`'s `path` of `size` bytes, running or starting.
    pub fn take(&mut self, peer: &str, path: &str, size: u64) {
        self.total += units(size);
        *self.per_peer.entry(peer.to_string()).or_default() += units(size);
        self.busy.insert((peer.to_string(), path.to_string()));
    }

    /// A fetch of `size` bytes from `peer` may start (`size` 0: at least a small one).
    pub fn has_room(&self, peer: &str, size: u64) -> bool {
        self.total + units(size) <= self.total_limit
            && self.per_peer.get(peer).copied().unwrap_or(0) + units(size) <= self.per_peer_limit
    }

    pub fn is_busy(&self, peer: &str, path: &str) -> bool {
        self.busy.contains(&(peer.to_string(), path.to_string()))
    }
}

/// How a download ends once no file is left to fetch.
pub fn final_state(files_done: u64, files_total: u64, failures: usize) -> DownloadState {
    if failures == 0 && files_done == files_total {
        DownloadState::Done
    } else {
        DownloadState::Failed
    }
}

/// What `resume` does to a file record: a failed file is pending again with a fresh count
/// of attempts; any other stays as it is (`None`).
pub fn retry_failed(file: FileRecord) -> Option<FileRecord> {
    (file.state == FileState::Failed).then_some(FileRecord {
        state: FileState::Pending,
        attempts: 0,
        retry_at: 0,
        ..file
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(state: FileState, retry_at: u64) -> FileRecord {
        FileRecord {
            state,
            attempts: 2,
            error: Some("earlier".into()),
            retry_at,
            ..FileRecord::pending(1, 1)
        }
    }

    #[test]
    fn the_queue_runs_by_priority_then_age() {
        assert_eq!(queue_order([(5, 1), (2, 1), (9, 0), (1, 3)]), [9, 2, 5, 1]);
        assert!(queue_order([]).is_empty());
    }

    #[test]
    fn only_queued_downloads_past_their_hold_are_due() {
        let now = Instant::now();
        let later = now + Duration::from_secs(15);
        assert!(due(DownloadState::Queued, None, now));
        assert!(!due(DownloadState::Queued, Some(later), now));
        assert!(due(DownloadState::Queued, Some(later), later));
        assert!(!due(DownloadState::Paused, None, now));
        assert!(!due(DownloadState::Done, None, later));
    }

    #[test]
    fn the_scan_takes_the_first_due_pending_file_that_is_free() {
        let mut scan = PendingScan::new(100);
        assert!(scan.visit("a", file(FileState::Done, 0), false, false));
        assert!(scan.visit("b", file(FileState::Failed, 0), false, false));
        assert!(
            scan.visit("c", file(FileState::Pending, 0), true, false),
            "being fetched"
        );
        assert!(
            scan.visit("d", file(FileState::Pending, 0), false, true),
            "busy elsewhere"
        );
        assert!(
            scan.visit("e", file(FileState::Pending, 150), false, false),
            "not due"
        );
        assert!(!scan.visit("f", file(FileState::Pending, 100), false, false));
        assert_eq!(scan.take_found().map(|(p, _)| p).as_deref(), Some("f"));
        assert_eq!(scan.take_found(), None);
    }

    #[test]
    fn with_nothing_due_the_scan_waits_for_the_earliest_retry() {
        let now = Instant::now();
        let mut scan = PendingScan::new(100);
        scan.visit("a", file(FileState::Pending, 160), false, false);
        scan.visit("b", file(FileState::Pending, 130), false, false);
        assert_eq!(
            scan.verdict(now, false),
            Next::Wait(Some(now + Duration::from_secs(30)))
        );
    }

    #[test]
    fn a_download_completes_only_with_nothing_running_blocked_or_due_later() {
        let now = Instant::now();
        let done = || {
            let mut scan = PendingScan::new(100);
            scan.visit("a", file(FileState::Done, 0), false, false);
            scan
        };
        assert_eq!(done().verdict(now, false), Next::Complete);
        assert_eq!(
            done().verdict(now, true),
            Next::Wait(None),
            "a fetch still runs"
        );
        let mut blocked = done();
        blocked.visit("b", file(FileState::Pending, 0), false, true);
        assert_eq!(
            blocked.verdict(now, false),
            Next::Wait(None),
            "its .part is busy"
        );
    }

    #[test]
    fn slots_hold_the_total_and_per_peer_limits_and_one_writer_per_part() {
        let big = SMALL_FILE_BYTES + 1;
        let mut slots = Slots::new(3, 2);
        slots.take("p", "x", big);
        assert!(slots.has_room("p", big));
        slots.take("p", "y", big);
        assert!(!slots.has_room("p", 0), "per-peer limit");
        assert!(slots.has_room("q", big));
        slots.take("q", "x", big);
        assert!(!slots.has_room("r", 0), "total limit");
        assert!(slots.is_busy("p", "x") && slots.is_busy("q", "x"));
        assert!(!slots.is_busy("p", "z") && !slots.is_busy("r", "x"));
    }

    #[test]
    fn small_files_share_a_slot_and_a_big_one_waits_for_a_whole_slot() {
        let mut slots = Slots::new(2, 1);
        for i in 0..SMALL_FILES_PER_SLOT - 1 {
            slots.take("p", &format!("s{i}"), SMALL_FILE_BYTES);
        }
        assert!(slots.has_room("p", 1), "one more small file fits");
        assert!(!slots.has_room("p", SMALL_FILE_BYTES + 1), "not a big one");
        slots.take("p", "last", 0);
        assert!(!slots.has_room("p", 0), "the peer's slot is full");
        assert!(slots.has_room("q", 5 * SMALL_FILE_BYTES));
        slots.take("q", "big", 5 * SMALL_FILE_BYTES);
        assert!(!slots.has_room("r", 0), "total limit, in small files too");
    }

    #[test]
    fn a_download_fails_if_any_file_failed() {
        assert_eq!(final_state(3, 3, 0), DownloadState::Done);
        assert_eq!(final_state(2, 3, 1), DownloadState::Failed);
        assert_eq!(
            final_state(2, 3, 0),
            DownloadState::Failed,
            "a file missing"
        );
    }

    #[test]
    fn resume_gives_failed_files_fresh_attempts_and_leaves_the_others() {
        let reset = retry_failed(file(FileState::Failed, 999)).expect("a failed file");
        assert_eq!(
            (reset.state, reset.attempts, reset.retry_at),
            (FileState::Pending, 0, 0)
        );
        assert_eq!(
            reset.error.as_deref(),
            Some("earlier"),
            "the last reason stays"
        );
        assert_eq!(retry_failed(file(FileState::Pending, 5)), None);
        assert_eq!(retry_failed(file(FileState::Done, 0)), None);
    }
}
