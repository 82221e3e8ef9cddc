//! Live peer connections. Decisions are pure functions so they are tested without sockets:
//! which of two connections to the same peer survives, and when to retry a known peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::identity::PublicKey;

/// Close code sent on a connection dropped in favour of another one to the same peer.
pub const CLOSE_DUPLICATE: u32 = 1;
/// Close code for a user `disconnect` or our shutdown.
pub const CLOSE_BY_USER: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// We dialled (true) or accepted (false) this connection.
    pub outbound: bool,
    /// Fingerprint of the certificate the peer presented; new per peer process.
    pub cert_fingerprint: [u8; 32],
    /// The connection is already closed.
    pub closed: bool,
}

/// Given an existing connection to a peer and a new one, decides whether the new one wins.
/// Both ends run the same rule, so they converge on the same connection:
/// - a closed existing connection, or a different certificate (the peer restarted), loses at once;
/// - two live connections from the same peer process: the one dialled by the lower key wins;
/// - two dialled by the same side: the newer wins (the dialler evidently gave up on the old one).
pub fn new_connection_wins(
    existing: ConnectionFacts,
    new: ConnectionFacts,
    our_key: &PublicKey,
    their_key: &PublicKey,
) -> bool {
    if existing.closed || existing.cert_fingerprint != new.cert_fingerprint {
        return true;
    }
    if existing.outbound == new.outbound {
        return true;
    }
    let dialler_key = |outbound: bool| if outbound { our_key } else { their_key };
    dialler_key(new.outbound) < dialler_key(existing.outbound)
}

/// Exponential reconnect backoff: 1 s doubling to a 5 minute ceiling.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    failures: u32,
    next_attempt: Instant,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    pub fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            next_attempt: now,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_attempt
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let delay = Self::BASE
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(Self::MAX);
        self.next_attempt = now + delay;
    }

    pub fn delay_after(&self, now: Instant) -> Duration {
        self.next_attempt.saturating_duration_since(now)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: PublicKey = [1; 32];
    const HIGH: PublicKey = [2; 32];

    fn facts(outbound: bool, cert: u8) -> ConnectionFacts {
        ConnectionFacts {
            outbound,
            cert_fingerprint: [cert; 32],
            closed: false,
        }
    }

    #[test]
    fn both_ends_keep_the_same_connection_on_a_simultaneous_dial() {
        // LOW dialled connection X, HIGH dialled connection Y, same processes.
        // At LOW: X is outbound, Y inbound. At HIGH: X inbound, Y outbound.
        for (existing_is_x, label) in [(true, "X first"), (false, "Y first")] {
            let (low_existing, low_new) = if existing_is_x {
                (facts(true, 9), facts(false, 9))
            } else {
                (facts(false, 9), facts(true, 9))
            };
            let low_keeps_new = new_connection_wins(low_existing, low_new, &LOW, &HIGH);
            let low_keeps_x = if existing_is_x {
                !low_keeps_new
            } else {
                low_keeps_new
            };
            let (high_existing, high_new) = if existing_is_x {
                (facts(false, 7), facts(true, 7))
            } else {
                (facts(true, 7), facts(false, 7))
            };
            let high_keeps_new = new_connection_wins(high_existing, high_new, &HIGH, &LOW);
            let high_keeps_x = if existing_is_x {
                !high_keeps_new
            } else {
                high_keeps_new
            };
            assert!(
                low_keeps_x && high_keeps_x,
                "{label}: the connection dialled by the lower key wins at both ends"
            );
        }
    }

    #[test]
    fn a_restarted_peer_replaces_its_stale_connection_at_once() {
        // We (LOW) dialled HIGH long ago; HIGH crashed, restarted with a new certificate and
        // dialled us. The lower-key rule alone would keep our dead outbound connection.
        assert!(new_connection_wins(
            facts(true, 1),
            facts(false, 2),
            &LOW,
            &HIGH
        ));
        let closed = ConnectionFacts {
            closed: true,
            ..facts(true, 1)
        };
        assert!(new_connection_wins(closed, facts(false, 1), &LOW, &HIGH));
        assert!(new_connection_wins(
            facts(false, 1),
            facts(false, 1),
            &LOW,
            &HIGH
        ));
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let start = Instant::now();
        let mut b = Backoff::new(start);
        assert!(b.due(start));
        b.failed(start);
        assert_eq!(b.delay_after(start), Duration::from_secs(1));
        b.failed(start);
        assert_eq!(b.delay_after(start), Duration::from_secs(2));
        assert!(!b.due(start + Duration::from_secs(1)));
        for _ in 0..40 {
            b.failed(start);
        }
        assert_eq!(b.delay_after(start), Duration::from_secs(300));
    }
}
