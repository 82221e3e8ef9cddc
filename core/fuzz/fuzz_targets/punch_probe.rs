//! Hole-punching probes, which anyone can send to the peer socket: only the exact format is
//! accepted, and it encodes back to the same bytes.
#![no_main]

use harddrive_party_core::punch::{is_control, PunchProbe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    if let Some(probe) = PunchProbe::decode(datagram) {
        assert_eq!(probe.encode().as_slice(), datagram);
        assert!(is_control(datagram));
    }
});
