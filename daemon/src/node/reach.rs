//! Reachability: the announce address we hand out and what feeds it (STUN's view of our
//! NAT, the router's port mapping, the TURN relay), and the loops that keep it current.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{advertised_address, ControlReceiver, Node};
use crate::announce::AnnounceAddress;
use crate::announce::NatType;
use crate::config::Settings;
use crate::config::TurnSettings;
use crate::identity::Identity;
use crate::locks::lock;
use crate::net::peers::CLOSE_BY_USER;
use crate::net::portmap::{self, Mapping, PortMapper};
use crate::net::quic::QuicNode;
use crate::net::relay::Relay;
use crate::net::rpc;
use crate::net::traversal::{NatStatus, Traversal};
use crate::net::turn::Credentials;

/// How long to wait before asking an unreachable TURN server again.
const RELAY_RETRY: Duration = Duration::from_secs(15);

pub(super) struct Reachability {
    pub(super) quic: QuicNode,
    pub(super) traversal: Arc<Traversal>,
    pub(super) turn: Option<TurnSettings>,
    /// The live TURN allocation, when a relay is configured and reachable.
    relay: Mutex<Option<Arc<Relay>>>,
    /// Changes when STUN learns a new public address or NAT type.
    announce: Mutex<AnnounceAddress>,
    /// The router port mapping; `None` when off or pointless (loopback, IPv6).
    portmap: Option<Arc<PortMapper>>,
}

impl Reachability {
    /// Starts STUN on the peer socket and, when asked for and worth it, the port mapper.
    pub(super) fn start(
        quic: QuicNode,
        control: ControlReceiver,
        identity: &Identity,
        config: &Settings,
        upnp: bool,
        bound: SocketAddr,
    ) -> Self {
        let traversal = Traversal::start(
            quic.socket(),
            control,
            identity.public_key,
            config.stun_servers.clone(),
        );
        let announce = AnnounceAddress {
            public_key: identity.public_key,
            addr: advertised_address(bound),
            nat_type: NatType::Unknown,
            relay: None,
        };
        let portmap = (upnp && portmap::worth_trying(bound)).then(|| PortMapper::start(bound));
        Self {
            quic,
            traversal,
            turn: config.turn.clone(),
            relay: Mutex::new(None),
            announce: Mutex::new(announce),
            portmap,
        }
    }

    pub(super) fn announce(&self) -> AnnounceAddress {
        lock(&self.announce).clone()
    }

    pub(super) fn nat_status(&self) -> NatStatus {
        self.traversal.status()
    }

    pub(super) fn port_mapping(&self) -> Option<Mapping> {
        self.portmap.as_ref().and_then(|p| p.mapping())
    }

    pub(super) fn current_relay(&self) -> Option<Arc<Relay>> {
        lock(&self.relay).clone()
    }

    pub(super) fn listen_address(&self) -> Option<SocketAddr> {
        self.quic.local_addr().ok()
    }

    /// Closes the endpoints, frees the relayed port and the router's forwarded port now
    /// rather than when their leases run out.
    pub(super) async fn close(&self) {
        self.quic
            .endpoint
            .close(CLOSE_BY_USER.into(), b"shutting down");
        if let Some(relay) = self.current_relay() {
            relay.endpoint.close(CLOSE_BY_USER.into(), b"shutting down");
            let _ = tokio::time::timeout(Duration::from_secs(2), relay.release()).await;
        }
        if let Some(portmap) = &self.portmap {
            let _ = tokio::time::timeout(Duration::from_secs(4), portmap.close()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.quic.endpoint.wait_idle()).await;
    }
}

impl Node {
    /// Puts what STUN learnt and the router's port mapping into our announce address and
    /// tells connected peers, so they (and whoever they gossip to) redial the right address
    /// after a change.
    pub(super) async fn nat_status_loop(self: Arc<Self>) {
        let mut status = self.reach.traversal.watch_status();
        // Without a mapper this never changes and the loop follows STUN alone.
        let idle = watch::channel(None);
        let mut mapping = self
            .reach
            .portmap
            .as_ref()
            .map_or_else(|| idle.1.clone(), |p| p.watch());
        // A mapping may have been granted before we subscribed.
        mapping.mark_changed();
        // Where we announce ourselves without a mapping: the last address STUN reported
        // (kept through an outage), before any the local one.
        let mut unmapped = self.reach.announce().addr;
        loop {
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                changed = mapping.changed() => if changed.is_err() { return },
            }
            let nat = status.borrow_and_update().clone();
            let mapped = mapping.borrow_and_update().clone();
            if let Some(public) = nat.public_address {
                unmapped = public;
            }
            let (nat_type, addr) =
                portmap::advertise(nat.nat_type, nat.public_address, mapped.as_ref(), unmapped);
            self.update_announce(|announce| {
                announce.nat_type = nat_type;
                announce.addr = addr;
            })
            .await;
        }
    }

    async fn update_announce(&self, change: impl FnOnce(&mut AnnounceAddress)) {
        let text = {
            let mut announce = lock(&self.reach.announce);
            change(&mut announce);
            announce.to_string()
        };
        for peer in self.peers.all() {
            let _ = rpc::announce(&peer.connection, text.clone()).await;
        }
    }

    /// Holds a TURN allocation for as long as the node runs: allocates (retrying while the
    /// server is unreachable), accepts relayed connections on it, announces the relayed
    /// address, and allocates anew if the server stops answering refreshes.
    pub(super) async fn relay_loop(self: Arc<Self>) {
        let Some(turn) = self.reach.turn.clone() else {
            return;
        };
        let credentials = Credentials {
            username: turn.username.clone(),
            password: turn.password.clone(),
        };
        loop {
            let allocated = Relay::allocate(&turn.server, credentials.clone(), |socket| {
                self.reach.quic.relay_endpoint(socket)
            })
            .await;
            let relay = match allocated {
                Ok(relay) => relay,
                Err(e) => {
                    tracing::warn!("TURN relay {}: {e}; retrying", turn.server);
                    tokio::time::sleep(RELAY_RETRY).await;
                    continue;
                }
            };
            tracing::info!(
                "TURN relay {} gave us {}",
                turn.server,
                relay.allocation.relayed
            );
            // Peers relaying through the same server reach us from its relay IP: admitting
            // it lets one that does not know us yet (a joiner) dial us relay to relay.
            let server_ip = relay.allocation.relayed.ip();
            if let Err(e) = relay.permit(server_ip).await {
                tracing::info!("TURN permission for the relay's own {server_ip}: {e}");
            }
            *lock(&self.reach.relay) = Some(relay.clone());
            let accept = tokio::spawn(self.clone().accept_relayed(relay.endpoint.clone()));
            let relayed = relay.allocation.relayed;
            self.update_announce(|a| a.relay = Some(relayed)).await;
            let lost = relay.clone().maintain().await;
            tracing::warn!("TURN relay {} lost: {lost}; allocating again", turn.server);
            accept.abort();
            lock(&self.reach.relay).take();
            self.update_announce(|a| a.relay = None).await;
            tokio::time::sleep(RELAY_RETRY).await;
        }
    }
}
