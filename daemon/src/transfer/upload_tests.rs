//! Unit tests of `upload.rs`.

use super::*;

#[test]
fn checked_reads_pass_only_pieces_that_match_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.part");
    let size = 2 * PIECE_SIZE + 7;
    let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let hashes: Vec<Hash> = content
        .chunks(PIECE_SIZE as usize)
        .map(hash_piece)
        .collect();
    let mut on_disk = content.clone();
    on_disk[(PIECE_SIZE + 9) as usize] ^= 1;
    std::fs::write(&path, &on_disk).unwrap();
    let file = File::open(&path).unwrap();
    let range = OpenRange::pieces(Arc::new(file), size, 0, 1..3, Arc::new(hashes.clone()));
    assert_eq!((range.start, range.end), (PIECE_SIZE, size));
    let piece = PIECE_SIZE as usize;
    let first = read_chunk(&range.file, 0, piece, Some(&hashes))
        .ok()
        .unwrap();
    assert_eq!(first[..], content[..piece]);
    assert!(matches!(
        read_chunk(&range.file, PIECE_SIZE, piece, Some(&hashes)),
        Err(ReaderError::Corrupt(1))
    ));
    let last = read_chunk(&range.file, 2 * PIECE_SIZE, 7, Some(&hashes))
        .ok()
        .unwrap();
    assert_eq!(last[..], content[2 * piece..]);
    // Unchecked reads (shared files) pass what is there; a file that ends early is short.
    assert!(read_chunk(&range.file, PIECE_SIZE, piece, None).is_ok());
    assert!(matches!(
        read_chunk(&range.file, 2 * PIECE_SIZE, 8, None),
        Err(ReaderError::ShortFile)
    ));
}

#[tokio::test]
async fn slots_grow_at_once_and_shrink_as_holders_finish() {
    let slots = Arc::new(Semaphore::new(2));
    let held = slots.clone().acquire_many_owned(2).await.unwrap();
    resize(&slots, 2, 5);
    assert_eq!(slots.available_permits(), 3);
    // Down to 1 while 2 are held: the 3 free ones go now, one more when they come back.
    resize(&slots, 5, 1);
    assert_eq!(slots.available_permits(), 0);
    tokio::task::yield_now().await;
    drop(held);
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while slots.available_permits() != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the surplus permit is taken back");
    tokio::task::yield_now().await;
    assert_eq!(slots.available_permits(), 1);
}
