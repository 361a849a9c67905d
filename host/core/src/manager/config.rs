//! Manager configuration (seed 002): YAML wire structs, environment overrides and their conversion into validated
//! domain types, all in one place (STYLE §4). Owns parsing and precedence; performs no I/O — the YAML arrives as text
//! and the environment as a lookup closure. It is also the one parser of seed 002's settings for other config formats:
//! aegis-host's files embed [`SharedRetries`] and read the environment through [`BreakerOverride::from_env`].
//!
//! Precedence, lowest to highest: built-in defaults < `defaults:` (and seed-002 `retries:`) in YAML <
//! `CIRCUIT_BREAKER_<FIELD>` < `services.<name>:` in YAML < `CIRCUIT_BREAKER_<SERVICE>_<FIELD>`.
//!
//! Seed 002 names two durations: `timeout` ("time to keep circuit open") is the open duration (gobreaker `Timeout`,
//! seed-000 `resetTimeout`); `recovery_time` ("time before attempting recovery") is read as the closed-state
//! `interval` after which old failures are forgiven. That is the one interpretation under which both settings have
//! distinct effects.
//!
//! Values are checked while the YAML is read wherever one value alone decides (a duration's text, a threshold of
//! 0), so the YAML parser's error carries the offending scalar's line and column; checks across fields run after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::{AnyOf, ConsecutiveFailures, FailureRate, Settings, SlowCallRate, TripPredicate, WindowKind};
use crate::error::ConfigError;

/// Validated settings of one managed breaker.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// `false` creates the breaker in the `Disabled` state.
    pub enabled: bool,
    /// Consecutive failures that trip the breaker.
    pub failure_threshold: u32,
    /// Open duration before half-open.
    pub timeout: Duration,
    /// Closed-state count reset period (`None` = never).
    pub recovery_time: Option<Duration>,
    /// Half-open successes needed to close.
    pub success_threshold: u32,
    /// Concurrent half-open trial calls.
    pub max_requests: u32,
    /// Calls at least this long are slow.
    pub slow_call_duration: Option<Duration>,
    /// Also trip when the window's failure ratio reaches this (0..=1).
    pub failure_rate_threshold: Option<f64>,
    /// Also trip when the window's slow-call ratio reaches this (0..=1).
    pub slow_call_rate_threshold: Option<f64>,
    /// Calls needed in the window before a rate is computed.
    pub minimum_calls: u32,
    /// The sliding window.
    pub window: WindowKind,
}

impl Default for BreakerConfig {
    /// seed-002 shared defaults: threshold 5, timeout 60 s, recovery 300 s.
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 5,
            timeout: Duration::from_secs(60),
            recovery_time: Some(Duration::from_secs(300)),
            success_threshold: 1,
            max_requests: 1,
            slow_call_duration: None,
            failure_rate_threshold: None,
            slow_call_rate_threshold: None,
            minimum_calls: 10,
            window: WindowKind::Count(100),
        }
    }
}

impl BreakerConfig {
    /// Breaker settings named `name`: consecutive failures, plus rate predicates when configured.
    pub fn settings(&self, name: impl Into<String>) -> Settings {
        let mut trip: Vec<Arc<dyn TripPredicate>> = vec![Arc::new(ConsecutiveFailures(self.failure_threshold))];
        if let Some(t) = self.failure_rate_threshold {
            trip.push(Arc::new(FailureRate { threshold: t }));
        }
        if let Some(t) = self.slow_call_rate_threshold {
            trip.push(Arc::new(SlowCallRate { threshold: t }));
        }
        // A lone predicate is used directly: `AnyOf` would hide that it is cheap to evaluate on successes.
        let trip: Arc<dyn TripPredicate> = match trip.as_slice() {
            [only] => Arc::clone(only),
            _ => Arc::new(AnyOf(trip)),
        };
        Settings::new(name)
            .reset_timeout(self.timeout)
            .interval(self.recovery_time)
            .success_threshold(self.success_threshold)
            .max_requests(self.max_requests)
            .slow_call_duration(self.slow_call_duration)
            .minimum_calls(self.minimum_calls)
            .window(self.window)
            .trip_predicate(trip)
    }
}

