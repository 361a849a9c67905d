//! Webhook notifications of breaker state changes.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::probe::error_chain;
use crate::redact::redact_url;

/// How long a webhook delivery may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The JSON body POSTed to a service's webhook.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notification {
    pub service: String,
    /// `breaker-opened` or `breaker-closed`.
    pub event: String,
    pub state: String,
    pub reason: String,
    pub endpoint: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

impl Notification {
    pub fn new(service: &str, endpoint: &str, event: &str, state: &str, reason: &str) -> Self {
        Notification {
            service: service.to_owned(),
            event: event.to_owned(),
            state: state.to_owned(),
            reason: reason.to_owned(),
            endpoint: endpoint.to_owned(),
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        }
    }
}

/// POSTs `notification` as JSON; any non-2xx answer is an error.
pub async fn send(client: &reqwest::Client, url: &str, notification: &Notification) -> Result<(), String> {
    let response = client
        .post(url)
        .timeout(WEBHOOK_TIMEOUT)
        .json(notification)
        .send()
        .await
        // reqwest's errors quote the URL whole, credentials included.
        .map_err(|e| format!("webhook {}: {}", redact_url(url), error_chain(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook {}: answered HTTP {}", redact_url(url), status.as_u16()))
    }
}
