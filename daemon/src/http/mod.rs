//! The HTTP + WebSocket control API (documented in API.md), the embedded web UI, and
//! downloaded files under `/downloads/`, one file per group of handlers. Access rules (API
//! token, web UI sessions, CSRF, Host/Origin checks) are applied by `guard`; the rules'
//! state lives in `auth.rs`.
//! **Architecture invariant:** no business logic here: handlers parse the request, call a
//! `Node` facade and translate the result.

mod browse;
mod downloaded;
mod error;
mod events;
mod extract;
mod guard;
mod info;
mod invites;
mod peers;
mod session;
mod settings;
mod shares;
mod transfers;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware::{self};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{Auth, SessionInfo};
use crate::node::Node;

pub use error::ApiError;

pub const TOKEN_FILE: &str = "api-token";

#[derive(Clone)]
struct AppState {
    node: Arc<Node>,
    token: Arc<str>,
    auth: Arc<Auth>,
    /// One permit per open `/ws` client (`events::MAX_WS_CLIENTS`).
    ws_clients: Arc<tokio::sync::Semaphore>,
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

pub fn router(node: Arc<Node>, token: String, auth: Arc<Auth>) -> Router {
    let state = AppState {
        node,
        token: token.into(),
        auth,
        ws_clients: Arc::new(tokio::sync::Semaphore::new(events::MAX_WS_CLIENTS)),
    };
    let api = Router::new()
        .route("/info", get(info::info))
        .route("/peers", get(peers::peers))
        .route("/connect", post(peers::connect))
        .route("/disconnect", post(peers::disconnect))
        .route("/peers/approve", post(peers::approve))
        .route("/peers/block", post(peers::block))
        .route("/peers/unblock", post(peers::unblock))
        .route("/peers/forget", post(peers::forget))
        .route("/peers/rename", post(peers::rename))
        .route("/shares", get(shares::list_shares).post(shares::add_share))
        .route(
            "/shares/{name}",
            axum::routing::delete(shares::remove_share),
        )
        .route("/shares/{name}/access", post(shares::set_access))
        .route(
            "/invites",
            get(invites::list_invites).post(invites::create_invite),
        )
        .route(
            "/invites/{id}",
            axum::routing::delete(invites::revoke_invite),
        )
        .route("/rescan", post(shares::rescan))
        .route("/index", get(browse::own_index))
        .route("/ls", get(browse::remote_ls))
        .route("/downloads", post(transfers::download))
        .route("/transfers", get(transfers::transfers))
        .route("/transfers/clear-finished", post(transfers::clear_finished))
        .route(
            "/transfers/{id}",
            get(transfers::transfer).delete(transfers::cancel_transfer),
        )
        .route("/transfers/{id}/pause", post(transfers::pause_transfer))
        .route("/transfers/{id}/resume", post(transfers::resume_transfer))
        .route("/transfers/{id}/move", post(transfers::move_transfer))
        .route("/read", get(browse::read))
        .route("/library", get(downloaded::library))
        .route("/library/delete", post(downloaded::delete))
        .route("/stop", post(settings::stop))
        .route(
            "/settings",
            get(settings::settings).post(settings::change_settings),
        )
        .route("/qr", get(info::qr))
        .route("/auth/session", get(session::auth_session))
        .route("/auth/setup", post(session::auth_setup))
        .route("/auth/login", post(session::auth_login))
        .route("/auth/logout", post(session::auth_logout))
        .route("/auth/password", post(session::auth_password))
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) });
    let downloads = Router::new()
        .route("/downloads/{*path}", get(downloaded::downloaded_file))
        .route("/library", get(downloaded::library_file))
        .layer(middleware::map_response(
            downloaded::contain_downloaded_files,
        ));
    Router::new()
        .nest("/api", api)
        .route("/ws", get(events::ws))
        .merge(downloads)
        .fallback(get(ui::web_ui))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state)
}

/// HTTP connections served at once; more wait in the kernel's accept queue. Each costs a
/// task and its buffers, so a flood of half-sent requests must not grow without bound.
pub const MAX_HTTP_CONNECTIONS: usize = 64;
/// A request's headers must arrive this long after the connection opened or the previous
/// response; a client that sends them slowly (or not at all) is disconnected.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` until `shutdown`, then lets requests in flight finish. Every connection
/// holds one of `MAX_HTTP_CONNECTIONS` until it closes or is upgraded (WebSocket clients
/// are capped apart, by `events::MAX_WS_CLIENTS`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_service::Service;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = async {
                let slot = slots.clone().acquire_owned().await;
                (slot, listener.accept().await)
            } => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, client) = match accepted {
            (Ok(slot), Ok((stream, client))) => ((stream, slot), client),
            (_, Err(e)) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            (Err(_), _) => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(client));
                // A router is always ready: no `poll_ready` needed before `call`.
                router.clone().call(request.map(axum::body::Body::new))
            },
        );
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let (stream, _slot) = stream;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}
