//! Settings changed through `POST /api/settings` while the daemon runs: upload slots (total
//! and per peer), download slots, the free-space reserve, the rescan interval, the hashing
//! rate and the download folder apply at once and are kept across restarts; the peer listen
//! address, mDNS and port mapping are kept for the next start, which applies them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn settings(d: &Daemon) -> Value {
    d.api_get("/api/settings")
}

/// Restarts `d` with `flags` added to its start and returns its settings then.
fn restart_with_flags(d: &mut Daemon, flags: &[&str]) -> Value {
    d.stop();
    d.extra.extend(flags.iter().map(|f| f.to_string()));
    d.start();
    settings(d)
}

fn active_and_queued(d: &Daemon) -> (usize, usize) {
    let uploads = d.uploads();
    let count = |state: &str| uploads.iter().filter(|u| u["state"] == state).count();
    (count("active"), count("queued"))
}

#[test]
fn upload_slots_change_live_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Files");
    for i in 0..3 {
        write_random_file(&share.join(format!("f{i}.bin")), 2_000_000, i);
    }
    // Slow uploads, so requests stay in their slots long enough to be counted.
    let (mut a, b) =
        sharer_and_downloader(tmp.path(), &share, 4, &["--upload-limit", "300KB"], &[]);
    let an = a.name();
    let s = a
        .api_post(
            "/api/settings",
            json!({ "max_uploads": 1, "max_uploads_per_peer": 1 }),
        )
        .unwrap();
    assert_eq!(
        (s["max_uploads"].clone(), s["max_uploads_per_peer"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        s["set_at_start"],
        // The test harness gives --no-seed-downloads to every daemon that does not opt in.
        json!([
            "download_dir",
            "mdns",
            "upnp",
            "listen",
            "seed_downloads",
            "upload_limit"
        ]),
        "{s}"
    );
    let s = a
        .api_post(
            "/api/settings",
            json!({ "retry_limit": 9, "retry_backoff": 3 }),
        )
        .unwrap();
    assert_eq!(
        (s["retry_limit"].clone(), s["retry_backoff"].clone()),
        (json!(9), json!(3))
    );
    for bad in [
        json!({ "max_uploads": 0 }),
        json!({ "max_uploads_per_peer": 5000 }),
        json!({ "retry_limit": 0 }),
        json!({ "retry_backoff": 3601 }),
    ] {
        let (status, body) = a.api_post("/api/settings", bad).unwrap_err();
        assert_eq!(status, 400, "{body}");
    }

    let readers: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("{}/api/read?path={an}/Files/f{i}.bin", b.ui);
            std::thread::spawn(move || {
                let body = ureq::get(&url)
                    .timeout(Duration::from_secs(120))
                    .call()
                    .unwrap();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut body.into_reader(), &mut bytes).unwrap();
                bytes.len()
            })
        })
        .collect();
    wait_for(
        "one upload in its slot, two queued",
        Duration::from_secs(20),
        || (active_and_queued(&a) == (1, 2)).then_some(()),
    );
    // More slots in total, but still one per peer: nothing more starts.
    a.api_post("/api/settings", json!({ "max_uploads": 3 }))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            active_and_queued(&a).0 <= 1,
            "the per-peer slot still binds"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.api_post("/api/settings", json!({ "max_uploads_per_peer": 3 }))
        .unwrap();
    wait_for("three uploads at once", Duration::from_secs(10), || {
        (active_and_queued(&a) == (3, 0)).then_some(())
    });
    a.api_post("/api/settings", json!({ "upload_limit": 0 }))
        .unwrap();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), 2_000_000);
    }

    // Kept across a restart; a flag given at start wins over the stored value.
    a.stop();
    a.start();
    let s = settings(&a);
    assert_eq!(
        (s["max_uploads"].clone(), s["max_uploads_per_peer"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(
        (s["retry_limit"].clone(), s["retry_backoff"].clone()),
        (json!(9), json!(3))
    );
    let s = restart_with_flags(&mut a, &["--max-uploads", "2", "--retry-limit", "7"]);
    assert_eq!(
        (s["max_uploads"].clone(), s["max_uploads_per_peer"].clone()),
        (json!(2), json!(3))
    );
    assert_eq!(
        (s["retry_limit"].clone(), s["retry_backoff"].clone()),
        (json!(7), json!(3))
    );
    assert!(s["set_at_start"]
        .as_array()
        .unwrap()
        .contains(&json!("max_uploads")));
}

#[test]
fn download_dir_changes_live_and_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Files");
    for i in 0..2 {
        write_random_file(&share.join(format!("f{i}.bin")), 300_000, i);
    }
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    // No --download-dir: the folder comes from the store, else $HOME/Downloads/harddrive-party.
    let mut b = Daemon::new(tmp.path(), "b");
    b.download_dir_flag = false;
    b.env = vec![("HOME".into(), home.to_str().unwrap().into())];
    a.start();
    b.start();
    befriend(&b, &a);
    wait_indexed(&a, 3);
    let an = a.name();
    let default_dir = home
        .join("Downloads/harddrive-party")
        .canonicalize()
        .unwrap();
    assert_eq!(settings(&b)["download_dir"], default_dir.to_str().unwrap());

    let first = b.download(&format!("{an}/Files/f0.bin"));
    b.wait_download_done(first, Duration::from_secs(60));
    assert!(default_dir.join(&an).join("Files/f0.bin").is_file());

    // Refused values change nothing.
    let not_a_dir = tmp.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    for bad in ["relative/dir".into(), not_a_dir.join("sub")] {
        let (status, body) = b
            .api_post("/api/settings", json!({ "download_dir": bad }))
            .unwrap_err();
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(settings(&b)["download_dir"], default_dir.to_str().unwrap());

    let new_dir = tmp.path().join("usb/Downloads");
    let s = b
        .api_post("/api/settings", json!({ "download_dir": new_dir }))
        .unwrap();
    assert_eq!(s["download_dir"], new_dir.to_str().unwrap());
    assert_eq!(
        b.api_get("/api/info")["download_dir"],
        new_dir.to_str().unwrap()
    );
    let second = b.download(&format!("{an}/Files/f1.bin"));
    b.wait_download_done(second, Duration::from_secs(60));
    let copy = new_dir.join(&an).join("Files/f1.bin");
    assert_eq!(sha256_file(&copy), sha256_file(&share.join("f1.bin")));
    // `/downloads/` serves the new folder.
    let served = ureq::get(&format!("{}/downloads/{an}/Files/f1.bin", b.ui))
        .call()
        .unwrap();
    assert_eq!(served.header("content-length"), Some("300000"));
    let old = ureq::get(&format!("{}/downloads/{an}/Files/f0.bin", b.ui)).call();
    assert!(
        matches!(old, Err(ureq::Error::Status(404, _))),
        "files in the old folder are not served from the new one"
    );

    // Kept across a restart.
    b.stop();
    b.start();
    assert_eq!(settings(&b)["download_dir"], new_dir.to_str().unwrap());
    assert!(!settings(&b)["set_at_start"]
        .as_array()
        .unwrap()
        .contains(&json!("download_dir")));
    // A stored folder that cannot be used any more does not stop the start.
    b.stop();
    std::fs::remove_dir_all(tmp.path().join("usb")).unwrap();
    std::fs::write(tmp.path().join("usb"), b"not a directory").unwrap();
    b.start();
    assert_eq!(settings(&b)["download_dir"], default_dir.to_str().unwrap());
    assert!(b.log_text().contains("download folder set in the web UI"));
}

#[test]
fn listen_address_is_kept_for_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let before = a.api_get("/api/info")["listen_address"].clone();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let wanted = format!("127.0.0.1:{port}");
    let s = a
        .api_post("/api/settings", json!({ "listen": wanted }))
        .unwrap();
    assert_eq!(s["listen"]["saved"], wanted.as_str());
    assert_eq!(s["listen"]["current"], before);
    assert_eq!(s["listen"]["restart_needed"], true);
    assert_eq!(
        a.api_get("/api/info")["listen_address"],
        before,
        "no live rebind"
    );

    // The harness starts with --listen 127.0.0.1:0: another IP is refused, and so is a
    // port this machine cannot bind.
    let (status, body) = a
        .api_post(
            "/api/settings",
            json!({ "listen": format!("0.0.0.0:{port}") }),
        )
        .unwrap_err();
    assert_eq!(status, 409, "{body}");
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (status, body) = a
        .api_post(
            "/api/settings",
            json!({ "listen": busy.local_addr().unwrap().to_string() }),
        )
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
    let (status, body) = a
        .api_post("/api/settings", json!({ "listen": "not an address" }))
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("\"error\"") && body.contains("address"),
        "{body}"
    );
    assert_eq!(settings(&a)["listen"]["saved"], wanted.as_str());

    a.stop();
    a.start();
    assert_eq!(a.api_get("/api/info")["listen_address"], wanted.as_str());
    let s = settings(&a);
    assert_eq!(s["listen"]["current"], wanted.as_str());
    assert_eq!(s["listen"]["restart_needed"], false);
}

