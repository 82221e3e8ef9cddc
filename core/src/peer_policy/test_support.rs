//! Keys, addresses and records shared by the peer-policy tests.

use std::net::SocketAddr;

use super::*;

pub(super) const LOW: PublicKey = [1; 32];
pub(super) const HIGH: PublicKey = [2; 32];
pub(super) const OWN: PublicKey = [7; 32];

pub(super) fn address(key: PublicKey, port: u16) -> AnnounceAddress {
    AnnounceAddress {
        public_key: key,
        addr: SocketAddr::from(([10, 0, 0, 1], port)),
        nat_type: crate::announce::NatType::None,
        relay: None,
    }
}

pub(super) const NONE: TrustSettings = TrustSettings {
    trust_introduced: false,
    lan_trust: false,
};

pub(super) fn known(key: PublicKey, disconnected: bool) -> KnownPeer {
    KnownPeer {
        disconnected,
        ..KnownPeer::at(&address(key, 4000), Trust::Friend)
    }
}

pub(super) fn suggested(key: PublicKey) -> KnownPeer {
    KnownPeer::at(&address(key, 4000), Trust::Suggested(Via::Lan))
}
