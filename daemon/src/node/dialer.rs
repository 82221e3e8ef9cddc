//! Getting a connection to a peer: the approach the two NAT types call for (the pure dial
//! plan in `punch::approach`), carried out by the traversal code, with the TURN relay as
//! the fallback. One dial per peer name at a time.

use std::sync::Arc;
use std::time::Duration;

use super::{Node, NodeError};
use crate::announce::AnnounceAddress;
use crate::locks::lock;
use crate::net::punch::{approach, relay_route, Approach, RelayRoute};
use crate::net::rpc;

/// After our spray reached a symmetric peer, how long it has to dial us back.
const INBOUND_AFTER_PUNCH: Duration = Duration::from_secs(5);
const CONNECTED_POLL: Duration = Duration::from_millis(50);

/// A connection and whether it runs through the relay; `None`: the peer will dial us.
type Path = Option<(quinn::Connection, bool)>;

/// Why a peer is dialled in the background; redials fail often and quietly.
#[derive(Debug, Clone, Copy)]
pub(super) enum DialReason {
    Gossiped,
    FoundOnLan,
    Redial,
    Approved,
}

impl Node {
    /// Dials `address` unless its peer is connected or being dialled already. Success means
    /// connected, whichever side's connection won; the connection is returned when it is the
    /// one this dial opened.
    pub(super) async fn dial(
        self: &Arc<Self>,
        address: &AnnounceAddress,
    ) -> Result<Option<quinn::Connection>, NodeError> {
        let name = address.name();
        if self.peers.get(&name).is_some() {
            return Ok(None);
        }
        if !lock(&self.dials).in_flight.insert(name.clone()) {
            return Ok(None);
        }
        // The peer may reach us first (it dials us after its own punch): that also ends
        // this attempt successfully.
        let result = tokio::select! {
            result = self.open_path(address) => result,
            () = self.until_connected(&name) => Ok(None),
        };
        lock(&self.dials).in_flight.remove(&name);
        let Some((conn, relayed)) = result.map_err(|e| {
            let reason = e.to_string();
            if reason.contains("ApplicationVerificationFailure") {
                NodeError::WrongKey(name.clone())
            } else {
                NodeError::Unreachable {
                    name: name.clone(),
                    reason,
                }
            }
        })?
        else {
            return Ok(None);
        };
        self.on_connection(conn.clone(), true, relayed);
        Ok(Some(conn))
    }

