//! The invariants the fuzz targets share: wire messages survive a round trip through their
//! encoding, and a path that a decoder accepts never leaves where it is meant to stay. Each
//! target under `fuzz_targets/` feeds one decoder and calls these.

use std::fmt::Debug;
use std::path::{Component, Path};

use harddrive_party_core::plan::local_path;
use harddrive_party_core::wire::{decode_payload, encode_frame, payload_len, split_request_path};
use serde::{de::DeserializeOwned, Serialize};

/// Decodes `payload` as one `T` the way a receiver does (frames over `limit` never reach
/// the decoder), and checks that what was accepted re-encodes within the limit into a frame
/// that decodes to the same value: encode(decode(bytes)) re-decodes equal, so
/// decode(encode(x)) == x for every x a peer can send.
pub fn wire_round_trip<T>(payload: &[u8], limit: usize) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    if payload.len() > limit {
        return None;
    }
    let decoded: T = decode_payload(payload).ok()?;
    let frame = encode_frame(&decoded, limit).expect("an accepted message re-encodes");
    let prefix: [u8; 4] = frame[..4]
        .try_into()
        .expect("a frame starts with its length");
    assert_eq!(payload_len(prefix, limit).ok(), Some(frame.len() - 4));
    assert!(
        frame.len() - 4 <= payload.len(),
        "re-encoding grew the message"
    );
    let again: T = decode_payload(&frame[4..]).expect("a re-encoded message decodes");
    assert_eq!(again, decoded);
    Some(decoded)
}

/// A request path the sharer accepts names only plain components below a share root.
pub fn check_request_path(path: &str) {
    let Ok(parts) = split_request_path(path) else {
        return;
    };
    assert!(!path.starts_with('/'), "absolute path accepted: {path:?}");
    for part in &parts {
        assert!(
            !part.is_empty() && *part != "." && *part != ".." && !part.contains(['/', '\0']),
            "component {part:?} of {path:?} accepted"
        );
    }
    let joined = parts.join("/");
    assert_eq!(joined, path.trim_end_matches('/'));
    assert_eq!(split_request_path(&joined).ok(), Some(parts));
}

/// A remote path the downloader accepts lands strictly inside `<download dir>/<peer>`.
pub fn check_local_path(peer: &str, remote: &str) {
    let download_dir = Path::new("/downloads");
    let Ok(local) = local_path(download_dir, peer, remote) else {
        return;
    };
    let inside = download_dir.join(peer);
    let below = local
        .strip_prefix(&inside)
        .unwrap_or_else(|_| panic!("{local:?} is outside {inside:?}"));
    assert!(
        below.components().next().is_some(),
        "{remote:?} names the peer folder itself"
    );
    assert!(
        below
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{remote:?} became {local:?}"
    );
    assert!(!remote.contains(['\0']) && !remote.starts_with('/'));
    assert!(!remote.split('/').any(|part| part == ".." || part == "."));
}

/// A fuzz target for a message whose only invariant is [`wire_round_trip`].
#[macro_export]
macro_rules! wire_message_target {
    ($message:ty, $limit:expr) => {
        libfuzzer_sys::fuzz_target!(|payload: &[u8]| {
            $crate::wire_round_trip::<$message>(payload, $limit);
        });
    };
}
