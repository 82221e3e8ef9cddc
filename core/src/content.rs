//! Content identity: BLAKE3 over fixed-size pieces, and a root hash that commits to the
//! file size and the whole piece list (see PROTOCOL.md, "Content hashes"). Pure functions
//! and plain structs, tested without I/O.

use serde::{Deserialize, Serialize};

/// 1 MiB: 32 bytes of hash list per MiB of file (6.25 MiB for a 200 GiB file).
pub const PIECE_SIZE: u64 = 1024 * 1024;
const ROOT_CONTEXT: &str = "harddrive-party 2026 piece-list root v1";

pub type Hash = [u8; 32];

pub fn piece_count(size: u64) -> u64 {
    size.div_ceil(PIECE_SIZE)
}

/// Length of piece `index` of a file of `size` bytes (the last one may be short).
pub fn piece_len(size: u64, index: u64) -> u64 {
    size.saturating_sub(index * PIECE_SIZE).min(PIECE_SIZE)
}

pub fn hash_piece(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

/// The root: a keyed BLAKE3 of the size and every piece hash in order. Knowing the root,
/// a downloader can check a piece list from anyone, then each piece against its entry.
pub fn root_of(size: u64, piece_hashes: &[Hash]) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(ROOT_CONTEXT);
    hasher.update(&size.to_le_bytes());
    for h in piece_hashes {
        hasher.update(h);
    }
    *hasher.finalize().as_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("piece list has {got} entries, a {size}-byte file has {expected}")]
    WrongLength { size: u64, expected: u64, got: u64 },
    #[error("piece list does not match the root hash")]
    RootMismatch,
    #[error("more piece hashes than a {size}-byte file has")]
    TooMany { size: u64 },
    #[error("a chunk of {len} piece hashes, more than a chunk may hold")]
    ChunkTooLarge { len: usize },
    #[error("{size} bytes is larger than the largest file a download accepts (1 TiB)")]
    TooLarge { size: u64 },
}

/// The largest file a download accepts: its piece list is then at most 32 MiB (32 bytes per
/// 1 MiB piece) held in memory, and a partial copy of it can still be offered to others
/// (`MAX_PARTIAL_PIECES`). A sharer claiming more is refused before its list is read.
pub const MAX_DOWNLOAD_SIZE: u64 = crate::wire::MAX_PARTIAL_PIECES * PIECE_SIZE;

/// Accepts a piece list only if it has the right length and hashes to `root`.
pub fn check_list(size: u64, root: &Hash, piece_hashes: &[Hash]) -> Result<(), ListError> {
    let expected = piece_count(size);
    if piece_hashes.len() as u64 != expected {
        return Err(ListError::WrongLength {
            size,
            expected,
            got: piece_hashes.len() as u64,
        });
    }
    if root_of(size, piece_hashes) != *root {
        return Err(ListError::RootMismatch);
    }
    Ok(())
}

/// A piece list as it arrives in chunks from a peer, for a file the peer says has `size`
/// bytes and `root`. A peer sending more hashes than that size allows is refused at the
/// chunk that overflows; the whole list is checked against the root at the end.
#[derive(Debug)]
pub struct PieceList {
    size: u64,
    root: Hash,
    pieces: Vec<Hash>,
}

/// Hashes reserved up front, whatever size a peer claims (32 MiB).
const PRESIZED_PIECES: u64 = 1 << 20;

impl PieceList {
    /// An empty list for a file of `size` bytes, refused above `MAX_DOWNLOAD_SIZE`.
    pub fn new(size: u64, root: Hash) -> Result<Self, ListError> {
        if size > MAX_DOWNLOAD_SIZE {
            return Err(ListError::TooLarge { size });
        }
        Ok(Self {
            size,
            root,
            pieces: Vec::with_capacity(piece_count(size).min(PRESIZED_PIECES) as usize),
        })
    }

    pub fn extend(&mut self, chunk: Vec<Hash>) -> Result<(), ListError> {
        if chunk.len() > crate::wire::MAX_HASHES_PER_CHUNK {
            return Err(ListError::ChunkTooLarge { len: chunk.len() });
        }
        if self.pieces.len() as u64 + chunk.len() as u64 > piece_count(self.size) {
            return Err(ListError::TooMany { size: self.size });
        }
        self.pieces.extend(chunk);
        Ok(())
    }

