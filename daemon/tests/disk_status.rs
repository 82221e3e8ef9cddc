//! Disk problems reported by `/api/info` (the web UI shows them as a banner): a storage
//! directory on a tiny tmpfs is reported full, and the report clears once there is room.
//! Needs root for the mount.

mod common;

use common::*;
use serde_json::Value;

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
