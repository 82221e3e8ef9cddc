//! The share watcher, end to end: changes made in a running share reach a friend's `ls`
//! without a rescan (the daemons run with `--rescan-interval 3600`, so only the watcher can
//! have shown them); a file being written is neither listed nor served until it is quiet;
//! a share directory that disappears or is replaced by a file is reported unavailable and
//! hidden while the other share keeps working, and comes back with its directory; the
//! `rescan` command works, and fails clearly without a daemon; and a friend's download
//! of a small folder is not held up by the sharer's background pass hashing a big file.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Bounded wait for each change; the product's target is 3 s.
const SEEN_WITHIN: Duration = Duration::from_secs(10);

/// `peer`'s files as `b` sees them: path below the peer name -> size.
fn remote(b: &Daemon, peer: &str) -> BTreeMap<String, u64> {
    let out = b.cli(&["ls", peer, "--json"]);
    if !out.status.success() {
        return BTreeMap::new();
    }
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let prefix = format!("{peer}/");
    listing
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let path = e["path"].as_str()?.strip_prefix(&prefix)?.to_string();
                    Some((path, e["size"].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn expect(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
    entries.iter().map(|(p, s)| (p.to_string(), *s)).collect()
}

/// Waits until `b` sees exactly `want` of `peer`'s files; returns how long it took.
fn wait_seen(b: &Daemon, peer: &str, step: &str, want: &BTreeMap<String, u64>) -> Duration {
    let started = Instant::now();
    let mut last = BTreeMap::new();
    let deadline = started + SEEN_WITHIN;
    while Instant::now() < deadline {
        last = remote(b, peer);
        if &last == want {
            let took = started.elapsed();
            eprintln!("{step}: seen by the friend after {took:.2?}");
            return took;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{step}: after {SEEN_WITHIN:?} the friend sees\n{last:#?}\ninstead of\n{want:#?}");
}

fn share_available(a: &Daemon, name: &str) -> Option<bool> {
    a.api_get("/api/shares")
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?["available"]
        .as_bool()
}

fn two_friends(tmp: &Path, shares: &[&Path]) -> (Daemon, Daemon, String) {
    let mut a = Daemon::new(tmp, "a").args(&["--rescan-interval", "3600"]);
    for dir in shares {
        a = a.share(dir);
    }
    let mut b = Daemon::new(tmp, "b");
    a.start();
    b.start();
    befriend(&b, &a);
    let an = a.name();
    (a, b, an)
}

#[test]
fn created_modified_renamed_and_deleted_files_reach_a_friend() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("Docs");
    fs::create_dir_all(&docs).unwrap();
    fs::write(docs.join("seed.txt"), b"seed").unwrap();
    let (_a, b, an) = two_friends(tmp.path(), &[&docs]);
    wait_seen(
        &b,
        &an,
        "start",
        &expect(&[("Docs", 4), ("Docs/seed.txt", 4)]),
    );

    fs::write(docs.join("new.txt"), b"hello").unwrap();
    let created = wait_seen(
        &b,
        &an,
        "create",
        &expect(&[("Docs", 9), ("Docs/new.txt", 5), ("Docs/seed.txt", 4)]),
    );
    fs::write(docs.join("new.txt"), b"hello, world").unwrap();
    wait_seen(
        &b,
        &an,
        "modify",
        &expect(&[("Docs", 16), ("Docs/new.txt", 12), ("Docs/seed.txt", 4)]),
    );
    fs::rename(docs.join("new.txt"), docs.join("renamed.txt")).unwrap();
    wait_seen(
        &b,
        &an,
        "rename",
        &expect(&[("Docs", 16), ("Docs/renamed.txt", 12), ("Docs/seed.txt", 4)]),
    );
    fs::remove_file(docs.join("renamed.txt")).unwrap();
    wait_seen(
        &b,
        &an,
        "delete",
        &expect(&[("Docs", 4), ("Docs/seed.txt", 4)]),
    );

    fs::create_dir(docs.join("sub")).unwrap();
    fs::write(docs.join("sub/deep.txt"), b"1234567").unwrap();
    let with_sub = [
        ("Docs", 11),
        ("Docs/seed.txt", 4),
        ("Docs/sub", 7),
        ("Docs/sub/deep.txt", 7),
    ];
    wait_seen(&b, &an, "new subdirectory", &expect(&with_sub));

    // A tree made elsewhere and moved in whole: every level is indexed and watched.
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("x/y")).unwrap();
    fs::write(outside.join("x/y/z.bin"), vec![1u8; 100]).unwrap();
    fs::rename(&outside, docs.join("moved")).unwrap();
    let mut moved = with_sub.to_vec();
    moved[0].1 = 111;
    moved.extend([
        ("Docs/moved", 100),
        ("Docs/moved/x", 100),
        ("Docs/moved/x/y", 100),
        ("Docs/moved/x/y/z.bin", 100),
    ]);
    wait_seen(&b, &an, "tree moved in", &expect(&moved));
    fs::write(docs.join("moved/x/y/later.txt"), b"ab").unwrap();
    moved.iter_mut().for_each(|(p, s)| {
        if ["Docs", "Docs/moved", "Docs/moved/x", "Docs/moved/x/y"].contains(p) {
            *s += 2;
        }
    });
    moved.push(("Docs/moved/x/y/later.txt", 2));
    wait_seen(&b, &an, "file in the moved tree", &expect(&moved));
    fs::remove_dir_all(docs.join("moved")).unwrap();
    wait_seen(&b, &an, "tree removed", &expect(&with_sub));
    assert!(created < SEEN_WITHIN);
}

#[test]
fn a_file_being_written_is_listed_and_served_only_once_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("Docs");
    fs::create_dir_all(&docs).unwrap();
    let (_a, b, an) = two_friends(tmp.path(), &[&docs]);
    wait_seen(&b, &an, "start", &expect(&[("Docs", 0)]));

    // A writer appending every 100 ms for about 2.5 s: never quiet for a second.
    let writing = Arc::new(AtomicBool::new(true));
    let path = docs.join("growing.log");
    let writer = {
        let (writing, path) = (writing.clone(), path.clone());
        std::thread::spawn(move || {
            let mut file = fs::File::create(&path).unwrap();
            for _ in 0..25 {
                file.write_all(&[b'x'; 100]).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
            writing.store(false, Ordering::SeqCst);
        })
    };
    let mut checks = 0;
    while writing.load(Ordering::SeqCst) {
        let seen = remote(&b, &an);
        let read = b.cli(&["read", &format!("{an}/Docs/growing.log")]);
        if writing.load(Ordering::SeqCst) {
            assert!(
                !seen.contains_key("Docs/growing.log"),
                "listed mid-write: {seen:?}"
            );
            assert!(!read.status.success(), "served mid-write");
            let err = String::from_utf8_lossy(&read.stderr);
            assert!(err.contains("still being written"), "{err}");
            checks += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    writer.join().unwrap();
    assert!(
        checks >= 3,
        "only {checks} checks while the file was written"
    );
    wait_seen(
        &b,
        &an,
        "written file once quiet",
        &expect(&[("Docs", 2500), ("Docs/growing.log", 2500)]),
    );
    let read = b.cli(&["read", &format!("{an}/Docs/growing.log")]);
    assert!(read.status.success());
    assert_eq!(read.stdout.len(), 2500);
}

#[test]
fn a_vanished_share_is_unavailable_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("Docs");
    let other = tmp.path().join("Other");
    fs::create_dir_all(&docs).unwrap();
    fs::create_dir_all(&other).unwrap();
    fs::write(docs.join("d.txt"), b"dd").unwrap();
    fs::write(other.join("o.txt"), b"ooo").unwrap();
    let (a, b, an) = two_friends(tmp.path(), &[&docs, &other]);
    let both = [
        ("Docs", 2),
        ("Docs/d.txt", 2),
        ("Other", 3),
        ("Other/o.txt", 3),
    ];
    wait_seen(&b, &an, "start", &expect(&both));
    assert_eq!(share_available(&a, "Other"), Some(true));

    fs::remove_dir_all(&other).unwrap();
    let docs_only = expect(&[("Docs", 2), ("Docs/d.txt", 2)]);
    wait_seen(&b, &an, "share removed", &docs_only);
    assert_eq!(share_available(&a, "Other"), Some(false));
    assert!(a.log_text().contains("share Other:"), "no warning logged");
    let missing = b.cli(&["ls", &format!("{an}/Other")]);
    assert!(!missing.status.success(), "a missing share still lists");
    // The other share keeps working, changes included.
    fs::write(docs.join("e.txt"), b"e").unwrap();
    let docs_more = expect(&[("Docs", 3), ("Docs/d.txt", 2), ("Docs/e.txt", 1)]);
    wait_seen(&b, &an, "other share still watched", &docs_more);

    // Replaced by a file: still unavailable, and then back as a directory.
    fs::write(&other, b"not a directory").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(share_available(&a, "Other"), Some(false));
    assert_eq!(remote(&b, &an), docs_more);
    fs::remove_file(&other).unwrap();
    fs::create_dir(&other).unwrap();
    fs::write(other.join("back.txt"), b"back!").unwrap();
    let mut back = docs_more.clone();
    back.extend(expect(&[("Other", 5), ("Other/back.txt", 5)]));
    wait_seen(&b, &an, "share back", &back);
    assert_eq!(share_available(&a, "Other"), Some(true));
    // And watched again.
    fs::write(other.join("more.txt"), b"m").unwrap();
    back.insert("Other".into(), 6);
    back.insert("Other/more.txt".into(), 1);
    wait_seen(&b, &an, "returned share watched", &back);
}

#[test]
fn rescan_command_works_and_fails_clearly_without_a_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("Docs");
    fs::create_dir_all(&docs).unwrap();
    fs::write(docs.join("a.txt"), b"a").unwrap();
    fs::write(docs.join("b.txt"), b"b").unwrap();
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&docs)
        .args(&["--rescan-interval", "3600"]);
    a.start();
    wait_indexed(&a, 3);
    let out = a.cli_ok(&["rescan"]);
    assert!(
        out.starts_with("rescanned 2 files in 1 directories"),
        "{out}"
    );
    a.stop();

    let out = a.cli(&["rescan"]);
    assert!(!out.status.success(), "rescan without a daemon succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no daemon answers at"), "{err}");
}

#[test]
fn a_small_folder_downloads_while_the_background_pass_hashes_a_big_file() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("Lib");
    // "big.bin" sorts before "small/": the pass takes it first, at 1 MB/s about a minute.
    write_random_file(&share.join("big.bin"), 64 << 20, 11);
    for i in 0..40 {
        write_random_file(&share.join(format!("small/{i:02}.txt")), 1000 + i, i);
    }
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .args(&["--background-hash-rate", "1MB"]);
    let mut b = Daemon::new(tmp.path(), "b");
    a.start();
    b.start();
    befriend(&b, &a);
    let hashing = || a.api_get("/api/info")["hashing"].clone();
    wait_for(
        "the background pass to start",
        Duration::from_secs(20),
        || (hashing()["active"] == true).then_some(()),
    );
    let id = b.download(&format!("{}/Lib/small", a.name()));
    b.wait_download_done(id, Duration::from_secs(40));
    // Still inside the big file: the friend's 40 files went ahead of it, and the pass did
    // not race through the big file to let them in (as the old one-file-at-a-time lock did).
    let after = hashing();
    assert_eq!(after["active"], true, "{after}");
    assert_eq!(after["hashed_files"], 0, "{after}");
    for i in 0..40u64 {
        let name = format!("small/{i:02}.txt");
        assert_eq!(
            sha256_file(&b.download_dir.join(a.name()).join("Lib").join(&name)),
            sha256_file(&share.join(&name)),
            "{name}"
        );
    }
}
