//! `/api/peers`, `/api/connect`, `/api/disconnect`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

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
    let name = s.node.connect(&body.announce_address).await?;
    Ok(Json(json!({ "name": name })))
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
