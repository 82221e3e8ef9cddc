//! `/api/downloads` and `/api/transfers/*`: queueing, the queue controls and the views.

use super::extract::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::browse::split_peer_path;
use super::types::{
    Cancelled, DownloadQueued, DownloadRequest, FinishedCleared, MoveRequest, Moved, Paused,
    Resumed, TransferView,
};
use super::*;

pub(super) async fn download(
    State(s): State<AppState>,
    Json(body): Json<DownloadRequest>,
) -> Result<(StatusCode, Json<DownloadQueued>), ApiError> {
    let (peer, path) = split_peer_path(&body.path)?;
    let id = s.node.queue_download(&peer, &path)?;
    Ok((StatusCode::ACCEPTED, Json(DownloadQueued { id })))
}

pub(super) async fn transfers(State(s): State<AppState>) -> Json<Vec<TransferView>> {
    Json(s.node.transfers())
}

pub(super) async fn transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<TransferView>, ApiError> {
    s.node
        .downloads()
        .view(id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no download with id {id}")))
}

pub(super) async fn pause_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Paused>, ApiError> {
    s.node.downloads().pause(id)?;
    Ok(Json(Paused { paused: id }))
}

pub(super) async fn resume_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Resumed>, ApiError> {
    s.node.downloads().resume(id)?;
    Ok(Json(Resumed { resumed: id }))
}

pub(super) async fn move_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Json(body): Json<MoveRequest>,
) -> Result<Json<Moved>, ApiError> {
    s.node.downloads().move_to(id, body.position)?;
    Ok(Json(Moved {
        moved: id,
        position: body.position,
    }))
}

pub(super) async fn cancel_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Cancelled>, ApiError> {
    s.node.downloads().cancel(id)?;
    Ok(Json(Cancelled { cancelled: id }))
}

/// Takes done downloads and finished uploads off the list; downloaded files stay on disk.
pub(super) async fn clear_finished(
    State(s): State<AppState>,
) -> Result<Json<FinishedCleared>, ApiError> {
    let (cleared_downloads, cleared_uploads) = s.node.clear_finished_transfers()?;
    Ok(Json(FinishedCleared {
        cleared_downloads,
        cleared_uploads,
    }))
}
