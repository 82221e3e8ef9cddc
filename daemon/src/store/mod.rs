//! Persistent state in one redb file: settings, the share index, known peers, the download
//! wishlist and per-file progress. The schema carries a version; a newer or damaged database
//! stops start-up with a clear message and is never wiped.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

mod access;
mod downloads;
mod kept_copy;
mod library;
mod migrate;
mod records;
mod repair;

pub use access::AddInvite;
pub use harddrive_party_core::peer_policy::KnownPeer;
pub use kept_copy::KEPT_COPY_FILE;
pub use library::LibraryEntry;
use migrate::migrate_known_peers;
pub use records::*;
pub use repair::{repair, RepairReport, Source};

/// 2: `KnownPeer` gained trust, block, nickname and key (friends only, issue 12).
/// 3: `KnownPeer` gained `guest`; the invites and share access tables.
pub const SCHEMA_VERSION: u64 = 3;
pub const DB_FILE: &str = "harddrive-party.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
/// share name -> absolute directory
pub(crate) const SHARES: TableDefinition<&str, &str> = TableDefinition::new("shares");
/// "share/rel/path" -> packed [`IndexValue`]
pub(crate) const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("index");
/// peer name -> bincode [`KnownPeer`]
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("known_peers");
/// download id -> bincode [`DownloadRecord`]
const DOWNLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("downloads");
/// share path -> bincode [`HashRecord`]: content hashes of shared files, computed lazily
pub(crate) const HASHES: TableDefinition<&str, &[u8]> = TableDefinition::new("content_hashes");
/// root hash -> share path holding that content
pub(crate) const ROOTS: TableDefinition<&[u8], &str> = TableDefinition::new("content_roots");
/// (download id, remote file path) -> bincode [`FileRecord`]
const DOWNLOAD_FILES: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("download_files");
/// BLAKE3 hash (hex) of a web UI session token -> bincode [`UiSession`]; never the token itself
const UI_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("ui_sessions");
/// invite id -> bincode [`Invite`](harddrive_party_core::invite::Invite) (a verifier, never
/// the secret)
const INVITES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invites");
/// share name -> bincode [`ShareAccess`](harddrive_party_core::peer_policy::ShareAccess);
/// no row: open to all friends
pub(crate) const SHARE_ACCESS: TableDefinition<&str, &[u8]> = TableDefinition::new("share_access");
/// absolute path of a finished download -> size, finish time and source (`store/library.rs`)
pub(crate) const LIBRARY: TableDefinition<&str, &[u8]> = TableDefinition::new("library");
/// download id -> the folder it was sent to (`download --to`); no row: the download folder
const DOWNLOAD_TO: TableDefinition<u64, &str> = TableDefinition::new("download_to");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create storage directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {0} is in use by another harddrive-party process; stop it first or use another --storage")]
    Locked(PathBuf),
    #[error("database {path} is damaged or not a harddrive-party database ({detail}); it was left untouched: stop here and run `harddrive-party repair` (same --storage), which backs it up and rebuilds it, keeping the identity, friends and settings it can read")]
    Corrupt { path: PathBuf, detail: String },
    #[error("database {path} has schema version {found}, newer than this harddrive-party supports ({supported}); upgrade harddrive-party, it was left untouched")]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("database error: {0}")]
    Db(String),
    #[error("record could not be decoded: {0}")]
    Decode(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
    })*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub struct Store {
    db: Database,
    /// The storage directory, where the kept copy lives.
    dir: PathBuf,
    /// The digest of the user's tables the kept copy was last written with.
    kept_digest: std::sync::Mutex<Option<blake3::Hash>>,
    /// Commits made without an fsync since the last one that made them durable.
    lazy_commits: std::sync::atomic::AtomicUsize,
}

