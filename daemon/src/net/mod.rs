//! Networking: the QUIC endpoint and its TLS identity checks (`quic`), and the live
//! peer connections with duplicate resolution and reconnect backoff (`peers`).

pub mod peers;
pub mod quic;
pub mod rpc;
