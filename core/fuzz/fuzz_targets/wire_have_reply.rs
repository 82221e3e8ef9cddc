//! The answer to `Have`, as the requester decodes it; a partial holder's bitfield is read
//! for the piece count its size implies, as the swarm does.
#![no_main]

use harddrive_party_core::content::{piece_count, Bitfield};
use harddrive_party_core::wire::{HaveReply, MAX_RESPONSE_FRAME};
use harddrive_party_core_fuzz::wire_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let Some(HaveReply::Partial { size, pieces }) =
        wire_round_trip::<HaveReply>(payload, MAX_RESPONSE_FRAME)
    else {
        return;
    };
    let sent = pieces.clone();
    if let Ok(have) = Bitfield::from_bytes(piece_count(size), pieces) {
        assert_eq!(have.as_bytes(), sent);
        assert_eq!(
            HaveReply::partial(size, &have),
            HaveReply::Partial { size, pieces: sent }
        );
    }
});
