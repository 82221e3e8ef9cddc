//! The announce address: the text code friends exchange to connect. It names the peer and
//! carries everything needed to dial and authenticate it (see PROTOCOL.md, "Announce address").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::identity::{peer_name, PublicKey};

const FORMAT_VERSION: u8 = 1;

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

impl fmt::Display for AnnounceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut payload = Vec::with_capacity(53);
        payload.push(FORMAT_VERSION);
        payload.extend_from_slice(&self.public_key);
        payload.push(self.nat_type.code());
        match self.addr.ip() {
            IpAddr::V4(ip) => payload.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => payload.extend_from_slice(&ip.octets()),
        }
        payload.extend_from_slice(&self.addr.port().to_be_bytes());
        write!(f, "{}.{}", self.name(), URL_SAFE_NO_PAD.encode(payload))
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
        // version(1) key(32) nat(1) ip(4 or 16) port(2)
        let ip_len = payload
            .len()
            .checked_sub(36)
            .ok_or(AnnounceError::BadLayout)?;
        if payload[0] != FORMAT_VERSION {
            return Err(AnnounceError::BadLayout);
        }
        let public_key: PublicKey = payload[1..33]
            .try_into()
            .map_err(|_| AnnounceError::BadLayout)?;
        let nat_type = NatType::from_code(payload[33]).ok_or(AnnounceError::BadLayout)?;
        let ip_bytes = &payload[34..34 + ip_len];
        let ip = match ip_len {
            4 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(ip_bytes).map_err(|_| AnnounceError::BadLayout)?,
            )),
            16 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(ip_bytes).map_err(|_| AnnounceError::BadLayout)?,
            )),
            _ => return Err(AnnounceError::BadLayout),
        };
        let port = u16::from_be_bytes([payload[34 + ip_len], payload[35 + ip_len]]);
        let address = AnnounceAddress {
            public_key,
            addr: SocketAddr::new(ip, port),
            nat_type,
        };
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
        }
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
