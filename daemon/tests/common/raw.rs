//! Bare QUIC peers for tests that must send what no well-behaved daemon would.

use std::time::Duration;

use super::Daemon;

/// A bare QUIC endpoint with the key from `seed`, speaking the peer protocol: for requests
/// no well-behaved daemon would send.
pub fn raw_node(seed: u8) -> harddrive_party::net::quic::QuicNode {
    raw_node_with_window(seed, 16 << 20)
}

/// [`raw_node`] granting at most `window` bytes of flow-control credit per connection (half
/// of it per stream): a peer that never reads holds the sender at that many bytes.
pub fn raw_node_with_window(seed: u8, window: u32) -> harddrive_party::net::quic::QuicNode {
    let me = harddrive_party::identity::Identity::from_seed([seed; 32]);
    harddrive_party::net::quic::QuicNode::bind(
        "127.0.0.1:0".parse().unwrap(),
        &me,
        harddrive_party::net::quic::TransportSettings {
            keep_alive: Duration::from_secs(10),
            window,
            cipher: Default::default(),
            congestion: Default::default(),
        },
    )
    .unwrap()
    .0
}

/// A new QUIC connection from `node` to `target`.
pub async fn raw_dial(
    node: &harddrive_party::net::quic::QuicNode,
    target: &Daemon,
) -> quinn::Connection {
    let address: harddrive_party::announce::AnnounceAddress = target.announce().parse().unwrap();
    node.connect(address.addr, address.public_key)
        .await
        .expect("handshake with the daemon")
}

/// `seed`'s raw node knocks on `target` (a stranger's connection, refused), `target`
/// approves it, and the returned connection is a friend's.
pub async fn raw_befriend(
    node: &harddrive_party::net::quic::QuicNode,
    seed: u8,
    target: &Daemon,
) -> quinn::Connection {
    let name = harddrive_party::identity::Identity::from_seed([seed; 32]).name;
    let knock = raw_dial(node, target).await;
    target.approve(&name);
    knock.close(0u32.into(), b"approved");
    raw_dial(node, target).await
}

/// A raw client `target` has approved as a friend (see [`raw_node`]).
pub async fn raw_client(
    target: &Daemon,
    seed: u8,
) -> (harddrive_party::net::quic::QuicNode, quinn::Connection) {
    let node = raw_node(seed);
    let conn = raw_befriend(&node, seed, target).await;
    (node, conn)
}
