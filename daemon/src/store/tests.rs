//! Unit tests of the store: settings, records, migrations, damaged and newer databases.

use super::*;
use harddrive_party_core::peer_policy::Trust;

#[test]
fn settings_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        store.set_setting("listen", "127.0.0.1:5000").unwrap();
    }
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        store.setting("listen").unwrap().as_deref(),
        Some("127.0.0.1:5000")
    );
}

#[test]
fn ui_sessions_survive_reopen_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let one = UiSession {
        created: 1,
        last_used: 2,
    };
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        store.put_ui_session("a", &one, true).unwrap();
        store.put_ui_session("b", &one, true).unwrap();
        store
            .put_ui_session(
                "b",
                &UiSession {
                    last_used: 3,
                    ..one
                },
                false,
            )
            .unwrap();
    }
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let mut found = store.ui_sessions().unwrap();
    found.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(found[0], ("a".to_string(), one));
    assert_eq!(found[1].1.last_used, 3);
    store.remove_ui_sessions(&["a".to_string()]).unwrap();
    assert_eq!(store.ui_sessions().unwrap().len(), 1);
    store.clear_ui_sessions().unwrap();
    assert!(store.ui_sessions().unwrap().is_empty());
}

#[test]
fn garbage_file_is_reported_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = vec![0x5a; 8192];
    std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
    let err = Store::open(dir.path(), 1 << 20).err().expect("must refuse");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(dir.path().join(DB_FILE)).unwrap(), garbage);
}

/// A database with enough index rows that its middle pages are in use.
pub(super) fn filled_store(dir: &Path) -> PathBuf {
    let store = Store::open(dir, 1 << 20).unwrap();
    let txn = store.db.begin_write().unwrap();
    {
        let mut index = txn.open_table(INDEX).unwrap();
        for i in 0..20_000u32 {
            index
                .insert(
                    format!("share/dir/file-{i:06}").as_str(),
                    [7u8; 17].as_slice(),
                )
                .unwrap();
        }
    }
    txn.commit().unwrap();
    store.set_setting("listen", "x").unwrap();
    let friend = KnownPeer {
        announce_address: "addr".into(),
        disconnected: false,
        trust: harddrive_party_core::peer_policy::Trust::Friend,
        blocked: false,
        nickname: None,
        key: Some([3; 32]),
        guest: false,
    };
    store.put_known_peer("Friend", &friend).unwrap();
    dir.join(DB_FILE)
}

