//! Peer policy: which connections are admitted, which announced addresses are remembered,
//! who is dialled and when, and which of two connections to one peer survives. One rule
//! set, each rule written once: the node hands in what it knows (the remembered record, the
//! live connections, the time) and carries out the answer. PROTOCOL.md §8 describes the
//! rules; the tests below are their executable form.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::announce::AnnounceAddress;
use crate::peer_name::{peer_name, PublicKey};

/// Close code sent on a connection dropped in favour of another one to the same peer.
pub const CLOSE_DUPLICATE: u32 = 1;
/// Close code for a user `disconnect` or our shutdown.
pub const CLOSE_BY_USER: u32 = 2;
/// Close code after a stranger's request was refused with `NotAFriend` and recorded.
pub const CLOSE_NOT_A_FRIEND: u32 = 3;
/// A connection that lasted this long resets its peer's reconnect backoff; one that ends
/// sooner (for instance refused right after the handshake) counts as a failed attempt.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(60);

/// How far the node trusts a remembered peer. Only a friend is dialled, introduced, told
/// about others and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trust {
    /// We dialled its address ourselves, it joined with our invite, or we approved it.
    Friend,
    /// Heard of but not trusted: a friend introduced it, or it advertised itself on the LAN.
    Suggested(Via),
    /// A key that only ever asked; remembered because the user blocked it.
    Stranger,
}

/// Where a suggestion came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Via {
    /// The name of the friend that passed its address on.
    IntroducedBy(String),
    Lan,
}

/// A peer the node remembers, by name (the database's `known_peers` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownPeer {
    /// Empty for a peer approved or blocked before it told us its address.
    pub announce_address: String,
    /// Set by a user `disconnect`: no automatic reconnects until the user connects again.
    pub disconnected: bool,
    pub trust: Trust,
    /// Set by the user: refused, never dialled. Kept apart from `trust` so `unblock`
    /// restores what the peer was.
    pub blocked: bool,
    /// The user's name for it.
    pub nickname: Option<String>,
    /// The key, for a record without an address (the address carries it otherwise).
    pub key: Option<PublicKey>,
}

impl KnownPeer {
    /// A peer we hold an announce address of, with the given trust.
    pub fn at(address: &AnnounceAddress, trust: Trust) -> Self {
        Self {
            announce_address: address.to_string(),
            disconnected: false,
            trust,
            blocked: false,
            nickname: None,
            key: None,
        }
    }

    pub fn address(&self) -> Option<AnnounceAddress> {
        self.announce_address.parse().ok()
    }

    /// The key pinned behind this name: names are short, so once a name is known only this
    /// key may use it (a stranger whose key maps to the same name never takes its place).
    pub fn pinned_key(&self) -> Option<PublicKey> {
        self.address().map(|a| a.public_key).or(self.key)
    }

    fn pins_another_key_than(&self, key: &PublicKey) -> bool {
        self.pinned_key().is_some_and(|pinned| pinned != *key)
    }

    pub fn is_friend(&self) -> bool {
        self.trust == Trust::Friend && !self.blocked
    }

    /// This record with a (possibly) new address; trust, block and nickname are kept.
    fn moved_to(&self, address: &AnnounceAddress) -> Self {
        Self {
            announce_address: address.to_string(),
            key: None,
            ..self.clone()
        }
    }
}

/// What the user chose about trusting peers nobody vouched for directly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustSettings {
    /// A friend's introduction makes a friend (the behaviour before friends-only).
    pub trust_introduced: bool,
    /// A LAN advert makes a friend.
    pub lan_trust: bool,
}

/// Why a connection, an announced address or a LAN advert is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("that is this node")]
    Ourselves,
    #[error("disconnected by the user")]
    DisconnectedByUser,
    #[error("another key is recorded under that name")]
    OtherKeyUnderName,
    #[error("already connected")]
    Connected,
    #[error("blocked by the user")]
    Blocked,
}

/// Whom an admitted connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Friend,
    /// Anyone else: its requests are refused with `NotAFriend` and it becomes a pending
    /// request the user may approve.
    Stranger,
}

