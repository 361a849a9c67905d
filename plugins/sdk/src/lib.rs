//! The Aegis plugin SDK: write a policy as a plain Rust trait impl, export it with one macro.
//!
//! ```ignore
//! use aegis_plugin_sdk::{Config, Counts, Policy, ProbeOutcome, ServiceInfo, TripPredicate};
//!
//! struct TwoStrikes;
//!
//! impl Policy for TwoStrikes {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(TwoStrikes)
//!     }
//! }
//!
//! impl TripPredicate for TwoStrikes {
//!     fn should_trip(&self, _: &ServiceInfo, counts: &Counts, _: &[ProbeOutcome]) -> Option<String> {
//!         (counts.consecutive_failures >= 2).then(|| "two strikes".to_string())
//!     }
//! }
//!
//! aegis_plugin_sdk::export_trip_predicate!(TwoStrikes);
//! ```
//!
//! The other kinds work the same way: [`RecoveryStrategy`] with `export_recovery_strategy!`, [`LogRule`] with
//! `export_log_rule!`, [`AnomalyScorer`] with `export_anomaly_scorer!`, [`AlertFormatter`] with
//! `export_alert_formatter!`.
//!
//! Build with `cargo build --release --target wasm32-wasip2` and copy the `.wasm` into the host's plugin directory.
//! The SDK owns the guest side only: the WIT bindings are generated inside the plugin crate by the export macro,
//! so a component carries exactly one policy world.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

include!(concat!(env!("OUT_DIR"), "/export.rs"));

mod trip;
mod window;
#[doc(hidden)]
pub use trip::{TripState as __TripState, Verdict as __Verdict};
#[doc(hidden)]
pub use window::{WindowCopy as __WindowCopy, WindowSummary as __WindowSummary};

/// The service a binding decides for (the host gives it once, when it binds the plugin).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    /// Probe kind: "http", "tcp", "grpc" or "script".
    pub kind: String,
    pub endpoint: String,
}

/// Counters of the breaker's current generation; they restart from zero at every state change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u32,
    pub successes: u32,
    pub failures: u32,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub slow_calls: u32,
}

/// One probe result of the breaker's sliding window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub success: bool,
    pub latency_ms: u64,
    /// The host's verdict against the service's slow-call duration, if one is configured.
    pub slow: bool,
}

impl ProbeOutcome {
    /// Unpacks the WIT `packed-outcome`: bit 0 success, bit 1 slow, bits 2 to 63 the latency in milliseconds.
    pub const fn from_packed(packed: u64) -> Self {
        ProbeOutcome { success: packed & 1 != 0, slow: packed & 2 != 0, latency_ms: packed >> 2 }
    }

    /// The WIT `packed-outcome` of this outcome; a latency beyond 62 bits of milliseconds saturates.
    pub const fn packed(self) -> u64 {
        let ms = if self.latency_ms > u64::MAX >> 2 { u64::MAX >> 2 } else { self.latency_ms };
        ms << 2 | (self.slow as u64) << 1 | self.success as u64
    }
}

/// Log levels of the host's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The operator's `config:` map for this plugin binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }
}

impl Config {
    /// The raw value of `key`, if the operator set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, or `default` when unset; an unparsable value is an error naming the key and value.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e| format!("config key `{key}`: invalid value {raw:?}: {e}")),
        }
    }

    /// The keys the operator set, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Refuses keys outside `known`, so a typo in the operator's config is an error instead of a silent default.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.keys().find(|k| !known.contains(k)) {
            Some(k) => Err(format!("unknown config key `{k}` (known: {})", known.join(", "))),
            None => Ok(()),
        }
    }
}

/// Construction of a policy from its config; every policy kind builds on it.
pub trait Policy: Sized {
    /// Called once per binding before any decision. An error refuses the binding and is shown to the operator.
    fn init(config: &Config) -> Result<Self, String>;
}

/// Decides whether a closed breaker opens. The host asks after every outcome the closed breaker records.
pub trait TripPredicate: Policy {
    /// `window` holds the breaker's recent probe outcomes, oldest first. `Some(reason)` opens the breaker.
    ///
    /// The window costs nothing to read: the SDK keeps a copy of it inside the plugin, one outcome per decision, and
    /// the host sends the whole window only when that copy is out of step (a fresh instance). For a time window,
    /// outcomes the SDK saw arrive are exact; a resent window comes back bucket by bucket, failures first, each
    /// outcome carrying its bucket's mean latency.
    fn should_trip(&self, service: &ServiceInfo, counts: &Counts, window: &[ProbeOutcome]) -> Option<String>;
}

/// One failure of a service, as a recovery strategy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// When it happened, in Unix epoch milliseconds.
    pub at_ms: u64,
    pub detail: String,
}

/// What to do about a service whose breaker opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Restart,
    /// Notify, with an optional message for the receiver.
    Notify(Option<String>),
    Ignore,
    /// Do nothing now and ask again after this many milliseconds: from 1 000 (a second) to 86 400 000 (a day). The
    /// host refuses any other wait as an invalid answer and decides with its built-in strategy.
    Wait(u64),
}

