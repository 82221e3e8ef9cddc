//! `/api/downloads` and `/api/transfers/*`: queueing, the queue controls and the views.

use super::extract::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::browse::split_peer_path;
use super::*;

#[derive(Deserialize)]
pub(super) struct DownloadBody {
    /// `peer/path`
    path: String,
    /// A folder configured here to download into (`download --to`).
    to: Option<std::path::PathBuf>,
}

pub(super) async fn download(
    State(s): State<AppState>,
    Json(body): Json<DownloadBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (peer, path) = split_peer_path(&body.path)?;
    let id = s.node.queue_download(&peer, &path, body.to.as_deref())?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

pub(super) async fn transfers(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.node.transfers())
}

pub(super) async fn transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node
        .downloads()
        .view(id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no download with id {id}")))
}

pub(super) async fn pause_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads().pause(id)?;
    Ok(Json(json!({ "paused": id })))
}

pub(super) async fn resume_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads().resume(id)?;
    Ok(Json(json!({ "resumed": id })))
}

#[derive(Deserialize)]
pub(super) struct MoveBody {
    /// New queue position, 0 = first.
    position: usize,
}

pub(super) async fn move_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Json(body): Json<MoveBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads().move_to(id, body.position)?;
    Ok(Json(json!({ "moved": id, "position": body.position })))
}

pub(super) async fn cancel_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads().cancel(id)?;
    Ok(Json(json!({ "cancelled": id })))
}

/// Takes done downloads and finished uploads off the list; downloaded files stay on disk.
pub(super) async fn clear_finished(
    State(s): State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let (downloads, uploads) = s.node.clear_finished_transfers()?;
    Ok(Json(
        json!({ "cleared_downloads": downloads, "cleared_uploads": uploads }),
    ))
}
