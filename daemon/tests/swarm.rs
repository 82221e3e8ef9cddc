//! Several peers holding the same content: the download becomes a swarm, pieces come from
//! all of them, a seeder that dies or serves bad bytes cannot stall or corrupt the result.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::Value;

const SIZE: u64 = 256 * 1024 * 1024;

/// Three seeders sharing copies of one file, and a downloader connected to all of them.
/// The downloader's per-peer cap keeps the swarm slow enough to watch.
fn swarm(tmp: &std::path::Path) -> (Vec<Daemon>, Daemon, std::path::PathBuf) {
    let original = tmp.join("original.mkv");
    write_random_file(&original, SIZE, 77);
    let mut seeders = Vec::new();
    for i in 0..3 {
        let share = tmp.join(format!("seed{i}/Films"));
        fs::create_dir_all(&share).unwrap();
        fs::copy(&original, share.join("film.mkv")).unwrap();
        let mut s = Daemon::new(tmp, &format!("seeder{i}"))
            .share(&share)
            .args(&["--background-hash-rate", "0"]);
        s.start();
        seeders.push(s);
    }
    let mut d = Daemon::new(tmp, "downloader").args(&["--peer-download-limit", "24MB"]);
    d.start();
    for s in &seeders {
        befriend(&d, s);
    }
    for s in &seeders {
        wait_for("background hashing", Duration::from_secs(60), || {
            let info = s.api_get("/api/info");
            (info["hashing"]["hashed_files"].as_u64() >= Some(1)
                && info["hashing"]["active"] == false)
                .then_some(())
        });
    }
    (seeders, d, original)
}

fn sources(t: &Value) -> Vec<(String, u64)> {
    t["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["peer"].as_str().unwrap().to_string(),
                s["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn pieces_come_from_every_seeder_and_a_dead_one_does_not_stall_the_download() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut seeders, d, original) = swarm(tmp.path());
    let first = seeders[0].name();
    let id = d.download(&format!("{first}/Films/film.mkv"));
    let during = wait_for("a third of the file", Duration::from_secs(60), || {
        let t = d.transfer(id);
        (t["received"].as_u64().unwrap_or(0) >= SIZE / 3).then_some(t)
    });
    let contributing = sources(&during).iter().filter(|(_, b)| *b > 0).count();
    assert_eq!(contributing, 3, "all three seeders contribute: {during}");
    seeders[1].kill9();
    let done = d.wait_download_done(id, Duration::from_secs(120));
    assert_eq!(
        sha256_file(&d.download_dir.join(&first).join("Films/film.mkv")),
        sha256_file(&original)
    );
    assert_eq!(done["verified"], true);
    assert_eq!(done["hash"].as_str().map(str::len), Some(64));
    let per_peer = sources(&done);
    assert_eq!(per_peer.len(), 3, "{done}");
    assert!(
        per_peer.iter().all(|(_, bytes)| *bytes > 0),
        "every seeder delivered verified bytes: {done}"
    );
    assert_eq!(
        per_peer.iter().map(|(_, b)| b).sum::<u64>(),
        SIZE,
        "each byte was counted once"
    );
}

#[test]
fn a_seeder_serving_bad_bytes_is_dropped_and_the_file_is_still_right() {
    let tmp = tempfile::tempdir().unwrap();
    let (seeders, d, original) = swarm(tmp.path());
    // Corrupt seeder 2's copy in place after it was hashed, and put its mtime back: its
    // cached hashes now lie about what it serves.
    let bad = tmp.path().join("seed2/Films/film.mkv");
    let mtime = fs::metadata(&bad).unwrap().modified().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&bad).unwrap();
        for offset in (0..SIZE).step_by(1024 * 1024) {
            f.write_all_at(b"flipped!", offset + 4096).unwrap();
        }
        f.set_modified(mtime).unwrap();
    }
    // The share watcher holds a file back for 1 s after its last write (PROTOCOL.md §6.1,
    // the stable rule): the lying copy must be on offer when the download starts.
    std::thread::sleep(Duration::from_secs(2));
    let first = seeders[0].name();
    let bad_name = seeders[2].name();
    let id = d.download(&format!("{first}/Films/film.mkv"));
    let done = d.wait_download_done(id, Duration::from_secs(120));
    assert_eq!(
        sha256_file(&d.download_dir.join(&first).join("Films/film.mkv")),
        sha256_file(&original)
    );
    let bad_bytes = sources(&done)
        .into_iter()
        .find(|(p, _)| *p == bad_name)
        .map_or(0, |(_, b)| b);
    assert_eq!(
        bad_bytes, 0,
        "no byte from the bad seeder was accepted: {done}"
    );
    assert!(
        d.log_text()
            .contains(&format!("{bad_name} served a bad piece")),
        "the event is logged"
    );
}

