//! A peer's certificate, the first thing a stranger sends: the key reader never panics,
//! and a key it returns is the one a certificate made for that key would carry.
#![no_main]

use harddrive_party_core::certificate::{ed25519_key_from_certificate, self_signed_certificate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    if let Some(key) = ed25519_key_from_certificate(der) {
        let ours = self_signed_certificate(&key, [1; 16], |_| [0; 64]);
        assert_eq!(ed25519_key_from_certificate(&ours), Some(key));
    }
});
