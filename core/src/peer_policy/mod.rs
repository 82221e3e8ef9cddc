//! Peer policy: which connections are admitted, which announced addresses are remembered,
//! who is dialled and when, and which of two connections to one peer survives. One rule
//! set, each rule written once: the node hands in what it knows (the remembered record, the
//! live connections, the time) and carries out the answer. PROTOCOL.md §8 describes the
//! rules; the tests below are their executable form.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::announce::AnnounceAddress;
use crate::peer_name::{peer_name, PublicKey};

/// Close code sent on a connection dropped in favour of another one to the same peer.
pub const CLOSE_DUPLICATE: u32 = 1;
/// Close code for a user `disconnect` or our shutdown.
pub const CLOSE_BY_USER: u32 = 2;
/// Close code after a stranger's request was refused with `NotAFriend` and recorded.
pub const CLOSE_NOT_A_FRIEND: u32 = 3;
/// A download's source sent nothing mid-run for the stall timeout and then left a `Have`
/// unanswered: the peer is treated as gone (PROTOCOL.md §10 step 10).
pub const CLOSE_UNRESPONSIVE: u32 = 4;
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
    /// Joined with an invite limited to chosen shares: sees only the shares that name it
    /// ([`ShareAccess::admits`]), not those open to all friends.
    pub guest: bool,
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
            guest: false,
        }
    }

    /// A peer known only by its key (approved or joined before telling us its address).
    pub fn keyed(key: PublicKey, trust: Trust) -> Self {
        Self {
            announce_address: String::new(),
            disconnected: false,
            trust,
            blocked: false,
            nickname: None,
            key: Some(key),
            guest: false,
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

mod access;
mod connections;
mod requests;
#[cfg(test)]
mod test_support;

pub use access::*;
pub use connections::*;
pub use requests::*;

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

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
}
