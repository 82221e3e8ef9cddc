//! A hostile peer speaking real QUIC to a real daemon: path traversal, symlinks out of a
//! share, garbage and oversized frames. Each is refused on its own stream, and the daemon
//! keeps serving that peer and others.

mod common;

use std::time::Duration;

use common::*;
use harddrive_party::announce::AnnounceAddress;
use harddrive_party::identity::Identity;
use harddrive_party::net::rpc::{self, RpcError};
use harddrive_party::wire::WireError;

async fn read_error(conn: &quinn::Connection, path: &str) -> WireError {
    match rpc::read(conn, path, 0, None).await {
        Err(RpcError::Refused(e)) => e,
        Ok(_) => panic!("{path:?} was served"),
        Err(e) => panic!("{path:?}: unexpected {e}"),
    }
}

async fn ls_all(conn: &quinn::Connection, path: &str) -> Result<Vec<String>, RpcError> {
    let mut listing = rpc::ls(conn, path, None, true).await?;
    let mut out = Vec::new();
    while let Some(chunk) = listing.next().await? {
        out.extend(chunk.into_iter().map(|e| e.path));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_symlinks_and_garbage_are_refused_and_the_daemon_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Docs");
    write_random_file(&share.join("ok.txt"), 1000, 1);
    std::fs::write(tmp.path().join("secret.txt"), b"top secret").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), share.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), share.join("escape-dir")).unwrap();
    let (a, b) = sharer_and_downloader(tmp.path(), &share, 2, &[], &[]);
    let an = a.name();
    let (_client, conn) = raw_client(&a, 0x66).await;

    for path in [
        "../secret.txt",
        "Docs/../../secret.txt",
        "/etc/passwd",
        "Docs/./ok.txt",
        "Docs//ok.txt",
        "Docs/escape.txt",
        "Docs/escape-dir/secret.txt",
    ] {
        let e = read_error(&conn, path).await;
        assert!(
            matches!(e, WireError::Forbidden | WireError::NotFound),
            "{path}: {e:?}"
        );
    }
    assert!(matches!(
        ls_all(&conn, "../").await,
        Err(RpcError::Refused(WireError::Forbidden))
    ));
    assert!(matches!(
        ls_all(&conn, "/").await,
        Err(RpcError::Refused(WireError::Forbidden))
    ));
    let listed = ls_all(&conn, "").await.unwrap();
    assert_eq!(
        listed,
        ["Docs", "Docs/ok.txt"],
        "symlinks out of the share are not even listed"
    );

    // Garbage, a truncated frame and a 4 GiB length prefix: each stream is reset.
    for bytes in [
        b"\x00\x00\x00\x05garbage!".to_vec(),
        vec![0, 0, 0, 9, 1],
        vec![0xff, 0xff, 0xff, 0xff, 0, 0],
        (0..200u8).collect(),
    ] {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(15), recv.read_to_end(1 << 20))
            .await
            .expect("answered promptly");
        assert!(
            matches!(
                answer,
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_)))
            ),
            "{bytes:?} -> {answer:?}"
        );
    }
    // A stream that starts a request and then goes silent is closed after the request timeout.
    let (mut idle_send, mut idle_recv) = conn.open_bi().await.unwrap();
    idle_send.write_all(&[0, 0]).await.unwrap();
    let idle = tokio::time::timeout(Duration::from_secs(20), idle_recv.read_to_end(1024)).await;
    assert!(
        matches!(idle, Ok(Err(_))),
        "silent stream must be reset, got {idle:?}"
    );

    // The same connection still works, and so does everyone else.
    let (size, _, mut body) = rpc::read(&conn, "Docs/ok.txt", 10, Some(20)).await.unwrap();
    assert_eq!(size, 1000);
    assert_eq!(
        body.read_to_end(100).await.unwrap(),
        std::fs::read(share.join("ok.txt")).unwrap()[10..20]
    );
    let from_b = b.cli_json(&["ls", &an, "--json"]);
    assert_eq!(from_b.as_array().unwrap().len(), 2);
    // The HTTP side refuses traversal before asking anyone.
    assert!(b
        .api_post(
            "/api/downloads",
            serde_json::json!({ "path": format!("{an}/../x") })
        )
        .is_err());
    let read = b.cli(&["read", &format!("{an}/Docs/../../secret.txt")]);
    assert!(!read.status.success());
    assert!(read.stdout.is_empty());
}

