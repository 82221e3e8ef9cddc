//! `harddrive-party repair`: rebuilds a damaged database. What can be read of the small
//! tables the user made (settings, shares, friends, invites, share access) is copied into a
//! fresh file; the index, hashes, download queue and web UI logins are left behind (the
//! next start rescans the shares). The damaged file is kept beside it as a backup, never
//! written: it is opened read-only, and only renamed once the new file is complete.

use std::path::{Path, PathBuf};

use redb::ReadOnlyDatabase;

use super::*;

/// What a repair kept and what it could not read.
pub struct RepairReport {
    pub backup: PathBuf,
    /// (table, rows copied)
    pub kept: Vec<(&'static str, u64)>,
    /// (table, why it could not be read)
    pub lost: Vec<(&'static str, String)>,
}

/// Copies one table's rows; a table missing from the old file is an empty one.
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    old: &redb::ReadTransaction,
    new: &redb::WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let from = match old.open_table(table) {
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        opened => opened?,
    };
    let mut to = new.open_table(table)?;
    let mut rows = 0;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
        rows += 1;
    }
    Ok(rows)
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
    // Read-only: a file a crash left is refused rather than recovered, and then nothing of
    // it is kept (recovery would verify the whole file and refuse it anyway).
    let old = match Database::builder().open_read_only(&path) {
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked(path)),
        opened => opened,
    };
    {
        let new = Database::create(&fresh).map_err(|e| StoreError::Db(e.to_string()))?;
        let txn = new.begin_write()?;
        match old.as_ref().map(ReadOnlyDatabase::begin_read) {
            Ok(Ok(read)) => {
                let mut keep = |name, copied: Result<u64, StoreError>| match copied {
                    Ok(rows) => report.kept.push((name, rows)),
                    Err(e) => report.lost.push((name, e.to_string())),
                };
                // The schema version first: the next open migrates what was copied.
                keep("schema version", copy(&read, &txn, META));
                keep("settings", copy(&read, &txn, SETTINGS));
                keep("shares", copy(&read, &txn, SHARES));
                keep("friends and other known peers", copy(&read, &txn, PEERS));
                keep("invites", copy(&read, &txn, INVITES));
                keep("share access", copy(&read, &txn, SHARE_ACCESS));
                keep("downloaded files", copy(&read, &txn, LIBRARY));
            }
            Ok(Err(e)) => report.lost.push(("every table", e.to_string())),
            Err(redb::DatabaseError::RepairAborted) => report.lost.push((
                "every table",
                "the file was not closed cleanly (a crash or power cut); only redb's recovery could read it, and that refuses the damage".into(),
            )),
            Err(e) => report.lost.push(("every table", e.to_string())),
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

    #[test]
    fn repair_keeps_settings_and_friends_and_backs_up_the_damaged_file() {
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
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.setting("listen").unwrap().as_deref(), Some("x"));
        assert_eq!(
            store.known_peer("Friend").unwrap().unwrap().key,
            Some([3; 32])
        );
        let txn = store.db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(INDEX).unwrap().len().unwrap(),
            0,
            "rebuilt by a scan"
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
