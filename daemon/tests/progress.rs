//! Live progress and transfer states with real daemons: bytes move as they arrive on the
//! downloading side and the sharing side shows the same file's bytes as sent, neither
//! claiming `done` early; a folder counts the bytes of its files in flight; a download
//! whose peer goes offline waits for it by name and finishes when it is back; a path the
//! peer does not have fails for good and is not offered for resume; a file its sharer has
//! not hashed yet starts flowing before the sharer has read it all, and what was read
//! ahead counts once the piece list vouches for it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MB: u64 = 1_000_000;

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// The sharer's upload row for `path` sent to `peer`, if any.
fn upload_of(a: &Daemon, peer: &str, path: &str) -> Option<Value> {
    a.uploads()
        .into_iter()
        .find(|u| u["peer"] == peer && u["path"] == path)
}

/// Samples `b`'s download `id` (and `a`'s upload row of `path`) every 200 ms until it is
/// done, at most `limit`; returns both views for each sample taken while it was active.
fn watch(a: &Daemon, b: &Daemon, id: u64, path: &str, limit: Duration) -> Vec<(Value, Value)> {
    let (started, bn) = (Instant::now(), b.name());
    let mut samples = Vec::new();
    loop {
        assert!(
            started.elapsed() < limit,
            "download {id} not done: {samples:?}"
        );
        let down = b.transfer(id);
        match down["state"].as_str() {
            Some("done") => return samples,
            Some("active") => {
                let up = upload_of(a, &bn, path).unwrap_or(Value::Null);
                samples.push((down, up));
            }
            Some("failed") => panic!("failed: {down}"),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn progress_moves_as_bytes_arrive_and_both_sides_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Slow");
    write_random_file(&share.join("big.bin"), 6 * MB, 1);
    for i in 0..2 {
        write_random_file(&share.join(format!("Album/t{i}.bin")), 3 * MB, 10 + i);
    }
    // 2 MB/s: a piece (1 MiB) takes half a second, so progress must move within pieces.
    let (a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        5,
        &["--upload-limit", "2MB"],
        &["--max-downloads", "1"],
    );
    let an = a.name();
    let id = b.download(&format!("{an}/Slow/big.bin"));
    let samples = watch(&a, &b, id, "Slow/big.bin", Duration::from_secs(30));
    let received: Vec<u64> = samples.iter().map(|(d, _)| n(d, "received")).collect();
    let rising = received.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        rising >= 6,
        "received should rise sample after sample: {received:?}"
    );
    assert!(
        received.windows(2).all(|w| w[1] >= w[0]),
        "never backwards: {received:?}"
    );
    // Within pieces: some sample shows a count that is not a whole number of pieces.
    let piece = harddrive_party::content::PIECE_SIZE;
    assert!(
        received.iter().any(|r| r % piece != 0),
        "bytes counted as they arrive, not per piece: {received:?}"
    );
    for (down, up) in &samples {
        assert!(n(down, "verified_bytes") <= n(down, "received"), "{down}");
        let (got, sent) = (n(down, "received"), n(up, "received"));
        if got > 0 && got < 3 * MB {
            // The sharer paces before sending, so both sides count the same bytes, give or
            // take what is on the way and one 0.25 s progress tick.
            assert!(
                up["state"] == "active" || up["state"] == "queued",
                "the sender is not done while the receiver has {got}: {up}"
            );
            assert_eq!(n(up, "size"), 6 * MB, "one row for the whole file: {up}");
            assert!(
                sent.abs_diff(got) < 1_500_000,
                "sent {sent}, received {got}"
            );
        }
    }
    let up = upload_of(&a, &b.name(), "Slow/big.bin").expect("the upload row");
    assert_eq!(
        (up["state"].as_str(), n(&up, "received")),
        (Some("done"), 6 * MB)
    );
    let rows = a
        .uploads()
        .iter()
        .filter(|u| u["path"] == "Slow/big.bin")
        .count();
    assert_eq!(rows, 1, "one row per file and peer, not one per run");

    // A folder counts the bytes of the file in flight before any file is done.
    let folder = b.download(&format!("{an}/Slow/Album"));
    let samples = watch(&a, &b, folder, "Slow/Album/t0.bin", Duration::from_secs(30));
    assert!(
        samples
            .iter()
            .any(|(d, _)| n(d, "files_done") == 0 && n(d, "received") > 0),
        "folder progress before the first file is done: {samples:?}"
    );
    let done = b.transfer(folder);
    assert_eq!(
        (n(&done, "received"), n(&done, "verified_bytes")),
        (6 * MB, 6 * MB)
    );

    // Clearing finished transfers forgets them but keeps the files.
    let cleared = b
        .api_post("/api/transfers/clear-finished", serde_json::json!({}))
        .unwrap();
    assert_eq!(cleared["cleared_downloads"], 2, "{cleared}");
    assert_eq!(b.api_get("/api/transfers"), serde_json::json!([]));
    let copy = b.download_dir.join(&an).join("Slow/big.bin");
    assert_eq!(sha256_file(&copy), sha256_file(&share.join("big.bin")));
    let cleared = a
        .api_post("/api/transfers/clear-finished", serde_json::json!({}))
        .unwrap();
    assert_eq!(cleared["cleared_uploads"], 3, "{cleared}");
}

#[test]
fn an_offline_peer_is_waited_for_and_not_found_is_final() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Files");
    write_random_file(&share.join("f.bin"), 4 * MB, 3);
    write_random_file(&share.join("Dir/kept.bin"), 1000, 4);
    write_random_file(&share.join("Dir/gone.bin"), 1000, 5);
    let (mut a, b) = sharer_and_downloader(tmp.path(), &share, 5, &["--upload-limit", "1MB"], &[]);
    let an = a.name();

    // Not found: the listing is refused, the download fails at once and offers no resume.
    let missing = b.download(&format!("{an}/Files/missing.bin"));
    let failed = wait_for("the missing path to fail", Duration::from_secs(15), || {
        let t = b.transfer(missing);
        (t["state"] == "failed").then_some(t)
    });
    assert_eq!(failed["resumable"], false, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("no such file"),
        "{failed}"
    );
    // A file that vanished from a folder: final too, the rest of the folder is done.
    std::fs::remove_file(share.join("Dir/gone.bin")).unwrap();
    let dir = b.download(&format!("{an}/Files/Dir"));
    let dir_failed = wait_for("the folder to end", Duration::from_secs(15), || {
        let t = b.transfer(dir);
        (t["state"] == "failed").then_some(t)
    });
    assert_eq!(dir_failed["files_done"], 1, "{dir_failed}");
    assert_eq!(
        dir_failed["failures"][0]["retryable"], false,
        "{dir_failed}"
    );
    assert_eq!(dir_failed["resumable"], false, "{dir_failed}");

    // Offline: the sharer stops mid-file; the download waits for it by name.
    let id = b.download(&format!("{an}/Files/f.bin"));
    wait_for("a verified piece", Duration::from_secs(15), || {
        (n(&b.transfer(id), "verified_bytes") > 0).then_some(())
    });
    a.stop();
    let waiting = wait_for("the download to wait", Duration::from_secs(20), || {
        let t = b.transfer(id);
        (t["state"] == "waiting").then_some(t)
    });
    assert_eq!(waiting["waiting_for"], an.as_str(), "{waiting}");
    assert!(
        n(&waiting, "received") > 0,
        "verified pieces stay: {waiting}"
    );
    // Still failed for good: nothing retried the missing path meanwhile.
    assert_eq!(b.transfer(missing)["state"], "failed");
    a.start();
    // Redialled by B's reconnect loop too; this only saves waiting for its backoff.
    let _ = b.cli(&["connect", &a.announce()]);
    let done = b.wait_download_done(id, Duration::from_secs(30));
    assert_eq!(n(&done, "received"), 4 * MB);
    assert_eq!(done["waiting_for"], Value::Null);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Files/f.bin")),
        sha256_file(&share.join("f.bin"))
    );
}

