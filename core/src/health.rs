//! What the service reports about itself: the one-line status for systemd and the disk
//! problems the web UI shows as banners. Pure rules over readings the daemon takes.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub peers: usize,
    pub downloading: usize,
    pub uploading: usize,
    /// Free bytes on the storage disk, when the filesystem says.
    pub storage_free: Option<u64>,
    /// The database failed a write (a full disk, an I/O error) and refuses every write
    /// since, until it is reopened.
    pub database_failed: bool,
}

/// Free space on the storage disk at which a failed database is reopened (by a restart):
/// room for redb's recovery and the writes after it, on a storage disk that may be a
/// router's small overlay, where the 64 MiB warning level may never be reached.
pub const DATABASE_ROOM_BYTES: u64 = 4 * 1024 * 1024;

/// Below this much free space on the storage disk the status line warns.
pub const STORAGE_LOW_BYTES: u64 = 64 * 1024 * 1024;

impl Health {
    /// Whether to ping the watchdog: not while changes cannot be saved, so a service
    /// manager with a watchdog restarts the daemon even if it never gets to exit.
    pub fn watchdog_ok(&self) -> bool {
        !self.database_failed
    }

    /// Whether to exit so that the service manager restarts the daemon and the database is
    /// reopened: once it failed and the storage disk has room again (or cannot say), since a
    /// restart onto a still-full disk would only fail again and use up a respawn limit.
    pub fn restart_now(&self) -> bool {
        self.database_failed && self.storage_free.is_none_or(|f| f >= DATABASE_ROOM_BYTES)
    }

    /// The one-line status systemd shows (`STATUS=`).
    pub fn status_line(&self) -> String {
        if self.database_failed {
            return "database failed after an I/O error, changes are not saved: restarting once the storage disk has room".into();
        }
        let mut line = format!(
            "{} peers connected, {} downloading, {} uploading",
            self.peers, self.downloading, self.uploading
        );
        if let Some(free) = self.storage_free.filter(|f| *f < STORAGE_LOW_BYTES) {
            line.push_str(&format!(
                "; storage disk nearly full ({} MiB free)",
                free / (1024 * 1024)
            ));
        }
        line
    }
}

/// Something the user should fix, shown as a banner in the web UI (`problems` in `/api/info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable identifier: `storage_full`, `download_disk_full` or `download_dir_unwritable`.
    pub code: &'static str,
    pub message: String,
}

/// The disk problems from free-space readings: `storage_free` on the storage disk (the
/// database), `download_low` the download disk's reason to hold downloads, if any, and
/// `download_unwritable` why the download folder cannot be written, if it cannot.
pub fn disk_problems(
    storage: &Path,
    storage_free: Option<u64>,
    download_low: Option<String>,
    download_unwritable: Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(free) = storage_free.filter(|f| *f < STORAGE_LOW_BYTES) {
        problems.push(Problem {
            code: "storage_full",
            message: format!(
                "The storage disk is full or nearly full ({} MiB free in {}): progress, settings and logins may not be saved. Free some space there.",
                free / (1024 * 1024),
                storage.display()
            ),
        });
    }
    if let Some(why) = download_unwritable {
        problems.push(Problem {
            code: "download_dir_unwritable",
            message: format!(
                "The download folder cannot be written: {why}. Downloads fail until it can; fix its permissions or choose another in Settings."
            ),
        });
    }
    if let Some(low) = download_low {
        problems.push(Problem {
            code: "download_disk_full",
            message: format!(
                "The download disk is full: {low}. Downloads wait until there is room."
            ),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_database_stops_the_watchdog_and_restarts_once_there_is_room() {
        let healthy = Health {
            peers: 1,
            downloading: 0,
            uploading: 0,
            storage_free: Some(0),
            database_failed: false,
        };
        assert!(healthy.watchdog_ok() && !healthy.restart_now());
        let failed = Health {
            database_failed: true,
            ..healthy
        };
        assert!(!failed.watchdog_ok());
        assert!(!failed.restart_now(), "the disk is still full");
        assert!(failed.status_line().contains("database failed"));
        for free in [Some(DATABASE_ROOM_BYTES), None] {
            let room = Health {
                storage_free: free,
                ..failed
            };
            assert!(room.restart_now() && !room.watchdog_ok());
        }
    }

    #[test]
    fn disk_problems_name_the_full_disks() {
        let storage = Path::new("/var/lib/hdp");
        assert!(disk_problems(storage, Some(STORAGE_LOW_BYTES), None, None).is_empty());
        assert!(
            disk_problems(storage, None, None, None).is_empty(),
            "unknown is not full"
        );
        let full = disk_problems(storage, Some(3 * 1024 * 1024), None, None);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].code, "storage_full");
        assert!(
            full[0].message.contains("3 MiB free in /var/lib/hdp"),
            "{}",
            full[0].message
        );
        let both = disk_problems(
            storage,
            Some(0),
            Some("1 MiB free, below the 256 MiB reserve".into()),
            Some("/dl: read-only file system".into()),
        );
        let codes: Vec<_> = both.iter().map(|p| p.code).collect();
        assert_eq!(
            codes,
            [
                "storage_full",
                "download_dir_unwritable",
                "download_disk_full"
            ]
        );
        assert!(both[1].message.contains("/dl: read-only file system"));
        assert!(both[2].message.contains("below the 256 MiB reserve"));
    }
}
