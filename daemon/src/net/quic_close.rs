//! A close must reach the peer even while the connection is congestion-limited. quinn-proto
//! up to 0.11.19 gated the CONNECTION_CLOSE packet on the congestion window whenever stream
//! data was still queued, and a closed connection never processes the ACKs that would open
//! the window again: the close was never sent and the peer kept a dead connection until
//! its idle timeout. Two cases hit it: closing mid-transfer, and closing within the first
//! round trip, while the first MTU probe (half of our 65527-byte ceiling, far above the
//! initial window) is unacknowledged. `vendor/quinn-proto` carries the upstream fix.

use std::net::SocketAddr;
use std::time::Duration;

use harddrive_party_core::transport::{Cipher, Congestion};

use super::quic::{QuicNode, TransportSettings};
use crate::identity::Identity;

const SETTINGS: TransportSettings = TransportSettings {
    keep_alive: Duration::from_secs(10),
    window: 8 * 1024 * 1024,
    cipher: Cipher::Auto,
    congestion: Congestion::Auto,
};
/// Far below the 60 s idle timeout, far above a loopback round trip.
const NOTICE_WITHIN: Duration = Duration::from_secs(3);

fn node(seed: u8) -> QuicNode {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    QuicNode::bind(any, &Identity::from_seed([seed; 32]), SETTINGS)
        .map(|(node, _control)| node)
        .expect("bind a loopback endpoint")
}

/// Connects `dialler` to `listener`; the listener's side reads and discards every stream.
async fn pair(dialler: &QuicNode, listener: &QuicNode) -> (quinn::Connection, quinn::Connection) {
    let addr = listener.local_addr().expect("bound");
    let key = Identity::from_seed([2; 32]).public_key;
    let accept = async {
        let conn = listener.endpoint.accept().await.expect("incoming").await;
        let conn = conn.expect("inbound handshake");
        let reader = conn.clone();
        tokio::spawn(async move {
            while let Ok((_send, mut recv)) = reader.accept_bi().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(Some(_)) = recv.read(&mut buf).await {}
                });
            }
        });
        conn
    };
    let (outbound, inbound) = tokio::join!(dialler.connect(addr, key), accept);
    (outbound.expect("outbound handshake"), inbound)
}

async fn assert_peer_notices(closing: &quinn::Connection, peer: &quinn::Connection) {
    closing.close(7u32.into(), b"bye");
    let reason = tokio::time::timeout(NOTICE_WITHIN, peer.closed())
        .await
        .expect("the peer must see the close, not wait for its idle timeout");
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == 7u32.into()),
        "{reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_right_after_the_handshake_reaches_the_peer() {
    for _ in 0..20 {
        let (a, b) = (node(1), node(2));
        let (out, inbound) = pair(&a, &b).await;
        // As `introduce` does at once: a request queued behind the first MTU probe.
        let (mut send, _recv) = out.open_bi().await.expect("stream");
        send.write_all(&[1u8; 100]).await.expect("queued");
        assert_peer_notices(&out, &inbound).await;
    }
}
