//! Peer-to-peer wire protocol: message types, limits, validation and the length-prefixed
//! bincode encoding of one frame. The async stream side (`read_frame`, `write_frame`) is the
//! daemon's `wire` module. PROTOCOL.md is the normative description; the limits below are
//! quoted there.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::content::Bitfield;

pub const ALPN: &[u8] = b"harddrive-party/1";

/// Largest request frame (one per stream).
pub const MAX_REQUEST_FRAME: usize = 16 * 1024;
/// Longest announce address text accepted in a request (a v2 code with two IPv6
/// addresses and the longest name is under 150 bytes).
pub const MAX_ANNOUNCE_BYTES: usize = 512;
/// Longest peer name in a request (names are adjective + animal + 6 hex digits).
pub const MAX_PEER_NAME_BYTES: usize = 64;
/// Largest response frame: one `Ls` chunk or a `Read`/`AnnouncePeer` header.
pub const MAX_RESPONSE_FRAME: usize = 256 * 1024;
/// An `Ls` chunk is flushed once it holds this many entries or bytes, well under the frame limit.
pub const LS_CHUNK_ENTRIES: usize = 512;
pub const LS_CHUNK_BYTES: usize = 64 * 1024;
pub const MAX_PATH_BYTES: usize = 4096;
pub const MAX_SEARCH_BYTES: usize = 256;
/// 4096 hashes are 128 KiB, well under the response frame limit.
pub const MAX_HASHES_PER_CHUNK: usize = 4096;
/// A `HaveReply::Partial` bitfield: 128 KiB describes 2^20 pieces (a 1 TiB file) and keeps
/// the reply well under the response frame limit. Larger partial files are not offered.
pub const MAX_BITFIELD_BYTES: usize = 128 * 1024;
pub const MAX_PARTIAL_PIECES: u64 = MAX_BITFIELD_BYTES as u64 * 8;

/// QUIC application error codes used to reset a `Read` stream mid-body.
pub const RESET_FILE_CHANGED: u32 = 1;
pub const RESET_IO_ERROR: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// List entries under `path` ("" lists the shares themselves).
    Ls {
        path: String,
        searchterm: Option<String>,
        recursive: bool,
    },
    /// Stream bytes `start..end` (end exclusive, `None` = to the end of the file).
    Read {
        path: String,
        start: u64,
        end: Option<u64>,
    },
    /// Tell the receiver how to reach a peer (ourselves included, right after connecting).
    AnnouncePeer { announce_address: String },
    /// Content hashes of a file: a [`HashesHeader`], then [`HashChunk`]s until FIN.
    Hashes { path: String },
    /// "Who has the file with this root hash?"
    Have { root: [u8; 32] },
    /// Stream pieces `first..end` (end exclusive) of the content with this root, from a
    /// peer that answered `HaveReply::Partial`. Answered like `Read`.
    ReadPieces {
        root: [u8; 32],
        first: u64,
        end: u64,
    },
    /// "Pass my own announce address to your connected peer `target` now": the target then
    /// dials (punches towards) us while we punch towards it (PROTOCOL.md §8.8).
    Introduce {
        target: String,
        announce_address: String,
    },
    /// "Make me a friend with your invite": the first request of a joiner that holds an
    /// invite code (PROTOCOL.md §8.10). `proof` is `invite::proof` over this connection's
    /// keying material; `announce_address` is the joiner's own, so the inviter can redial
    /// it. Appended, so older variants keep their encoding.
    Join {
        invite_id: [u8; 8],
        proof: [u8; 32],
        announce_address: String,
    },
    /// "I have hashed new content: ask me `Have` again." A push with no answer (the
    /// receiver just finishes the stream); names nothing, so it reveals nothing a later
    /// `Have` would not. Appended; a peer built before it resets the stream as malformed.
    Hashed,
}

/// Answer to `Join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinReply {
    /// The joiner is a friend now; the connection carries on as a friend's.
    Welcome,
    Refused(crate::invite::InviteRefusal),
}

/// Answer to `Hashes`; on success the piece hashes follow in chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashesHeader {
    Ok {
        size: u64,
        mtime: u64,
        root: [u8; 32],
    },
    Error(WireError),
}

/// Up to [`MAX_HASHES_PER_CHUNK`] consecutive piece hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashChunk(pub Vec<[u8; 32]>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaveReply {
    /// The path on the answering peer holding that content, and its size.
    Found {
        path: String,
        size: u64,
    },
    NotFound,
    /// The answering peer is still downloading that content: `pieces` is the bitfield of
    /// the pieces it holds verified ([`Bitfield::as_bytes`]), readable with `ReadPieces`.
    Partial {
        size: u64,
        pieces: Vec<u8>,
    },
    /// The request was refused (`NotAFriend`). Appended, so older variants keep their
    /// encoding.
    Refused(WireError),
}

