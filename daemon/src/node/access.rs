//! Per-share access: who sees each share (`peer_policy::ShareAccess`), what the user
//! changes, and the view of the shares a requesting friend gets (`shares::FriendView`).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Node, NodeError};
use crate::shares::{FriendView, SharesError};
use harddrive_party_core::peer_policy::ShareAccess;

/// A share as `/api/shares` and `shares --json` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ShareView {
    pub name: String,
    pub dir: std::path::PathBuf,
    pub size: u64,
    /// False while the share's directory is missing or not a directory (hidden meanwhile).
    pub available: bool,
    pub visible_to: ShareAccess,
}

impl Node {
    /// Our shares with their audiences.
    pub fn share_views(&self) -> Result<Vec<ShareView>, NodeError> {
        let mut accesses = self.store.share_accesses()?;
        Ok(self
            .library
            .list()?
            .into_iter()
            .map(|s| ShareView {
                visible_to: accesses.remove(&s.name).unwrap_or_default(),
                name: s.name,
                dir: s.dir,
                size: s.size,
                available: s.available,
            })
            .collect())
    }

    /// Sets who sees `share`: every friend, or only the friends named.
    pub fn set_share_access(
        &self,
        share: &str,
        all_friends: bool,
        peers: Vec<String>,
    ) -> Result<ShareAccess, NodeError> {
        if !self.library.shares().roots().contains_key(share) {
            return Err(SharesError::UnknownShare(share.to_string()).into());
        }
        let access = if all_friends {
            // Guests named on the share keep it; friends need no naming any more.
            let guests = self
                .store
                .share_accesses()?
                .remove(share)
                .map(|a| a.peers)
                .unwrap_or_default()
                .into_iter()
                .filter(|name| {
                    self.store
                        .known_peer(name)
                        .ok()
                        .flatten()
                        .is_some_and(|k| k.guest)
                })
                .collect();
            ShareAccess {
                all_friends: true,
                peers: guests,
            }
        } else {
            ShareAccess::only(peers, |name| {
                self.store
                    .known_peer(name)
                    .ok()
                    .flatten()
                    .is_some_and(|k| k.is_friend())
            })?
        };
        self.store.put_share_access(share, &access)?;
        // Other open UIs redraw the share's "Visible to".
        let _ = self.events.send(crate::events::Event::SharesChanged);
        tracing::info!(
            "{share} is now visible to {}",
            if access.all_friends {
                "all friends".to_string()
            } else {
                access.peers.join(", ")
            }
        );
        Ok(access)
    }

    /// What the friend `name` may see, as the only door to the shares the server uses.
    pub(super) fn friend_view(&self, name: &str) -> Result<FriendView, NodeError> {
        let guest = self.store.known_peer(name)?.is_some_and(|k| k.guest);
        let accesses = self.store.share_accesses()?;
        let visible: BTreeSet<String> = self
            .library
            .shares()
            .roots()
            .into_keys()
            .filter(|share| {
                accesses
                    .get(share)
                    .map_or(!guest, |access| access.admits(name, guest))
            })
            .collect();
        Ok(FriendView::new(self.library.shares().clone(), visible))
    }

    /// Grants `shares` to `name` (an invite's grant).
    pub(super) fn grant_shares(&self, name: &str, shares: &[String]) -> Result<(), NodeError> {
        self.store
            .change_share_accesses(shares, |access| access.granted_to(name))?;
        Ok(())
    }

    /// Takes a forgotten peer's name off every share: the name may later belong to a key
    /// the user never met.
    pub(super) fn revoke_shares(&self, name: &str) -> Result<(), NodeError> {
        let shares: Vec<String> = self.store.share_accesses()?.into_keys().collect();
        self.store
            .change_share_accesses(&shares, |access| access.without(name))?;
        Ok(())
    }
}
