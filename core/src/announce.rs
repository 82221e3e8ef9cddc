//! The announce address: the text code friends exchange to connect. It names the peer and
//! carries everything needed to dial and authenticate it (see PROTOCOL.md, "Announce address").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::peer_name::{peer_name, PublicKey};

/// Version 1 carried exactly one address; version 2 tags each address with its family and
/// may add a TURN relay address. Both are read; version 2 is written.
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatType {
    Unknown,
    None,
    Cone,
    Symmetric,
}

impl NatType {
    fn code(self) -> u8 {
        match self {
            NatType::Unknown => 0,
            NatType::None => 1,
            NatType::Cone => 2,
            NatType::Symmetric => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => NatType::Unknown,
            1 => NatType::None,
            2 => NatType::Cone,
            3 => NatType::Symmetric,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceAddress {
    pub public_key: PublicKey,
    pub addr: SocketAddr,
    pub nat_type: NatType,
    /// A TURN-relayed address that reaches this peer when no direct path can.
    pub relay: Option<SocketAddr>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AnnounceError {
    #[error("an announce address looks like Name.CODE; this one has no '.'")]
    MissingSeparator,
    #[error("the code part is not valid base64url")]
    BadEncoding,
    #[error("the code part has the wrong length or an unknown version")]
    BadLayout,
    #[error("the name {given} does not match the key inside the code (expected {expected}); it was probably mistyped")]
    NameMismatch { given: String, expected: String },
}

impl AnnounceAddress {
    pub fn name(&self) -> String {
        peer_name(&self.public_key)
    }
}

fn push_address(payload: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            payload.push(4);
            payload.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            payload.push(6);
            payload.extend_from_slice(&ip.octets());
        }
    }
    payload.extend_from_slice(&addr.port().to_be_bytes());
}

/// Reads one family-tagged address from the front of `bytes`; returns it and the rest.
fn take_address(bytes: &[u8]) -> Result<(SocketAddr, &[u8]), AnnounceError> {
    let (family, rest) = bytes.split_first().ok_or(AnnounceError::BadLayout)?;
    let ip_len = match family {
        4 => 4,
        6 => 16,
        _ => return Err(AnnounceError::BadLayout),
    };
    if rest.len() < ip_len + 2 {
        return Err(AnnounceError::BadLayout);
    }
    let ip = ip_from(&rest[..ip_len])?;
    let port = u16::from_be_bytes([rest[ip_len], rest[ip_len + 1]]);
    Ok((SocketAddr::new(ip, port), &rest[ip_len + 2..]))
}

fn ip_from(bytes: &[u8]) -> Result<IpAddr, AnnounceError> {
    Ok(match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes).map_err(|_| AnnounceError::BadLayout)?,
        )),
        16 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).map_err(|_| AnnounceError::BadLayout)?,
        )),
        _ => return Err(AnnounceError::BadLayout),
    })
}

impl AnnounceAddress {
    /// The binary form inside the code part (also carried inside invite codes).
    pub fn to_payload(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(80);
        payload.push(FORMAT_V2);
        payload.extend_from_slice(&self.public_key);
        payload.push(self.nat_type.code());
        push_address(&mut payload, self.addr);
        if let Some(relay) = self.relay {
            push_address(&mut payload, relay);
        }
        payload
    }

    /// Reads [`Self::to_payload`]'s form (either version).
    pub fn from_payload(payload: &[u8]) -> Result<Self, AnnounceError> {
        // version(1) key(32) nat(1), then addresses (PROTOCOL.md, "Announce address")
        if payload.len() < 34 {
            return Err(AnnounceError::BadLayout);
        }
        let public_key: PublicKey = payload[1..33]
            .try_into()
            .map_err(|_| AnnounceError::BadLayout)?;
        let nat_type = NatType::from_code(payload[33]).ok_or(AnnounceError::BadLayout)?;
        let rest = &payload[34..];
        let (addr, relay) = match payload[0] {
            // v1: ip(4 or 16) port(2), the family known from the length.
            FORMAT_V1 if rest.len() == 6 || rest.len() == 18 => {
                let ip = ip_from(&rest[..rest.len() - 2])?;
                let port = u16::from_be_bytes([rest[rest.len() - 2], rest[rest.len() - 1]]);
                (SocketAddr::new(ip, port), None)
            }
            FORMAT_V2 => {
                let (addr, rest) = take_address(rest)?;
                let relay = if rest.is_empty() {
                    None
                } else {
                    let (relay, rest) = take_address(rest)?;
                    if !rest.is_empty() {
                        return Err(AnnounceError::BadLayout);
                    }
                    Some(relay)
                };
                (addr, relay)
            }
            _ => return Err(AnnounceError::BadLayout),
        };
        Ok(AnnounceAddress {
            public_key,
            addr,
            nat_type,
            relay,
        })
    }
}