#[test]
fn an_unhashed_file_flows_before_its_sharer_has_hashed_it() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("Films");
    // 16 MiB of data, then a sparse tail to 2 GiB: the sharer reads all of it (seconds)
    // before it can answer `Hashes`; the downloader reads ahead meanwhile.
    let film = share.join("big.bin");
    write_random_file(&film, 16 << 20, 5);
    std::fs::File::options()
        .write(true)
        .open(&film)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        2,
        &["--no-background-hashing"],
        &["--download-limit", "8MB"],
    );
    let id = b.download(&format!("{}/Films/big.bin", a.name()));
    let hashed = || a.log_text().contains("hashed Films/big.bin");
    let early = wait_for(
        "bytes before the piece list",
        Duration::from_secs(20),
        || {
            let (t, done_hashing) = (b.transfer(id), hashed());
            let received = n(&t, "received");
            assert!(
                received < 4 << 20 || n(&t, "verified_bytes") == 0,
                "read-ahead bytes count as verified only after the list: {t}"
            );
            match received >= 4 << 20 {
                true if !done_hashing => Some(received),
                true => panic!("the sharer hashed the file before the bytes came: {t}"),
                false => None,
            }
        },
    );
    // The list arrives; the pieces read ahead that match it are verified at once.
    let verified = wait_for(
        "the piece list to vouch for them",
        Duration::from_secs(60),
        || {
            let t = b.transfer(id);
            (hashed() && n(&t, "verified_bytes") >= early - (1 << 20))
                .then_some(n(&t, "verified_bytes"))
        },
    );
    assert!(verified >= 3 << 20, "{verified}");
    b.api_delete(&format!("/api/transfers/{id}")).unwrap();
}

