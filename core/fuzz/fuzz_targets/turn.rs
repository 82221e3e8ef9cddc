//! What a TURN relay server (or anyone spoofing it) sends: relayed data indications and
//! answers to our requests. A data indication carries a peer and a payload smaller than
//! the datagram; answers yield a challenge or an allocation or a clear error.
#![no_main]

use harddrive_party_core::turn::{
    allocation_of, challenge_of, parse_incoming, Incoming, MAX_RELAY_MESSAGE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    match parse_incoming(datagram) {
        Ok(Incoming::Data {
            datagram: inner, ..
        }) => {
            assert!(datagram.len() <= MAX_RELAY_MESSAGE);
            assert!(inner.len() < datagram.len());
        }
        Ok(Incoming::Response(message)) => {
            let _ = challenge_of(&message);
            if let Ok(allocation) = allocation_of(&message) {
                assert!(allocation.relayed.ip().is_ipv4() || allocation.relayed.ip().is_ipv6());
            }
        }
        Err(_) => {}
    }
});
