//! Invite codes `hdp-invite:…` pasted by users, plus the invite id and duration texts the
//! API and CLI take: whatever is accepted writes back to text that reads the same.
#![no_main]

use harddrive_party_core::invite::{id_hex, parse_duration, parse_id_hex, InviteCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = text.parse::<InviteCode>() {
        let written = code.to_string();
        assert_eq!(written.parse::<InviteCode>().as_ref(), Ok(&code));
        assert_eq!(
            code.verifier(),
            harddrive_party_core::invite::verifier(&code.secret)
        );
    }
    if let Some(id) = parse_id_hex(text) {
        assert_eq!(parse_id_hex(&id_hex(&id)), Some(id));
    }
    let _ = parse_duration(text);
});
