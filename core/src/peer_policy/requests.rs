//! Pending requests (strangers who knocked) and the trust changes the user makes:
//! approve, block, unblock, and the label each peer shows.

use std::collections::VecDeque;

use super::*;
use crate::announce::AnnounceAddress;
use crate::peer_name::PublicKey;

/// How many connection requests from strangers are kept for the user to approve.
pub const MAX_PENDING: usize = 64;

/// Strangers (joiners included) heard per source address and from all addresses together
/// in a minute; beyond that a stranger's connection is closed unheard, at no lasting cost.
pub const STRANGER_ATTEMPTS: crate::http_guard::AttemptLimits = crate::http_guard::AttemptLimits {
    window: std::time::Duration::from_secs(60),
    per_client: 20,
    total: 120,
};

/// Strangers heard at the same time (each holds a connection until it sent its request or
/// timed out).
pub const MAX_STRANGERS_AT_ONCE: usize = 16;

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
        (None, Some(p)) => Some(
            match p
                .announce_address
                .as_deref()
                .and_then(|a| a.parse::<AnnounceAddress>().ok())
            {
                Some(address) => KnownPeer::at(&address, Trust::Friend),
                None => KnownPeer::keyed(p.key, Trust::Friend),
            },
        ),
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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
}
