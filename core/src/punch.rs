//! Hole punching decisions and the probe format, free of sockets and clocks: which approach a
//! pair of NAT types needs, when the next probe goes out, and which ports the birthday spray
//! walks. `traversal.rs` carries these out. The rules are in PROTOCOL.md, "NAT traversal".

use std::net::SocketAddr;
use std::time::Duration;

use crate::announce::NatType;
use crate::peer_name::PublicKey;

/// Fixed bit (0x40) clear so the peer socket diverts it from QUIC; not STUN (no cookie).
const PROBE_MAGIC: [u8; 4] = [0x83, b'h', b'd', b'p'];
const PROBE_VERSION: u8 = 1;
pub const PROBE_LEN: usize = PROBE_MAGIC.len() + 2 + 32;

/// How long one punching attempt may take before the dial falls back (relay) or fails.
pub const PUNCH_DEADLINE: Duration = Duration::from_secs(8);
/// The symmetric side's extra sockets in the birthday method; the lab needed a median of
/// 175 probes against 256 sockets (PROTOCOL.md).
pub const BIRTHDAY_SOCKETS: usize = 256;
/// The cone side's spray rate: fast enough to find a socket in about a second, slow enough
/// for a home router's connection table.
pub const SPRAY_PER_SECOND: u32 = 1000;
const FIRST_PORT: u16 = 1024;
const PORT_SPAN: u32 = 65536 - FIRST_PORT as u32;

/// Whether a datagram on the peer socket is ours (STUN answers, punch probes) rather than
/// QUIC's: our endpoints never grease the QUIC fixed bit, so the bit alone tells them apart.
pub fn is_control(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0x40 == 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// "I am trying to reach you": answered at once with an `Ack` from the same socket.
    Probe,
    /// "Your probe reached me": the path is open in both directions.
    Ack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchProbe {
    pub kind: ProbeKind,
    /// The sender's peer key. It only tells the receiver which punch this belongs to; it is
    /// not trusted: the QUIC handshake that follows authenticates the peer.
    pub sender: PublicKey,
}

impl PunchProbe {
    pub fn encode(&self) -> [u8; PROBE_LEN] {
        let mut out = [0u8; PROBE_LEN];
        out[..4].copy_from_slice(&PROBE_MAGIC);
        out[4] = PROBE_VERSION;
        out[5] = match self.kind {
            ProbeKind::Probe => 1,
            ProbeKind::Ack => 2,
        };
        out[6..].copy_from_slice(&self.sender);
        out
    }

    /// Anything but an exact, well-formed probe is `None` (and dropped by the caller).
    pub fn decode(datagram: &[u8]) -> Option<Self> {
        if datagram.len() != PROBE_LEN
            || datagram[..4] != PROBE_MAGIC
            || datagram[4] != PROBE_VERSION
        {
            return None;
        }
        let kind = match datagram[5] {
            1 => ProbeKind::Probe,
            2 => ProbeKind::Ack,
            _ => return None,
        };
        Some(Self {
            kind,
            sender: datagram[6..].try_into().ok()?,
        })
    }
}

/// How to get a QUIC path to a peer, from both sides' NAT types (ours first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approach {
    /// Dial the announced address: the peer has no NAT, or nothing is known (LAN, no STUN).
    Direct,
    /// Both keep their mapping per socket: probe each other's mapped address from the peer
    /// socket, then dial the address that answered.
    Punch,
    /// We are cone, the peer symmetric: spray probes over the peer IP's ports while its
    /// birthday sockets probe us; the peer dials from the socket that heard us.
    SprayPorts,
    /// We are symmetric, the peer cone: probe it from many fresh sockets and dial from the
    /// first one it answers (the reverse roles failed in the lab).
    BirthdaySockets,
    /// Both symmetric: no direct path is possible; use a TURN relay.
    Relay,
}

pub fn approach(ours: NatType, theirs: NatType) -> Approach {
    use NatType::*;
    match (ours, theirs) {
        (_, None | Unknown) => Approach::Direct,
        (Symmetric, Symmetric) => Approach::Relay,
        (Cone, Symmetric) => Approach::SprayPorts,
        (Symmetric, Cone) => Approach::BirthdaySockets,
        // Without a NAT of our own the peer's probes open its side; ours are answered.
        (None | Unknown | Cone, Cone) => Approach::Punch,
        // A symmetric peer dials us; our direct attempt costs one handshake timeout.
        (None | Unknown, Symmetric) => Approach::Direct,
    }
}

/// Which way a dial through TURN goes (PROTOCOL.md, "Relay").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRoute {
    /// From our own allocation to the peer's relayed address. Both allocations are on one
    /// server, and every node lets its server's relay IP reach its allocation, so this
    /// reaches a peer that has never heard of us (an inviter, for a joiner): the only
    /// IP its allocation could be expected to admit is the server's own.
    RelayToRelay(SocketAddr),
    /// From the peer socket to the peer's relayed address: the peer admits our public IP
    /// only because it is dialling us too (two friends who swapped addresses).
    SocketToRelay(SocketAddr),
    /// The peer has no relay: it has to dial our relayed address.
    AwaitInbound,
}