#[test]
fn a_restart_mid_swarm_resumes_from_all_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let (seeders, mut d, original) = swarm(tmp.path());
    let first = seeders[0].name();
    let id = d.download(&format!("{first}/Films/film.mkv"));
    wait_for("a quarter of the file", Duration::from_secs(60), || {
        (d.transfer(id)["received"].as_u64().unwrap_or(0) >= SIZE / 4).then_some(())
    });
    d.kill9();
    d.start();
    let resumed = wait_for("the swarm to resume", Duration::from_secs(30), || {
        let t = d.transfer(id);
        (t["state"] == "active" && t["resumed_from"].as_u64().unwrap_or(0) > 0).then_some(t)
    });
    assert!(
        resumed["resumed_from"].as_u64().unwrap() >= SIZE / 8,
        "verified pieces survived the crash: {resumed}"
    );
    let done = d.wait_download_done(id, Duration::from_secs(120));
    assert_eq!(
        sha256_file(&d.download_dir.join(&first).join("Films/film.mkv")),
        sha256_file(&original)
    );
    let per_peer = sources(&done);
    assert_eq!(
        per_peer.iter().filter(|(_, b)| *b > 0).count(),
        3,
        "all three sources again after the restart: {done}"
    );
}

/// The root hash of a file, computed here rather than trusted from any daemon.
fn root_of(path: &std::path::Path) -> [u8; 32] {
    let mut hasher = harddrive_party::content::FileHasher::default();
    hasher.update(&fs::read(path).unwrap());
    hasher.finish().1
}

/// What a peer protocol client sees of a node still downloading: its bitfield, verified
/// pieces only, and typed refusals for anything else.
fn check_partial_serving(a: &Daemon, root: [u8; 32], size: u64) {
    use harddrive_party::content::{piece_count, PIECE_SIZE};
    use harddrive_party::net::rpc::{self, Holding, RpcError};
    use harddrive_party::wire::WireError;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_client, conn) = raw_client(a, 0x77).await;
        let ask = tokio::time::timeout(Duration::from_secs(10), rpc::have(&conn, root));
        let Ok(Ok(Some(Holding::Partial { size: got, pieces }))) = ask.await else {
            panic!("a partial holder answers Have with its bitfield");
        };
        assert_eq!(got, size);
        let held = (0..pieces.len())
            .find(|p| pieces.get(*p))
            .expect("some piece");
        let missing = (0..pieces.len())
            .rev()
            .find(|p| !pieces.get(*p))
            .expect("a gap");
        let (answer_size, _, mut body) = rpc::read_pieces(&conn, root, held..held + 1)
            .await
            .expect("a verified piece is served");
        assert_eq!(answer_size, size);
        let bytes = body.read_to_end(PIECE_SIZE as usize).await.unwrap();
        assert_eq!(bytes.len() as u64, PIECE_SIZE.min(size - held * PIECE_SIZE));
        let refused = |range: std::ops::Range<u64>, root: [u8; 32]| {
            let conn = conn.clone();
            async move {
                match rpc::read_pieces(&conn, root, range.clone()).await {
                    Err(RpcError::Refused(e)) => e,
                    Ok(_) => panic!("{range:?} was served"),
                    Err(e) => panic!("{range:?}: unexpected {e}"),
                }
            }
        };
        assert_eq!(
            refused(missing..missing + 1, root).await,
            WireError::NotHeld
        );
        assert_eq!(refused(held..missing + 1, root).await, WireError::NotHeld);
        assert_eq!(refused(0..1, [0xee; 32]).await, WireError::NotFound);
        let count = piece_count(size);
        assert!(matches!(
            refused(count - 1..count + 1, root).await,
            WireError::BadRequest(_)
        ));
        assert!(matches!(
            refused(3..3, root).await,
            WireError::BadRequest(_)
        ));
    });
}

