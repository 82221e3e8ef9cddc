//! Schema migrations, run once when an older database is opened.

use redb::ReadableTable;
use serde::Deserialize;

use super::*;
use harddrive_party_core::peer_policy::Trust;

/// A known peer as schema 1 stored it, before trust existed.
#[derive(Deserialize)]
struct KnownPeerV1 {
    announce_address: String,
    disconnected: bool,
}

/// Every peer a schema-1 database remembers was connected on purpose or by the old gossip
/// rules, which trusted everybody: it stays a friend, so upgrading loses nobody.
pub(super) fn migrate_known_peers_v1(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut table = txn.open_table(PEERS)?;
    let mut upgraded = Vec::new();
    for row in table.iter()? {
        let (name, value) = row?;
        let old: KnownPeerV1 = decode(value.value())?;
        let record = KnownPeer {
            announce_address: old.announce_address,
            disconnected: old.disconnected,
            trust: Trust::Friend,
            blocked: false,
            nickname: None,
            key: None,
        };
        upgraded.push((name.value().to_string(), encode(&record)));
    }
    for (name, bytes) in upgraded {
        table.insert(name.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
