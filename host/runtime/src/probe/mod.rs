//! Health probes. A probe runs one check against a service and reports success, latency and a human detail; it
//! never panics and never outlives its timeout.

mod http;
mod tcp;

use std::time::{Duration, Instant};

use crate::config::ProbeConfig;

/// The result of one check (after retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub success: bool,
    /// Latency of the last attempt.
    pub latency: Duration,
    /// What happened, for logs and events: `HTTP 200`, `connection refused`, `timed out after 2s`.
    pub detail: String,
    /// Attempts made, 1 + retries used.
    pub attempts: u32,
}

/// A configured probe for one service.
#[derive(Debug, Clone)]
pub enum Probe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
}

impl Probe {
    pub fn new(config: &ProbeConfig, client: &reqwest::Client) -> Probe {
        match config {
            ProbeConfig::Http { url } => Probe::Http(http::HttpProbe::new(client.clone(), url.clone())),
            ProbeConfig::Tcp { address } => Probe::Tcp(tcp::TcpProbe::new(address.clone())),
        }
    }

    /// One attempt, bounded by `timeout`.
    async fn attempt(&self, timeout: Duration) -> (bool, String) {
        let run = async {
            match self {
                Probe::Http(p) => p.check().await,
                Probe::Tcp(p) => p.check().await,
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => (false, format!("timed out after {}", humantime::format_duration(timeout))),
        }
    }

    /// A check: up to `1 + retries` attempts, stopping at the first success.
    pub async fn check(&self, timeout: Duration, retries: u32) -> ProbeResult {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let started = Instant::now();
            let (success, detail) = self.attempt(timeout).await;
            let latency = started.elapsed();
            if success || attempts > retries {
                return ProbeResult { success, latency, detail, attempts };
            }
        }
    }
}

/// Short, single-line text of an error and its sources, for details and logs.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let message = s.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = s.source();
    }
    text
}
