//! `/api/auth/*`: first-run setup, login, logout, password change, and the session state.

use std::net::SocketAddr;

use super::extract::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Auth, SessionInfo};

use super::*;

pub(super) fn is_https(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || text("origin").is_some_and(|o| o.starts_with("https://"))
}

pub(super) fn session_response(
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

pub(super) async fn auth_session(
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
        // A server path is for the owner's tools (the token), not for whoever opens the page.
        "setup_code_file": (!password_set && matches!(caller, Caller::Token))
            .then(|| s.auth.setup_code_path()),
    }))
}

#[derive(Deserialize)]
pub(super) struct SetupBody {
    setup_code: String,
    password: String,
}

pub(super) async fn auth_setup(
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
pub(super) struct LoginBody {
    password: String,
}

pub(super) async fn auth_login(
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

pub(super) async fn auth_logout(
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
pub(super) struct PasswordBody {
    current_password: Option<String>,
    new_password: String,
}

/// With the API token (`harddrive-party passwd`) the current password is not needed; a
/// session must give it. Every session ends; the caller's own is replaced by a new one.
pub(super) async fn auth_password(
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
