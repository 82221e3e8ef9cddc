//! Networking: the peer socket shared by QUIC and NAT traversal (`socket`), the QUIC
//! endpoint and its TLS identity checks (`quic`), STUN (`stun`), hole punching decisions
//! (`punch`) and their I/O (`traversal`), the TURN relay fallback (`turn`, `relay`), port
//! mapping on the home router (`portmap`), LAN discovery (`mdns`), and the live peer
//! connections with duplicate resolution and reconnect backoff (`peers`).

pub mod mdns;
pub mod peers;
pub mod portmap;
pub mod quic;
#[cfg(test)]
mod quic_close;
pub mod relay;
pub mod rpc;
pub mod socket;
pub mod traversal;

// STUN and TURN message codecs are pure (harddrive_party_core).
pub use harddrive_party_core::{punch, stun, turn};
