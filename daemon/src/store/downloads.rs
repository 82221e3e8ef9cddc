//! The download wishlist and per-file progress tables.

use redb::{ReadableDatabase, ReadableTable};

use super::*;

impl Store {
    /// Stores a new download, sent to the folder `to` if given; its id.
    pub fn add_download(
        &self,
        record: &DownloadRecord,
        to: Option<&str>,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let id = {
            let mut table = txn.open_table(DOWNLOADS)?;
            let id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            table.insert(id, encode(record).as_slice())?;
            id
        };
        if let Some(to) = to {
            txn.open_table(DOWNLOAD_TO)?.insert(id, to)?;
        }
        txn.commit()?;
        Ok(id)
    }

    pub fn downloads(&self) -> Result<Vec<(u64, DownloadRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOWNLOADS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (id, value) = row?;
            out.push((id.value(), decode(value.value())?));
        }
        Ok(out)
    }

    pub fn download(&self, id: u64) -> Result<Option<DownloadRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOWNLOADS)?;
        table.get(id)?.map(|v| decode(v.value())).transpose()
    }

    pub fn put_download(&self, id: u64, record: &DownloadRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(DOWNLOADS)?
            .insert(id, encode(record).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn remove_download(&self, id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(DOWNLOADS)?.remove(id)?;
        txn.open_table(DOWNLOAD_TO)?.remove(id)?;
        txn.open_table(DOWNLOAD_FILES)?
            .retain_in((id, "")..(id + 1, ""), |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Stores a batch of expanded file records (existing records are kept: their progress matters).
    pub fn add_download_files(
        &self,
        id: u64,
        files: &[(String, FileRecord)],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(DOWNLOAD_FILES)?;
            for (path, record) in files {
                if table.get((id, path.as_str()))?.is_none() {
                    table.insert((id, path.as_str()), encode(record).as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// `durable: false` for a record the disk itself bears out (a finished file is found
    /// again by its size and mtime): lost in a power cut, it costs a stat, not a fetch.
    pub fn put_download_file(
        &self,
        id: u64,
        path: &str,
        record: &FileRecord,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            self.make_lazy(&mut txn)?;
        }
        txn.open_table(DOWNLOAD_FILES)?
            .insert((id, path), encode(record).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Visits a download's files in path order, starting after `after` (exclusive) if given,
    /// until `visit` returns false.
    pub fn visit_download_files(
        &self,
        id: u64,
        after: Option<&str>,
        mut visit: impl FnMut(&str, FileRecord) -> bool,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOWNLOAD_FILES)?;
        let start = (id, after.unwrap_or(""));
        for row in table.range(start..(id + 1, ""))? {
            let (key, value) = row?;
            let (_, path) = key.value();
            if after == Some(path) {
                continue;
            }
            if !visit(path, decode(value.value())?) {
                break;
            }
        }
        Ok(())
    }
}