/// Admission of an authenticated QUIC connection from (or to) `key`. An inbound connection
/// from a peer the user disconnected or blocked is refused; an outbound one was asked for.
pub fn admit(
    key: &PublicKey,
    own: &PublicKey,
    known: Option<&KnownPeer>,
    outbound: bool,
) -> Result<Admitted, Refusal> {
    if key == own {
        Err(Refusal::Ourselves)
    } else if known.is_some_and(|k| k.pins_another_key_than(key)) {
        Err(Refusal::OtherKeyUnderName)
    } else if known.is_some_and(|k| k.blocked) {
        Err(Refusal::Blocked)
    } else if !outbound && known.is_some_and(|k| k.disconnected) {
        Err(Refusal::DisconnectedByUser)
    } else if known.is_some_and(KnownPeer::is_friend) {
        Ok(Admitted::Friend)
    } else {
        Ok(Admitted::Stranger)
    }
}

/// What to do after remembering an announced address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// The peer announced itself: pass its address on to the other connected peers.
    Gossip,
    /// A friend's address for a peer not connected: dial it.
    Dial,
    /// Remember only (a suggestion, or the user disconnected it).
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceVerdict {
    Ignore(Refusal),
    Remember {
        record: KnownPeer,
        /// The record differs from the stored one and has to be written.
        changed: bool,
        then: FollowUp,
    },
}

/// `AnnouncePeer` from the friend holding `from_key` (strangers' requests never get here).
/// A peer's own address is accepted as given (its key is the one it authenticated with). A
/// third party's address only adds a peer we do not know or updates an offline one with the
/// same key: gossip never swaps the key behind a name, nor moves a peer that is connected,
/// nor undoes a user's disconnect or block. A third party we do not already call a friend
/// becomes a suggestion, not a friend, unless `trust_introduced`.
pub fn on_announce(
    from_key: &PublicKey,
    address: &AnnounceAddress,
    own: &PublicKey,
    known: Option<&KnownPeer>,
    connected: bool,
    settings: TrustSettings,
) -> AnnounceVerdict {
    if address.public_key == *own {
        return AnnounceVerdict::Ignore(Refusal::Ourselves);
    }
    if known.is_some_and(|k| k.pins_another_key_than(&address.public_key)) {
        return AnnounceVerdict::Ignore(Refusal::OtherKeyUnderName);
    }
    if known.is_some_and(|k| k.blocked) {
        return AnnounceVerdict::Ignore(Refusal::Blocked);
    }
    let introduces_itself = address.public_key == *from_key;
    if !introduces_itself && connected {
        return AnnounceVerdict::Ignore(Refusal::Connected);
    }
    let record = match known {
        Some(k) if introduces_itself || k.trust == Trust::Friend => k.moved_to(address),
        // Only friends' requests are answered, so a peer announcing itself is a friend.
        None if introduces_itself => KnownPeer::at(address, Trust::Friend),
        _ if settings.trust_introduced => KnownPeer {
            trust: Trust::Friend,
            ..known.map_or_else(
                || KnownPeer::at(address, Trust::Friend),
                |k| k.moved_to(address),
            )
        },
        // The first introducer is kept: a suggestion is not re-attributed by every echo.
        Some(k) => k.moved_to(address),
        None => KnownPeer::at(
            address,
            Trust::Suggested(Via::IntroducedBy(peer_name(from_key))),
        ),
    };
    let then = if introduces_itself {
        FollowUp::Gossip
    } else if record.disconnected || record.trust != Trust::Friend {
        FollowUp::Nothing
    } else {
        FollowUp::Dial
    };
    AnnounceVerdict::Remember {
        changed: known != Some(&record),
        record,
        then,
    }
}

/// `Introduce`: we pass on only the requester's own address, so nobody can use us to point
/// our peers at a third party.
pub fn may_pass_on_introduction(from_key: &PublicKey, address_text: &str) -> bool {
    address_text
        .parse::<AnnounceAddress>()
        .is_ok_and(|a| a.public_key == *from_key)
}

/// What a LAN advert (mDNS) leads to when it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanAction {
    pub record: KnownPeer,
    pub changed: bool,
    /// Dial now; otherwise the reconnect loop dials once the backoff allows.
    pub dial_now: bool,
}

