//! `/api/auth/*`: first-run setup, login, logout, password change, and the session state.

use std::net::SocketAddr;

use super::extract::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{Auth, SessionInfo};

use super::types::{
    LoggedIn, LoggedInVia, LoggedOut, LoginRequest, PasswordChanged, PasswordRequest, SessionState,
    SetupDone, SetupRequest,
};
use super::*;

pub(super) fn is_https(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || text("origin").is_some_and(|o| o.starts_with("https://"))
}

/// `body` (which carries the session's CSRF token) with the session's cookie.
pub(super) fn session_response(
    auth: &Auth,
    session: &SessionInfo,
    headers: &HeaderMap,
    body: impl Serialize,
) -> Response {
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
) -> Json<SessionState> {
    let password_set = s.auth.password_set();
    let (logged_in, via, csrf) = match &caller {
        Caller::Token => (true, Some(LoggedInVia::Token), None),
        Caller::Session(session) => (true, Some(LoggedInVia::Session), Some(session.csrf.clone())),
        Caller::Anonymous => (false, None, None),
    };
    Json(SessionState {
        password_set,
        login_required: s.auth.login_required(),
        logged_in,
        via,
        csrf_token: csrf,
        // A server path is for the owner's tools (the token), not for whoever opens the page.
        setup_code_file: (!password_set && matches!(caller, Caller::Token))
            .then(|| s.auth.setup_code_path()),
    })
}

pub(super) async fn auth_setup(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SetupRequest>,
) -> Result<Response, ApiError> {
    let session = s
        .auth
        .setup(peer.ip(), &body.setup_code, &body.password)
        .await?;
    Ok(session_response(
        &s.auth,
        &session,
        &headers,
        SetupDone {
            csrf_token: session.csrf.clone(),
            password_set: true,
        },
    ))
}

pub(super) async fn auth_login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let session = s.auth.login(peer.ip(), &body.password).await?;
    Ok(session_response(
        &s.auth,
        &session,
        &headers,
        LoggedIn {
            csrf_token: session.csrf.clone(),
            logged_in: true,
        },
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
        Json(LoggedOut { logged_out: true }),
    )
        .into_response())
}

/// With the API token (`harddrive-party passwd`) the current password is not needed; a
/// session must give it. Every session ends; the caller's own is replaced by a new one.
pub(super) async fn auth_password(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Json(body): Json<PasswordRequest>,
) -> Result<Response, ApiError> {
    match caller {
        Caller::Token => {
            s.auth.set_password(&body.new_password).await?;
            Ok(Json(PasswordChanged {
                changed: true,
                csrf_token: None,
            })
            .into_response())
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
                PasswordChanged {
                    changed: true,
                    csrf_token: Some(session.csrf.clone()),
                },
            ))
        }
        Caller::Anonymous => Err(ApiError::LoginRequired),
    }
}
