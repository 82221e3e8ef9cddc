//! `/downloads/`: files from the download folder, contained so they cannot run script.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use super::*;

/// `/downloads/<peer>/<path>` from the download folder in force now (it can change live).
pub(super) async fn downloaded_file(State(s): State<AppState>, mut request: Request) -> Response {
    let inner = request
        .uri()
        .path()
        .strip_prefix("/downloads")
        .unwrap_or("/")
        .parse::<axum::http::Uri>();
    match inner {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return ApiError::BadRequest("bad path".into()).into_response(),
    }
    match ServeDir::new(s.node.download_dir()).try_call(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// Downloaded files come from other people: they must not run script with this origin's
/// cookies. Markup types get a sandboxing CSP (an opaque origin, no scripts); nothing is
/// sniffed into a more dangerous type.
pub(super) async fn contain_downloaded_files(mut response: Response) -> Response {
    let risky = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.contains("html") || ct.contains("xml") || ct.contains("svg")
        });
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if risky {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
            ),
        );
    }
    response
}
