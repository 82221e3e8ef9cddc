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

mod over_a_pipe {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::wire::read_frame;
    use crate::wire::tests::{Ended, PipeReply};

    fn uploads() -> Uploads {
        let limits = UploadLimits {
            total: 2,
            per_peer: 1,
        };
        let rate = Arc::new(RateLimiter::new(Default::default()));
        Uploads::new(limits, rate, crate::events::channel())
    }

    /// Serves `range` to a requester that reads everything: the header, the body, and how
    /// the answer ended.
    async fn serve(range: Result<OpenRange, WireError>) -> (ReadHeader, Vec<u8>, Ended) {
        let (mut reply, mut requester) = PipeReply::new(64 * 1024);
        let reading = tokio::spawn(async move {
            let header: ReadHeader = read_frame(&mut requester, MAX_RESPONSE_FRAME)
                .await
                .unwrap();
            let mut body = Vec::new();
            requester.read_to_end(&mut body).await.unwrap();
            (header, body)
        });
        uploads()
            .serve("friend", 1, "Music/a.flac", range, &mut reply)
            .await;
        let ended = reply.ended.expect("the answer was ended");
        drop(reply); // the pipe's end: the requester reads to it
        let (header, body) = reading.await.unwrap();
        (header, body, ended)
    }

    #[tokio::test]
    async fn a_read_is_a_header_then_the_bytes_asked_for_then_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.flac");
        let content: Vec<u8> = (0..3 * READ_CHUNK + 11).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let range = OpenRange::open(&path, 5, Some(2 * READ_CHUNK as u64 + 9));
        let (header, body, ended) = serve(range).await;
        assert!(matches!(header, ReadHeader::Ok { size, .. } if size == content.len() as u64));
        assert_eq!(body, content[5..2 * READ_CHUNK + 9]);
        assert_eq!(ended, Ended::Finished);
    }

    #[tokio::test]
    async fn a_refused_read_is_its_error_and_the_end() {
        let (header, body, ended) = serve(Err(WireError::NotFound)).await;
        assert_eq!(header, ReadHeader::Error(WireError::NotFound));
        assert!(body.is_empty());
        assert_eq!(ended, Ended::Finished);
    }

    #[tokio::test]
    async fn a_piece_that_no_longer_matches_resets_the_answer_after_the_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.part");
        let size = 3 * PIECE_SIZE;
        let content: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        let hashes: Vec<Hash> = content
            .chunks(PIECE_SIZE as usize)
            .map(hash_piece)
            .collect();
        let mut on_disk = content.clone();
        on_disk[(2 * PIECE_SIZE + 3) as usize] ^= 1;
        std::fs::write(&path, &on_disk).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let range = OpenRange::pieces(file, size, 0, 0..3, Arc::new(hashes));
        let (_, body, ended) = serve(Ok(range)).await;
        assert_eq!(ended, Ended::Reset(RESET_IO_ERROR));
        assert_eq!(
            body,
            content[..2 * PIECE_SIZE as usize],
            "only the good pieces"
        );
    }
}
