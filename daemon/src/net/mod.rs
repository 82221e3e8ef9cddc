//! Networking: the QUIC endpoint and its TLS identity checks (`quic`), the live peer
//! connections with duplicate resolution and reconnect backoff (`peers`), and LAN
//! discovery (`mdns`).

pub mod mdns;
pub mod peers;
pub mod quic;
pub mod rpc;