impl HaveReply {
    /// A partial holder's answer; `NotFound` when the file has more pieces than a bitfield
    /// may describe.
    pub fn partial(size: u64, have: &Bitfield) -> Self {
        if have.as_bytes().len() > MAX_BITFIELD_BYTES {
            return HaveReply::NotFound;
        }
        HaveReply::Partial {
            size,
            pieces: have.as_bytes().to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `share/dir/file`, always '/'-separated.
    pub path: String,
    /// For directories: the cumulative size of everything beneath.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
    pub is_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    #[error("no such file or directory")]
    NotFound,
    #[error("path is outside the shared directories")]
    Forbidden,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("read error on the sharing peer: {0}")]
    Io(String),
    #[error("the sharing peer does not hold all of those pieces (yet)")]
    NotHeld,
    /// Every request from a peer that is not a friend gets this, and nothing else: no share
    /// name, no hint of what is shared. Appended, so older variants keep their encoding.
    #[error("not a friend: the peer has to approve this node first (or invite it)")]
    NotAFriend,
}

/// Sent repeatedly in answer to `Ls`; the stream's clean end (FIN) marks the listing complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LsChunk {
    Entries(Vec<Entry>),
    Error(WireError),
}

/// Sent once in answer to `Read`; on success the raw file bytes follow until FIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadHeader {
    Ok { size: u64, mtime: u64 },
    Error(WireError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnnounceReply {
    Ok,
    Error(WireError),
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("stream ended")]
    Eof,
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// The limit caps what a decoder may allocate from a length prefix inside the payload: no
/// frame is larger, and without it a string or byte vector claiming 2^60 bytes in a 10-byte
/// request made bincode allocate (and panic on) that much before noticing the data ends.
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RESPONSE_FRAME>()
}

