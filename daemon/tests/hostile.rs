//! A hostile peer speaking real QUIC to a real daemon: path traversal, symlinks out of a
//! share, garbage and oversized frames. Each is refused on its own stream, and the daemon
//! keeps serving that peer and others.

mod common;

use std::time::Duration;

use common::*;
use harddrive_party::announce::AnnounceAddress;
use harddrive_party::identity::Identity;
use harddrive_party::net::quic::QuicNode;
use harddrive_party::net::rpc::{self, RpcError};
use harddrive_party::wire::WireError;

async fn hostile_client(target: &Daemon) -> (QuicNode, quinn::Connection) {
    let me = Identity::from_seed([0x66; 32]);
    let (node, _control) = QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        &me,
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let address: AnnounceAddress = target.announce().parse().unwrap();
    let conn = node
        .connect(address.addr, address.public_key)
        .await
        .expect("handshake with the daemon");
    (node, conn)
}

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
    let (_client, conn) = hostile_client(&a).await;

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
    connect(&c, &b);
    let (client, conn) = hostile_client(&b).await;
    let me = Identity::from_seed([0x66; 32]);
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
