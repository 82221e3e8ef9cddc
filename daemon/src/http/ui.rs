//! The embedded web UI (`webui-dist/`), revalidated by ETag.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "../webui-dist/"]
pub(super) struct WebUi;

pub(super) const UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded UI. Files are revalidated by ETag (their names carry no version, so a
/// long max-age would keep an old UI after an upgrade); icons may be cached for a day.
pub(super) async fn web_ui(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let found = WebUi::get(path)
        .map(|f| (path, f))
        .or_else(|| WebUi::get("index.html").map(|f| ("index.html", f)));
    let Some((name, file)) = found else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!(
        "\"{}\"",
        file.metadata.sha256_hash()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if name.ends_with(".png") || name.ends_with(".svg") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, cache.to_string()),
        (header::CONTENT_SECURITY_POLICY, UI_CSP.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::REFERRER_POLICY, "no-referrer".to_string()),
        (header::X_FRAME_OPTIONS, "DENY".to_string()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mime = file.metadata.mimetype().to_string();
    (
        common,
        [(header::CONTENT_TYPE, mime)],
        file.data.into_owned(),
    )
        .into_response()
}
