//! Invites: a code the owner hands a friend (p2pal's join codes, qft's phrase) that makes
//! its holder a friend on first contact, within a time limit and a number of uses. The code
//! carries the inviter's announce address and a random secret; the inviter keeps only a key
//! derived from the secret (the *verifier*), never the code. The joiner proves it holds the
//! secret with a MAC over TLS keying material of the very connection it joins on, so a proof
//! seen anywhere cannot be replayed on another connection (PROTOCOL.md §8.10).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::announce::{AnnounceAddress, AnnounceError};
use crate::http_guard::constant_time_eq;

/// Every invite code starts with this, so the one `connect` box tells codes from addresses.
pub const INVITE_PREFIX: &str = "hdp-invite:";
const INVITE_FORMAT: u8 = 1;
pub const INVITE_ID_BYTES: usize = 8;
/// 128 bits: guessing is hopeless even without the join rate limit.
pub const INVITE_SECRET_BYTES: usize = 16;
const CHECKSUM_BYTES: usize = 4;
/// The smallest announce address payload (version, key, NAT type, an IPv4 address).
const MIN_ADDRESS_BYTES: usize = 34 + 7;
const MIN_CODE_BYTES: usize =
    1 + INVITE_ID_BYTES + INVITE_SECRET_BYTES + MIN_ADDRESS_BYTES + CHECKSUM_BYTES;
/// Longer than any announce address a node writes (an IPv6 address and an IPv6 relay).
const MAX_CODE_BYTES: usize = 1 + INVITE_ID_BYTES + INVITE_SECRET_BYTES + 72 + CHECKSUM_BYTES;

/// Exporter label for the keying material the proof is computed over (RFC 5705 / 8446 §7.5).
pub const KEYING_LABEL: &[u8] = b"EXPORTER-harddrive-party-invite";
const VERIFIER_CONTEXT: &str = "harddrive-party 2026 invite verifier v1";

/// Invites live at most this long; the default is a day.
pub const MAX_INVITE_LIFETIME_SECS: u64 = 30 * 24 * 3600;
pub const DEFAULT_INVITE_LIFETIME_SECS: u64 = 24 * 3600;
pub const MAX_INVITE_USES: u32 = 100;
/// Invites not yet expired, used up or revoked, per node.
pub const MAX_LIVE_INVITES: usize = 100;
/// A dead invite is remembered this long, so a late joiner hears *why* it is refused.
pub const DEAD_INVITE_RETENTION_SECS: u64 = 7 * 24 * 3600;
/// Shares one invite may name.
pub const MAX_INVITE_SHARES: usize = 64;

pub type InviteId = [u8; INVITE_ID_BYTES];
pub type InviteSecret = [u8; INVITE_SECRET_BYTES];

/// What a joiner holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode {
    pub id: InviteId,
    pub secret: InviteSecret,
    pub inviter: AnnounceAddress,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteCodeError {
    #[error("not an invite code: it should start with {INVITE_PREFIX}")]
    MissingPrefix,
    #[error("the invite code is not valid base64url (was it cut or changed when copied?)")]
    BadEncoding,
    #[error("the invite code has {found} bytes; a code has {MIN_CODE_BYTES} to {MAX_CODE_BYTES} (was it cut when copied?)")]
    BadLength { found: usize },
    #[error("the invite code's checksum does not match: it was mistyped or changed")]
    BadChecksum,
    #[error("invite code version {0} is not known to this release (only version {INVITE_FORMAT}); update harddrive-party")]
    UnknownVersion(u8),
    #[error("the inviter's address inside the code is damaged: {0}")]
    BadAddress(AnnounceError),
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let hash = blake3::hash(bytes);
    let mut out = [0; CHECKSUM_BYTES];
    out.copy_from_slice(&hash.as_bytes()[..CHECKSUM_BYTES]);
    out
}

impl InviteCode {
    /// The key the inviter stores instead of the secret.
    pub fn verifier(&self) -> [u8; 32] {
        verifier(&self.secret)
    }

    /// The id as the API and CLI show it.
    pub fn id_hex(&self) -> String {
        id_hex(&self.id)
    }
}

pub fn verifier(secret: &InviteSecret) -> [u8; 32] {
    blake3::derive_key(VERIFIER_CONTEXT, secret)
}

/// The proof a joiner sends: a MAC, under the verifier, of keying material exported from
/// the connection's TLS session with [`KEYING_LABEL`] and the invite id as context.
pub fn proof(verifier: &[u8; 32], keying_material: &[u8; 32]) -> [u8; 32] {
    *blake3::keyed_hash(verifier, keying_material).as_bytes()
}

