//! Live connections: which of two connections to one peer survives, and the reconnect
//! backoff of each name.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::peer_name::PublicKey;

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

/// The reconnect backoff of every peer name. A name with no entry is due.
#[derive(Debug, Default)]
pub struct Backoffs {
    by_name: HashMap<String, Backoff>,
}

impl Backoffs {
    pub fn is_due(&self, name: &str, now: Instant) -> bool {
        self.by_name.get(name).is_none_or(|b| b.due(now))
    }

    /// When `name` may be tried next; None when it may be tried now.
    pub fn next_attempt(&self, name: &str, now: Instant) -> Option<Instant> {
        self.by_name
            .get(name)
            .filter(|b| !b.due(now))
            .map(|b| b.next_attempt)
    }

    pub fn failed(&mut self, name: &str, now: Instant) {
        self.by_name
            .entry(name.to_string())
            .or_insert_with(|| Backoff::new(now))
            .failed(now);
    }

    /// A connection to `name` ended after `lived`: a young death is a failed attempt, a
    /// stable connection starts the backoff afresh.
    pub fn connection_ended(&mut self, name: &str, lived: Duration, now: Instant) {
        if lived >= STABLE_CONNECTION {
            self.forget(name);
        } else {
            self.failed(name, now);
        }
    }

    /// The user asked to connect: try at once.
    pub fn forget(&mut self, name: &str) {
        self.by_name.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
            let low_keeps_x = existing_is_x != low_keeps_new;
            let (high_existing, high_new) = if existing_is_x {
                (facts(false, 7), facts(true, 7))
            } else {
                (facts(true, 7), facts(false, 7))
            };
            let high_keeps_new = new_connection_wins(high_existing, high_new, &HIGH, &LOW);
            let high_keeps_x = existing_is_x != high_keeps_new;
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

    #[test]
    fn young_connections_count_as_failures_stable_ones_reset() {
        let start = Instant::now();
        let mut backoffs = Backoffs::default();
        assert!(backoffs.is_due("a", start));
        backoffs.connection_ended("a", Duration::from_secs(2), start);
        assert!(!backoffs.is_due("a", start));
        assert!(backoffs.is_due("a", start + Duration::from_secs(1)));
        backoffs.failed("a", start);
        assert!(!backoffs.is_due("a", start + Duration::from_secs(1)));
        backoffs.connection_ended("a", STABLE_CONNECTION, start);
        assert!(backoffs.is_due("a", start));
    }

    #[test]
    fn the_next_attempt_is_known_until_it_is_due() {
        let t0 = Instant::now();
        let mut backoffs = Backoffs::default();
        assert_eq!(
            backoffs.next_attempt("a", t0),
            None,
            "never failed: due now"
        );
        backoffs.failed("a", t0);
        backoffs.failed("a", t0);
        assert_eq!(
            backoffs.next_attempt("a", t0),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(
            backoffs.next_attempt("a", t0 + Duration::from_secs(2)),
            None
        );
        backoffs.forget("a");
        assert_eq!(backoffs.next_attempt("a", t0), None);
    }
}
