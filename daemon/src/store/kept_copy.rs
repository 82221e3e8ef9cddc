//! The kept copy: a second, small database file beside the main one holding the tables the
//! user made (settings, shares, friends and other known peers, invites, share access). It is
//! what `repair` restores when the main file cannot be read at all, as when a crash left it
//! damaged and redb's recovery refuses it. Refreshed while those tables change (checked
//! once a minute by their digest) and at a clean stop; always written whole to a temporary
//! file, closed, synced and renamed into place, so the copy on disk is one cleanly closed
//! file whatever moment a crash or power cut picks.

use std::path::Path;

use redb::{Key, ReadTransaction, TableHandle, Value, WriteTransaction};

use super::*;

pub const KEPT_COPY_FILE: &str = "harddrive-party.kept.redb";

/// The tables the user made: what `repair` keeps and the kept copy holds. The schema
/// version comes first, so the next open migrates what was copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTable {
    SchemaVersion,
    Settings,
    Shares,
    KnownPeers,
    Invites,
    ShareAccess,
    /// The downloaded files (`library`): from the damaged file only.
    Library,
}

impl UserTable {
    /// What the kept copy holds: all but the library, which grows with every download;
    /// rewriting it each minute of a busy day would wear an SD card for little.
    pub const KEPT: [UserTable; 6] = [
        UserTable::SchemaVersion,
        UserTable::Settings,
        UserTable::Shares,
        UserTable::KnownPeers,
        UserTable::Invites,
        UserTable::ShareAccess,
    ];

    /// Every table `repair` keeps: the kept copy's and the library.
    pub fn all() -> impl Iterator<Item = UserTable> {
        Self::KEPT.into_iter().chain([UserTable::Library])
    }

    pub fn label(self) -> &'static str {
        match self {
            UserTable::SchemaVersion => "schema version",
            UserTable::Settings => "settings",
            UserTable::Shares => "shares",
            UserTable::KnownPeers => "friends and other known peers",
            UserTable::Invites => "invites",
            UserTable::ShareAccess => "share access",
            UserTable::Library => "downloaded files",
        }
    }

    /// Copies this table's rows from `old` into `new`.
    pub(super) fn copy(
        self,
        old: &ReadTransaction,
        new: &WriteTransaction,
    ) -> Result<u64, StoreError> {
        match self {
            UserTable::SchemaVersion => copy(old, new, META),
            UserTable::Settings => copy(old, new, SETTINGS),
            UserTable::Shares => copy(old, new, SHARES),
            UserTable::KnownPeers => copy(old, new, PEERS),
            UserTable::Invites => copy(old, new, INVITES),
            UserTable::ShareAccess => copy(old, new, SHARE_ACCESS),
            UserTable::Library => copy(old, new, LIBRARY),
        }
    }

    /// Drops whatever part of this table `new` holds.
    pub(super) fn clear(self, new: &WriteTransaction) -> Result<(), StoreError> {
        let deleted = match self {
            UserTable::SchemaVersion => new.delete_table(META),
            UserTable::Settings => new.delete_table(SETTINGS),
            UserTable::Shares => new.delete_table(SHARES),
            UserTable::KnownPeers => new.delete_table(PEERS),
            UserTable::Invites => new.delete_table(INVITES),
            UserTable::ShareAccess => new.delete_table(SHARE_ACCESS),
            UserTable::Library => new.delete_table(LIBRARY),
        };
        deleted.map(drop).map_err(StoreError::from)
    }

    fn digest(self, read: &ReadTransaction, hasher: &mut blake3::Hasher) -> Result<(), StoreError> {
        match self {
            UserTable::SchemaVersion => digest_table(read, META, hasher),
            UserTable::Settings => digest_table(read, SETTINGS, hasher),
            UserTable::Shares => digest_table(read, SHARES, hasher),
            UserTable::KnownPeers => digest_table(read, PEERS, hasher),
            UserTable::Invites => digest_table(read, INVITES, hasher),
            UserTable::ShareAccess => digest_table(read, SHARE_ACCESS, hasher),
            UserTable::Library => digest_table(read, LIBRARY, hasher),
        }
    }
}

/// Copies one table's rows; a table missing from the old file is an empty one.
fn copy<K: Key + 'static, V: Value + 'static>(
    old: &ReadTransaction,
    new: &WriteTransaction,
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

fn digest_table<K: Key + 'static, V: Value + 'static>(
    read: &ReadTransaction,
    table: TableDefinition<K, V>,
    hasher: &mut blake3::Hasher,
) -> Result<(), StoreError> {
    let rows = read.open_table(table)?;
    hasher.update(table.name().as_bytes());
    for row in rows.iter()? {
        let (k, v) = row?;
        // Lengths first, so no two different tables hash alike.
        for bytes in [
            K::as_bytes(&k.value()).as_ref(),
            V::as_bytes(&v.value()).as_ref(),
        ] {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
    }
    Ok(())
}

fn user_tables_digest(read: &ReadTransaction) -> Result<blake3::Hash, StoreError> {
    let mut hasher = blake3::Hasher::new();
    for table in UserTable::KEPT {
        table.digest(read, &mut hasher)?;
    }
    Ok(hasher.finalize())
}

impl Store {
    /// Rewrites the kept copy if the user's tables changed since it was last written by this
    /// process; true if it was written.
    pub fn refresh_kept_copy(&self) -> Result<bool, StoreError> {
        let read = self.db.begin_read()?;
        let digest = user_tables_digest(&read)?;
        if *crate::locks::lock(&self.kept_digest) == Some(digest) {
            return Ok(false);
        }
        let path = self.dir.join(KEPT_COPY_FILE);
        let partial = self.dir.join(format!("{KEPT_COPY_FILE}.partial"));
        let written = write_copy(&read, &partial).and_then(|()| {
            std::fs::rename(&partial, &path).map_err(io_error)?;
            // The rename itself must survive a power cut before the old copy is trusted gone.
            std::fs::File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io_error)
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?;
        *crate::locks::lock(&self.kept_digest) = Some(digest);
        Ok(true)
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

fn write_copy(read: &ReadTransaction, partial: &Path) -> Result<(), StoreError> {
    let _ = std::fs::remove_file(partial);
    let copy = Database::create(partial).map_err(|e| StoreError::Db(e.to_string()))?;
    let txn = copy.begin_write()?;
    for table in UserTable::KEPT {
        table.copy(read, &txn)?;
    }
    txn.commit()?;
    drop(copy);
    std::fs::File::open(partial)
        .and_then(|file| file.sync_all())
        .map_err(io_error)
}
