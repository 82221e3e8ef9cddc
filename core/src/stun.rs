//! STUN (RFC 5389) and the TURN (RFC 5766) messages built on it: a pure codec plus the NAT
//! classification rule. No sockets here; `nat.rs` sends these through the peer socket and
//! `turn.rs` through the relay's.

use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{
    ErrorCode, MappedAddress, MessageIntegrity, Nonce, Realm, Software, Username, XorMappedAddress,
};
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayAddress,
};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, Method, TransactionId};

use crate::announce::NatType;

/// A STUN reply bigger than this is not one we asked for (a binding answer is under 100
/// bytes; TURN answers with a relay address, lifetime and integrity stay under 200).
pub const MAX_STUN_MESSAGE: usize = 1200;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;

stun_codec::define_attribute_enums!(
    Attribute,
    AttributeDecoder,
    AttributeEncoder,
    [
        MappedAddress,
        XorMappedAddress,
        ErrorCode,
        Nonce,
        Realm,
        Username,
        MessageIntegrity,
        Software,
        XorPeerAddress,
        XorRelayAddress,
        Data,
        Lifetime,
        RequestedTransport,
        ChannelNumber
    ]
);

pub type StunMessage = Message<Attribute>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("STUN message of {0} bytes exceeds the size limit")]
    TooLarge(usize),
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    #[error("STUN transaction ID does not match any request")]
    WrongTransaction,
    #[error("STUN server answered with error {code}: {reason}")]
    ErrorResponse { code: u16, reason: String },
    #[error("STUN response has no mapped address")]
    NoMappedAddress,
    #[error("cannot encode STUN message: {0}")]
    Encode(String),
}

/// A datagram is STUN if it has the fixed header shape (RFC 7983 demultiplexing: first two
/// bits zero, magic cookie at bytes 4..8). QUIC packets always have the 0x40 bit set.
pub fn looks_like_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0xC0 == 0 && datagram[4..8] == MAGIC_COOKIE
}

pub fn random_transaction_id() -> TransactionId {
    let mut id = [0u8; 12];
    // getrandom failing means the OS has no entropy source; a zero ID still works, it is
    // only easier to forge, and forged answers are bounded to classification mistakes.
    let _ = getrandom::getrandom(&mut id);
    TransactionId::new(id)
}

pub fn encode(message: StunMessage) -> Result<Vec<u8>, StunError> {
    MessageEncoder::<Attribute>::new()
        .encode_into_bytes(message)
        .map_err(|e| StunError::Encode(e.to_string()))
}

pub fn binding_request(transaction: TransactionId) -> Result<Vec<u8>, StunError> {
    encode(Message::new(
        MessageClass::Request,
        stun_codec::rfc5389::methods::BINDING,
        transaction,
    ))
}

/// Decodes a datagram into a STUN message, enforcing the size limit before parsing.
pub fn decode(datagram: &[u8]) -> Result<StunMessage, StunError> {
    decode_with_limit(datagram, MAX_STUN_MESSAGE)
}

pub fn decode_with_limit(datagram: &[u8], limit: usize) -> Result<StunMessage, StunError> {
    if datagram.len() > limit {
        return Err(StunError::TooLarge(datagram.len()));
    }
    if !looks_like_stun(datagram) {
        return Err(StunError::NotStun);
    }
    MessageDecoder::<Attribute>::new()
        .decode_from_bytes(datagram)
        .map_err(|e| StunError::Malformed(e.to_string()))?
        .map_err(|broken| StunError::Malformed(broken.error().to_string()))
}

/// The transaction ID of a datagram that looks like STUN, without a full decode: lets the
/// receiver route an answer to whoever is waiting for it.
pub fn transaction_of(datagram: &[u8]) -> Option<[u8; 12]> {
    if !looks_like_stun(datagram) {
        return None;
    }
    datagram[8..HEADER_LEN].try_into().ok()
}

/// Checks that `message` answers our request `transaction` with `method`; turns an error
/// response into `ErrorResponse`.
pub fn check_response(
    message: &StunMessage,
    transaction: TransactionId,
    method: Method,
) -> Result<(), StunError> {
    if message.transaction_id() != transaction || message.method() != method {
        return Err(StunError::WrongTransaction);
    }
    match message.class() {
        MessageClass::SuccessResponse => Ok(()),
        MessageClass::ErrorResponse => {
            let (code, reason) = message
                .get_attribute::<ErrorCode>()
                .map(|e| (e.code(), e.reason_phrase().to_string()))
                .unwrap_or((0, "no error code".into()));
            Err(StunError::ErrorResponse { code, reason })
        }
        _ => Err(StunError::WrongTransaction),
    }
}

