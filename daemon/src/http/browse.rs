//! Browsing: `/api/index` (our own files), `/api/ls` (friends' listings and search),
//! `/api/read` (a friend's file bytes), and the streaming of listings as one JSON array.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::wire::WireError;

use super::extract::{Json, Query};
use super::*;
use harddrive_party_core::http_range::{parse_range, ByteRange, RangeError};

#[derive(Deserialize)]
pub(super) struct LsQuery {
    #[serde(default)]
    path: String,
    searchterm: Option<String>,
    recursive: Option<bool>,
}

/// Streams chunks as one JSON array, so huge listings are never held whole. A listing cut
/// short mid-stream ends with an error object after the array, so it cannot pass as complete.
pub(super) fn json_array_response(mut rx: mpsc::Receiver<crate::node::ListingChunk>) -> Response {
    let (tx, out) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        let _ = tx.send(Ok(Bytes::from_static(b"["))).await;
        let mut first = true;
        let mut failure = None;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Ok(entries) => {
                    let mut buf = Vec::new();
                    for entry in entries {
                        if !first {
                            buf.push(b',');
                        }
                        first = false;
                        let _ = serde_json::to_writer(&mut buf, &entry);
                    }
                    if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                        return;
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        let tail = match failure {
            None => Bytes::from_static(b"]"),
            Some(e) => Bytes::from(format!("]\n{}", json!({ "error": e }))),
        };
        let _ = tx.send(Ok(tail)).await;
    });
    let mut out = out;
    let stream = futures_util::stream::poll_fn(move |cx| out.poll_recv(cx));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub(super) async fn own_index(
    State(s): State<AppState>,
    Query(q): Query<LsQuery>,
) -> Result<Response, ApiError> {
    // A bad path is a clean 4xx rather than an error inside a 200 stream.
    let listing = s
        .node
        .library()
        .listing(q.path.clone(), q.searchterm, q.recursive.unwrap_or(true))
        .map_err(|e| match e {
            WireError::NotFound => ApiError::NotFound(format!("{}: {e}", q.path)),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    Ok(json_array_response(listing))
}

/// `peer/path` split into the peer name and the path on that peer.
pub(super) fn split_peer_path(full: &str) -> Result<(String, String), ApiError> {
    harddrive_party_core::plan::split_peer_path(full)
        .map(|(peer, path)| (peer.to_string(), path.to_string()))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Lists a remote peer's files (`path` = `peer/dir`), or the top level of every connected
/// peer when no path is given. Paths in the answer start with the peer's name.
pub(super) async fn remote_ls(
    State(s): State<AppState>,
    Query(q): Query<LsQuery>,
) -> Result<Response, ApiError> {
    let recursive = q.recursive.unwrap_or(true);
    if q.path.trim_matches('/').is_empty() {
        return Ok(json_array_response(
            s.node.everyones_listing(q.searchterm, recursive),
        ));
    }
    let (peer, path) = split_peer_path(&q.path)?;
    let listing = s
        .node
        .peer_listing(&peer, &path, q.searchterm, recursive)
        .await?;
    Ok(json_array_response(listing))
}

#[derive(Deserialize)]
pub(super) struct ReadQuery {
    path: String,
    #[serde(default)]
    start: u64,
    end: Option<u64>,
}

/// Streams a remote file (or a range of it) as raw bytes, with a media type guessed from
/// the name. A `Range` header (one byte range) is answered 206, or 416 with the size, so
/// audio and video players can seek in a friend's file without downloading it.
pub(super) async fn read(
    State(s): State<AppState>,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (peer_name, path) = split_peer_path(&q.path)?;
    let media_type = mime_guess::from_path(&path)
        .first_or_octet_stream()
        .to_string();
    if let Some(range) = headers.get(header::RANGE) {
        let range = range.to_str().map_err(|_| RangeError::Malformed);
        return read_range(&s.node, &peer_name, &path, range, media_type).await;
    }
    if q.end.is_some_and(|end| end < q.start) {
        return Err(ApiError::BadRequest("end is before start".into()));
    }
    let remote = s
        .node
        .read_remote(&peer_name, &path, q.start, q.end)
        .await?;
    let length = q
        .end
        .unwrap_or(remote.size)
        .min(remote.size)
        .saturating_sub(q.start);
    Ok((
        [
            (header::CONTENT_TYPE, media_type),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        Body::from_stream(remote.body),
    )
        .into_response())
}

fn unsatisfiable(size: u64) -> Response {
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        Json(json!({ "error": RangeError::Unsatisfiable { size }.to_string() })),
    )
        .into_response()
}

async fn read_range(
    node: &Node,
    peer: &str,
    path: &str,
    header_value: Result<&str, RangeError>,
    media_type: String,
) -> Result<Response, ApiError> {
    let range = header_value.and_then(parse_range);
    // A range with a known start is read at once (the peer cuts it at the end of the
    // file). A start past the end is answered with the size and no body: that is how a
    // suffix range or a refusal learns the size before the real read.
    let (probe_start, probe_end) = match range {
        Ok(ByteRange::From(first)) => (first, None),
        Ok(ByteRange::FromTo(first, last)) => (first, Some(last.saturating_add(1))),
        Ok(ByteRange::Suffix(_)) | Err(_) => (u64::MAX, None),
    };
    let first = node.read_remote(peer, path, probe_start, probe_end).await?;
    let Ok(range) = range else {
        return Ok(unsatisfiable(first.size));
    };
    let Ok(wanted) = range.resolve(first.size) else {
        return Ok(unsatisfiable(first.size));
    };
    let remote = if probe_start == wanted.start {
        first
    } else {
        node.read_remote(peer, path, wanted.start, Some(wanted.end))
            .await?
    };
    let length = wanted.end - wanted.start;
    Ok((
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_TYPE, media_type),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", wanted.start, wanted.end - 1, remote.size),
            ),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        Body::from_stream(remote.body),
    )
        .into_response())
}
