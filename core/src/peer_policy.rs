//! Peer policy: which connections are admitted, which announced addresses are remembered,
//! who is dialled and when, and which of two connections to one peer survives. One rule
//! set, each rule written once: the node hands in what it knows (the remembered record, the
//! live connections, the time) and carries out the answer. PROTOCOL.md §8 describes the
//! rules; the tests below are their executable form.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::announce::AnnounceAddress;
use crate::peer_name::PublicKey;

/// Close code sent on a connection dropped in favour of another one to the same peer.
pub const CLOSE_DUPLICATE: u32 = 1;
/// Close code for a user `disconnect` or our shutdown.
pub const CLOSE_BY_USER: u32 = 2;
/// A connection that lasted this long resets its peer's reconnect backoff; one that ends
/// sooner (for instance refused right after the handshake) counts as a failed attempt.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(60);

/// A peer the node remembers, by name (the database's `known_peers` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownPeer {
    pub announce_address: String,
    /// Set by a user `disconnect`: no automatic reconnects until the user connects again.
    pub disconnected: bool,
}

impl KnownPeer {
    pub fn address(&self) -> Option<AnnounceAddress> {
        self.announce_address.parse().ok()
    }

    /// The key pinned behind this name: names are short, so once a name is known only this
    /// key may use it (a stranger whose key maps to the same name never takes its place).
    pub fn pinned_key(&self) -> Option<PublicKey> {
        self.address().map(|a| a.public_key)
    }

    fn pins_another_key_than(&self, key: &PublicKey) -> bool {
        self.pinned_key().is_some_and(|pinned| pinned != *key)
    }
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
}

/// Admission of an authenticated QUIC connection from (or to) `key`. An inbound connection
/// from a peer the user disconnected is refused; an outbound one was asked for.
pub fn admit(
    key: &PublicKey,
    own: &PublicKey,
    known: Option<&KnownPeer>,
    outbound: bool,
) -> Result<(), Refusal> {
    if key == own {
        Err(Refusal::Ourselves)
    } else if !outbound && known.is_some_and(|k| k.disconnected) {
        Err(Refusal::DisconnectedByUser)
    } else if known.is_some_and(|k| k.pins_another_key_than(key)) {
        Err(Refusal::OtherKeyUnderName)
    } else {
        Ok(())
    }
}

/// What to do after remembering an announced address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// The peer announced itself: pass its address on to the other connected peers.
    Gossip,
    /// A third party's address for a peer not connected: dial it.
    Dial,
    /// Remember only (the user disconnected it).
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