/// Retry policy: losing a peer is no failed try. With a budget of one try, a sharer that
/// vanishes without a word (`kill -9`: its source stalls, then a `Have` goes unanswered)
/// and stays away far longer than the budget leaves the download `waiting` for it, never
/// failed; it resumes and completes once the sharer is back.
#[test]
fn a_peer_away_longer_than_the_retry_budget_is_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Files");
    write_random_file(&share.join("f.bin"), 8 * MB, 6);
    let (mut a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        2,
        &["--upload-limit", "1MB"],
        &["--retry-limit", "1", "--retry-backoff", "1"],
    );
    let settings = b.api_get("/api/settings");
    assert_eq!(
        (&settings["retry_limit"], &settings["retry_backoff"]),
        (&Value::from(1), &Value::from(1)),
        "{settings}"
    );
    let an = a.name();
    let id = b.download(&format!("{an}/Files/f.bin"));
    wait_for("a verified piece", Duration::from_secs(15), || {
        (n(&b.transfer(id), "verified_bytes") > 0).then_some(())
    });
    a.kill9();
    // The stall timeout (30 s) and the unanswered `Have` (5 s) come first.
    let waiting = wait_for("the download to wait", Duration::from_secs(60), || {
        let t = b.transfer(id);
        assert_ne!(t["state"], "failed", "a lost peer spent the one try: {t}");
        (t["state"] == "waiting").then_some(t)
    });
    assert_eq!(waiting["waiting_for"], an.as_str(), "{waiting}");
    // Many retry budgets later, still waiting.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let t = b.transfer(id);
        assert_eq!(t["state"], "waiting", "{t}");
    }
    a.start();
    let _ = b.cli(&["connect", &a.announce()]);
    let done = b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(n(&done, "received"), 8 * MB);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Files/f.bin")),
        sha256_file(&share.join("f.bin"))
    );
}
