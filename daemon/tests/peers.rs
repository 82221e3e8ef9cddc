//! Two and three real daemons on loopback: connecting, browsing, searching, downloading,
//! reconnecting, gossip, and refusing what must be refused.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn entry_paths(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

/// A large download must not stay in the page cache (drop-behind), checked before anything
/// reads the file again. On tmpfs the cache is the storage, so there is nothing to check.
fn assert_left_the_page_cache(file: &std::path::Path) {
    let out = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    if out("stat", &["-f", "-c", "%T"]) == "tmpfs" {
        eprintln!("download dir is on tmpfs: page-cache check skipped");
        return;
    }
    let resident: u64 = out("fincore", &["--bytes", "--noheadings", "--output", "RES"])
        .parse()
        .expect("fincore prints a byte count");
    let size = fs::metadata(file).unwrap().len();
    assert!(
        resident < size / 10,
        "{resident} of {size} bytes of the finished download are still cached"
    );
}

#[test]
fn connect_browse_search_and_download_files_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("share/Music");
    write_random_file(&music.join("big.bin"), 200 * 1024 * 1024, 1);
    for dir in 0..8 {
        for file in 0..40 {
            write_random_file(
                &music.join(format!("albums/a{dir}/track{file:02}.flac")),
                1000 + (dir * 40 + file) * 37,
                dir * 100 + file,
            );
        }
    }
    let mut a = Daemon::new(tmp.path(), "a").share(&music);
    let mut b = Daemon::new(tmp.path(), "b");
    a.start();
    b.start();
    // A's owner has not approved B yet: B's connect says so and exits 3, apart from errors.
    let first = b.cli(&["connect", &a.announce()]);
    let said = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(3), "{said}");
    assert!(said.contains("has not approved you yet"), "{said}");
    befriend(&b, &a);
    // Connecting the other way keeps exactly one working connection.
    assert!(a.connect(&b.announce()), "a friend refused a friend");
    let (an, bn) = (a.name(), b.name());
    assert!(a.connected_to(&bn) && b.connected_to(&an));
    let peers = b.cli_json(&["peers", "--json"]);
    assert_eq!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == an.as_str())
            .count(),
        1
    );

    // Wait for the share index, then browse non-recursively and search case-insensitively.
    wait_for("index", Duration::from_secs(20), || {
        let list = b.cli_json(&[
            "ls",
            &format!("{an}/Music"),
            "--recursive",
            "false",
            "--json",
        ]);
        (list.as_array().unwrap().len() == 2).then_some(())
    });
    let top = b.cli_json(&[
        "ls",
        &format!("{an}/Music"),
        "--recursive",
        "false",
        "--json",
    ]);
    assert_eq!(
        entry_paths(&top),
        [format!("{an}/Music/albums"), format!("{an}/Music/big.bin")]
    );
    let albums = &top.as_array().unwrap()[0];
    assert_eq!(albums["is_dir"], true);
    let expected_dir_size: u64 = (0..320u64).map(|i| 1000 + i * 37).sum();
    assert_eq!(
        albums["size"].as_u64().unwrap(),
        expected_dir_size,
        "directory sizes are cumulative"
    );
    let found = b.cli_json(&["ls", &an, "--searchterm", "TRACK07", "--json"]);
    assert_eq!(found.as_array().unwrap().len(), 8, "{found}");
    assert!(entry_paths(&found)
        .iter()
        .all(|p| p.ends_with("track07.flac")));
    let plain = String::from_utf8(b.cli(&["ls", &format!("{an}/Music/albums/a3")]).stdout).unwrap();
    assert_eq!(plain.lines().count(), 40);

    // A whole directory, then one big file with the progress bar, each checked by sha256.
    let dir_id = b.download(&format!("{an}/Music/albums"));
    b.cli_ok(&["download", &format!("{an}/Music/big.bin"), "--wait", "-q"]);
    assert_left_the_page_cache(&b.download_dir.join(&an).join("Music/big.bin"));
    let dir_done = b.wait_download_done(dir_id, Duration::from_secs(120));
    assert_eq!(dir_done["files_done"], 320);
    let got = b.download_dir.join(&an).join("Music");
    for dir in 0..8 {
        for file in 0..40 {
            let rel = format!("albums/a{dir}/track{file:02}.flac");
            assert_eq!(
                sha256_file(&got.join(&rel)),
                sha256_file(&music.join(&rel)),
                "{rel}"
            );
        }
    }
    assert_eq!(
        sha256_file(&got.join("big.bin")),
        sha256_file(&music.join("big.bin"))
    );
    assert!(!got.join("big.bin.part").exists());
    let transfers = b.cli_json(&["transfers", "--json"]);
    let big = transfers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "Music/big.bin")
        .expect("listed");
    assert_eq!(
        (
            big["peer"].as_str(),
            big["size"].as_u64(),
            big["received"].as_u64(),
            big["state"].as_str()
        ),
        (
            Some(an.as_str()),
            Some(200 << 20),
            Some(200 << 20),
            Some("done")
        )
    );
    // The sharer lists what it served (its most recent uploads), finished, to that peer.
    let uploads = a.uploads();
    assert!(!uploads.is_empty());
    assert!(
        uploads
            .iter()
            .all(|u| u["peer"] == b.name().as_str() && u["state"] == "done"),
        "{uploads:?}"
    );

    // read streams raw bytes, ranges included.
    let range = b.cli(&[
        "read",
        &format!("{an}/Music/big.bin"),
        "--start",
        "1000",
        "--end",
        "1100",
    ]);
    assert!(range.status.success());
    assert_eq!(
        range.stdout,
        fs::read(music.join("big.bin")).unwrap()[1000..1100]
    );
    // Downloaded files are served over HTTP too.
    let served = ureq::get(&format!(
        "{}/downloads/{an}/Music/albums/a0/track00.flac",
        b.ui
    ))
    .call()
    .unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut served.into_reader(), &mut body).unwrap();
    assert_eq!(
        body,
        fs::read(music.join("albums/a0/track00.flac")).unwrap()
    );
    a.stop();
    b.stop();
}