/// redb keeps what a commit without an fsync frees, in memory and in the file, until a
/// durable commit: a background pass hashing a million files grew the daemon by 40 MB that
/// way. Every this many lazy commits, one is made durable.
const LAZY_COMMITS_PER_SYNC: usize = 1024;

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding our own plain structs into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Decode(e.to_string()))
}

/// Makes sure the writable open cannot write to a damaged file. A clean file opens read-only
/// without a write, and the integrity check that follows writes only once it verifies; but a
/// file needing recovery (after a crash, or cut short) gets its header rewritten before the
/// check, so that recovery is rehearsed on a copy first. Without room for the copy, recovery
/// runs on the file itself, as after any crash.
fn rehearse_open(path: &Path) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.into(),
        detail,
    };
    let mut builder = Database::builder();
    builder.set_cache_size(1 << 20);
    match builder.open_read_only(path) {
        Ok(_) => return Ok(()),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::Locked(path.into()))
        }
        Err(redb::DatabaseError::RepairAborted) => {}
        Err(other) => return Err(corrupt(other.to_string())),
    }
    let copy = path.with_extension("redb.rehearsal");
    if let Err(e) = std::fs::copy(path, &copy) {
        let _ = std::fs::remove_file(&copy);
        tracing::warn!(
            "no room to rehearse the recovery of {} ({e}); recovering it in place",
            path.display()
        );
        return Ok(());
    }
    let rehearsed = builder
        .set_check_integrity_on_open(true)
        .open(&copy)
        .map(drop);
    let _ = std::fs::remove_file(&copy);
    rehearsed.map_err(|e| corrupt(e.to_string()))
}

impl Store {
    pub fn open(storage_dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(storage_dir).map_err(|source| StoreError::CreateDir {
            path: storage_dir.into(),
            source,
        })?;
        Self::open_file(&storage_dir.join(DB_FILE), cache_bytes)
    }

