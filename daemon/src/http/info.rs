//! `/api/info` and the QR code of our announce address.

use super::extract::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::*;

/// `text` as a QR code (SVG), so the UI needs no QR encoder.
pub(super) fn qr_svg(text: &str) -> Result<String, ApiError> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::Internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// The announce address as a QR code.
pub(super) async fn qr(State(s): State<AppState>) -> Result<Response, ApiError> {
    let image = qr_svg(&s.node.announce_address())?;
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
