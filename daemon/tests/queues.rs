//! Queues, partial failures and live progress: upload slots with a queue behind them, a
//! directory download that survives one bad file, and progress events over `/ws`.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

#[test]
fn upload_slots_queue_requests_beyond_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Big");
    for i in 0..3 {
        write_random_file(&share.join(format!("part{i}.bin")), 96 * 1024 * 1024, i);
    }
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .args(&["--max-uploads", "1"]);
    let mut b = Daemon::new(tmp.path(), "b").args(&[
        "--max-downloads-per-peer",
        "3",
        "--max-downloads",
        "3",
    ]);
    a.start();
    b.start();
    befriend(&b, &a);
    let an = a.name();
    wait_indexed(&a, 4);
    let id = b.download(&format!("{an}/Big"));
    // The same file requested on its own as well: the two requests must not write one `.part` at once.
    let single = b.download(&format!("{an}/Big/part1.bin"));
    let mut saw_queue = false;
    wait_for(
        "download to finish while watching upload slots",
        Duration::from_secs(120),
        || {
            let uploads = a.uploads();
            let active = uploads.iter().filter(|u| u["state"] == "active").count();
            assert!(active <= 1, "more uploads than slots: {uploads:?}");
            saw_queue |= active == 1 && uploads.iter().any(|u| u["state"] == "queued");
            (b.transfer(id)["state"] == "done").then_some(())
        },
    );
    assert!(
        saw_queue,
        "requests beyond the single slot should have waited in the queue"
    );
    b.wait_download_done(single, Duration::from_secs(60));
    for i in 0..3 {
        let name = format!("part{i}.bin");
        assert_eq!(
            sha256_file(&b.download_dir.join(&an).join("Big").join(&name)),
            sha256_file(&share.join(&name))
        );
    }
}

#[test]
fn one_failing_file_does_not_stop_a_directory_download() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Mixed");
    // a.txt is fetched first, one file at a time and slowly, so gone.txt can be deleted
    // after the folder was listed to B and before its turn: the share watcher drops it
    // from A's index at once, which must not save B's list from holding it.
    write_random_file(&share.join("a.txt"), 3_000_000, 1);
    for name in ["gone.txt", "z.txt"] {
        write_random_file(&share.join(name), 5000, name.len() as u64);
    }
    let (a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        4,
        &["--upload-limit", "1MB"],
        &["--max-downloads", "1"],
    );
    let an = a.name();
    let waiting = {
        let (storage, ui, folder) = (b.storage.clone(), b.ui.clone(), format!("{an}/Mixed"));
        std::thread::spawn(move || {
            std::process::Command::new(BIN)
                .args(["--storage", storage.to_str().unwrap(), "--ui-address", &ui])
                .args(["download", &folder, "--wait", "-q"])
                .output()
                .unwrap()
        })
    };
    wait_for("B to list the folder", Duration::from_secs(20), || {
        b.cli_json(&["transfers", "--json"])
            .as_array()?
            .iter()
            .any(|t| t["path"] == "Mixed" && t["files_total"] == 3)
            .then_some(())
    });
    std::fs::remove_file(share.join("gone.txt")).unwrap();
    let out = waiting.join().unwrap();
    assert!(!out.status.success(), "a partial failure is reported");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gone.txt"), "{stderr}");
    let transfers = b.cli_json(&["transfers", "--json"]);
    let t = transfers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "Mixed")
        .unwrap();
    assert_eq!(t["state"], "failed");
    assert_eq!(t["files_done"], 2);
    assert_eq!(t["failures"][0]["path"], "Mixed/gone.txt");
    assert!(
        t["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no such file"),
        "{t}"
    );
    for name in ["a.txt", "z.txt"] {
        assert_eq!(
            sha256_file(&b.download_dir.join(&an).join("Mixed").join(name)),
            sha256_file(&share.join(name))
        );
    }
}

