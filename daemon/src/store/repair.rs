//! `harddrive-party repair`: rebuilds a damaged database. What can be read of the small
//! tables the user made (settings, shares, friends, invites, share access) is copied into a
//! fresh file; the index, hashes, download queue and web UI logins are left behind (the
//! next start rescans the shares). The damaged file is kept beside it as a backup, never
//! written: it is opened read-only, and only renamed once the new file is complete.

use std::path::{Path, PathBuf};

use redb::ReadOnlyDatabase;

use super::kept_copy::UserTable;
use super::*;

/// Where a repair found a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The damaged database itself.
    Damaged,
    /// The kept copy (`KEPT_COPY_FILE`), as of its last refresh.
    KeptCopy,
}

/// What a repair kept and what it could not read.
pub struct RepairReport {
    pub backup: PathBuf,
    /// (table, rows copied, from where)
    pub kept: Vec<(&'static str, u64, Source)>,
    /// (table, why it could not be read)
    pub lost: Vec<(&'static str, String)>,
}

/// Rebuilds `<storage>/harddrive-party.redb`; the daemon must be stopped.
pub fn repair(storage_dir: &Path) -> Result<RepairReport, StoreError> {
    let path = storage_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Db(format!("{} does not exist", path.display())));
    }
    let fresh = storage_dir.join(format!("{DB_FILE}.repairing"));
    // A leftover of an interrupted repair: never the user's data.
    let _ = std::fs::remove_file(&fresh);
    let mut report = RepairReport {
        backup: storage_dir.join(format!(
            "{DB_FILE}.damaged-{}",
            crate::node::trust::unix_now()
        )),
        kept: Vec::new(),
        lost: Vec::new(),
    };
    // Read-only: a file a crash left is refused rather than recovered (recovery would
    // verify the whole file and refuse the damage anyway); the kept copy stands in for it.
    let old = match Database::builder().open_read_only(&path) {
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked(path)),
        opened => opened,
    };
    let kept_copy = Database::builder()
        .open_read_only(storage_dir.join(KEPT_COPY_FILE))
        .ok();
    {
        let new = Database::create(&fresh).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = new.begin_write()?;
        // (table, why the damaged file could not give it)
        let mut unread: Vec<(UserTable, String)> = Vec::new();
        match old.as_ref().map(ReadOnlyDatabase::begin_read) {
            Ok(Ok(read)) => {
                for table in UserTable::all() {
                    match table.copy(&read, &txn) {
                        Ok(rows) => report.kept.push((table.label(), rows, Source::Damaged)),
                        Err(e) => unread.push((table, e.to_string())),
                    }
                }
            }
            opened => {
                let why = match opened {
                    Ok(Err(e)) => e.to_string(),
                    Err(redb::DatabaseError::RepairAborted) => "the file was not closed cleanly (a crash or power cut) and redb's recovery refuses the damage".into(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => unreachable!("matched above"),
                };
                unread.extend(UserTable::all().map(|table| (table, why.clone())));
            }
        }
        let from_copy = kept_copy.as_ref().map(ReadOnlyDatabase::begin_read);
        for (table, why) in unread {
            // A table the damaged file gave only in part is replaced whole by the copy's.
            let copied = match &from_copy {
                _ if !UserTable::KEPT.contains(&table) => {
                    Err(StoreError::Db("the kept copy does not hold it".into()))
                }
                Some(Ok(read)) => table.clear(&txn).and_then(|()| table.copy(read, &txn)),
                Some(Err(e)) => Err(StoreError::Db(e.to_string())),
                None => Err(StoreError::Db("there is no kept copy".into())),
            };
            match copied {
                Ok(rows) => report.kept.push((table.label(), rows, Source::KeptCopy)),
                Err(e) => report
                    .lost
                    .push((table.label(), format!("{why}; the kept copy: {e}"))),
            }
        }
        txn.commit()?;
    }
    drop(old);
    // Refuses a newer schema before anything is renamed; migrates an older one.
    if let Err(e) = Store::open_file(&fresh, 1 << 20) {
        let _ = std::fs::remove_file(&fresh);
        return Err(e);
    }
    let io = |e: std::io::Error| StoreError::Db(e.to_string());
    std::fs::rename(&path, &report.backup).map_err(io)?;
    std::fs::rename(&fresh, &path).map_err(io)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    /// The store after a repair, holding `filled_store`'s setting and friend.
    fn reopened_with_settings_and_friend(dir: &Path) -> Store {
        let store = Store::open(dir, 1 << 20).unwrap();
        assert_eq!(store.setting("listen").unwrap().as_deref(), Some("x"));
        assert_eq!(
            store.known_peer("Friend").unwrap().unwrap().key,
            Some([3; 32])
        );
        store
    }

    #[test]
    fn repair_keeps_settings_and_friends_and_backs_up_the_damaged_file() {
        // Read from the damaged file itself: no kept copy was ever written.
        let dir = tempfile::tempdir().unwrap();
        let path = super::super::tests::filled_store(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2 / 4096 * 4096;
        bytes[middle..middle + 4096].fill(0xa5);
        std::fs::write(&path, &bytes).unwrap();
        assert!(Store::open(dir.path(), 1 << 20).is_err());

        let report = repair(dir.path()).unwrap();
        assert!(report.lost.is_empty(), "{:?}", report.lost);
        assert_eq!(std::fs::read(&report.backup).unwrap(), bytes);
        let store = reopened_with_settings_and_friend(dir.path());
        let txn = store.db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(INDEX).unwrap().len().unwrap(),
            0,
            "rebuilt by a scan"
        );
    }

    #[test]
    fn the_kept_copy_is_rewritten_only_when_the_users_tables_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert!(
            store.refresh_kept_copy().unwrap(),
            "the first refresh writes"
        );
        assert!(!store.refresh_kept_copy().unwrap(), "nothing changed");
        store.set_setting("listen", "y").unwrap();
        assert!(store.refresh_kept_copy().unwrap(), "a setting changed");
        assert!(!dir
            .path()
            .join(format!("{KEPT_COPY_FILE}.partial"))
            .exists());
        let copy = Database::builder()
            .open_read_only(dir.path().join(KEPT_COPY_FILE))
            .unwrap();
        let read = copy.begin_read().unwrap();
        let settings = read.open_table(SETTINGS).unwrap();
        assert_eq!(settings.get("listen").unwrap().unwrap().value(), "y");
    }

    #[test]
    fn repair_restores_the_kept_copy_when_the_damaged_file_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::super::tests::filled_store(dir.path());
        Store::open(dir.path(), 1 << 20)
            .unwrap()
            .refresh_kept_copy()
            .unwrap();
        // The header gone: redb cannot even tell the file is a database any more.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..4096].fill(0xa5);
        std::fs::write(&path, &bytes).unwrap();
        assert!(Store::open(dir.path(), 1 << 20).is_err());

        let report = repair(dir.path()).unwrap();
        assert_eq!(report.kept.len(), 6);
        assert!(report.kept.iter().all(|k| k.2 == Source::KeptCopy));
        // The library is not in the copy: it comes from the damaged file or not at all.
        assert_eq!(report.lost.len(), 1, "{:?}", report.lost);
        assert_eq!(report.lost[0].0, "downloaded files");
        assert_eq!(std::fs::read(&report.backup).unwrap(), bytes);
        reopened_with_settings_and_friend(dir.path());
    }

    #[test]
    fn repair_without_a_kept_copy_says_what_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::super::tests::filled_store(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..4096].fill(0xa5);
        std::fs::write(&path, &bytes).unwrap();
        let report = repair(dir.path()).unwrap();
        assert!(report.kept.is_empty());
        assert_eq!(report.lost.len(), 7);
        assert!(
            report.lost[1].1.contains("there is no kept copy"),
            "{:?}",
            report.lost
        );
    }

    #[test]
    fn repair_refuses_a_newer_schema_and_leaves_it_in_place() {
        let dir = super::super::tests::newer_schema();
        let before = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        let err = repair(dir.path()).err().expect("must refuse");
        assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
        assert_eq!(std::fs::read(dir.path().join(DB_FILE)).unwrap(), before);
    }
}
