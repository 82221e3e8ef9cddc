//! A thousand fresh keys knocking in a row (issue 12, "bad input"): they do not evict a
//! friend, grow the pending requests past their bound or the daemon's memory past a fixed
//! margin, and a friend's download running meanwhile completes and verifies. Most knocks
//! are closed unheard (`busy`) by the per-address stranger limit.

mod common;

use std::time::{Duration, Instant};

use common::*;
use harddrive_party::announce::AnnounceAddress;
use harddrive_party::identity::Identity;
use harddrive_party::net::quic::{QuicNode, TransportSettings};
use harddrive_party::net::rpc;

const KNOCKS: u32 = 1000;
const FILE_BYTES: u64 = 192 << 20;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One knock from a fresh key: connect, ask for the share list, hang up. Returns whether
/// the daemon closed it unheard (too many strangers).
async fn knock(target: &AnnounceAddress, i: u32) -> bool {
    let mut seed = [0xf1; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    let (node, _) = QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        &Identity::from_seed(seed),
        TransportSettings {
            keep_alive: Duration::from_secs(10),
            window: 1 << 20,
            cipher: Default::default(),
            congestion: Default::default(),
        },
    )
    .unwrap();
    let attempt = async {
        let conn = node.connect(target.addr, target.public_key).await.ok()?;
        let refused = match rpc::ls(&conn, "", None, false).await {
            Err(_) => true,
            Ok(mut listing) => listing.next().await.is_err(),
        };
        assert!(refused, "knock {i} was answered");
        let busy = matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(ref c)) if c.reason.as_ref() == b"busy"
        );
        conn.close(0u32.into(), b"bye");
        Some(busy)
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_fresh_keys_evict_no_friend_and_stop_no_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Big");
    write_random_file(&share.join("film.bin"), FILE_BYTES, 7);
    let (a, b) = sharer_and_downloader(tmp.path(), &share, 2, &[], &[]);
    let (an, bn) = (a.name(), b.name());
    let target: AnnounceAddress = a.announce().parse().unwrap();
    let rss_before = rss_kib(a.pid());

    let id = b.download(&format!("{an}/Big/film.bin"));
    let started = Instant::now();
    let mut busy = 0;
    for i in 0..KNOCKS {
        busy += u32::from(knock(&target, i).await);
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kib(a.pid());

    let pending = a
        .cli_json(&["peers", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["trust"] == "pending")
        .count();
    assert!(pending <= 64, "{pending} pending requests kept");
    assert!(
        busy > KNOCKS / 2,
        "only {busy} of {KNOCKS} knocks were closed unheard"
    );
    assert_eq!(a.peer(&bn).unwrap()["trust"], "friend");
    assert!(
        a.connected_to(&bn),
        "the friend was dropped during the flood"
    );
    // A fixed margin, whatever the number of knocks: nothing per stranger is kept.
    assert!(
        rss_after < rss_before + 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let done = b.wait_download_done(id, Duration::from_secs(300));
    let transfer_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Big/film.bin")),
        sha256_file(&share.join("film.bin"))
    );
    println!(
        "flood: {KNOCKS} knocks in {flood_secs:.1} s ({busy} closed unheard), {pending} pending kept, \
         sharer RSS {rss_before} -> {rss_after} KiB; the friend's {} MiB download finished in \
         {transfer_secs:.1} s ({})",
        FILE_BYTES >> 20,
        done["state"]
    );
}