async fn collect_events(url: String, until_done: &'static str) -> Vec<Value> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        let Ok(text) = message.into_text() else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let finished = event["type"] == "transfer"
            && event["direction"] == until_done
            && event["state"] == "done";
        events.push(event);
        if finished {
            break;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_pushed_over_the_websocket_for_both_directions() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Video");
    write_random_file(&share.join("clip.mp4"), 512 * 1024 * 1024, 9);
    let (a, b) = sharer_and_downloader(tmp.path(), &share, 2, &[], &[]);
    let an = a.name();
    let down_events = tokio::spawn(collect_events(
        format!("{}/ws", b.ui.replace("http", "ws")),
        "download",
    ));
    let up_events = tokio::spawn(collect_events(
        format!("{}/ws", a.ui.replace("http", "ws")),
        "upload",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = b.download(&format!("{an}/Video/clip.mp4"));
    let down = down_events.await.unwrap();
    let up = up_events.await.unwrap();
    let done = down
        .iter()
        .find(|e| e["type"] == "transfer" && e["id"] == id && e["state"] == "done")
        .unwrap_or_else(|| panic!("no completion event in {down:?}"));
    assert_eq!(done["received"].as_u64(), Some(512 * 1024 * 1024));
    assert!(
        up.iter().any(|e| e["type"] == "transfer"
            && e["direction"] == "upload"
            && e["state"] == "done"
            && e["peer"] == b.name().as_str()),
        "{up:?}"
    );
    // Progress in between carries a rate, and the ETA follows from it.
    let progress: Vec<&Value> = down
        .iter()
        .filter(|e| e["state"] == "active" && e["rate"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert!(
        !progress.is_empty(),
        "expected active events with a rate: {down:?}"
    );
    assert!(progress.iter().all(|e| e["eta_seconds"].is_u64()));
}

#[test]
fn rate_limits_hold_change_live_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Audio");
    write_random_file(&share.join("up.flac"), 12_000_000, 3);
    write_random_file(&share.join("down.flac"), 12_000_000, 4);
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .args(&["--upload-limit", "4MB"]);
    let mut b = Daemon::new(tmp.path(), "b").args(&["--download-limit", "4MB"]);
    a.start();
    b.start();
    befriend(&b, &a);
    let an = a.name();
    wait_indexed(&a, 3);
    assert_eq!(a.api_get("/api/settings")["limits"]["upload"], 4_000_000);

    // Both caps apply to this transfer; it must be clearly limited (under twice the cap).
    let started = std::time::Instant::now();
    b.cli_ok(&["download", &format!("{an}/Audio/up.flac"), "--wait", "-q"]);
    let rate = 12_000_000.0 / started.elapsed().as_secs_f64();
    assert!(
        rate < 8_000_000.0,
        "upload cap of 4 MB/s not applied: {rate:.0} B/s"
    );

    // Lifting both limits live speeds up a transfer already running.
    let id = b.download(&format!("{an}/Audio/down.flac"));
    wait_for("transfer to start", Duration::from_secs(20), || {
        (b.transfer(id)["received"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    a.api_post("/api/settings", serde_json::json!({ "upload_limit": 0 }))
        .unwrap();
    b.api_post(
        "/api/settings",
        serde_json::json!({ "download_limit": "0" }),
    )
    .unwrap();
    b.wait_download_done(id, Duration::from_secs(30));
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Audio/down.flac")),
        sha256_file(&share.join("down.flac"))
    );
    let bad = b
        .api_post(
            "/api/settings",
            serde_json::json!({ "download_limit": "fast" }),
        )
        .unwrap_err();
    assert_eq!(bad.0, 400);

    // A limit set live survives a restart (when no flag overrides it).
    b.api_post(
        "/api/settings",
        serde_json::json!({ "peer_upload_limit": "1.5MiB" }),
    )
    .unwrap();
    b.stop();
    b.extra.clear();
    b.start();
    let limits = b.api_get("/api/settings")["limits"].clone();
    assert_eq!(
        (limits["peer_upload"].as_u64(), limits["download"].as_u64()),
        (Some(1_572_864), Some(0))
    );
}

#[test]
fn the_download_queue_can_be_reordered_and_keeps_its_order() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Q");
    for i in 0..3 {
        write_random_file(&share.join(format!("f{i}.bin")), 6_000_000, 10 + i);
    }
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    // One file at a time, slowly: the queue order decides what comes next. f0 takes about
    // 6 s, so it is still running when the move arrives even on a loaded machine.
    let mut b =
        Daemon::new(tmp.path(), "b").args(&["--max-downloads", "1", "--download-limit", "1MB"]);
    a.start();
    b.start();
    befriend(&b, &a);
    let an = a.name();
    wait_indexed(&a, 4);
    // f0 must hold the only slot before the others are queued: a queued download starts
    // once its listing arrives, so otherwise whichever listing came back first would run.
    let first = b.download(&format!("{an}/Q/f0.bin"));
    wait_for("f0 to start", Duration::from_secs(30), || {
        (b.transfer(first)["received"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let ids: Vec<u64> = std::iter::once(first)
        .chain((1..3).map(|i| b.download(&format!("{an}/Q/f{i}.bin"))))
        .collect();
    b.api_post(
        &format!("/api/transfers/{}/move", ids[2]),
        serde_json::json!({ "position": 0 }),
    )
    .unwrap();
    let order = |d: &Daemon| -> Vec<u64> {
        d.api_get("/api/transfers")
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["direction"] == "download")
            .map(|t| t["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(order(&b), [ids[2], ids[0], ids[1]]);
    // f0 was already running; f2 must come before f1.
    wait_for("f2 to start before f1", Duration::from_secs(30), || {
        let (t1, t2) = (b.transfer(ids[1]), b.transfer(ids[2]));
        assert_eq!(
            t1["received"], 0,
            "f1 started before the file moved ahead of it"
        );
        (t2["received"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    b.stop();
    b.start();
    assert_eq!(
        order(&b),
        [ids[2], ids[0], ids[1]],
        "the order survives a restart"
    );
    let missing = b
        .api_post(
            "/api/transfers/999/move",
            serde_json::json!({ "position": 0 }),
        )
        .unwrap_err();
    assert_eq!(missing.0, 404);
}

#[test]
fn alternative_limits_apply_by_hand_or_by_schedule_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Night");
    write_random_file(&share.join("x.bin"), 6_000_000, 21);
    let (mut a, b) = sharer_and_downloader(tmp.path(), &share, 2, &[], &[]);
    let an = a.name();
    let on = a
        .api_post(
            "/api/settings",
            serde_json::json!({ "alt_upload_limit": "2MB", "alt_mode": "on" }),
        )
        .unwrap();
    assert_eq!(on["alt_speed_active"], true);
    assert_eq!(on["effective_limits"]["upload"], 2_000_000);
    assert_eq!(
        on["limits"]["upload"], 0,
        "the normal limits stay as they were"
    );
    // The alternative cap holds a real transfer (clearly limited: under twice the cap).
    let started = std::time::Instant::now();
    b.cli_ok(&["download", &format!("{an}/Night/x.bin"), "--wait", "-q"]);
    assert!(
        6_000_000.0 / started.elapsed().as_secs_f64() < 4_000_000.0,
        "alternative upload cap not applied"
    );

    let whole_day = serde_json::json!({ "days": [], "from": "00:00", "to": "00:00" });
    let scheduled = a
        .api_post(
            "/api/settings",
            serde_json::json!({ "alt_mode": "schedule", "alt_schedule": whole_day }),
        )
        .unwrap();
    assert_eq!(
        scheduled["alt_speed_active"], true,
        "a whole-day schedule is in force now"
    );
    let cleared = a
        .api_post("/api/settings", serde_json::json!({ "alt_schedule": null }))
        .unwrap();
    assert_eq!(cleared["alt_speed_active"], false);
    assert_eq!(cleared["effective_limits"]["upload"], 0);
    let bad = a
        .api_post(
            "/api/settings",
            serde_json::json!({ "alt_schedule": { "from": "25:00", "to": "01:00" } }),
        )
        .unwrap_err();
    assert_eq!(bad.0, 400, "{}", bad.1);

    a.api_post("/api/settings", serde_json::json!({ "alt_mode": "on" }))
        .unwrap();
    a.stop();
    a.start();
    let after = a.api_get("/api/settings");
    assert_eq!(
        (
            after["alt_speed_active"].as_bool(),
            after["effective_limits"]["upload"].as_u64()
        ),
        (Some(true), Some(2_000_000))
    );
}

/// Changing who sees a share tells every open UI (`shares_changed` over `/ws`), so another
/// window redraws the share's "Visible to".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_access_change_is_pushed_over_the_websocket() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Private");
    write_random_file(&share.join("note.txt"), 100, 3);
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    a.start();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", a.ui.replace("http", "ws")))
            .await
            .expect("websocket");
    let a = std::sync::Arc::new(a);
    let changer = a.clone();
    tokio::task::spawn_blocking(move || {
        changer.cli_ok(&["share-access", "Private", "--all-friends"]);
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        let Ok(event) = serde_json::from_str::<Value>(&message.into_text().unwrap_or_default())
        else {
            continue;
        };
        if event["type"] == "shares_changed" {
            return;
        }
        seen.push(event);
    }
    panic!("no shares_changed within 10 s; saw {seen:?}");
}
