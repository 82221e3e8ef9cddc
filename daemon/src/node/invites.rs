//! Invites: making, listing and revoking them (the store keeps only a verifier of each
//! secret), joining with a code (the joiner's side), and answering a joiner (the inviter's
//! side, reached from `trust::hear_stranger`). The rules are `harddrive_party_core::invite`'s.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::trust::unix_now;
use super::{Node, NodeError};
use crate::announce::AnnounceAddress;
use crate::identity::{random_bytes, PublicKey};
use crate::locks::lock;
use crate::net::peers::CLOSE_BY_USER;
use crate::store::AddInvite;
use crate::wire::{
    read_frame, write_frame, JoinReply, Request, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};
use harddrive_party_core::invite::{
    self, id_hex, parse_id_hex, Invite, InviteCode, InviteId, InviteRefusal, InviteRequest,
    InviteRequestError, KEYING_LABEL,
};
use harddrive_party_core::peer_policy;

/// How long a joiner waits for the inviter's answer once connected.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// An invite as the API and `invites --json` show it; `code` only right after it is made.
#[derive(Debug, Clone, Serialize)]
pub struct InviteView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub expires_at: u64,
    pub uses_left: u32,
    pub shares: Option<Vec<String>>,
}

impl InviteView {
    fn of(invite: &Invite, code: Option<String>) -> Self {
        Self {
            id: id_hex(&invite.id),
            code,
            expires_at: invite.expires_at,
            uses_left: invite.uses_left,
            shares: invite.shares.clone(),
        }
    }
}

/// A stranger asking to join, as its connection authenticated it.
pub(super) struct Joiner {
    pub name: String,
    pub key: PublicKey,
    /// The joiner's own announce address, if it sent a readable one.
    pub announce_address: Option<AnnounceAddress>,
}

/// The connection's exported keying material for invite `id`: the same on both ends of one
/// TLS session and different on every other, which binds a proof to its connection.
fn keying_material(conn: &quinn::Connection, id: &InviteId) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    conn.export_keying_material(&mut out, KEYING_LABEL, id)
        .ok()
        .map(|()| out)
}

impl Node {
    /// Makes an invite to every share (`shares` empty or `None`) or to the ones named.
    pub fn create_invite(
        &self,
        lifetime_secs: Option<u64>,
        uses: Option<u32>,
        shares: Option<Vec<String>>,
    ) -> Result<InviteView, NodeError> {
        let known: Vec<String> = self.library.shares().roots().into_keys().collect();
        let request = InviteRequest::checked(lifetime_secs, uses, shares, &known)?;
        let code = InviteCode {
            id: random_bytes()?,
            secret: random_bytes()?,
            inviter: self.reach.announce(),
        };
        let now = unix_now();
        let invite = request.invite(code.id, &code.secret, now);
        if self.store.add_invite(&invite, now)? == AddInvite::TooManyLive {
            return Err(InviteRequestError::TooManyInvites.into());
        }
        tracing::info!(
            "invite {} made: {} use(s), expires in {} s",
            code.id_hex(),
            invite.uses_left,
            request.lifetime_secs
        );
        Ok(InviteView::of(&invite, Some(code.to_string())))
    }

    /// Live invites, soonest to expire first.
    pub fn invites(&self) -> Result<Vec<InviteView>, NodeError> {
        let now = unix_now();
        let mut live: Vec<Invite> = self
            .store
            .invites()?
            .into_iter()
            .filter(|i| i.is_live(now))
            .collect();
        live.sort_by_key(|i| i.expires_at);
        Ok(live.iter().map(|i| InviteView::of(i, None)).collect())
    }

    /// Ends a live invite; a joiner holding it is told it was revoked.
    pub fn revoke_invite(&self, id_text: &str) -> Result<(), NodeError> {
        let unknown = || NodeError::UnknownInvite(id_text.to_string());
        let id = parse_id_hex(id_text).ok_or_else(unknown)?;
        let now = unix_now();
        self.store
            .update_invite(&id, |stored| match stored {
                Some(i) if i.is_live(now) => Ok(Invite {
                    revoked: true,
                    ..i.clone()
                }),
                _ => Err(()),
            })?
            .map_err(|()| unknown())?;
        tracing::info!("invite {id_text} revoked");
        Ok(())
    }

