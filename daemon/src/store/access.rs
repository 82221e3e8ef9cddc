//! Invites (only a verifier of each secret, never the code) and each share's audience.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable};

use super::*;
use harddrive_party_core::invite::{Invite, InviteId, MAX_LIVE_INVITES};
use harddrive_party_core::peer_policy::ShareAccess;

/// Why an invite was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum AddInvite {
    Added,
    TooManyLive,
}

impl Store {
    /// Stores a new invite unless [`MAX_LIVE_INVITES`] are live; forgets long-dead ones
    /// first, so the table stays bounded.
    pub fn add_invite(&self, invite: &Invite, now: u64) -> Result<AddInvite, StoreError> {
        let txn = self.db.begin_write()?;
        let added = {
            let mut table = txn.open_table(INVITES)?;
            let mut live = 0;
            let mut forgettable = Vec::new();
            for row in table.iter()? {
                let (id, value) = row?;
                let stored: Invite = decode(value.value())?;
                if stored.is_live(now) {
                    live += 1;
                } else if stored.is_forgettable(now) {
                    forgettable.push(id.value().to_vec());
                }
            }
            for id in forgettable {
                table.remove(id.as_slice())?;
            }
            if live >= MAX_LIVE_INVITES {
                AddInvite::TooManyLive
            } else {
                table.insert(invite.id.as_slice(), encode(invite).as_slice())?;
                AddInvite::Added
            }
        };
        txn.commit()?;
        Ok(added)
    }

    pub fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INVITES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode(row?.1.value())?);
        }
        Ok(out)
    }

    /// Reads the invite `id`, lets `decide` turn it into its next state (or a refusal) and
    /// stores that, in one write transaction, so two joiners never share the last use.
    pub fn update_invite<R>(
        &self,
        id: &InviteId,
        decide: impl FnOnce(Option<&Invite>) -> Result<Invite, R>,
    ) -> Result<Result<Invite, R>, StoreError> {
        let txn = self.db.begin_write()?;
        let decided = {
            let mut table = txn.open_table(INVITES)?;
            let stored: Option<Invite> = table
                .get(id.as_slice())?
                .map(|v| decode(v.value()))
                .transpose()?;
            let decided = decide(stored.as_ref());
            if let Ok(next) = &decided {
                table.insert(id.as_slice(), encode(next).as_slice())?;
            }
            decided
        };
        txn.commit()?;
        Ok(decided)
    }

    /// Who sees each share that has a rule; a share without one is open to all friends.
    pub fn share_accesses(&self) -> Result<BTreeMap<String, ShareAccess>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SHARE_ACCESS)?;
        let mut out = BTreeMap::new();
        for row in table.iter()? {
            let (name, value) = row?;
            out.insert(name.value().to_string(), decode(value.value())?);
        }
        Ok(out)
    }

    pub fn put_share_access(&self, share: &str, access: &ShareAccess) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SHARE_ACCESS)?;
            if *access == ShareAccess::default() {
                table.remove(share)?;
            } else {
                table.insert(share, encode(access).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Applies `change` to every share's access (a missing rule counts as the default) and
    /// stores the ones it changes, in one transaction.
    pub fn change_share_accesses(
        &self,
        shares: &[String],
        change: impl Fn(&ShareAccess) -> Option<ShareAccess>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SHARE_ACCESS)?;
            for share in shares {
                let current: ShareAccess = table
                    .get(share.as_str())?
                    .map(|v| decode(v.value()))
                    .transpose()?
                    .unwrap_or_default();
                if let Some(next) = change(&current) {
                    table.insert(share.as_str(), encode(&next).as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harddrive_party_core::invite::InviteRequest;

    fn invite(id: u8, now: u64) -> Invite {
        InviteRequest::checked(Some(60), Some(1), None, &[])
            .unwrap()
            .invite([id; 8], &[id; 16], now)
    }

    #[test]
    fn live_invites_are_bounded_and_dead_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        for id in 0..MAX_LIVE_INVITES as u8 {
            assert_eq!(
                store.add_invite(&invite(id, 0), 0).unwrap(),
                AddInvite::Added
            );
        }
        assert_eq!(
            store.add_invite(&invite(250, 0), 0).unwrap(),
            AddInvite::TooManyLive
        );
        // Long after they expired, the old ones make room and are dropped.
        let later = 60 + harddrive_party_core::invite::DEAD_INVITE_RETENTION_SECS;
        assert_eq!(
            store.add_invite(&invite(250, later), later).unwrap(),
            AddInvite::Added
        );
        assert_eq!(store.invites().unwrap().len(), 1);
    }

    #[test]
    fn an_update_stores_only_an_accepted_next_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        store.add_invite(&invite(1, 0), 0).unwrap();
        let refused: Result<Invite, &str> = store.update_invite(&[1; 8], |_| Err("no")).unwrap();
        assert_eq!(refused, Err("no"));
        let used = store
            .update_invite(&[1; 8], |i| {
                Ok::<_, ()>(Invite {
                    uses_left: 0,
                    ..i.cloned().unwrap()
                })
            })
            .unwrap()
            .unwrap();
        assert_eq!(store.invites().unwrap(), [used]);
        let missing: Result<Invite, bool> =
            store.update_invite(&[2; 8], |i| Err(i.is_none())).unwrap();
        assert_eq!(missing, Err(true));
    }

    #[test]
    fn share_access_defaults_to_all_friends_and_changes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert!(store.share_accesses().unwrap().is_empty());
        let only = ShareAccess::only(vec!["Ann".into()], |_| true).unwrap();
        store.put_share_access("Music", &only).unwrap();
        let shares = ["Music".to_string(), "Photos".to_string()];
        store
            .change_share_accesses(&shares, |a| a.granted_to("Gus"))
            .unwrap();
        let stored = store.share_accesses().unwrap();
        assert_eq!(stored["Music"].peers, ["Ann", "Gus"]);
        assert!(stored["Photos"].all_friends && stored["Photos"].peers == ["Gus"]);
        store
            .put_share_access("Photos", &ShareAccess::default())
            .unwrap();
        assert!(!store.share_accesses().unwrap().contains_key("Photos"));
    }
}
