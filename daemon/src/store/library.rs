//! The local library: every file a download finished, under the path it was saved at, so
//! it can be listed, served and deleted after the download folder changed and with its
//! sender offline. Also the destination a download was given (`download --to`).

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::*;

/// A finished download as the library lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryEntry {
    /// Absolute, with no symlink in it when recorded.
    pub path: String,
    pub size: u64,
    /// Unix seconds.
    pub finished: u64,
    /// `peer/remote path` it came from.
    pub from: String,
}

/// Size, time, then the source: packed by hand, as the index is.
fn pack(size: u64, finished: u64, from: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + from.len());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&finished.to_le_bytes());
    out.extend_from_slice(from.as_bytes());
    out
}

fn unpack(path: &str, bytes: &[u8]) -> Option<LibraryEntry> {
    Some(LibraryEntry {
        path: path.to_string(),
        size: u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?),
        finished: u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?),
        from: String::from_utf8_lossy(bytes.get(16..)?).into_owned(),
    })
}

impl Store {
    ///
    /// Committed without an fsync of its own (ARCHITECTURE.md, `store/`): the entry is
    /// written before the download's record of the finished file, so any durable state that
    /// holds that record holds the entry too, and a crash that loses the record sends the
    /// download back to the file, which is found on disk and shelved again. A durable commit
    /// per file cost two thirds of a receiver's CPU on a folder of small files.
    pub fn add_to_library(&self, entry: &LibraryEntry) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        self.make_lazy(&mut txn)?;
        txn.open_table(LIBRARY)?.insert(
            entry.path.as_str(),
            pack(entry.size, entry.finished, &entry.from).as_slice(),
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` entries after `skip` others, in path order, and how many there are.
    pub fn library(
        &self,
        skip: usize,
        limit: usize,
    ) -> Result<(Vec<LibraryEntry>, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LIBRARY)?;
        let mut out = Vec::new();
        for row in table.iter()?.skip(skip).take(limit) {
            let (path, value) = row?;
            out.extend(unpack(path.value(), value.value()));
        }
        Ok((out, table.len()?))
    }

    pub fn library_entry(&self, path: &str) -> Result<Option<LibraryEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LIBRARY)?;
        Ok(table.get(path)?.and_then(|v| unpack(path, v.value())))
    }

    pub fn remove_from_library(&self, path: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(LIBRARY)?.remove(path)?;
        txn.commit()?;
        Ok(())
    }

    pub fn download_destination(&self, id: u64) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOWNLOAD_TO)?;
        Ok(table.get(id)?.map(|v| v.value().to_string()))
    }
}
