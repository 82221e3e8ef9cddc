//! Friends only (issue 12), with real daemons on loopback: a stranger's every request is
//! refused and it learns no share name until approved; gossip makes suggestions, not
//! friends (unless `--trust-introduced`); block, unblock, forget, rename; and a database
//! from before trust existed keeps its peers as friends.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use harddrive_party::announce::{AnnounceAddress, NatType};
use harddrive_party::identity::Identity;
use harddrive_party::net::rpc::{self, RpcError};
use harddrive_party::wire::WireError;

fn is_not_a_friend<T>(what: &str, result: Result<T, RpcError>) {
    match result {
        Err(RpcError::Refused(WireError::NotAFriend)) => {}
        Err(e) => panic!("{what}: expected NotAFriend, got {e}"),
        Ok(_) => panic!("{what} was answered for a stranger"),
    }
}

async fn first_chunk(
    conn: &quinn::Connection,
    searchterm: Option<&str>,
) -> Result<Vec<String>, RpcError> {
    let mut listing = rpc::ls(conn, "", searchterm.map(str::to_string), true).await?;
    let chunk = listing.next().await?.unwrap_or_default();
    Ok(chunk.into_iter().map(|e| e.path).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_refused_every_request_and_learns_no_share_name_until_approved() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/SecretPlans");
    write_random_file(&share.join("plan.bin"), 10_000, 1);
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    a.start();
    wait_indexed(&a, 2);
    let node = raw_node(0x42);
    let me = Identity::from_seed([0x42; 32]);
    let own = AnnounceAddress {
        public_key: me.public_key,
        addr: node.local_addr().unwrap(),
        nat_type: NatType::Unknown,
        relay: None,
    }
    .to_string();
    let file = "SecretPlans/plan.bin";

    // One connection per request: the daemon closes a stranger's after refusing it.
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("ls", first_chunk(&conn, None).await);
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the stranger's connection is closed once its request is recorded");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == 3u32.into()),
        "{closed}"
    );
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("search", first_chunk(&conn, Some("Secret")).await);
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("read", rpc::read(&conn, file, 0, None).await);
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("hashes", rpc::hashes(&conn, file).await);
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("have", rpc::have(&conn, [1; 32]).await);
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("read_pieces", rpc::read_pieces(&conn, [1; 32], 0..1).await);
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend(
        "introduce",
        rpc::introduce(&conn, a.name(), own.clone()).await,
    );
    let conn = raw_dial(&node, &a).await;
    is_not_a_friend("announce_peer", rpc::announce(&conn, own.clone()).await);

    let entry = a.peer(&me.name).expect("the request is listed");
    assert_eq!(entry["trust"], "pending", "{entry}");
    assert_eq!(entry["connected"], false, "{entry}");
    assert_eq!(
        entry["announce_address"], own,
        "its own announce address is kept for approval: {entry}"
    );

    a.cli_ok(&["approve", &me.name]);
    assert_eq!(a.peer(&me.name).unwrap()["trust"], "friend");
    let conn = raw_dial(&node, &a).await;
    let names = first_chunk(&conn, None).await.expect("a friend may list");
    assert!(names.iter().any(|n| n == file), "{names:?}");
    let (size, _, _) = rpc::read(&conn, file, 0, None).await.expect("and read");
    assert_eq!(size, 10_000);
}

#[test]
fn gossiped_peers_are_suggestions_and_trust_introduced_restores_the_old_way() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hub = Daemon::new(tmp.path(), "hub");
    let mut b = Daemon::new(tmp.path(), "b");
    let mut c = Daemon::new(tmp.path(), "c");
    hub.start();
    b.start();
    c.start();
    befriend(&b, &hub);
    befriend(&c, &hub);
    let (hn, bn, cn) = (hub.name(), b.name(), c.name());
    for (d, other) in [(&b, &cn), (&c, &bn)] {
        let entry = wait_for(
            &format!("{} to list {other} as a suggestion", d.label),
            Duration::from_secs(15),
            || d.peer(other).filter(|p| p["trust"] == "suggested"),
        );
        assert_eq!(entry["introduced_by"], hn.as_str(), "{entry}");
        assert_eq!(entry["connected"], false, "{entry}");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(!b.connected_to(&cn), "a suggestion was dialled");
    // Approved on both sides, they connect.
    b.cli_ok(&["approve", &cn]);
    // B dials C, which does not count B as a friend yet: B's user is told so.
    wait_for(
        "b to learn it awaits approval",
        Duration::from_secs(10),
        || {
            b.log_text()
                .contains(&format!("{cn} has not approved us yet"))
                .then_some(())
        },
    );
    c.approve(&bn);
    wait_for("b and c to connect", Duration::from_secs(20), || {
        (b.connected_to(&cn) && c.connected_to(&bn)).then_some(())
    });
    assert_eq!(c.peer(&bn).unwrap()["trust"], "friend");

    // With --trust-introduced, a friend's introduction makes a friend, who is dialled.
    let mut d = Daemon::new(tmp.path(), "d").args(&["--trust-introduced"]);
    let mut e = Daemon::new(tmp.path(), "e").args(&["--trust-introduced"]);
    d.start();
    e.start();
    befriend(&d, &hub);
    befriend(&e, &hub);
    let (dn, en) = (d.name(), e.name());
    wait_for(
        "d and e to connect through gossip",
        Duration::from_secs(20),
        || (d.connected_to(&en) && e.connected_to(&dn)).then_some(()),
    );
    assert_eq!(d.peer(&en).unwrap()["trust"], "friend");
}

