//! TURN (RFC 5766) client messages, without sockets: allocation with long-term
//! credentials, permissions, refreshes, and the Send/Data indications that carry our QUIC
//! datagrams. `relay.rs` runs them over a UDP socket. The relay only ever sees QUIC
//! ciphertext: the peers' end-to-end handshake runs inside.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use stun_codec::rfc5389::attributes::{MessageIntegrity, Nonce, Realm, Username};
use stun_codec::rfc5766::attributes::{
    Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CREATE_PERMISSION, DATA, REFRESH, SEND};
use stun_codec::{Message, MessageClass, Method, TransactionId};

use crate::stun::{self, StunError, StunMessage};

const UDP_PROTOCOL: u8 = 17;
/// What we ask for; servers may grant less (the answer's LIFETIME rules).
pub const ALLOCATION_LIFETIME: Duration = Duration::from_secs(600);
/// Permissions last 300 s on the server (RFC 5766 section 8); renew well before.
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Bytes a Send indication adds around a datagram (header, peer address, data header).
pub const SEND_OVERHEAD: usize = 20 + 12 + 4 + 3;
/// The largest datagram the relay server may hand us: a relayed QUIC packet (the relay
/// path never probes above 1400 bytes) plus the Data indication around it.
pub const MAX_RELAY_MESSAGE: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The server's realm and nonce, learnt from its first 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub relayed: SocketAddr,
    pub lifetime: Duration,
}

fn request(method: Method, transaction: TransactionId) -> StunMessage {
    Message::new(MessageClass::Request, method, transaction)
}

/// Adds USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (which must come last).
fn sign(
    mut message: StunMessage,
    credentials: &Credentials,
    challenge: &Challenge,
) -> Result<Vec<u8>, StunError> {
    let malformed = |e: bytecodec::Error| StunError::Encode(e.to_string());
    let username = Username::new(credentials.username.clone()).map_err(malformed)?;
    let realm = Realm::new(challenge.realm.clone()).map_err(malformed)?;
    message.add_attribute(username.clone());
    message.add_attribute(realm.clone());
    message.add_attribute(Nonce::new(challenge.nonce.clone()).map_err(malformed)?);
    let integrity = MessageIntegrity::new_long_term_credential(
        &message,
        &username,
        &realm,
        &credentials.password,
    )
    .map_err(malformed)?;
    message.add_attribute(integrity);
    stun::encode(message)
}

/// An Allocate request: unsigned for the first try (the server answers 401 with its
/// challenge), signed after.
pub fn allocate_request(
    transaction: TransactionId,
    auth: Option<(&Credentials, &Challenge)>,
) -> Result<Vec<u8>, StunError> {
    let mut message = request(ALLOCATE, transaction);
    message.add_attribute(RequestedTransport::new(UDP_PROTOCOL));
    message.add_attribute(lifetime(ALLOCATION_LIFETIME)?);
    match auth {
        Some((credentials, challenge)) => sign(message, credentials, challenge),
        None => stun::encode(message),
    }
}

fn lifetime(d: Duration) -> Result<Lifetime, StunError> {
    Lifetime::new(d).map_err(|e| StunError::Encode(e.to_string()))
}

/// A Refresh; a zero lifetime releases the allocation (on stop).
pub fn refresh_request(
    transaction: TransactionId,
    credentials: &Credentials,
    challenge: &Challenge,
    wanted: Duration,
) -> Result<Vec<u8>, StunError> {
    let mut message = request(REFRESH, transaction);
    message.add_attribute(lifetime(wanted)?);
    sign(message, credentials, challenge)
}

/// Lets datagrams from `peer` (any port: permissions are per IP) reach our relay address.
pub fn permission_request(
    transaction: TransactionId,
    peer: IpAddr,
    credentials: &Credentials,
    challenge: &Challenge,
) -> Result<Vec<u8>, StunError> {
    let mut message = request(CREATE_PERMISSION, transaction);
    message.add_attribute(XorPeerAddress::new(SocketAddr::new(peer, 0)));
    sign(message, credentials, challenge)
}

/// Wraps one datagram for `peer`; indications carry no credentials (RFC 5766 10.1).
pub fn send_indication(peer: SocketAddr, datagram: &[u8]) -> Result<Vec<u8>, StunError> {
    let mut message = Message::new(
        MessageClass::Indication,
        SEND,
        stun::random_transaction_id(),
    );
    message.add_attribute(XorPeerAddress::new(peer));
    message
        .add_attribute(Data::new(datagram.to_vec()).map_err(|e| StunError::Encode(e.to_string()))?);
    stun::encode(message)
}

/// What arrived from the relay server.
#[derive(Debug)]
pub enum Incoming {
    /// A peer's datagram relayed to us.
    Data { peer: SocketAddr, datagram: Vec<u8> },
    /// An answer to one of our requests (routed by transaction ID).
    Response(StunMessage),
}