/// `AnnouncePeer` from the peer holding `from_key`. A peer's own address is accepted as
/// given (its key is the one it authenticated with). A third party's address only adds a
/// peer we do not know or updates an offline one with the same key: gossip never swaps the
/// key behind a name, nor moves a peer that is connected, nor undoes a user's disconnect.
pub fn on_announce(
    from_key: &PublicKey,
    address: &AnnounceAddress,
    own: &PublicKey,
    known: Option<&KnownPeer>,
    connected: bool,
) -> AnnounceVerdict {
    if address.public_key == *own {
        return AnnounceVerdict::Ignore(Refusal::Ourselves);
    }
    if known.is_some_and(|k| k.pins_another_key_than(&address.public_key)) {
        return AnnounceVerdict::Ignore(Refusal::OtherKeyUnderName);
    }
    let introduces_itself = address.public_key == *from_key;
    if !introduces_itself && connected {
        return AnnounceVerdict::Ignore(Refusal::Connected);
    }
    let disconnected = known.is_some_and(|k| k.disconnected);
    let record = KnownPeer {
        announce_address: address.to_string(),
        disconnected,
    };
    let then = if introduces_itself {
        FollowUp::Gossip
    } else if disconnected {
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

/// An advert is unauthenticated, so it gets what gossip gets and no more: it may add a peer
/// or move an offline one with the same key, never rebind a name, move a connected peer, or
/// undo a user's disconnect. Dials follow the peer's backoff, so repeated adverts cannot
/// make the node redial in a tight loop.
pub fn on_lan_advert(
    address: &AnnounceAddress,
    own: &PublicKey,
    known: Option<&KnownPeer>,
    connected: bool,
    dial_due: bool,
) -> Result<LanAction, Refusal> {
    if address.public_key == *own {
        return Err(Refusal::Ourselves);
    }
    if known.is_some_and(|k| k.pins_another_key_than(&address.public_key)) {
        return Err(Refusal::OtherKeyUnderName);
    }
    if known.is_some_and(|k| k.disconnected) {
        return Err(Refusal::DisconnectedByUser);
    }
    if connected {
        return Err(Refusal::Connected);
    }
    let record = KnownPeer {
        announce_address: address.to_string(),
        disconnected: false,
    };
    Ok(LanAction {
        changed: known != Some(&record),
        record,
        dial_now: dial_due,
    })
}

/// Whether the reconnect loop should dial this known peer now.
pub fn should_redial(known: &KnownPeer, connected: bool, dialling: bool) -> bool {
    !known.disconnected && !connected && !dialling
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

    fn known(key: PublicKey, disconnected: bool) -> KnownPeer {
        KnownPeer {
            announce_address: address(key, 4000).to_string(),
            disconnected,
        }
    }

    #[test]
    fn admission_refuses_self_user_disconnects_inbound_and_other_keys_under_a_name() {
        assert_eq!(admit(&OWN, &OWN, None, true), Err(Refusal::Ourselves));
        assert_eq!(admit(&LOW, &OWN, None, false), Ok(()));
        let off = known(LOW, true);
        assert_eq!(
            admit(&LOW, &OWN, Some(&off), false),
            Err(Refusal::DisconnectedByUser)
        );
        assert_eq!(admit(&LOW, &OWN, Some(&off), true), Ok(()), "asked for");
        assert_eq!(
            admit(&HIGH, &OWN, Some(&known(LOW, false)), true),
            Err(Refusal::OtherKeyUnderName)
        );
        let garbled = KnownPeer {
            announce_address: "not an address".into(),
            disconnected: false,
        };
        assert_eq!(garbled.pinned_key(), None);
        assert_eq!(admit(&HIGH, &OWN, Some(&garbled), false), Ok(()));
    }

    #[test]
    fn an_own_announce_is_taken_and_gossiped_a_third_party_one_dialled() {
        let own = address(LOW, 4001);
        match on_announce(&LOW, &own, &OWN, Some(&known(LOW, false)), true) {
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
            on_announce(&LOW, &third, &OWN, None, false),
            AnnounceVerdict::Remember {
                changed: true,
                then: FollowUp::Dial,
                ..
            }
        ));
        assert!(matches!(
            on_announce(&LOW, &third, &OWN, Some(&known(HIGH, true)), false),
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
            on_announce(&LOW, &third, &OWN, None, true),
            AnnounceVerdict::Ignore(Refusal::Connected)
        );
        assert_eq!(
            on_announce(&LOW, &third, &OWN, Some(&known(LOW, false)), false),
            AnnounceVerdict::Ignore(Refusal::OtherKeyUnderName)
        );
        assert_eq!(
            on_announce(&LOW, &address(OWN, 1), &OWN, None, false),
            AnnounceVerdict::Ignore(Refusal::Ourselves)
        );
        let same = known(HIGH, false);
        assert!(matches!(
            on_announce(&HIGH, &address(HIGH, 4000), &OWN, Some(&same), true),
            AnnounceVerdict::Remember { changed: false, .. }
        ));
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
            on_lan_advert(&address(OWN, 1), &OWN, None, false, true),
            Err(Refusal::Ourselves)
        );
        let fresh = on_lan_advert(&advert, &OWN, None, false, true).unwrap();
        assert!(fresh.changed && fresh.dial_now);
        let same = known(LOW, false);
        let again = on_lan_advert(&advert, &OWN, Some(&same), false, false).unwrap();
        assert!(!again.changed && !again.dial_now, "backing off: no dial");
        for (record, connected, why) in [
            (known(HIGH, false), false, Refusal::OtherKeyUnderName),
            (known(LOW, true), false, Refusal::DisconnectedByUser),
            (known(LOW, false), true, Refusal::Connected),
        ] {
            assert_eq!(
                on_lan_advert(&advert, &OWN, Some(&record), connected, true),
                Err(why)
            );
        }
    }

    #[test]
    fn redials_skip_disconnected_connected_and_in_flight_peers() {
        let k = known(LOW, false);
        assert!(should_redial(&k, false, false));
        assert!(!should_redial(&k, true, false));
        assert!(!should_redial(&k, false, true));
        assert!(!should_redial(&known(LOW, true), false, false));
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
