//! Announce addresses `Name.CODE`, pasted by users and gossiped by peers: the text form and
//! the binary payload inside it (also carried in invite codes). Either version is read;
//! whatever is accepted re-encodes (as version 2) to the same address.
#![no_main]

use harddrive_party_core::announce::AnnounceAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(address) = AnnounceAddress::from_payload(data) {
        let payload = address.to_payload();
        assert_eq!(
            AnnounceAddress::from_payload(&payload).as_ref(),
            Ok(&address)
        );
        assert_eq!(address.to_string().parse::<AnnounceAddress>(), Ok(address));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = text.parse::<AnnounceAddress>() {
        let written = address.to_string();
        assert!(text.trim().starts_with(&address.name()));
        assert_eq!(written.parse::<AnnounceAddress>(), Ok(address));
    }
});
