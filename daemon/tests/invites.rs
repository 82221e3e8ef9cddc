//! Invites and per-share access (issue 12), with real daemons on loopback: a code makes a
//! friend on first contact; a second use, an expired, revoked, forged or damaged code is
//! refused with its reason and leaves no trace on either side; a share-limited invite makes
//! a guest; a share restricted to chosen friends is invisible to the others in listings,
//! searches, reads, hashes and `have`; forgetting a peer takes its name off every share.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use harddrive_party::net::rpc::{self, RpcError};
use harddrive_party::wire::WireError;
use harddrive_party_core::invite::InviteCode;
use serde_json::Value;

fn invite(d: &Daemon, extra: &[&str]) -> Value {
    let mut args = vec!["invite", "--json"];
    args.extend_from_slice(extra);
    d.cli_json(&args)
}

fn code_of(invite: &Value) -> String {
    invite["code"].as_str().expect("an invite code").to_string()
}

/// `connect CODE` must fail with a message containing `reason`.
fn refused(joiner: &Daemon, code: &str, reason: &str) {
    let out = joiner.cli(&["connect", code]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{code} was accepted");
    assert!(
        stderr.contains(reason),
        "expected {reason:?} in the error, got: {stderr}"
    );
}

/// Neither side remembers the other after a refused join.
fn no_trace(inviter: &Daemon, joiner: &Daemon) {
    assert_eq!(inviter.peer(&joiner.name()), None, "inviter kept a record");
    assert_eq!(joiner.peer(&inviter.name()), None, "joiner kept a record");
}

fn two_shares(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let music = root.join("shares/Music");
    let private = root.join("shares/Private");
    write_random_file(&music.join("song.flac"), 50_000, 1);
    write_random_file(&private.join("diary-2026.txt"), 20_000, 2);
    (music, private)
}

#[test]
fn an_invite_makes_a_friend_once_and_bad_codes_leave_no_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let (music, _) = two_shares(tmp.path());
    let mut a = Daemon::new(tmp.path(), "a").share(&music);
    let mut b = Daemon::new(tmp.path(), "b");
    let mut c = Daemon::new(tmp.path(), "c");
    a.start();
    b.start();
    c.start();
    wait_indexed(&a, 2);
    let (an, bn) = (a.name(), b.name());

    let first = invite(&a, &[]);
    assert_eq!(first["uses_left"], 1, "{first}");
    assert!(first["shares"].is_null(), "{first}");
    let code = code_of(&first);
    let listed = a.cli_json(&["invites", "--json"]);
    assert_eq!(listed[0]["id"], first["id"], "{listed}");
    assert!(
        listed[0].get("code").is_none(),
        "the code is never stored: {listed}"
    );

    let out = b.cli_ok(&["connect", &code]);
    assert!(out.contains(&an), "{out}");
    wait_for(
        "both to see the connection",
        Duration::from_secs(20),
        || (a.connected_to(&bn) && b.connected_to(&an)).then_some(()),
    );
    assert_eq!(a.peer(&bn).unwrap()["trust"], "friend");
    assert_eq!(a.peer(&bn).unwrap()["guest"], false);
    assert_eq!(b.peer(&an).unwrap()["trust"], "friend");
    assert_eq!(b.top_level(&an), [format!("{an}/Music")]);
    assert!(a
        .cli_json(&["invites", "--json"])
        .as_array()
        .unwrap()
        .is_empty());

    // Used up.
    refused(&c, &code, "used already");
    no_trace(&a, &c);
    // Expired.
    let short = code_of(&invite(&a, &["--expires", "1s"]));
    std::thread::sleep(Duration::from_millis(2100));
    refused(&c, &short, "expired");
    no_trace(&a, &c);
    // Revoked.
    let revoked = invite(&a, &["--uses", "3"]);
    a.cli_ok(&["invites", "revoke", revoked["id"].as_str().unwrap()]);
    refused(&c, &code_of(&revoked), "revoked");
    no_trace(&a, &c);
    assert!(!a
        .cli(&["invites", "revoke", "0000000000000000"])
        .status
        .success());
    // Forged: a real invite's id with a made-up secret.
    let live = invite(&a, &[]);
    let mut forged: InviteCode = code_of(&live).parse().unwrap();
    forged.secret = [0x55; 16];
    refused(&c, &forged.to_string(), "not valid");
    no_trace(&a, &c);
    // Damaged while copied: named before anything is sent.
    let damaged = code_of(&live).replacen('A', "B", 1);
    refused(&c, &damaged, "checksum");
    refused(&c, &code_of(&live)[..40], "cut");
    no_trace(&a, &c);
    // The forgery did not spend the real invite.
    c.cli_ok(&["connect", &code_of(&live)]);
    assert_eq!(a.peer(&c.name()).unwrap()["trust"], "friend");
}

