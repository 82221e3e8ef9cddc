//! How a fetch of one file ended, and what that means for its record: which errors are
//! final, which are retried (and when), which wait for the peer, which hold for the disk.
//! Pure: the fetch and the scheduler bring the facts and act on the answer.

use std::path::Path;
use std::time::Duration;

use super::part::PartError;
use super::swarm::SourceEnd;
use crate::net::rpc::RpcError;
use crate::store::{FileRecord, FileState};
use crate::wire::WireError;

/// How often a file may fail before it is given up, and how long it waits between tries
/// (the `retry_limit` and `retry_backoff` settings). A lost peer or a full disk is no try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub limit: u64,
    /// Seconds before the first retry.
    pub backoff: u64,
}

impl RetryPolicy {
    /// Seconds before the next try of a file that failed `attempts` times: the backoff,
    /// doubling, at most 32 times it.
    pub fn delay(self, attempts: u32) -> u64 {
        self.backoff << attempts.saturating_sub(1).min(5)
    }
}
/// How long a download waits after the disk filled up before it tries again.
pub const DISK_FULL_RETRY: Duration = Duration::from_secs(15);

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The remote file's size or mtime changed: restart it from zero.
    Changed {
        size: u64,
        mtime: u64,
    },
    /// The connection went away: retry when the peer is back, without counting an attempt.
    PeerGone(String),
    Retry(String),
    Permanent(String),
    DiskFull(String),
}

impl Outcome {
    /// The named peer did not give a verified piece list.
    pub fn of_hashes(e: RpcError) -> Self {
        match e {
            RpcError::Refused(
                e @ (WireError::NotFound | WireError::Forbidden | WireError::BadRequest(_)),
            ) => Outcome::Permanent(e.to_string()),
            e if e.is_connection_loss() => Outcome::PeerGone(e.to_string()),
            e => Outcome::Retry(e.to_string()),
        }
    }

    /// A local file operation on `path` failed: a full disk holds, anything else retries.
    pub fn of_io(e: &std::io::Error, path: &Path) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            Outcome::DiskFull(format!("{}: {e}", path.display()))
        } else {
            Outcome::Retry(format!("{}: {e}", path.display()))
        }
    }

    /// Every source has stopped with pieces still missing. The first source that did not
    /// simply run out of work says why; when the named peer's connection is gone too, the
    /// file waits for it instead of spending an attempt.
    pub fn of_unfinished(ends: Vec<SourceEnd>, part: &Path, named_peer_gone: bool) -> Self {
        match ends.into_iter().find(|e| !matches!(e, SourceEnd::Finished)) {
            Some(SourceEnd::Disk(e)) => Outcome::of_io(&e, part),
            Some(SourceEnd::BadPiece(_)) => Outcome::Retry("every source served bad pieces".into()),
            Some(SourceEnd::Failed(reason)) if named_peer_gone => Outcome::PeerGone(reason),
            Some(SourceEnd::Failed(reason)) => Outcome::Retry(reason),
            _ => Outcome::Retry("no source could supply the missing pieces".into()),
        }
    }
}

impl From<PartError> for Outcome {
    fn from(e: PartError) -> Self {
        match e {
            PartError::Io { path, source } => Outcome::of_io(&source, &path),
            e => Outcome::Retry(e.to_string()),
        }
    }
}

/// What an outcome did to a file's record, for the download it belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// The file is started over under its new size; it was `old_size` bytes.
    Restarted {
        old_size: u64,
    },
    WaitingForPeer(String),
    RetryIn {
        reason: String,
        seconds: u64,
    },
    /// Failed for good after the retry limit.
    GaveUp(String),
    /// Failed for good at once.
    Failed(String),
    /// Held until the disk has room; the record is unchanged.
    DiskFull(String),
}

