//! Taking a connection in: identify the peer by its certificate, apply the peer policy
//! (`peer_policy::admit`), register a friend's under the duplicate rule (a stranger's goes
//! to `trust`), serve its streams, and at its end update the backoff. Also the user's
//! `connect` (which makes a friend) and `disconnect`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{Node, NodeError};
use crate::announce::AnnounceAddress;
use crate::events::Event;
use crate::identity::{self, PublicKey};
use crate::locks::lock;
use crate::net::peers::{
    ConnectionFacts, PeerConnection, Registered, CLOSE_BY_USER, CLOSE_DUPLICATE,
};
use crate::net::quic::peer_identity;
use crate::net::rpc::{self, RpcError};
use crate::store::KnownPeer;
use crate::wire::WireError;
use harddrive_party_core::invite::INVITE_PREFIX;
use harddrive_party_core::peer_policy::{self, Admitted, Refusal, Trust, CLOSE_NOT_A_FRIEND};

/// How long `connect` waits for the dialled peer to say whether it takes us as a friend.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// What the user's `connect` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connected {
    /// The peer takes us as a friend (or the invite was accepted): the link is up.
    Welcomed(String),
    /// The peer does not know us yet: it keeps our request until its owner approves it
    /// (or connects to us), and we redial with backoff meanwhile.
    AwaitingApproval(String),
}