pub fn id_hex(id: &InviteId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_id_hex(text: &str) -> Option<InviteId> {
    let text = text.trim();
    if text.len() != INVITE_ID_BYTES * 2 || !text.is_ascii() {
        return None;
    }
    let mut id = [0; INVITE_ID_BYTES];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(id)
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(MAX_CODE_BYTES);
        bytes.push(INVITE_FORMAT);
        bytes.extend_from_slice(&self.id);
        bytes.extend_from_slice(&self.secret);
        bytes.extend_from_slice(&self.inviter.to_payload());
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        write!(f, "{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }
}

impl FromStr for InviteCode {
    type Err = InviteCodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let encoded = text
            .trim()
            .strip_prefix(INVITE_PREFIX)
            .ok_or(InviteCodeError::MissingPrefix)?;
        // Checked before decoding: a cut code is named as such, and a pasted novel costs
        // nothing.
        let found = encoded.len() * 3 / 4;
        if !(MIN_CODE_BYTES..=MAX_CODE_BYTES).contains(&found) {
            return Err(InviteCodeError::BadLength { found });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| InviteCodeError::BadEncoding)?;
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if checksum(body) != sum {
            return Err(InviteCodeError::BadChecksum);
        }
        if body[0] != INVITE_FORMAT {
            return Err(InviteCodeError::UnknownVersion(body[0]));
        }
        let (id, rest) = body[1..].split_at(INVITE_ID_BYTES);
        let (secret, address) = rest.split_at(INVITE_SECRET_BYTES);
        Ok(InviteCode {
            id: id
                .try_into()
                .map_err(|_| InviteCodeError::BadLength { found: bytes.len() })?,
            secret: secret
                .try_into()
                .map_err(|_| InviteCodeError::BadLength { found: bytes.len() })?,
            inviter: AnnounceAddress::from_payload(address).map_err(InviteCodeError::BadAddress)?,
        })
    }
}

/// An invite as the inviter stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: InviteId,
    pub verifier: [u8; 32],
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: u64,
    pub uses_left: u32,
    pub revoked: bool,
    /// `None`: the joiner becomes a friend and sees what every friend sees. `Some`: it
    /// becomes a guest that sees only these shares.
    pub shares: Option<Vec<String>>,
}

/// Why a join is refused; sent to the joiner, so it says which and nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InviteRefusal {
    #[error("this invite has expired: ask for a new one")]
    Expired,
    #[error("this invite has been used already: ask for a new one")]
    UsedUp,
    #[error("this invite was revoked by its owner")]
    Revoked,
    /// Unknown id or a wrong proof: a forger learns nothing about real invites.
    #[error("this invite is not valid (unknown to the inviter, or forged)")]
    NotValid,
    /// The inviter is already answering too many joins or strangers; try again later.
    #[error("the inviter is busy: try again in a minute")]
    Busy,
}

/// The user's choices for a new invite, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRequest {
    pub lifetime_secs: u64,
    pub uses: u32,
    pub shares: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteRequestError {
    #[error("an invite lives between 1 second and {} days", MAX_INVITE_LIFETIME_SECS / 86400)]
    Lifetime,
    #[error("an invite can be used 1 to {MAX_INVITE_USES} times")]
    Uses,
    #[error("an invite names at most {MAX_INVITE_SHARES} shares")]
    TooManyShares,
    #[error("no share named {0}")]
    UnknownShare(String),
    #[error("there are already {MAX_LIVE_INVITES} live invites: revoke some first")]
    TooManyInvites,
}

impl InviteRequest {
    /// Checks the request against the limits and the shares that exist. An empty share list
    /// means all shares.
    pub fn checked(
        lifetime_secs: Option<u64>,
        uses: Option<u32>,
        shares: Option<Vec<String>>,
        known_shares: &[String],
    ) -> Result<Self, InviteRequestError> {
        let lifetime_secs = lifetime_secs.unwrap_or(DEFAULT_INVITE_LIFETIME_SECS);
        if !(1..=MAX_INVITE_LIFETIME_SECS).contains(&lifetime_secs) {
            return Err(InviteRequestError::Lifetime);
        }
        let uses = uses.unwrap_or(1);
        if !(1..=MAX_INVITE_USES).contains(&uses) {
            return Err(InviteRequestError::Uses);
        }
        let mut shares = shares.filter(|s| !s.is_empty());
        if let Some(list) = &mut shares {
            if list.len() > MAX_INVITE_SHARES {
                return Err(InviteRequestError::TooManyShares);
            }
            if let Some(unknown) = list.iter().find(|s| !known_shares.contains(s)) {
                return Err(InviteRequestError::UnknownShare(unknown.clone()));
            }
            list.sort();
            list.dedup();
        }
        Ok(Self {
            lifetime_secs,
            uses,
            shares,
        })
    }