#[test]
fn block_unblock_forget_and_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Slow");
    write_random_file(&share.join("big.bin"), 8 * 1024 * 1024, 3);
    let (a, b) = sharer_and_downloader(tmp.path(), &share, 2, &["--upload-limit", "256KB"], &[]);
    let an = a.name();
    let id = b.download(&format!("{an}/Slow/big.bin"));
    wait_for("the download to start", Duration::from_secs(20), || {
        (b.transfer(id)["state"] == "active").then_some(())
    });

    b.cli_ok(&["rename", &an, "Alice"]);
    assert_eq!(b.peer(&an).unwrap()["nickname"], "Alice");
    assert!(b
        .cli_ok(&["peers"])
        .contains(&format!("{an} (Alice)  friend")));
    assert!(!b.cli(&["rename", &an, &"x".repeat(65)]).status.success());

    b.cli_ok(&["block", &an]);
    let entry = b.peer(&an).unwrap();
    assert_eq!(entry["trust"], "blocked", "{entry}");
    let transfers = b.api_get("/api/transfers");
    assert!(
        !transfers
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["direction"] == "download" && t["peer"] == an.as_str()),
        "the download from a blocked peer is cancelled: {transfers}"
    );
    // A keeps redialling its friend; B refuses every attempt.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!b.connected_to(&an) && !a.connected_to(&b.name()));
    assert!(b.log_text().contains(&format!("refusing {an}: blocked")));

    b.cli_ok(&["unblock", &an]);
    assert_eq!(b.peer(&an).unwrap()["trust"], "friend");
    assert_eq!(
        b.peer(&an).unwrap()["nickname"],
        "Alice",
        "unblock keeps the nickname"
    );
    wait_for("the friend to reconnect", Duration::from_secs(20), || {
        b.connected_to(&an).then_some(())
    });

    b.cli_ok(&["forget", &an]);
    std::thread::sleep(Duration::from_secs(2));
    let after = b.peer(&an);
    assert!(
        after
            .as_ref()
            .is_none_or(|p| p["trust"] == "pending" && p["connected"] == false),
        "forgotten: at most a new request from A: {after:?}"
    );
    assert!(!b.cli(&["forget", "NoSuchPeer000000"]).status.success());
    assert!(!b.cli(&["unblock", &an]).status.success(), "not blocked");
}

/// `forget` cancels the downloads from the peer that are still to do (the active one, its
/// `.part` deleted, and the queued one) and keeps the finished one listed.
#[test]
fn forget_cancels_the_downloads_still_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Slow");
    write_random_file(&share.join("small.bin"), 64 * 1024, 4);
    write_random_file(&share.join("big.bin"), 8 * 1024 * 1024, 5);
    write_random_file(&share.join("next.bin"), 1024 * 1024, 6);
    // One download from a peer at a time, at 256 KB/s: big.bin stays active for about
    // 30 s and next.bin queued behind it.
    let (a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        4,
        &["--upload-limit", "256KB"],
        &["--max-downloads-per-peer", "1"],
    );
    let an = a.name();
    let small = b.download(&format!("{an}/Slow/small.bin"));
    b.wait_download_done(small, Duration::from_secs(20));
    let big = b.download(&format!("{an}/Slow/big.bin"));
    let part = b.download_dir.join(&an).join("Slow/big.bin.part");
    wait_for("big.bin to be under way", Duration::from_secs(20), || {
        (b.transfer(big)["state"] == "active" && part.exists()).then_some(())
    });
    let next = b.download(&format!("{an}/Slow/next.bin"));
    wait_for("next.bin to be queued", Duration::from_secs(10), || {
        (b.transfer(next)["state"] == "queued").then_some(())
    });

    b.cli_ok(&["forget", &an]);
    let downloads = || -> Vec<serde_json::Value> {
        b.api_get("/api/transfers")
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["direction"] == "download")
            .cloned()
            .collect()
    };
    let listed = downloads();
    let ids: Vec<u64> = listed.iter().filter_map(|t| t["id"].as_u64()).collect();
    assert_eq!(ids, [small], "only the finished download stays: {listed:?}");
    assert_eq!(listed[0]["state"], "done");
    assert!(!part.exists(), "the cancelled download's .part is deleted");
    let log = b.log_text();
    assert!(
        log.contains(&format!("download {big} from {an} cancelled")),
        "{log}"
    );
    assert!(
        log.contains(&format!("download {next} from {an} cancelled")),
        "{log}"
    );
    assert!(b.peer(&an).is_none_or(|p| p["trust"] == "pending"));
    // Nothing comes back as A knocks again (it still counts B as a friend).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(downloads().len(), 1);
    assert!(!part.exists());
}

