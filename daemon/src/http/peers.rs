//! `/api/peers`, `/api/connect`, `/api/disconnect`, and the trust actions
//! `/api/peers/{approve,block,unblock,forget,rename}`.

use super::extract::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use crate::node::Connected;

use super::*;

pub(super) async fn peers(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.node.peer_views())
}

#[derive(Deserialize)]
pub(super) struct ConnectBody {
    announce_address: String,
}

pub(super) async fn connect(
    State(s): State<AppState>,
    Json(body): Json<ConnectBody>,
) -> Result<impl IntoResponse, ApiError> {
    // 202: the request was delivered but the other owner has still to approve it.
    let (status, name, approved) = match s.node.connect(&body.announce_address).await? {
        Connected::Welcomed(name) => (StatusCode::OK, name, true),
        Connected::AwaitingApproval(name) => (StatusCode::ACCEPTED, name, false),
    };
    Ok((status, Json(json!({ "name": name, "approved": approved }))))
}

#[derive(Deserialize)]
pub(super) struct PeerBody {
    peer: String,
}

pub(super) async fn disconnect(
    State(s): State<AppState>,
    Json(body): Json<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.disconnect(&body.peer)?;
    Ok(Json(json!({ "disconnected": body.peer })))
}

pub(super) async fn approve(
    State(s): State<AppState>,
    Json(body): Json<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.approve(&body.peer)?;
    Ok(Json(json!({ "approved": body.peer })))
}

pub(super) async fn block(
    State(s): State<AppState>,
    Json(body): Json<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.block(&body.peer)?;
    Ok(Json(json!({ "blocked": body.peer })))
}

pub(super) async fn unblock(
    State(s): State<AppState>,
    Json(body): Json<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.unblock(&body.peer)?;
    Ok(Json(json!({ "unblocked": body.peer })))
}

pub(super) async fn forget(
    State(s): State<AppState>,
    Json(body): Json<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.forget(&body.peer)?;
    Ok(Json(json!({ "forgotten": body.peer })))
}

#[derive(Deserialize)]
pub(super) struct RenameBody {
    peer: String,
    nickname: String,
}

pub(super) async fn rename(
    State(s): State<AppState>,
    Json(body): Json<RenameBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.rename(&body.peer, &body.nickname)?;
    Ok(Json(json!({ "renamed": body.peer })))
}
