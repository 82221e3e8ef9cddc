//! The `.part` file of one download: opened for one version of the remote file, its blocks
//! reserved, its verified pieces recovered after a crash, and in the end checked whole,
//! synced and renamed to the final name with the remote mtime.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::task::JoinError;

use super::disk::{forget_synced, verify_whole};
use crate::content::{hash_piece, piece_count, piece_len, Bitfield, Hash, PIECE_SIZE};
use crate::net::rpc::ContentHashes;
use crate::store::FileRecord;

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the finished file did not match its root hash; fetching it again")]
    NotWhole,
    #[error(transparent)]
    Task(#[from] JoinError),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PartError + '_ {
    move |source| PartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the `.part` on disk relates to the version of the file the named peer describes now.
#[derive(Debug, PartialEq, Eq)]
pub enum Version {
    /// The recorded size, mtime and root (if any) are the peer's: keep what is there.
    Same,
    /// Same size and mtime, another root: the content changed in place.
    NewRoot,
    /// Another size or mtime: the remote file changed.
    Changed,
}

/// Compares the recorded version of a file with the peer's piece-list header.
pub fn version(record: &FileRecord, remote: &ContentHashes) -> Version {
    if (remote.size, remote.mtime) != (record.size, record.mtime) {
        Version::Changed
    } else if record.root.is_some_and(|r| r != remote.root) {
        Version::NewRoot
    } else {
        Version::Same
    }
}

/// A `.part` ready to fetch into, or the news that the remote file changed.
pub enum Opened {
    Ready { file: File, have: Bitfield },
    Changed { size: u64, mtime: u64 },
}

/// Opens (or creates) the `.part` for the version in `remote`. A `.part` of another version
/// is emptied first; on a changed size or mtime nothing more is done, as the file must be
/// started over under its new size. Otherwise the blocks are reserved and the verified
/// pieces recovered; `record` then names the root and no longer holds the saved bitfield.
pub async fn open(
    local: &Path,
    part: &Path,
    remote: &ContentHashes,
    record: &mut FileRecord,
) -> Result<Opened, PartError> {
    let file = local
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(part)
        })
        .map_err(io_at(part))?;
    let version = version(record, remote);
    if version != Version::Same {
        // Another version of the file: nothing in the part file belongs to it.
        record.have = None;
        file.set_len(0).map_err(io_at(part))?;
    }
    if version == Version::Changed {
        record.root = None;
        return Ok(Opened::Changed {
            size: remote.size,
            mtime: remote.mtime,
        });
    }
    record.root = Some(remote.root);
    preallocate(&file, remote.size, part);
    let (size, pieces, saved) = (remote.size, remote.pieces.clone(), record.have.take());
    let (file, have) = tokio::task::spawn_blocking(move || {
        let have = recover_pieces(&file, size, &pieces, saved);
        (file, have)
    })
    .await?;
    Ok(Opened::Ready {
        file,
        have: have.map_err(io_at(part))?,
    })
}

/// Reserves the blocks up front where the filesystem can (fewer fragments, and a full disk
/// shows early); `KEEP_SIZE` leaves the length showing how far writing got.
fn preallocate(file: &File, size: u64, part: &Path) {
    let Ok(len) = i64::try_from(size) else { return };
    let keep_size = nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
    if let Err(e) = nix::fcntl::fallocate(file, keep_size, 0, len) {
        tracing::debug!("no preallocation for {}: {e}", part.display());
    }
}

/// Marks the pieces already present in a partial file: those the saved bitfield lists, and
/// any other piece below the file's length whose bytes match (written before a crash, not
/// yet recorded). Blocking.
pub fn recover_pieces(
    file: &File,
    size: u64,
    pieces: &[Hash],
    saved: Option<Bitfield>,
) -> std::io::Result<Bitfield> {
    let count = piece_count(size);
    let mut have = saved
        .filter(|b| b.len() == count)
        .unwrap_or_else(|| Bitfield::new(count));
    let on_disk = file.metadata()?.len();
    let mut buf = vec![0u8; size.min(PIECE_SIZE) as usize];
    for piece in 0..count {
        let len = piece_len(size, piece);
        if have.get(piece) || piece * PIECE_SIZE + len > on_disk {
            continue;
        }
        let buf = &mut buf[..len as usize];
        file.read_exact_at(buf, piece * PIECE_SIZE)?;
        if pieces.get(piece as usize) == Some(&hash_piece(buf)) {
            have.set(piece);
        }
    }
    Ok(have)
}

