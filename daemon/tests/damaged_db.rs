//! A damaged database (the 4 KiB pages holding a file in the middle of the index
//! overwritten, or the file cut short at the first of them) stops start-up with
//! its path and a non-zero exit, without a panic and without a byte written to it; `repair`
//! then rebuilds it, keeping the identity, a setting and a friend.

mod common;

use std::fs;

use common::*;
use serde_json::json;

#[test]
fn a_damaged_database_stops_start_untouched_and_repair_keeps_identity_settings_and_friends() {
    let tmp = tempfile::tempdir().unwrap();
    // Enough files that the index spans many pages.
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).unwrap();
    for i in 0..3000 {
        fs::write(share.join(format!("file-with-a-longish-name-{i:05}")), b"x").unwrap();
    }
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    let mut b = Daemon::new(tmp.path(), "b");
    a.start();
    b.start();
    wait_indexed(&a, 3001); // the files and their share
    befriend(&a, &b);
    a.api_post("/api/settings", json!({ "max_uploads": 3 }))
        .unwrap();
    let name = a.name();
    let friend = b.name();
    a.stop();
    b.stop();

    let db = a.storage.join("harddrive-party.redb");
    let good = fs::read(&db).unwrap();
    // The pages holding a key from the middle of the index: the live leaf is among them
    // (copy-on-write may have left stale copies, which are free space, beside it).
    let key = b"file-with-a-longish-name-01500";
    let pages: Vec<usize> = (0..good.len() / 4096)
        .filter(|p| {
            good[p * 4096..(p + 1) * 4096]
                .windows(key.len())
                .any(|w| w == key)
        })
        .map(|p| p * 4096)
        .collect();
    assert!(!pages.is_empty(), "the key is in the file");
    let middle = pages[0];
    let mut overwritten = good.clone();
    for &page in &pages {
        overwritten[page..page + 4096].fill(0xa5);
    }
    for (damage, bytes) in [
        ("truncated", &good[..middle]),
        ("overwritten", &overwritten[..]),
    ] {
        fs::write(&db, bytes).unwrap();
        let before = sha256_file(&db);
        let (status, log) = a.start_fails();
        assert_eq!(
            status.code(),
            Some(1),
            "{damage}: not a clean failure: {status}\n{log}"
        );
        assert!(
            log.contains(db.to_str().unwrap()),
            "{damage}: no path:\n{log}"
        );
        assert!(
            log.contains("harddrive-party repair"),
            "{damage}: no way out:\n{log}"
        );
        assert!(!log.contains("panicked"), "{damage}:\n{log}");
        assert_eq!(
            sha256_file(&db),
            before,
            "{damage}: the failed start wrote to it"
        );
    }

    let report = a.cli_ok(&["repair"]);
    assert!(
        report.contains("kept friends and other known peers: 1"),
        "{report}"
    );
    let backups: Vec<_> = fs::read_dir(&a.storage)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
        .collect();
    assert_eq!(backups.len(), 1, "{report}");
    assert_eq!(fs::read(backups[0].path()).unwrap(), overwritten);

    a.start();
    assert_eq!(a.name(), name, "the identity is kept");
    assert_eq!(a.api_get("/api/settings")["max_uploads"], 3);
    assert!(a.peer(&friend).is_some(), "the friend is kept");
    wait_indexed(&a, 3001); // the files and their share
    a.stop();
}
