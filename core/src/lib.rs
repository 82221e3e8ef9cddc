//! The pure rules of harddrive-party. Nothing here opens a socket, a file or a database, or
//! needs an async runtime: the compiler enforces it, since this crate depends on no tokio,
//! quinn, redb or axum. Each module is a set of plain types and functions, tested in memory;
//! the daemon crate is the I/O shell around them.

pub mod announce;
pub mod certificate;
pub mod config;
pub mod content;
pub mod health;
pub mod http_guard;
pub mod http_range;
pub mod invite;
pub mod membership;
pub mod notify;
pub mod peer_name;
pub mod peer_policy;
pub mod picker;
pub mod plan;
pub mod portmap;
pub mod punch;
pub mod rate;
pub mod stun;
pub mod transport;
pub mod turn;
pub mod watch;
pub mod wire;