/// An advert is unauthenticated, so it gets what gossip gets and no more: it may add a
/// suggestion (a friend with `lan_trust`) or move an offline friend with the same key, never
/// rebind a name, move a connected peer, or undo a user's disconnect or block. Dials follow
/// the peer's backoff, so repeated adverts cannot make the node redial in a tight loop.
pub fn on_lan_advert(
    address: &AnnounceAddress,
    own: &PublicKey,
    known: Option<&KnownPeer>,
    connected: bool,
    dial_due: bool,
    settings: TrustSettings,
) -> Result<LanAction, Refusal> {
    if address.public_key == *own {
        return Err(Refusal::Ourselves);
    }
    if known.is_some_and(|k| k.pins_another_key_than(&address.public_key)) {
        return Err(Refusal::OtherKeyUnderName);
    }
    if known.is_some_and(|k| k.blocked) {
        return Err(Refusal::Blocked);
    }
    if known.is_some_and(|k| k.disconnected) {
        return Err(Refusal::DisconnectedByUser);
    }
    if connected {
        return Err(Refusal::Connected);
    }
    let record = match known {
        Some(k) if k.trust == Trust::Friend => k.moved_to(address),
        _ if settings.lan_trust => KnownPeer {
            trust: Trust::Friend,
            ..known.map_or_else(
                || KnownPeer::at(address, Trust::Friend),
                |k| k.moved_to(address),
            )
        },
        Some(k) => KnownPeer {
            trust: Trust::Suggested(Via::Lan),
            ..k.moved_to(address)
        },
        None => KnownPeer::at(address, Trust::Suggested(Via::Lan)),
    };
    Ok(LanAction {
        changed: known != Some(&record),
        dial_now: dial_due && record.trust == Trust::Friend,
        record,
    })
}

/// Whether the reconnect loop should dial this known peer now: friends only.
pub fn should_redial(known: &KnownPeer, connected: bool, dialling: bool) -> bool {
    known.is_friend() && !known.disconnected && !connected && !dialling
}

/// How many connection requests from strangers are kept for the user to approve.
pub const MAX_PENDING: usize = 64;

/// A stranger that connected and asked for something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub name: String,
    pub key: PublicKey,
    /// Its own announce address, if it sent one (`AnnouncePeer` with its own key).
    pub announce_address: Option<String>,
    pub remote_address: String,
    /// Unix seconds of the latest attempt.
    pub last_seen: u64,
}

/// The pending requests, oldest first, at most [`MAX_PENDING`]: a stranger cannot grow
/// them without bound by connecting with fresh keys, it only pushes the oldest out.
#[derive(Debug, Default)]
pub struct PendingRequests {
    queue: VecDeque<PendingRequest>,
}

impl PendingRequests {
    /// Records a request; a repeat from the same key moves it to the newest place and keeps
    /// an announce address learnt earlier. Another key under a pending name replaces it
    /// (neither is trusted, and the newest is the one the user can see knocking).
    pub fn record(&mut self, mut request: PendingRequest) {
        if let Some(i) = self.queue.iter().position(|p| p.name == request.name) {
            if let Some(old) = self.queue.remove(i) {
                if old.key == request.key && request.announce_address.is_none() {
                    request.announce_address = old.announce_address;
                }
            }
        }
        self.queue.push_back(request);
        while self.queue.len() > MAX_PENDING {
            self.queue.pop_front();
        }
    }

    pub fn take(&mut self, name: &str) -> Option<PendingRequest> {
        let i = self.queue.iter().position(|p| p.name == name)?;
        self.queue.remove(i)
    }