/// Chooses what to do about a service whose breaker opened.
pub trait RecoveryStrategy: Policy {
    /// `history` holds the recent failures, oldest first; `attempt` counts recovery attempts since the service last
    /// recovered (0 for the first).
    fn decide(&self, service: &ServiceInfo, history: &[Failure], attempt: u32) -> Action;
}

/// How bad a finding or alert is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

/// What a log rule found in a line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name, e.g. `rust-panic`: 1 to 128 bytes without control characters. It names a metric series and
    /// an alert, so a binding may report at most 64 distinct names; the host refuses others as invalid answers.
    pub rule: String,
    pub severity: Severity,
    pub message: String,
}

/// Matches log lines.
pub trait LogRule: Policy {
    /// `source` is the log file path (or stream name) the line came from. `Some(finding)` reports the line.
    fn match_line(&self, source: &str, line: &str) -> Option<Finding>;
}

/// One point of a metric series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix epoch milliseconds.
    pub at_ms: u64,
    pub value: f64,
}

/// An anomaly a scorer found; higher scores are more anomalous.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Anomaly {
    /// A positive finite number (0 means "not anomalous" to the host); the host refuses any other as invalid.
    pub score: f64,
    pub reason: String,
}

/// Scores a metric series for anomalies.
pub trait AnomalyScorer: Policy {
    /// `metric` is "latency", "error-rate" or "throughput"; `window` is the series, oldest first. The newest sample
    /// is the one being judged.
    fn score(&self, service: &ServiceInfo, metric: &str, window: &[Sample]) -> Option<Anomaly>;
}

/// Whether an alert is active or over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertStatus {
    #[default]
    Firing,
    Resolved,
}

/// An alert to render, in the Alertmanager model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub status: AlertStatus,
    pub severity: Severity,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// Unix epoch milliseconds.
    pub starts_at_ms: u64,
    pub ends_at_ms: Option<u64>,
    pub fingerprint: String,
}

impl Alert {
    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of annotation `key`, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A rendered notification body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    pub content_type: String,
    /// Extra request headers, each name at most once. The host owns the request's framing and routing and refuses
    /// a payload that sets `Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, `Keep-Alive`, `TE`,
    /// `Trailer`, `Upgrade`, `Expect`, a `Proxy-*` header, `Content-Type` (use `content_type`) or `Idempotency-Key`.
    pub headers: Vec<(String, String)>,
    /// Must not be empty: a notification without a body would lose the alert.
    pub body: Vec<u8>,
}

impl Payload {
    /// A JSON body (`application/json`) without extra headers.
    pub fn json(body: impl Into<String>) -> Self {
        Payload { content_type: "application/json".into(), headers: Vec::new(), body: body.into().into_bytes() }
    }
}

/// Renders an alert into a notification body.
pub trait AlertFormatter: Policy {
    /// `target` names the receiver (e.g. "webhook", "slack"). An error makes the host use its built-in formatter.
    fn format(&self, alert: &Alert, target: &str) -> Result<Payload, String>;
}

/// Escapes `s` as the contents of a JSON string (without the quotes), for formatters that build JSON by hand.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

static LOGGER: OnceLock<fn(LogLevel, &str)> = OnceLock::new();

#[doc(hidden)]
pub fn __set_logger(logger: fn(LogLevel, &str)) {
    // The first export macro to initialise wins; a component has exactly one.
    let _ = LOGGER.set(logger);
}

/// Writes a line to the host's log, attributed to this plugin. Outside a host (unit tests) it goes to stderr.
pub fn log(level: LogLevel, message: &str) {
    match LOGGER.get() {
        Some(logger) => logger(level, message),
        None => eprintln!("[{level:?}] {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_outcomes_round_trip_in_the_wit_layout() {
        let slow_failure = ProbeOutcome { success: false, latency_ms: 250, slow: true };
        assert_eq!(slow_failure.packed(), 250 << 2 | 2);
        assert_eq!(ProbeOutcome::from_packed(250 << 2 | 2), slow_failure);
        let ok = ProbeOutcome { success: true, latency_ms: 3, slow: false };
        assert_eq!(ProbeOutcome::from_packed(ok.packed()), ok);
        let huge = ProbeOutcome { success: true, latency_ms: u64::MAX, slow: true };
        assert_eq!(ProbeOutcome::from_packed(huge.packed()).latency_ms, u64::MAX >> 2);
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn parse_or_uses_default_and_reports_bad_values() {
        let c = config(&[("n", "3"), ("bad", "x")]);
        assert_eq!(c.parse_or("n", 1u32), Ok(3));
        assert_eq!(c.parse_or("missing", 7u32), Ok(7));
        let err = c.parse_or("bad", 1u32).unwrap_err();
        assert!(err.contains("`bad`") && err.contains("\"x\""), "{err}");
    }

    #[test]
    fn json_escape_escapes_quotes_backslashes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\nd\u{1}"), "a\\\"b\\\\c\\nd\\u0001");
    }

    #[test]
    fn later_entries_win_and_unknown_keys_are_refused() {
        let c = config(&[("n", "1"), ("n", "2"), ("typo", "0")]);
        assert_eq!(c.get("n"), Some("2"));
        let err = c.deny_unknown(&["n"]).unwrap_err();
        assert!(err.contains("`typo`"), "{err}");
    }
}
