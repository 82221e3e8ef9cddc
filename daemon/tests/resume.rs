//! Interrupted transfers: kill -9 of either side, a file changed between sessions, a file
//! that shrinks mid-read, and a full disk. Every case must end byte-identical.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

const SIZE: u64 = 384 * 1024 * 1024;
const SIZE_FULL_DISK: u64 = 96 * 1024 * 1024;

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

const PIECE: u64 = harddrive_party::content::PIECE_SIZE;

/// The highest upload id the daemon has handed out so far.
fn last_upload(d: &Daemon) -> u64 {
    d.uploads()
        .iter()
        .filter_map(|u| u["id"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Bytes the daemon served in uploads started after `after`.
fn served_since(d: &Daemon, after: u64) -> u64 {
    d.uploads()
        .iter()
        .filter(|u| u["id"].as_u64().unwrap_or(0) > after)
        .map(|u| u["received"].as_u64().unwrap_or(0))
        .sum()
}

fn received(d: &Daemon, id: u64) -> u64 {
    d.transfer(id)["received"].as_u64().unwrap_or(0)
}

/// Waits until at least `fraction` of the download has arrived, then freezes the uploader
/// with SIGSTOP so the test acts at a known point, not a race.
fn freeze_uploader_mid_transfer(up: &Daemon, down: &Daemon, id: u64, fraction: f64) {
    wait_for("transfer to get going", Duration::from_secs(60), || {
        (received(down, id) as f64 >= SIZE as f64 * fraction).then_some(())
    });
    signal(up.pid(), "-STOP");
}

fn setup(tmp: &std::path::Path) -> (Daemon, Daemon, std::path::PathBuf) {
    let share = tmp.join("share/Movies");
    write_random_file(&share.join("film.mkv"), SIZE, 42);
    let mut a = Daemon::new(tmp, "uploader").share(&share);
    let mut b = Daemon::new(tmp, "downloader");
    a.start();
    b.start();
    befriend(&b, &a);
    wait_indexed(&a, 2);
    (a, b, share)
}

#[test]
fn downloader_killed_mid_file_resumes_from_its_part_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, share) = setup(tmp.path());
    let an = a.name();
    let id = b.download(&format!("{an}/Movies/film.mkv"));
    freeze_uploader_mid_transfer(&a, &b, id, 0.15);
    b.kill9();
    signal(a.pid(), "-CONT");
    let part = b.download_dir.join(&an).join("Movies/film.mkv.part");
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < SIZE, "part file holds {kept} of {SIZE}");
    // A copy as the kill left it: the restarted downloader writes on into the original.
    let part_at_kill = tmp.path().join("film.mkv.part-at-kill");
    fs::copy(&part, &part_at_kill).unwrap();
    let before_restart = last_upload(&a);

    b.start();
    let done = b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(done["received"].as_u64(), Some(SIZE));
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Movies/film.mkv")),
        sha256_file(&share.join("film.mkv"))
    );
    // The uploader re-sent the missing bytes, not the file: every whole piece already in
    // the part file was recovered. Pieces land out of order (several are in flight), so
    // the part file may have holes below its length: count the pieces it really held.
    let missing = SIZE - intact_pieces(&part_at_kill, &share.join("film.mkv")) * PIECE;
    let resent = served_since(&a, before_restart);
    assert!(
        resent >= missing && resent <= missing + PIECE,
        "re-sent {resent} bytes, {missing} were missing; before {before_restart}: {:?}",
        a.uploads()
    );
}

/// How many whole pieces of `part` equal the source's.
fn intact_pieces(part: &std::path::Path, source: &std::path::Path) -> u64 {
    use std::io::Read;
    let (mut part, mut source) = (
        fs::File::open(part).unwrap(),
        fs::File::open(source).unwrap(),
    );
    let (mut a, mut b) = (vec![0u8; PIECE as usize], vec![0u8; PIECE as usize]);
    let mut intact = 0;
    for _ in 0..SIZE / PIECE {
        if part.read_exact(&mut a).is_err() {
            break;
        }
        source.read_exact(&mut b).unwrap();
        intact += u64::from(a == b);
    }
    intact
}

#[test]
fn uploader_killed_and_restarted_mid_file_is_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, b, share) = setup(tmp.path());
    let an = a.name();
    let id = b.download(&format!("{an}/Movies/film.mkv"));
    wait_for("transfer to get going", Duration::from_secs(60), || {
        (received(&b, id) >= SIZE / 6).then_some(())
    });
    a.kill9();
    let before = received(&b, id);
    assert!(before < SIZE);
    a.start();
    let done = b.wait_download_done(id, Duration::from_secs(90));
    assert_eq!(done["received"].as_u64(), Some(SIZE));
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Movies/film.mkv")),
        sha256_file(&share.join("film.mkv"))
    );
    let uploads = a.uploads();
    assert!(
        uploads
            .iter()
            .any(|u| u["resumed_from"].as_u64().unwrap_or(0) > 0),
        "restarted uploader served a resumed range: {uploads:?}"
    );
}

#[test]
fn a_file_changed_between_sessions_is_restarted_not_corrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, share) = setup(tmp.path());
    let an = a.name();
    let id = b.download(&format!("{an}/Movies/film.mkv"));
    freeze_uploader_mid_transfer(&a, &b, id, 0.1);
    b.stop();
    signal(a.pid(), "-CONT");
    let part = b.download_dir.join(&an).join("Movies/film.mkv.part");
    assert!(
        fs::metadata(&part).unwrap().len() > 0,
        "graceful stop keeps progress"
    );
    // Same size, new content and a new mtime: appending would silently corrupt the file.
    write_random_file(&share.join("film.mkv"), SIZE, 4242);
    assert!(Command::new("touch")
        .args(["-d", "@2000000000"])
        .arg(share.join("film.mkv"))
        .status()
        .unwrap()
        .success());
    b.start();
    b.wait_download_done(id, Duration::from_secs(90));
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Movies/film.mkv")),
        sha256_file(&share.join("film.mkv"))
    );
}