#[test]
fn two_shares_with_the_same_base_name_stay_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one/Photos");
    let two = tmp.path().join("two/Photos");
    write_random_file(&one.join("beach.jpg"), 100, 1);
    write_random_file(&two.join("mountain.jpg"), 200, 2);
    let mut a = Daemon::new(tmp.path(), "a").share(&one).share(&two);
    a.start();
    let listing = wait_for("both shares indexed", Duration::from_secs(20), || {
        let list = a.cli_json(&["shares", "--json"]);
        (list.as_array().unwrap().len() == 4).then_some(list)
    });
    let mut paths = entry_paths(&listing);
    paths.sort();
    assert_eq!(
        paths,
        [
            "Photos",
            "Photos-2",
            "Photos-2/mountain.jpg",
            "Photos/beach.jpg"
        ]
    );
    // Adding and removing at runtime through the API.
    let extra = tmp.path().join("three/Photos");
    write_random_file(&extra.join("x.jpg"), 10, 3);
    let added = a
        .api_post("/api/shares", serde_json::json!({ "dir": extra }))
        .unwrap();
    assert_eq!(added["name"], "Photos-3");
    let dup = a
        .api_post("/api/shares", serde_json::json!({ "dir": extra }))
        .unwrap_err();
    assert_eq!(dup.0, 400);
    ureq::delete(&format!("{}/api/shares/Photos", a.ui))
        .set(
            "Authorization",
            &format!(
                "Bearer {}",
                fs::read_to_string(a.storage.join("api-token"))
                    .unwrap()
                    .trim()
            ),
        )
        .call()
        .unwrap();
    let mut after = entry_paths(&a.cli_json(&["shares", "--recursive", "false", "--json"]));
    after.sort();
    assert_eq!(after, ["Photos-2", "Photos-3"]);
}