/// Makes the finished `.part` the file at `local`: cut to `size`, re-read and hashed to
/// `root`, synced, renamed, and given the remote `mtime` (seconds), which marks it as this
/// exact version so that asking for it again is free.
pub async fn finish(
    file: Arc<File>,
    part: &Path,
    local: &Path,
    size: u64,
    root: Hash,
    mtime: u64,
) -> Result<(), PartError> {
    let whole = tokio::task::spawn_blocking(move || {
        // A longer leftover part (an older version) must not keep its tail.
        file.set_len(size)?;
        let whole = verify_whole(&file, size, &root)?;
        if whole {
            file.sync_all()?;
            forget_synced(&file, size);
        }
        Ok(whole)
    })
    .await?
    .map_err(io_at(part))?;
    if !whole {
        return Err(PartError::NotWhole);
    }
    std::fs::rename(part, local).map_err(io_at(local))?;
    let mtime = UNIX_EPOCH + Duration::from_secs(mtime);
    if let Err(e) = File::options()
        .write(true)
        .open(local)
        .and_then(|f| f.set_modified(mtime))
    {
        tracing::debug!("cannot set mtime of {}: {e}", local.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::root_of;

    fn record(size: u64, mtime: u64, root: Option<Hash>) -> FileRecord {
        FileRecord {
            root,
            ..crate::store::FileRecord::pending(size, mtime)
        }
    }

    /// Content of `size` bytes and its piece list.
    fn content(size: u64) -> (Vec<u8>, ContentHashes) {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let pieces: Vec<Hash> = bytes.chunks(PIECE_SIZE as usize).map(hash_piece).collect();
        let list = ContentHashes {
            size,
            mtime: 50,
            root: root_of(size, &pieces),
            pieces,
        };
        (bytes, list)
    }

    #[test]
    fn a_part_belongs_to_one_size_mtime_and_root() {
        let (_, remote) = content(10);
        assert_eq!(version(&record(10, 50, None), &remote), Version::Same);
        assert_eq!(
            version(&record(10, 50, Some(remote.root)), &remote),
            Version::Same
        );
        assert_eq!(
            version(&record(10, 50, Some([1; 32])), &remote),
            Version::NewRoot
        );
        assert_eq!(
            version(&record(11, 50, Some(remote.root)), &remote),
            Version::Changed
        );
        assert_eq!(version(&record(10, 49, None), &remote), Version::Changed);
    }

    #[test]
    fn recovery_keeps_only_pieces_that_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.part");
        let size = 3 * PIECE_SIZE + 10;
        let (bytes, list) = content(size);
        let mut written = bytes[..(2 * PIECE_SIZE + 5) as usize].to_vec();
        written[(PIECE_SIZE + 3) as usize] ^= 0xff;
        std::fs::write(&path, &written).unwrap();
        let file = File::open(&path).unwrap();
        let have = recover_pieces(&file, size, &list.pieces, None).unwrap();
        assert_eq!(
            (0..4).map(|i| have.get(i)).collect::<Vec<_>>(),
            [true, false, false, false]
        );
        // The saved bitfield is trusted as it is (the whole-file check catches a lie).
        let mut saved = Bitfield::new(4);
        saved.set(3);
        let have = recover_pieces(&file, size, &list.pieces, Some(saved)).unwrap();
        assert_eq!(
            (0..4).map(|i| have.get(i)).collect::<Vec<_>>(),
            [true, false, false, true]
        );
    }

    #[tokio::test]
    async fn another_version_empties_the_part_and_the_same_one_resumes_it() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("sub/f");
        let part = dir.path().join("sub/f.part");
        let (bytes, remote) = content(2 * PIECE_SIZE + 3);
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(&part, &bytes[..PIECE_SIZE as usize]).unwrap();

        let mut older = record(remote.size, 49, Some(remote.root));
        older.have = Some(Bitfield::new(3));
        let opened = open(&local, &part, &remote, &mut older).await.unwrap();
        assert!(matches!(opened, Opened::Changed { size, mtime: 50 } if size == remote.size));
        assert_eq!(std::fs::metadata(&part).unwrap().len(), 0);
        assert_eq!((older.root, older.have), (None, None));

        std::fs::write(&part, &bytes[..PIECE_SIZE as usize]).unwrap();
        let mut same = record(remote.size, 50, None);
        let Opened::Ready { have, .. } = open(&local, &part, &remote, &mut same).await.unwrap()
        else {
            panic!("the same version resumes");
        };
        assert_eq!((have.get(0), have.get(1)), (true, false));
        assert_eq!(same.root, Some(remote.root));

        let mut moved = record(remote.size, 50, Some([7; 32]));
        let opened = open(&local, &part, &remote, &mut moved).await.unwrap();
        let Opened::Ready { have, .. } = opened else {
            panic!("a new root restarts in place");
        };
        assert_eq!(have.count(), 0);
        assert_eq!(moved.root, Some(remote.root));
    }

    #[tokio::test]
    async fn only_a_whole_file_gets_its_name_and_the_remote_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let (local, part) = (dir.path().join("f"), dir.path().join("f.part"));
        let (mut bytes, remote) = content(PIECE_SIZE + 9);
        bytes[5] ^= 1;
        std::fs::write(&part, &bytes).unwrap();
        let file = || Arc::new(File::options().read(true).write(true).open(&part).unwrap());
        let (size, root) = (remote.size, remote.root);
        let damaged = finish(file(), &part, &local, size, root, 1_000_000).await;
        assert!(matches!(damaged, Err(PartError::NotWhole)));
        assert!(!local.exists());

        bytes[5] ^= 1;
        // A longer leftover tail is cut off before the check.
        bytes.extend_from_slice(b"old tail");
        std::fs::write(&part, &bytes).unwrap();
        finish(file(), &part, &local, size, root, 1_000_000)
            .await
            .unwrap();
        assert!(!part.exists());
        let meta = std::fs::metadata(&local).unwrap();
        assert_eq!(meta.len(), size);
        assert_eq!(
            meta.modified().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_000_000)
        );
    }
}