#[test]
fn a_file_shrinking_mid_read_is_recorded_and_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, share) = setup(tmp.path());
    let an = a.name();
    let id = b.download(&format!("{an}/Movies/film.mkv"));
    freeze_uploader_mid_transfer(&a, &b, id, 0.1);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(share.join("film.mkv"))
        .unwrap();
    file.set_len(1000).unwrap();
    signal(a.pid(), "-CONT");
    let error = wait_for("the error to be recorded", Duration::from_secs(20), || {
        b.transfer(id)["error"].as_str().map(str::to_string)
    });
    // The read in progress sees the file shrink ("changed"), or, when the sharer's watcher
    // saw the write first, a new read is told to wait until the file is quiet (PROTOCOL.md
    // §6.1, the stable rule): either way the refusal is recorded, not a short file.
    assert!(
        error.contains("changed") || error.contains("still being written"),
        "{error}"
    );
    assert_ne!(b.transfer(id)["state"], "done");
    // The retry sees the new size and fetches the file as it now is.
    b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Movies/film.mkv")),
        sha256_file(&share.join("film.mkv"))
    );
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_pauses_the_download_and_it_resumes_when_space_returns() {
    // A tiny reserve: the disk really fills up (ENOSPC, or less than a piece left).
    pause_on_a_small_disk(
        &["--min-free-space", "1MB", "--download-limit", "8MB"],
        "no space left on the download disk",
    );
}

#[test]
fn the_free_space_reserve_pauses_the_download_before_the_disk_fills() {
    pause_on_a_small_disk(
        &["--min-free-space", "40MB", "--download-limit", "8MB"],
        "reserve",
    );
}

fn pause_on_a_small_disk(downloader_args: &[&str], reason: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small-disk");
    fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    let _mount = Mount(small.clone());
    let share = tmp.path().join("share/Iso");
    write_random_file(&share.join("disk.img"), SIZE_FULL_DISK, 7);
    let mut a = Daemon::new(tmp.path(), "uploader").share(&share);
    let mut b = Daemon::new(tmp.path(), "downloader").args(downloader_args);
    b.download_dir = small.join("dl");
    a.start();
    b.start();
    befriend(&b, &a);
    let an = a.name();
    wait_indexed(&a, 2);
    // The file fits when it starts (a file that does not is held before it starts); the disk
    // then fills under it (paced at 8 MB/s, so it is still arriving).
    let id = b.download(&format!("{an}/Iso/disk.img"));
    wait_for("the first bytes", Duration::from_secs(30), || {
        (b.transfer(id)["received"].as_u64() > Some(0)).then_some(())
    });
    let filler = small.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 1 << 20]).is_ok() {}
    }
    let paused = wait_for("disk_full state", Duration::from_secs(30), || {
        let t = b.transfer(id);
        (t["state"] == "disk_full").then_some(t)
    });
    assert!(
        paused["error"].as_str().unwrap().contains(reason),
        "{paused}"
    );
    let verified = paused["received"].as_u64().unwrap();
    assert!(verified > 0 && verified < SIZE_FULL_DISK, "{paused}");
    let before_room = last_upload(&a);
    fs::remove_file(&filler).unwrap();
    b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(
        sha256_file(&small.join("dl").join(&an).join("Iso/disk.img")),
        sha256_file(&share.join("disk.img"))
    );
    // Only what was missing at the pause went over the wire again.
    let resent = served_since(&a, before_room);
    assert!(
        resent <= SIZE_FULL_DISK - verified + 2 * PIECE,
        "re-sent {resent} bytes though {verified} were verified on disk"
    );
    a.stop();
    b.stop();
}

/// A suspended laptop: the uploader stops for longer than the connection's idle timeout
/// (60 s), so the connection dies; when it wakes up, both sides reconnect by themselves
/// and the download finishes from where it was.
#[test]
fn a_path_dead_for_over_a_minute_resumes_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Trip");
    let size = 24 * 1024 * 1024;
    write_random_file(&share.join("photos.tar"), size, 9);
    let mut a = Daemon::new(tmp.path(), "laptop")
        .share(&share)
        .args(&["--upload-limit", "2MB"]);
    let mut b = Daemon::new(tmp.path(), "nas");
    a.start();
    b.start();
    befriend(&b, &a);
    wait_indexed(&a, 2);
    let an = a.name();
    let id = b.download(&format!("{an}/Trip/photos.tar"));
    wait_for("the transfer to get going", Duration::from_secs(30), || {
        (received(&b, id) >= 2 * 1024 * 1024).then_some(())
    });
    signal(a.pid(), "-STOP");
    wait_for(
        "the NAS to give up on the silent connection",
        Duration::from_secs(120),
        || (!b.connected_to(&an)).then_some(()),
    );
    let stalled_at = received(&b, id);
    assert!(stalled_at < size, "{stalled_at}");
    signal(a.pid(), "-CONT");
    let done = b.wait_download_done(id, Duration::from_secs(240));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Trip/photos.tar")),
        sha256_file(&share.join("photos.tar"))
    );
    assert!(b.log_text().contains(&format!("{an} disconnected")));
}