/// The download slots, the reserve, the rescan interval and the hashing rate of a view.
fn download_and_library(s: &Value) -> [&Value; 5] {
    [
        "max_downloads",
        "max_downloads_per_peer",
        "min_free_space",
        "rescan_interval",
        "background_hash_rate",
    ]
    .map(|key| &s[key])
}

fn indexed_lines(d: &Daemon) -> usize {
    d.log_text().matches("indexed ").count()
}

#[test]
fn download_slots_reserve_rescan_and_hashing_change_live_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    write_random_file(&share.join("a.bin"), 10_000, 1);
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .args(&["--rescan-interval", "3600"]);
    a.start();
    wait_for("the first index", Duration::from_secs(30), || {
        (indexed_lines(&a) >= 1).then_some(())
    });
    let s = settings(&a);
    assert_eq!(
        download_and_library(&s),
        [
            &json!(4),
            &json!(2),
            &json!(256 << 20),
            &json!(3600),
            &json!(64_000_000)
        ],
        "{s}"
    );
    assert_eq!(s["mdns"], json!({ "current": false, "saved": false }));

    for (bad, field) in [
        (json!({ "max_downloads": 0 }), "max_downloads"),
        (
            json!({ "max_downloads_per_peer": 1025 }),
            "max_downloads_per_peer",
        ),
        (json!({ "min_free_space": "lots" }), "min_free_space"),
        (json!({ "rescan_interval": 5 }), "rescan_interval"),
        (
            json!({ "background_hash_rate": "fast" }),
            "background_hash_rate",
        ),
        // All or nothing: the good field of a refused request is not applied either.
        (
            json!({ "max_downloads": 9, "rescan_interval": 1 }),
            "rescan_interval",
        ),
    ] {
        let (status, body) = a.api_post("/api/settings", bad.clone()).unwrap_err();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(field), "{bad}: {body}");
    }
    assert_eq!(
        settings(&a)["max_downloads"],
        4,
        "a refused request changed nothing"
    );

    // Live: a reserve larger than any disk holds downloads at once, and a short rescan
    // interval replaces the hour the running loop was waiting for.
    let before = indexed_lines(&a);
    let s = a
        .api_post(
            "/api/settings",
            json!({
                "max_downloads": 3,
                "max_downloads_per_peer": 3,
                "min_free_space": "1000000GB",
                "rescan_interval": 10,
                "background_hash_rate": "20MB",
                "mdns": true,
                "upnp": false,
            }),
        )
        .unwrap();
    assert_eq!(
        download_and_library(&s),
        [
            &json!(3),
            &json!(3),
            &json!(1_000_000_000_000_000u64),
            &json!(10),
            &json!(20_000_000)
        ],
        "{s}"
    );
    assert_eq!(
        s["mdns"],
        json!({ "current": false, "saved": true }),
        "from the next start"
    );
    let problems = a.api_get("/api/info")["problems"].to_string();
    assert!(problems.contains("download_disk_full"), "{problems}");
    wait_for(
        "a rescan within the new interval",
        Duration::from_secs(25),
        || (indexed_lines(&a) > before).then_some(()),
    );

    // Kept across a restart without the flags; a flag given at start wins again.
    a.stop();
    a.extra.clear();
    a.start();
    let s = settings(&a);
    assert_eq!(
        [
            &s["max_downloads"],
            &s["rescan_interval"],
            &s["background_hash_rate"]
        ],
        [&json!(3), &json!(10), &json!(20_000_000)],
        "{s}"
    );
    a.api_post(
        "/api/settings",
        json!({ "min_free_space": 0, "mdns": false }),
    )
    .unwrap();
    let problems = a.api_get("/api/info")["problems"].to_string();
    assert!(!problems.contains("download_disk_full"), "{problems}");
    let s = restart_with_flags(&mut a, &["--max-downloads", "2", "--rescan-interval", "60"]);
    assert_eq!(
        [&s["max_downloads"], &s["rescan_interval"]],
        [&json!(2), &json!(60)]
    );
    let given = s["set_at_start"].as_array().unwrap();
    assert!(given.contains(&json!("max_downloads")) && given.contains(&json!("rescan_interval")));
}