impl fmt::Display for AnnounceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.name(),
            URL_SAFE_NO_PAD.encode(self.to_payload())
        )
    }
}

impl FromStr for AnnounceAddress {
    type Err = AnnounceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (given_name, code) = text
            .trim()
            .split_once('.')
            .ok_or(AnnounceError::MissingSeparator)?;
        let payload = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| AnnounceError::BadEncoding)?;
        let address = AnnounceAddress::from_payload(&payload)?;
        let expected = address.name();
        if given_name != expected {
            return Err(AnnounceError::NameMismatch {
                given: given_name.to_string(),
                expected,
            });
        }
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(addr: &str) -> AnnounceAddress {
        AnnounceAddress {
            public_key: [42u8; 32],
            addr: addr.parse().unwrap(),
            nat_type: NatType::Cone,
            relay: None,
        }
    }

    #[test]
    fn relay_addresses_round_trip() {
        let mut a = sample("203.0.113.7:40000");
        a.relay = Some("203.0.113.1:49152".parse().unwrap());
        assert_eq!(a.to_string().parse::<AnnounceAddress>().unwrap(), a);
        a.relay = Some("[2001:db8::2]:3478".parse().unwrap());
        assert_eq!(a.to_string().parse::<AnnounceAddress>().unwrap(), a);
    }

    #[test]
    fn protocol_md_examples() {
        let mut a = sample("203.0.113.7:40000");
        a.public_key = [0x2a; 32];
        assert_eq!(
            a.to_string(),
            "ProudNarwhal2a2a2a.AioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqAgTLAHEHnEA"
        );
        a.relay = Some("203.0.113.1:49152".parse().unwrap());
        assert_eq!(
            a.to_string(),
            "ProudNarwhal2a2a2a.AioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqAgTLAHEHnEAEywBxAcAA"
        );
    }

    #[test]
    fn version_one_codes_still_parse() {
        let mut payload = vec![FORMAT_V1];
        payload.extend_from_slice(&[42u8; 32]);
        payload.push(2);
        payload.extend_from_slice(&[203, 0, 113, 7, 0x9c, 0x40]);
        let text = format!(
            "{}.{}",
            peer_name(&[42u8; 32]),
            URL_SAFE_NO_PAD.encode(payload)
        );
        assert_eq!(
            text.parse::<AnnounceAddress>().unwrap(),
            sample("203.0.113.7:40000")
        );
    }

    #[test]
    fn trailing_bytes_after_the_relay_are_refused() {
        let mut a = sample("203.0.113.7:40000");
        a.relay = Some("203.0.113.1:49152".parse().unwrap());
        let text = a.to_string();
        let (name, code) = text.split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(code).unwrap();
        payload.push(0);
        let padded = format!("{name}.{}", URL_SAFE_NO_PAD.encode(payload));
        assert_eq!(
            padded.parse::<AnnounceAddress>(),
            Err(AnnounceError::BadLayout)
        );
    }

    #[test]
    fn round_trips_v4_and_v6() {
        for addr in ["203.0.113.7:40000", "[2001:db8::1]:3030"] {
            let a = sample(addr);
            let text = a.to_string();
            assert!(text.starts_with(&a.name()));
            assert_eq!(text.parse::<AnnounceAddress>().unwrap(), a);
        }
    }

    #[test]
    fn rejects_typos_and_garbage() {
        let text = sample("127.0.0.1:1").to_string();
        let (name, code) = text.split_once('.').unwrap();
        let wrong_name = format!("X{name}.{code}");
        assert!(matches!(
            wrong_name.parse::<AnnounceAddress>(),
            Err(AnnounceError::NameMismatch { .. })
        ));
        assert_eq!(
            "nodot".parse::<AnnounceAddress>(),
            Err(AnnounceError::MissingSeparator)
        );
        assert_eq!(
            format!("{name}.!!").parse::<AnnounceAddress>(),
            Err(AnnounceError::BadEncoding)
        );
        assert_eq!(
            format!("{name}.AAAA").parse::<AnnounceAddress>(),
            Err(AnnounceError::BadLayout)
        );
        let truncated = &code[..code.len() - 3];
        assert!(format!("{name}.{truncated}")
            .parse::<AnnounceAddress>()
            .is_err());
    }
}
