//! harddrive-party: a peer-to-peer file-sharing daemon. See ARCHITECTURE.md for the map.

pub mod announce;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod content;
pub mod events;
pub mod identity;
pub mod memory;
pub mod net;
pub mod node;
pub mod service;
pub mod shares;
pub mod store;
pub mod transfer;
pub mod wire;
