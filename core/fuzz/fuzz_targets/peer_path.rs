//! `peer/path` texts from the API (downloads, listings, reads): the split never loses or
//! invents a part, and the local path a download would get stays in the peer's folder.
#![no_main]

use harddrive_party_core::plan::split_peer_path;
use harddrive_party_core_fuzz::check_local_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(full) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((peer, path)) = split_peer_path(full) else {
        assert!(full.trim_matches('/').is_empty());
        return;
    };
    assert!(!peer.is_empty() && !peer.contains('/'));
    let rejoined = if path.is_empty() {
        peer.to_string()
    } else {
        format!("{peer}/{path}")
    };
    assert_eq!(rejoined, full.trim_matches('/'));
    check_local_path(peer, path);
});
