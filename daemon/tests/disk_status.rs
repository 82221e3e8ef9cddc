//! Disk problems reported by `/api/info` (the web UI shows them as a banner): a storage
//! directory on a tiny tmpfs is reported full, and the report clears once there is room;
//! a database that failed a write on a full disk stops the watchdog pings and is reopened
//! by a restart once there is room, with every acknowledged change kept.
//! Needs root for the mount.

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn problem_codes(d: &Daemon) -> Vec<String> {
    d.api_get("/api/info")["problems"]
        .as_array()
        .expect("problems is a list")
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_full_storage_disk_is_reported_until_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let small = Tmpfs::mount(&tmp.path().join("small"), "8m");
    let mut a = Daemon::new(tmp.path(), "a").args(&["--min-free-space", "1MB"]);
    a.storage = small.0.join("storage");
    a.start();
    assert_eq!(problem_codes(&a), ["storage_full"]);
    let info = a.api_get("/api/info");
    let message = info["problems"][0]["message"].as_str().unwrap();
    assert!(message.contains("MiB free in"), "{message}");
    assert!(message.contains(small.0.to_str().unwrap()), "{message}");

    small.resize("256m");
    assert!(problem_codes(&a).is_empty(), "cleared once there is room");

    // The download disk below its reserve is reported too.
    let mut b = Daemon::new(tmp.path(), "b").args(&["--min-free-space", "16MB"]);
    b.start();
    assert!(problem_codes(&b).is_empty());
    let tiny = Tmpfs::mount(&tmp.path().join("tiny"), "4m");
    let s: Value = b
        .api_post(
            "/api/settings",
            serde_json::json!({ "download_dir": tiny.0.join("dl") }),
        )
        .unwrap();
    assert_eq!(s["download_dir"], tiny.0.join("dl").to_str().unwrap());
    wait_for(
        "the download disk to be reported",
        std::time::Duration::from_secs(5),
        || (problem_codes(&b) == ["download_disk_full"]).then_some(()),
    );
    a.stop();
    b.stop();
}

#[test]
fn a_database_failed_by_a_full_disk_stops_the_watchdog_and_restarts_once_there_is_room() {
    let tmp = tempfile::tempdir().unwrap();
    let small = Tmpfs::mount(&tmp.path().join("small"), "16m");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .args(&["--min-free-space", "1MB"]);
    a.storage = small.0.join("storage");
    a.watchdog = Some((300_000, socket_path));
    a.start();
    let pings = notify_messages(&socket, Duration::from_secs(1));
    assert!(pings.iter().any(|m| m.contains("WATCHDOG=1")), "{pings:?}");

    a.api_post("/api/settings", json!({ "max_uploads": 3 }))
        .unwrap();
    // Fill the disk, then give the index more than the database file has room for; change
    // settings until a change is refused.
    let fill_path = small.0.join("fill");
    let mut fill = std::fs::File::create(&fill_path).unwrap();
    while fill.write_all(&[0x5a; 64 * 1024]).is_ok() {}
    drop(fill);
    for i in 0..5000 {
        std::fs::write(share.join(format!("a-file-with-a-long-name-{i:05}")), b"x").unwrap();
    }
    let mut acknowledged = 3;
    let mut uploads = 3;
    let refused = wait_for("a change to be refused", Duration::from_secs(20), || {
        uploads += 1;
        match a.api_post("/api/settings", json!({ "max_uploads": uploads })) {
            Ok(_) => {
                acknowledged = uploads;
                std::thread::sleep(Duration::from_millis(100));
                None
            }
            Err(_) => Some(uploads),
        }
    });

    // What was queued before the failure, and a probe that may have been under way.
    let _ = notify_messages(&socket, Duration::from_millis(300));
    let failed = notify_messages(&socket, Duration::from_secs(1));
    assert!(
        !failed.iter().any(|m| m.contains("WATCHDOG=1")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|m| m.contains("STATUS=database failed")),
        "{failed:?}"
    );
    assert!(a.is_running(), "it waits for room before restarting");

    std::fs::remove_file(&fill_path).unwrap();
    let status = a.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{status}");
    let log = a.log_text();
    let db = a.storage.join("harddrive-party.redb");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(db.to_str().unwrap())),
        "{log}"
    );

    a.start();
    let kept = a.api_get("/api/settings")["max_uploads"].as_u64().unwrap();
    assert!(
        kept == acknowledged || kept == refused,
        "kept {kept:?}, acknowledged {acknowledged:?}, refused {refused:?}"
    );
    let resumed = notify_messages(&socket, Duration::from_secs(1));
    assert!(
        resumed.iter().any(|m| m.contains("WATCHDOG=1")),
        "{resumed:?}"
    );
    a.stop();
}

