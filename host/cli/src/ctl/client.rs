//! The admin API client of the control commands: where the host is (config, `--admin`, environment), one blocking
//! request at a time, and errors an operator can act on (not running, token refused, unknown service).

use std::time::Duration;

use anyhow::anyhow;
use reqwest::StatusCode;
use serde_json::Value;

use super::Target;

/// Per-request timeout; the admin API answers from memory.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why no client could be made.
pub enum Setup {
    Config(String),
    Other(anyhow::Error),
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(target: &Target) -> Result<Client, Setup> {
        let env_token = std::env::var("AEGIS_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty());
        let (base, token) = match (&target.admin, &target.config) {
            (Some(url), _) => (url.trim_end_matches('/').to_owned(), env_token),
            (None, Some(file)) => {
                let config = aegis_runtime::Config::load(file).map_err(|e| Setup::Config(e.to_string()))?;
                (format!("http://{}", config.admin_address), config.admin_token)
            }
            (None, None) => (format!("http://{}", aegis_runtime::config::DEFAULT_ADMIN_ADDRESS), env_token),
        };
        let base = if base.contains("://") { base } else { format!("http://{base}") };
        // reqwest is built without a default crypto provider (for an https admin URL); ring is the one we ship.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(aegis_runtime::probe::USER_AGENT)
            .build()
            .map_err(|e| Setup::Other(anyhow!("cannot make an HTTP client: {e}")))?;
        Ok(Client { base, token, http })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request)
    }

    /// When `service` was last checked (Unix ms), from its recent checks; `None` if unknown.
    pub fn last_check_ms(&self, service: &str) -> Option<u64> {
        let checks = self.get(&format!("/api/v1/services/{}/checks", encode(service))).ok()?;
        checks["checks"].as_array()?.iter().filter_map(|c| c["at_ms"].as_u64()).max()
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().map_err(|e| {
            if e.is_connect() {
                anyhow!("cannot reach aegis-host at {}: is it running? ({})", self.base, root_cause(&e))
            } else if e.is_timeout() {
                anyhow!("aegis-host at {} did not answer within {TIMEOUT:?}", self.base)
            } else {
                anyhow!("request to {} failed: {}", self.base, root_cause(&e))
            }
        })?;
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"].as_str().unwrap_or("no error message").to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => anyhow!(
                "{message}: this needs the admin token; set AEGIS_ADMIN_TOKEN or pass --config with admin.token"
            ),
            StatusCode::UNAUTHORIZED => {
                anyhow!("{message}: the admin token was refused; check AEGIS_ADMIN_TOKEN or admin.token in the config")
            }
            _ => anyhow!("{message} (HTTP {})", status.as_u16()),
        })
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `s` as one URL path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
