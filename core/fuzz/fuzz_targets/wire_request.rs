//! Every request a peer can open a stream with, as the sharer decodes it: the round trip,
//! then validation and the path gate, which must refuse or accept without panicking.
#![no_main]

use harddrive_party_core::wire::{Request, MAX_REQUEST_FRAME};
use harddrive_party_core_fuzz::{check_request_path, wire_round_trip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let Some(request) = wire_round_trip::<Request>(payload, MAX_REQUEST_FRAME) else {
        return;
    };
    if request.validate().is_err() {
        return;
    }
    match &request {
        Request::Ls { path, .. } | Request::Read { path, .. } | Request::Hashes { path } => {
            check_request_path(path)
        }
        _ => {}
    }
});