#[test]
fn a_peer_still_downloading_serves_its_verified_pieces_to_others() {
    const PARTIAL_SIZE: u64 = 48 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("seed/Films");
    write_random_file(&share.join("film.mkv"), PARTIAL_SIZE, 78);
    // The seeder's cap keeps the first downloader partial for a while.
    let mut s = Daemon::new(tmp.path(), "seeder").share(&share).args(&[
        "--upload-limit",
        "4MB",
        "--background-hash-rate",
        "0",
    ]);
    let mut a = Daemon::new(tmp.path(), "first");
    let mut b = Daemon::new(tmp.path(), "second");
    s.start();
    a.start();
    b.start();
    befriend(&a, &s);
    let sn = s.name();
    let path = format!("{sn}/Films/film.mkv");
    let a_id = a.download(&path);
    wait_for(
        "the first downloader to hold some pieces",
        Duration::from_secs(30),
        || {
            (a.transfer(a_id)["verified_bytes"].as_u64().unwrap_or(0) >= 6 * 1024 * 1024)
                .then_some(())
        },
    );
    check_partial_serving(&a, root_of(&share.join("film.mkv")), PARTIAL_SIZE);

    befriend(&b, &a);
    befriend(&b, &s);
    let b_id = b.download(&path);
    let an = a.name();
    let (from_a, a_then) = wait_for(
        "the second downloader to get pieces from the first",
        Duration::from_secs(30),
        || {
            let t = b.transfer(b_id);
            let from_a = sources(&t).into_iter().find(|(p, _)| *p == an)?.1;
            (from_a > 0).then(|| (from_a, a.transfer(a_id)))
        },
    );
    assert!(
        a_then["state"] == "active" && a_then["received"].as_u64().unwrap() < PARTIAL_SIZE,
        "the first downloader was still partial when it served {from_a} bytes: {a_then}"
    );

    let a_done = a.wait_download_done(a_id, Duration::from_secs(45));
    let b_done = b.wait_download_done(b_id, Duration::from_secs(45));
    let original = sha256_file(&share.join("film.mkv"));
    assert_eq!(sha256_file(&a.download_dir.join(&path)), original);
    assert_eq!(sha256_file(&b.download_dir.join(&path)), original);
    assert_eq!(a_done["verified"], true);
    assert_eq!(b_done["verified"], true);
    let per_peer = sources(&b_done);
    assert!(
        per_peer.iter().any(|(p, bytes)| *p == an && *bytes > 0),
        "{b_done}"
    );
    assert_eq!(
        per_peer.iter().map(|(_, b)| b).sum::<u64>(),
        PARTIAL_SIZE,
        "each byte was counted once: {b_done}"
    );
    assert!(
        a.uploads().iter().any(|u| u["peer"] == b.name()),
        "the first downloader shows its uploads to the second"
    );
}

