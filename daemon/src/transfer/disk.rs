//! Disk policy: free space and the reserve, and keeping large downloads out of the page
//! cache (write-back advice while writing, direct reads when verifying).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::download::Downloads;
use super::outcome::Outcome;
use super::plan;
use crate::content::{piece_len, FileHasher, Hash, PIECE_SIZE};

/// Free bytes on the filesystem holding `path`, if it can tell.
pub fn free_space(path: &Path) -> Option<u64> {
    // The conversions are no-ops on 64-bit targets but widen c_ulong on armv7.
    #[allow(clippy::useless_conversion)]
    nix::sys::statvfs::statvfs(path)
        .ok()
        .map(|s| u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

/// Why downloads must wait, if `free` bytes are below the `reserve` (`--min-free-space`), or
/// below one piece whatever the reserve (a disk that full cannot take the next piece).
pub fn below_reserve(free: u64, reserve: u64) -> Option<String> {
    let mib = |n: u64| n / (1024 * 1024);
    if free < reserve {
        Some(format!(
            "{} MiB free, below the {} MiB reserve (Settings, free-space reserve)",
            mib(free),
            mib(reserve)
        ))
    } else if free < PIECE_SIZE {
        Some(format!("{free} bytes free, less than one piece"))
    } else {
        None
    }
}

/// Downloads at least this large do not stay in the page cache (see `drop_behind`).
const DROP_BEHIND_MIN_SIZE: u64 = 64 * 1024 * 1024;
/// Pieces written this long ago have normally been written back and can be dropped.
const DROP_BEHIND_LAG: u64 = 16;

/// Whether a download of `size` bytes keeps out of the page cache.
fn drops_behind(size: u64) -> bool {
    size >= DROP_BEHIND_MIN_SIZE
}

/// Asks the kernel to drop `len` bytes at `offset` from the page cache. On dirty pages this
/// only starts their write-back; a later call drops them once clean. Advice, never an error.
fn forget_cached(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        file,
        offset,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// After writing `piece` of a large download: start its write-back and drop the piece
/// written `DROP_BEHIND_LAG` before it. A seedbox fetching a file bigger than its RAM
/// would otherwise push everything else out of the page cache (shares being served, the
/// index), and filling new page-cache pages is also most of what writing costs the
/// receiver: 4 CPU s per GiB on the benchmark VM against under 0.5 s this way.
pub fn drop_behind(file: &File, size: u64, piece: u64) {
    if !drops_behind(size) {
        return;
    }
    forget_cached(file, piece * PIECE_SIZE, piece_len(size, piece));
    if let Some(old) = piece.checked_sub(DROP_BEHIND_LAG) {
        forget_cached(file, old * PIECE_SIZE, PIECE_SIZE);
    }
}

/// Once a large download is synced: drops what is still cached of it (the pieces that
/// were dirty while `verify_whole` read them).
pub fn forget_synced(file: &File, size: u64) {
    if drops_behind(size) {
        forget_cached(file, 0, size);
    }
}

/// Re-reads the finished file and checks it against the root: the last word before a file
/// is called complete. A large file is read straight from the disk (`O_DIRECT`), as the
/// page cache no longer holds it and filling fresh cache pages only to hash them once
/// costs more than the read; where the filesystem refuses direct reads, through the cache,
/// dropping what was read. Blocking.
pub fn verify_whole(file: &File, size: u64, root: &Hash) -> std::io::Result<bool> {
    let mut direct = drops_behind(size).then(|| open_direct(file)).flatten();
    let mut hasher = FileHasher::default();
    // Direct reads need a block-aligned buffer: take an aligned window of a larger one.
    // A small file's is its size (in whole blocks), not a piece's, as many run at once.
    let len = (size.min(PIECE_SIZE) as usize).next_multiple_of(DIRECT_ALIGN);
    let mut backing = vec![0u8; len + DIRECT_ALIGN];
    let start = backing.as_ptr().align_offset(DIRECT_ALIGN);
    let buf = &mut backing[start..start + len];
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(PIECE_SIZE) as usize;
        if let Some(direct_file) = &direct {
            // The last chunk is asked for in whole blocks; the read stops at the end of file.
            let whole_blocks = n.next_multiple_of(DIRECT_ALIGN);
            match super::read_at_least(direct_file, &mut buf[..whole_blocks], offset, n) {
                Ok(()) => {}
                // Opened, but the filesystem refuses direct reads: read through the cache.
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32) => {
                    direct = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            file.read_exact_at(&mut buf[..n], offset)?;
            if drops_behind(size) {
                forget_cached(file, offset, n as u64);
            }
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let (hashed, got, _) = hasher.finish();
    Ok(hashed == size && got == *root)
}

/// Offsets, lengths and buffers of direct reads must be multiples of the device's logical
/// block size; 4096 covers every common one (512 and 4K sectors).
const DIRECT_ALIGN: usize = 4096;

/// A second, read-only descriptor of `file` with `O_DIRECT`, opened through /proc so it
/// is the very same inode. Its own flags leave the shared descriptor alone, which may be
/// serving verified pieces to other peers meanwhile. `None` where the filesystem or a
/// missing /proc refuses it.
fn open_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

/// The download engine's questions to the disk, asked of its current folder and reserve.
impl Downloads {
    /// Why downloads must wait now, if the download disk is below the free-space reserve.
    pub fn download_disk_low(&self) -> Option<String> {
        self.below_reserve(&self.download_dir())
    }

    /// Why the download folder cannot be written to, if it cannot (read-only, permissions,
    /// gone); `access` answers for this process, root included, without writing anything.
    pub fn download_dir_unwritable(&self) -> Option<String> {
        let dir = self.download_dir();
        nix::unistd::access(
            &dir,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .err()
        .map(|e| format!("{}: {}", dir.display(), e.desc()))
    }

    /// Whether a file of `size` bytes fits (`plan::room_for`) beside its `.part`: a file too
    /// large for any download fails, one the disk cannot hold now waits as `disk_full`.
    pub(super) fn room_for(
        &self,
        size: u64,
        part: &Path,
        download_dir: &Path,
    ) -> Result<(), Outcome> {
        // Blocks allocated, not the length: a `.part` is preallocated (`FALLOC_FL_KEEP_SIZE`)
        // where the filesystem can, and may have holes where it cannot.
        use std::os::unix::fs::MetadataExt;
        let on_disk = std::fs::metadata(part).map_or(0, |m| m.blocks().saturating_mul(512));
        let free = free_space(download_dir);
        plan::room_for(size, on_disk, free, self.limits().min_free_space).map_err(|e| match e {
            plan::NoRoom::TooLarge { .. } => Outcome::Permanent(e.to_string()),
            plan::NoRoom::Disk { .. } => Outcome::DiskFull(e.to_string()),
        })
    }

    /// Why downloads must wait, if the download disk is below the free-space reserve.
    pub(super) fn below_reserve(&self, download_dir: &Path) -> Option<String> {
        below_reserve(free_space(download_dir)?, self.limits().min_free_space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_holds_downloads_only_below_it() {
        let mib = 1024 * 1024;
        assert_eq!(below_reserve(256 * mib, 256 * mib), None);
        assert_eq!(
            below_reserve(100 * mib + 5, 256 * mib).as_deref(),
            Some("100 MiB free, below the 256 MiB reserve (Settings, free-space reserve)")
        );
        assert_eq!(below_reserve(PIECE_SIZE, 0), None);
        assert_eq!(
            below_reserve(4096, 0).as_deref(),
            Some("4096 bytes free, less than one piece"),
            "a full disk holds downloads whatever the reserve"
        );
    }

    /// Large files are verified with direct reads (or, where refused, through the cache):
    /// the result must be the same, including the unaligned tail, and the shared
    /// descriptor's flags (other peers may be reading pieces through it) stay untouched.
    #[test]
    fn large_files_verify_the_same_read_past_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.part");
        let size = DROP_BEHIND_MIN_SIZE + 3 * PIECE_SIZE / 2 + 777;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(size).unwrap();
        let tail: Vec<u8> = (0..PIECE_SIZE + 777).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&tail, size - tail.len() as u64).unwrap();
        let mut hasher = FileHasher::default();
        hasher.update(&std::fs::read(&path).unwrap());
        let (_, root, _) = hasher.finish();
        let flags = || nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let before = flags();
        assert!(verify_whole(&file, size, &root).unwrap());
        assert_eq!(flags(), before, "the shared descriptor keeps its flags");
        file.write_all_at(&[1], size - 1).unwrap();
        assert!(
            !verify_whole(&file, size, &root).unwrap(),
            "a changed last byte"
        );
    }
}
