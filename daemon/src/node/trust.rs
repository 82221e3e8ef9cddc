//! Friends only: a stranger's connection is heard once (its request refused with
//! `NotAFriend` and kept as a pending request), then closed. The user's `approve`, `block`,
//! `unblock`, `forget` and `rename`. The rules are `peer_policy`'s; this file carries them out.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::dialer::DialReason;
use super::invites::Joiner;
use super::{Node, NodeError};
use crate::events::Event;
use crate::identity::PublicKey;
use crate::locks::lock;
use crate::net::peers::CLOSE_BY_USER;
use crate::store::KnownPeer;
use crate::transfer::TransferState;
use crate::wire::{read_frame, Request, WireError, MAX_REQUEST_FRAME};
use harddrive_party_core::http_guard::AttemptLimiter;
use harddrive_party_core::peer_policy::{
    self, PendingRequest, CLOSE_NOT_A_FRIEND, MAX_STRANGERS_AT_ONCE, STRANGER_ATTEMPTS,
};

/// A stranger has this long to open a stream and send its request.
const STRANGER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the refusal may take to reach the stranger before the connection is closed
/// (closing at once could discard it unsent).
const REFUSAL_DELIVERY: Duration = Duration::from_secs(2);
pub const MAX_NICKNAME_CHARS: usize = 64;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The downloads `forget` cancels: those still to do (the web UI's confirmation counts
/// the same states).
fn unfinished(state: TransferState) -> bool {
    // Every state named, so a new one has to be placed here (the compiler says so).
    match state {
        TransferState::Queued
        | TransferState::Waiting
        | TransferState::PeerUnknown
        | TransferState::Active
        | TransferState::Paused
        | TransferState::DiskFull => true,
        TransferState::Done | TransferState::Failed => false,
    }
}

/// What strangers may make us spend: a few at a time, and a few a minute per address.
pub(super) struct StrangerGate {
    attempts: Mutex<AttemptLimiter>,
    slots: Arc<Semaphore>,
}

impl Default for StrangerGate {
    fn default() -> Self {
        Self {
            attempts: Mutex::new(AttemptLimiter::new(STRANGER_ATTEMPTS)),
            slots: Arc::new(Semaphore::new(MAX_STRANGERS_AT_ONCE)),
        }
    }
}

impl StrangerGate {
    /// A slot to hear one stranger in, or `None`: then it is closed unheard.
    fn admit(&self, from: IpAddr) -> Option<OwnedSemaphorePermit> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        lock(&self.attempts).attempt(from, Instant::now()).ok()?;
        Some(permit)
    }
}

impl Node {
    /// Hears a stranger's first request: a `Join` with a valid invite makes it a friend (and
    /// the connection carries on as a friend's); anything else is refused with `NotAFriend`
    /// and kept as a pending request (an `AnnouncePeer` of its own address is kept, so
    /// `approve` can dial it), and the connection closed.
    pub(super) async fn hear_stranger(
        self: Arc<Self>,
        name: String,
        key: PublicKey,
        conn: quinn::Connection,
        relayed: bool,
    ) {
        let Some(_slot) = self.strangers.admit(conn.remote_address().ip()) else {
            tracing::debug!("{name}: too many strangers knocking; closed unheard");
            conn.close(CLOSE_NOT_A_FRIEND.into(), b"busy");
            return;
        };
        // Recorded at once, so the user can approve a knock that sends nothing; a joiner's
        // record is taken back below unless it had knocked before.
        let knocked_before = self.pending_request(&name).is_some();
        self.note_request(&name, key, &conn, None);
        let stream = tokio::time::timeout(STRANGER_REQUEST_TIMEOUT, async {
            let (send, mut recv) = conn.accept_bi().await.ok()?;
            let request = read_frame::<Request, _>(&mut recv, MAX_REQUEST_FRAME)
                .await
                .ok()?;
            Some((send, request))
        })
        .await;
        let Ok(Some((mut send, request))) = stream else {
            conn.close(CLOSE_NOT_A_FRIEND.into(), b"not a friend");
            self.peers_changed();
            return;
        };
        if let Request::Join {
            invite_id,
            proof,
            announce_address,
        } = &request
        {
            let joiner = Joiner {
                name,
                key,
                announce_address: announce_address.parse().ok(),
            };
            if self
                .answer_join(&joiner, &conn, &mut send, invite_id, proof)
                .await
            {
                self.on_connection(conn, false, relayed);
                return;
            }
            if !knocked_before {
                lock(&self.pending).take(&joiner.name);
            }
        } else {
            tracing::info!(
                "{name} at {} is not a friend: request recorded for approval",
                conn.remote_address()
            );
            if let Request::AnnouncePeer { announce_address } = &request {
                if peer_policy::may_pass_on_introduction(&key, announce_address) {
                    self.note_request(&name, key, &conn, Some(announce_address.clone()));
                }
            }
            self.peers_changed();
            super::server::refuse(&mut send, &request, WireError::NotAFriend).await;
        }
        let _ = tokio::time::timeout(REFUSAL_DELIVERY, send.stopped()).await;
        conn.close(CLOSE_NOT_A_FRIEND.into(), b"not a friend");
    }

    fn note_request(
        &self,
        name: &str,
        key: PublicKey,
        conn: &quinn::Connection,
        announce_address: Option<String>,
    ) {
        lock(&self.pending).record(PendingRequest {
            name: name.to_string(),
            key,
            announce_address,
            remote_address: conn.remote_address().to_string(),
            last_seen: unix_now(),
        });
    }

    /// Tells the UIs to look at the peers again. Not sent for a joiner's passing record.
    pub(super) fn peers_changed(&self) {
        let _ = self.events.send(Event::PeersChanged);
    }

