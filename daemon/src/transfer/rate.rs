//! Bandwidth limits at run time: the pure token-bucket arithmetic of
//! `harddrive_party_core::rate` (re-exported here) behind a lock, with the sleep.

use std::sync::Mutex;
use std::time::Instant;

pub use harddrive_party_core::rate::*;

/// The limiter every transfer in both directions paces itself through.
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            buckets: Mutex::new(Buckets::new(limits, Instant::now())),
        }
    }

    pub fn limits(&self) -> Limits {
        self.buckets.lock().map(|b| b.limits()).unwrap_or_default()
    }

    /// Applies new limits at once, to transfers already running too.
    pub fn set_limits(&self, limits: Limits) {
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.set_limits(limits, Instant::now());
        }
    }

    /// Whether any limit applies to `direction` now (globally or per peer).
    pub fn limited(&self, direction: Direction) -> bool {
        let l = self.limits();
        match direction {
            Direction::Upload => l.upload > 0 || l.peer_upload > 0,
            Direction::Download => l.download > 0 || l.peer_download > 0,
        }
    }

    /// Waits until `bytes` may pass for `peer` in `direction`.
    pub async fn pace(&self, peer: &str, direction: Direction, bytes: u64) {
        let wait = match self.buckets.lock() {
            Ok(mut buckets) => buckets.delay(peer, direction, bytes, Instant::now()),
            Err(_) => return,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
