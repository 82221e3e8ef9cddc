//! The access rules every request passes: API token, Host and Origin, CSRF, sessions.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::*;

pub(super) fn is_protected(path: &str) -> bool {
    let api = (path == "/api" || path.starts_with("/api/")) && !path.starts_with("/api/auth/");
    api || path == "/ws" || path == "/downloads" || path.starts_with("/downloads/")
}

/// Every request passes here. In order: a valid API token is let through (the CLI); the
/// Host and Origin headers must name this node (DNS rebinding, cross-site WebSockets); a
/// session's state-changing request must carry its CSRF token; then `/api` (except
/// `/api/auth/`), `/ws` and `/downloads` need a session, except reads on loopback while no
/// password is set. The UI's own files and `/api/auth/*` are open.
pub(super) async fn guard(State(s): State<AppState>, mut request: Request, next: Next) -> Response {
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
            return ApiError::Forbidden(e.to_string()).into_response();
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
