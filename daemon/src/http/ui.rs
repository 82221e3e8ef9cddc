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
    if WebUi::get(path).is_none() {
        if let Some(file) = WebUi::get(&format!("{path}.gz")) {
            return gzipped_file(path, file, &headers);
        }
    }
    let found = WebUi::get(path)
        .map(|f| (path, f))
        .or_else(|| WebUi::get("index.html").map(|f| ("index.html", f)));
    let Some((name, file)) = found else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let (etag, common) = common_headers(name, &file);
    if revalidated(&headers, &etag) {
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

/// A file kept only gzip-compressed in `webui-dist/` (`NAME.gz`, served as `NAME`): large
/// vendored code that every browser accepts compressed, so the binary does not carry it
/// whole (the QR decoder is 257 KB, 57 KB gzipped). Clients that refuse gzip get 406.
fn gzipped_file(name: &str, file: rust_embed::EmbeddedFile, headers: &HeaderMap) -> Response {
    let accepts_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let named = parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"));
            named && !parts.any(|p| p.replace(' ', "") == "q=0")
        });
    if !accepts_gzip {
        let why = "this file is served gzip-compressed only: send Accept-Encoding: gzip";
        return (StatusCode::NOT_ACCEPTABLE, why).into_response();
    }
    let (etag, common) = common_headers(name, &file);
    let vary = [(header::VARY, "Accept-Encoding")];
    if revalidated(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common, vary).into_response();
    }
    let mime = mime_guess::from_path(name)
        .first_or_octet_stream()
        .to_string();
    let encoding = (header::CONTENT_ENCODING, "gzip".to_string());
    (
        common,
        vary,
        [(header::CONTENT_TYPE, mime), encoding],
        file.data.into_owned(),
    )
        .into_response()
}

fn common_headers(
    name: &str,
    file: &rust_embed::EmbeddedFile,
) -> (String, [(header::HeaderName, String); 6]) {
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
    (etag, common)
}

fn revalidated(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
}
