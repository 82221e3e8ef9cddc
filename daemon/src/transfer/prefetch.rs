//! The first bytes of a file its sharer has not hashed yet (PROTOCOL.md §10, step 3). A
//! sharer answers `Hashes` for such a file only after reading all of it: minutes for a film
//! on a NAS disk. So when the list is slow to come, the downloader meanwhile reads the file
//! from its start with `Read` into a new `.part`, hashing each whole piece as it lands. When
//! the list arrives the pieces whose hashes match it count as verified, and the swarm
//! fetches the rest. Nothing read ahead is offered to other peers or kept past a mismatch:
//! until the list has vouched for a piece it is just bytes in the `.part`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::job::FileProgress;
use super::rate::{Direction, RateLimiter};
use crate::content::{hash_piece, piece_count, piece_len, Bitfield, Hash};
use crate::net::rpc;

/// How long the piece list may take before the file is read ahead: a hashed file's list
/// comes back at once, so only a file its sharer must read first waits this long.
pub(super) const READ_AHEAD_AFTER: Duration = Duration::from_millis(300);

/// Hashes of the whole pieces read ahead, in order from the file's start.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    hashes: Vec<Hash>,
}

impl ReadAhead {
    /// The pieces read ahead that match the sharer's list, as the bitfield the `.part`
    /// opens with; `None` if nothing was read.
    pub(super) fn verified(&self, size: u64, list: &[Hash]) -> Option<Bitfield> {
        if self.hashes.is_empty() {
            return None;
        }
        let mut have = Bitfield::new(piece_count(size));
        for (piece, (read, listed)) in self.hashes.iter().zip(list).enumerate() {
            if read == listed {
                have.set(piece as u64);
            }
        }
        Some(have)
    }
}

/// What the reading ahead needs of the fetch.
pub(super) struct Target<'a> {
    pub connection: &'a quinn::Connection,
    pub peer: &'a str,
    pub path: &'a str,
    pub size: u64,
    pub part: &'a Path,
}

/// Reads `target` from its start into a new `.part` (truncated first: call only when none
/// exists), paced by the download limits, until the file ends, a read fails or `stop` is
/// notified. Each whole piece is hashed and written before the next is read, so on return
/// every hash in `into` is of bytes on disk; a piece cut short is simply not counted.
pub(super) async fn read_ahead(
    target: Target<'_>,
    rate: &RateLimiter,
    progress: &FileProgress,
    stop: &Notify,
    into: &mut ReadAhead,
) {
    let opened = tokio::select! {
        biased;
        () = stop.notified() => return,
        opened = rpc::read(target.connection, target.path, 0, None) => opened,
    };
    let Ok((size, _, mut body)) = opened else {
        return;
    };
    let file = match create_part(target.part) {
        Ok(file) if size == target.size => Arc::new(file),
        _ => return,
    };
    let mut piece = Vec::new();
    while (into.hashes.len() as u64) < piece_count(size) {
        let index = into.hashes.len() as u64;
        let want = piece_len(size, index) as usize - piece.len();
        let chunk = tokio::select! {
            biased;
            () = stop.notified() => return,
            chunk = async {
                let chunk = body.read_chunk(want, true).await;
                if let Ok(Some(c)) = &chunk {
                    rate.pace(target.peer, Direction::Download, c.bytes.len() as u64).await;
                }
                chunk
            } => chunk,
        };
        let Ok(Some(chunk)) = chunk else {
            return;
        };
        progress
            .received
            .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
        piece.extend_from_slice(&chunk.bytes);
        if piece.len() as u64 == piece_len(size, index) {
            // Not cancellable: a write must not land after the swarm has the file.
            let (file, bytes) = (file.clone(), std::mem::take(&mut piece));
            let written = tokio::task::spawn_blocking(move || {
                file.write_all_at(&bytes, index * crate::content::PIECE_SIZE)
                    .map(|()| hash_piece(&bytes))
            })
            .await;
            match written {
                Ok(Ok(hash)) => into.hashes.push(hash),
                _ => return,
            }
        }
    }
}

fn create_part(part: &Path) -> std::io::Result<File> {
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::PIECE_SIZE;

    #[test]
    fn only_pieces_matching_the_list_count_as_verified() {
        let size = 3 * PIECE_SIZE + 10;
        let list = [[1; 32], [2; 32], [3; 32], [4; 32]];
        assert_eq!(ReadAhead::default().verified(size, &list), None);
        // Two whole pieces read ahead; the second was corrupted on the way.
        let read = ReadAhead {
            hashes: vec![[1; 32], [9; 32]],
        };
        let have = read.verified(size, &list).unwrap();
        assert_eq!(have.len(), 4);
        assert!(have.get(0));
        assert!(!have.get(1) && !have.get(2) && !have.get(3));
        // More hashes than the list (a list for another size) verify nothing past it.
        let read = ReadAhead {
            hashes: vec![[1; 32], [2; 32]],
        };
        let have = read.verified(PIECE_SIZE, &list[..1]).unwrap();
        assert_eq!(have.len(), 1);
        assert!(have.get(0));
    }
}
