//! The framing: a stream of length-prefixed frames as a sharer reads requests off one
//! stream, prefix by prefix. A hostile prefix is refused before any allocation; each frame
//! that decodes round-trips.
#![no_main]

use harddrive_party_core::wire::{payload_len, FrameError, Request, MAX_REQUEST_FRAME};
use harddrive_party_core_fuzz::wire_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|stream: &[u8]| {
    let mut rest = stream;
    while let Some((prefix, after)) = rest.split_first_chunk::<4>() {
        let len = match payload_len(*prefix, MAX_REQUEST_FRAME) {
            Ok(len) => len,
            Err(FrameError::TooLarge { len, limit }) => {
                assert!(len > limit);
                return;
            }
            Err(other) => panic!("a length prefix fails only by size: {other}"),
        };
        if after.len() < len {
            return;
        }
        let (payload, next) = after.split_at(len);
        wire_round_trip::<Request>(payload, MAX_REQUEST_FRAME);
        rest = next;
    }
});
