//! A piece list as a sharer sends it: a claimed size and root, then chunks of hashes. The
//! list is accepted only whole, of the right length and hashing to the root; a list built
//! from the true root of the hashes sent is always accepted; a size above the maximum is
//! refused before anything is held.
#![no_main]

use harddrive_party_core::content::{
    piece_count, root_of, Hash, ListError, PieceList, MAX_DOWNLOAD_SIZE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, Option<Hash>, Vec<Vec<Hash>>)| {
    let (size, claimed_root, chunks) = input;
    let sent: Vec<Hash> = chunks.iter().flatten().copied().collect();
    let root = claimed_root.unwrap_or_else(|| root_of(size, &sent));
    let mut list = match PieceList::new(size, root) {
        Ok(list) => list,
        Err(refused) => {
            assert!(size > MAX_DOWNLOAD_SIZE, "{size} refused: {refused}");
            return;
        }
    };
    for chunk in chunks {
        if let Err(refused) = list.extend(chunk) {
            assert!(matches!(
                refused,
                ListError::TooMany { .. } | ListError::ChunkTooLarge { .. }
            ));
            return;
        }
    }
    match list.finish() {
        Ok(pieces) => {
            assert_eq!(pieces, sent);
            assert_eq!(pieces.len() as u64, piece_count(size));
            assert_eq!(root_of(size, &pieces), root);
        }
        Err(ListError::WrongLength { .. }) => assert_ne!(sent.len() as u64, piece_count(size)),
        Err(refused) => assert!(claimed_root.is_some(), "the true root refused: {refused}"),
    }
});