    /// The pending request under `name`, if any.
    pub(super) fn pending_request(&self, name: &str) -> Option<PendingRequest> {
        lock(&self.pending).get(name).cloned()
    }

    pub(super) fn pending_requests(&self) -> Vec<PendingRequest> {
        lock(&self.pending).iter().cloned().collect()
    }

    /// Makes a pending request or a suggestion a friend, and dials it if its address is
    /// known (`peer_policy::answer_knock_at`).
    pub fn approve(self: &Arc<Self>, name: &str) -> Result<(), NodeError> {
        let known = self.store.known_peer(name)?;
        if known.as_ref().is_some_and(|k| k.blocked) {
            return Err(NodeError::Blocked(name.to_string()));
        }
        let pending = self.pending_request(name);
        let record = peer_policy::approved(known.as_ref(), pending.as_ref())
            .ok_or_else(|| NodeError::UnknownPeer(name.to_string()))?;
        self.store.put_known_peer(name, &record)?;
        lock(&self.pending).take(name);
        tracing::info!("{name} approved as a friend");
        self.peers_changed();
        lock(&self.dials).backoffs.forget(name);
        let back = peer_policy::answer_knock_at(&record, pending.as_ref());
        if let Some(address) = back.filter(|_| !record.disconnected) {
            self.dial_later(address, DialReason::Approved);
        }
        Ok(())
    }

    /// Refuses `name` from now on: closes its connection, cancels downloads from it and
    /// never dials it.
    pub fn block(&self, name: &str) -> Result<(), NodeError> {
        let known = self.store.known_peer(name)?;
        let pending = self.pending_request(name);
        let record = peer_policy::blocked(known.as_ref(), pending.as_ref())
            .ok_or_else(|| NodeError::UnknownPeer(name.to_string()))?;
        self.store.put_known_peer(name, &record)?;
        lock(&self.pending).take(name);
        self.drop_connection(name, b"blocked");
        self.cancel_downloads_from(name, |_| true);
        tracing::info!("{name} blocked");
        self.peers_changed();
        Ok(())
    }

    /// Lifts a block: the peer is what it was before (a blocked stranger is forgotten).
    pub fn unblock(&self, name: &str) -> Result<(), NodeError> {
        let known = self
            .store
            .known_peer(name)?
            .filter(|k| k.blocked)
            .ok_or_else(|| NodeError::NotBlocked(name.to_string()))?;
        match peer_policy::unblocked(&known) {
            Some(record) => self.store.put_known_peer(name, &record)?,
            None => {
                self.store.remove_known_peer(name)?;
            }
        }
        self.peers_changed();
        Ok(())
    }

    /// Removes the peer's key and address (and its request, and its connection), and
    /// cancels the unfinished downloads from it: they could only wait for a peer that is
    /// now a stranger, or go to another key that takes the name later. Finished and failed
    /// ones stay listed, as the user's record of what came from it.
    pub fn forget(&self, name: &str) -> Result<(), NodeError> {
        let removed = self.store.remove_known_peer(name)?;
        let was_pending = lock(&self.pending).take(name).is_some();
        let was_connected = self.drop_connection(name, b"forgotten");
        if !(removed || was_pending || was_connected) {
            return Err(NodeError::UnknownPeer(name.to_string()));
        }
        lock(&self.dials).backoffs.forget(name);
        self.cancel_downloads_from(name, unfinished);
        self.revoke_shares(name)?;
        self.peers_changed();
        Ok(())
    }

    /// Sets (or with an empty text clears) the user's nickname for a remembered peer.
    pub fn rename(&self, name: &str, nickname: &str) -> Result<(), NodeError> {
        let nickname = nickname.trim();
        if nickname.chars().count() > MAX_NICKNAME_CHARS || nickname.chars().any(char::is_control) {
            return Err(NodeError::BadNickname);
        }
        let known = self
            .store
            .known_peer(name)?
            .ok_or_else(|| NodeError::UnknownPeer(name.to_string()))?;
        let record = KnownPeer {
            nickname: (!nickname.is_empty()).then(|| nickname.to_string()),
            ..known
        };
        self.store.put_known_peer(name, &record)?;
        self.peers_changed();
        Ok(())
    }

    /// Cancels the downloads from `name` whose state `which` selects (their `.part` files
    /// go too); one that cannot be cancelled is logged and the rest carry on.
    fn cancel_downloads_from(&self, name: &str, which: impl Fn(TransferState) -> bool) {
        for view in self.downloads.views() {
            if view.peer == name && which(view.state) {
                match self.downloads.cancel(view.id) {
                    Ok(()) => tracing::info!("download {} from {name} cancelled", view.id),
                    Err(e) => {
                        tracing::warn!("cannot cancel download {} from {name}: {e}", view.id)
                    }
                }
            }
        }
    }

    /// Closes the live connection to `name`, if any; true if there was one.
    fn drop_connection(&self, name: &str, reason: &[u8]) -> bool {
        let Some(conn) = self.peers.remove(name) else {
            return false;
        };
        conn.connection.close(CLOSE_BY_USER.into(), reason);
        let _ = self.events.send(Event::PeerDisconnected {
            name: name.to_string(),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_cancels_only_what_is_still_to_do() {
        for state in [
            TransferState::Queued,
            TransferState::Waiting,
            TransferState::PeerUnknown,
            TransferState::Active,
            TransferState::Paused,
            TransferState::DiskFull,
        ] {
            assert!(unfinished(state), "{state:?}");
        }
        assert!(!unfinished(TransferState::Done));
        assert!(!unfinished(TransferState::Failed));
    }
}