/// A partial [`BreakerConfig`]: only the fields a layer (YAML section or environment) sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BreakerOverride {
    /// See [`BreakerConfig::enabled`].
    pub enabled: Option<bool>,
    /// See [`BreakerConfig::failure_threshold`].
    pub failure_threshold: Option<u32>,
    /// See [`BreakerConfig::timeout`].
    pub timeout: Option<Duration>,
    /// See [`BreakerConfig::recovery_time`]; `Some(None)` switches the reset off.
    pub recovery_time: Option<Option<Duration>>,
    /// See [`BreakerConfig::success_threshold`].
    pub success_threshold: Option<u32>,
    /// See [`BreakerConfig::max_requests`].
    pub max_requests: Option<u32>,
    /// See [`BreakerConfig::slow_call_duration`].
    pub slow_call_duration: Option<Duration>,
    /// See [`BreakerConfig::failure_rate_threshold`].
    pub failure_rate_threshold: Option<f64>,
    /// See [`BreakerConfig::slow_call_rate_threshold`].
    pub slow_call_rate_threshold: Option<f64>,
    /// See [`BreakerConfig::minimum_calls`].
    pub minimum_calls: Option<u32>,
    /// See [`BreakerConfig::window`].
    pub window: Option<WindowKind>,
}

impl BreakerOverride {
    /// `base` with this layer's fields replaced.
    pub fn apply(&self, base: &BreakerConfig) -> BreakerConfig {
        BreakerConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            failure_threshold: self.failure_threshold.unwrap_or(base.failure_threshold),
            timeout: self.timeout.unwrap_or(base.timeout),
            recovery_time: self.recovery_time.unwrap_or(base.recovery_time),
            success_threshold: self.success_threshold.unwrap_or(base.success_threshold),
            max_requests: self.max_requests.unwrap_or(base.max_requests),
            slow_call_duration: self.slow_call_duration.or(base.slow_call_duration),
            failure_rate_threshold: self.failure_rate_threshold.or(base.failure_rate_threshold),
            slow_call_rate_threshold: self.slow_call_rate_threshold.or(base.slow_call_rate_threshold),
            minimum_calls: self.minimum_calls.unwrap_or(base.minimum_calls),
            window: self.window.unwrap_or(base.window),
        }
    }

    /// The global `CIRCUIT_BREAKER_<FIELD>` variables (see [`ENV_FIELDS`]) through `lookup` (pass
    /// `|k| std::env::var(k).ok()` in a binary; tests pass a map). Each value is checked on its own, so an error names
    /// the variable.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<BreakerOverride, ConfigError> {
        env_layer("CIRCUIT_BREAKER_", &lookup)
    }

    /// `self` with `top`'s fields laid over it.
    pub fn merge(&self, top: &BreakerOverride) -> BreakerOverride {
        BreakerOverride {
            enabled: top.enabled.or(self.enabled),
            failure_threshold: top.failure_threshold.or(self.failure_threshold),
            timeout: top.timeout.or(self.timeout),
            recovery_time: top.recovery_time.or(self.recovery_time),
            success_threshold: top.success_threshold.or(self.success_threshold),
            max_requests: top.max_requests.or(self.max_requests),
            slow_call_duration: top.slow_call_duration.or(self.slow_call_duration),
            failure_rate_threshold: top.failure_rate_threshold.or(self.failure_rate_threshold),
            slow_call_rate_threshold: top.slow_call_rate_threshold.or(self.slow_call_rate_threshold),
            minimum_calls: top.minimum_calls.or(self.minimum_calls),
            window: top.window.or(self.window),
        }
    }
}

/// Validated manager configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerConfig {
    /// Settings of every breaker without a per-service section.
    pub defaults: BreakerConfig,
    /// Per-service layers over `defaults`.
    pub services: BTreeMap<String, BreakerOverride>,
    /// How many events the history keeps.
    pub history: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig { defaults: BreakerConfig::default(), services: BTreeMap::new(), history: 1000 }
    }
}