/// A file larger than the download disk can hold above its reserve waits as `disk_full`, and
/// one larger than any download may be fails, both before the sharer is asked for its piece
/// list (a sharer claiming terabytes costs no memory) and before a `.part` exists.
#[test]
fn files_too_large_are_refused_before_their_piece_list() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Big");
    std::fs::create_dir_all(&share).unwrap();
    for (name, size) in [("roomy.bin", 200u64 << 20), ("huge.bin", 2u64 << 40)] {
        let file = std::fs::File::create(share.join(name)).unwrap();
        file.set_len(size).unwrap();
    }
    let tiny = Tmpfs::mount(&tmp.path().join("tiny"), "64m");
    let mut b = Daemon::new(tmp.path(), "b").args(&["--min-free-space", "16MB"]);
    b.download_dir = tiny.0.join("dl");
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    a.start();
    b.start();
    befriend(&b, &a);
    wait_indexed(&a, 3);
    let an = a.name();
    let roomy = b.download(&format!("{an}/Big/roomy.bin"));
    let held = wait_for(
        "the download to wait for room",
        Duration::from_secs(20),
        || {
            let t = b.transfer(roomy);
            (t["state"] == "disk_full").then_some(t)
        },
    );
    let reason = held["error"].as_str().unwrap_or_default();
    assert!(reason.contains("needs 200 MiB more"), "{held}");
    let huge = b.download(&format!("{an}/Big/huge.bin"));
    let failed = wait_for("the huge download to fail", Duration::from_secs(20), || {
        let t = b.transfer(huge);
        (t["state"] == "failed").then_some(t)
    });
    assert!(
        failed.to_string().contains("larger than the largest file"),
        "{failed}"
    );
    let big = b.download_dir.join(&an).join("Big");
    for part in ["roomy.bin.part", "huge.bin.part"] {
        assert!(!big.join(part).exists(), "{part} was made");
    }
    a.stop();
    b.stop();
}

/// A full download disk is reported even with no reserve, and a download folder that cannot
/// be written (here a read-only mount) is reported too.
#[test]
fn a_full_or_read_only_download_folder_is_reported_whatever_the_reserve() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = Tmpfs::mount(&tmp.path().join("tiny"), "4m");
    let mut b = Daemon::new(tmp.path(), "b").args(&["--min-free-space", "0"]);
    b.download_dir = tiny.0.join("dl");
    b.start();
    assert!(problem_codes(&b).is_empty());
    let filler = tiny.0.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    assert_eq!(problem_codes(&b), ["download_disk_full"]);
    std::fs::remove_file(&filler).unwrap();
    assert!(problem_codes(&b).is_empty());
    let dir = tiny.0.to_str().unwrap();
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,ro", dir])
        .status()
        .unwrap();
    assert!(remounted.success());
    assert_eq!(problem_codes(&b), ["download_dir_unwritable"]);
    let info = b.api_get("/api/info");
    let message = info["problems"][0]["message"].as_str().unwrap();
    assert!(message.contains("dl"), "{message}");
    b.stop();
}