/// `Introduce` (coordinated punching): B passes a peer's *own* address to the connected
/// target C, which then dials that peer at once; a third party's address or an unknown
/// target is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introductions_reach_the_target_and_cannot_be_forged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Daemon::new(tmp.path(), "b");
    let mut c = Daemon::new(tmp.path(), "c");
    b.start();
    c.start();
    befriend(&c, &b);
    let (client, conn) = raw_client(&b, 0x66).await;
    let me = Identity::from_seed([0x66; 32]);
    // C dials only a friend it is told about: we knock, C approves us, and the knock's
    // connection ends (C closes a stranger's connection once its request is recorded).
    let knock = raw_dial(&client, &c).await;
    c.approve(&me.name);
    knock.close(0u32.into(), b"approved");
    // C's API blocks: `block_in_place` lets this worker's other tasks (our endpoint's
    // driver among them) run elsewhere meanwhile.
    tokio::task::block_in_place(|| {
        wait_for("C to see us gone", Duration::from_secs(10), || {
            (!c.connected_to(&me.name)).then_some(())
        })
    });
    let own = AnnounceAddress {
        public_key: me.public_key,
        addr: client.local_addr().unwrap(),
        nat_type: harddrive_party::announce::NatType::Unknown,
        relay: None,
    };

    let stranger = AnnounceAddress {
        public_key: Identity::from_seed([0x77; 32]).public_key,
        ..own.clone()
    };
    assert!(matches!(
        rpc::introduce(&conn, c.name(), stranger.to_string()).await,
        Err(RpcError::Refused(WireError::BadRequest(_)))
    ));
    assert!(matches!(
        rpc::introduce(&conn, "NoSuchPeer000000".into(), own.to_string()).await,
        Err(RpcError::Refused(WireError::NotFound))
    ));

    rpc::introduce(&conn, c.name(), own.to_string())
        .await
        .expect("B passes our address on to C");
    let incoming = tokio::time::timeout(Duration::from_secs(10), client.endpoint.accept())
        .await
        .expect("C dials us after the introduction")
        .expect("endpoint open");
    let from_c = incoming.await.expect("handshake with C");
    let (key, _) = harddrive_party::net::quic::peer_identity(&from_c).unwrap();
    let c_key: AnnounceAddress = c.announce().parse().unwrap();
    assert_eq!(key, c_key.public_key);
    assert!(c.log_text().contains("told us about"), "{}", c.log_text());
}