#[test]
fn share_access_hides_a_share_from_everyone_not_named_and_invites_make_guests() {
    let tmp = tempfile::tempdir().unwrap();
    let (music, private) = two_shares(tmp.path());
    let mut a = Daemon::new(tmp.path(), "a").share(&music).share(&private);
    let mut b = Daemon::new(tmp.path(), "b");
    let mut g = Daemon::new(tmp.path(), "guest");
    a.start();
    b.start();
    g.start();
    wait_indexed(&a, 4);
    befriend(&a, &b);
    let (an, bn) = (a.name(), b.name());
    assert_eq!(
        b.top_level(&an),
        [format!("{an}/Music"), format!("{an}/Private")]
    );

    // A guest invited to Music only.
    let guest_invite = invite(&a, &["--share", "Music"]);
    assert_eq!(guest_invite["shares"], serde_json::json!(["Music"]));
    g.cli_ok(&["connect", &code_of(&guest_invite)]);
    let gn = g.name();
    assert_eq!(a.peer(&gn).unwrap()["guest"], true);
    assert_eq!(g.top_level(&an), [format!("{an}/Music")]);
    let shares = a.cli_json(&["shares", "--recursive", "false", "--json"]);
    let music_entry = shares
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "Music")
        .unwrap();
    assert_eq!(
        music_entry["visible_to"]["all_friends"], true,
        "{music_entry}"
    );
    assert_eq!(music_entry["visible_to"]["peers"], serde_json::json!([gn]));

    // Private: only B from now on.
    a.cli_ok(&["share-access", "Private", "--peer", &bn]);
    let access = a.cli_json(&["share-access", "Private"]);
    assert_eq!(
        access,
        serde_json::json!({ "all_friends": false, "peers": [bn] })
    );
    assert_eq!(
        b.top_level(&an),
        [format!("{an}/Music"), format!("{an}/Private")]
    );
    assert_eq!(g.top_level(&an), [format!("{an}/Music")]);
    let found = g.cli_json(&["ls", &an, "--searchterm", "diary", "--json"]);
    assert!(found.as_array().unwrap().is_empty(), "search found {found}");
    let out = g.cli(&["ls", &format!("{an}/Private"), "--json"]);
    assert!(!out.status.success(), "a hidden share was listed");
    let out = g.cli(&[
        "download",
        &format!("{an}/Private/diary-2026.txt"),
        "--wait",
    ]);
    assert!(!out.status.success(), "a hidden file was downloaded");
    // A name that is not a friend cannot be given access.
    assert!(!a
        .cli(&["share-access", "Private", "--peer", "NobodyAtAll123456"])
        .status
        .success());

    // Granting the guest Private too, then forgetting it, takes its name off every share.
    a.cli_ok(&["share-access", "Private", "--peer", &bn, "--peer", &gn]);
    wait_for("the guest to see Private", Duration::from_secs(10), || {
        (g.top_level(&an).len() == 2).then_some(())
    });
    a.cli_ok(&["forget", &gn]);
    let access = a.cli_json(&["share-access", "Private"]);
    assert_eq!(access["peers"], serde_json::json!([bn]));
    a.cli_ok(&["share-access", "Private", "--all-friends"]);
    assert_eq!(
        a.cli_json(&["share-access", "Private"]),
        serde_json::json!({ "all_friends": true, "peers": [] })
    );
}

/// The swarm's questions obey access too: a friend not named learns neither the hashes nor
/// that anyone holds the content of a hidden file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_and_have_obey_share_access() {
    let tmp = tempfile::tempdir().unwrap();
    let (music, private) = two_shares(tmp.path());
    let mut a = Daemon::new(tmp.path(), "a").share(&music).share(&private);
    a.start();
    wait_indexed(&a, 4);
    let (_node, conn) = raw_client(&a, 0x61).await;
    let (_other, _) = raw_client(&a, 0x62).await;
    let other = harddrive_party::identity::Identity::from_seed([0x62; 32]).name;
    let hidden = "Private/diary-2026.txt";
    let root = rpc::hashes(&conn, hidden)
        .await
        .expect("visible before")
        .root;
    assert!(matches!(
        rpc::have(&conn, root).await,
        Ok(Some(rpc::Holding::Complete { .. }))
    ));
    a.cli_ok(&["share-access", "Private", "--peer", &other]);
    match rpc::hashes(&conn, hidden).await {
        Err(RpcError::Refused(WireError::NotFound)) => {}
        Err(e) => panic!("hashes of a hidden file: {e}"),
        Ok(_) => panic!("a hidden file's hashes were sent"),
    }
    assert!(matches!(rpc::have(&conn, root).await, Ok(None)));
    match rpc::read(&conn, hidden, 0, None).await {
        Err(RpcError::Refused(WireError::NotFound)) => {}
        Err(e) => panic!("read of a hidden file: {e}"),
        Ok(_) => panic!("a hidden file was read"),
    }
}