    /// Joins with an invite code: dials the inviter, proves the secret on that connection
    /// and, once welcomed, keeps the inviter as a friend. A refused code leaves no trace.
    pub(super) async fn join(self: &Arc<Self>, code: InviteCode) -> Result<String, NodeError> {
        let inviter = &code.inviter;
        // Checked before dialling; written only once welcomed.
        let (name, record) = self.friend_at(inviter)?;
        let unreachable = |reason: String| NodeError::Unreachable {
            name: name.clone(),
            reason,
        };
        let Some((conn, relayed)) = self.open_path(inviter).await? else {
            return Err(unreachable(
                "the inviter has to dial us first (both behind strict NATs); ask it to \
                 connect to your announce address instead"
                    .into(),
            ));
        };
        let reply = tokio::time::timeout(JOIN_TIMEOUT, self.send_join(&conn, &code))
            .await
            .unwrap_or_else(|_| Err("no answer to the invite in time".into()));
        match reply {
            Ok(JoinReply::Welcome) => {
                self.keep_friend(&name, &record)?;
                tracing::info!("joined {name} with an invite");
                self.on_connection(conn, true, relayed);
                Ok(name)
            }
            Ok(JoinReply::Refused(refusal)) => {
                conn.close(CLOSE_BY_USER.into(), b"invite refused");
                Err(NodeError::InviteRefused(refusal))
            }
            Err(reason) => {
                conn.close(CLOSE_BY_USER.into(), b"join failed");
                Err(unreachable(reason))
            }
        }
    }

    async fn send_join(
        &self,
        conn: &quinn::Connection,
        code: &InviteCode,
    ) -> Result<JoinReply, String> {
        let keying = keying_material(conn, &code.id).ok_or("no TLS keying material")?;
        let request = Request::Join {
            invite_id: code.id,
            proof: invite::proof(&code.verifier(), &keying),
            announce_address: self.announce_address(),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, &request, MAX_REQUEST_FRAME)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        read_frame::<JoinReply, _>(&mut recv, MAX_RESPONSE_FRAME)
            .await
            .map_err(|e| match conn.close_reason() {
                Some(quinn::ConnectionError::ApplicationClosed(close))
                    if close.reason.as_ref() == b"busy" =>
                {
                    InviteRefusal::Busy.to_string()
                }
                _ => e.to_string(),
            })
    }

    /// Checks a joiner's proof against the invite and, if it holds, spends one use and
    /// makes the joiner a friend (a guest for a share-limited invite). Answers either way;
    /// true if welcomed. A refusal writes nothing.
    pub(super) async fn answer_join(
        &self,
        joiner: &Joiner,
        conn: &quinn::Connection,
        send: &mut quinn::SendStream,
        invite_id: &InviteId,
        proof: &[u8; 32],
    ) -> bool {
        let reply = match self.redeem(joiner, conn, invite_id, proof) {
            Ok(()) => JoinReply::Welcome,
            Err(refusal) => {
                tracing::info!(
                    "{} at {} tried invite {}: {refusal}",
                    joiner.name,
                    conn.remote_address(),
                    id_hex(invite_id)
                );
                JoinReply::Refused(refusal)
            }
        };
        let _ = write_frame(send, &reply, MAX_RESPONSE_FRAME).await;
        let _ = send.finish();
        reply == JoinReply::Welcome
    }

    fn redeem(
        &self,
        joiner: &Joiner,
        conn: &quinn::Connection,
        invite_id: &InviteId,
        proof: &[u8; 32],
    ) -> Result<(), InviteRefusal> {
        let keying = keying_material(conn, invite_id).ok_or(InviteRefusal::NotValid)?;
        let now = unix_now();
        let busy = |e: NodeError| {
            tracing::error!("cannot record a join: {e}");
            InviteRefusal::Busy
        };
        let invite = self
            .store
            .update_invite(invite_id, |stored| {
                invite::redeem(stored, proof, &keying, now)
            })
            .map_err(|e| busy(e.into()))??;
        let known = self
            .store
            .known_peer(&joiner.name)
            .map_err(|e| busy(e.into()))?;
        let record = peer_policy::joined(
            known.as_ref(),
            &joiner.key,
            joiner.announce_address.as_ref(),
            &invite,
        );
        self.store
            .put_known_peer(&joiner.name, &record)
            .map_err(|e| busy(e.into()))?;
        if let Some(shares) = &invite.shares {
            self.grant_shares(&joiner.name, shares).map_err(busy)?;
        }
        lock(&self.pending).take(&joiner.name);
        tracing::info!(
            "{} joined with invite {} ({} use(s) left)",
            joiner.name,
            id_hex(invite_id),
            invite.uses_left
        );
        Ok(())
    }
}