    pub fn invite(&self, id: InviteId, secret: &InviteSecret, now: u64) -> Invite {
        Invite {
            id,
            verifier: verifier(secret),
            created_at: now,
            expires_at: now.saturating_add(self.lifetime_secs),
            uses_left: self.uses,
            revoked: false,
            shares: self.shares.clone(),
        }
    }
}

impl Invite {
    pub fn is_live(&self, now: u64) -> bool {
        !self.revoked && self.uses_left > 0 && now < self.expires_at
    }

    /// Dead long enough that nobody needs to hear why any more.
    pub fn is_forgettable(&self, now: u64) -> bool {
        !self.is_live(now)
            && now
                >= self
                    .expires_at
                    .min(self.created_at.saturating_add(MAX_INVITE_LIFETIME_SECS))
                    .saturating_add(DEAD_INVITE_RETENTION_SECS)
    }
}

/// The inviter's decision on a join: the invite after one use, or why not. The proof is
/// checked first, so only a holder of the code learns an invite's state.
pub fn redeem(
    invite: Option<&Invite>,
    proof_given: &[u8; 32],
    keying_material: &[u8; 32],
    now: u64,
) -> Result<Invite, InviteRefusal> {
    let invite = invite.ok_or(InviteRefusal::NotValid)?;
    if !constant_time_eq(&proof(&invite.verifier, keying_material), proof_given) {
        return Err(InviteRefusal::NotValid);
    }
    if invite.revoked {
        Err(InviteRefusal::Revoked)
    } else if now >= invite.expires_at {
        Err(InviteRefusal::Expired)
    } else if invite.uses_left == 0 {
        Err(InviteRefusal::UsedUp)
    } else {
        Ok(Invite {
            uses_left: invite.uses_left - 1,
            ..invite.clone()
        })
    }
}

