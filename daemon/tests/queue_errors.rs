//! A download that can never start is refused when it is asked for, with a message and a
//! non-zero exit, instead of sitting "queued" forever.

mod common;

use common::*;

#[test]
fn unknown_peers_missing_paths_and_unsafe_names_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    for (args, expected) in [
        (
            ["download", "NoSuchPeer/music/a.flac"],
            "no peer named NoSuchPeer",
        ),
        (["download", "JustAPeer"], "give a path on the peer"),
        (["download", "../x/y"], "not a plain name"),
        (["download", "Peer/../etc"], "refused"),
    ] {
        let out = a.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let transfers = a.cli_json(&["transfers", "--json"]);
    assert_eq!(transfers, serde_json::json!([]), "nothing was queued");
}

/// With no daemon listening, every client command names the cause and exits non-zero.
#[test]
fn commands_without_a_daemon_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for args in [&["info"][..], &["peers"], &["ls"], &["stop"]] {
        let out = std::process::Command::new(BIN)
            .args(["--ui-address", &format!("http://127.0.0.1:{port}")])
            .args(["--storage", &tmp.path().display().to_string()])
            .args(args)
            .env("HDP_API_TOKEN", "x")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("no daemon answers at http://")
                && stderr.contains("harddrive-party start"),
            "{args:?}: {stderr}"
        );
    }
}

/// A state-changing command with a storage directory that is not the daemon's names it:
/// missing, or present without the daemon's API token.
#[test]
fn a_wrong_storage_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    for (dir, said) in [
        (missing.as_path(), "does not exist"),
        (tmp.path(), "no API token in"),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["--storage", &dir.display().to_string(), "stop"])
            .env_remove("HDP_API_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(said) && stderr.contains(&dir.display().to_string()),
            "{stderr}"
        );
    }
}
