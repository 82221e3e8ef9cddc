//! The web UI in a real browser: two real daemons on loopback, and `tests/ui/phone.mjs`
//! driving Debian's Chromium (playwright-core) on a phone-sized screen against daemon A:
//! first-run password, logout/login, add a share, connect B by pasting its address, browse
//! (10,000 entries) and search, a folder download to 100%, sha256 on disk, a live download
//! limit, pause and resume of a large file, reordering two queued downloads, the download
//! folder, upload slots and listen address changed in Settings (the folder moved to a
//! 4 MiB tmpfs, so the full-disk banner shows; needs root), axe-core checks. Screenshots land in
//! `target/ui-shots/`. `ci/test` installs Chromium and the npm packages first.

mod common;

use std::time::Duration;

use common::browser::{assert_screenshots, run_browser_script};
use common::*;

const NODE_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn phone_ui_end_to_end_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    // B shares a small album, a large file and a directory of 10,000 entries.
    let b_share = tmp.path().join("b-files");
    for i in 1..=6u64 {
        write_random_file(
            &b_share.join(format!("Music/Album/track-{i}.flac")),
            400_000 + i * 100_003,
            i,
        );
    }
    write_random_file(&b_share.join("Big/big.bin"), 48_000_000, 99);
    let many = b_share.join("Many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..10_000 {
        std::fs::write(many.join(format!("file-{i:05}.txt")), b"x").unwrap();
    }
    // A will share this through the UI.
    let a_share = tmp.path().join("Photos");
    write_random_file(&a_share.join("beach.jpg"), 120_000, 7);

    let mut b = Daemon::new(tmp.path(), "b")
        .share(&b_share.join("Music"))
        .share(&b_share.join("Big"))
        .share(&many);
    b.start();
    // Mounted before A starts so it is unmounted only after A is gone.
    let small = Tmpfs::mount(&tmp.path().join("small-disk"), "4m");
    // A 1 MB/s limit makes the folder download last a few seconds, so progress can be
    // watched; one download slot lets later downloads queue.
    let mut a =
        Daemon::new(tmp.path(), "a").args(&["--download-limit", "1MB", "--max-downloads", "1"]);
    a.start();
    // Friends swap addresses: B dials A's (A sees a request), A pastes B's in the UI.
    assert!(!b.connect(&a.announce()), "a stranger was welcomed");
    let next_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    run_browser_script(
        "phone.mjs",
        &[
            ("HDP_A_URL", a.ui.clone()),
            ("HDP_A_STORAGE", a.storage.display().to_string()),
            ("HDP_A_DOWNLOADS", a.download_dir.display().to_string()),
            ("HDP_A_SHARE_DIR", a_share.display().to_string()),
            ("HDP_B_URL", b.ui.clone()),
            ("HDP_B_SHARE", b_share.display().to_string()),
            (
                "HDP_A_SMALL_DIR",
                small.0.join("downloads").display().to_string(),
            ),
            ("HDP_A_NEXT_LISTEN", format!("127.0.0.1:{next_port}")),
        ],
        NODE_TIMEOUT,
        &a,
    );

    // Independently of the JS checks: every file A fetched is B's, byte for byte.
    let b_name = b.name();
    let downloaded = a.download_dir.join(&b_name);
    for (original, copy) in [
        (b_share.join("Big/big.bin"), downloaded.join("Big/big.bin")),
        (
            b_share.join("Music/Album/track-4.flac"),
            downloaded.join("Music/Album/track-4.flac"),
        ),
    ] {
        assert_eq!(sha256_file(&original), sha256_file(&copy), "{copy:?}");
    }
    assert_screenshots(&[
        "01-setup",
        "02-login",
        "03-shares",
        "04-peers",
        "05-browse",
        "06-search",
        "06-search-sheet",
        "08-settings",
        "10-transfers-paused",
        "11-transfers-done",
        "13-transfers-reordered",
        "14-disk-full-banner",
        "phone",
    ]);
    a.stop();
    b.stop();
}

/// The Transfers screen at 390×844 (`tests/ui/transfers.mjs`): B shares at 1 MB/s, so A's
/// download of a 24 MB file is watched moving; filters, a final failure without Resume,
/// "Clear finished" (files kept), and a toast that covers no control and can be dismissed.
/// The file is large enough to still be downloading at the script's last step (its queue
/// buttons) on a loaded machine: nothing waits for it to finish.
#[test]
fn transfers_screen_on_a_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("b-files/Slow");
    write_random_file(&share.join("big.bin"), 24_000_000, 1);
    write_random_file(&share.join("small.bin"), 200_000, 2);
    let mut b = Daemon::new(tmp.path(), "b")
        .share(&share)
        .args(&["--upload-limit", "1MB"]);
    let mut a = Daemon::new(tmp.path(), "a");
    b.start();
    a.start();
    befriend(&a, &b);
    wait_indexed(&b, 3);
    run_browser_script(
        "transfers.mjs",
        &[
            ("HDP_A_URL", a.ui.clone()),
            ("HDP_A_STORAGE", a.storage.display().to_string()),
            ("HDP_A_DOWNLOADS", a.download_dir.display().to_string()),
            ("HDP_B_NAME", b.name()),
        ],
        Duration::from_secs(90),
        &a,
    );
    assert_screenshots(&[
        "20-transfers-live",
        "21-transfers-failed-filter",
        "22-transfers-toast",
        "23-transfers-cleared",
    ]);
    a.stop();
    b.stop();
}

