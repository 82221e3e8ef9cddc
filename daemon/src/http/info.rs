//! `/api/info` and the QR code of our announce address.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::*;

/// The announce address as a QR code (SVG), so the UI needs no QR library.
pub(super) async fn qr(State(s): State<AppState>) -> Result<Response, ApiError> {
    use qrcode::render::svg;
    let address = s.node.announce_address();
    let code = qrcode::QrCode::with_error_correction_level(address.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::Internal(format!("QR code: {e}")))?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        image,
    )
        .into_response())
}

pub(super) async fn info(State(s): State<AppState>) -> Json<crate::node::Info> {
    Json(s.node.info())
}