#[test]
fn damaged_or_truncated_database_is_refused_without_a_write() {
    for damage in ["middle", "truncated"] {
        let dir = tempfile::tempdir().unwrap();
        let path = filled_store(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2 / 4096 * 4096;
        match damage {
            "middle" => bytes[middle..middle + 4096].fill(0xa5),
            _ => bytes.truncate(middle),
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(dir.path(), 1 << 20).err().expect(damage);
        assert!(matches!(err, StoreError::Corrupt { .. }), "{damage}: {err}");
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{damage}: written to");
    }
}

#[test]
fn schema_1_peers_become_friends() {
    #[derive(Serialize)]
    struct V1 {
        announce_address: String,
        disconnected: bool,
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        let old = V1 {
            announce_address: "addr".into(),
            disconnected: true,
        };
        txn.open_table(PEERS)
            .unwrap()
            .insert("OldFriend", encode(&old).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let peer = store.known_peer("OldFriend").unwrap().unwrap();
    assert_eq!(peer.trust, Trust::Friend);
    assert!(peer.disconnected && !peer.blocked);
    assert_eq!(peer.announce_address, "addr");
    assert!(store.remove_known_peer("OldFriend").unwrap());
    assert!(store.known_peer("OldFriend").unwrap().is_none());
}

#[test]
fn schema_2_peers_keep_their_trust_and_are_no_guests() {
    #[derive(Serialize)]
    struct V2 {
        announce_address: String,
        disconnected: bool,
        trust: Trust,
        blocked: bool,
        nickname: Option<String>,
        key: Option<[u8; 32]>,
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
        let old = V2 {
            announce_address: String::new(),
            disconnected: false,
            trust: Trust::Stranger,
            blocked: true,
            nickname: Some("Eve".into()),
            key: Some([9; 32]),
        };
        txn.open_table(PEERS)
            .unwrap()
            .insert("Blocked", encode(&old).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let peer = store.known_peer("Blocked").unwrap().unwrap();
    assert_eq!(peer.trust, Trust::Stranger);
    assert!(peer.blocked && !peer.guest);
    assert_eq!(peer.nickname.as_deref(), Some("Eve"));
    assert_eq!(peer.key, Some([9; 32]));
}

/// A storage directory whose database a newer version wrote.
pub(in crate::store) fn newer_schema() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let txn = store.db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert("schema_version", SCHEMA_VERSION + 1)
        .unwrap();
    txn.commit().unwrap();
    dir
}

#[test]
fn newer_schema_is_refused() {
    let dir = newer_schema();
    let err = Store::open(dir.path(), 1 << 20).err().expect("must refuse");
    assert!(matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
}

#[test]
fn download_files_iterate_in_order_and_are_removed_with_their_download() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let record = DownloadRecord {
        peer: "p".into(),
        path: "s".into(),
        state: DownloadState::Queued,
        expanded: false,
        added_at: 0,
        priority: 0,
    };
    let a = store.add_download(&record, Some("/media/music")).unwrap();
    let b = store.add_download(&record, None).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        store.download_destination(a).unwrap().as_deref(),
        Some("/media/music")
    );
    assert_eq!(store.download_destination(b).unwrap(), None);
    let file = FileRecord::pending(1, 2);
    let files: Vec<_> = ["s/b", "s/a", "s/c"]
        .iter()
        .map(|p| (p.to_string(), file.clone()))
        .collect();
    store.add_download_files(a, &files).unwrap();
    store.add_download_files(b, &files[..1]).unwrap();
    let mut seen = Vec::new();
    store
        .visit_download_files(a, Some("s/a"), |p, _| {
            seen.push(p.to_string());
            true
        })
        .unwrap();
    assert_eq!(seen, ["s/b", "s/c"]);
    store.remove_download(a).unwrap();
    assert_eq!(store.download_destination(a).unwrap(), None);
    let mut left = 0;
    store
        .visit_download_files(a, None, |_, _| {
            left += 1;
            true
        })
        .unwrap();
    assert_eq!(left, 0);
    store
        .visit_download_files(b, None, |_, _| {
            left += 1;
            true
        })
        .unwrap();
    assert_eq!(left, 1);
}

#[test]
fn the_library_pages_in_path_order_and_forgets_a_removed_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    for (path, size) in [("/m/b.wav", 2), ("/m/a.wav", 1), ("/m/c.wav", 3)] {
        let entry = LibraryEntry {
            path: path.into(),
            size,
            finished: 7,
            from: format!("Bob/music{path}"),
        };
        store.add_to_library(&entry).unwrap();
    }
    let (page, total) = store.library(1, 1).unwrap();
    assert_eq!(total, 3);
    assert_eq!(page.len(), 1);
    assert_eq!((page[0].path.as_str(), page[0].size), ("/m/b.wav", 2));
    assert_eq!(page[0].from, "Bob/music/m/b.wav");
    store.remove_from_library("/m/b.wav").unwrap();
    assert_eq!(store.library_entry("/m/b.wav").unwrap(), None);
    assert_eq!(
        store.library_entry("/m/a.wav").unwrap().map(|e| e.size),
        Some(1)
    );
    assert_eq!(store.library(0, 10).unwrap().1, 2);
}

#[test]
fn index_value_packs_round_trip() {
    let v = IndexValue {
        size: u64::MAX - 1,
        mtime: 12345,
        is_dir: true,
    };
    assert_eq!(IndexValue::unpack(&v.pack()), Some(v));
    assert_eq!(IndexValue::unpack(&[1, 2]), None);
}
