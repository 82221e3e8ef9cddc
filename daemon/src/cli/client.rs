//! The CLI's blocking HTTP client of the daemon's API: the API token from the storage
//! directory (or HDP_API_TOKEN), and the daemon's `{"error"}` bodies turned into messages.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;

use super::ui_socket_address;

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

fn api_error(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, response) => {
            let message = response
                .into_json::<Value>()
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
            anyhow!(message.unwrap_or_else(|| format!("daemon answered HTTP {code}")))
        }
        ureq::Error::Transport(t) => {
            anyhow!("cannot reach the daemon: {t} (is `harddrive-party start` running?)")
        }
    }
}

impl Client {
    pub fn new(ui_address: &str, storage: &Path) -> anyhow::Result<Self> {
        let addr = ui_socket_address(ui_address)?;
        let token = std::env::var("HDP_API_TOKEN")
            .ok()
            .or_else(|| std::fs::read_to_string(storage.join(crate::http::TOKEN_FILE)).ok())
            .map(|t| t.trim().to_string());
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .build();
        Ok(Self {
            base: format!("http://{addr}"),
            token,
            agent,
        })
    }

    pub(super) fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<ureq::Response> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        // Reads need the token too once a web UI password is set.
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        for (k, v) in query {
            req = req.query(k, v);
        }
        req.call().map_err(api_error)
    }

    pub(super) fn get_json(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        Ok(self.get(path, query)?.into_json()?)
    }

    /// A request that changes something: it always needs the token.
    fn changing(&self, method: &str, path: &str) -> anyhow::Result<ureq::Request> {
        let token = self.token.as_deref().ok_or_else(|| anyhow!("no API token: set HDP_API_TOKEN or point --storage at the daemon's storage directory"))?;
        Ok(self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {token}")))
    }

    pub(super) fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .changing("POST", path)?
            .send_json(body)
            .map_err(api_error)?;
        Ok(response.into_json()?)
    }

    pub(super) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.changing("DELETE", path)?.call().map_err(api_error)?;
        Ok(response.into_json()?)
    }
}
