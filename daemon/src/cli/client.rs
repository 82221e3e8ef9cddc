//! The CLI's blocking HTTP client of the daemon's API: the API token from the storage
//! directory (or HDP_API_TOKEN), requests and answers as the typed bodies of
//! `crate::http::types` (the handlers' own), and the daemon's `{"error"}` bodies turned
//! into messages.
//!
//! attohttpc, because UPnP (igd-next) links it anyway: one HTTP client in the binary.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use attohttpc::{RequestBuilder, Response, Session};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ui_socket_address;
use crate::http::types::ErrorBody;

pub struct Client {
    base: String,
    token: Option<String>,
    session: Session,
}

fn transport_error(e: attohttpc::Error) -> anyhow::Error {
    anyhow!("cannot reach the daemon: {e} (is `harddrive-party start` running?)")
}

/// A non-success status becomes the daemon's `{"error"}` message.
fn checked(response: Response) -> anyhow::Result<Response> {
    if response.is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let message = response.json::<ErrorBody>().ok().map(|body| body.error);
    Err(anyhow!(
        message.unwrap_or_else(|| format!("daemon answered HTTP {code}"))
    ))
}

/// A successful answer's body as `T`. Fields `T` does not know are ignored, so an older
/// CLI reads a newer daemon.
fn body_of<T: DeserializeOwned>(path: &str, response: Response) -> anyhow::Result<T> {
    checked(response)?
        .json::<T>()
        .map_err(|e| anyhow!("unexpected answer from the daemon to {path}: {e}"))
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
            session,
        })
    }

    /// `GET path?query`, checked but not read: for listings and file bytes, which are
    /// streamed.
    pub(super) fn get_raw(&self, path: &str, query: &impl Serialize) -> anyhow::Result<Response> {
        let query = serde_urlencoded::to_string(query)?;
        self.send_get(format!("{}{path}?{query}", self.base))
    }

    /// `GET path`, its answer as `T`.
    pub(super) fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        body_of(path, self.send_get(format!("{}{path}", self.base))?)
    }

    fn send_get(&self, url: String) -> anyhow::Result<Response> {
        let mut req = self.session.get(url);
        // Reads need the token too once a web UI password is set.
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.as_str());
        }
        checked(req.send().map_err(transport_error)?)
    }

    /// Whether anything still answers HTTP at the daemon's address (any status).
    pub(super) fn answers(&self) -> bool {
        self.session
            .get(format!("{}/api/auth/session", self.base))
            .send()
            .is_ok()
    }

    /// A request that changes something: it always needs the token.
    fn changing(&self, request: RequestBuilder) -> anyhow::Result<RequestBuilder> {
        let token = self.token.as_deref().ok_or_else(|| anyhow!("no API token: set HDP_API_TOKEN or point --storage at the daemon's storage directory"))?;
        Ok(request.bearer_auth(token))
    }

    /// `POST path` with `body` as JSON, its answer as `Resp`.
    pub(super) fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> anyhow::Result<Resp> {
        let request = self.changing(self.session.post(format!("{}{path}", self.base)))?;
        body_of(path, request.json(body)?.send().map_err(transport_error)?)
    }

    /// `DELETE path`, its answer as `Resp`.
    pub(super) fn delete<Resp: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Resp> {
        let request = self.changing(self.session.delete(format!("{}{path}", self.base)))?;
        body_of(path, request.send().map_err(transport_error)?)
    }
}