/// A duration as the CLI takes it: `90s`, `30m`, `24h`, `7d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a duration such as 90s, 30m, 24h or 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::NatType;

    fn sample() -> InviteCode {
        InviteCode {
            id: [1, 2, 3, 4, 5, 6, 7, 8],
            secret: [0x5e; INVITE_SECRET_BYTES],
            inviter: AnnounceAddress {
                public_key: [0x2a; 32],
                addr: "203.0.113.7:40000".parse().unwrap(),
                nat_type: NatType::Cone,
                relay: None,
            },
        }
    }

    #[test]
    fn codes_round_trip_and_match_protocol_md() {
        let code = sample();
        let text = code.to_string();
        assert_eq!(
            text,
            "hdp-invite:AQECAwQFBgcIXl5eXl5eXl5eXl5eXl5eXgIqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKgIEywBxB5xAkJr4wQ"
        );
        assert_eq!(text.parse::<InviteCode>().unwrap(), code);
        assert_eq!(format!("  {text}\n").parse::<InviteCode>().unwrap(), code);
        let mut relayed = sample();
        relayed.inviter.addr = "[2001:db8::7]:40000".parse().unwrap();
        relayed.inviter.relay = Some("[2001:db8::1]:3478".parse().unwrap());
        let text = relayed.to_string();
        assert_eq!(text.parse::<InviteCode>().unwrap(), relayed);
    }

    #[test]
    fn malformed_codes_say_what_is_wrong() {
        let text = sample().to_string();
        let body = text.strip_prefix(INVITE_PREFIX).unwrap();
        assert_eq!(
            body.parse::<InviteCode>(),
            Err(InviteCodeError::MissingPrefix)
        );
        assert_eq!(
            format!("{INVITE_PREFIX}{}!", &body[1..]).parse::<InviteCode>(),
            Err(InviteCodeError::BadEncoding)
        );
        assert!(matches!(
            text[..text.len() - 20].parse::<InviteCode>(),
            Err(InviteCodeError::BadLength { .. })
        ));
        assert!(matches!(
            format!("{text}{}", "A".repeat(4000)).parse::<InviteCode>(),
            Err(InviteCodeError::BadLength { .. })
        ));
        // One character changed in the middle: the checksum catches it.
        let mut chars: Vec<char> = text.chars().collect();
        let middle = chars.len() / 2;
        chars[middle] = if chars[middle] == 'B' { 'C' } else { 'B' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(
            typo.parse::<InviteCode>(),
            Err(InviteCodeError::BadChecksum)
        );
    }

    #[test]
    fn unknown_versions_and_damaged_addresses_are_named() {
        let reencode = |edit: &dyn Fn(&mut Vec<u8>)| {
            let text = sample().to_string();
            let mut bytes = URL_SAFE_NO_PAD
                .decode(text.strip_prefix(INVITE_PREFIX).unwrap())
                .unwrap();
            bytes.truncate(bytes.len() - CHECKSUM_BYTES);
            edit(&mut bytes);
            let sum = checksum(&bytes);
            bytes.extend_from_slice(&sum);
            format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
        };
        assert_eq!(
            reencode(&|b| b[0] = 2).parse::<InviteCode>(),
            Err(InviteCodeError::UnknownVersion(2))
        );
        assert!(matches!(
            reencode(&|b| b[1 + INVITE_ID_BYTES + INVITE_SECRET_BYTES] = 9).parse::<InviteCode>(),
            Err(InviteCodeError::BadAddress(_))
        ));
    }

    #[test]
    fn any_input_gives_a_code_or_an_error() {
        let text = sample().to_string();
        for cut in 0..text.len() {
            let _ = text[..cut].parse::<InviteCode>();
        }
        for byte in 0..=255u8 {
            let bytes = vec![byte; 60];
            let _ =
                format!("{INVITE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)).parse::<InviteCode>();
        }
    }

    fn live_invite(now: u64) -> (Invite, InviteSecret) {
        let secret = [7; INVITE_SECRET_BYTES];
        let request = InviteRequest::checked(Some(60), Some(2), None, &[]).unwrap();
        (request.invite([9; INVITE_ID_BYTES], &secret, now), secret)
    }

    #[test]
    fn redeeming_checks_the_proof_first_then_state() {
        let (invite, secret) = live_invite(1000);
        let keying = [3; 32];
        let good = proof(&verifier(&secret), &keying);
        let once = redeem(Some(&invite), &good, &keying, 1001).unwrap();
        assert_eq!(once.uses_left, 1);
        let twice = redeem(Some(&once), &good, &keying, 1002).unwrap();
        assert_eq!(
            redeem(Some(&twice), &good, &keying, 1003),
            Err(InviteRefusal::UsedUp)
        );
        assert_eq!(
            redeem(Some(&invite), &good, &keying, 1060),
            Err(InviteRefusal::Expired)
        );
        let revoked = Invite {
            revoked: true,
            ..invite.clone()
        };
        assert_eq!(
            redeem(Some(&revoked), &good, &keying, 1001),
            Err(InviteRefusal::Revoked)
        );
        // A proof made for another connection's keying material, or a guessed one, tells a
        // forger nothing: not even that the invite expired.
        let replayed = proof(&verifier(&secret), &[4; 32]);
        for state in [&invite, &twice, &revoked] {
            assert_eq!(
                redeem(Some(state), &replayed, &keying, 5000),
                Err(InviteRefusal::NotValid)
            );
        }
        assert_eq!(
            redeem(None, &good, &keying, 1001),
            Err(InviteRefusal::NotValid)
        );
    }

    #[test]
    fn requests_are_bounded_and_name_real_shares() {
        let shares = ["Music".to_string(), "Photos".to_string()];
        let r = InviteRequest::checked(None, None, Some(vec![]), &shares).unwrap();
        assert_eq!(
            (r.lifetime_secs, r.uses, r.shares),
            (DEFAULT_INVITE_LIFETIME_SECS, 1, None)
        );
        let r = InviteRequest::checked(
            None,
            None,
            Some(vec!["Photos".into(), "Music".into(), "Photos".into()]),
            &shares,
        )
        .unwrap();
        assert_eq!(r.shares, Some(vec!["Music".into(), "Photos".into()]));
        assert_eq!(
            InviteRequest::checked(Some(0), None, None, &shares),
            Err(InviteRequestError::Lifetime)
        );
        assert_eq!(
            InviteRequest::checked(Some(MAX_INVITE_LIFETIME_SECS + 1), None, None, &shares),
            Err(InviteRequestError::Lifetime)
        );
        assert_eq!(
            InviteRequest::checked(None, Some(0), None, &shares),
            Err(InviteRequestError::Uses)
        );
        assert_eq!(
            InviteRequest::checked(None, None, Some(vec!["Secret".into()]), &shares),
            Err(InviteRequestError::UnknownShare("Secret".into()))
        );
    }

    #[test]
    fn dead_invites_are_kept_a_while_then_forgotten() {
        let (invite, _) = live_invite(1000);
        assert!(invite.is_live(1059) && !invite.is_live(1060));
        assert!(!invite.is_forgettable(1060));
        assert!(invite.is_forgettable(1060 + DEAD_INVITE_RETENTION_SECS));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("24h"), Ok(86400));
        assert_eq!(parse_duration("7D"), Ok(604_800));
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn ids_in_hex() {
        let id = [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3];
        assert_eq!(id_hex(&id), "deadbeef00010203");
        assert_eq!(parse_id_hex("deadbeef00010203"), Some(id));
        assert_eq!(parse_id_hex("deadbeef0001020"), None);
        assert_eq!(parse_id_hex("zzadbeef00010203"), None);
    }
}