/// Plays a peer that claims to be downloading `size` bytes of the same content and to hold
/// every piece, and serves garbage for every `ReadPieces`.
async fn serve_as_lying_partial(conn: quinn::Connection, size: u64) {
    use harddrive_party::content::{piece_count, Bitfield, PIECE_SIZE};
    use harddrive_party::wire::{
        read_frame, write_frame, AnnounceReply, HaveReply, ReadHeader, Request, MAX_REQUEST_FRAME,
        MAX_RESPONSE_FRAME,
    };
    let mut all = Bitfield::new(piece_count(size));
    for piece in 0..all.len() {
        all.set(piece);
    }
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let all = all.clone();
        tokio::spawn(async move {
            let Ok(request) = read_frame::<Request, _>(&mut recv, MAX_REQUEST_FRAME).await else {
                return;
            };
            match request {
                Request::Have { .. } => {
                    let reply = HaveReply::partial(size, &all);
                    let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                }
                Request::ReadPieces { first, end, .. } => {
                    let header = ReadHeader::Ok { size, mtime: 0 };
                    let _ = write_frame(&mut send, &header, MAX_RESPONSE_FRAME).await;
                    let len = (end * PIECE_SIZE)
                        .min(size)
                        .saturating_sub(first * PIECE_SIZE);
                    let _ = send.write_all(&vec![0x5a; len as usize]).await;
                }
                _ => {
                    let _ = write_frame(&mut send, &AnnounceReply::Ok, MAX_RESPONSE_FRAME).await;
                }
            }
            let _ = send.finish();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_source_serving_bad_pieces_is_dropped_and_the_file_is_still_right() {
    const SIZE: u64 = 24 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Docs");
    write_random_file(&share.join("big.bin"), SIZE, 5);
    let (a, b) = sharer_and_downloader(tmp.path(), &share, 2, &["--upload-limit", "8MB"], &[]);
    let liar = harddrive_party::identity::Identity::from_seed([0x55; 32]).name;
    let (_client, conn) = raw_client(&b, 0x55).await;
    tokio::spawn(serve_as_lying_partial(conn, SIZE));
    wait_for("the liar to be a peer", Duration::from_secs(10), || {
        b.connected_to(&liar).then_some(())
    });

    let path = format!("{}/Docs/big.bin", a.name());
    let id = b.download(&path);
    let done = b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(
        sha256_file(&b.download_dir.join(&path)),
        sha256_file(&share.join("big.bin"))
    );
    assert_eq!(done["verified"], true);
    let from_liar = done["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["peer"] == liar.as_str())
        .unwrap_or_else(|| panic!("the liar was used as a source: {done}"));
    assert_eq!(
        from_liar["bytes"], 0,
        "no byte of the liar's was kept: {done}"
    );
    assert!(
        b.log_text().contains(&format!("{liar} served a bad piece")),
        "the event is logged"
    );
}

/// Two friends' keys open `Read`s and never grant flow-control credit, as many as there are
/// upload slots and more: each holds at most its per-peer share, the stalled uploads are
/// cancelled after `UPLOAD_STALL_TIMEOUT` (30 s) and their slots go to a friend whose small
/// download then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_release_their_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Docs");
    write_random_file(&share.join("big.bin"), 4 << 20, 7);
    std::fs::write(share.join("small.txt"), b"hello\n").unwrap();
    let (a, b) = sharer_and_downloader(
        tmp.path(),
        &share,
        3,
        &["--max-uploads", "2", "--max-uploads-per-peer", "1"],
        &[],
    );
    let mut stallers = Vec::new();
    for seed in [0x71u8, 0x72] {
        let node = raw_node_with_window(seed, 2048);
        let conn = raw_befriend(&node, seed, &a).await;
        for _ in 0..2 {
            let conn = conn.clone();
            // The header fits in the credit; the body never will. Held, never read.
            stallers.push(tokio::spawn(async move {
                let read = rpc::read(&conn, "Docs/big.bin", 0, None).await;
                tokio::time::sleep(Duration::from_secs(120)).await;
                drop(read);
            }));
        }
        stallers.push(tokio::spawn(async move {
            let _keep = (node, conn);
            tokio::time::sleep(Duration::from_secs(120)).await;
        }));
    }
    let stalled_peers = |uploads: &[serde_json::Value]| {
        uploads
            .iter()
            .filter(|u| u["state"] == "active")
            .map(|u| u["peer"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let active = wait_for("both slots to be taken", Duration::from_secs(20), || {
        let active = stalled_peers(&a.uploads());
        (active.len() == 2).then_some(active)
    });
    assert_ne!(active[0], active[1], "one slot per peer: {active:?}");

    let id = b.download(&format!("{}/Docs/small.txt", a.name()));
    b.wait_download_done(id, Duration::from_secs(90));
    assert_eq!(
        std::fs::read(b.download_dir.join(a.name()).join("Docs/small.txt")).unwrap(),
        b"hello\n"
    );
    // The row's next queued `Read` may be running again by now; the reason stays on it.
    let uploads = a.uploads();
    assert!(
        uploads
            .iter()
            .any(|u| u["error"].as_str().unwrap_or("").contains("stalled")),
        "a stalled upload is cancelled with its reason: {uploads:?}"
    );
    for staller in stallers {
        staller.abort();
    }
}
