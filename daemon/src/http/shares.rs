//! `/api/shares` (with who sees each), `/api/shares/{name}/access` and `/api/rescan`.

use super::extract::Json;
use axum::extract::{Path, State};

use super::types::{
    AccessRequest, AddShareRequest, ScanStats, ShareAccess, ShareAdded, ShareRemoved, ShareView,
};
use super::*;

pub(super) async fn list_shares(
    State(s): State<AppState>,
) -> Result<Json<Vec<ShareView>>, ApiError> {
    Ok(Json(s.node.share_views()?))
}

pub(super) async fn set_access(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<AccessRequest>,
) -> Result<Json<ShareAccess>, ApiError> {
    Ok(Json(s.node.set_share_access(
        &name,
        body.all_friends,
        body.peers,
    )?))
}

pub(super) async fn add_share(
    State(s): State<AppState>,
    Json(body): Json<AddShareRequest>,
) -> Result<Json<ShareAdded>, ApiError> {
    let (name, stats) = s.node.library().add(body.dir).await?;
    Ok(Json(ShareAdded {
        name,
        files: stats.files,
    }))
}

pub(super) async fn remove_share(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ShareRemoved>, ApiError> {
    s.node.library().remove(&name)?;
    Ok(Json(ShareRemoved { removed: name }))
}

pub(super) async fn rescan(State(s): State<AppState>) -> Result<Json<ScanStats>, ApiError> {
    let stats = s.node.library().rescan().await?;
    Ok(Json(stats))
}
