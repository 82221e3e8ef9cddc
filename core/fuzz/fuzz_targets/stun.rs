//! STUN answers, which anyone on the internet can send to the peer socket: decoding is
//! size-limited and never panics, the cheap transaction peek agrees with the full decode,
//! and a message that re-encodes decodes to the same encoding.
#![no_main]

use harddrive_party_core::stun::{self, MAX_STUN_MESSAGE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let peeked = stun::transaction_of(datagram);
    let Ok(message) = stun::decode(datagram) else {
        return;
    };
    assert!(datagram.len() <= MAX_STUN_MESSAGE);
    let transaction = message.transaction_id();
    assert_eq!(peeked, Some(*transaction.as_bytes()));
    let _ = stun::check_response(&message, transaction, message.method());
    if let Ok(seen) = stun::mapped_address(datagram, transaction) {
        assert_eq!(
            stun::classify(&[seen], &[seen]),
            harddrive_party_core::announce::NatType::None
        );
    }
    // stun_codec 0.4 writes methods from 0x010 up wrongly (it shifts their upper bits to
    // the wrong place); we only ever encode our own requests, whose methods are all below.
    if message.method().as_u16() >= 0x010 {
        return;
    }
    if let Ok(bytes) = stun::encode(message) {
        let again =
            stun::decode_with_limit(&bytes, usize::MAX).expect("an encoded message decodes");
        assert_eq!(stun::encode(again).ok(), Some(bytes));
    }
});
