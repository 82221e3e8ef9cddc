//! JSON bodies of the HTTP API, decoded into the core types the handlers hand on: rates and
//! the alternative-speed schedule (`POST /api/settings`) and new invites
//! (`POST /api/invites`). Each value is accepted within its documented bounds or refused
//! with a message; what is accepted serialises back to the same value.
#![no_main]

use harddrive_party_core::invite::{
    InviteRequest, MAX_INVITE_LIFETIME_SECS, MAX_INVITE_SHARES, MAX_INVITE_USES,
};
use harddrive_party_core::rate::{parse_rate, AltMode, AltSpeed, RateValue, Schedule};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;

/// The body of `POST /api/invites`, as the daemon's handler declares it.
#[derive(Deserialize)]
struct InviteBody {
    expires_secs: Option<u64>,
    uses: Option<u32>,
    shares: Option<Vec<String>>,
}

const KNOWN_SHARES: [&str; 2] = ["Music", "Films"];

fn rate(value: &Value) {
    let Ok(rate) = serde_json::from_value::<RateValue>(value.clone()) else {
        return;
    };
    // Whole numbers up to 2^53 are exact as f64, so their text reads back unchanged.
    if let Some(bytes) = rate.bytes().ok().filter(|b| *b <= 1 << 53) {
        assert_eq!(parse_rate(&bytes.to_string()), Ok(bytes));
    }
}

fn schedule(value: &Value) {
    let Ok(schedule) = serde_json::from_value::<Schedule>(value.clone()) else {
        return;
    };
    if schedule.validate().is_err() {
        return;
    }
    for weekday in 0..7 {
        for minute in [0, 1, 719, 1439] {
            schedule.covers(weekday, minute);
        }
    }
    let alt = AltSpeed {
        schedule: Some(schedule),
        mode: AltMode::Schedule,
        ..AltSpeed::default()
    };
    let text = serde_json::to_string(&alt).expect("settings serialise");
    assert_eq!(serde_json::from_str::<AltSpeed>(&text).ok(), Some(alt));
}

fn invite(value: &Value) {
    let Ok(body) = serde_json::from_value::<InviteBody>(value.clone()) else {
        return;
    };
    let known: Vec<String> = KNOWN_SHARES.iter().map(|s| s.to_string()).collect();
    let Ok(request) = InviteRequest::checked(body.expires_secs, body.uses, body.shares, &known)
    else {
        return;
    };
    assert!((1..=MAX_INVITE_LIFETIME_SECS).contains(&request.lifetime_secs));
    assert!((1..=MAX_INVITE_USES).contains(&request.uses));
    if let Some(shares) = &request.shares {
        assert!(!shares.is_empty() && shares.len() <= MAX_INVITE_SHARES);
        assert!(shares.windows(2).all(|w| w[0] < w[1]));
        assert!(shares.iter().all(|s| known.contains(s)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    invite(&body);
    let fields: Vec<&Value> = match &body {
        Value::Object(fields) => fields.values().collect(),
        other => vec![other],
    };
    for value in fields {
        rate(value);
        schedule(value);
    }
});
