//! The bitfield wire form, as a partial holder sends it: accepted only with the exact byte
//! count and zero spare bits, so it has one encoding, which it writes back unchanged.
#![no_main]

use harddrive_party_core::content::Bitfield;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, Vec<u8>, u64, u64)| {
    let (pieces, bits, first, end) = input;
    let sent = bits.clone();
    let Ok(mut field) = Bitfield::from_bytes(pieces, bits) else {
        return;
    };
    assert_eq!(field.as_bytes(), sent);
    assert_eq!(field.len(), pieces);
    let held = field.count();
    assert!(held <= pieces);
    assert_eq!(field.complete(), held == pieces);
    assert_eq!(field.missing().count() as u64, pieces - held);
    assert!(!field.get(pieces) && !field.get(u64::MAX));
    if field.holds_all(first..end) {
        assert!(first < end && end <= pieces && (first..end).all(|p| field.get(p)));
    }
    field.set(pieces);
    field.clear(u64::MAX);
    assert_eq!(
        Bitfield::from_bytes(pieces, field.as_bytes().to_vec()),
        Ok(field)
    );
});
