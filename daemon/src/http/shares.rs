//! `/api/shares` (with who sees each), `/api/shares/{name}/access` and `/api/rescan`.

use super::extract::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::*;

pub(super) async fn list_shares(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.node.share_views()?))
}

#[derive(Deserialize)]
pub(super) struct AccessBody {
    all_friends: bool,
    #[serde(default)]
    peers: Vec<String>,
}

pub(super) async fn set_access(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<AccessBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.node.set_share_access(
        &name,
        body.all_friends,
        body.peers,
    )?))
}

#[derive(Deserialize)]
pub(super) struct AddShareBody {
    dir: std::path::PathBuf,
}

pub(super) async fn add_share(
    State(s): State<AppState>,
    Json(body): Json<AddShareBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, stats) = s.node.library().add(body.dir).await?;
    Ok(Json(json!({ "name": name, "files": stats.files })))
}

pub(super) async fn remove_share(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.library().remove(&name)?;
    Ok(Json(json!({ "removed": name })))
}

pub(super) async fn rescan(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let stats = s.node.library().rescan().await?;
    Ok(Json(stats))
}
