//! The policy seams besides tripping (STYLE §6): what to do about a failing service ([`RecoveryStrategy`]), which
//! log lines matter ([`LogRule`]), which metric samples are anomalous ([`AnomalyScorer`]) and how an alert is
//! rendered ([`AlertFormatter`]), each with a simple built-in. The WASM adapters of `aegis-plugin` implement the same
//! traits, so callers never know which kind they got.
//!
//! Owns decisions and their domain types only: no I/O, no clock (times arrive as Unix epoch milliseconds), and no
//! knowledge of plugins. A policy is bound to one service (or log source, or receiver) when it is built, so the
//! traits carry only the per-decision inputs.

mod alert;
mod anomaly;
mod log_rule;
mod recovery;

pub use alert::{Alert, AlertFormatter, AlertStatus, AlertmanagerJson, FormatError, Payload, go_quote};
pub use anomaly::{Anomaly, AnomalyScorer, MetricSample, ZScore};
pub use log_rule::{Contains, Finding, LogRule};
pub use recovery::{Failure, FixedAction, RecoveryAction, RecoveryStrategy};

/// How bad a finding or an alert is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
