//! `/api/settings` and `/api/stop`.

use super::extract::Json;
use axum::extract::State;

use super::types::{SettingsChange, SettingsView, Stopping};
use super::*;

pub(super) async fn settings(State(s): State<AppState>) -> Json<SettingsView> {
    Json(s.node.settings())
}

pub(super) async fn change_settings(
    State(s): State<AppState>,
    Json(change): Json<SettingsChange>,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(s.node.change_settings(change)?))
}

pub(super) async fn stop(State(s): State<AppState>) -> Json<Stopping> {
    s.node.request_shutdown();
    Json(Stopping { stopping: true })
}
