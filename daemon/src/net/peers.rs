//! The live peer connections, one per peer name. Which of two connections to the same peer
//! survives is decided by the pure `peer_policy::new_connection_wins`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::identity::PublicKey;

pub use harddrive_party_core::peer_policy::{
    new_connection_wins, ConnectionFacts, CLOSE_BY_USER, CLOSE_DUPLICATE,
};

#[derive(Clone)]
pub struct PeerConnection {
    pub name: String,
    pub key: PublicKey,
    pub connection: quinn::Connection,
    pub facts: ConnectionFacts,
    pub connected_at: std::time::SystemTime,
    /// The path runs through a TURN relay (still end-to-end encrypted QUIC).
    pub relayed: bool,
}

impl PeerConnection {
    pub fn remote_address(&self) -> SocketAddr {
        self.connection.remote_address()
    }

    fn live_facts(&self) -> ConnectionFacts {
        ConnectionFacts {
            closed: self.connection.close_reason().is_some(),
            ..self.facts
        }
    }
}

pub enum Registered {
    /// The new connection is now the peer's connection; the displaced one (if any) was closed.
    Accepted,
    /// An existing connection wins; the new one was closed.
    Rejected,
}

#[derive(Default)]
pub struct PeerTable {
    by_name: Mutex<HashMap<String, Arc<PeerConnection>>>,
}

impl PeerTable {
    pub fn get(&self, name: &str) -> Option<Arc<PeerConnection>> {
        self.by_name.lock().ok()?.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<PeerConnection>> {
        self.by_name
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn register(&self, new: PeerConnection, our_key: &PublicKey) -> Registered {
        let Ok(mut map) = self.by_name.lock() else {
            return Registered::Rejected;
        };
        let new = Arc::new(new);
        if let Some(existing) = map.get(&new.name) {
            if existing.key != new.key {
                // Names are short; a key ground to collide with a friend's name must not
                // take over that friend's connection.
                tracing::warn!("refusing a second key for the connected name {}", new.name);
                new.connection.close(CLOSE_DUPLICATE.into(), b"name in use");
                return Registered::Rejected;
            }
            if !new_connection_wins(existing.live_facts(), new.facts, our_key, &new.key) {
                new.connection.close(CLOSE_DUPLICATE.into(), b"duplicate");
                return Registered::Rejected;
            }
            existing
                .connection
                .close(CLOSE_DUPLICATE.into(), b"replaced");
        }
        map.insert(new.name.clone(), new);
        Registered::Accepted
    }

    /// Forgets the connection if it is still the registered one (a replaced one is ignored).
    pub fn remove_if_current(&self, name: &str, stable_id: usize) -> bool {
        let Ok(mut map) = self.by_name.lock() else {
            return false;
        };
        if map
            .get(name)
            .is_some_and(|c| c.connection.stable_id() == stable_id)
        {
            map.remove(name);
            return true;
        }
        false
    }

    pub fn remove(&self, name: &str) -> Option<Arc<PeerConnection>> {
        self.by_name.lock().ok()?.remove(name)
    }
}
