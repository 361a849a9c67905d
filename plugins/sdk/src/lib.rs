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
//! Build with `cargo build --release --target wasm32-wasip2` and copy the `.wasm` into the host's plugin directory.
//! The SDK owns the guest side only: the WIT bindings are generated inside the plugin crate by the export macro,
//! so a component carries exactly one policy world.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

include!(concat!(env!("OUT_DIR"), "/export.rs"));

/// The service a decision is about.
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

/// Decides whether a closed breaker opens.
pub trait TripPredicate: Policy {
    /// `window` holds the breaker's recent probe outcomes, oldest first. `Some(reason)` opens the breaker.
    fn should_trip(&self, service: &ServiceInfo, counts: &Counts, window: &[ProbeOutcome]) -> Option<String>;
}

static LOGGER: OnceLock<fn(LogLevel, &str)> = OnceLock::new();

#[doc(hidden)]
pub fn __set_logger(logger: fn(LogLevel, &str)) {
    // The first export macro to initialise wins; a component has exactly one.
    let _ = LOGGER.set(logger);
}

/// Writes a line to the host's log, attributed to this plugin. Outside a host (native unit tests) it goes to stderr.
pub fn log(level: LogLevel, message: &str) {
    match LOGGER.get() {
        Some(logger) => logger(level, message),
        None => eprintln!("[{level:?}] {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn later_entries_win_and_unknown_keys_are_refused() {
        let c = config(&[("n", "1"), ("n", "2"), ("typo", "0")]);
        assert_eq!(c.get("n"), Some("2"));
        let err = c.deny_unknown(&["n"]).unwrap_err();
        assert!(err.contains("`typo`"), "{err}");
    }
}
