//! The access rules every request passes: API token, Host and Origin, CSRF, sessions.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::*;
use crate::auth::HostError;

fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// What a person sees who typed a name this node does not know: the reason and the fix,
/// instead of a bare JSON 403. The name is theirs, escaped; nothing about the node is told.
fn refused_host_page(host: &str) -> Response {
    let host = html_escape(host);
    let page = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Unknown host name</title><body style=\"font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em\">\
         <h1>This address is not allowed</h1>\
         <p>harddrive-party answers only to the names it knows, so that no web page can reach it \
         through a name of its own (DNS rebinding). It does not know <b>{host}</b>.</p>\
         <p>Open it by its IP address or as <i>its-host-name</i>.local instead, or add the name \
         to <code>allowed_hosts</code> in the config file (or start it with \
         <code>--allowed-host {host}</code>, or set <code>HDP_ALLOWED_HOSTS</code>).</p>"
    );
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

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
            let browser = text(header::ACCEPT).is_some_and(|a| a.contains("text/html"));
            return match (&e, browser) {
                (HostError::HostNotAllowed(host), true) => refused_host_page(host),
                _ => ApiError::Forbidden(e.to_string()).into_response(),
            };
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