impl Node {
    pub(super) async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.reach.quic.endpoint.accept().await {
            let node = self.clone();
            let connecting = self.reach.quic.accept(incoming);
            tokio::spawn(async move {
                match connecting {
                    Ok(connecting) => match connecting.await {
                        Ok(conn) => node.on_connection(conn, false, false),
                        Err(e) => tracing::debug!("inbound handshake failed: {e}"),
                    },
                    Err(e) => tracing::debug!("inbound connection refused: {e}"),
                }
            });
        }
    }

    pub(super) async fn accept_relayed(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => node.on_connection(conn, false, true),
                    Err(e) => tracing::debug!("relayed handshake failed: {e}"),
                }
            });
        }
    }

    /// Dials a peer by announce address, remembering it as a friend; or joins with an
    /// invite code (the same box in the UI, the same command). Says whether the peer
    /// welcomed us or holds our request for its owner to approve.
    pub async fn connect(self: &Arc<Self>, text: &str) -> Result<Connected, NodeError> {
        if text.trim_start().starts_with(INVITE_PREFIX) {
            return self.join(text.parse()?).await.map(Connected::Welcomed);
        }
        let address: AnnounceAddress = text.parse()?;
        let (name, record) = self.friend_at(&address)?;
        self.keep_friend(&name, &record)?;
        let opened = self.dial(&address).await?;
        let Some(conn) = opened.or_else(|| self.peers.get(&name).map(|p| p.connection.clone()))
        else {
            // Another dial of the same peer is under way; it reports through the peer list.
            return Ok(Connected::Welcomed(name));
        };
        if self.welcomed_by(&conn).await {
            Ok(Connected::Welcomed(name))
        } else {
            Ok(Connected::AwaitingApproval(name))
        }
    }

    /// Whether `conn`'s peer takes requests from us. Asked with our own announce address:
    /// a friend notes it again, while a peer that does not know us yet answers `NotAFriend`
    /// (or has already closed the connection as `CLOSE_NOT_A_FRIEND` after refusing the
    /// introduction's copy of it) and keeps our request for its owner.
    async fn welcomed_by(&self, conn: &quinn::Connection) -> bool {
        let asked = tokio::time::timeout(
            WELCOME_TIMEOUT,
            rpc::announce(conn, self.announce_address()),
        )
        .await;
        let closed_as_stranger = || {
            matches!(conn.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(c))
                if c.error_code == CLOSE_NOT_A_FRIEND.into())
        };
        match asked {
            Ok(Err(RpcError::Refused(WireError::NotAFriend))) => false,
            Ok(Err(_)) => !closed_as_stranger(),
            // No answer in time is no refusal: the connection stands.
            Ok(Ok(())) | Err(_) => true,
        }
    }

    /// The friend record the user's `connect` (or a welcomed `join`) writes: dialling an
    /// address the user was given is what makes a friend; a nickname stays. Refused for
    /// our own address or a blocked peer.
    pub(super) fn friend_at(
        &self,
        address: &AnnounceAddress,
    ) -> Result<(String, KnownPeer), NodeError> {
        if address.public_key == self.identity.public_key {
            return Err(NodeError::OwnAddress);
        }
        let name = address.name();
        let known = self.store.known_peer(&name)?;
        if known.as_ref().is_some_and(|k| k.blocked) {
            return Err(NodeError::Blocked(name));
        }
        let record = KnownPeer {
            nickname: known.and_then(|k| k.nickname),
            ..KnownPeer::at(address, Trust::Friend)
        };
        Ok((name, record))
    }

    /// Stores a friend the user chose, clearing its request and its backoff.
    pub(super) fn keep_friend(&self, name: &str, record: &KnownPeer) -> Result<(), NodeError> {
        self.store.put_known_peer(name, record)?;
        lock(&self.pending).take(name);
        lock(&self.dials).backoffs.forget(name);
        Ok(())
    }

    pub fn disconnect(&self, name: &str) -> Result<(), NodeError> {
        let known = self.store.known_peer(name)?;
        let connected = self.peers.remove(name);
        if known.is_none() && connected.is_none() {
            return Err(NodeError::NotConnected(name.to_string()));
        }
        if let Some(mut peer) = known {
            peer.disconnected = true;
            self.store.put_known_peer(name, &peer)?;
        }
        if let Some(conn) = connected {
            conn.connection
                .close(CLOSE_BY_USER.into(), b"disconnected by user");
            let _ = self.events.send(Event::PeerDisconnected {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn on_connection(
        self: &Arc<Self>,
        conn: quinn::Connection,
        outbound: bool,
        relayed: bool,
    ) {
        let Some((key, cert_fingerprint)) = peer_identity(&conn) else {
            conn.close(CLOSE_BY_USER.into(), b"no identity");
            return;
        };
        let name = identity::peer_name(&key);
        let known = self.store.known_peer(&name).ok().flatten();
        match peer_policy::admit(&key, &self.identity.public_key, known.as_ref(), outbound) {
            Ok(Admitted::Friend) => {}
            Ok(Admitted::Stranger) => {
                tokio::spawn(self.clone().hear_stranger(name, key, conn, relayed));
                return;
            }
            Err(Refusal::Blocked) => {
                tracing::info!("refusing {name}: blocked");
                conn.close(CLOSE_BY_USER.into(), b"blocked");
                return;
            }
            Err(Refusal::Ourselves) => {
                conn.close(CLOSE_BY_USER.into(), b"self");
                return;
            }
            Err(Refusal::OtherKeyUnderName) => {
                tracing::warn!(
                    "refusing a connection from another key under the known name {name}"
                );
                conn.close(CLOSE_DUPLICATE.into(), b"name in use");
                return;
            }
            Err(refusal) => {
                tracing::info!("refusing {name}: {refusal}");
                conn.close(CLOSE_BY_USER.into(), b"disconnected by user");
                return;
            }
        }
        let peer = PeerConnection {
            name: name.clone(),
            key,
            connection: conn.clone(),
            facts: ConnectionFacts {
                outbound,
                cert_fingerprint,
                closed: false,
            },
            connected_at: SystemTime::now(),
            relayed,
        };
        if let Registered::Rejected = self.peers.register(peer, &self.identity.public_key) {
            tracing::debug!("dropped a duplicate connection to {name}");
            return;
        }
        tracing::info!(
            "connected to {name} at {} ({}, {:?})",
            conn.remote_address(),
            if outbound { "outbound" } else { "inbound" },
            crate::net::quic::cipher_suite(&conn)
        );
        let _ = self.events.send(Event::PeerConnected {
            name: name.clone(),
            remote_address: conn.remote_address().to_string(),
        });
        tokio::spawn(
            self.clone()
                .serve_connection(name.clone(), key, conn.clone()),
        );
        self.downloads.swarm_news(&name);
        tokio::spawn(self.clone().introduce(name, conn, outbound));
        self.downloads.wake();
    }

    async fn serve_connection(
        self: Arc<Self>,
        name: String,
        key: PublicKey,
        conn: quinn::Connection,
    ) {
        let started = Instant::now();
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    tokio::spawn(self.clone().serve_stream(
                        name.clone(),
                        key,
                        conn.stable_id(),
                        send,
                        recv,
                    ));
                }
                Err(e) => {
                    tracing::debug!("connection to {name} ended: {e}");
                    break;
                }
            }
        }
        if self.peers.remove_if_current(&name, conn.stable_id()) {
            lock(&self.dials)
                .backoffs
                .connection_ended(&name, started.elapsed(), Instant::now());
            tracing::info!("{name} disconnected");
            let _ = self.events.send(Event::PeerDisconnected { name });
            self.downloads.wake();
            self.redial_wake.notify_one();
        }
    }
}
