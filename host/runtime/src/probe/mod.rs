//! Health probes. A probe runs one check against a service and reports success, latency and a human detail; it
//! never panics and never outlives its timeout.

mod grpc;
mod http;
mod plain;
mod script;
mod tcp;

pub use http::{HttpOptions, TlsOptions};

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aegis_core::{Backoff, BackoffSettings, BudgetSettings, Jitter, RetryBudget};

use crate::config::ProbeConfig;

/// The user agent of every HTTP request Aegis makes (probes, notifications, alerts, the `aegis-host` CLI).
pub const USER_AGENT: &str = concat!("aegis-host/", env!("CARGO_PKG_VERSION"));

/// The result of one check (after retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub success: bool,
    /// Latency of the last attempt.
    pub latency: Duration,
    /// What happened, for logs and events: `HTTP 200`, `connection refused`, `timed out after 2s`. Static text for
    /// the usual successes, so that a healthy check allocates none and a service's last check keeps none.
    pub detail: Detail,
    /// Attempts made, 1 + retries used.
    pub attempts: u32,
}

/// A check's detail.
pub type Detail = std::borrow::Cow<'static, str>;

/// A configured probe for one service.
#[derive(Debug, Clone)]
pub enum Probe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
    Grpc(grpc::GrpcProbe),
    Script(script::ScriptProbe),
}

/// Extra time a script gets beyond its timeout to be killed and reaped before the probe gives up on it.
const SCRIPT_REAP_GRACE: Duration = Duration::from_secs(2);

impl Probe {
    pub fn new(service: &str, config: &ProbeConfig, client: &reqwest::Client) -> Probe {
        match config {
            ProbeConfig::Http { url, options } => {
                Probe::Http(http::HttpProbe::new(client.clone(), url.clone(), options.as_deref()))
            }
            ProbeConfig::Tcp { address } => Probe::Tcp(tcp::TcpProbe::new(address.clone())),
            ProbeConfig::Grpc { uri, service: name } => Probe::Grpc(grpc::GrpcProbe::new(uri.clone(), name.clone())),
            ProbeConfig::Script { command } => {
                Probe::Script(script::ScriptProbe::new(service.to_owned(), command.clone()))
            }
        }
    }

    /// One attempt, bounded by `timeout`.
    async fn attempt(&self, timeout: Duration) -> (bool, Detail) {
        use tokio::time::timeout as bounded;
        let result = match self {
            Probe::Http(p) => bounded(timeout, p.check()).await,
            Probe::Tcp(p) => bounded(timeout, p.check()).await,
            Probe::Grpc(p) => bounded(timeout, p.check()).await,
            // The script kills its own process group at `timeout`; the outer bound only guards against a hang.
            Probe::Script(p) => bounded(timeout + SCRIPT_REAP_GRACE, p.check(timeout)).await,
        };
        match result {
            Ok(result) => result,
            Err(_) => (false, format!("timed out after {}", humantime::format_duration(timeout)).into()),
        }
    }

    /// A check: up to `1 + retries` attempts, stopping at the first success, retrying at once.
    pub async fn check(&self, timeout: Duration, retries: u32) -> ProbeResult {
        self.check_with(timeout, retries, None).await
    }

    /// A check whose retries are spaced by `policy`'s backoff and withdrawn from its shared budget: when the budget
    /// is spent (many services failing at once) the check ends after the attempts made so far instead of amplifying
    /// the load on whatever is failing.
    pub async fn check_with(&self, timeout: Duration, retries: u32, policy: Option<&RetryPolicy>) -> ProbeResult {
        let mut attempts = 0;
        let mut backoff = policy.map(|p| Backoff::new(p.backoff));
        if let Some(p) = policy {
            p.budget().record_request(Instant::now());
        }
        loop {
            attempts += 1;
            let started = Instant::now();
            let (success, mut detail) = self.attempt(timeout).await;
            let latency = started.elapsed();
            if success || attempts > retries {
                return ProbeResult { success, latency, detail, attempts };
            }
            if let (Some(p), Some(b)) = (policy, backoff.as_mut()) {
                if !p.budget().try_retry(Instant::now()) {
                    detail.to_mut().push_str(" (retry budget exhausted)");
                    return ProbeResult { success, latency, detail, attempts };
                }
                let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::from_os_rng();
                let delay = b.next_delay(Instant::now(), &mut rng);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// How a check's retries are spaced and rationed; one per supervisor, shared by every service.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Delay between attempts of one check.
    pub backoff: BackoffSettings,
    budget: Mutex<RetryBudget>,
}

impl RetryPolicy {
    /// Retries spaced 100 ms doubling to 2 s with full jitter, budgeted by `budget`.
    pub fn new(budget: BudgetSettings) -> Self {
        RetryPolicy {
            backoff: BackoffSettings {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
                multiplier: 2.0,
                jitter: Jitter::Full,
                reset_after: None,
            },
            budget: Mutex::new(RetryBudget::new(budget)),
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, RetryBudget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Original checks and retries inside the budget's window.
    pub fn totals(&self) -> (u64, u64) {
        self.budget().totals(Instant::now())
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
