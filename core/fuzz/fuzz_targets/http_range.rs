//! `Range` headers on `/api/read` (a browser's media player, or anyone with the UI): one
//! range or a clear refusal, and a resolved range always lies inside the file.
#![no_main]

use harddrive_party_core::http_range::{parse_range, RangeError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64)| {
    let (header, size) = input;
    let Ok(range) = parse_range(header) else {
        return;
    };
    match range.resolve(size) {
        Ok(span) => assert!(span.start < span.end && span.end <= size),
        Err(refused) => assert_eq!(refused, RangeError::Unsatisfiable { size }),
    }
});
