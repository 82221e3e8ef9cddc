//! The serving side of files still being downloaded: which running fetch answers for a
//! root, and which piece ranges it may serve.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::swarm::Swarm;
use crate::content::{Bitfield, Hash};
use crate::wire::WireError;

/// Whether a partial holder serves `pieces`: only a range within the file whose every
/// piece it holds verified.
pub fn check_served(have: &Bitfield, pieces: Range<u64>) -> Result<(), WireError> {
    if pieces.end > have.len() {
        return Err(WireError::BadRequest(format!(
            "piece range ends past the file's {} pieces",
            have.len()
        )));
    }
    if !have.holds_all(pieces) {
        return Err(WireError::NotHeld);
    }
    Ok(())
}

/// Files this node is fetching, by root: their verified pieces are served to other peers
/// before the file is complete.
#[derive(Default)]
pub struct Partials {
    /// Two downloads may fetch the same content at once (from different peers' paths);
    /// the first one offered is served, the next takes over when it ends.
    fetching: Mutex<HashMap<Hash, Vec<Offered>>>,
}

#[derive(Clone)]
pub struct Offered {
    pub swarm: Arc<Swarm>,
    /// How uploads from it are shown: the download's `peer/path`.
    pub label: Arc<str>,
}

impl Partials {
    /// Offers `swarm`'s pieces until the returned guard is dropped, which happens however
    /// the fetch ends, aborts included.
    pub fn offer(self: &Arc<Self>, swarm: &Arc<Swarm>, label: &str) -> OfferGuard {
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        fetching.entry(swarm.root).or_default().push(Offered {
            swarm: swarm.clone(),
            label: label.into(),
        });
        OfferGuard {
            partials: self.clone(),
            swarm: swarm.clone(),
        }
    }

    pub fn get(&self, root: &Hash) -> Option<Offered> {
        self.fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(root)
            .and_then(|offers| offers.first())
            .cloned()
    }
}

pub struct OfferGuard {
    partials: Arc<Partials>,
    swarm: Arc<Swarm>,
}

impl Drop for OfferGuard {
    fn drop(&mut self) {
        let mut fetching = self
            .partials
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(offers) = fetching.get_mut(&self.swarm.root) {
            offers.retain(|o| !Arc::ptr_eq(&o.swarm, &self.swarm));
            if offers.is_empty() {
                fetching.remove(&self.swarm.root);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::hash_piece;
    use crate::content::Bitfield;
    use crate::net::rpc::ContentHashes;
    use std::fs::File;

    #[test]
    fn partial_holders_serve_only_verified_pieces_within_the_file() {
        let have = Bitfield::with_pieces(5, [1, 2, 4]);
        assert_eq!(check_served(&have, 1..3), Ok(()));
        assert_eq!(check_served(&have, 4..5), Ok(()));
        assert_eq!(check_served(&have, 0..2), Err(WireError::NotHeld));
        assert_eq!(check_served(&have, 2..5), Err(WireError::NotHeld));
        assert!(matches!(
            check_served(&have, 4..6),
            Err(WireError::BadRequest(_))
        ));
    }

    #[test]
    fn a_fetch_is_offered_until_it_ends_and_a_second_one_of_the_same_root_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let content = || ContentHashes {
            size: 3,
            mtime: 0,
            root: [9; 32],
            pieces: vec![hash_piece(b"abc")],
        };
        let rate = Arc::new(crate::transfer::rate::RateLimiter::new(Default::default()));
        let swarm = || {
            let file = File::create(dir.path().join("f.part")).unwrap();
            Arc::new(Swarm::new(file, content(), Bitfield::new(1), rate.clone()))
        };
        let (first, second) = (swarm(), swarm());
        let partials = Arc::new(Partials::default());
        let first_offer = partials.offer(&first, "p/first");
        let second_offer = partials.offer(&second, "p/second");
        let served = |root| partials.get(&root).map(|o| o.label.to_string());
        assert_eq!(served([9; 32]).as_deref(), Some("p/first"));
        assert_eq!(served([8; 32]), None);
        drop(first_offer);
        assert_eq!(served([9; 32]).as_deref(), Some("p/second"));
        drop(second_offer);
        assert_eq!(served([9; 32]), None);
    }
}