    /// The piece hashes, if they are all there and hash to the root.
    pub fn finish(self) -> Result<Vec<Hash>, ListError> {
        check_list(self.size, &self.root, &self.pieces)?;
        Ok(self.pieces)
    }
}

/// Hashes a whole file's contents piece by piece as they are fed in, in order.
#[derive(Default)]
pub struct FileHasher {
    current: blake3::Hasher,
    in_piece: u64,
    size: u64,
    pieces: Vec<Hash>,
}

impl FileHasher {
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = (PIECE_SIZE - self.in_piece) as usize;
            let take = room.min(bytes.len());
            self.current.update(&bytes[..take]);
            self.in_piece += take as u64;
            self.size += take as u64;
            bytes = &bytes[take..];
            if self.in_piece == PIECE_SIZE {
                self.pieces.push(*self.current.finalize().as_bytes());
                self.current.reset();
                self.in_piece = 0;
            }
        }
    }

    /// Returns (size, root, piece hashes).
    pub fn finish(mut self) -> (u64, Hash, Vec<Hash>) {
        if self.in_piece > 0 {
            self.pieces.push(*self.current.finalize().as_bytes());
        }
        (self.size, root_of(self.size, &self.pieces), self.pieces)
    }
}

/// Which pieces of a file are present and verified.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u64,
}

impl Bitfield {
    pub fn new(len: u64) -> Self {
        Self {
            bits: vec![0; len.div_ceil(8) as usize],
            len,
        }
    }