    pub fn get(&self, name: &str) -> Option<&PendingRequest> {
        self.queue.iter().find(|p| p.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PendingRequest> {
        self.queue.iter()
    }
}

/// The record `approve` writes: a friend, at the address it told us (if any), pinned to its
/// key either way.
pub fn approved(
    existing: Option<&KnownPeer>,
    pending: Option<&PendingRequest>,
) -> Option<KnownPeer> {
    match (existing, pending) {
        (Some(k), p) => {
            let mut record = KnownPeer {
                trust: Trust::Friend,
                ..k.clone()
            };
            if record.address().is_none() {
                if let Some(a) = p.and_then(|p| p.announce_address.clone()) {
                    record.announce_address = a;
                }
            }
            Some(record)
        }
        (None, Some(p)) => {
            let address = p.announce_address.clone().unwrap_or_default();
            let key = (address.parse::<AnnounceAddress>().ok())
                .is_none()
                .then_some(p.key);
            Some(KnownPeer {
                announce_address: address,
                disconnected: false,
                trust: Trust::Friend,
                blocked: false,
                nickname: None,
                key,
            })
        }
        (None, None) => None,
    }
}

/// Where `approve` dials: back at the address the request came from (the requester's NAT
/// mapping, fresh since it just knocked, or the path it chose), with the key and NAT type
/// it announced. Without a knock, the announced address.
pub fn answer_knock_at(
    record: &KnownPeer,
    pending: Option<&PendingRequest>,
) -> Option<AnnounceAddress> {
    let announced = record.address()?;
    let knocked_from = pending.and_then(|p| p.remote_address.parse().ok());
    Some(AnnounceAddress {
        addr: knocked_from.unwrap_or(announced.addr),
        ..announced
    })
}

/// The record `block` writes for a peer we remember or that asked.
pub fn blocked(
    existing: Option<&KnownPeer>,
    pending: Option<&PendingRequest>,
) -> Option<KnownPeer> {
    let base = match (existing, pending) {
        (Some(k), _) => k.clone(),
        (None, Some(p)) => KnownPeer {
            trust: Trust::Stranger,
            ..approved(None, Some(p))?
        },
        (None, None) => return None,
    };
    Some(KnownPeer {
        blocked: true,
        ..base
    })
}

/// The `trust` the user sees: a block wins, then friendship, then a request, then a
/// suggestion.
pub fn trust_label(known: Option<&KnownPeer>, pending: bool) -> &'static str {
    match known {
        Some(k) if k.blocked => "blocked",
        Some(k) if k.trust == Trust::Friend => "friend",
        _ if pending => "pending",
        Some(_) => "suggested",
        None => "pending",
    }
}

/// What `unblock` leaves: the peer as it was before, or nothing for a stranger.
pub fn unblocked(existing: &KnownPeer) -> Option<KnownPeer> {
    (existing.trust != Trust::Stranger).then(|| KnownPeer {
        blocked: false,
        ..existing.clone()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// We dialled (true) or accepted (false) this connection.
    pub outbound: bool,
    /// Fingerprint of the certificate the peer presented; new per peer process.
    pub cert_fingerprint: [u8; 32],
    /// The connection is already closed.
    pub closed: bool,
}

/// Given an existing connection to a peer and a new one, decides whether the new one wins.
/// Both ends run the same rule, so they converge on the same connection:
/// - a closed existing connection, or a different certificate (the peer restarted), loses at once;
/// - two live connections from the same peer process: the one dialled by the lower key wins;
/// - two dialled by the same side: the newer wins (the dialler evidently gave up on the old one).
pub fn new_connection_wins(
    existing: ConnectionFacts,
    new: ConnectionFacts,
    our_key: &PublicKey,
    their_key: &PublicKey,
) -> bool {
    if existing.closed || existing.cert_fingerprint != new.cert_fingerprint {
        return true;
    }
    if existing.outbound == new.outbound {
        return true;
    }
    let dialler_key = |outbound: bool| if outbound { our_key } else { their_key };
    dialler_key(new.outbound) < dialler_key(existing.outbound)
}

/// Exponential reconnect backoff: 1 s doubling to a 5 minute ceiling.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    failures: u32,
    next_attempt: Instant,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    pub fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            next_attempt: now,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_attempt
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let delay = Self::BASE
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(Self::MAX);
        self.next_attempt = now + delay;
    }

    pub fn delay_after(&self, now: Instant) -> Duration {
        self.next_attempt.saturating_duration_since(now)
    }
}

/// The reconnect backoff of every peer name. A name with no entry is due.
#[derive(Debug, Default)]
pub struct Backoffs {
    by_name: HashMap<String, Backoff>,
}

impl Backoffs {
    pub fn is_due(&self, name: &str, now: Instant) -> bool {
        self.by_name.get(name).is_none_or(|b| b.due(now))
    }

