//! The paths of `Ls`, `Read` and `Hashes` requests, through the sharer's one gate: what it
//! accepts has no absolute start, no `.` or `..`, no empty part and no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        harddrive_party_core_fuzz::check_request_path(path);
    }
});