/// Known per-breaker environment suffixes, as in `CIRCUIT_BREAKER_<SUFFIX>` / `CIRCUIT_BREAKER_<SERVICE>_<SUFFIX>`.
pub const ENV_FIELDS: [&str; 10] = [
    "ENABLED",
    "THRESHOLD",
    "TIMEOUT",
    "RECOVERY_TIME",
    "SUCCESS_THRESHOLD",
    "MAX_REQUESTS",
    "SLOW_CALL_DURATION",
    "FAILURE_RATE_THRESHOLD",
    "SLOW_CALL_RATE_THRESHOLD",
    "MINIMUM_CALLS",
];

impl ManagerConfig {
    /// Parses YAML (see the crate's tests for the schema: `defaults`, `services`, `history`, and seed-002
    /// `retries.circuit_breaker_*`).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let wire: ConfigWire = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        let layer = wire.retries.map(|r| r.layer()).unwrap_or_default().merge(&wire.defaults.into_override());
        let defaults = layer.apply(&BreakerConfig::default());
        validate(&defaults, "defaults")?;
        let mut services = BTreeMap::new();
        for (name, w) in wire.services {
            let o = w.into_override();
            validate(&o.apply(&defaults), &format!("services.{name}"))?;
            services.insert(name, o);
        }
        Ok(ManagerConfig { defaults, services, history: wire.history.unwrap_or(1000) })
    }

    /// Applies `CIRCUIT_BREAKER_*` variables through `lookup` (pass `|k| std::env::var(k).ok()` in a binary; tests
    /// pass a map). Global variables change `defaults`; `CIRCUIT_BREAKER_<SERVICE>_*` (service name upper-cased,
    /// non-alphanumerics as `_`) change the named services listed in the YAML.
    pub fn with_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let global = BreakerOverride::from_env(&lookup)?;
        self.defaults = global.apply(&self.defaults);
        validate(&self.defaults, "CIRCUIT_BREAKER_*")?;
        for (name, o) in &mut self.services {
            let prefix = format!("CIRCUIT_BREAKER_{}_", env_name(name));
            let layer = env_layer(&prefix, &lookup)?;
            *o = o.merge(&layer);
            validate(&o.apply(&self.defaults), &format!("{prefix}*"))?;
        }
        Ok(self)
    }

    /// The effective configuration of `service`.
    pub fn resolve(&self, service: &str) -> BreakerConfig {
        self.services.get(service).map_or_else(|| self.defaults.clone(), |o| o.apply(&self.defaults))
    }
}

/// `my-svc.v2` → `MY_SVC_V2`.
pub fn env_name(service: &str) -> String {
    service.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn validate(c: &BreakerConfig, at: &str) -> Result<(), ConfigError> {
    let ratio = |field: &str, v: Option<f64>| match v {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= 1.0) => {
            Err(ConfigError::invalid(format!("{at}.{field}"), r * 100.0, "must be a percentage in (0, 100]"))
        }
        _ => Ok(()),
    };
    ratio("failure_rate_threshold", c.failure_rate_threshold)?;
    ratio("slow_call_rate_threshold", c.slow_call_rate_threshold)?;
    if c.failure_threshold == 0 {
        return Err(ConfigError::invalid(format!("{at}.failure_threshold"), 0, "must be at least 1"));
    }
    if c.success_threshold == 0 {
        return Err(ConfigError::invalid(format!("{at}.success_threshold"), 0, "must be at least 1"));
    }
    if c.max_requests == 0 {
        return Err(ConfigError::invalid(format!("{at}.max_requests"), 0, "must be at least 1"));
    }
    match c.window {
        WindowKind::Count(0) => Err(ConfigError::invalid(format!("{at}.window.size"), 0, "must be at least 1")),
        WindowKind::Time { buckets: 0, .. } => {
            Err(ConfigError::invalid(format!("{at}.window.buckets"), 0, "must be at least 1"))
        }
        WindowKind::Time { size, .. } if size.is_zero() => {
            Err(ConfigError::invalid(format!("{at}.window.size"), "0s", "must be positive"))
        }
        _ => Ok(()),
    }
}