    fn open_file(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let mut builder = Database::builder();
        // A plain open trusts every page and can panic on a damaged one (an abort in the
        // release build); the check verifies every checksum first and writes nothing unless
        // the file verifies (or is only a crash's unfinished commit, which it rolls back).
        builder
            .set_cache_size(cache_bytes)
            .set_check_integrity_on_open(true);
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            detail,
        };
        let opened = if path.exists() {
            rehearse_open(&path)?;
            builder.open(&path)
        } else {
            builder.create(&path)
        };
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.clone()),
            other => corrupt(other.to_string()),
        })?;
        let store = Store {
            db,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            kept_digest: std::sync::Mutex::new(None),
            lazy_commits: std::sync::atomic::AtomicUsize::new(0),
        };
        store.check_schema(&path)?;
        Ok(store)
    }

    /// Makes `txn` a commit without an fsync, unless it is the one in
    /// [`LAZY_COMMITS_PER_SYNC`] that makes the lazy commits before it durable.
    pub(super) fn make_lazy(&self, txn: &mut redb::WriteTransaction) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let made = self.lazy_commits.fetch_add(1, Ordering::Relaxed) + 1;
        if made >= LAZY_COMMITS_PER_SYNC {
            self.lazy_commits.store(0, Ordering::Relaxed);
            return Ok(());
        }
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Db(e.to_string()))
    }

    fn check_schema(&self, path: &Path) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: path.into(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(old @ (1 | 2)) => {
                    migrate_known_peers(&txn, old)?;
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            // Create every table so later read transactions never meet a missing one.
            txn.open_table(SETTINGS)?;
            txn.open_table(SHARES)?;
            txn.open_table(INDEX)?;
            txn.open_table(PEERS)?;
            txn.open_table(DOWNLOADS)?;
            txn.open_table(DOWNLOAD_FILES)?;
            txn.open_table(HASHES)?;
            txn.open_table(ROOTS)?;
            txn.open_table(UI_SESSIONS)?;
            txn.open_table(INVITES)?;
            txn.open_table(SHARE_ACCESS)?;
            txn.open_table(LIBRARY)?;
            txn.open_table(DOWNLOAD_TO)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Whether a write failed (a full disk, an I/O error): redb then refuses every later
    /// write ("Previous I/O error occurred") until the file is reopened. Reads still work,
    /// so only a writer sees it; taking one that is free and dropping it writes nothing.
    pub fn failed(&self) -> bool {
        matches!(
            self.db.try_begin_write(),
            Err(redb::TransactionError::Storage(
                redb::StorageError::PreviousIo
            ))
        )
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SETTINGS)?;
        Ok(table.get(key)?.map(|v| v.value().to_string()))
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SETTINGS)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    pub fn ui_sessions(&self) -> Result<Vec<(String, UiSession)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UI_SESSIONS)?;
        let mut sessions = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            sessions.push((key.value().to_string(), decode(value.value())?));
        }
        Ok(sessions)
    }

    /// `durable: false` for a mere `last_used` refresh: losing it in a power cut only makes
    /// the session look a little older.
    pub fn put_ui_session(
        &self,
        key: &str,
        session: &UiSession,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            self.make_lazy(&mut txn)?;
        }
        txn.open_table(UI_SESSIONS)?
            .insert(key, encode(session).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn remove_ui_sessions(&self, keys: &[String]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(UI_SESSIONS)?;
            for key in keys {
                table.remove(key.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn clear_ui_sessions(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(UI_SESSIONS)?.retain(|_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    pub fn known_peers(&self) -> Result<Vec<(String, KnownPeer)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PEERS)?;
        let mut peers = Vec::new();
        for row in table.iter()? {
            let (name, value) = row?;
            peers.push((name.value().to_string(), decode(value.value())?));
        }
        Ok(peers)
    }

    pub fn known_peer(&self, name: &str) -> Result<Option<KnownPeer>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PEERS)?;
        table.get(name)?.map(|v| decode(v.value())).transpose()
    }

    pub fn put_known_peer(&self, name: &str, peer: &KnownPeer) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(PEERS)?
            .insert(name, encode(peer).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Reads and rewrites one peer's record in one write transaction, so a change made
    /// meanwhile (the user's `connect` while gossip introduces the same peer) is never
    /// overwritten with a decision taken on the record before it. `decide` returns the
    /// record to write, if any, and what the caller wants back.
    pub fn update_known_peer<T>(
        &self,
        name: &str,
        decide: impl FnOnce(Option<KnownPeer>) -> (Option<KnownPeer>, T),
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write()?;
        let (write, answer) = {
            let table = txn.open_table(PEERS)?;
            let known = table.get(name)?.map(|v| decode(v.value())).transpose()?;
            decide(known)
        };
        match write {
            Some(record) => {
                txn.open_table(PEERS)?
                    .insert(name, encode(&record).as_slice())?;
                txn.commit()?;
            }
            None => txn.abort()?,
        }
        Ok(answer)
    }

    pub fn remove_known_peer(&self, name: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let removed = txn.open_table(PEERS)?.remove(name)?.is_some();
        txn.commit()?;
        Ok(removed)
    }

    pub fn hash_record(&self, path: &str) -> Result<Option<HashRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(HASHES)?;
        table.get(path)?.map(|v| decode(v.value())).transpose()
    }

    pub fn put_hash_record(&self, path: &str, record: &HashRecord) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        // A cache: losing the newest entries in a power cut only means hashing them again,
        // so they ride along with the next durable commit instead of an fsync each.
        self.make_lazy(&mut txn)?;
        txn.open_table(HASHES)?
            .insert(path, encode(record).as_slice())?;
        txn.open_table(ROOTS)?
            .insert(record.root.as_slice(), path)?;
        txn.commit()?;
        Ok(())
    }

    pub fn path_for_root(&self, root: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ROOTS)?;
        Ok(table.get(root.as_slice())?.map(|v| v.value().to_string()))
    }
}

#[cfg(test)]
pub(super) mod tests;