/// Records `outcome` in the file's `record` at `now` (Unix seconds).
pub fn settle(outcome: Outcome, record: &mut FileRecord, now: u64, retry: RetryPolicy) -> Settled {
    match outcome {
        Outcome::Done => {
            record.state = FileState::Done;
            record.error = None;
            Settled::Done
        }
        Outcome::Changed { size, mtime } => {
            let old_size = record.size;
            record.size = size;
            record.mtime = mtime;
            record.attempts += 1;
            record.retry_at = now;
            Settled::Restarted { old_size }
        }
        Outcome::PeerGone(reason) => {
            record.error = Some(reason.clone());
            record.retry_at = now;
            Settled::WaitingForPeer(reason)
        }
        Outcome::Retry(reason) => {
            record.attempts += 1;
            record.error = Some(reason.clone());
            if u64::from(record.attempts) >= retry.limit {
                record.state = FileState::Failed;
                return Settled::GaveUp(reason);
            }
            let seconds = retry.delay(record.attempts);
            record.retry_at = now + seconds;
            Settled::RetryIn { reason, seconds }
        }
        Outcome::Permanent(reason) => {
            record.state = FileState::Failed;
            record.error = Some(reason.clone());
            // Attempts count transient failures only: a failed file with none was refused,
            // which is how `heals` tells the two apart after a restart.
            record.attempts = 0;
            Settled::Failed(reason)
        }
        Outcome::DiskFull(reason) => Settled::DiskFull(reason),
    }
}