/// A database written before trust existed (schema 1: a known peer was an address and a
/// disconnect flag): after the upgrade its peers are friends, connect and share.
#[test]
fn an_old_database_keeps_its_peers_as_friends() {
    #[derive(serde::Serialize)]
    struct KnownPeerV1 {
        announce_address: String,
        disconnected: bool,
    }
    let tmp = tempfile::tempdir().unwrap();
    upgrade_keeps_friends(tmp.path(), 1, |code| {
        let old = KnownPeerV1 {
            announce_address: code.to_string(),
            disconnected: false,
        };
        bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap()
    });
}

/// A database of the release before invites (schema 2: trust, blocking and nicknames, no
/// guests): after the upgrade its friends are still friends, not guests, with their
/// nicknames, and they connect and share.
#[test]
fn a_database_from_before_invites_keeps_its_friends_and_nicknames() {
    /// Trust as schema 2 wrote it; `Friend` is its first variant.
    #[derive(serde::Serialize)]
    enum TrustV2 {
        Friend,
    }
    #[derive(serde::Serialize)]
    struct KnownPeerV2 {
        announce_address: String,
        disconnected: bool,
        trust: TrustV2,
        blocked: bool,
        nickname: Option<String>,
        key: Option<[u8; 32]>,
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = upgrade_keeps_friends(tmp.path(), 2, |code| {
        let old = KnownPeerV2 {
            announce_address: code.to_string(),
            disconnected: false,
            trust: TrustV2::Friend,
            blocked: false,
            nickname: Some("Old friend".into()),
            key: None,
        };
        bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap()
    });
    for (d, other) in [(&a, &b), (&b, &a)] {
        let peer = d.peer(&other.name()).unwrap();
        assert_eq!(peer["nickname"], "Old friend", "{peer}");
        assert_eq!(peer["guest"], false, "{peer}");
    }
}

/// Two friends under `root` whose databases are rewritten to schema `schema` with
/// `old_record(their announce address)` for each other, then restarted: they are friends,
/// reconnect and share. Returns the upgraded daemons.
fn upgrade_keeps_friends(
    root: &Path,
    schema: u64,
    old_record: impl Fn(&str) -> Vec<u8>,
) -> (Daemon, Daemon) {
    use redb::{ReadableDatabase, TableDefinition};
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("known_peers");

    let share = root.join("share/Old");
    write_random_file(&share.join("data.bin"), 100_000, 4);
    let (mut a, mut b) = sharer_and_downloader(root, &share, 2, &[], &[]);
    let (an, bn) = (a.name(), b.name());
    let (a_code, b_code) = (a.announce(), b.announce());
    a.stop();
    b.stop();
    for (d, name, code) in [(&a, &bn, &b_code), (&b, &an, &a_code)] {
        let db = redb::Database::open(d.storage.join("harddrive-party.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", schema)
            .unwrap();
        let bytes = old_record(code);
        txn.open_table(PEERS)
            .unwrap()
            .insert(name.as_str(), bytes.as_slice())
            .unwrap();
        txn.commit().unwrap();
        // Still the old format on disk before the daemon opens it.
        let read = db.begin_read().unwrap();
        let stored = read.open_table(PEERS).unwrap();
        assert_eq!(stored.get(name.as_str()).unwrap().unwrap().value(), bytes);
    }
    a.start();
    b.start();
    assert_eq!(b.peer(&an).unwrap()["trust"], "friend");
    assert_eq!(a.peer(&bn).unwrap()["trust"], "friend");
    wait_for(
        "the upgraded friends to reconnect",
        Duration::from_secs(20),
        || (a.connected_to(&bn) && b.connected_to(&an)).then_some(()),
    );
    let id = b.download(&format!("{an}/Old/data.bin"));
    b.wait_download_done(id, Duration::from_secs(30));
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Old/data.bin")),
        sha256_file(&share.join("data.bin"))
    );
    (a, b)
}
