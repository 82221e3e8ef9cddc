//! The API's errors: one status code and `{"error": message}` body each, and the mapping
//! from every domain error.

use super::extract::Json;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::node::NodeError;
use crate::shares::SharesError;
use crate::transfer::download::DownloadError;
use crate::wire::WireError;

use crate::net::rpc::RpcError;

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
            AuthError::WrongSetupCode | AuthError::Host(_) => ApiError::Forbidden(e.to_string()),
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
            | NodeError::BadListen { .. }
            | NodeError::BadNickname
            | NodeError::Access(_)
            | NodeError::InviteRequest(_)
            | NodeError::InviteCode(_) => ApiError::BadRequest(e.to_string()),
            NodeError::Shares(e) => e.into(),
            NodeError::ListenSetAtStart(_) | NodeError::Blocked(_) | NodeError::NotBlocked(_) => {
                ApiError::Conflict(e.to_string())
            }
            NodeError::NotConnected(_)
            | NodeError::UnknownPeer(_)
            | NodeError::UnknownInvite(_) => ApiError::NotFound(e.to_string()),
            NodeError::Unreachable { .. }
            | NodeError::WrongKey(_)
            | NodeError::InviteRefused(_) => ApiError::PeerError(e.to_string()),
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
            SharesError::Store(_) | SharesError::Task(_) => ApiError::Internal(e.to_string()),
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

impl From<crate::node::RemoteError> for ApiError {
    fn from(e: crate::node::RemoteError) -> Self {
        match e {
            crate::node::RemoteError::NotConnected(_) => ApiError::Unavailable(e.to_string()),
            crate::node::RemoteError::Rpc(rpc) => rpc.into(),
        }
    }
}

impl From<crate::node::SettingsError> for ApiError {
    fn from(e: crate::node::SettingsError) -> Self {
        match e {
            crate::node::SettingsError::Invalid(message) => ApiError::BadRequest(message),
            crate::node::SettingsError::Node(e) => e.into(),
            crate::node::SettingsError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::node::QueueError> for ApiError {
    fn from(e: crate::node::QueueError) -> Self {
        use crate::node::QueueError;
        match e {
            QueueError::NoPath | QueueError::UnsafePath(_) | QueueError::NotAFolderHere(_) => {
                ApiError::BadRequest(e.to_string())
            }
            QueueError::UnknownPeer(_) => ApiError::NotFound(e.to_string()),
            QueueError::Download(e) => e.into(),
        }
    }
}
