//! Who sees which share, and the friend an invite makes. Served answers consult
//! [`ShareAccess::admits`] and nothing else, so a peer never learns the name or size of a
//! share it cannot see (PROTOCOL.md §8.11).

use serde::{Deserialize, Serialize};

use super::{KnownPeer, Trust};
use crate::announce::AnnounceAddress;
use crate::invite::Invite;
use crate::peer_name::PublicKey;

/// Peers one share may list by name.
pub const MAX_SHARE_PEERS: usize = 256;

/// A share's audience. The default is every friend; a guest is admitted only by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareAccess {
    pub all_friends: bool,
    /// Sorted, without repeats.
    pub peers: Vec<String>,
}

impl Default for ShareAccess {
    fn default() -> Self {
        Self {
            all_friends: true,
            peers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("a share lists at most {MAX_SHARE_PEERS} peers")]
    TooManyPeers,
    #[error("{0} is not a friend of this node")]
    NotAFriend(String),
}

impl ShareAccess {
    /// Only the peers named, checked against the remembered friends.
    pub fn only(
        mut peers: Vec<String>,
        is_friend: impl Fn(&str) -> bool,
    ) -> Result<Self, AccessError> {
        peers.sort();
        peers.dedup();
        if peers.len() > MAX_SHARE_PEERS {
            return Err(AccessError::TooManyPeers);
        }
        if let Some(stranger) = peers.iter().find(|p| !is_friend(p)) {
            return Err(AccessError::NotAFriend(stranger.clone()));
        }
        Ok(Self {
            all_friends: false,
            peers,
        })
    }

    /// Whether the friend `peer` (a guest or not) sees this share.
    pub fn admits(&self, peer: &str, guest: bool) -> bool {
        (self.all_friends && !guest)
            || self
                .peers
                .binary_search_by(|p| p.as_str().cmp(peer))
                .is_ok()
    }

    /// This access with `peer` named too (an invite's grant). `None` when it already was,
    /// or the list is full (the grant then fails closed: the guest does not see it).
    pub fn granted_to(&self, peer: &str) -> Option<Self> {
        let at = self
            .peers
            .binary_search_by(|p| p.as_str().cmp(peer))
            .err()?;
        if self.peers.len() >= MAX_SHARE_PEERS {
            return None;
        }
        let mut peers = self.peers.clone();
        peers.insert(at, peer.to_string());
        Some(Self {
            peers,
            ..self.clone()
        })
    }

    /// This access without `peer` (it was forgotten: its name may later belong to another
    /// key). `None` when it was not named.
    pub fn without(&self, peer: &str) -> Option<Self> {
        let at = self.peers.binary_search_by(|p| p.as_str().cmp(peer)).ok()?;
        let mut peers = self.peers.clone();
        peers.remove(at);
        Some(Self {
            peers,
            ..self.clone()
        })
    }
}

/// The record a redeemed invite writes for the joiner: a friend pinned to the key it
/// authenticated with, at the address it told us (if that address carries the same key). A
/// share-limited invite makes a guest, unless the joiner was a full friend already.
pub fn joined(
    existing: Option<&KnownPeer>,
    key: &PublicKey,
    announce_address: Option<&AnnounceAddress>,
    invite: &Invite,
) -> KnownPeer {
    let address = announce_address.filter(|a| a.public_key == *key);
    let was_full_friend = existing.is_some_and(|k| k.trust == Trust::Friend && !k.guest);
    let base = existing
        .cloned()
        .unwrap_or_else(|| KnownPeer::keyed(*key, Trust::Friend));
    let mut record = KnownPeer {
        trust: Trust::Friend,
        guest: invite.shares.is_some() && !was_full_friend,
        disconnected: false,
        ..base
    };
    if let Some(address) = address {
        record.announce_address = address.to_string();
        record.key = None;
    }
    record
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::invite::{InviteRequest, INVITE_ID_BYTES};

    fn invite(shares: Option<Vec<String>>) -> Invite {
        let known = ["Music".to_string(), "Photos".to_string()];
        InviteRequest::checked(None, None, shares, &known)
            .unwrap()
            .invite([1; INVITE_ID_BYTES], &[2; 16], 100)
    }

    #[test]
    fn friends_see_open_shares_guests_only_named_ones() {
        let open = ShareAccess::default();
        assert!(open.admits("Ann", false));
        assert!(!open.admits("Gus", true));
        let granted = open.granted_to("Gus").unwrap();
        assert!(granted.admits("Gus", true) && granted.admits("Ann", false));
        assert_eq!(granted.granted_to("Gus"), None);
        let only =
            ShareAccess::only(vec!["Bob".into(), "Ann".into(), "Bob".into()], |_| true).unwrap();
        assert_eq!(only.peers, ["Ann", "Bob"]);
        assert!(only.admits("Ann", false) && only.admits("Bob", true));
        assert!(!only.admits("Cat", false));
        let forgotten = only.without("Ann").unwrap();
        assert!(!forgotten.admits("Ann", false));
        assert_eq!(forgotten.without("Ann"), None);
    }

    #[test]
    fn only_names_friends_and_is_bounded() {
        assert_eq!(
            ShareAccess::only(vec!["Eve".into()], |p| p != "Eve"),
            Err(AccessError::NotAFriend("Eve".into()))
        );
        let many: Vec<String> = (0..=MAX_SHARE_PEERS).map(|i| format!("p{i}")).collect();
        assert_eq!(
            ShareAccess::only(many.clone(), |_| true),
            Err(AccessError::TooManyPeers)
        );
        let full = ShareAccess::only(many[..MAX_SHARE_PEERS].to_vec(), |_| true).unwrap();
        assert_eq!(full.granted_to("zzz"), None);
    }

    #[test]
    fn an_invite_makes_a_friend_or_a_guest_pinned_to_its_key() {
        let everything = joined(None, &LOW, Some(&address(LOW, 5000)), &invite(None));
        assert!(everything.is_friend() && !everything.guest);
        assert_eq!(everything.pinned_key(), Some(LOW));
        let guest = joined(None, &LOW, None, &invite(Some(vec!["Music".into()])));
        assert!(guest.is_friend() && guest.guest);
        assert_eq!(guest.pinned_key(), Some(LOW));
        // An address carrying another key is not taken.
        let lied = joined(None, &LOW, Some(&address(HIGH, 5000)), &invite(None));
        assert_eq!(lied.address(), None);
        assert_eq!(lied.pinned_key(), Some(LOW));
        // A full friend stays one; a suggestion is promoted.
        let friend = known(LOW, true);
        let again = joined(
            Some(&friend),
            &LOW,
            None,
            &invite(Some(vec!["Music".into()])),
        );
        assert!(!again.guest && !again.disconnected && again.is_friend());
        let promoted = joined(Some(&suggested(LOW)), &LOW, None, &invite(None));
        assert!(promoted.is_friend());
    }
}