pub fn parse_incoming(datagram: &[u8]) -> Result<Incoming, StunError> {
    let message = stun::decode_with_limit(datagram, MAX_RELAY_MESSAGE)?;
    if message.class() == MessageClass::Indication && message.method() == DATA {
        let peer = message
            .get_attribute::<XorPeerAddress>()
            .map(|a| a.address())
            .ok_or_else(|| StunError::Malformed("Data indication without a peer".into()))?;
        let data = message
            .get_attribute::<Data>()
            .ok_or_else(|| StunError::Malformed("Data indication without data".into()))?;
        return Ok(Incoming::Data {
            peer,
            datagram: data.data().to_vec(),
        });
    }
    Ok(Incoming::Response(message))
}

/// The realm and nonce of a 401 (unauthenticated) or 438 (stale nonce) answer.
pub fn challenge_of(message: &StunMessage) -> Option<Challenge> {
    Some(Challenge {
        realm: message.get_attribute::<Realm>()?.text().to_string(),
        nonce: message.get_attribute::<Nonce>()?.value().to_string(),
    })
}

pub fn allocation_of(message: &StunMessage) -> Result<Allocation, StunError> {
    let relayed = message
        .get_attribute::<XorRelayAddress>()
        .map(|a| a.address())
        .ok_or_else(|| StunError::Malformed("Allocate answer without a relayed address".into()))?;
    let lifetime = message
        .get_attribute::<Lifetime>()
        .map_or(ALLOCATION_LIFETIME, |l| l.lifetime());
    Ok(Allocation { relayed, lifetime })
}

/// Error codes that mean "sign again with the fresh challenge in this answer".
pub fn needs_new_challenge(error: &StunError) -> bool {
    matches!(
        error,
        StunError::ErrorResponse {
            code: 401 | 438,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            username: "hdp".into(),
            password: "secret".into(),
        }
    }

    #[test]
    fn send_indication_round_trips_as_data() {
        let peer: SocketAddr = "203.0.113.20:4000".parse().unwrap();
        let bytes = send_indication(peer, b"quic bytes").unwrap();
        assert!(bytes.len() <= b"quic bytes".len() + SEND_OVERHEAD + 3);
        // A relayed Data indication has the same shape with the DATA method.
        let mut data = Message::new(
            MessageClass::Indication,
            DATA,
            stun::random_transaction_id(),
        );
        data.add_attribute(XorPeerAddress::new(peer));
        data.add_attribute(Data::new(b"quic bytes".to_vec()).unwrap());
        let encoded = stun::encode(data).unwrap();
        let Incoming::Data {
            peer: from,
            datagram,
        } = parse_incoming(&encoded).unwrap()
        else {
            panic!("not data");
        };
        assert_eq!((from, datagram.as_slice()), (peer, &b"quic bytes"[..]));
    }

    #[test]
    fn signed_requests_verify_with_the_long_term_key() {
        let challenge = Challenge {
            realm: "lab.example".into(),
            nonce: "abc123".into(),
        };
        let id = stun::random_transaction_id();
        let bytes = allocate_request(id, Some((&credentials(), &challenge))).unwrap();
        let message = stun::decode(&bytes).unwrap();
        let integrity = message.get_attribute::<MessageIntegrity>().unwrap();
        let username = message.get_attribute::<Username>().unwrap();
        let realm = message.get_attribute::<Realm>().unwrap();
        assert!(integrity
            .check_long_term_credential(username, realm, "secret")
            .is_ok());
        assert!(integrity
            .check_long_term_credential(username, realm, "wrong")
            .is_err());
    }

    #[test]
    fn allocation_answers_are_read() {
        let id = stun::random_transaction_id();
        let mut answer = Message::new(MessageClass::SuccessResponse, ALLOCATE, id);
        answer.add_attribute(XorRelayAddress::new("203.0.113.1:49200".parse().unwrap()));
        answer.add_attribute(Lifetime::new(Duration::from_secs(300)).unwrap());
        let bytes = stun::encode(answer).unwrap();
        let Incoming::Response(message) = parse_incoming(&bytes).unwrap() else {
            panic!("not a response");
        };
        stun::check_response(&message, id, ALLOCATE).unwrap();
        assert_eq!(
            allocation_of(&message).unwrap(),
            Allocation {
                relayed: "203.0.113.1:49200".parse().unwrap(),
                lifetime: Duration::from_secs(300)
            }
        );
        let mut missing = Message::new(MessageClass::SuccessResponse, ALLOCATE, id);
        missing.add_attribute(Lifetime::new(Duration::from_secs(300)).unwrap());
        assert!(allocation_of(&missing).is_err());
    }

    #[test]
    fn garbage_from_the_relay_is_an_error() {
        assert!(parse_incoming(&[0x40, 0, 0, 4, 1, 2, 3, 4]).is_err());
        assert!(parse_incoming(&[]).is_err());
    }
}
