//! `storage.history`: how much recorded history (check outcomes, anomaly samples, log-match counts; see
//! [`crate::history`]) the state database keeps. Wire struct and its validation into [`HistoryConfig`].
//!
//! ```yaml
//! storage:
//!   path: /var/lib/aegis/aegis.db
//!   history: {maxAge: 7d, maxRows: 100000}   # the defaults; {enabled: false} records nothing
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Validator, opt_duration};

/// Default `maxAge`: a week, the span an operator replays an incident from.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default `maxRows`: per service and series, about 28 hours of checks every second (a 10 s interval keeps the full
/// week), some 600 KB on disk.
pub const DEFAULT_MAX_ROWS: u64 = 100_000;
/// The smallest `maxRows`: the writer enforces it a chunk at a time, so fewer would keep only one chunk.
pub const MIN_MAX_ROWS: u64 = 1_000;
const MIN_MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct HistoryWire {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    max_age: Option<Duration>,
    #[serde(default)]
    max_rows: Option<u64>,
}

/// `storage.history`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Whether anything is recorded.
    pub enabled: bool,
    /// Entries older than this are deleted.
    pub max_age: Duration,
    /// At most about this many entries are kept per service and series (outcomes; each metric; each log rule).
    pub max_rows: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { enabled: true, max_age: DEFAULT_MAX_AGE, max_rows: DEFAULT_MAX_ROWS }
    }
}

impl Validator<'_> {
    pub(super) fn history(&self, wire: Option<HistoryWire>) -> Result<HistoryConfig, ConfigError> {
        let Some(w) = wire else { return Ok(HistoryConfig::default()) };
        let max_age = w.max_age.unwrap_or(DEFAULT_MAX_AGE);
        if max_age < MIN_MAX_AGE {
            return Err(self.invalid(
                "storage.history.maxAge",
                format!(
                    "{} is less than a minute (to record nothing write `enabled: false`)",
                    humantime::format_duration(max_age)
                ),
            ));
        }
        let max_rows = w.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if max_rows < MIN_MAX_ROWS {
            return Err(self.invalid(
                "storage.history.maxRows",
                format!("{max_rows} is below {MIN_MAX_ROWS} (to record nothing write `enabled: false`)"),
            ));
        }
        Ok(HistoryConfig { enabled: w.enabled.unwrap_or(true), max_age, max_rows })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(storage: &str) -> Result<Config, String> {
        let yaml = format!("{storage}\nservices: []\n");
        Config::from_yaml(std::path::Path::new("aegis.yaml"), &yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_record_a_week() {
        let c = load("").expect("load");
        assert_eq!(c.history, super::HistoryConfig::default());
        assert!(c.history.enabled);
        let c = load("storage: {path: x.db}").expect("load");
        assert_eq!(c.history, super::HistoryConfig::default());
    }

    #[test]
    fn settings_and_the_switch() {
        let c = load("storage:\n  history: {maxAge: 2d, maxRows: 5000}").expect("load");
        assert_eq!(c.history.max_age, std::time::Duration::from_secs(2 * 86_400));
        assert_eq!((c.history.max_rows, c.history.enabled), (5000, true));
        assert_eq!(c.storage_path, std::path::PathBuf::from("aegis.db"));
        let off = load("storage:\n  history: {enabled: false}").expect("load");
        assert!(!off.history.enabled);
        assert!(off.summary().to_string().contains("storage: path=aegis.db history: enabled=false\n"));
    }

    #[test]
    fn bad_values_name_the_file_line_and_field() {
        let err = load("storage:\n  history: {maxAge: 0s}").expect_err("zero");
        assert!(err.contains("aegis.yaml: storage.history.maxAge") && err.contains("enabled: false"), "{err}");
        let err = load("storage:\n  history: {maxRows: 10}").expect_err("few");
        assert!(err.contains("storage.history.maxRows: 10 is below 1000"), "{err}");
        let err = load("storage:\n  history: {maxAge: 7}").expect_err("bare number");
        assert!(err.starts_with("aegis.yaml:2:21:") && err.contains("add a unit"), "{err}");
        let err = load("storage:\n  history: {keep: 1}").expect_err("unknown");
        assert!(err.starts_with("aegis.yaml:2:"), "{err}");
        assert!(err.contains("unknown field `keep`"), "{err}");
    }
}