fn env_layer(prefix: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<BreakerOverride, ConfigError> {
    let mut o = BreakerOverride::default();
    for field in ENV_FIELDS {
        let key = format!("{prefix}{field}");
        let Some(raw) = lookup(&key) else { continue };
        let v = raw.trim();
        match field {
            "ENABLED" => o.enabled = Some(parse_bool(&key, v)?),
            "THRESHOLD" => o.failure_threshold = Some(parse_count(&key, v)?),
            "TIMEOUT" => o.timeout = Some(parse_duration(v).map_err(|r| ConfigError::invalid(&key, v, r))?),
            "RECOVERY_TIME" => {
                let d = parse_duration(v).map_err(|r| ConfigError::invalid(&key, v, r))?;
                o.recovery_time = Some((!d.is_zero()).then_some(d));
            }
            "SUCCESS_THRESHOLD" => o.success_threshold = Some(parse_count(&key, v)?),
            "MAX_REQUESTS" => o.max_requests = Some(parse_count(&key, v)?),
            "SLOW_CALL_DURATION" => {
                o.slow_call_duration = Some(parse_duration(v).map_err(|r| ConfigError::invalid(&key, v, r))?);
            }
            "FAILURE_RATE_THRESHOLD" => o.failure_rate_threshold = Some(parse_percent(&key, v)?),
            "SLOW_CALL_RATE_THRESHOLD" => o.slow_call_rate_threshold = Some(parse_percent(&key, v)?),
            "MINIMUM_CALLS" => o.minimum_calls = Some(parse_num(&key, v)?),
            _ => {}
        }
    }
    Ok(o)
}

fn parse_num(key: &str, v: &str) -> Result<u32, ConfigError> {
    v.parse().map_err(|_| ConfigError::invalid(key, v, "expected a non-negative integer"))
}

/// A count that must be at least 1 (thresholds, permits).
fn parse_count(key: &str, v: &str) -> Result<u32, ConfigError> {
    match parse_num(key, v)? {
        0 => Err(ConfigError::invalid(key, v, "must be at least 1")),
        n => Ok(n),
    }
}

fn parse_percent(key: &str, v: &str) -> Result<f64, ConfigError> {
    let p: f64 =
        v.trim_end_matches('%').trim().parse().map_err(|_| ConfigError::invalid(key, v, "expected a percentage"))?;
    if !(p.is_finite() && p > 0.0 && p <= 100.0) {
        return Err(ConfigError::invalid(key, v, "must be a percentage in (0, 100]"));
    }
    Ok(p / 100.0)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(key, v, "expected true or false")),
    }
}

/// Parses `"300ms"`, `"60s"`, `"2m"`, `"1h30m"`, `"1.5s"` or a bare number of seconds. Units: ns, us/µs, ms, s, m,
/// h, d.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let n: f64 = num.parse().map_err(|_| format!("expected a number before {unit:?}"))?;
        let scale = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            u => return Err(format!("unknown unit {u:?} (use ns, us, ms, s, m, h or d)")),
        };
        total = total
            .checked_add(Duration::try_from_secs_f64(n * scale).map_err(|e| e.to_string())?)
            .ok_or("duration overflows")?;
        rest = tail;
    }
    Ok(total)
}

/// A duration in YAML: text with units, or a bare number of seconds. Parsed while it is read, so a bad one is an
/// error of the YAML parser, located at the scalar.
struct DurationWire(Duration);

impl<'de> Deserialize<'de> for DurationWire {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationWire;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like `60s`, `500ms` or `1h30m`, or a number of seconds")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationWire, E> {
                parse_duration(v).map(DurationWire).map_err(|r| E::custom(format!("invalid duration {v:?}: {r}")))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationWire, E> {
                Ok(DurationWire(Duration::from_secs(v)))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationWire, E> {
                u64::try_from(v)
                    .map(|v| DurationWire(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationWire, E> {
                Duration::try_from_secs_f64(v)
                    .map(DurationWire)
                    .map_err(|e| E::custom(format!("invalid duration {v}: {e}")))
            }
        }

        d.deserialize_any(Visitor)
    }
}

/// A threshold or count that must be at least 1. A visitor, not a check after reading, so the error is raised at
/// the scalar and the YAML parser locates it there.
fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::{Error, Unexpected};

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<u32>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a whole number of at least 1")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<Option<u32>, E> {
            match u32::try_from(v) {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
            }
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<Option<u32>, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }

