//! The detection and alerting sections of the config: `logs:` and `anomaly_detection:` exactly as seed 004 writes
//! them (snake_case keys), and `alerting:` in the same style (Alertmanager's own key names: `repeat_interval`,
//! `keep_firing_for`). Wire structs and their validation into domain types; the shared plumbing (durations, field
//! paths in errors) comes from the parent module.

use std::collections::BTreeMap;
use std::time::Duration;

use aegis_core::policy::Severity;
use serde::Deserialize;

use super::{ConfigError, PluginRef, Validator, opt_duration};
use crate::logs::{LogFile, LogsSettings, Pattern};

// ---------------------------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsWire {
    #[serde(default)]
    enabled: Option<bool>,
    /// How often files are checked for new lines (seed 004: `1m`); Aegis default 1s.
    #[serde(default, deserialize_with = "opt_duration")]
    scan_interval: Option<Duration>,
    /// Read files from their beginning instead of tailing from the end.
    #[serde(default)]
    from_start: Option<bool>,
    /// Longer lines are cut (and marked), never fatal.
    #[serde(default)]
    max_line_bytes: Option<usize>,
    #[serde(default)]
    files: Vec<LogFileWire>,
    #[serde(default)]
    patterns: Vec<PatternWire>,
    /// log-rule plugins that see every line after the built-in patterns.
    #[serde(default)]
    plugins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFileWire {
    #[serde(default)]
    service: Option<String>,
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternWire {
    name: String,
    pattern: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    service: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnomalyWire {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    detection_interval: Option<Duration>,
    #[serde(default)]
    history_size: Option<usize>,
    /// The statistical detector run on every series besides the static thresholds: `robust_z` (default), `ewma`,
    /// `zscore` or `none`.
    #[serde(default)]
    detector: Option<String>,
    #[serde(default)]
    thresholds: ThresholdsWire,
    /// Per-service anomaly-scorer plugins, replacing the built-in detectors for that service.
    #[serde(default)]
    scorers: Vec<ScorerWire>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ThresholdsWire {
    #[serde(default)]
    latency: Vec<ThresholdWire>,
    #[serde(default)]
    error_rate: Vec<ThresholdWire>,
    #[serde(default)]
    throughput: Vec<ThresholdWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdWire {
    service: String,
    value: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScorerWire {
    service: String,
    plugin: String,
    #[serde(default)]
    config: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertingWire {
    #[serde(default)]
    enabled: Option<bool>,
    /// Where alerts are POSTed (default: `notifications.webhook`).
    #[serde(default)]
    webhook: Option<String>,
    /// An Alertmanager base URL; alerts are also POSTed to its `/api/v2/alerts`.
    #[serde(default)]
    alertmanager_url: Option<String>,
    /// The `receiver` field of the webhook body.
    #[serde(default)]
    receiver: Option<String>,
    /// An alert-formatter plugin producing the webhook body instead of the Alertmanager JSON.
    #[serde(default)]
    formatter: Option<String>,
    /// The formatter plugin's `config:` map.
    #[serde(default)]
    formatter_config: BTreeMap<String, serde_yaml::Value>,
    #[serde(default, deserialize_with = "opt_duration")]
    repeat_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    evaluation_interval: Option<Duration>,
    /// Delivery retries of the outbox: exponential from `retry_initial` to `retry_max`.
    #[serde(default, deserialize_with = "opt_duration")]
    retry_initial: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    retry_max: Option<Duration>,
    #[serde(default)]
    rules: RulesWire,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesWire {
    #[serde(default)]
    breaker_open: Option<RuleWire>,
    #[serde(default)]
    gave_up: Option<RuleWire>,
    #[serde(default)]
    log_match: Option<RuleWire>,
    #[serde(default)]
    anomaly: Option<RuleWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleWire {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(rename = "for", default, deserialize_with = "opt_duration")]
    for_: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    keep_firing_for: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------------------------
// Domain
// ---------------------------------------------------------------------------------------------------------------

/// Which statistical detector runs on a metric series besides the static thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Detector {
    None,
    /// Median/MAD modified z-score: robust to earlier outliers.
    #[default]
    RobustZ,
    /// Exponentially weighted mean and deviation band: follows slow drifts.
    Ewma,
    /// Plain mean/σ z-score.
    ZScore,
}

impl Detector {
    /// Every detector.
    pub const ALL: [Detector; 4] = [Detector::None, Detector::RobustZ, Detector::Ewma, Detector::ZScore];

    /// The name the config uses (`anomaly_detection.detector`).
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::None => "none",
            Detector::RobustZ => "robust_z",
            Detector::Ewma => "ewma",
            Detector::ZScore => "zscore",
        }
    }
}

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Static thresholds of one service (seed 004 `anomaly_detection.thresholds`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// Mean check latency above this many milliseconds is anomalous.
    pub latency_ms: Option<f64>,
    /// Failed checks ÷ checks above this ratio is anomalous.
    pub error_rate: Option<f64>,
    /// Log lines per second below this is anomalous.
    pub throughput: Option<f64>,
}

/// `anomaly_detection:`.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyConfig {
    pub enabled: bool,
    pub interval: Duration,
    pub history: usize,
    pub detector: Detector,
    pub thresholds: BTreeMap<String, Thresholds>,
    pub scorers: BTreeMap<String, PluginRef>,
    /// References to services that are not supervised.
    pub warnings: Vec<String>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: false,
            interval: Duration::from_secs(30),
            history: 100,
            detector: Detector::default(),
            thresholds: BTreeMap::new(),
            scorers: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

/// `logs:`: what to tail and the built-in patterns, plus log-rule plugins by name.
#[derive(Clone, Debug, PartialEq)]
pub struct LogsConfig {
    pub enabled: bool,
    pub settings: LogsSettings,
    pub plugins: Vec<String>,
    /// References to services that are not supervised.
    pub warnings: Vec<String>,
}

/// One alert source's lifecycle settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertRule {
    pub enabled: bool,
    pub severity: Severity,
    /// Pending this long before firing.
    pub for_: Duration,
    /// Keeps firing this long after the condition cleared (pulse sources: after the last occurrence).
    pub keep_firing_for: Duration,
}

/// Where alerts go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertTarget {
    /// The webhook body (Alertmanager webhook JSON, or the formatter plugin's).
    Webhook(String),
    /// `POST {url}/api/v2/alerts`.
    Alertmanager(String),
}

/// `alerting:`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingConfig {
    pub enabled: bool,
    pub targets: Vec<AlertTarget>,
    pub receiver: String,
    pub formatter: Option<String>,
    /// The formatter plugin's config.
    pub formatter_config: Vec<(String, String)>,
    pub repeat_interval: Duration,
    pub evaluation_interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub breaker_open: AlertRule,
    pub gave_up: AlertRule,
    /// Severity comes from the matching pattern; `severity` here is the plugin findings' fallback.
    pub log_match: AlertRule,
    pub anomaly: AlertRule,
}

impl AlertingConfig {
    fn defaults(targets: Vec<AlertTarget>) -> Self {
        let rule = |severity, for_, keep: u64| AlertRule {
            enabled: true,
            severity,
            for_,
            keep_firing_for: Duration::from_secs(keep),
        };
        AlertingConfig {
            enabled: true,
            targets,
            receiver: "aegis".to_owned(),
            formatter: None,
            formatter_config: Vec::new(),
            repeat_interval: Duration::from_secs(4 * 3600),
            evaluation_interval: Duration::from_secs(1),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            breaker_open: rule(Severity::Critical, Duration::ZERO, 0),
            gave_up: rule(Severity::Critical, Duration::ZERO, 0),
            log_match: rule(Severity::Warning, Duration::ZERO, 300),
            anomaly: rule(Severity::Warning, Duration::ZERO, 60),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------------------------

fn severity(v: &Validator<'_>, field: &str, raw: Option<&str>, default: Severity) -> Result<Severity, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().to_ascii_lowercase().as_str() {
        "critical" | "crit" | "error" => Ok(Severity::Critical),
        "warning" | "warn" => Ok(Severity::Warning),
        "info" => Ok(Severity::Info),
        _ => Err(v.invalid(field, format!("unknown severity {raw:?} (expected CRITICAL, WARNING or INFO)"))),
    }
}

/// A section naming a service that is not supervised is allowed (seed 004's example names a service its file does
/// not define: log monitoring without probing) but reported by [`super::Config::warnings`].
fn note_unknown(warnings: &mut Vec<String>, field: &str, name: &str, services: &[&str]) {
    if !services.contains(&name) {
        warnings.push(format!("{field}: service `{name}` is not in `services:`"));
    }
}

fn positive(v: &Validator<'_>, field: &str, d: Option<Duration>, default: Duration) -> Result<Duration, ConfigError> {
    match d {
        Some(d) if d.is_zero() => Err(v.invalid(field, "must be greater than zero")),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

impl Validator<'_> {
    pub(super) fn logs(&self, wire: Option<LogsWire>, services: &[&str]) -> Result<LogsConfig, ConfigError> {
        let Some(w) = wire else {
            return Ok(LogsConfig {
                enabled: false,
                settings: LogsSettings::default(),
                plugins: Vec::new(),
                warnings: Vec::new(),
            });
        };
        let mut warnings = Vec::new();
        let mut settings = LogsSettings {
            poll_interval: positive(self, "logs.scan_interval", w.scan_interval, Duration::from_secs(1))?,
            from_start: w.from_start.unwrap_or(false),
            ..LogsSettings::default()
        };
        if let Some(n) = w.max_line_bytes {
            if n < 80 {
                return Err(self.invalid("logs.max_line_bytes", "must be at least 80"));
            }
            settings.max_line_bytes = n;
        }
        for (i, f) in w.files.into_iter().enumerate() {
            if let Some(s) = &f.service {
                note_unknown(&mut warnings, &format!("logs.files[{i}].service"), s, services);
            }
            if f.path.trim().is_empty() {
                return Err(self.invalid(format!("logs.files[{i}].path"), "must not be empty"));
            }
            if let Err(e) = glob::Pattern::new(&f.path) {
                return Err(self.invalid(format!("logs.files[{i}].path"), format!("invalid glob: {e}")));
            }
            settings.files.push(LogFile { service: f.service, path: f.path });
        }
        for (i, p) in w.patterns.into_iter().enumerate() {
            let at = |k: &str| format!("logs.patterns[{i}].{k}");
            if let Some(s) = &p.service {
                note_unknown(&mut warnings, &at("service"), s, services);
            }
            if let Err(e) = regex::Regex::new(&p.pattern) {
                return Err(self.invalid(at("pattern"), format!("invalid regex: {e}")));
            }
            settings.patterns.push(Pattern {
                severity: severity(self, &at("severity"), p.severity.as_deref(), Severity::Warning)?,
                name: p.name,
                regex: p.pattern,
                description: p.description,
                service: p.service,
            });
        }
        Ok(LogsConfig { enabled: w.enabled.unwrap_or(true), settings, plugins: w.plugins, warnings })
    }

    pub(super) fn anomaly(&self, wire: Option<AnomalyWire>, services: &[&str]) -> Result<AnomalyConfig, ConfigError> {
        let mut c = AnomalyConfig::default();
        let Some(w) = wire else { return Ok(c) };
        c.enabled = w.enabled.unwrap_or(true);
        c.interval = positive(self, "anomaly_detection.detection_interval", w.detection_interval, c.interval)?;
        if let Some(n) = w.history_size {
            if n < 3 {
                return Err(self.invalid("anomaly_detection.history_size", "must be at least 3"));
            }
            c.history = n;
        }
        c.detector = match w.detector.as_deref().map(str::trim) {
            None => Detector::default(),
            Some(name) => Detector::ALL.into_iter().find(|d| d.as_str() == name).ok_or_else(|| {
                self.invalid(
                    "anomaly_detection.detector",
                    format!("unknown detector `{name}` (expected robust_z, ewma, zscore or none)"),
                )
            })?,
        };
        let kinds: [(&str, Vec<ThresholdWire>); 3] = [
            ("latency", w.thresholds.latency),
            ("error_rate", w.thresholds.error_rate),
            ("throughput", w.thresholds.throughput),
        ];
        for (kind, list) in kinds {
            for (i, t) in list.into_iter().enumerate() {
                let at = |k: &str| format!("anomaly_detection.thresholds.{kind}[{i}].{k}");
                note_unknown(&mut c.warnings, &at("service"), &t.service, services);
                if !(t.value.is_finite() && t.value >= 0.0) || (kind == "error_rate" && t.value > 1.0) {
                    let range = if kind == "error_rate" { "a ratio between 0 and 1" } else { "a number >= 0" };
                    return Err(self.invalid(at("value"), format!("{} is not {range}", t.value)));
                }
                let entry = c.thresholds.entry(t.service).or_default();
                match kind {
                    "latency" => entry.latency_ms = Some(t.value),
                    "error_rate" => entry.error_rate = Some(t.value),
                    _ => entry.throughput = Some(t.value),
                }
            }
        }
        for (i, s) in w.scorers.into_iter().enumerate() {
            note_unknown(&mut c.warnings, &format!("anomaly_detection.scorers[{i}].service"), &s.service, services);
            let config = self.plugin_config(&format!("anomaly_detection.scorers[{i}].config"), s.config)?;
            c.scorers.insert(s.service, PluginRef { plugin: s.plugin, config });
        }
        Ok(c)
    }

    pub(super) fn alerting(
        &self,
        wire: Option<AlertingWire>,
        default_webhook: Option<&str>,
    ) -> Result<AlertingConfig, ConfigError> {
        // Without an `alerting:` section alerts are tracked (GET /api/v1/alerts) but not sent: the seed-000
        // `notifications.webhook` keeps receiving only its own notification bodies.
        let Some(w) = wire else { return Ok(AlertingConfig::defaults(Vec::new())) };
        let mut targets = Vec::new();
        match &w.webhook {
            Some(url) => targets.push(AlertTarget::Webhook(self.url("alerting.webhook", url)?)),
            None => targets.extend(default_webhook.map(|u| AlertTarget::Webhook(u.to_owned()))),
        }
        if let Some(url) = &w.alertmanager_url {
            let url = self.url("alerting.alertmanager_url", url)?;
            targets.push(AlertTarget::Alertmanager(url.trim_end_matches('/').to_owned()));
        }
        let mut c = AlertingConfig::defaults(targets);
        c.enabled = w.enabled.unwrap_or(true);
        if let Some(r) = w.receiver {
            c.receiver = r;
        }
        if w.formatter.is_none() && !w.formatter_config.is_empty() {
            return Err(
                self.invalid("alerting.formatter_config", "set `alerting.formatter` to the plugin it configures")
            );
        }
        c.formatter_config = self.plugin_config("alerting.formatter_config", w.formatter_config)?;
        c.formatter = w.formatter;
        c.repeat_interval = positive(self, "alerting.repeat_interval", w.repeat_interval, c.repeat_interval)?;
        c.evaluation_interval =
            positive(self, "alerting.evaluation_interval", w.evaluation_interval, c.evaluation_interval)?;
        c.retry_initial = positive(self, "alerting.retry_initial", w.retry_initial, c.retry_initial)?;
        c.retry_max = positive(self, "alerting.retry_max", w.retry_max, c.retry_max)?;
        if c.retry_initial > c.retry_max {
            return Err(self.invalid("alerting.retry_initial", "must not exceed retry_max"));
        }
        let rules = [
            ("breaker_open", w.rules.breaker_open, &mut c.breaker_open),
            ("gave_up", w.rules.gave_up, &mut c.gave_up),
            ("log_match", w.rules.log_match, &mut c.log_match),
            ("anomaly", w.rules.anomaly, &mut c.anomaly),
        ];
        for (name, wire, rule) in rules {
            let Some(r) = wire else { continue };
            rule.enabled = r.enabled.unwrap_or(true);
            rule.severity =
                severity(self, &format!("alerting.rules.{name}.severity"), r.severity.as_deref(), rule.severity)?;
            rule.for_ = r.for_.unwrap_or(rule.for_);
            rule.keep_firing_for = r.keep_firing_for.unwrap_or(rule.keep_firing_for);
        }
        Ok(c)
    }
}
