//! Who a running fetch asks `Have` again (PROTOCOL.md §10 step 6). A fetch learns of news
//! about a peer — it connected or reconnected, or it pushed `Hashed` — and asks that peer
//! once the per-peer interval allows, while the swarm has room. Pure: the daemon hands in
//! peer names and the time in milliseconds on any monotonic clock.

use std::collections::{BTreeMap, BTreeSet};

/// A fetch asks one peer at most once per interval, however often it hears news of it: a
/// peer pushing `Hashed` in a loop costs each fetch one small request per interval.
pub const ASK_INTERVAL_MS: u64 = 2_000;
/// A node pushes `Hashed` to its peers at most this often; files hashed meanwhile ride
/// on the next push.
pub const PUSH_INTERVAL_MS: u64 = 2_000;
/// Sources of one file at once (the named peer included): each is a worker and a stream.
pub const MAX_SOURCES: usize = 16;

/// The swarm membership of one fetch.
#[derive(Debug, Default)]
pub struct Membership {
    /// Peers with news not asked about yet.
    wanted: BTreeSet<String>,
    /// When each peer was last asked; only peers asked within the interval are kept.
    asked: BTreeMap<String, u64>,
    /// Peers serving this fetch now.
    sources: BTreeSet<String>,
    /// Peers dropped for a bad piece: never asked again by this fetch.
    dropped: BTreeSet<String>,
}

impl Membership {
    /// `peer` was asked at `now` (the fetch's first round of asks).
    pub fn asked(&mut self, peer: &str, now: u64) {
        self.asked.insert(peer.to_string(), now);
    }

    /// `peer` became a source.
    pub fn joined(&mut self, peer: &str) {
        self.sources.insert(peer.to_string());
    }

    /// `peer`'s worker ended; one that served a bad piece is never asked again, any other
    /// may rejoin after news of it (a reconnect, say).
    pub fn left(&mut self, peer: &str, bad: bool) {
        self.sources.remove(peer);
        if bad {
            self.dropped.insert(peer.to_string());
            self.wanted.remove(peer);
        }
    }

    /// News of `peer`: it connected, or says it hashed new content. News of a current
    /// source is kept until it leaves: a reconnect is heard before the old connection's
    /// worker fails.
    pub fn news(&mut self, peer: &str) {
        if !self.dropped.contains(peer) {
            self.wanted.insert(peer.to_string());
        }
    }

    /// The peers to ask now, each recorded as asked at `now`: those with news whose last
    /// ask is at least [`ASK_INTERVAL_MS`] old, no more than the swarm has room for. The
    /// others wait for a later call.
    pub fn due(&mut self, now: u64) -> Vec<String> {
        self.asked
            .retain(|_, at| now.saturating_sub(*at) < ASK_INTERVAL_MS);
        let room = MAX_SOURCES.saturating_sub(self.sources.len());
        let due: Vec<String> = self
            .wanted
            .iter()
            .filter(|p| !self.asked.contains_key(*p) && !self.sources.contains(*p))
            .take(room)
            .cloned()
            .collect();
        for peer in &due {
            self.wanted.remove(peer);
            self.asked.insert(peer.clone(), now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_of_a_peer_asks_it_once_per_interval() {
        let mut m = Membership::default();
        m.asked("a", 0);
        m.news("a");
        m.news("b");
        assert_eq!(m.due(100), vec!["b".to_string()]);
        // Repeated news within the interval: still one ask, once the interval has passed.
        m.news("a");
        m.news("b");
        assert!(m.due(1_999).is_empty());
        assert_eq!(m.due(2_000), vec!["a".to_string()]);
        assert_eq!(m.due(2_100), vec!["b".to_string()]);
        // Nothing new: nothing asked.
        assert!(m.due(10_000).is_empty());
    }

    #[test]
    fn sources_are_not_asked_and_a_bad_one_never_again() {
        let mut m = Membership::default();
        m.joined("a");
        m.joined("b");
        m.news("a");
        assert!(m.due(0).is_empty());
        // "a" reconnected, and then its old connection's worker failed: asked again.
        m.left("a", false);
        assert_eq!(m.due(1), vec!["a".to_string()]);
        // "b" served a bad piece: no news brings it back.
        m.left("b", true);
        m.news("b");
        assert!(m.due(10_000).is_empty());
    }

    #[test]
    fn a_full_swarm_asks_nobody_until_a_source_leaves() {
        let mut m = Membership::default();
        for i in 0..MAX_SOURCES {
            m.joined(&format!("s{i}"));
        }
        m.news("late");
        assert!(m.due(0).is_empty());
        m.left("s3", false);
        assert_eq!(m.due(1), vec!["late".to_string()]);
        // Room for two, three with news: two asked now, the third after the next leave.
        m.joined("late");
        m.left("s4", false);
        m.left("s5", false);
        for p in ["x", "y", "z"] {
            m.news(p);
        }
        assert_eq!(m.due(2), vec!["x".to_string(), "y".to_string()]);
        m.joined("x");
        m.joined("y");
        assert!(m.due(3).is_empty());
        m.left("x", false);
        assert_eq!(m.due(4), vec!["z".to_string()]);
    }
}