/// The address the server saw us at, from a binding response to `transaction`.
pub fn mapped_address(
    datagram: &[u8],
    transaction: TransactionId,
) -> Result<SocketAddr, StunError> {
    let message = decode(datagram)?;
    check_response(&message, transaction, stun_codec::rfc5389::methods::BINDING)?;
    message
        .get_attribute::<XorMappedAddress>()
        .map(|a| a.address())
        .or_else(|| {
            message
                .get_attribute::<MappedAddress>()
                .map(|a| a.address())
        })
        .ok_or(StunError::NoMappedAddress)
}

/// Classifies the NAT from the addresses that servers at *different IP addresses* saw for
/// the same local socket. `local` holds the host's own addresses with the socket's port.
/// One answer cannot tell cone from symmetric, so it gives `Unknown` unless no NAT is seen.
pub fn classify(local: &[SocketAddr], mapped: &[SocketAddr]) -> NatType {
    let Some(first) = mapped.first() else {
        return NatType::Unknown;
    };
    if mapped.iter().all(|m| local.contains(m)) {
        return NatType::None;
    }
    if mapped.iter().any(|m| m != first) {
        return NatType::Symmetric;
    }
    if mapped.len() >= 2 {
        NatType::Cone
    } else {
        NatType::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn binding_success(transaction: TransactionId, seen: SocketAddr) -> Vec<u8> {
        let mut m = Message::new(
            MessageClass::SuccessResponse,
            stun_codec::rfc5389::methods::BINDING,
            transaction,
        );
        m.add_attribute(XorMappedAddress::new(seen));
        encode(m).unwrap()
    }

    #[test]
    fn binding_round_trip_gives_the_mapped_address() {
        let id = random_transaction_id();
        let request = binding_request(id).unwrap();
        assert!(looks_like_stun(&request));
        assert_eq!(transaction_of(&request), Some(*id.as_bytes()));
        let seen = addr("203.0.113.10:40000");
        assert_eq!(mapped_address(&binding_success(id, seen), id), Ok(seen));
    }

    #[test]
    fn answers_to_other_transactions_are_ignored() {
        let ours = TransactionId::new([1; 12]);
        let theirs = TransactionId::new([2; 12]);
        let reply = binding_success(theirs, addr("203.0.113.10:1"));
        assert_eq!(
            mapped_address(&reply, ours),
            Err(StunError::WrongTransaction)
        );
    }

    #[test]
    fn forged_oversized_and_garbage_replies_are_rejected() {
        let id = TransactionId::new([7; 12]);
        let mut big = binding_success(id, addr("203.0.113.10:1"));
        big.resize(MAX_STUN_MESSAGE + 1, 0);
        assert_eq!(
            mapped_address(&big, id),
            Err(StunError::TooLarge(MAX_STUN_MESSAGE + 1))
        );
        assert_eq!(mapped_address(&[0x40; 64], id), Err(StunError::NotStun));
        let mut truncated = binding_success(id, addr("203.0.113.10:1"));
        truncated.truncate(HEADER_LEN + 3);
        assert!(matches!(
            mapped_address(&truncated, id),
            Err(StunError::Malformed(_))
        ));
        // A success without any address (a server bug or a forgery) is no answer.
        let empty = encode(Message::new(
            MessageClass::SuccessResponse,
            stun_codec::rfc5389::methods::BINDING,
            id,
        ))
        .unwrap();
        assert_eq!(mapped_address(&empty, id), Err(StunError::NoMappedAddress));
    }

    #[test]
    fn quic_packets_never_look_like_stun() {
        let mut packet = [0u8; 40];
        packet[4..8].copy_from_slice(&MAGIC_COOKIE);
        packet[0] = 0x40;
        assert!(!looks_like_stun(&packet));
        packet[0] = 0xC3;
        assert!(!looks_like_stun(&packet));
    }

    #[test]
    fn classification() {
        let local = [addr("10.0.1.2:5000")];
        let public = [addr("203.0.113.30:5000")];
        assert_eq!(classify(&public, &public.repeat(2)), NatType::None);
        let cone = [addr("203.0.113.10:5000"), addr("203.0.113.10:5000")];
        assert_eq!(classify(&local, &cone), NatType::Cone);
        let symmetric = [addr("203.0.113.10:41000"), addr("203.0.113.10:52000")];
        assert_eq!(classify(&local, &symmetric), NatType::Symmetric);
        assert_eq!(classify(&local, &cone[..1]), NatType::Unknown);
        assert_eq!(classify(&local, &[]), NatType::Unknown);
    }
}
