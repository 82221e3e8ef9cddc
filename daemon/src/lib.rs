//! harddrive-party: a peer-to-peer file-sharing daemon. See ARCHITECTURE.md for the map.

pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod identity;
pub mod local_time;
pub mod locks;
pub mod memory;
pub mod net;
pub mod node;
pub mod service;
pub mod shares;
pub mod store;
pub mod transfer;
pub mod wire;

// The pure rules, under the names the shells have always used.
pub use harddrive_party_core::{announce, content, watch};
