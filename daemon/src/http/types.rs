//! Every JSON body of the API, request and response, in one place: the handlers in `http/`
//! deserialize the requests and serialize the responses, and the CLI (`cli/`) serializes
//! the same requests and deserializes the same responses. A renamed or retyped field is
//! therefore a compile error on both sides, never a silent `null`. API.md documents each.
//!
//! Where a facade already returns a view (`Info`, `PeerView`, `TransferView`, ...), that
//! view *is* the response type and is re-exported here rather than copied.
//!
//! Rules for these types, so the wire stays what API.md documents and the web UI reads:
//! * field names and enum spellings are the JSON's; an `Option` is `null` when empty
//!   unless it says `skip_serializing_if`;
//! * responses never `deny_unknown_fields`: an older CLI must read a newer daemon's
//!   answers, which may carry more fields;
//! * requests do not refuse unknown fields either, except `SettingsChange` (a typo in a
//!   setting's name must not pass silently).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::node::{Info, InviteView, PeerView, SettingsChange, SettingsView, ShareView};
pub use crate::shares::ScanStats;
pub use crate::transfer::{
    ActiveFile, Direction, FailedFile, SourceView, TransferState, TransferView,
};
pub use crate::wire::Entry;
pub use harddrive_party_core::peer_policy::ShareAccess;

/// Every error answer, and the trailer after a listing cut short (API.md, "Requests and
/// responses" and "Cut-short listings").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The body of a POST that takes none: `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Empty {}

// ---- peers ----

/// `POST /api/connect`: an announce address or an invite code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectRequest {
    pub announce_address: String,
}

/// Answer of `POST /api/connect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connected {
    pub name: String,
}

/// `POST /api/disconnect` and `/api/peers/{approve,block,unblock,forget}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRequest {
    pub peer: String,
}

/// `POST /api/peers/rename`; `""` clears the nickname.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameRequest {
    pub peer: String,
    pub nickname: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disconnected {
    pub disconnected: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approved {
    pub approved: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    pub blocked: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unblocked {
    pub unblocked: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forgotten {
    pub forgotten: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renamed {
    pub renamed: String,
}

// ---- shares and invites ----

/// `POST /api/shares`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddShareRequest {
    pub dir: PathBuf,
}

/// Answer of `POST /api/shares`: the name given and the files indexed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareAdded {
    pub name: String,
    pub files: u64,
}

/// Answer of `DELETE /api/shares/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareRemoved {
    pub removed: String,
}

/// `POST /api/shares/{name}/access`; answered with the new [`ShareAccess`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessRequest {
    pub all_friends: bool,
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `POST /api/invites`: every field optional (`null` is the default).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateInviteRequest {
    pub expires_secs: Option<u64>,
    pub uses: Option<u32>,
    /// Absent, `null` or empty: the joiner sees what every friend sees.
    pub shares: Option<Vec<String>>,
}

/// Answer of `POST /api/invites`: the invite with its code, and the code as a QR image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteCreated {
    #[serde(flatten)]
    pub invite: InviteView,
    pub qr_svg: String,
}

/// Answer of `DELETE /api/invites/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteRevoked {
    pub revoked: String,
}

// ---- listings and reads ----

/// The query of `GET /api/index` and `GET /api/ls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListQuery {
    /// `/api/index`: `share/dir`; `/api/ls`: `peer/path`; empty: the top.
    #[serde(default)]
    pub path: String,
    pub searchterm: Option<String>,
    /// Default `true`.
    pub recursive: Option<bool>,
}

/// The query of `GET /api/read`: `peer/path` and an optional byte range `[start, end)`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadQuery {
    pub path: String,
    #[serde(default)]
    pub start: u64,
    pub end: Option<u64>,
}

// ---- transfers ----

/// `POST /api/downloads`: `peer/path`, a file or a directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadRequest {
    pub path: String,
}

/// Answer of `POST /api/downloads` (202): the download's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadQueued {
    pub id: u64,
}

/// `POST /api/transfers/{id}/move`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveRequest {
    /// New queue position, 0 = first.
    pub position: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paused {
    pub paused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resumed {
    pub resumed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Moved {
    pub moved: u64,
    pub position: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cancelled {
    pub cancelled: u64,
}

/// Answer of `POST /api/transfers/clear-finished`: how many rows went of each kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishedCleared {
    pub cleared_downloads: usize,
    pub cleared_uploads: usize,
}

/// Answer of `POST /api/stop`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

// ---- web UI sessions (`/api/auth/*`) ----

/// How a caller is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoggedInVia {
    /// The API token (the CLI).
    Token,
    /// A web UI session cookie.
    Session,
}

/// `GET /api/auth/session`. Fields in the order the daemon always sent them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionState {
    pub csrf_token: Option<String>,
    pub logged_in: bool,
    pub login_required: bool,
    pub password_set: bool,
    /// Only for the token and before a password is set: a server path is for the owner.
    pub setup_code_file: Option<PathBuf>,
    pub via: Option<LoggedInVia>,
}

/// `POST /api/auth/setup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupRequest {
    pub setup_code: String,
    pub password: String,
}

/// Answer of `POST /api/auth/setup` (with the session cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupDone {
    pub csrf_token: String,
    pub password_set: bool,
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub password: String,
}

