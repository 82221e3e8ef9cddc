//! `/downloads/` (files of the download folder) and the local library (`/library`,
//! `/api/library*`: finished downloads wherever saved), contained so they cannot run script.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeFile;

use std::path::Path;

use super::*;

/// `/downloads/<peer>/<path>` from the download folder in force now (it can change live):
/// only regular files reached without a symlink (a link planted in the folder could point
/// anywhere). A folder without its trailing `/` is redirected to it, under `/downloads/`;
/// a folder with it serves its `index.html`.
pub(super) async fn downloaded_file(
    State(s): State<AppState>,
    axum::extract::Path(path): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let base = s.node.download_dir();
    let found = harddrive_party_core::plan::downloaded_path(&base, &path)
        .and_then(|local| Some((unlinked(&base, &local)?, local)));
    let not_found = || ApiError::NotFound("no such downloaded file".into()).into_response();
    let file = match found {
        Some((meta, local)) if meta.is_file() => local,
        // Every segment was checked, so the request's own path plus `/` stays on this site.
        Some((meta, _)) if meta.is_dir() && !path.ends_with('/') => {
            let to = format!("{}/", request.uri().path());
            return axum::response::Redirect::temporary(&to).into_response();
        }
        Some((meta, local)) if meta.is_dir() => {
            let index = local.join("index.html");
            match unlinked(&base, &index) {
                Some(meta) if meta.is_file() => index,
                _ => return not_found(),
            }
        }
        _ => return not_found(),
    };
    match ServeFile::new(file).try_call(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// The metadata of `local` (inside `base`) if no component below `base` is a symlink.
fn unlinked(base: &Path, local: &Path) -> Option<std::fs::Metadata> {
    let mut at = base.to_path_buf();
    let mut meta = None;
    for part in local.strip_prefix(base).ok()?.components() {
        at.push(part);
        let m = std::fs::symlink_metadata(&at).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
        meta = Some(m);
    }
    meta
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

impl From<crate::node::LibraryError> for ApiError {
    fn from(e: crate::node::LibraryError) -> Self {
        use crate::node::LibraryError;
        match e {
            LibraryError::NotRecorded | LibraryError::Gone(_) => ApiError::NotFound(e.to_string()),
            LibraryError::Delete(..) | LibraryError::Store(_) => ApiError::Internal(e.to_string()),
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    offset: usize,
}

/// `GET /api/library`: a page of finished downloads and the free space of the download disk.
pub(super) async fn library(
    State(s): State<AppState>,
    super::extract::Query(q): super::extract::Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = s.node.library_page(q.offset)?;
    let items: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "path": e.path, "size": e.size, "finished": e.finished, "from": e.from,
            })
        })
        .collect();
    Ok(super::extract::Json(serde_json::json!({
        "items": items, "offset": q.offset, "total": page.total, "free": page.free,
        "page": crate::node::LIBRARY_PAGE,
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct FileQuery {
    path: String,
    /// Any value: sent as an attachment, to be saved rather than shown.
    save: Option<String>,
}

/// `GET /library?path=…`: a recorded download, with Range, contained like `/downloads/`.
pub(super) async fn library_file(
    State(s): State<AppState>,
    super::extract::Query(q): super::extract::Query<FileQuery>,
    request: Request,
) -> Response {
    let file = match s.node.library_file(&q.path) {
        Ok(file) => file,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = match ServeFile::new(&file).try_call(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => return ApiError::Internal(e.to_string()).into_response(),
    };
    if q.save.is_some() {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        // RFC 6266's UTF-8 form, so any file name survives; quotes and controls cannot enter.
        let encoded: String = name
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

#[derive(serde::Deserialize)]
pub(super) struct DeleteBody {
    path: String,
}

/// `POST /api/library/delete`: deletes a recorded download and its record; nothing else.
pub(super) async fn delete(
    State(s): State<AppState>,
    super::extract::Json(body): super::extract::Json<DeleteBody>,
) -> Result<Response, ApiError> {
    s.node.delete_downloaded(&body.path)?;
    Ok(super::extract::Json(serde_json::json!({ "deleted": body.path })).into_response())
}
