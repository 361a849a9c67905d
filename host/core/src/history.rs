//! What happened, as the policy lab records it and replays it: one check outcome, one anomaly sample, one log-match
//! count per interval. The runtime writes these to the store (`storage.history`) and reads them back for
//! `aegis-host replay`; the replay engine consumes them without knowing where they came from.
//!
//! Times are milliseconds since the Unix epoch, as recorded by the host's wall clock at the end of each check.

pub mod codec;

/// One health check of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// When the check ended (ms since the Unix epoch).
    pub at_ms: i64,
    pub success: bool,
    /// Whether the breaker counted the check as slow (its `slowCallDuration` verdict).
    pub slow: bool,
    /// Latency in microseconds.
    pub latency_us: u32,
    /// A short reason for a failure (e.g. `status 503`, `connect refused`); `None` for a success. Boxed rather than
    /// a `String`: a recorder holds thousands of these between flushes.
    pub detail: Option<Box<str>>,
}

/// One value of one metric of one service, as fed to the anomaly detector.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    pub at_ms: i64,
    /// The metric's name as in `anomaly_detection.metrics` (e.g. `latency_ms`).
    pub metric: String,
    pub value: f64,
}

/// How many lines one log rule matched in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCount {
    /// Start of the interval (ms since the Unix epoch).
    pub at_ms: i64,
    pub rule: String,
    pub count: u64,
}