/// `ours` and `theirs`: the two relayed addresses, where known.
pub fn relay_route(ours: Option<SocketAddr>, theirs: Option<SocketAddr>) -> RelayRoute {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours.ip() == theirs.ip() => RelayRoute::RelayToRelay(theirs),
        (_, Some(theirs)) => RelayRoute::SocketToRelay(theirs),
        (_, None) => RelayRoute::AwaitInbound,
    }
}

/// Gap before the next probe of a punch: dense at first, because both sides start within
/// moments of each other and the first probe through decides the time to connect.
pub fn probe_interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(2) {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(250)
    }
}

/// A walk over every port in 1024..=65535 exactly once, in a scattered order: `start` and
/// `step` come from random bytes; a step coprime to the span (64512 = 2^10 * 3^2 * 7)
/// guarantees no port repeats before all were tried.
#[derive(Debug, Clone)]
pub struct SprayPorts {
    position: u32,
    step: u32,
    remaining: u32,
}

impl SprayPorts {
    pub fn new(random: [u8; 8]) -> Self {
        let start = u32::from_le_bytes([random[0], random[1], random[2], random[3]]) % PORT_SPAN;
        let mut step = u32::from_le_bytes([random[4], random[5], random[6], random[7]]) % PORT_SPAN;
        while step % 2 == 0 || step % 3 == 0 || step % 7 == 0 {
            step = (step + 1) % PORT_SPAN;
        }
        Self {
            position: start,
            step,
            remaining: PORT_SPAN,
        }
    }
}

impl Iterator for SprayPorts {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let port = FIRST_PORT as u32 + self.position;
        self.position = (self.position + self.step) % PORT_SPAN;
        u16::try_from(port).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_relay_dial_goes_relay_to_relay_only_on_one_server() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let (ours, theirs) = (addr("203.0.113.1:50000"), addr("203.0.113.1:50002"));
        assert_eq!(
            relay_route(Some(ours), Some(theirs)),
            RelayRoute::RelayToRelay(theirs)
        );
        // Another server would not admit our server's IP: dial from the peer socket.
        let elsewhere = addr("198.51.100.7:3478");
        assert_eq!(
            relay_route(Some(ours), Some(elsewhere)),
            RelayRoute::SocketToRelay(elsewhere)
        );
        assert_eq!(
            relay_route(None, Some(theirs)),
            RelayRoute::SocketToRelay(theirs)
        );
        assert_eq!(relay_route(Some(ours), None), RelayRoute::AwaitInbound);
        assert_eq!(relay_route(None, None), RelayRoute::AwaitInbound);
    }

    #[test]
    fn probes_round_trip_and_reject_garbage() {
        let probe = PunchProbe {
            kind: ProbeKind::Ack,
            sender: [9; 32],
        };
        let bytes = probe.encode();
        assert!(is_control(&bytes));
        assert!(!crate::stun::looks_like_stun(&bytes));
        assert_eq!(PunchProbe::decode(&bytes), Some(probe));
        assert_eq!(PunchProbe::decode(&bytes[..PROBE_LEN - 1]), None);
        let mut wrong_kind = bytes;
        wrong_kind[5] = 7;
        assert_eq!(PunchProbe::decode(&wrong_kind), None);
        let mut wrong_version = bytes;
        wrong_version[4] = 2;
        assert_eq!(PunchProbe::decode(&wrong_version), None);
    }

    #[test]
    fn approach_matrix() {
        use NatType::*;
        assert_eq!(approach(Cone, None), Approach::Direct);
        assert_eq!(approach(Symmetric, Unknown), Approach::Direct);
        assert_eq!(approach(Cone, Cone), Approach::Punch);
        assert_eq!(approach(None, Cone), Approach::Punch);
        assert_eq!(approach(Cone, Symmetric), Approach::SprayPorts);
        assert_eq!(approach(Symmetric, Cone), Approach::BirthdaySockets);
        assert_eq!(approach(Symmetric, Symmetric), Approach::Relay);
        assert_eq!(approach(None, Symmetric), Approach::Direct);
    }

    #[test]
    fn spray_covers_every_port_once() {
        for seed in [[0u8; 8], [255; 8], [1, 2, 3, 4, 5, 6, 7, 8]] {
            let ports: Vec<u16> = SprayPorts::new(seed).collect();
            assert_eq!(ports.len(), PORT_SPAN as usize);
            let distinct: HashSet<u16> = ports.iter().copied().collect();
            assert_eq!(distinct.len(), ports.len());
            assert!(ports.iter().all(|p| *p >= FIRST_PORT));
        }
    }

    #[test]
    fn probes_are_dense_then_sparse() {
        assert!(probe_interval(Duration::ZERO) < probe_interval(Duration::from_secs(5)));
    }
}
