//! `/api/invites`: make, list and revoke invites. Joining is `/api/connect` with the code.

use super::extract::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::*;

#[derive(Deserialize)]
pub(super) struct InviteBody {
    expires_secs: Option<u64>,
    uses: Option<u32>,
    shares: Option<Vec<String>>,
}

/// The new invite with its code, and the code as a QR image for a phone to photograph.
pub(super) async fn create_invite(
    State(s): State<AppState>,
    Json(body): Json<InviteBody>,
) -> Result<impl IntoResponse, ApiError> {
    let invite = s
        .node
        .create_invite(body.expires_secs, body.uses, body.shares)?;
    let code = invite.code.clone().unwrap_or_default();
    let mut reply =
        serde_json::to_value(&invite).map_err(|e| ApiError::Internal(format!("invite: {e}")))?;
    reply["qr_svg"] = json!(info::qr_svg(&code)?);
    Ok(Json(reply))
}

pub(super) async fn list_invites(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.node.invites()?))
}

pub(super) async fn revoke_invite(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.revoke_invite(&id)?;
    Ok(Json(json!({ "revoked": id })))
}
