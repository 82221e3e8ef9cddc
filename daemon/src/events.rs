//! Events pushed to `/ws` subscribers. JSON shapes are documented in API.md.

use serde::Serialize;

use crate::transfer::TransferView;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    PeerConnected {
        name: String,
        remote_address: String,
    },
    PeerDisconnected {
        name: String,
    },
    /// A request or suggestion arrived, or the user changed a peer's trust: the UI's
    /// badge of peers waiting for approval may be stale.
    PeersChanged,
    SharesChanged,
    Transfer(Box<TransferView>),
}

pub type EventSender = tokio::sync::broadcast::Sender<Event>;

pub fn channel() -> EventSender {
    tokio::sync::broadcast::channel(1024).0
}