/// Encodes `message` as a 4-byte big-endian length followed by its bincode payload.
pub fn encode_frame<T: Serialize>(message: &T, limit: usize) -> Result<Vec<u8>, FrameError> {
    let payload = bincode::serde::encode_to_vec(message, bincode_config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if payload.len() > limit {
        return Err(FrameError::TooLarge {
            len: payload.len(),
            limit,
        });
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// The payload length a frame's 4-byte prefix announces, refused above `limit` so a hostile
/// prefix is caught before anything is allocated.
pub fn payload_len(prefix: [u8; 4], limit: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(len)
}

/// Decodes one payload; trailing bytes inside the frame are an error, not ignored.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (value, used) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(value)
}

impl Request {
    /// Field limits beyond the frame limit, checked by the receiver before acting.
    pub fn validate(&self) -> Result<(), WireError> {
        let too_long = |what: &str, s: &str, max: usize| {
            (s.len() > max)
                .then(|| WireError::BadRequest(format!("{what} longer than {max} bytes")))
        };
        let problem = match self {
            Request::Ls {
                path, searchterm, ..
            } => too_long("path", path, MAX_PATH_BYTES).or_else(|| {
                searchterm
                    .as_deref()
                    .and_then(|s| too_long("search term", s, MAX_SEARCH_BYTES))
            }),
            Request::Read { path, start, end } => {
                too_long("path", path, MAX_PATH_BYTES).or_else(|| {
                    end.filter(|end| end < start)
                        .map(|_| WireError::BadRequest("read range ends before it starts".into()))
                })
            }
            Request::Hashes { path } => too_long("path", path, MAX_PATH_BYTES),
            Request::Have { .. } | Request::Hashed => None,
            Request::ReadPieces { first, end, .. } => (end <= first)
                .then(|| WireError::BadRequest("empty piece range".into()))
                .or_else(|| {
                    (*end > MAX_PARTIAL_PIECES).then(|| {
                        WireError::BadRequest(format!(
                            "piece range beyond {MAX_PARTIAL_PIECES} pieces"
                        ))
                    })
                }),
            Request::AnnouncePeer { announce_address } => {
                too_long("announce address", announce_address, MAX_ANNOUNCE_BYTES)
            }
            Request::Introduce {
                target,
                announce_address,
            } => too_long("peer name", target, MAX_PEER_NAME_BYTES)
                .or_else(|| too_long("announce address", announce_address, MAX_ANNOUNCE_BYTES)),
            Request::Join {
                announce_address, ..
            } => too_long("announce address", announce_address, MAX_ANNOUNCE_BYTES),
        };
        problem.map_or(Ok(()), Err)
    }
}

/// Splits a request path into components, refusing absolute paths, `.`/`..` and empty parts.
/// "" (or "/"-free empty) means the root listing of all shares. The sharer's single gate for
/// request paths, before anything touches the disk.
pub fn split_request_path(path: &str) -> Result<Vec<&str>, WireError> {
    if path.starts_with('/') {
        return Err(WireError::Forbidden);
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(WireError::Forbidden);
    }
    Ok(parts)
}

/// Splits entries into chunks that each stay well below `MAX_RESPONSE_FRAME`.
#[derive(Default)]
pub struct LsChunker {
    entries: Vec<Entry>,
    bytes: usize,
}

impl LsChunker {
    /// Adds an entry; returns a full chunk when one is ready to send.
    pub fn push(&mut self, entry: Entry) -> Option<Vec<Entry>> {
        self.bytes += entry.path.len() + 24;
        self.entries.push(entry);
        (self.entries.len() >= LS_CHUNK_ENTRIES || self.bytes >= LS_CHUNK_BYTES)
            .then(|| self.take())
    }

    pub fn take(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_inside_a_frame_are_refused() {
        let mut payload =
            bincode::serde::encode_to_vec(ReadHeader::Ok { size: 1, mtime: 2 }, bincode_config())
                .unwrap();
        payload.push(0);
        assert!(decode_payload::<ReadHeader>(&payload).is_err());
    }

    /// Found by the `wire_request` and `frame` fuzz targets (core/fuzz): a string length
    /// prefix far beyond the payload.
    #[test]
    fn huge_length_claims_are_refused_without_allocating() {
        let crash = [
            0, 253, 85, 96, 85, 1, 4, 170, 7, 170, 159, 170, 1, 4, 170, 2, 3, 4, 5, 2, 3, 4, 170,
        ];
        assert!(matches!(
            decode_payload::<Request>(&crash),
            Err(FrameError::Malformed(_))
        ));
        // A listing entry's path claiming 1 GiB inside a small chunk.
        let mut chunk = vec![0, 1, 0xfc];
        chunk.extend(0x4000_0000u32.to_le_bytes());
        chunk.extend(b"Music");
        assert!(matches!(
            decode_payload::<LsChunk>(&chunk),
            Err(FrameError::Malformed(_))
        ));
        let bad_request = [1, 2, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(decode_payload::<ReadHeader>(&bad_request).is_err());
    }

    #[test]
    fn the_hashed_push_round_trips_and_keeps_the_older_indices() {
        let frame = encode_frame(&Request::Hashed, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(frame, [0, 0, 0, 1, 8]);
        assert_eq!(
            decode_payload::<Request>(&frame[4..]).unwrap(),
            Request::Hashed
        );
        let have = encode_frame(&Request::Have { root: [0x11; 32] }, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(have[4], 4);
        assert_eq!(Request::Hashed.validate(), Ok(()));
    }

    #[test]
    fn encoding_respects_the_limit() {
        let big = Request::Ls {
            path: "x".repeat(MAX_REQUEST_FRAME),
            searchterm: None,
            recursive: true,
        };
        assert!(matches!(
            encode_frame(&big, MAX_REQUEST_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn validation_limits_fields() {
        assert!(Request::Read {
            path: "a".into(),
            start: 9,
            end: Some(3)
        }
        .validate()
        .is_err());
        assert!(Request::Ls {
            path: "a".into(),
            searchterm: Some("s".repeat(300)),
            recursive: false
        }
        .validate()
        .is_err());
        assert!(Request::Read {
            path: "a".into(),
            start: 0,
            end: None
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn piece_reads_need_a_nonempty_range_within_the_partial_limit() {
        let read = |first, end| Request::ReadPieces {
            root: [7; 32],
            first,
            end,
        };
        assert!(read(0, 1).validate().is_ok());
        assert!(read(3, 3).validate().is_err());
        assert!(read(4, 3).validate().is_err());
        assert!(read(0, MAX_PARTIAL_PIECES).validate().is_ok());
        assert!(read(0, MAX_PARTIAL_PIECES + 1).validate().is_err());
        assert!(read(u64::MAX - 1, u64::MAX).validate().is_err());
    }

    #[test]
    fn partial_have_replies_fit_the_frame_up_to_the_limit_and_no_further() {
        let mut have = Bitfield::new(MAX_PARTIAL_PIECES);
        have.set(MAX_PARTIAL_PIECES - 1);
        let reply = HaveReply::partial(MAX_PARTIAL_PIECES * crate::content::PIECE_SIZE, &have);
        let frame = encode_frame(&reply, MAX_RESPONSE_FRAME).expect("the largest bitfield fits");
        let back: HaveReply = decode_payload(&frame[4..]).unwrap();
        assert_eq!(back, reply);
        let too_many = Bitfield::new(MAX_PARTIAL_PIECES + 1);
        assert_eq!(HaveReply::partial(u64::MAX, &too_many), HaveReply::NotFound);
    }

    #[test]
    fn new_messages_have_the_documented_encoding() {
        let read = Request::ReadPieces {
            root: [0x11; 32],
            first: 2,
            end: 300,
        };
        let frame = encode_frame(&read, MAX_REQUEST_FRAME).unwrap();
        let mut expected = vec![0, 0, 0, 0x25, 5];
        expected.extend([0x11; 32]);
        expected.extend([2, 0xfb, 0x2c, 0x01]);
        assert_eq!(frame, expected);
        let mut have = Bitfield::new(10);
        have.set(0);
        have.set(9);
        let frame =
            encode_frame(&HaveReply::partial(10_000_000, &have), MAX_RESPONSE_FRAME).unwrap();
        assert_eq!(
            frame,
            [0, 0, 0, 9, 2, 0xfc, 0x80, 0x96, 0x98, 0x00, 2, 0x01, 0x02]
        );
        let frame =
            encode_frame(&ReadHeader::Error(WireError::NotHeld), MAX_RESPONSE_FRAME).unwrap();
        assert_eq!(frame, [0, 0, 0, 2, 1, 4]);
        let frame =
            encode_frame(&LsChunk::Error(WireError::NotAFriend), MAX_RESPONSE_FRAME).unwrap();
        assert_eq!(frame, [0, 0, 0, 2, 1, 5]);
        let join = Request::Join {
            invite_id: [0xaa; 8],
            proof: [0xbb; 32],
            announce_address: "A.b".into(),
        };
        let frame = encode_frame(&join, MAX_REQUEST_FRAME).unwrap();
        let mut expected = vec![0, 0, 0, 45, 7];
        expected.extend([0xaa; 8]);
        expected.extend([0xbb; 32]);
        expected.extend([3, b'A', b'.', b'b']);
        assert_eq!(frame, expected);
        let refused = JoinReply::Refused(crate::invite::InviteRefusal::UsedUp);
        assert_eq!(
            encode_frame(&refused, MAX_RESPONSE_FRAME).unwrap(),
            [0, 0, 0, 2, 1, 1]
        );
        assert_eq!(
            encode_frame(&JoinReply::Welcome, MAX_RESPONSE_FRAME).unwrap(),
            [0, 0, 0, 1, 0]
        );
        assert!(Request::Join {
            invite_id: [0; 8],
            proof: [0; 32],
            announce_address: "x".repeat(MAX_ANNOUNCE_BYTES + 1),
        }
        .validate()
        .is_err());
    }

    #[test]
    fn request_paths_refuse_traversal() {
        assert_eq!(split_request_path("").unwrap(), Vec::<&str>::new());
        assert_eq!(split_request_path("a/b/").unwrap(), ["a", "b"]);
        for bad in ["/etc/passwd", "a/../b", "..", "a//b", "./a", "a/\0"] {
            assert_eq!(
                split_request_path(bad),
                Err(WireError::Forbidden),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn chunker_bounds_chunks_by_count_and_bytes() {
        let mut chunker = LsChunker::default();
        let mut chunks = Vec::new();
        for i in 0..2000 {
            let entry = Entry {
                path: format!("s/{i}"),
                size: 1,
                mtime: 0,
                is_dir: false,
            };
            if let Some(chunk) = chunker.push(entry) {
                chunks.push(chunk);
            }
        }
        chunks.push(chunker.take());
        assert!(chunks.iter().all(|c| c.len() <= LS_CHUNK_ENTRIES));
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 2000);
        let long = Entry {
            path: "p".repeat(MAX_PATH_BYTES),
            size: 1,
            mtime: 0,
            is_dir: false,
        };
        let mut chunker = LsChunker::default();
        let mut flushed = None;
        for _ in 0..20 {
            flushed = flushed.or(chunker.push(long.clone()));
        }
        let chunk = flushed.expect("byte bound flushes early");
        assert!(encode_frame(&LsChunk::Entries(chunk), MAX_RESPONSE_FRAME).is_ok());
    }
}