/// Late seeders join a running fetch (PROTOCOL.md §10 step 6): two seeders still hashing
/// when the download starts join once they push `Hashed`, and one that connects
/// mid-download joins on its connection. Every one of them contributes bytes.
#[test]
fn seeders_still_hashing_and_one_connecting_late_all_join_the_swarm() {
    const LATE_SIZE: u64 = 96 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original.mkv");
    write_random_file(&original, LATE_SIZE, 79);
    // Seeder 0 is asked for the piece list and hashes on demand; 1 and 2 hash in the
    // background at 8 MB/s, so their first `Have` answer is `NotFound`; 3 hashes at once.
    let rates = ["0", "8MB", "8MB", "0"];
    let mut seeders: Vec<Daemon> = rates
        .iter()
        .enumerate()
        .map(|(i, rate)| {
            let share = tmp.path().join(format!("seed{i}/Films"));
            fs::create_dir_all(&share).unwrap();
            fs::copy(&original, share.join("film.mkv")).unwrap();
            Daemon::new(tmp.path(), &format!("seeder{i}"))
                .share(&share)
                .args(&["--background-hash-rate", rate])
        })
        .collect();
    // 2 MB/s per source keeps the download going long after every seeder could join.
    let mut d = Daemon::new(tmp.path(), "downloader").args(&["--peer-download-limit", "2MB"]);
    for s in &mut seeders {
        s.start();
    }
    d.start();
    for s in &seeders[..3] {
        befriend(&d, s);
    }
    let first = seeders[0].name();
    let id = d.download(&format!("{first}/Films/film.mkv"));
    let started = std::time::Instant::now();
    wait_for("the download to start", Duration::from_secs(30), || {
        (d.transfer(id)["received"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    befriend(&d, &seeders[3]);
    let names: Vec<String> = seeders.iter().map(Daemon::name).collect();
    let during = wait_for(
        "every seeder to contribute",
        Duration::from_secs(60),
        || {
            let t = d.transfer(id);
            let giving = sources(&t).iter().filter(|(_, b)| *b > 0).count();
            (giving == names.len()).then_some(t)
        },
    );
    eprintln!(
        "all four seeders contributing after {:.1?}",
        started.elapsed()
    );
    assert!(
        during["received"].as_u64().unwrap() < LATE_SIZE,
        "every seeder joined before the end: {during}"
    );
    // Not in the first round of asks: they joined the running fetch.
    let log = d.log_text();
    for late in &names[1..] {
        assert!(
            log.contains(&format!("{late} joins the swarm")),
            "{late} joined mid-fetch: {log}"
        );
    }
    let done = d.wait_download_done(id, Duration::from_secs(120));
    assert_eq!(
        sha256_file(&d.download_dir.join(&first).join("Films/film.mkv")),
        sha256_file(&original)
    );
    let per_peer = sources(&done);
    for name in &names {
        assert!(
            per_peer.iter().any(|(p, b)| p == name && *b > 0),
            "{name} delivered verified bytes: {done}"
        );
    }
    assert_eq!(
        per_peer.iter().map(|(_, b)| b).sum::<u64>(),
        LATE_SIZE,
        "each byte was counted once: {done}"
    );
}

/// One sharer, three downloaders at once (PROTOCOL.md §10; issue 16's "many peers"): the
/// uploads run side by side, each under its own peer's share of the slots, and every copy
/// arrives whole. The sharer's total upload cap keeps them overlapping long enough to see.
#[test]
fn one_sharer_serves_three_downloaders_at_once() {
    const FILE: u64 = 48 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Films");
    write_random_file(&share.join("film.mkv"), FILE, 91);
    let mut sharer = Daemon::new(tmp.path(), "sharer").share(&share).args(&[
        "--background-hash-rate",
        "0",
        "--upload-limit",
        "24MB",
    ]);
    sharer.start();
    let mut downloaders: Vec<Daemon> = (0..3)
        .map(|i| Daemon::new(tmp.path(), &format!("downloader{i}")))
        .collect();
    for d in &mut downloaders {
        d.start();
        befriend(d, &sharer);
    }
    let path = format!("{}/Films/film.mkv", sharer.name());
    let ids: Vec<u64> = downloaders.iter().map(|d| d.download(&path)).collect();
    let overlapping = wait_for(
        "three uploads moving at once",
        Duration::from_secs(60),
        || {
            let moving: std::collections::BTreeSet<String> = sharer
                .uploads()
                .iter()
                .filter(|u| u["state"] == "active" && u["received"].as_u64().unwrap_or(0) > 0)
                .filter_map(|u| u["peer"].as_str().map(str::to_string))
                .collect();
            (moving.len() == 3).then_some(moving)
        },
    );
    let names: std::collections::BTreeSet<String> = downloaders.iter().map(|d| d.name()).collect();
    assert_eq!(overlapping, names);
    let expected = sha256_file(&share.join("film.mkv"));
    for (d, id) in downloaders.iter().zip(ids) {
        let done = d.wait_download_done(id, Duration::from_secs(120));
        assert_eq!(done["verified"], true, "{done}");
        let copy = d.download_dir.join(sharer.name()).join("Films/film.mkv");
        assert_eq!(sha256_file(&copy), expected, "{}'s copy", d.label);
    }
}
