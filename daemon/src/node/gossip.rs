//! Who learns about whom: our own and our peers' announce addresses passed on at connect,
//! `AnnouncePeer` and `Introduce` from peers, LAN adverts, and the redial loop. Each
//! decision is the pure peer policy's; this file carries it out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dialer::DialReason;
use super::Node;
use crate::announce::AnnounceAddress;
use crate::identity::PublicKey;
use crate::locks::lock;
use crate::net::mdns;
use crate::net::rpc;
use crate::wire::{AnnounceReply, WireError};
use harddrive_party_core::membership::PUSH_INTERVAL_MS;
use harddrive_party_core::peer_policy::{self, AnnounceVerdict, FollowUp, Refusal};

/// The reconnect loop looks again at least this often, in case a change went unsignalled.
const REDIAL_SAFETY_NET: Duration = Duration::from_secs(60);
/// ... and at most this often: one wake a second is the idle budget (issue: router idle cost).
const REDIAL_MIN_WAIT: Duration = Duration::from_secs(1);

impl Node {
    /// Tells every connected peer `Hashed` after the background pass hashed new content, so
    /// their running fetches ask us `Have` again; at most once per `PUSH_INTERVAL_MS`, what
    /// was hashed meanwhile coalesced into the next push.
    pub(super) async fn push_hashed_loop(self: Arc<Self>) {
        loop {
            self.library.hashed_new_content().await;
            for peer in self.peers.all() {
                tokio::spawn(async move { rpc::hashed(&peer.connection).await });
            }
            tokio::time::sleep(Duration::from_millis(PUSH_INTERVAL_MS)).await;
        }
    }

    /// Tells the new peer who we are and who else we know; tells the others about it.
    pub(super) async fn introduce(
        self: Arc<Self>,
        name: String,
        conn: quinn::Connection,
        outbound: bool,
    ) {
        match rpc::announce(&conn, self.announce_address()).await {
            Ok(()) => {}
            // The user who ran `connect` should learn why nothing works: the other side
            // has our request and must approve it (we keep redialling with backoff).
            Err(rpc::RpcError::Refused(WireError::NotAFriend)) => {
                tracing::info!(
                    "{name} has not approved us yet: it lists {} as a request to approve",
                    self.identity.name
                );
                return;
            }
            Err(e) => tracing::debug!("self-announce to {name} failed: {e}"),
        }
        for other in self.peers.all().into_iter().filter(|p| p.name != name) {
            if let Ok(Some(known)) = self.store.known_peer(&other.name) {
                let _ = rpc::announce(&conn, known.announce_address).await;
            }
        }
        if outbound {
            self.gossip(&name).await;
        }
    }

    /// Passes `name`'s announce address to every other connected peer.
    async fn gossip(&self, name: &str) {
        let Ok(Some(known)) = self.store.known_peer(name) else {
            return;
        };
        for other in self.peers.all().into_iter().filter(|p| p.name != name) {
            let _ = rpc::announce(&other.connection, known.announce_address.clone()).await;
        }
    }

    /// Handles `AnnouncePeer` from `from` (see `peer_policy::on_announce`).
    pub(super) fn on_announce(
        self: &Arc<Self>,
        from: &str,
        from_key: &PublicKey,
        text: &str,
    ) -> AnnounceReply {
        let address: AnnounceAddress = match text.parse() {
            Ok(a) => a,
            Err(e) => return AnnounceReply::Error(WireError::BadRequest(e.to_string())),
        };
        let name = address.name();
        let connected = self.peers.get(&name).is_some();
        let decided = self.store.update_known_peer(&name, |known| {
            let verdict = peer_policy::on_announce(
                from_key,
                &address,
                &self.identity.public_key,
                known.as_ref(),
                connected,
                self.trust,
            );
            let write = match &verdict {
                AnnounceVerdict::Remember {
                    record,
                    changed: true,
                    ..
                } => Some(record.clone()),
                _ => None,
            };
            (write, (verdict, known.is_none()))
        });
        let (verdict, new_peer) = match decided {
            Ok(decided) => decided,
            Err(e) => {
                tracing::warn!("cannot remember peer {name}: {e}");
                return AnnounceReply::Ok;
            }
        };
        let then = match verdict {
            AnnounceVerdict::Remember { then, .. } => then,
            AnnounceVerdict::Ignore(Refusal::OtherKeyUnderName) => {
                tracing::warn!("{from} announced another key under the known name {name}; ignored");
                return AnnounceReply::Ok;
            }
            AnnounceVerdict::Ignore(_) => return AnnounceReply::Ok,
        };
        match then {
            FollowUp::Gossip => {
                // Now others can learn how to reach it.
                let node = self.clone();
                tokio::spawn(async move { node.gossip(&name).await });
            }
            FollowUp::Dial => {
                tracing::info!("{from} told us about {name}; connecting");
                self.dial_later(address, DialReason::Gossiped);
            }
            FollowUp::Nothing if new_peer => {
                tracing::info!("{from} introduced {name}: a suggestion until approved");
                self.peers_changed();
            }
            FollowUp::Nothing => {}
        }
        AnnounceReply::Ok
    }