#[test]
fn restart_reconnects_known_peers_and_disconnect_sticks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    let mut b = Daemon::new(tmp.path(), "b");
    a.start();
    b.start();
    befriend(&b, &a);
    let (an, bn) = (a.name(), b.name());
    // The dialled side restarts: it comes back on its remembered port and B's stale
    // connection is replaced as soon as A redials.
    a.stop();
    wait_for("b to notice", Duration::from_secs(10), || {
        (!b.connected_to(&an)).then_some(())
    });
    a.start();
    wait_for(
        "automatic reconnect after restart",
        Duration::from_secs(15),
        || (b.connected_to(&an) && a.connected_to(&bn)).then_some(()),
    );
    // The dialling side restarts.
    b.stop();
    b.start();
    wait_for(
        "reconnect from the known peers list",
        Duration::from_secs(15),
        || (b.connected_to(&an) && a.connected_to(&bn)).then_some(()),
    );
    // A user disconnect is not undone by either side's reconnect logic.
    b.cli_ok(&["disconnect", &an]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(!b.connected_to(&an), "disconnected peer came back");
    let peers = b.cli_json(&["peers", "--json"]);
    let entry = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == an.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["disconnected_by_user"], true);
    // Connecting explicitly lifts it.
    befriend(&b, &a);
}

#[test]
fn bad_announce_addresses_and_wrong_keys_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    let mut b = Daemon::new(tmp.path(), "b");
    a.start();
    b.start();
    let garbage = b.cli(&["connect", "NotAnAddress"]);
    assert!(!garbage.status.success());
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("announce address"));
    // Same IP and port as A, but the key of a stranger: the TLS check must reject it.
    let real: harddrive_party::announce::AnnounceAddress = a.announce().parse().unwrap();
    let impostor = harddrive_party::announce::AnnounceAddress {
        public_key: harddrive_party::identity::Identity::from_seed([7; 32]).public_key,
        ..real
    };
    let out = b.cli(&["connect", &impostor.to_string()]);
    assert!(!out.status.success(), "a wrong key must not connect");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "one-line error, got {err:?}"
    );
    assert!(!b.connected_to(&impostor.name()));
    let own = a.cli(&["connect", &a.announce()]);
    assert!(!own.status.success());
}

#[test]
fn a_corrupt_database_stops_start_up_and_is_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("storage");
    fs::create_dir_all(&storage).unwrap();
    let garbage = vec![0x42u8; 16384];
    fs::write(storage.join("harddrive-party.redb"), &garbage).unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--storage",
            storage.to_str().unwrap(),
            "--ui-address",
            &format!("http://127.0.0.1:{}", free_tcp_port()),
            "start",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
        ])
        .arg("--download-dir")
        .arg(tmp.path().join("dl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged") && err.contains("left untouched"),
        "{err}"
    );
    assert_eq!(
        fs::read(storage.join("harddrive-party.redb")).unwrap(),
        garbage
    );
}

#[test]
fn state_changing_calls_need_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let refused = ureq::post(&format!("{}/api/stop", a.ui)).send_json(serde_json::json!({}));
    assert!(matches!(refused, Err(ureq::Error::Status(401, _))));
    let wrong = ureq::post(&format!("{}/api/stop", a.ui))
        .set("Authorization", "Bearer nope")
        .send_json(serde_json::json!({}));
    assert!(matches!(wrong, Err(ureq::Error::Status(401, _))));
    assert!(a.is_running() && a.try_api_get("/api/info").is_some());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(a.storage.join("api-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let ui = ureq::get(&format!("{}/", a.ui))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(ui.contains("harddrive-party"));
    let name = a.name();
    let said = a.cli_ok(&["stop"]);
    assert_eq!(said.trim(), format!("stopped {name}"));
    assert!(
        ureq::get(&format!("{}/api/auth/session", a.ui))
            .timeout(std::time::Duration::from_secs(2))
            .call()
            .is_err(),
        "nothing answers after `stop` returned"
    );
}