    /// `len` pieces of which those in `held` are set.
    pub fn with_pieces(len: u64, held: impl IntoIterator<Item = u64>) -> Self {
        let mut bitfield = Self::new(len);
        for piece in held {
            bitfield.set(piece);
        }
        bitfield
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    pub fn set(&mut self, i: u64) {
        if i < self.len {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    pub fn clear(&mut self, i: u64) {
        if i < self.len {
            self.bits[(i / 8) as usize] &= !(1 << (i % 8));
        }
    }

    pub fn count(&self) -> u64 {
        self.bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    pub fn complete(&self) -> bool {
        self.count() == self.len
    }

    pub fn missing(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len).filter(|i| !self.get(*i))
    }

    /// Whether every piece in `pieces` is present (an empty or out-of-range span is not).
    pub fn holds_all(&self, pieces: std::ops::Range<u64>) -> bool {
        !pieces.is_empty() && pieces.end <= self.len && pieces.into_iter().all(|p| self.get(p))
    }

    /// The wire form: bit `i` is bit `i % 8` (least significant first) of byte `i / 8`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Reads the wire form for a file of `len` pieces. The byte count must be exact and the
    /// spare bits of the last byte zero, so every bitfield has exactly one encoding.
    pub fn from_bytes(len: u64, bits: Vec<u8>) -> Result<Self, BitfieldError> {
        let expected = len.div_ceil(8);
        if bits.len() as u64 != expected {
            return Err(BitfieldError::WrongLength {
                pieces: len,
                expected,
                got: bits.len() as u64,
            });
        }
        let spare = (len % 8) as u32;
        if spare != 0 && bits.last().is_some_and(|b| b >> spare != 0) {
            return Err(BitfieldError::SpareBits);
        }
        Ok(Self { bits, len })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    #[error("bitfield for {pieces} pieces has {got} bytes, expected {expected}")]
    WrongLength {
        pieces: u64,
        expected: u64,
        got: u64,
    },
    #[error("bitfield sets bits past the last piece")]
    SpareBits,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn pieces_cover_the_file_exactly() {
        assert_eq!(piece_count(0), 0);
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(PIECE_SIZE), 1);
        assert_eq!(piece_count(PIECE_SIZE + 1), 2);
        assert_eq!(piece_len(PIECE_SIZE + 1, 1), 1);
        assert_eq!(piece_len(PIECE_SIZE * 3, 2), PIECE_SIZE);
    }

    #[test]
    fn streaming_hasher_matches_piecewise_hashing_in_any_chunking() {
        let bytes = data((PIECE_SIZE * 2 + 12345) as usize);
        let expected: Vec<Hash> = bytes.chunks(PIECE_SIZE as usize).map(hash_piece).collect();
        for chunk in [1usize, 4096, 1_000_003, bytes.len()] {
            let mut h = FileHasher::default();
            for part in bytes.chunks(chunk) {
                h.update(part);
            }
            let (size, root, pieces) = h.finish();
            assert_eq!(size, bytes.len() as u64);
            assert_eq!(pieces, expected);
            assert_eq!(root, root_of(size, &expected));
        }
    }

    #[test]
    fn a_list_that_does_not_match_the_root_is_rejected() {
        let bytes = data((PIECE_SIZE * 3) as usize);
        let mut h = FileHasher::default();
        h.update(&bytes);
        let (size, root, mut pieces) = h.finish();
        assert_eq!(check_list(size, &root, &pieces), Ok(()));
        assert!(matches!(
            check_list(size - 1, &root, &pieces),
            Err(ListError::RootMismatch)
        ));
        assert!(matches!(
            check_list(size, &root, &pieces[..2]),
            Err(ListError::WrongLength { .. })
        ));
        pieces[1][0] ^= 1;
        assert_eq!(
            check_list(size, &root, &pieces),
            Err(ListError::RootMismatch)
        );
        // The empty file has a root too, and a different one from any other size.
        assert_ne!(root_of(0, &[]), root_of(1, &[]));
    }

    #[test]
    fn a_piece_list_arriving_in_chunks_is_bounded_by_its_size_and_checked_whole() {
        let size = PIECE_SIZE * 2 + 1;
        let hashes = vec![[1; 32], [2; 32], [3; 32]];
        let root = root_of(size, &hashes);
        let mut list = PieceList::new(size, root).unwrap();
        list.extend(hashes[..2].to_vec()).unwrap();
        list.extend(hashes[2..].to_vec()).unwrap();
        assert_eq!(list.finish(), Ok(hashes.clone()));
        let mut list = PieceList::new(size, root).unwrap();
        list.extend(hashes.clone()).unwrap();
        assert_eq!(list.extend(vec![[4; 32]]), Err(ListError::TooMany { size }));
        assert!(PieceList::new(MAX_DOWNLOAD_SIZE, root).is_ok());
        assert_eq!(
            PieceList::new(MAX_DOWNLOAD_SIZE + 1, root).err(),
            Some(ListError::TooLarge {
                size: MAX_DOWNLOAD_SIZE + 1
            })
        );
        let mut list = PieceList::new(MAX_DOWNLOAD_SIZE, root).unwrap();
        let oversized = vec![[0; 32]; crate::wire::MAX_HASHES_PER_CHUNK + 1];
        assert!(matches!(
            list.extend(oversized),
            Err(ListError::ChunkTooLarge { .. })
        ));
        let mut short = PieceList::new(size, root).unwrap();
        short.extend(hashes[..2].to_vec()).unwrap();
        assert!(matches!(short.finish(), Err(ListError::WrongLength { .. })));
        let mut forged = PieceList::new(size, [0; 32]).unwrap();
        forged.extend(hashes).unwrap();
        assert_eq!(forged.finish(), Err(ListError::RootMismatch));
    }

    #[test]
    fn bitfield_tracks_missing_pieces() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        b.set(42);
        assert_eq!(b.count(), 2);
        assert_eq!(b.missing().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 8]);
        b.clear(9);
        assert!(!b.get(9));
        for i in 0..10 {
            b.set(i);
        }
        assert!(b.complete());
    }

    #[test]
    fn bitfield_wire_form_round_trips_and_is_canonical() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), [0b0000_0001, 0b0000_0010]);
        assert_eq!(Bitfield::from_bytes(10, b.as_bytes().to_vec()), Ok(b));
        assert_eq!(Bitfield::from_bytes(0, Vec::new()), Ok(Bitfield::new(0)));
        assert!(matches!(
            Bitfield::from_bytes(10, vec![0]),
            Err(BitfieldError::WrongLength { expected: 2, .. })
        ));
        assert!(matches!(
            Bitfield::from_bytes(10, vec![0, 0, 0]),
            Err(BitfieldError::WrongLength { .. })
        ));
        // Bit 10 would be an eleventh piece of a ten-piece file.
        assert_eq!(
            Bitfield::from_bytes(10, vec![0, 0b0000_0100]),
            Err(BitfieldError::SpareBits)
        );
        assert!(Bitfield::from_bytes(16, vec![0xff, 0xff])
            .unwrap()
            .complete());
    }

    #[test]
    fn holds_all_needs_every_piece_of_a_nonempty_span() {
        let mut b = Bitfield::new(4);
        b.set(1);
        b.set(2);
        assert!(b.holds_all(1..3));
        assert!(!b.holds_all(0..2));
        assert!(!b.holds_all(2..2));
        assert!(!b.holds_all(2..5));
    }
}
