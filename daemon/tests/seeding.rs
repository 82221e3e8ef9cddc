//! Seeding what we fetch (`seed_downloads`, PROTOCOL.md §10.2), end to end: a file B
//! downloaded from A is offered by B to a third friend C — found by `Have` (B is a source of
//! C's download of A's file) and listed under B's `downloads` share (C fetches it from B
//! with A gone) — and the setting and the shares screen turn it off.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const FILE_SIZE: u64 = 6 << 20;

fn share_names(d: &Daemon) -> Vec<String> {
    d.api_get("/api/shares")
        .as_array()
        .map(|shares| {
            shares
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn seeding(d: &Daemon) -> Value {
    d.api_get("/api/settings")["seed_downloads"].clone()
}

fn bytes_from(transfer: &Value, peer: &str) -> u64 {
    transfer["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["peer"] == peer)
        .filter_map(|s| s["bytes"].as_u64())
        .sum()
}

#[test]
fn a_finished_download_is_offered_to_other_friends_until_seeding_is_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let films = tmp.path().join("Films");
    write_random_file(&films.join("film.bin"), FILE_SIZE, 7);
    // A is slow, so C's download of A's file has every reason to use B.
    let mut a = Daemon::new(tmp.path(), "a").share(&films).args(&[
        "--upload-limit",
        "1MB",
        "--background-hash-rate",
        "0",
    ]);
    let mut b = Daemon::new(tmp.path(), "b").with_seeding();
    let mut c = Daemon::new(tmp.path(), "c");
    a.start();
    b.start();
    c.start();
    befriend(&b, &a);
    let (an, bn) = (a.name(), b.name());
    assert_eq!(seeding(&b), true, "on by default");
    let id = b.download(&format!("{an}/Films/film.bin"));
    b.wait_download_done(id, Duration::from_secs(60));
    assert!(share_names(&b).contains(&"downloads".to_string()));
    // Listed once the watcher has seen the finished file settle (PROTOCOL.md §6.1): the
    // share, two folders and the file.
    wait_indexed(&b, 4);

    befriend(&c, &a);
    befriend(&c, &b);
    let id = c.download(&format!("{an}/Films/film.bin"));
    let done = c.wait_download_done(id, Duration::from_secs(60));
    assert!(
        bytes_from(&done, &bn) > 0,
        "B's finished copy joined C's swarm: {done}"
    );
    assert_eq!(
        sha256_file(&c.download_dir.join(&an).join("Films/film.bin")),
        sha256_file(&films.join("film.bin"))
    );

    // With A gone, C still finds the file in B's listing and fetches it from B.
    a.stop();
    let seeded = format!("{bn}/downloads/{an}/Films/film.bin");
    let id = c.download(&seeded);
    c.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(
        sha256_file(
            &c.download_dir
                .join(&bn)
                .join(format!("downloads/{an}/Films/film.bin"))
        ),
        sha256_file(&films.join("film.bin"))
    );

    // Turned off in the settings: the share goes, and so does what C could list.
    b.api_post("/api/settings", json!({ "seed_downloads": false }))
        .unwrap();
    wait_for(
        "B to stop sharing its downloads",
        Duration::from_secs(20),
        || (!share_names(&b).contains(&"downloads".to_string())).then_some(()),
    );
    assert!(!c.cli(&["ls", &format!("{bn}/downloads")]).status.success());
    // On again, then removed from the shares screen: that turns seeding off too.
    b.api_post("/api/settings", json!({ "seed_downloads": true }))
        .unwrap();
    wait_for(
        "B to share its downloads again",
        Duration::from_secs(20),
        || {
            share_names(&b)
                .contains(&"downloads".to_string())
                .then_some(())
        },
    );
    b.api_delete("/api/shares/downloads").unwrap();
    assert_eq!(seeding(&b), false);
    // And it stays off across a restart.
    b.stop();
    b.start();
    assert_eq!(seeding(&b), false);
    assert!(!share_names(&b).contains(&"downloads".to_string()));
}
