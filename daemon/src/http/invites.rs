//! `/api/invites`: make, list and revoke invites. Joining is `/api/connect` with the code.

use super::extract::Json;
use axum::extract::{Path, State};

use super::types::{CreateInviteRequest, InviteCreated, InviteRevoked, InviteView};
use super::*;

/// The new invite with its code, and the code as a QR image for a phone to photograph.
pub(super) async fn create_invite(
    State(s): State<AppState>,
    Json(body): Json<CreateInviteRequest>,
) -> Result<Json<InviteCreated>, ApiError> {
    let invite = s
        .node
        .create_invite(body.expires_secs, body.uses, body.shares)?;
    let qr_svg = info::qr_svg(invite.code.as_deref().unwrap_or_default())?;
    Ok(Json(InviteCreated { invite, qr_svg }))
}

pub(super) async fn list_invites(
    State(s): State<AppState>,
) -> Result<Json<Vec<InviteView>>, ApiError> {
    Ok(Json(s.node.invites()?))
}

pub(super) async fn revoke_invite(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<InviteRevoked>, ApiError> {
    s.node.revoke_invite(&id)?;
    Ok(Json(InviteRevoked { revoked: id }))
}
