//! `/api/settings` and `/api/stop`.

use super::extract::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use super::*;
use crate::node::{SettingsChange, SettingsView};

pub(super) async fn settings(State(s): State<AppState>) -> Json<SettingsView> {
    Json(s.node.settings())
}

pub(super) async fn change_settings(
    State(s): State<AppState>,
    Json(change): Json<SettingsChange>,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(s.node.change_settings(change)?))
}

pub(super) async fn stop(State(s): State<AppState>) -> impl IntoResponse {
    s.node.request_shutdown();
    Json(json!({ "stopping": true }))
}