/// Reachability at a glance on the Peers screen at 390×844 (`tests/ui/reach.mjs`): two
/// daemons befriended on loopback (`--no-stun`, as every test daemon outside the lab); the
/// status block next to A's address shows what A's `/api/info` says (online, NAT type,
/// public address, port mapping) and B's row the `connection` of A's `/api/peers`.
#[test]
fn reachability_on_a_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Daemon::new(tmp.path(), "b");
    let mut a = Daemon::new(tmp.path(), "a");
    b.start();
    a.start();
    befriend(&a, &b);
    run_browser_script(
        "reach.mjs",
        &[
            ("HDP_A_URL", a.ui.clone()),
            ("HDP_A_STORAGE", a.storage.display().to_string()),
            ("HDP_B_NAME", b.name()),
        ],
        Duration::from_secs(60),
        &a,
    );
    assert_screenshots(&[
        "30-reach-status-light",
        "31-reach-friend-light",
        "30-reach-status-dark",
        "31-reach-friend-dark",
    ]);
    a.stop();
    b.stop();
}

/// A WAV file of `seconds` of a 440 Hz tone, 8 kHz mono 16-bit: playable and seekable by
/// any browser without a codec.
fn write_tone_wav(path: &std::path::Path, seconds: u32) {
    let rate = 8000u32;
    let samples = rate * seconds;
    let mut out = Vec::with_capacity(44 + 2 * samples as usize);
    let riff = |out: &mut Vec<u8>, tag: &[u8], len: u32| {
        out.extend_from_slice(tag);
        out.extend_from_slice(&len.to_le_bytes());
    };
    riff(&mut out, b"RIFF", 36 + 2 * samples);
    out.extend_from_slice(b"WAVE");
    riff(&mut out, b"fmt ", 16);
    for (v, n) in [(1u32, 2), (1, 2), (rate, 4), (rate * 2, 4), (2, 2), (16, 2)] {
        out.extend_from_slice(&v.to_le_bytes()[..n]);
    }
    riff(&mut out, b"data", 2 * samples);
    for i in 0..samples {
        let t = i as f32 / rate as f32;
        let v = (t * 440.0 * std::f32::consts::TAU).sin() * 8000.0;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, out).unwrap();
}

/// The local library and previews at 390×844 (`tests/ui/library.mjs`): a friend's WAV
/// previewed over `/api/read` (its `currentTime` moves after a seek) and a text file's
/// first bytes; downloads to a share picked as destination and to the download folder;
/// then, with the friend stopped and the download folder changed, the Downloads view
/// lists both, plays one with a seek, and deletes one after a confirmation (a dismissed
/// confirmation deletes nothing).
#[test]
fn library_and_preview_on_a_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("b-files/Media");
    write_tone_wav(&share.join("tone.wav"), 20);
    std::fs::write(share.join("notes.txt"), "liner notes: side A\n").unwrap();
    let music = tmp.path().join("a-music/Music");
    std::fs::create_dir_all(&music).unwrap();
    let mut b = Daemon::new(tmp.path(), "b").share(&share);
    let mut a = Daemon::new(tmp.path(), "a").share(&music);
    b.start();
    a.start();
    befriend(&a, &b);
    wait_indexed(&b, 3);
    run_browser_script(
        "library.mjs",
        &[
            ("HDP_A_URL", a.ui.clone()),
            ("HDP_A_STORAGE", a.storage.display().to_string()),
            ("HDP_A_MUSIC", music.display().to_string()),
            ("HDP_A_DOWNLOADS", a.download_dir.display().to_string()),
            ("HDP_MOVED", tmp.path().join("moved").display().to_string()),
            ("HDP_B_URL", b.ui.clone()),
            ("HDP_B_STORAGE", b.storage.display().to_string()),
            ("HDP_B_NAME", b.name()),
        ],
        Duration::from_secs(120),
        &a,
    );
    assert_screenshots(&[
        "40-preview-audio",
        "41-preview-text",
        "42-downloads",
        "42-downloads-dark",
        "43-downloads-play",
        "44-downloads-deleted",
    ]);
    // The script stopped the friend (`/api/stop`) before opening the Downloads view.
    assert!(b.wait_exit(Duration::from_secs(10)).success());
    a.stop();
}

/// Every setting on the Settings screen at 390×844 (`tests/ui/settings.mjs`): one save with
/// a bad listen address among good values saves the good ones (checked through the API)
/// and shows the refusal under its field; an alternative-speed schedule and the one-tap
/// mode; the mDNS switch kept for the next start; a dark-mode pass.
#[test]
fn settings_screen_on_a_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("a-files/Music");
    write_random_file(&share.join("a.bin"), 10_000, 1);
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    a.start();
    run_browser_script(
        "settings.mjs",
        &[
            ("HDP_A_URL", a.ui.clone()),
            ("HDP_A_STORAGE", a.storage.display().to_string()),
        ],
        Duration::from_secs(90),
        &a,
    );
    assert_screenshots(&["20-settings", "21-settings-errors", "22-settings-dark"]);
    a.stop();
}