    /// Dials in the background; a failure counts against the peer's backoff.
    pub(super) fn dial_later(self: &Arc<Self>, address: AnnounceAddress, why: DialReason) {
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(e) = node.dial(&address).await {
                let name = address.name();
                match why {
                    DialReason::Gossiped => tracing::info!("gossiped peer {name}: {e}"),
                    DialReason::FoundOnLan => tracing::info!("LAN peer {name}: {e}"),
                    DialReason::Approved => tracing::info!("approved peer {name}: {e}"),
                    DialReason::Redial => tracing::debug!("reconnect to {name} failed: {e}"),
                }
                lock(&node.dials)
                    .backoffs
                    .failed(&name, std::time::Instant::now());
                node.redial_wake.notify_one();
            }
        });
    }

    /// Gets a QUIC connection to `address` by the approach both NAT types call for
    /// (PROTOCOL.md, "NAT traversal").
    pub(super) async fn open_path(
        self: &Arc<Self>,
        address: &AnnounceAddress,
    ) -> Result<Path, NodeError> {
        // As announced: a router port mapping makes us reachable like a public address.
        let ours = self.reach.announce().nat_type;
        let approach = approach(ours, address.nat_type);
        tracing::debug!(
            "reaching {} at {} ({:?} NAT, ours {:?}): {approach:?}",
            address.name(),
            address.addr,
            address.nat_type,
            ours
        );
        if !matches!(approach, Approach::Direct) {
            self.ask_for_introductions(address);
        }
        let direct = self.direct_path(approach, address).await;
        let can_relay = address.relay.is_some() || self.reach.current_relay().is_some();
        match direct {
            Ok(path) => Ok(path.map(|conn| (conn, false))),
            Err(e) if can_relay && approach != Approach::Direct => {
                if approach != Approach::Relay {
                    tracing::info!("{}: {e}; trying the relay", address.name());
                }
                self.relayed_path(address).await
            }
            Err(e) => Err(e),
        }
    }

    async fn direct_path(
        self: &Arc<Self>,
        approach: Approach,
        address: &AnnounceAddress,
    ) -> Result<Option<quinn::Connection>, NodeError> {
        let key = address.public_key;
        let quic = &self.reach.quic;
        let traversal = &self.reach.traversal;
        let unreachable = |reason: &str| NodeError::Unreachable {
            name: address.name(),
            reason: reason.to_string(),
        };
        match approach {
            Approach::Direct => Ok(Some(quic.connect(address.addr, key).await?)),
            Approach::Relay => Err(unreachable(
                "both sides are behind symmetric NATs and neither has a relay",
            )),
            Approach::Punch => {
                let heard_at = traversal
                    .punch(key, address.addr)
                    .await
                    .ok_or_else(|| unreachable("hole punching timed out"))?;
                Ok(Some(quic.connect(heard_at, key).await?))
            }
            Approach::SprayPorts => {
                traversal
                    .spray(key, address.addr.ip())
                    .await
                    .ok_or_else(|| unreachable("port spray found no opening"))?;
                self.await_inbound(&address.name()).await;
                Ok(None)
            }
            Approach::BirthdaySockets => {
                let (socket, heard_at) = traversal
                    .birthday(key, address.addr)
                    .await
                    .ok_or_else(|| unreachable("birthday punching found no opening"))?;
                Ok(Some(quic.connect_from(socket, heard_at, key).await?))
            }
        }
    }

    /// Through TURN: our allocation admits the peer's IP, and we dial the peer's relayed
    /// address if it has one (else it dials ours): from our own allocation when both are
    /// on one server (the peer need not know us), else from the peer socket. QUIC runs end
    /// to end inside.
    async fn relayed_path(self: &Arc<Self>, address: &AnnounceAddress) -> Result<Path, NodeError> {
        let relay = self.reach.current_relay();
        if let Some(relay) = &relay {
            if let Err(e) = relay.permit(address.addr.ip()).await {
                tracing::info!("TURN permission for {}: {e}", address.name());
            }
        }
        let ours = relay.as_ref().map(|r| r.allocation.relayed);
        let key = address.public_key;
        match (relay_route(ours, address.relay), &relay) {
            (RelayRoute::RelayToRelay(relayed), Some(relay)) => {
                tracing::debug!("reaching {} relay to relay", address.name());
                let conn = self.reach.quic.connect_on(&relay.endpoint, relayed, key);
                Ok(Some((conn.await?, true)))
            }
            (RelayRoute::RelayToRelay(relayed) | RelayRoute::SocketToRelay(relayed), _) => {
                Ok(Some((self.reach.quic.connect(relayed, key).await?, true)))
            }
            (RelayRoute::AwaitInbound, _) => {
                self.await_inbound(&address.name()).await;
                Ok(None)
            }
        }
    }

    /// After a spray succeeded the peer dials from the socket we reached; wait for it so the
    /// caller's "connected" means connected.
    async fn await_inbound(&self, name: &str) {
        let _ = tokio::time::timeout(INBOUND_AFTER_PUNCH, self.until_connected(name)).await;
    }

    async fn until_connected(&self, name: &str) {
        while self.peers.get(name).is_none() {
            tokio::time::sleep(CONNECTED_POLL).await;
        }
    }

    /// Before punching towards `address`, asks every other connected peer to introduce us
    /// to it: whichever is connected to it makes it punch back at the same moment.
    fn ask_for_introductions(&self, address: &AnnounceAddress) {
        let target = address.name();
        let ours = self.announce_address();
        for peer in self.peers.all().into_iter().filter(|p| p.name != target) {
            let (target, ours) = (target.clone(), ours.clone());
            tokio::spawn(async move {
                match rpc::introduce(&peer.connection, target.clone(), ours).await {
                    Ok(()) => tracing::debug!("{} introduced us to {target}", peer.name),
                    Err(e) => tracing::trace!("{} cannot introduce us to {target}: {e}", peer.name),
                }
            });
        }
    }
}