        fn visit_unit<E: Error>(self) -> Result<Option<u32>, E> {
            Ok(None)
        }
    }

    d.deserialize_any(Visitor)
}

/// Seed 002's "Shared Configuration" block, as written there:
///
/// ```yaml
/// retries:
///   circuit_breaker_threshold: 5      # consecutive failures that open the breaker
///   circuit_breaker_timeout: 60s      # open → half-open
///   circuit_breaker_recovery_time: 300s # closed state: counts are cleared this often (0 = never)
/// ```
///
/// The one parser of the block: [`ManagerConfig::from_yaml`] reads it, and so does any config format that embeds it
/// as a field of its own wire structs (aegis-host's files). Each value is checked while it is read, so errors carry
/// the YAML location; [`SharedRetries::layer`] gives the settings as a layer to merge under the format's own
/// defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedRetries(BreakerOverride);

impl SharedRetries {
    /// The block's settings: `failure_threshold`, `timeout` and `recovery_time`, each only if written.
    pub fn layer(&self) -> BreakerOverride {
        self.0.clone()
    }
}

impl<'de> Deserialize<'de> for SharedRetries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = RetriesWire::deserialize(d)?;
        Ok(SharedRetries(BreakerOverride {
            failure_threshold: w.circuit_breaker_threshold,
            timeout: w.circuit_breaker_timeout.map(|d| d.0),
            recovery_time: w.circuit_breaker_recovery_time.map(|d| (!d.0.is_zero()).then_some(d.0)),
            ..BreakerOverride::default()
        }))
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "seed 002's block of circuit_breaker_threshold, circuit_breaker_timeout and circuit_breaker_recovery_time"
)]
struct RetriesWire {
    #[serde(default, deserialize_with = "at_least_one")]
    circuit_breaker_threshold: Option<u32>,
    #[serde(default)]
    circuit_breaker_timeout: Option<DurationWire>,
    #[serde(default)]
    circuit_breaker_recovery_time: Option<DurationWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigWire {
    #[serde(default)]
    defaults: BreakerWire,
    #[serde(default)]
    services: BTreeMap<String, BreakerWire>,
    history: Option<usize>,
    /// seed-002 shared-config block.
    retries: Option<SharedRetries>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum WindowWire {
    Count { size: u32 },
    Time { size: DurationWire, buckets: Option<u32> },
}

/// One breaker section; accepts snake_case and the seed-000 camelCase names.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerWire {
    enabled: Option<bool>,
    #[serde(alias = "failureThreshold", alias = "threshold")]
    failure_threshold: Option<u32>,
    #[serde(alias = "resetTimeout", alias = "reset_timeout")]
    timeout: Option<DurationWire>,
    #[serde(alias = "recoveryTime", alias = "interval")]
    recovery_time: Option<DurationWire>,
    #[serde(alias = "successThreshold")]
    success_threshold: Option<u32>,
    #[serde(alias = "maxRequests")]
    max_requests: Option<u32>,
    #[serde(alias = "slowCallDuration")]
    slow_call_duration: Option<DurationWire>,
    /// Percent.
    #[serde(alias = "failureRateThreshold")]
    failure_rate_threshold: Option<f64>,
    /// Percent.
    #[serde(alias = "slowCallRateThreshold")]
    slow_call_rate_threshold: Option<f64>,
    #[serde(alias = "minimumCalls", alias = "minimumNumberOfCalls")]
    minimum_calls: Option<u32>,
    window: Option<WindowWire>,
}

impl BreakerWire {
    fn into_override(self) -> BreakerOverride {
        let window = self.window.map(|w| match w {
            WindowWire::Count { size } => WindowKind::Count(size),
            WindowWire::Time { size, buckets } => WindowKind::Time { size: size.0, buckets: buckets.unwrap_or(10) },
        });
        BreakerOverride {
            enabled: self.enabled,
            failure_threshold: self.failure_threshold,
            timeout: self.timeout.map(|d| d.0),
            recovery_time: self.recovery_time.map(|d| (!d.0.is_zero()).then_some(d.0)),
            success_threshold: self.success_threshold,
            max_requests: self.max_requests,
            slow_call_duration: self.slow_call_duration.map(|d| d.0),
            failure_rate_threshold: self.failure_rate_threshold.map(|p| p / 100.0),
            slow_call_rate_threshold: self.slow_call_rate_threshold.map(|p| p / 100.0),
            minimum_calls: self.minimum_calls,
            window,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const YAML: &str = r#"
history: 50
retries:
  circuit_breaker_threshold: 5
  circuit_breaker_timeout: 60s
  circuit_breaker_recovery_time: 300s
defaults:
  success_threshold: 2
  slow_call_duration: 500ms
  window: { type: time, size: 30s, buckets: 6 }
services:
  minio:
    failure_threshold: 10
    timeout: 2m
    recovery_time: 5m
  git:
    failureThreshold: 3
    resetTimeout: 5m
    failure_rate_threshold: 50
    minimum_calls: 20
    window: { type: count, size: 40 }
  maintenance-svc:
    enabled: false
"#;

    #[test]
    fn parses_defaults_services_and_seed_002_block() {
        let c = ManagerConfig::from_yaml(YAML).unwrap();
        assert_eq!(c.history, 50);
        assert_eq!(c.defaults.failure_threshold, 5);
        assert_eq!(c.defaults.timeout, Duration::from_secs(60));
        assert_eq!(c.defaults.recovery_time, Some(Duration::from_secs(300)));
        assert_eq!(c.defaults.success_threshold, 2);
        assert_eq!(c.defaults.window, WindowKind::Time { size: Duration::from_secs(30), buckets: 6 });
        let minio = c.resolve("minio");
        assert_eq!((minio.failure_threshold, minio.timeout), (10, Duration::from_secs(120)));
        assert_eq!(minio.success_threshold, 2, "inherited");
        let git = c.resolve("git");
        assert_eq!(git.failure_rate_threshold, Some(0.5));
        assert_eq!(git.window, WindowKind::Count(40));
        assert!(!c.resolve("maintenance-svc").enabled);
        assert_eq!(c.resolve("unknown"), c.defaults);
    }

    #[test]
    fn env_overrides_follow_precedence() {
        let env: HashMap<&str, &str> = [
            ("CIRCUIT_BREAKER_THRESHOLD", "7"),
            ("CIRCUIT_BREAKER_TIMEOUT", "90s"),
            ("CIRCUIT_BREAKER_RECOVERY_TIME", "0"),
            ("CIRCUIT_BREAKER_MINIO_TIMEOUT", "10m"),
            ("CIRCUIT_BREAKER_MAINTENANCE_SVC_ENABLED", "true"),
        ]
        .into();
        let c = ManagerConfig::from_yaml(YAML).unwrap().with_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.defaults.failure_threshold, 7);
        assert_eq!(c.defaults.timeout, Duration::from_secs(90));
        assert_eq!(c.defaults.recovery_time, None);
        let minio = c.resolve("minio");
        assert_eq!(minio.failure_threshold, 10, "service YAML beats global env");
        assert_eq!(minio.timeout, Duration::from_secs(600), "service env beats service YAML");
        assert!(c.resolve("maintenance-svc").enabled);
        assert_eq!(c.resolve("other").failure_threshold, 7);
    }

    #[test]
    fn errors_name_field_and_value() {
        let e = ManagerConfig::default().with_env(|k| (k == "CIRCUIT_BREAKER_TIMEOUT").then(|| "soon".into()));
        let msg = e.unwrap_err().to_string();
        assert!(msg.contains("CIRCUIT_BREAKER_TIMEOUT") && msg.contains("soon"), "{msg}");
        let e = ManagerConfig::from_yaml("services:\n  a:\n    failure_rate_threshold: 150\n").unwrap_err();
        assert!(e.to_string().contains("services.a.failure_rate_threshold"), "{e}");
        let e = ManagerConfig::from_yaml("defaults:\n  bogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = ManagerConfig::from_yaml("defaults:\n  failure_threshold: 0\n").unwrap_err();
        assert!(e.to_string().contains("defaults.failure_threshold"), "{e}");
        assert!(ManagerConfig::from_yaml("").is_err() || ManagerConfig::from_yaml("{}").is_ok());
    }

    #[test]
    fn seed_002_block_errors_are_located_at_the_value() {
        let cases = [
            ("retries:\n  circuit_breaker_threshold: 0\n", "retries.circuit_breaker_threshold", "line 2 column 30"),
            ("retries:\n  circuit_breaker_timeout: soon\n", "retries.circuit_breaker_timeout", "line 2 column 28"),
            ("retries:\n  circuit_breaker_recovery_time: -5\n", "circuit_breaker_recovery_time", "line 2 column 34"),
            ("retries:\n  circuit_breaker_retries: 3\n", "circuit_breaker_retries", "line 2 column 3"),
        ];
        for (yaml, field, at) in cases {
            let e = ManagerConfig::from_yaml(yaml).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(at), "{yaml}: {e}");
        }
        let e = ManagerConfig::from_yaml("defaults:\n  window: {type: time, size: 3 fortnights}\n").unwrap_err();
        // Inside the tagged `window:` the parser has buffered the mapping: the error is located at `defaults:`.
        assert!(e.to_string().contains("defaults: invalid duration \"3 fortnights\""), "{e}");
    }

    #[test]
    fn seed_002_block_embeds_in_other_formats() {
        #[derive(Deserialize)]
        struct Host {
            retries: SharedRetries,
        }
        let h: Host = serde_yaml::from_str(
            "retries:\n  circuit_breaker_threshold: 5\n  circuit_breaker_timeout: 60s\n  circuit_breaker_recovery_time: 0\n",
        )
        .unwrap();
        let o = h.retries.layer();
        assert_eq!((o.failure_threshold, o.timeout), (Some(5), Some(Duration::from_secs(60))));
        assert_eq!(o.recovery_time, Some(None), "0 switches the count reset off");
        assert_eq!(o.success_threshold, None, "only the block's three settings");
    }

    #[test]
    fn env_values_are_checked_one_by_one() {
        let cases = [
            ("CIRCUIT_BREAKER_THRESHOLD", "0", "must be at least 1"),
            ("CIRCUIT_BREAKER_SUCCESS_THRESHOLD", "0", "must be at least 1"),
            ("CIRCUIT_BREAKER_FAILURE_RATE_THRESHOLD", "150%", "(0, 100]"),
            ("CIRCUIT_BREAKER_RECOVERY_TIME", "5 parsecs", "unknown unit"),
        ];
        for (key, value, why) in cases {
            let e = BreakerOverride::from_env(|k| (k == key).then(|| value.to_owned())).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(value) && e.contains(why), "{e}");
        }
        let o = BreakerOverride::from_env(|k| (k == "CIRCUIT_BREAKER_RECOVERY_TIME").then(|| "5m".to_owned())).unwrap();
        assert_eq!(o, BreakerOverride { recovery_time: Some(Some(Duration::from_secs(300))), ..Default::default() });
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(env_name("my-svc.v2"), "MY_SVC_V2");
    }

    #[test]
    fn settings_from_config() {
        let c = BreakerConfig { failure_rate_threshold: Some(0.5), ..BreakerConfig::default() };
        let s = c.settings("x");
        assert_eq!(s.name(), "x");
        assert!(format!("{:?}", s.predicate()).contains("AnyOf"));
        let s = BreakerConfig::default().settings("y");
        assert_eq!(format!("{:?}", s.predicate()), "ConsecutiveFailures(5)");
        assert_eq!(s.count_interval(), Some(Duration::from_secs(300)));
    }
}