/// Answer of `POST /api/auth/login` (with the session cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedIn {
    pub csrf_token: String,
    pub logged_in: bool,
}

/// Answer of `POST /api/auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedOut {
    pub logged_out: bool,
}

/// `POST /api/auth/password`: with the API token `current_password` is not needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    pub new_password: String,
}

/// Answer of `POST /api/auth/password`; a session also gets its new CSRF token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordChanged {
    pub changed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn small_answers_are_the_documented_objects() {
        let error = ErrorBody {
            error: "no such API endpoint".into(),
        };
        assert_eq!(text(&error), r#"{"error":"no such API endpoint"}"#);
        assert_eq!(text(&Empty {}), "{}");
        let moved = Moved {
            moved: 7,
            position: 0,
        };
        assert_eq!(text(&moved), r#"{"moved":7,"position":0}"#);
        assert_eq!(text(&DownloadQueued { id: 3 }), r#"{"id":3}"#);
        assert_eq!(text(&Stopping { stopping: true }), r#"{"stopping":true}"#);
        let token = PasswordChanged {
            changed: true,
            csrf_token: None,
        };
        assert_eq!(text(&token), r#"{"changed":true}"#);
    }

    /// The session answers keep the bytes the `json!` literals made (keys sorted).
    #[test]
    fn session_state_is_unchanged_on_the_wire() {
        let anonymous = SessionState {
            csrf_token: None,
            logged_in: false,
            login_required: true,
            password_set: true,
            setup_code_file: None,
            via: None,
        };
        let old = json!({
            "password_set": true, "login_required": true, "logged_in": false,
            "via": null, "csrf_token": null, "setup_code_file": null,
        });
        assert_eq!(text(&anonymous), old.to_string());
        let token = SessionState {
            via: Some(LoggedInVia::Token),
            setup_code_file: Some("/var/lib/hdp/setup-code".into()),
            ..anonymous
        };
        let value = serde_json::to_value(&token).unwrap();
        assert_eq!(value["via"], "token");
        assert_eq!(value["setup_code_file"], "/var/lib/hdp/setup-code");
    }

    #[test]
    fn a_new_invite_is_the_invite_and_its_qr_code() {
        let invite = InviteView {
            id: "9f2c4e1a0b3d5c7e".into(),
            code: Some("hdp-invite:AQ".into()),
            expires_at: 1_796_342_400,
            uses_left: 1,
            shares: None,
        };
        let created = InviteCreated {
            invite,
            qr_svg: "<svg/>".into(),
        };
        let value = serde_json::to_value(&created).unwrap();
        let expected = json!({
            "id": "9f2c4e1a0b3d5c7e", "code": "hdp-invite:AQ", "expires_at": 1_796_342_400u64,
            "uses_left": 1, "shares": null, "qr_svg": "<svg/>",
        });
        assert_eq!(value, expected);
        let back: InviteCreated = serde_json::from_value(value).unwrap();
        assert_eq!(back.invite.code.as_deref(), Some("hdp-invite:AQ"));
        // A listed invite has no code, and says so by leaving the field out.
        let listed = InviteView {
            code: None,
            ..back.invite
        };
        assert!(serde_json::to_value(&listed).unwrap().get("code").is_none());
    }

    /// An older CLI reading a newer daemon: fields it does not know are skipped.
    #[test]
    fn answers_tolerate_unknown_fields() {
        let row = json!({
            "id": 4, "direction": "download", "peer": "CalmOtter", "path": "Music",
            "size": 10, "received": 5, "verified_bytes": 4, "state": "disk_full",
            "waiting_for": null, "resumable": true, "rate": 0, "eta_seconds": null,
            "error": null, "files_total": 2, "files_done": 1,
            "failures": [{"path": "Music/a", "reason": "gone", "retryable": false}],
            "resumed_from": 0,
            "active_files": [{"path": "Music/b", "size": 6, "received": 1}],
            "verified": false, "hash": null, "sources": [], "added_later": {"x": 1},
        });
        let view: TransferView = serde_json::from_value(row).unwrap();
        assert_eq!(view.state, TransferState::DiskFull);
        assert_eq!(view.direction, Direction::Download);
        assert_eq!(view.active_files[0].received, 1);
        assert_eq!(view.failures[0].reason, "gone");
        let connected: Connected =
            serde_json::from_str(r#"{"name":"CalmOtter","since":12}"#).unwrap();
        assert_eq!(connected.name, "CalmOtter");
    }

    #[test]
    fn queries_round_trip_as_query_strings() {
        let query = ListQuery {
            path: "CalmOtter/Music Album".into(),
            searchterm: None,
            recursive: Some(false),
        };
        let encoded = serde_urlencoded::to_string(&query).unwrap();
        assert_eq!(encoded, "path=CalmOtter%2FMusic+Album&recursive=false");
        let back: ListQuery = serde_urlencoded::from_str(&encoded).unwrap();
        assert_eq!(back.path, query.path);
        assert_eq!(back.recursive, Some(false));
        let read: ReadQuery = serde_urlencoded::from_str("path=p%2Ff").unwrap();
        assert_eq!((read.start, read.end), (0, None));
    }
}
