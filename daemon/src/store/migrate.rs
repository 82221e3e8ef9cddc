//! Schema migrations, run once when an older database is opened.

use redb::ReadableTable;
use serde::Deserialize;

use super::*;
use harddrive_party_core::peer_name::PublicKey;
use harddrive_party_core::peer_policy::Trust;

/// A known peer as schema 1 stored it, before trust existed.
#[derive(Deserialize)]
struct KnownPeerV1 {
    announce_address: String,
    disconnected: bool,
}

/// A known peer as schema 2 stored it, before guests (share-limited invites) existed.
#[derive(Deserialize)]
struct KnownPeerV2 {
    announce_address: String,
    disconnected: bool,
    trust: Trust,
    blocked: bool,
    nickname: Option<String>,
    key: Option<PublicKey>,
}

impl From<KnownPeerV1> for KnownPeerV2 {
    /// Every peer a schema-1 database remembers was connected on purpose or by the old
    /// gossip rules, which trusted everybody: it stays a friend, so upgrading loses nobody.
    fn from(old: KnownPeerV1) -> Self {
        Self {
            announce_address: old.announce_address,
            disconnected: old.disconnected,
            trust: Trust::Friend,
            blocked: false,
            nickname: None,
            key: None,
        }
    }
}

impl From<KnownPeerV2> for KnownPeer {
    /// No peer was a guest before invites existed.
    fn from(old: KnownPeerV2) -> Self {
        Self {
            announce_address: old.announce_address,
            disconnected: old.disconnected,
            trust: old.trust,
            blocked: old.blocked,
            nickname: old.nickname,
            key: old.key,
            guest: false,
        }
    }
}

/// Rewrites every known peer of a schema-`from` database in today's form.
pub(super) fn migrate_known_peers(
    txn: &redb::WriteTransaction,
    from: u64,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(PEERS)?;
    let mut upgraded = Vec::new();
    for row in table.iter()? {
        let (name, value) = row?;
        let v2: KnownPeerV2 = match from {
            1 => decode::<KnownPeerV1>(value.value())?.into(),
            _ => decode(value.value())?,
        };
        upgraded.push((name.value().to_string(), encode(&KnownPeer::from(v2))));
    }
    for (name, bytes) in upgraded {
        table.insert(name.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