    /// Handles `Introduce`: passes the requester's own address on to `target`, so both
    /// start punching at once.
    pub(super) async fn on_introduce(
        &self,
        from: &str,
        from_key: &PublicKey,
        target: &str,
        text: String,
    ) -> AnnounceReply {
        if !peer_policy::may_pass_on_introduction(from_key, &text) {
            return AnnounceReply::Error(WireError::BadRequest(
                "an introduction must carry the requester's own announce address".into(),
            ));
        }
        let Some(target_conn) = self.peers.get(target).filter(|_| target != from) else {
            return AnnounceReply::Error(WireError::NotFound);
        };
        tracing::debug!("introducing {from} to {target} at {from}'s request");
        match rpc::announce(&target_conn.connection, text).await {
            Ok(()) => AnnounceReply::Ok,
            Err(e) => AnnounceReply::Error(WireError::BadRequest(format!(
                "{target} did not take the introduction: {e}"
            ))),
        }
    }

    /// Redials known peers that are not connected, each with its own exponential backoff.
    /// It sleeps until the earliest backoff ends or something changes (a connection ends, a
    /// dial fails), never on a fixed tick: an idle router wakes for nothing.
    pub(super) async fn reconnect_loop(self: Arc<Self>) {
        loop {
            let next = self.redial_due_peers();
            let wake = self.redial_wake.notified();
            let sleep_for = next.map_or(REDIAL_SAFETY_NET, |at| {
                at.saturating_duration_since(Instant::now())
                    .clamp(REDIAL_MIN_WAIT, REDIAL_SAFETY_NET)
            });
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Dials every peer whose backoff has ended; returns when the next one ends.
    fn redial_due_peers(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (name, known) in self.store.known_peers().unwrap_or_default() {
            let connected = self.peers.get(&name).is_some();
            let waiting_until = {
                let dials = lock(&self.dials);
                if !peer_policy::should_redial(&known, connected, dials.in_flight.contains(&name)) {
                    continue;
                }
                dials.backoffs.next_attempt(&name, now)
            };
            match (waiting_until, known.address()) {
                (Some(at), _) => next = Some(next.map_or(at, |n| n.min(at))),
                (None, Some(address)) => self.dial_later(address, DialReason::Redial),
                (None, None) => {}
            }
        }
        next
    }

    /// Ends when the mDNS daemon stops (`close`).
    pub(super) async fn lan_discovery_loop(self: Arc<Self>, browse: mdns::Browse) {
        while let Some(found) = browse.next().await {
            self.on_lan_peer(found);
        }
    }

    /// A node advertised on the LAN (see `peer_policy::on_lan_advert`); the handshake then
    /// proves it holds the key.
    fn on_lan_peer(self: &Arc<Self>, found: mdns::Candidate) {
        let address = found.announce_address();
        let name = address.name();
        let connected = self.peers.get(&name).is_some();
        let dial_due = lock(&self.dials).backoffs.is_due(&name, Instant::now());
        let decided = self.store.update_known_peer(&name, |known| {
            let action = peer_policy::on_lan_advert(
                &address,
                &self.identity.public_key,
                known.as_ref(),
                connected,
                dial_due,
                self.trust,
            );
            let write = match &action {
                Ok(action) if action.changed => Some(action.record.clone()),
                _ => None,
            };
            (write, (action, known.is_none()))
        });
        let (action, new_peer) = match decided {
            Ok((Ok(action), new_peer)) => (action, new_peer),
            Ok((Err(why), _)) => {
                tracing::debug!("mDNS: {name} at {}: {why}", found.addr);
                return;
            }
            Err(e) => {
                tracing::warn!("cannot remember peer {name}: {e}");
                return;
            }
        };
        if new_peer && !action.dial_now {
            tracing::info!("found {name} on the LAN at {}: a suggestion", found.addr);
            self.peers_changed();
        }
        if action.dial_now {
            tracing::info!("found {name} on the LAN at {}; connecting", found.addr);
            self.dial_later(address, DialReason::FoundOnLan);
        }
    }
}
