//! `/api/peers`, `/api/connect`, `/api/disconnect`, and the trust actions
//! `/api/peers/{approve,block,unblock,forget,rename}`.

use super::extract::Json;
use axum::extract::State;

use super::types::{
    Approved, Blocked, ConnectRequest, Connected, Disconnected, Forgotten, PeerRequest, PeerView,
    RenameRequest, Renamed, Unblocked,
};
use super::*;

pub(super) async fn peers(State(s): State<AppState>) -> Json<Vec<PeerView>> {
    Json(s.node.peer_views())
}

pub(super) async fn connect(
    State(s): State<AppState>,
    Json(body): Json<ConnectRequest>,
) -> Result<Json<Connected>, ApiError> {
    let name = s.node.connect(&body.announce_address).await?;
    Ok(Json(Connected { name }))
}

pub(super) async fn disconnect(
    State(s): State<AppState>,
    Json(PeerRequest { peer }): Json<PeerRequest>,
) -> Result<Json<Disconnected>, ApiError> {
    s.node.disconnect(&peer)?;
    Ok(Json(Disconnected { disconnected: peer }))
}

pub(super) async fn approve(
    State(s): State<AppState>,
    Json(PeerRequest { peer }): Json<PeerRequest>,
) -> Result<Json<Approved>, ApiError> {
    s.node.approve(&peer)?;
    Ok(Json(Approved { approved: peer }))
}

pub(super) async fn block(
    State(s): State<AppState>,
    Json(PeerRequest { peer }): Json<PeerRequest>,
) -> Result<Json<Blocked>, ApiError> {
    s.node.block(&peer)?;
    Ok(Json(Blocked { blocked: peer }))
}

pub(super) async fn unblock(
    State(s): State<AppState>,
    Json(PeerRequest { peer }): Json<PeerRequest>,
) -> Result<Json<Unblocked>, ApiError> {
    s.node.unblock(&peer)?;
    Ok(Json(Unblocked { unblocked: peer }))
}

pub(super) async fn forget(
    State(s): State<AppState>,
    Json(PeerRequest { peer }): Json<PeerRequest>,
) -> Result<Json<Forgotten>, ApiError> {
    s.node.forget(&peer)?;
    Ok(Json(Forgotten { forgotten: peer }))
}

pub(super) async fn rename(
    State(s): State<AppState>,
    Json(body): Json<RenameRequest>,
) -> Result<Json<Renamed>, ApiError> {
    s.node.rename(&body.peer, &body.nickname)?;
    Ok(Json(Renamed { renamed: body.peer }))
}