/// Whether `resume` can help a failed file: one that gave up after repeated transient
/// failures (a reset, a flaky disk, bad pieces) may work next time; one the peer refused
/// outright (not found, outside its shares, a bad path) or whose path was refused here
/// cannot heal by retrying, so the UI offers no Resume for it.
pub fn heals(record: &FileRecord) -> bool {
    record.state == FileState::Failed && record.attempts > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: RetryPolicy = RetryPolicy {
        limit: 5,
        backoff: 20,
    };

    fn pending() -> FileRecord {
        crate::store::FileRecord::pending(100, 5)
    }

    #[test]
    fn refusals_of_the_piece_list_are_final_a_lost_peer_waits_the_rest_retries() {
        let refused = |e| Outcome::of_hashes(RpcError::Refused(e));
        assert!(matches!(
            refused(WireError::NotFound),
            Outcome::Permanent(_)
        ));
        assert!(matches!(
            refused(WireError::Forbidden),
            Outcome::Permanent(_)
        ));
        assert!(matches!(
            refused(WireError::BadRequest("x".into())),
            Outcome::Permanent(_)
        ));
        assert!(matches!(
            refused(WireError::Io("busy".into())),
            Outcome::Retry(_)
        ));
        let lost = Outcome::of_hashes(RpcError::ConnectionLost("closed".into()));
        assert_eq!(lost, Outcome::PeerGone("connection lost: closed".into()));
        let bad = Outcome::of_hashes(RpcError::BadContent("root".into()));
        assert!(matches!(bad, Outcome::Retry(_)));
    }

    #[test]
    fn a_full_disk_holds_other_io_errors_retry() {
        let path = Path::new("/d/f.part");
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(
            matches!(Outcome::of_io(&full, path), Outcome::DiskFull(m) if m.starts_with("/d/f.part: "))
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(Outcome::of_io(&denied, path), Outcome::Retry(_)));
        let part = PartError::Io {
            path: path.into(),
            source: full,
        };
        assert!(matches!(Outcome::from(part), Outcome::DiskFull(_)));
        assert_eq!(
            Outcome::from(PartError::NotWhole),
            Outcome::Retry(PartError::NotWhole.to_string())
        );
    }

    #[test]
    fn an_unfinished_swarm_is_explained_by_its_first_real_end() {
        let part = Path::new("f.part");
        let failed = || SourceEnd::Failed("reset".into());
        let of = |ends, gone| Outcome::of_unfinished(ends, part, gone);
        assert_eq!(
            of(vec![SourceEnd::Finished, failed()], false),
            Outcome::Retry("reset".into())
        );
        assert_eq!(of(vec![failed()], true), Outcome::PeerGone("reset".into()));
        assert_eq!(
            of(vec![SourceEnd::BadPiece(3), failed()], true),
            Outcome::Retry("every source served bad pieces".into())
        );
        let full = SourceEnd::Disk(std::io::ErrorKind::StorageFull.into());
        assert!(matches!(of(vec![full], true), Outcome::DiskFull(_)));
        assert_eq!(
            of(vec![SourceEnd::Finished], false),
            Outcome::Retry("no source could supply the missing pieces".into())
        );
    }

    #[test]
    fn retries_back_off_from_20_s_and_give_up_on_the_fifth_attempt() {
        let mut record = pending();
        let mut delays = Vec::new();
        for now in [1000, 2000, 3000, 4000] {
            match settle(Outcome::Retry("io".into()), &mut record, now, DEFAULT) {
                Settled::RetryIn { seconds, .. } => {
                    assert_eq!(record.retry_at, now + seconds);
                    delays.push(seconds);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [20, 40, 80, 160]);
        assert_eq!(record.state, FileState::Pending);
        let last = settle(Outcome::Retry("io".into()), &mut record, 5000, DEFAULT);
        assert_eq!(last, Settled::GaveUp("io".into()));
        assert_eq!((record.state, record.attempts), (FileState::Failed, 5));
        assert!(heals(&record), "a file that gave up may work on resume");
        assert_eq!(DEFAULT.delay(60), 640, "the delay has a ceiling");
    }

    #[test]
    fn the_retry_policy_sets_the_limit_and_the_backoff_and_a_lost_peer_never_counts() {
        let quick = RetryPolicy {
            limit: 2,
            backoff: 3,
        };
        let mut record = pending();
        // However often and long the peer is away, the file keeps waiting for it.
        for now in 0..50 {
            let gone = settle(Outcome::PeerGone("closed".into()), &mut record, now, quick);
            assert_eq!(gone, Settled::WaitingForPeer("closed".into()));
        }
        assert_eq!((record.attempts, record.state), (0, FileState::Pending));
        let first = settle(Outcome::Retry("reset".into()), &mut record, 100, quick);
        assert_eq!(
            first,
            Settled::RetryIn {
                reason: "reset".into(),
                seconds: 3
            }
        );
        assert_eq!(record.retry_at, 103);
        let last = settle(Outcome::Retry("reset".into()), &mut record, 200, quick);
        assert_eq!(last, Settled::GaveUp("reset".into()));
        assert_eq!((quick.delay(2), quick.delay(3)), (6, 12));
    }

    #[test]
    fn a_lost_peer_or_a_full_disk_costs_no_attempt() {
        let mut record = pending();
        let gone = settle(Outcome::PeerGone("closed".into()), &mut record, 77, DEFAULT);
        assert_eq!(gone, Settled::WaitingForPeer("closed".into()));
        let full = settle(
            Outcome::DiskFull("no space".into()),
            &mut record,
            78,
            DEFAULT,
        );
        assert_eq!(full, Settled::DiskFull("no space".into()));
        assert_eq!((record.attempts, record.retry_at), (0, 77));
        assert_eq!(record.state, FileState::Pending);
        assert!(!heals(&record), "a pending file has not failed");
    }

    #[test]
    fn not_found_is_final_and_never_retried() {
        let mut record = pending();
        let _ = settle(Outcome::Retry("reset".into()), &mut record, 10, DEFAULT);
        let refused = Outcome::of_hashes(RpcError::Refused(WireError::NotFound));
        let settled = settle(refused, &mut record, 11, DEFAULT);
        assert_eq!(settled, Settled::Failed("no such file or directory".into()));
        assert_eq!(record.state, FileState::Failed);
        assert!(
            !heals(&record),
            "earlier transient attempts do not make it healable"
        );
    }

    #[test]
    fn a_changed_file_restarts_at_once_under_its_new_size() {
        let mut record = pending();
        let settled = settle(
            Outcome::Changed {
                size: 300,
                mtime: 9,
            },
            &mut record,
            500,
            DEFAULT,
        );
        assert_eq!(settled, Settled::Restarted { old_size: 100 });
        assert_eq!((record.size, record.mtime), (300, 9));
        assert_eq!((record.attempts, record.retry_at), (1, 500));
        let permanent = settle(
            Outcome::Permanent("not found".into()),
            &mut record,
            501,
            DEFAULT,
        );
        assert_eq!(permanent, Settled::Failed("not found".into()));
        assert_eq!(record.state, FileState::Failed);
        assert!(!heals(&record), "a refusal after a restart cannot heal");
        assert_eq!(
            settle(Outcome::Done, &mut record, 502, DEFAULT),
            Settled::Done
        );
        assert_eq!((record.state, record.error), (FileState::Done, None));
    }
}
