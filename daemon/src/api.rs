//! The HTTP + WebSocket control API (documented in API.md), the embedded web UI, and
//! downloaded files under `/downloads/`. Access rules (API token, web UI sessions, CSRF,
//! Host/Origin checks) are applied by `guard`; the rules' state lives in `auth.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

use crate::auth::{Auth, AuthError, SessionInfo};

use crate::events::Event;
use crate::net::rpc::{self, RpcError};
use crate::node::{Node, NodeError};
use crate::shares::SharesError;
use crate::transfer::download::DownloadError;
use crate::transfer::rate::{AltMode, Limits, RateValue, Schedule};
use crate::transfer::upload::MAX_UPLOAD_SLOTS;
use crate::wire::{Entry, LsChunker, WireError};

pub const TOKEN_FILE: &str = "api-token";

#[derive(rust_embed::RustEmbed)]
#[folder = "../webui-dist/"]
struct WebUi;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("missing or wrong API token")]
    Unauthorized,
    #[error("log in first")]
    LoginRequired,
    #[error("{0}")]
    BadCredentials(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Throttled { message: String, retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PeerError(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized | ApiError::LoginRequired | ApiError::BadCredentials(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Throttled { retry_after, .. } => {
                let body = Json(json!({ "error": self.to_string() }));
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry_after.to_string())],
                    body,
                )
                    .into_response();
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PeerError(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::WrongPassword => ApiError::BadCredentials(e.to_string()),
            AuthError::WrongSetupCode
            | AuthError::HostNotAllowed(_)
            | AuthError::OriginNotAllowed(_)
            | AuthError::MissingHost => ApiError::Forbidden(e.to_string()),
            AuthError::AlreadySet | AuthError::NotSet => ApiError::Conflict(e.to_string()),
            AuthError::Throttled(secs) => ApiError::Throttled {
                message: e.to_string(),
                retry_after: secs,
            },
            AuthError::BadPassword | AuthError::Mismatch => ApiError::BadRequest(e.to_string()),
            AuthError::Hash(_)
            | AuthError::Store(_)
            | AuthError::Random(_)
            | AuthError::Io { .. }
            | AuthError::Read(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Announce(_)
            | NodeError::OwnAddress
            | NodeError::BadDownloadDir { .. }
            | NodeError::BadListen { .. } => ApiError::BadRequest(e.to_string()),
            NodeError::ListenSetAtStart(_) => ApiError::Conflict(e.to_string()),
            NodeError::NotConnected(_) => ApiError::NotFound(e.to_string()),
            NodeError::Unreachable { .. } | NodeError::WrongKey(_) => {
                ApiError::PeerError(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SharesError> for ApiError {
    fn from(e: SharesError) -> Self {
        match e {
            SharesError::BadDirectory { .. } | SharesError::AlreadyShared(_) => {
                ApiError::BadRequest(e.to_string())
            }
            SharesError::UnknownShare(_) => ApiError::NotFound(e.to_string()),
            SharesError::Store(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<DownloadError> for ApiError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::Unknown(_) => ApiError::NotFound(e.to_string()),
            DownloadError::Store(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<RpcError> for ApiError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Refused(WireError::NotFound) => ApiError::NotFound(e.to_string()),
            RpcError::Refused(WireError::Forbidden | WireError::BadRequest(_)) => {
                ApiError::BadRequest(e.to_string())
            }
            other => ApiError::PeerError(other.to_string()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    node: Arc<Node>,
    token: Arc<str>,
    auth: Arc<Auth>,
}

/// Who made a request, as found by `guard` and handed to handlers as an extension.
#[derive(Clone)]
enum Caller {
    /// `Authorization: Bearer <api-token>` (the CLI).
    Token,
    /// A web UI session cookie.
    Session(SessionInfo),
    Anonymous,
}

/// Creates `<storage>/api-token` (mode 0600) on first start and returns it.
pub fn load_or_create_token(
    storage: &std::path::Path,
) -> Result<String, crate::identity::IdentityError> {
    let path = storage.join(TOKEN_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if existing.len() >= 32 {
            return Ok(existing);
        }
    }
    let token: String = crate::identity::random_bytes::<24>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    crate::identity::write_private_file(&path, token.as_bytes())
        .map_err(|source| crate::identity::IdentityError::Write { path, source })?;
    Ok(token)
}

/// Content types worth gzipping: JSON, text, scripts, SVG. File bodies (`/api/read`,
/// `/downloads/`) are left alone: they are rarely compressible and may be ranged.
fn compressible(
    _: StatusCode,
    _: axum::http::Version,
    headers: &HeaderMap,
    _: &axum::http::Extensions,
) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    [
        "application/json",
        "text/",
        "application/javascript",
        "image/svg+xml",
        "application/manifest+json",
    ]
    .iter()
    .any(|p| ct.starts_with(p))
}

pub fn router(node: Arc<Node>, token: String, auth: Arc<Auth>) -> Router {
    let state = AppState {
        node,
        token: token.into(),
        auth,
    };
    let compress = CompressionLayer::new().compress_when(compressible);
    let api = Router::new()
        .route("/info", get(info))
        .route("/peers", get(peers))
        .route("/connect", post(connect))
        .route("/disconnect", post(disconnect))
        .route("/shares", get(list_shares).post(add_share))
        .route("/shares/{name}", axum::routing::delete(remove_share))
        .route("/rescan", post(rescan))
        .route("/index", get(own_index))
        .route("/ls", get(remote_ls))
        .route("/downloads", post(download))
        .route("/transfers", get(transfers))
        .route("/transfers/{id}", get(transfer).delete(cancel_transfer))
        .route("/transfers/{id}/pause", post(pause_transfer))
        .route("/transfers/{id}/resume", post(resume_transfer))
        .route("/transfers/{id}/move", post(move_transfer))
        .route("/read", get(read))
        .route("/stop", post(stop))
        .route("/settings", get(settings).post(change_settings))
        .route("/qr", get(qr))
        .route("/auth/session", get(auth_session))
        .route("/auth/setup", post(auth_setup))
        .route("/auth/login", post(auth_login))
        .route("/auth/logout", post(auth_logout))
        .route("/auth/password", post(auth_password))
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
        .layer(compress.clone());
    let downloads = Router::new()
        .route("/downloads/{*path}", get(downloaded_file))
        .layer(middleware::map_response(contain_downloaded_files));
    Router::new()
        .nest("/api", api)
        .route("/ws", get(ws))
        .merge(downloads)
        .fallback(get(web_ui).layer(compress))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn is_protected(path: &str) -> bool {
    let api = (path == "/api" || path.starts_with("/api/")) && !path.starts_with("/api/auth/");
    api || path == "/ws" || path == "/downloads" || path.starts_with("/downloads/")
}

/// Every request passes here. In order: a valid API token is let through (the CLI); the
/// Host and Origin headers must name this node (DNS rebinding, cross-site WebSockets); a
/// session's state-changing request must carry its CSRF token; then `/api` (except
/// `/api/auth/`), `/ws` and `/downloads` need a session, except reads on loopback while no
/// password is set. The UI's own files and `/api/auth/*` are open.
async fn guard(State(s): State<AppState>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = text(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    let token_ok =
        bearer.is_some_and(|p| crate::auth::constant_time_eq(p.as_bytes(), s.token.as_bytes()));
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let path = request.uri().path();
    let caller = if token_ok {
        Caller::Token
    } else {
        if let Err(e) = s.auth.hosts.check(text(header::HOST), text(header::ORIGIN)) {
            return ApiError::from(e).into_response();
        }
        match s.auth.session(text(header::COOKIE)) {
            Some(session) => {
                let presented = text(header::HeaderName::from_static("x-csrf-token"));
                let csrf_ok = presented.is_some_and(|p| {
                    crate::auth::constant_time_eq(p.as_bytes(), session.csrf.as_bytes())
                });
                if !safe && !csrf_ok {
                    return ApiError::Forbidden(
                        "missing or wrong CSRF token (X-CSRF-Token header)".into(),
                    )
                    .into_response();
                }
                Caller::Session(session)
            }
            None => Caller::Anonymous,
        }
    };
    if matches!(caller, Caller::Anonymous) && is_protected(path) {
        let open_read = safe && !s.auth.login_required();
        if !open_read {
            let legacy = !s.auth.password_set() && s.auth.loopback();
            return if bearer.is_some() || (legacy && !safe) {
                ApiError::Unauthorized.into_response()
            } else {
                ApiError::LoginRequired.into_response()
            };
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// `/downloads/<peer>/<path>` from the download folder in force now (it can change live).
async fn downloaded_file(State(s): State<AppState>, mut request: Request) -> Response {
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
async fn contain_downloaded_files(mut response: Response) -> Response {
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

fn is_https(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || text("origin").is_some_and(|o| o.starts_with("https://"))
}

fn session_response(
    auth: &Auth,
    session: &SessionInfo,
    headers: &HeaderMap,
    mut body: serde_json::Value,
) -> Response {
    body["csrf_token"] = json!(session.csrf);
    (
        [(
            header::SET_COOKIE,
            auth.set_cookie(Some(session), is_https(headers)),
        )],
        Json(body),
    )
        .into_response()
}

async fn auth_session(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> impl IntoResponse {
    let password_set = s.auth.password_set();
    let (logged_in, via, csrf) = match &caller {
        Caller::Token => (true, Some("token"), None),
        Caller::Session(session) => (true, Some("session"), Some(session.csrf.clone())),
        Caller::Anonymous => (false, None, None),
    };
    Json(json!({
        "password_set": password_set,
        "login_required": s.auth.login_required(),
        "logged_in": logged_in,
        "via": via,
        "csrf_token": csrf,
        "setup_code_file": (!password_set).then(|| s.auth.setup_code_path()),
    }))
}

#[derive(Deserialize)]
struct SetupBody {
    setup_code: String,
    password: String,
}

async fn auth_setup(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SetupBody>,
) -> Result<Response, ApiError> {
    let session = s
        .auth
        .setup(peer.ip(), &body.setup_code, &body.password)
        .await?;
    Ok(session_response(
        &s.auth,
        &session,
        &headers,
        json!({ "password_set": true }),
    ))
}

#[derive(Deserialize)]
struct LoginBody {
    password: String,
}

async fn auth_login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let session = s.auth.login(peer.ip(), &body.password).await?;
    Ok(session_response(
        &s.auth,
        &session,
        &headers,
        json!({ "logged_in": true }),
    ))
}

async fn auth_logout(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Caller::Session(session) = &caller {
        s.auth.logout(session)?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            s.auth.set_cookie(None, is_https(&headers)),
        )],
        Json(json!({ "logged_out": true })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: Option<String>,
    new_password: String,
}

/// With the API token (`harddrive-party passwd`) the current password is not needed; a
/// session must give it. Every session ends; the caller's own is replaced by a new one.
async fn auth_password(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<PasswordBody>,
) -> Result<Response, ApiError> {
    match caller {
        Caller::Token => {
            s.auth.set_password(&body.new_password).await?;
            Ok(Json(json!({ "changed": true })).into_response())
        }
        Caller::Session(_) => {
            let current = body
                .current_password
                .ok_or_else(|| ApiError::BadRequest("give current_password".into()))?;
            s.auth.check_password(peer.ip(), &current).await?;
            s.auth.set_password(&body.new_password).await?;
            let session = s.auth.new_session()?;
            Ok(session_response(
                &s.auth,
                &session,
                &headers,
                json!({ "changed": true }),
            ))
        }
        Caller::Anonymous => Err(ApiError::LoginRequired),
    }
}

/// The announce address as a QR code (SVG), so the UI needs no QR library.
async fn qr(State(s): State<AppState>) -> Result<Response, ApiError> {
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

async fn info(State(s): State<AppState>) -> Json<serde_json::Value> {
    let n = &s.node;
    let nat = n.nat_status();
    Json(json!({
        "name": n.identity.name,
        "announce_address": n.announce_address(),
        "public_key": n.identity.public_key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "listen_address": n.listen_address().map(|a| a.to_string()),
        "nat_type": nat.nat_type,
        "public_address": nat.public_address.map(|a| a.to_string()),
        "online": nat.online,
        "port_mapping": n.port_mapping(),
        "version": env!("CARGO_PKG_VERSION"),
        "download_dir": n.download_dir(),
        "storage": n.storage,
        "peers_connected": n.peers.all().len(),
        "problems": n.problems(),
        "hashing": {
            "active": n.hashing.load(std::sync::atomic::Ordering::Relaxed),
            "hashed_files": n.hashed_files.load(std::sync::atomic::Ordering::Relaxed),
        },
    }))
}

async fn peers(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.node.peer_views())
}

#[derive(Deserialize)]
struct ConnectBody {
    announce_address: String,
}

async fn connect(
    State(s): State<AppState>,
    Json(body): Json<ConnectBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = s.node.connect(&body.announce_address).await?;
    Ok(Json(json!({ "name": name })))
}

#[derive(Deserialize)]
struct PeerBody {
    peer: String,
}

async fn disconnect(
    State(s): State<AppState>,
    Json(body): Json<PeerBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.disconnect(&body.peer)?;
    Ok(Json(json!({ "disconnected": body.peer })))
}

async fn list_shares(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.node.shares.list()?))
}

#[derive(Deserialize)]
struct AddShareBody {
    dir: std::path::PathBuf,
}

async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(Into::into)
}

async fn add_share(
    State(s): State<AppState>,
    Json(body): Json<AddShareBody>,
) -> Result<impl IntoResponse, ApiError> {
    let shares = s.node.shares.clone();
    let (name, stats) = blocking(move || shares.add(&body.dir)).await?;
    let _ = s.node.events.send(Event::SharesChanged);
    Ok(Json(json!({ "name": name, "files": stats.files })))
}

async fn remove_share(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.shares.remove(&name)?;
    let _ = s.node.events.send(Event::SharesChanged);
    Ok(Json(json!({ "removed": name })))
}

async fn rescan(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let shares = s.node.shares.clone();
    let stats = blocking(move || shares.rescan_all()).await?;
    let _ = s.node.events.send(Event::SharesChanged);
    Ok(Json(stats))
}

#[derive(Deserialize)]
struct LsQuery {
    #[serde(default)]
    path: String,
    searchterm: Option<String>,
    recursive: Option<bool>,
}

type Chunk = Result<Vec<Entry>, String>;

/// Streams chunks as one JSON array, so huge listings are never held whole. A listing cut
/// short mid-stream ends with an error object after the array, so it cannot pass as complete.
fn json_array_response(mut rx: mpsc::Receiver<Chunk>) -> Response {
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

async fn own_index(
    State(s): State<AppState>,
    Query(q): Query<LsQuery>,
) -> Result<Response, ApiError> {
    let shares = s.node.shares.clone();
    // Check the path first so a bad one is a clean 4xx rather than an error inside a 200 stream.
    shares
        .ls(&q.path, None, false, |_| false)
        .map_err(|e| match e {
            WireError::NotFound => ApiError::NotFound(format!("{}: {e}", q.path)),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    tokio::task::spawn_blocking(move || {
        let mut chunker = LsChunker::default();
        let mut open = true;
        let result = shares.ls(
            &q.path,
            q.searchterm.as_deref(),
            q.recursive.unwrap_or(true),
            |entry| {
                if let Some(chunk) = chunker.push(entry) {
                    open = tx.blocking_send(Ok(chunk)).is_ok();
                }
                open
            },
        );
        let _ = tx.blocking_send(Ok(chunker.take()));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e.to_string()));
        }
    });
    Ok(json_array_response(rx))
}

/// `peer/path` split into the peer name and the path on that peer.
fn split_peer_path(full: &str) -> Result<(String, String), ApiError> {
    let trimmed = full.trim_matches('/');
    let (peer, path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if peer.is_empty() {
        return Err(ApiError::BadRequest("expected peer/path".into()));
    }
    Ok((peer.to_string(), path.to_string()))
}

fn prefixed(peer: &str, entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|e| Entry {
            path: format!("{peer}/{}", e.path),
            ..e
        })
        .collect()
}

/// Lists a remote peer's files (`path` = `peer/dir`), or the top level of every connected
/// peer when no path is given. Paths in the answer start with the peer's name.
async fn remote_ls(
    State(s): State<AppState>,
    Query(q): Query<LsQuery>,
) -> Result<Response, ApiError> {
    let recursive = q.recursive.unwrap_or(true);
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    if q.path.trim_matches('/').is_empty() {
        let peers = s.node.peers.all();
        tokio::spawn(async move {
            for peer in peers {
                let result = async {
                    let mut listing =
                        rpc::ls(&peer.connection, "", q.searchterm.clone(), recursive).await?;
                    while let Some(entries) = listing.next().await? {
                        if tx.send(Ok(prefixed(&peer.name, entries))).await.is_err() {
                            break;
                        }
                    }
                    Ok::<(), RpcError>(())
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(format!("{}: {e}", peer.name))).await;
                }
            }
        });
        return Ok(json_array_response(rx));
    }
    let (peer_name, path) = split_peer_path(&q.path)?;
    let peer = s
        .node
        .peers
        .get(&peer_name)
        .ok_or_else(|| ApiError::Unavailable(format!("peer {peer_name} is not connected")))?;
    let mut listing = rpc::ls(&peer.connection, &path, q.searchterm, recursive).await?;
    // The first chunk decides the status code; the rest streams.
    let first = listing.next().await?;
    tokio::spawn(async move {
        let Some(first) = first else { return };
        if tx.send(Ok(prefixed(&peer_name, first))).await.is_err() {
            return;
        }
        loop {
            match listing.next().await {
                Ok(Some(entries)) => {
                    if tx.send(Ok(prefixed(&peer_name, entries))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    return;
                }
            }
        }
    });
    Ok(json_array_response(rx))
}

#[derive(Deserialize)]
struct DownloadBody {
    /// `peer/path`
    path: String,
}

async fn download(
    State(s): State<AppState>,
    Json(body): Json<DownloadBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (peer, path) = split_peer_path(&body.path)?;
    if path.is_empty() {
        return Err(ApiError::BadRequest(
            "give a path on the peer: peer/path".into(),
        ));
    }
    crate::shares::split_request_path(&path).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let id = s.node.downloads.add(&peer, &path)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

async fn transfers(State(s): State<AppState>) -> impl IntoResponse {
    let mut all = s.node.downloads.views();
    all.extend(s.node.uploads.views());
    Json(all)
}

async fn transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node
        .downloads
        .view(id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no download with id {id}")))
}

async fn pause_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads.pause(id)?;
    Ok(Json(json!({ "paused": id })))
}

async fn resume_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads.resume(id)?;
    Ok(Json(json!({ "resumed": id })))
}

#[derive(Deserialize)]
struct MoveBody {
    /// New queue position, 0 = first.
    position: usize,
}

async fn move_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Json(body): Json<MoveBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads.move_to(id, body.position)?;
    Ok(Json(json!({ "moved": id, "position": body.position })))
}

async fn cancel_transfer(
    State(s): State<AppState>,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    s.node.downloads.cancel(id)?;
    Ok(Json(json!({ "cancelled": id })))
}

#[derive(Deserialize)]
struct ReadQuery {
    path: String,
    #[serde(default)]
    start: u64,
    end: Option<u64>,
}

/// Streams a remote file (or a range of it) as raw bytes.
async fn read(State(s): State<AppState>, Query(q): Query<ReadQuery>) -> Result<Response, ApiError> {
    let (peer_name, path) = split_peer_path(&q.path)?;
    if q.end.is_some_and(|end| end < q.start) {
        return Err(ApiError::BadRequest("end is before start".into()));
    }
    let peer = s
        .node
        .peers
        .get(&peer_name)
        .ok_or_else(|| ApiError::Unavailable(format!("peer {peer_name} is not connected")))?;
    let (size, _mtime, recv) = rpc::read(&peer.connection, &path, q.start, q.end).await?;
    let length = q.end.unwrap_or(size).min(size).saturating_sub(q.start);
    let stream = futures_util::stream::unfold(Some(recv), |recv| async move {
        let mut recv = recv?;
        match recv.read_chunk(1 << 20, true).await {
            Ok(Some(chunk)) => Some((Ok::<Bytes, std::io::Error>(chunk.bytes), Some(recv))),
            Ok(None) => None,
            // Aborts the response: a short body must not look like a whole file.
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn settings(State(s): State<AppState>) -> impl IntoResponse {
    settings_view(&s.node)
}

fn settings_view(node: &Node) -> Json<serde_json::Value> {
    let slots = node.upload_limits();
    let current = node.listen_address();
    let saved = node.saved_listen().or(current);
    Json(json!({
        "limits": node.limits(),
        "alt_speed": node.alt_speed(),
        "alt_speed_active": node.alt_speed_active(),
        "effective_limits": node.rate.limits(),
        "download_dir": node.download_dir(),
        "max_uploads": slots.total,
        "max_uploads_per_peer": slots.per_peer,
        "listen": {
            "current": current.map(|a| a.to_string()),
            "saved": saved.map(|a| a.to_string()),
            "restart_needed": saved != current,
        },
        "set_at_start": node.set_at_start,
    }))
}

/// Distinguishes a field that is absent (keep) from one that is null (clear).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    upload_limit: Option<RateValue>,
    download_limit: Option<RateValue>,
    peer_upload_limit: Option<RateValue>,
    peer_download_limit: Option<RateValue>,
    alt_upload_limit: Option<RateValue>,
    alt_download_limit: Option<RateValue>,
    alt_peer_upload_limit: Option<RateValue>,
    alt_peer_download_limit: Option<RateValue>,
    /// `{"days": [0..6], "from": "HH:MM", "to": "HH:MM"}`, or null to remove the schedule.
    #[serde(default, deserialize_with = "present")]
    alt_schedule: Option<serde_json::Value>,
    alt_mode: Option<AltMode>,
    /// Absolute path; created if missing.
    download_dir: Option<std::path::PathBuf>,
    max_uploads: Option<usize>,
    max_uploads_per_peer: Option<usize>,
    /// `IP:PORT` for peer connections, used from the next start.
    listen: Option<SocketAddr>,
}

fn apply_rates(
    limits: &mut Limits,
    fields: [(&Option<RateValue>, &str); 4],
) -> Result<(), ApiError> {
    let slots = [
        &mut limits.upload,
        &mut limits.download,
        &mut limits.peer_upload,
        &mut limits.peer_download,
    ];
    for ((value, name), slot) in fields.into_iter().zip(slots) {
        if let Some(value) = value {
            *slot = value
                .bytes()
                .map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))?;
        }
    }
    Ok(())
}

/// Changes the given settings live; fields left out keep their value.
async fn change_settings(
    State(s): State<AppState>,
    Json(body): Json<SettingsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let mut limits = s.node.limits();
    apply_rates(
        &mut limits,
        [
            (&body.upload_limit, "upload_limit"),
            (&body.download_limit, "download_limit"),
            (&body.peer_upload_limit, "peer_upload_limit"),
            (&body.peer_download_limit, "peer_download_limit"),
        ],
    )?;
    let mut alt = s.node.alt_speed();
    apply_rates(
        &mut alt.limits,
        [
            (&body.alt_upload_limit, "alt_upload_limit"),
            (&body.alt_download_limit, "alt_download_limit"),
            (&body.alt_peer_upload_limit, "alt_peer_upload_limit"),
            (&body.alt_peer_download_limit, "alt_peer_download_limit"),
        ],
    )?;
    if let Some(schedule) = body.alt_schedule {
        alt.schedule = match schedule {
            serde_json::Value::Null => None,
            value => {
                let schedule: Schedule = serde_json::from_value(value)
                    .map_err(|e| ApiError::BadRequest(format!("alt_schedule: {e}")))?;
                schedule
                    .validate()
                    .map_err(|e| ApiError::BadRequest(format!("alt_schedule: {e}")))?;
                Some(schedule)
            }
        };
    }
    if let Some(mode) = body.alt_mode {
        alt.mode = mode;
    }
    let mut slots = s.node.upload_limits();
    for (value, slot, name) in [
        (body.max_uploads, &mut slots.total, "max_uploads"),
        (
            body.max_uploads_per_peer,
            &mut slots.per_peer,
            "max_uploads_per_peer",
        ),
    ] {
        if let Some(n) = value {
            if !(1..=MAX_UPLOAD_SLOTS).contains(&n) {
                return Err(ApiError::BadRequest(format!(
                    "{name}: give a number of upload slots from 1 to {MAX_UPLOAD_SLOTS}"
                )));
            }
            *slot = n;
        }
    }
    // Everything that can be refused is checked before the first change, so a refused
    // request changes nothing (short of a storage error).
    if let Some(listen) = body.listen {
        s.node.check_listen(listen)?;
    }
    if let Some(dir) = &body.download_dir {
        s.node.set_download_dir(dir)?;
    }
    if let Some(listen) = body.listen {
        s.node.set_listen(listen)?;
    }
    let internal = |e: crate::store::StoreError| ApiError::Internal(e.to_string());
    if body.max_uploads.is_some() || body.max_uploads_per_peer.is_some() {
        s.node.set_upload_limits(slots).map_err(internal)?;
    }
    s.node.set_limits(limits).map_err(internal)?;
    s.node.set_alt_speed(alt).map_err(internal)?;
    Ok(settings_view(&s.node))
}

async fn stop(State(s): State<AppState>) -> impl IntoResponse {
    s.node.request_shutdown();
    Json(json!({ "stopping": true }))
}

async fn ws(State(s): State<AppState>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| forward_events(socket, s.node.events.subscribe()))
}

async fn forward_events(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let Ok(text) = serde_json::to_string(&event) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A slow client misses progress ticks rather than stalling the daemon.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

const UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded UI. Files are revalidated by ETag (their names carry no version, so a
/// long max-age would keep an old UI after an upgrade); icons may be cached for a day.
async fn web_ui(uri: axum::http::Uri, headers: HeaderMap) -> Response {
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

pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
}