    pub fn failed(&mut self, name: &str, now: Instant) {
        self.by_name
            .entry(name.to_string())
            .or_insert_with(|| Backoff::new(now))
            .failed(now);
    }

    /// A connection to `name` ended after `lived`: a young death is a failed attempt, a
    /// stable connection starts the backoff afresh.
    pub fn connection_ended(&mut self, name: &str, lived: Duration, now: Instant) {
        if lived >= STABLE_CONNECTION {
            self.forget(name);
        } else {
            self.failed(name, now);
        }
    }

    /// The user asked to connect: try at once.
    pub fn forget(&mut self, name: &str) {
        self.by_name.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const LOW: PublicKey = [1; 32];
    const HIGH: PublicKey = [2; 32];
    const OWN: PublicKey = [7; 32];

    fn address(key: PublicKey, port: u16) -> AnnounceAddress {
        AnnounceAddress {
            public_key: key,
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
            nat_type: crate::announce::NatType::None,
            relay: None,
        }
    }

    const NONE: TrustSettings = TrustSettings {
        trust_introduced: false,
        lan_trust: false,
    };

    fn known(key: PublicKey, disconnected: bool) -> KnownPeer {
        KnownPeer {
            disconnected,
            ..KnownPeer::at(&address(key, 4000), Trust::Friend)
        }
    }

    fn suggested(key: PublicKey) -> KnownPeer {
        KnownPeer::at(&address(key, 4000), Trust::Suggested(Via::Lan))
    }

    #[test]
    fn admission_refuses_self_user_disconnects_inbound_and_other_keys_under_a_name() {
        assert_eq!(admit(&OWN, &OWN, None, true), Err(Refusal::Ourselves));
        let off = known(LOW, true);
        assert_eq!(
            admit(&LOW, &OWN, Some(&off), false),
            Err(Refusal::DisconnectedByUser)
        );
        assert_eq!(
            admit(&LOW, &OWN, Some(&off), true),
            Ok(Admitted::Friend),
            "asked for"
        );
        assert_eq!(
            admit(&HIGH, &OWN, Some(&known(LOW, false)), true),
            Err(Refusal::OtherKeyUnderName)
        );
        let garbled = KnownPeer {
            announce_address: "not an address".into(),
            ..known(LOW, false)
        };
        assert_eq!(garbled.pinned_key(), None);
        assert_eq!(
            admit(&HIGH, &OWN, Some(&garbled), false),
            Ok(Admitted::Friend)
        );
        let keyed = KnownPeer {
            key: Some(LOW),
            ..garbled
        };
        assert_eq!(
            admit(&HIGH, &OWN, Some(&keyed), false),
            Err(Refusal::OtherKeyUnderName),
            "an approved peer without an address is pinned by its key"
        );
    }

    #[test]
    fn only_friends_are_admitted_as_friends_and_blocked_peers_not_at_all() {
        assert_eq!(admit(&LOW, &OWN, None, false), Ok(Admitted::Stranger));
        assert_eq!(
            admit(&LOW, &OWN, Some(&suggested(LOW)), false),
            Ok(Admitted::Stranger),
            "a suggestion is not a friend"
        );
        assert_eq!(
            admit(&LOW, &OWN, Some(&known(LOW, false)), false),
            Ok(Admitted::Friend)
        );
        let blocked_friend = KnownPeer {
            blocked: true,
            ..known(LOW, false)
        };
        for outbound in [false, true] {
            assert_eq!(
                admit(&LOW, &OWN, Some(&blocked_friend), outbound),
                Err(Refusal::Blocked)
            );
        }
    }

    #[test]
    fn an_own_announce_is_taken_and_gossiped_a_third_party_one_dialled() {
        let own = address(LOW, 4001);
        match on_announce(&LOW, &own, &OWN, Some(&known(LOW, false)), true, NONE) {
            AnnounceVerdict::Remember {
                record,
                changed,
                then,
            } => {
                assert_eq!(record.announce_address, own.to_string());
                assert!(changed, "the port moved");
                assert_eq!(then, FollowUp::Gossip);
            }
            other => panic!("{other:?}"),
        }
        let third = address(HIGH, 4002);
        assert!(matches!(
            on_announce(&LOW, &third, &OWN, Some(&known(HIGH, false)), false, NONE),
            AnnounceVerdict::Remember {
                changed: true,
                then: FollowUp::Dial,
                ..
            }
        ));
        assert!(matches!(
            on_announce(&LOW, &third, &OWN, Some(&known(HIGH, true)), false, NONE),
            AnnounceVerdict::Remember {
                then: FollowUp::Nothing,
                ref record,
                ..
            } if record.disconnected
        ));
    }

    #[test]
    fn gossip_never_rebinds_a_name_moves_a_connected_peer_or_echoes_us() {
        let third = address(HIGH, 4002);
        assert_eq!(
            on_announce(&LOW, &third, &OWN, None, true, NONE),
            AnnounceVerdict::Ignore(Refusal::Connected)
        );
        assert_eq!(
            on_announce(&LOW, &third, &OWN, Some(&known(LOW, false)), false, NONE),
            AnnounceVerdict::Ignore(Refusal::OtherKeyUnderName)
        );
        assert_eq!(
            on_announce(&LOW, &address(OWN, 1), &OWN, None, false, NONE),
            AnnounceVerdict::Ignore(Refusal::Ourselves)
        );
        let same = known(HIGH, false);
        assert!(matches!(
            on_announce(&HIGH, &address(HIGH, 4000), &OWN, Some(&same), true, NONE),
            AnnounceVerdict::Remember { changed: false, .. }
        ));
        let blocked = KnownPeer {
            blocked: true,
            ..same
        };
        assert_eq!(
            on_announce(&LOW, &third, &OWN, Some(&blocked), false, NONE),
            AnnounceVerdict::Ignore(Refusal::Blocked)
        );
    }

    #[test]
    fn an_introduced_stranger_is_a_suggestion_unless_introductions_are_trusted() {
        let third = address(HIGH, 4002);
        let introducer = peer_name(&LOW);
        match on_announce(&LOW, &third, &OWN, None, false, NONE) {
            AnnounceVerdict::Remember { record, then, .. } => {
                assert_eq!(
                    record.trust,
                    Trust::Suggested(Via::IntroducedBy(introducer.clone()))
                );
                assert_eq!(then, FollowUp::Nothing, "a suggestion is not dialled");
            }
            other => panic!("{other:?}"),
        }
        // A second friend's echo neither re-attributes nor promotes it.
        let first = KnownPeer::at(&third, Trust::Suggested(Via::IntroducedBy(introducer)));
        assert!(matches!(
            on_announce(&[3; 32], &third, &OWN, Some(&first), false, NONE),
            AnnounceVerdict::Remember {
                changed: false,
                then: FollowUp::Nothing,
                ..
            }
        ));
        let trusting = TrustSettings {
            trust_introduced: true,
            ..NONE
        };
        for earlier in [None, Some(&first)] {
            match on_announce(&LOW, &third, &OWN, earlier, false, trusting) {
                AnnounceVerdict::Remember { record, then, .. } => {
                    assert_eq!(record.trust, Trust::Friend);
                    assert_eq!(then, FollowUp::Dial);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn introductions_carry_only_the_requesters_own_address() {
        assert!(may_pass_on_introduction(&LOW, &address(LOW, 1).to_string()));
        assert!(!may_pass_on_introduction(
            &LOW,
            &address(HIGH, 1).to_string()
        ));
        assert!(!may_pass_on_introduction(&LOW, "garbage"));
    }

    #[test]
    fn lan_adverts_get_what_gossip_gets() {
        let advert = address(LOW, 4000);
        assert_eq!(
            on_lan_advert(&address(OWN, 1), &OWN, None, false, true, NONE),
            Err(Refusal::Ourselves)
        );
        let fresh = on_lan_advert(&advert, &OWN, None, false, true, NONE).unwrap();
        assert!(
            fresh.changed && !fresh.dial_now,
            "a LAN stranger is not dialled"
        );
        assert_eq!(fresh.record.trust, Trust::Suggested(Via::Lan));
        let trusting = TrustSettings {
            lan_trust: true,
            ..NONE
        };
        let trusted = on_lan_advert(&advert, &OWN, None, false, true, trusting).unwrap();
        assert!(trusted.dial_now && trusted.record.trust == Trust::Friend);
        let same = known(LOW, false);
        let again = on_lan_advert(&advert, &OWN, Some(&same), false, false, NONE).unwrap();
        assert!(!again.changed && !again.dial_now, "backing off: no dial");
        let friend = on_lan_advert(&advert, &OWN, Some(&same), false, true, NONE).unwrap();
        assert!(friend.dial_now, "a friend found on the LAN is dialled");
        let blocked = KnownPeer {
            blocked: true,
            ..known(LOW, false)
        };
        for (record, connected, why) in [
            (known(HIGH, false), false, Refusal::OtherKeyUnderName),
            (known(LOW, true), false, Refusal::DisconnectedByUser),
            (known(LOW, false), true, Refusal::Connected),
            (blocked, false, Refusal::Blocked),
        ] {
            assert_eq!(
                on_lan_advert(&advert, &OWN, Some(&record), connected, true, NONE),
                Err(why)
            );
        }
    }

    fn request(key: PublicKey, n: u64) -> PendingRequest {
        PendingRequest {
            name: peer_name(&key),
            key,
            announce_address: None,
            remote_address: "127.0.0.1:1".into(),
            last_seen: n,
        }
    }

    #[test]
    fn at_most_64_requests_are_kept_the_oldest_dropped() {
        let mut pending = PendingRequests::default();
        // Keys 0..=64 all have distinct names (the name comes from the first bytes).
        for i in 0..=MAX_PENDING as u8 {
            pending.record(request([i; 32], u64::from(i)));
        }
        assert_eq!(pending.iter().count(), MAX_PENDING);
        assert!(
            pending.get(&peer_name(&[0; 32])).is_none(),
            "oldest dropped"
        );
        assert!(pending.get(&peer_name(&[64; 32])).is_some());
    }

    #[test]
    fn a_repeated_request_keeps_its_address_and_approval_pins_the_key() {
        let mut pending = PendingRequests::default();
        let with_address = PendingRequest {
            announce_address: Some(address(LOW, 4000).to_string()),
            ..request(LOW, 1)
        };
        pending.record(with_address);
        pending.record(request(HIGH, 2));
        pending.record(request(LOW, 3));
        let name = peer_name(&LOW);
        assert_eq!(pending.iter().last().map(|p| p.last_seen), Some(3));
        let p = pending.take(&name).unwrap();
        assert!(p.announce_address.is_some(), "kept from the first attempt");
        let friend = approved(None, Some(&p)).unwrap();
        assert!(friend.is_friend() && friend.address().is_some());
        let raw = approved(None, Some(&request(HIGH, 4))).unwrap();
        assert_eq!(
            raw.pinned_key(),
            Some(HIGH),
            "no address: the key is pinned"
        );
        assert_eq!(approved(None, None), None);
        let promoted = approved(Some(&suggested(LOW)), None).unwrap();
        assert!(promoted.is_friend());
        let back = answer_knock_at(&friend, Some(&request(LOW, 5))).unwrap();
        assert_eq!(
            back.addr.to_string(),
            "127.0.0.1:1",
            "dialled where it knocked from"
        );
        assert_eq!(back.public_key, LOW);
        assert_eq!(answer_knock_at(&friend, None), friend.address());
        assert_eq!(answer_knock_at(&raw, Some(&request(HIGH, 4))), None);
    }

    #[test]
    fn block_and_unblock_restore_what_the_peer_was() {
        let friend = known(LOW, false);
        let b = blocked(Some(&friend), None).unwrap();
        assert_eq!(trust_label(Some(&b), false), "blocked");
        assert_eq!(unblocked(&b), Some(friend.clone()));
        let stranger = blocked(None, Some(&request(HIGH, 1))).unwrap();
        assert!(stranger.blocked && stranger.pinned_key() == Some(HIGH));
        assert_eq!(
            unblocked(&stranger),
            None,
            "an unblocked stranger is forgotten"
        );
        assert_eq!(trust_label(Some(&friend), true), "friend");
        assert_eq!(trust_label(Some(&suggested(LOW)), false), "suggested");
        assert_eq!(trust_label(Some(&suggested(LOW)), true), "pending");
        assert_eq!(trust_label(None, true), "pending");
    }

    #[test]
    fn redials_skip_disconnected_connected_and_in_flight_peers() {
        let k = known(LOW, false);
        assert!(should_redial(&k, false, false));
        assert!(!should_redial(&k, true, false));
        assert!(!should_redial(&k, false, true));
        assert!(!should_redial(&known(LOW, true), false, false));
        assert!(!should_redial(&suggested(LOW), false, false));
        let b = KnownPeer {
            blocked: true,
            ..known(LOW, false)
        };
        assert!(!should_redial(&b, false, false));
    }

    fn facts(outbound: bool, cert: u8) -> ConnectionFacts {
        ConnectionFacts {
            outbound,
            cert_fingerprint: [cert; 32],
            closed: false,
        }
    }

    #[test]
    fn both_ends_keep_the_same_connection_on_a_simultaneous_dial() {
        // LOW dialled connection X, HIGH dialled connection Y, same processes.
        // At LOW: X is outbound, Y inbound. At HIGH: X inbound, Y outbound.
        for (existing_is_x, label) in [(true, "X first"), (false, "Y first")] {
            let (low_existing, low_new) = if existing_is_x {
                (facts(true, 9), facts(false, 9))
            } else {
                (facts(false, 9), facts(true, 9))
            };
            let low_keeps_new = new_connection_wins(low_existing, low_new, &LOW, &HIGH);
            let low_keeps_x = existing_is_x != low_keeps_new;
            let (high_existing, high_new) = if existing_is_x {
                (facts(false, 7), facts(true, 7))
            } else {
                (facts(true, 7), facts(false, 7))
            };
            let high_keeps_new = new_connection_wins(high_existing, high_new, &HIGH, &LOW);
            let high_keeps_x = existing_is_x != high_keeps_new;
            assert!(
                low_keeps_x && high_keeps_x,
                "{label}: the connection dialled by the lower key wins at both ends"
            );
        }
    }

    #[test]
    fn a_restarted_peer_replaces_its_stale_connection_at_once() {
        // We (LOW) dialled HIGH long ago; HIGH crashed, restarted with a new certificate and
        // dialled us. The lower-key rule alone would keep our dead outbound connection.
        assert!(new_connection_wins(
            facts(true, 1),
            facts(false, 2),
            &LOW,
            &HIGH
        ));
        let closed = ConnectionFacts {
            closed: true,
            ..facts(true, 1)
        };
        assert!(new_connection_wins(closed, facts(false, 1), &LOW, &HIGH));
        assert!(new_connection_wins(
            facts(false, 1),
            facts(false, 1),
            &LOW,
            &HIGH
        ));
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let start = Instant::now();
        let mut b = Backoff::new(start);
        assert!(b.due(start));
        b.failed(start);
        assert_eq!(b.delay_after(start), Duration::from_secs(1));
        b.failed(start);
        assert_eq!(b.delay_after(start), Duration::from_secs(2));
        assert!(!b.due(start + Duration::from_secs(1)));
        for _ in 0..40 {
            b.failed(start);
        }
        assert_eq!(b.delay_after(start), Duration::from_secs(300));
    }

    #[test]
    fn young_connections_count_as_failures_stable_ones_reset() {
        let start = Instant::now();
        let mut backoffs = Backoffs::default();
        assert!(backoffs.is_due("a", start));
        backoffs.connection_ended("a", Duration::from_secs(2), start);
        assert!(!backoffs.is_due("a", start));
        assert!(backoffs.is_due("a", start + Duration::from_secs(1)));
        backoffs.failed("a", start);
        assert!(!backoffs.is_due("a", start + Duration::from_secs(1)));
        backoffs.connection_ended("a", STABLE_CONNECTION, start);
        assert!(backoffs.is_due("a", start));
    }
}
