//! The CLI's blocking HTTP client of the daemon's API: the API token from the storage
//! directory (or HDP_API_TOKEN), and the daemon's `{"error"}` bodies turned into messages.
//!
//! attohttpc, because UPnP (igd-next) links it anyway: one HTTP client in the binary.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use attohttpc::{RequestBuilder, Response, Session};
use serde_json::Value;

use super::ui_socket_address;

pub struct Client {
    base: String,
    token: Option<String>,
    /// Where the token was looked for, named when it is missing.
    storage: std::path::PathBuf,
    session: Session,
}

/// A non-success status becomes the daemon's `{"error"}` message.
fn checked(response: Response) -> anyhow::Result<Response> {
    if response.is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let message = response
        .json::<Value>()
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    Err(anyhow!(
        message.unwrap_or_else(|| format!("daemon answered HTTP {code}"))
    ))
}

fn json_of(response: Response) -> anyhow::Result<Value> {
    Ok(checked(response)?.json::<Value>()?)
}

impl Client {
    pub fn new(ui_address: &str, storage: &Path) -> anyhow::Result<Self> {
        let addr = ui_socket_address(ui_address)?;
        let token = std::env::var("HDP_API_TOKEN")
            .ok()
            .or_else(|| std::fs::read_to_string(storage.join(crate::http::TOKEN_FILE)).ok())
            .map(|t| t.trim().to_string());
        let mut session = Session::new();
        session.connect_timeout(Duration::from_secs(5));
        // `read` streams a friend's file, which may pause while the daemon finds a source.
        session.read_timeout(Duration::from_secs(300));
        // The daemon is this machine or the LAN: never through an http_proxy from the
        // environment.
        session.proxy_settings(attohttpc::ProxySettings::builder().build());
        session.follow_redirects(false);
        Ok(Self {
            base: format!("http://{addr}"),
            token,
            storage: storage.to_path_buf(),
            session,
        })
    }

    fn unreachable(&self, e: attohttpc::Error) -> anyhow::Error {
        anyhow!(
            "no daemon answers at {} ({e}): is `harddrive-party start` running, on this --ui-address?",
            self.base
        )
    }

    pub(super) fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Response> {
        let mut req = self.session.get(format!("{}{path}", self.base));
        // Reads need the token too once a web UI password is set.
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.as_str());
        }
        for (k, v) in query {
            req = req.param(k, v);
        }
        checked(req.send().map_err(|e| self.unreachable(e))?)
    }

    /// Whether anything still answers HTTP at the daemon's address (any status).
    pub(super) fn answers(&self) -> bool {
        self.session
            .get(format!("{}/api/auth/session", self.base))
            .send()
            .is_ok()
    }

    pub(super) fn get_json(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        Ok(self.get(path, query)?.json::<Value>()?)
    }

    /// A request that changes something: it always needs the token.
    fn changing(&self, request: RequestBuilder) -> anyhow::Result<RequestBuilder> {
        let token = self.token.as_deref().ok_or_else(|| {
            let storage = self.storage.display();
            if self.storage.is_dir() {
                anyhow!("no API token in {storage}: is it the daemon's storage directory? Point --storage (or HDP_STORAGE) at it, or set HDP_API_TOKEN")
            } else {
                anyhow!("the storage directory {storage} does not exist: point --storage (or HDP_STORAGE) at the daemon's, or set HDP_API_TOKEN")
            }
        })?;
        Ok(request.bearer_auth(token))
    }

    pub(super) fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let request = self.changing(self.session.post(format!("{}{path}", self.base)))?;
        json_of(
            request
                .json(&body)?
                .send()
                .map_err(|e| self.unreachable(e))?,
        )
    }

    pub(super) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.changing(self.session.delete(format!("{}{path}", self.base)))?;
        json_of(request.send().map_err(|e| self.unreachable(e))?)
    }
}
