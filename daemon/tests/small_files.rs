//! A folder of many small files (issue 16): fetched many at a time, each one still verified
//! against its content hash before it gets its name, and a kill -9 in the middle of the
//! folder resumes to exactly the sharer's files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;

const FILE_BYTES: u64 = 4096;

/// `count` files of 4 KiB in five subfolders of `dir`; their paths below `dir`.
fn small_folder(dir: &Path, count: u64) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let rel = PathBuf::from(format!("d{}/f{i:04}.bin", i % 5));
            write_random_file(&dir.join(&rel), FILE_BYTES, 1000 + i);
            rel
        })
        .collect()
}

/// Every file of `files` under `got` is byte for byte the one under `want`, and no `.part`
/// is left.
fn assert_same_files(want: &Path, got: &Path, files: &[PathBuf]) {
    for rel in files {
        assert_eq!(
            fs::read(got.join(rel)).unwrap_or_default(),
            fs::read(want.join(rel)).unwrap(),
            "{} differs",
            rel.display()
        );
    }
    let parts = walk(got)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .count();
    assert_eq!(parts, 0, "no .part file is left");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn files_done(d: &Daemon, id: u64) -> u64 {
    d.transfer(id)["files_done"].as_u64().unwrap_or(0)
}

#[test]
fn a_folder_of_small_files_survives_a_kill_9_in_the_middle_and_ends_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Lib");
    let files = small_folder(&share, 500);
    // Slow enough (about 5 s for the folder) that the kill lands in the middle of it.
    let (a, mut b) = sharer_and_downloader(
        tmp.path(),
        &share,
        1 + 5 + 500,
        &[],
        &["--download-limit", "400KB"],
    );
    let id = b.download(&format!("{}/Lib", a.name()));
    let got = b.download_dir.join(a.name()).join("Lib");
    wait_for("a tenth of the folder", Duration::from_secs(60), || {
        (files_done(&b, id) >= 50).then_some(())
    });
    b.kill9();
    let done_at_kill = files_done_on_disk(&got);
    assert!(
        done_at_kill < 500,
        "the kill came before the end ({done_at_kill} files)"
    );

    b.start();
    let done = b.wait_download_done(id, Duration::from_secs(120));
    assert_eq!(done["files_done"].as_u64(), Some(500), "{done}");
    assert_eq!(done["failures"].as_array().map(Vec::len), Some(0), "{done}");
    assert_same_files(&share, &got, &files);
    // Library entries commit without an fsync of their own: whatever the kill took, the
    // files are all in the local library again (found on disk and shelved once more).
    let library = b.api_get("/api/library");
    assert_eq!(library["total"].as_u64(), Some(500), "{library}");
}

/// Finished files (a `.part` is not one) under `dir`.
fn files_done_on_disk(dir: &Path) -> usize {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .count()
}

#[test]
fn a_small_file_whose_bytes_no_longer_match_its_hash_never_gets_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Lib");
    let files = small_folder(&share, 100);
    let (a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        1 + 5 + 100,
        &["--background-hash-rate", "0"],
        &["--retry-limit", "1", "--retry-backoff", "1"],
    );
    wait_for(
        "the sharer to hash the folder",
        Duration::from_secs(60),
        || {
            let info = a.cli_json(&["info", "--json"]);
            (info["hashing"]["hashed_files"].as_u64() == Some(100)).then_some(())
        },
    );
    // Bit rot: the bytes change, size and mtime stay, so the sharer's cached hashes still
    // describe the old content and only the downloader's check can catch it.
    let rotten = share.join(&files[7]);
    let mtime = fs::metadata(&rotten).unwrap().modified().unwrap();
    let mut bytes = fs::read(&rotten).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&rotten, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&rotten)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_ne!(mtime, SystemTime::UNIX_EPOCH);

    let id = b.download(&format!("{}/Lib", a.name()));
    let ended = wait_for("the download to end", Duration::from_secs(120), || {
        let t = b.transfer(id);
        (t["state"] == "failed").then_some(t)
    });
    let failures = ended["failures"].as_array().unwrap();
    let rotten_path = format!("Lib/{}", files[7].display());
    assert_eq!(failures.len(), 1, "{ended}");
    assert!(
        failures[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(&rotten_path),
        "{ended}"
    );
    assert_eq!(ended["files_done"].as_u64(), Some(99), "{ended}");
    let got = b.download_dir.join(a.name()).join("Lib");
    assert!(!got.join(&files[7]).exists(), "the bad file got its name");
    let good: Vec<PathBuf> = files.iter().filter(|f| **f != files[7]).cloned().collect();
    for rel in &good {
        assert_eq!(
            fs::read(got.join(rel)).unwrap(),
            fs::read(share.join(rel)).unwrap()
        );
    }
}
