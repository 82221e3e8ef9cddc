//! The transport settings between two real daemons: the TLS cipher suite both ends agree on
//! (each end's connection log line names the suite its handshake chose) and a verified
//! transfer with each congestion controller.

mod common;

use std::time::Duration;

use common::*;

const CHACHA: &str = "TLS13_CHACHA20_POLY1305_SHA256";
const AES_128: &str = "TLS13_AES_128_GCM_SHA256";

/// Starts a friend pair with these arguments, moves a 2 MiB file from "a" to "b" and checks
/// it, then returns each end's log lines about its connection to the other.
fn transfer_between(sharer: &[&str], downloader: &[&str]) -> [Vec<String>; 2] {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/T");
    write_random_file(&share.join("data.bin"), 2 * 1024 * 1024, 16);
    let (mut a, mut b) = sharer_and_downloader(tmp.path(), &share, 2, sharer, downloader);
    let an = a.name();
    let id = b.download(&format!("{an}/T/data.bin"));
    let done = b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("T/data.bin")),
        sha256_file(&share.join("data.bin"))
    );
    let lines = [(&a, b.name()), (&b, an)].map(|(d, other)| {
        let marker = format!("connected to {other} at");
        let lines: Vec<String> = d
            .log_text()
            .lines()
            .filter(|l| l.contains(&marker))
            .map(str::to_string)
            .collect();
        assert!(!lines.is_empty(), "{}:\n{}", d.label, d.log_text());
        lines
    });
    a.stop();
    b.stop();
    lines
}

fn assert_suite(lines: &[Vec<String>; 2], suite: &str) {
    for line in lines.iter().flatten() {
        assert!(line.contains(suite), "not {suite}: {line}");
    }
}

/// Whichever end dials, a node set to `chacha` gets ChaCha20-Poly1305 from a node on
/// `auto` that has AES instructions (this machine's) and would otherwise choose AES-GCM.
#[test]
fn chacha_on_one_end_is_what_both_ends_use_with_cubic() {
    let lines = transfer_between(
        &["--cipher", "chacha", "--congestion", "cubic"],
        &["--congestion", "cubic"],
    );
    assert_suite(&lines, CHACHA);
}

#[test]
fn aes_on_both_ends_is_aes_gcm_with_bbr() {
    let both = ["--cipher", "aes", "--congestion", "bbr"];
    let lines = transfer_between(&both, &both);
    assert_suite(&lines, AES_128);
}
