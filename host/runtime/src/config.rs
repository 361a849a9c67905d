//! The YAML config: wire structs (private, `deny_unknown_fields`, exactly the seed formats) and the validated domain
//! types the rest of the runtime uses. All conversion and validation happens in [`Config::from_yaml`].
//!
//! A file is either a mapping with `services:` (and optional `admin:`, `plugins:`, `notifications:`, `storage:`,
//! `shutdown:`, `defaults:` and seed 002's `retries:`) or, as in the seed documents, a bare list of services.
//! `defaults:` holds any per-service setting; a service's own value wins, field by field. Relative paths are relative
//! to the working directory.
//!
//! Seed 002's settings — the `retries:` block and the `CIRCUIT_BREAKER_*` variables — are parsed by aegis-core's
//! manager config, never here, so they mean the same in both places: `threshold` is `failureThreshold`, `timeout`
//! is `resetTimeout` (open → half-open), `recovery_time` is `recoveryTime` (the closed-state period after which
//! counted failures are forgotten). Breaker settings layer, lowest first: built-in defaults < `retries:` <
//! `defaults.actions.circuitBreaker` < `CIRCUIT_BREAKER_*` < the service's own `actions.circuitBreaker`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegis_core::manager::{BreakerOverride, SharedRetries};
use aegis_core::{BackoffSettings, BudgetSettings, Jitter};
use aegis_plugin::{Capabilities, QuarantinePolicy, SandboxLimits};
use serde::Deserialize;

mod cluster;
mod detection;
mod history;
mod policy;
mod summary;

pub use self::cluster::{ClusterConfig, DEFAULT_KEY_PREFIX, DEFAULT_LEASE_TTL};
pub use self::detection::{AlertRule, AlertTarget, AlertingConfig, AnomalyConfig, Detector, LogsConfig, Thresholds};
pub use self::history::HistoryConfig;
use self::policy::{RecoveryPolicyWire, TripPolicyWire};
pub use self::summary::Summary;
use crate::error::ConfigError;
use crate::probe::{HttpOptions, TlsOptions};

/// Default `maxConcurrentChecks`: far above what a healthy host needs (checks take milliseconds), low enough to bound
/// connections and memory when the host falls behind.
pub const DEFAULT_MAX_CONCURRENT_CHECKS: usize = 64;

/// Default admin (metrics + API) address: loopback only.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9797";

// ---------------------------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileWire {
    #[serde(default)]
    admin: Option<AdminWire>,
    #[serde(default)]
    storage: Option<StorageWire>,
    #[serde(default)]
    shutdown: Option<ShutdownWire>,
    #[serde(default)]
    defaults: Option<DefaultsWire>,
    /// Seed 002's shared breaker settings, under `defaults:` (see the module doc).
    #[serde(default)]
    retries: Option<SharedRetries>,
    #[serde(default)]
    plugins: Option<PluginsWire>,
    #[serde(default)]
    notifications: Option<NotifyWire>,
    #[serde(default)]
    retry_budget: Option<RetryBudgetWire>,
    /// Checks in flight at once, across all services.
    #[serde(default)]
    max_concurrent_checks: Option<usize>,
    #[serde(default)]
    logs: Option<detection::LogsWire>,
    #[serde(default, rename = "anomaly_detection")]
    anomaly_detection: Option<detection::AnomalyWire>,
    #[serde(default)]
    alerting: Option<detection::AlertingWire>,
    /// Several replicas on one Redis.
    #[serde(default)]
    cluster: Option<cluster::ClusterWire>,
    /// Optional: a file may only monitor logs (seed 004's example).
    #[serde(default)]
    services: Vec<ServiceWire>,
}

/// Caps check retries across all services (Finagle/Envoy retry budget).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetryBudgetWire {
    #[serde(default)]
    ratio: Option<f64>,
    #[serde(default)]
    min_per_second: Option<f64>,
    #[serde(default, deserialize_with = "opt_duration")]
    window: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminWire {
    #[serde(default)]
    address: Option<String>,
    /// Bearer token for mutating API calls; `AEGIS_ADMIN_TOKEN` in the environment takes precedence.
    #[serde(default)]
    token: Option<String>,
    /// `aegis_health_check_duration_seconds` per service (14 series each) instead of one histogram of all checks.
    #[serde(default, rename = "perServiceLatency")]
    per_service_latency: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageWire {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    history: Option<self::history::HistoryWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ShutdownWire {
    stop_children: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DefaultsWire {
    #[serde(default, deserialize_with = "opt_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    actions: Option<ActionsWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PluginsWire {
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "opt_duration")]
    deadline: Option<Duration>,
    #[serde(default)]
    memory_limit_mib: Option<u32>,
    /// Where compiled plugins are cached (never inside `dir`).
    #[serde(default)]
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    quarantine: Option<QuarantineWire>,
    /// Capabilities granted per plugin name; a plugin whose manifest asks for more is not loaded.
    #[serde(default)]
    grants: BTreeMap<String, GrantWire>,
    /// Watch the plugin directory and reload changed, added and removed plugins (default true).
    #[serde(default)]
    watch: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    watch_interval: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct QuarantineWire {
    #[serde(default)]
    strikes: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    window: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    cool_down: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    max_cool_down: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantWire {
    #[serde(default)]
    stderr: bool,
    #[serde(default)]
    clocks: bool,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    read_dirs: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceWire {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    endpoint: String,
    #[serde(default, deserialize_with = "opt_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    process: Option<ProcessWire>,
    #[serde(default)]
    http: Option<HttpWire>,
    #[serde(default)]
    grpc: Option<GrpcWire>,
    #[serde(default)]
    actions: Option<ActionsWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HttpWire {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    expected_status: Option<OneOrMany>,
    #[serde(default)]
    body_regex: Option<String>,
    #[serde(default)]
    tls: Option<TlsWire>,
}

/// TLS settings of an `https://` check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsWire {
    /// PEM file of the CA certificate(s) to trust for this service, instead of the system roots.
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// Skip certificate verification entirely (test setups only; logged as a warning).
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrpcWire {
    /// The `grpc.health.v1` service name to ask about; empty (the default) means the whole server.
    #[serde(default)]
    service: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProcessWire {
    command: Vec<String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionsWire {
    #[serde(default)]
    on_failure: Option<OnFailure>,
    #[serde(default)]
    circuit_breaker: Option<BreakerWire>,
    #[serde(default)]
    backoff: Option<BackoffWire>,
    #[serde(default)]
    restart: Option<RestartWire>,
    #[serde(default)]
    notify: Option<NotifyWire>,
    #[serde(default)]
    restart_limit: Option<RestartLimitWire>,
    /// A recovery-strategy plugin deciding restart / notify / ignore / wait instead of the fixed `onFailure`.
    #[serde(default)]
    recovery_policy: Option<RecoveryPolicyWire>,
}

impl ActionsWire {
    /// `self` with every unset field taken from `defaults`.
    fn or(self, defaults: &ActionsWire) -> ActionsWire {
        let d = defaults.clone();
        ActionsWire {
            on_failure: self.on_failure.or(d.on_failure),
            circuit_breaker: merge(self.circuit_breaker, d.circuit_breaker, BreakerWire::or),
            backoff: merge(self.backoff, d.backoff, BackoffWire::or),
            restart: self.restart.or(d.restart),
            notify: self.notify.or(d.notify),
            restart_limit: self.restart_limit.or(d.restart_limit),
            recovery_policy: self.recovery_policy.or(d.recovery_policy),
        }
    }
}

fn merge<T>(own: Option<T>, defaults: Option<T>, or: fn(T, T) -> T) -> Option<T> {
    match (own, defaults) {
        (Some(own), Some(defaults)) => Some(or(own, defaults)),
        (own, defaults) => own.or(defaults),
    }
}

/// A seed-002 layer (from aegis-core's parser) in this file's terms; `None` when it sets nothing used here.
fn seed_002_layer(o: &BreakerOverride) -> Option<BreakerWire> {
    let w = BreakerWire {
        enabled: o.enabled,
        failure_threshold: o.failure_threshold,
        reset_timeout: o.timeout,
        // "Off" travels as zero, as a file writes it.
        recovery_time: o.recovery_time.map(|d| d.unwrap_or(Duration::ZERO)),
        success_threshold: o.success_threshold,
        slow_call_duration: o.slow_call_duration,
        window_size: None,
        trip_policy: None,
    };
    let any = w.enabled.is_some()
        || w.failure_threshold.is_some()
        || w.reset_timeout.is_some()
        || w.recovery_time.is_some()
        || w.success_threshold.is_some()
        || w.slow_call_duration.is_some();
    any.then_some(w)
}

/// The variables aegis-core understands that have no counterpart here: half-open admits one check at a time, and
/// rate-based trips are a trip-policy plugin's job.
fn unsupported_env(o: &BreakerOverride) -> Vec<&'static str> {
    [
        ("CIRCUIT_BREAKER_MAX_REQUESTS", o.max_requests.is_some()),
        ("CIRCUIT_BREAKER_FAILURE_RATE_THRESHOLD", o.failure_rate_threshold.is_some()),
        ("CIRCUIT_BREAKER_SLOW_CALL_RATE_THRESHOLD", o.slow_call_rate_threshold.is_some()),
        ("CIRCUIT_BREAKER_MINIMUM_CALLS", o.minimum_calls.is_some()),
    ]
    .into_iter()
    .filter_map(|(var, set)| set.then_some(var))
    .collect()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RestartLimitWire {
    /// At most this many restarts ...
    burst: u32,
    /// ... within this period; then Aegis gives up on the service and raises an event.
    #[serde(deserialize_with = "opt_duration")]
    interval: Option<Duration>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BreakerWire {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    failure_threshold: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    reset_timeout: Option<Duration>,
    /// `0s` switches a default off.
    #[serde(default, deserialize_with = "opt_duration")]
    recovery_time: Option<Duration>,
    #[serde(default)]
    success_threshold: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    slow_call_duration: Option<Duration>,
    #[serde(default)]
    window_size: Option<u32>,
    #[serde(default)]
    trip_policy: Option<TripPolicyWire>,
}

impl BreakerWire {
    fn or(self, d: BreakerWire) -> BreakerWire {
        BreakerWire {
            enabled: self.enabled.or(d.enabled),
            failure_threshold: self.failure_threshold.or(d.failure_threshold),
            reset_timeout: self.reset_timeout.or(d.reset_timeout),
            recovery_time: self.recovery_time.or(d.recovery_time),
            success_threshold: self.success_threshold.or(d.success_threshold),
            slow_call_duration: self.slow_call_duration.or(d.slow_call_duration),
            window_size: self.window_size.or(d.window_size),
            trip_policy: self.trip_policy.or(d.trip_policy),
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackoffWire {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    initial_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    max_interval: Option<Duration>,
    #[serde(default)]
    multiplier: Option<f64>,
    #[serde(default)]
    jitter: Option<JitterWire>,
    #[serde(default, deserialize_with = "opt_duration")]
    reset_after: Option<Duration>,
}

impl BackoffWire {
    fn or(self, d: BackoffWire) -> BackoffWire {
        BackoffWire {
            enabled: self.enabled.or(d.enabled),
            initial_interval: self.initial_interval.or(d.initial_interval),
            max_interval: self.max_interval.or(d.max_interval),
            multiplier: self.multiplier.or(d.multiplier),
            jitter: self.jitter.or(d.jitter),
            reset_after: self.reset_after.or(d.reset_after),
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum JitterWire {
    None,
    Full,
    Equal,
    Decorrelated,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RestartWire {
    command: String,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct NotifyWire {
    webhook: String,
}

/// Durations are written as in the seeds: `5s`, `20s`, `1m`, `500ms`, `1h 30m`. A visitor (rather than reading a
/// `Value` first) keeps the parser's line and column on the offending scalar.
fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct DurationVisitor;

    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration with a unit like `5s` or `500ms`")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            humantime::parse_duration(s.trim())
                .map(Some)
                .map_err(|e| E::custom(format!("invalid duration {s:?}: {e} (write it like `5s` or `500ms`)")))
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Err(E::custom(format!("the bare number `{n}` is not a duration: add a unit, like `{n}s` or `{n}ms`")))
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Err(E::custom(format!("the bare number `{n}` is not a duration: add a unit, like `{n}s`")))
        }

        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!("the bare number `{n}` is not a duration: add a unit, like `{n}s`")))
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    d.deserialize_any(DurationVisitor)
}

fn describe(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Null => "nothing".into(),
        serde_yaml::Value::Bool(b) => format!("`{b}`"),
        serde_yaml::Value::Number(n) => format!("the bare number `{n}`"),
        serde_yaml::Value::String(s) => format!("{s:?}"),
        serde_yaml::Value::Sequence(_) => "a list".into(),
        serde_yaml::Value::Mapping(_) => "a mapping".into(),
        serde_yaml::Value::Tagged(_) => "a tagged value".into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Domain
// ---------------------------------------------------------------------------------------------------------------

/// What to do when a service's breaker opens (seed 000 `onFailure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Restart,
    Notify,
    Ignore,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Restart => "restart",
            OnFailure::Notify => "notify",
            OnFailure::Ignore => "ignore",
        }
    }
}

/// `Debug` is written out so that the admin token never reaches a log through `{:?}`.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// The file this config came from, for messages.
    pub source: PathBuf,
    pub admin_address: SocketAddr,
    /// Bearer token that mutating admin API calls must carry; without one, mutations are refused.
    pub admin_token: Option<String>,
    /// `admin.perServiceLatency`: the check-latency histogram per service, instead of one of all checks.
    pub per_service_latency: bool,
    /// The SQLite file holding breaker states, restart counters and events.
    pub storage_path: PathBuf,
    /// `storage.history`: what recorded history the state database keeps.
    pub history: HistoryConfig,
    /// On SIGTERM: stop supervised processes (default) or leave them running.
    pub stop_children_on_exit: bool,
    pub plugins: PluginsConfig,
    /// Shared budget for check retries: retries stay under `ratio` × checks (plus a small reserve).
    pub retry_budget: BudgetSettings,
    /// Checks in flight at once, across all services; a due check waits for a slot.
    pub max_concurrent_checks: usize,
    pub services: Vec<ServiceConfig>,
    pub logs: LogsConfig,
    pub anomaly: AnomalyConfig,
    pub alerting: AlertingConfig,
    /// `None`: a single node.
    pub cluster: Option<ClusterConfig>,
    /// `CIRCUIT_BREAKER_*` variables that were set but name a setting aegis-host's breakers do not have.
    pub ignored_env: Vec<&'static str>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            source,
            admin_address,
            admin_token,
            per_service_latency,
            storage_path,
            history,
            stop_children_on_exit,
            plugins,
            retry_budget,
            max_concurrent_checks,
            services,
            logs,
            anomaly,
            alerting,
            cluster,
            ignored_env,
        } = self;
        f.debug_struct("Config")
            .field("source", source)
            .field("admin_address", admin_address)
            .field("admin_token", &admin_token.as_ref().map(|_| crate::redact::MASK))
            .field("per_service_latency", per_service_latency)
            .field("storage_path", storage_path)
            .field("history", history)
            .field("stop_children_on_exit", stop_children_on_exit)
            .field("plugins", plugins)
            .field("retry_budget", retry_budget)
            .field("max_concurrent_checks", max_concurrent_checks)
            .field("services", services)
            .field("logs", logs)
            .field("anomaly", anomaly)
            .field("alerting", alerting)
            .field("cluster", cluster)
            .field("ignored_env", ignored_env)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PluginsConfig {
    pub dir: PathBuf,
    pub limits: SandboxLimits,
    /// `None`: `aegis-plugin-cache/` beside the state database.
    pub cache_dir: Option<PathBuf>,
    pub quarantine: QuarantinePolicy,
    pub grants: BTreeMap<String, Capabilities>,
    /// How often the plugin directory is checked for changes; `None`: only SIGHUP reloads plugins.
    pub watch: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeConfig {
    Http {
        url: String,
        /// `None`: a plain `GET` that any 2xx passes, as most services probe. Boxed otherwise: every service keeps
        /// its config, and the options take ~110 bytes inline.
        options: Option<Box<HttpOptions>>,
    },
    Tcp {
        address: String,
    },
    /// `uri` is `http://host:port`; `service` the health service name (empty: the server).
    Grpc {
        uri: String,
        service: String,
    },
    /// Run with `sh -c`; exit 0 is healthy.
    Script {
        command: String,
    },
}

impl ProbeConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeConfig::Http { .. } => "http",
            ProbeConfig::Tcp { .. } => "tcp",
            ProbeConfig::Grpc { .. } => "grpc",
            ProbeConfig::Script { .. } => "script",
        }
    }
}

impl PartialEq for HttpOptions {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method
            && self.headers == other.headers
            && self.expected_status == other.expected_status
            && self.body.as_ref().map(regex::Regex::as_str) == other.body.as_ref().map(regex::Regex::as_str)
            && self.tls.as_ref().map(|t| (&t.ca_file, t.insecure_skip_verify))
                == other.tls.as_ref().map(|t| (&t.ca_file, t.insecure_skip_verify))
    }
}

/// Give up restarting after `burst` restarts within `interval` (systemd's StartLimitBurst/StartLimitIntervalSec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    pub burst: u32,
    pub interval: Duration,
}

/// One service's settings. Each running service keeps its own copy for its whole life, so the parts most services leave
/// unset (process, restart command, plugin references) are boxed: `None` costs a pointer instead of the part's size
/// (~280 bytes a service together).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    pub name: std::sync::Arc<str>,
    pub endpoint: String,
    pub probe: ProbeConfig,
    pub interval: Duration,
    pub timeout: Duration,
    /// Extra attempts of a failed check before it counts as one failure.
    pub retries: u32,
    pub process: Option<Box<ProcessConfig>>,
    pub on_failure: OnFailure,
    pub breaker: BreakerConfig,
    /// `None` when backoff is disabled: restarts then follow each other immediately.
    pub backoff: Option<BackoffSettings>,
    pub restart: Option<Box<RestartCommand>>,
    pub restart_limit: Option<RestartLimit>,
    pub notify_webhook: Option<String>,
    /// A recovery-strategy plugin; `None`: `on_failure` decides.
    pub recovery_policy: Option<Box<PluginRef>>,
    /// A recovery-strategy plugin asked alongside the live decision and only compared with it.
    pub recovery_shadow: Option<Box<PluginRef>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessConfig {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartCommand {
    /// Run with `sh -c`.
    pub command: String,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// A disabled breaker never opens: every failure goes straight to the recovery action.
    pub enabled: bool,
    pub failure_threshold: u32,
    pub reset_timeout: Duration,
    /// Closed state: counted failures are forgotten this often (gobreaker `Interval`, seed 002 `recovery_time`);
    /// `None` keeps them until the next state change.
    pub recovery_time: Option<Duration>,
    pub success_threshold: u32,
    pub slow_call_duration: Option<Duration>,
    pub window_size: u32,
    pub trip_policy: Option<Box<PluginRef>>,
    /// A trip-predicate plugin asked on the same inputs as the live predicate and only compared with it.
    pub trip_shadow: Option<Box<PluginRef>>,
}

/// A plugin bound to one service (or log source, or receiver), with its `config:` map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRef {
    /// The plugin's name (its file stem or manifest name).
    pub plugin: String,
    pub config: Vec<(String, String)>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 3,
            reset_timeout: Duration::from_secs(30),
            recovery_time: None,
            success_threshold: 1,
            slow_call_duration: None,
            window_size: 20,
            trip_policy: None,
            trip_shadow: None,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_owned(), source })?;
        Config::from_yaml_with_env(path, &text, &|key| std::env::var(key).ok())
    }

    /// Parses and validates config text without looking at the environment; `source` only names the file.
    pub fn from_yaml(source: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_with_env(source, text, &|_| None)
    }

    /// Parses and validates config text; `env` looks up environment overrides (`AEGIS_ADMIN_TOKEN`).
    pub fn from_yaml_with_env(
        source: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let parse_err = |e: serde_yaml::Error| {
            let (line, column, message) = locate_yaml_error(text, &e);
            ConfigError::Parse { file: source.to_owned(), line, column, message }
        };
        // A top-level list is the seed documents' form: just the services.
        let top: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_err)?;
        let wire = if top.is_sequence() {
            let services: Vec<ServiceWire> = serde_yaml::from_str(text).map_err(parse_err)?;
            FileWire {
                admin: None,
                storage: None,
                shutdown: None,
                defaults: None,
                retries: None,
                plugins: None,
                notifications: None,
                retry_budget: None,
                max_concurrent_checks: None,
                logs: None,
                anomaly_detection: None,
                alerting: None,
                cluster: None,
                services,
            }
        } else {
            serde_yaml::from_str(text).map_err(parse_err)?
        };
        Validator { file: source }.config(wire, env)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| &*s.name == name)
    }

    /// Things that are allowed but probably not what the operator meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.on_failure == OnFailure::Restart && s.restart.is_none() && s.process.is_none())
            .map(|s| {
                format!(
                    "service `{}`: onFailure is `restart` but there is no `process:` to restart and no \
                     `actions.restart.command`; restarts will only be logged",
                    s.name
                )
            })
            .collect();
        warnings.extend(self.ignored_env.iter().map(|var| {
            format!("environment: {var} is set, but aegis-host's breakers have no such setting; it is ignored")
        }));
        warnings.extend(self.logs.warnings.iter().cloned());
        warnings.extend(self.anomaly.warnings.iter().cloned());
        if self.services.is_empty() && !self.logs.enabled {
            warnings.push("no services and no logs: nothing to supervise".to_owned());
        }
        warnings
    }
}

/// Where a YAML error lies in `text` (line, column, 1-based) and its message without serde_yaml's location suffix;
/// shared with the other YAML files of aegis-host (scenarios).
pub fn locate_yaml_error(text: &str, e: &serde_yaml::Error) -> (usize, usize, String) {
    let (line, column) = e.location().map_or((1, 1), |l| within(text, l.line(), l.column()));
    (line, column, strip_location(&e.to_string()))
}

/// The parser's location, kept within `text`: at the end of a text that does not end with a line break, libyaml
/// reports the line after the last one, which no editor shows; that is the end of the last line.
fn within(text: &str, line: usize, column: usize) -> (usize, usize) {
    // YAML breaks lines at `\r\n`, `\r` and `\n`.
    let bytes = text.as_bytes();
    let breaks =
        bytes.iter().enumerate().filter(|&(i, b)| *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n')));
    let lines = breaks.count() + 1;
    if line <= lines {
        return (line, column);
    }
    let last = text.rsplit(['\r', '\n']).next().unwrap_or_default();
    (lines, last.chars().count() + 1)
}

/// serde_yaml appends " at line L column C"; the error already carries the location in front.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: self.file.to_owned(), field: field.into(), message: message.into() }
    }

    fn config(&self, wire: FileWire, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let (address, token, per_service_latency) =
            wire.admin.map(|a| (a.address, a.token, a.per_service_latency)).unwrap_or_default();
        let address = address.unwrap_or_else(|| DEFAULT_ADMIN_ADDRESS.to_owned());
        let admin_address = address.parse().map_err(|e| {
            self.invalid("admin.address", format!("{address:?} is not an address like 127.0.0.1:9797: {e}"))
        })?;
        let admin_token = env("AEGIS_ADMIN_TOKEN").or(token).filter(|t| !t.trim().is_empty());
        let (storage_path, history) = wire.storage.map(|s| (s.path, s.history)).unwrap_or_default();
        let storage_path = storage_path.unwrap_or_else(|| PathBuf::from("aegis.db"));
        let history = self.history(history)?;
        let stop_children_on_exit = wire.shutdown.is_none_or(|s| s.stop_children);
        let mut defaults = wire.defaults.unwrap_or_default();
        // Seed 002's layers around the file's own defaults (order in the module doc).
        let shared = wire.retries.map(|r| r.layer()).unwrap_or_default();
        let from_env = BreakerOverride::from_env(env).map_err(|e| self.env_invalid(e))?;
        let ignored_env = unsupported_env(&from_env);
        let mut actions = defaults.actions.take().unwrap_or_default();
        let file = merge(actions.circuit_breaker, seed_002_layer(&shared), BreakerWire::or);
        actions.circuit_breaker = merge(seed_002_layer(&from_env), file, BreakerWire::or);
        defaults.actions = Some(actions);
        let plugins = self.plugins(wire.plugins)?;
        let retry_budget = self.retry_budget(wire.retry_budget)?;
        let max_concurrent_checks = match wire.max_concurrent_checks {
            None => DEFAULT_MAX_CONCURRENT_CHECKS,
            Some(0) => return Err(self.invalid("maxConcurrentChecks", "must be at least 1")),
            Some(n) => n,
        };
        let default_webhook = match wire.notifications {
            Some(n) => Some(self.url("notifications.webhook", &n.webhook)?),
            None => None,
        };
        let mut names = HashSet::new();
        let mut services = Vec::with_capacity(wire.services.len());
        for (i, s) in wire.services.into_iter().enumerate() {
            let service = self.service(i, s, &defaults, default_webhook.as_deref())?;
            if !names.insert(service.name.clone()) {
                return Err(
                    self.invalid(format!("services[{i}].name"), format!("duplicate service name `{}`", service.name))
                );
            }
            services.push(service);
        }
        let names: Vec<&str> = services.iter().map(|s| &*s.name).collect();
        let logs = self.logs(wire.logs, &names)?;
        let anomaly = self.anomaly(wire.anomaly_detection, &names)?;
        let alerting = self.alerting(wire.alerting, default_webhook.as_deref())?;
        let cluster = self.cluster(wire.cluster, env)?;
        Ok(Config {
            source: self.file.to_owned(),
            admin_address,
            admin_token,
            per_service_latency,
            storage_path,
            history,
            stop_children_on_exit,
            plugins,
            retry_budget,
            max_concurrent_checks,
            services,
            logs,
            anomaly,
            alerting,
            cluster,
            ignored_env,
        })
    }

    /// A `CIRCUIT_BREAKER_*` value rejected by aegis-core's parser. (The `retries:` block's errors come from the
    /// YAML parser instead, with their line and column.)
    fn env_invalid(&self, e: aegis_core::ConfigError) -> ConfigError {
        match e {
            aegis_core::ConfigError::Invalid { field, value, reason } => {
                self.invalid(field, format!("invalid value {value:?}: {reason}"))
            }
            other => self.invalid("CIRCUIT_BREAKER_*", other.to_string()),
        }
    }

    fn retry_budget(&self, wire: Option<RetryBudgetWire>) -> Result<BudgetSettings, ConfigError> {
        let mut budget = BudgetSettings::default();
        if let Some(w) = wire {
            budget.ratio = w.ratio.unwrap_or(budget.ratio);
            budget.min_per_second = w.min_per_second.unwrap_or(budget.min_per_second);
            budget.window = w.window.unwrap_or(budget.window);
        }
        budget.validate().map_err(|e| self.invalid("retryBudget", e.to_string()))?;
        Ok(budget)
    }

    fn plugins(&self, wire: Option<PluginsWire>) -> Result<PluginsConfig, ConfigError> {
        let mut c = PluginsConfig {
            dir: PathBuf::from("plugins"),
            limits: SandboxLimits::default(),
            cache_dir: None,
            quarantine: QuarantinePolicy::default(),
            grants: BTreeMap::new(),
            watch: Some(Duration::from_secs(1)),
        };
        let Some(p) = wire else { return Ok(c) };
        if let Some(d) = p.dir {
            c.dir = d;
        }
        if let Some(deadline) = p.deadline {
            if deadline.is_zero() {
                return Err(self.invalid("plugins.deadline", "must be greater than zero"));
            }
            c.limits.deadline = deadline;
        }
        if let Some(mib) = p.memory_limit_mib {
            if mib == 0 {
                return Err(self.invalid("plugins.memoryLimitMib", "must be at least 1"));
            }
            c.limits.memory_bytes = (mib as usize) << 20;
        }
        if let Some(dir) = p.cache_dir {
            if dir == c.dir {
                return Err(self.invalid("plugins.cacheDir", "must not be the plugin directory"));
            }
            c.cache_dir = Some(dir);
        }
        if let Some(q) = p.quarantine {
            let d = QuarantinePolicy::default();
            c.quarantine = QuarantinePolicy {
                strikes: q.strikes.unwrap_or(d.strikes),
                window: q.window.unwrap_or(d.window),
                cool_down: q.cool_down.unwrap_or(d.cool_down),
                max_cool_down: q.max_cool_down.unwrap_or(d.max_cool_down),
            };
            if c.quarantine.strikes == 0 || c.quarantine.window.is_zero() || c.quarantine.cool_down.is_zero() {
                return Err(self.invalid("plugins.quarantine", "strikes, window and coolDown must be positive"));
            }
            if c.quarantine.max_cool_down < c.quarantine.cool_down {
                return Err(self.invalid("plugins.quarantine.maxCoolDown", "must not be shorter than coolDown"));
            }
        }
        if p.watch == Some(false) {
            c.watch = None;
        } else if let Some(every) = p.watch_interval {
            if every.is_zero() {
                return Err(self.invalid("plugins.watchInterval", "must be greater than zero"));
            }
            c.watch = Some(every);
        }
        for (name, g) in p.grants {
            for dir in &g.read_dirs {
                if !dir.is_absolute() {
                    return Err(self.invalid(
                        format!("plugins.grants.{name}.readDirs"),
                        format!("{} must be an absolute path", dir.display()),
                    ));
                }
            }
            c.grants
                .insert(name, Capabilities { stderr: g.stderr, clocks: g.clocks, env: g.env, read_dirs: g.read_dirs });
        }
        Ok(c)
    }

    /// An http or https URL. Messages show it with its password masked: they reach logs and terminals.
    fn url(&self, field: &str, raw: &str) -> Result<String, ConfigError> {
        let shown = crate::redact::redact_url(raw);
        let parsed =
            reqwest::Url::parse(raw).map_err(|e| self.invalid(field, format!("{shown:?} is not a URL: {e}")))?;
        match parsed.scheme() {
            "http" | "https" => Ok(raw.to_owned()),
            other => Err(self.invalid(field, format!("{shown:?}: scheme `{other}` is not http or https"))),
        }
    }

    fn service(
        &self,
        i: usize,
        s: ServiceWire,
        defaults: &DefaultsWire,
        default_webhook: Option<&str>,
    ) -> Result<ServiceConfig, ConfigError> {
        let at = |field: &str| format!("services[{i}] ({}).{field}", s.name);
        if s.name.trim().is_empty() {
            return Err(self.invalid(format!("services[{i}].name"), "must not be empty"));
        }
        if s.http.is_some() && s.kind != "http" {
            return Err(self.invalid(at("http"), format!("`http:` options need `type: http`, not `{}`", s.kind)));
        }
        if s.grpc.is_some() && s.kind != "grpc" {
            return Err(self.invalid(at("grpc"), format!("`grpc:` options need `type: grpc`, not `{}`", s.kind)));
        }
        let probe = match s.kind.as_str() {
            "http" => ProbeConfig::Http {
                url: self.url(&at("endpoint"), &s.endpoint)?,
                options: self.http_options(&at, s.http)?,
            },
            "tcp" => ProbeConfig::Tcp { address: self.host_port(&at, &s.endpoint, "tcp://")? },
            "grpc" => {
                let address = self.host_port(&at, &s.endpoint, "http://")?;
                ProbeConfig::Grpc {
                    uri: format!("http://{address}"),
                    service: s.grpc.map(|g| g.service).unwrap_or_default(),
                }
            }
            "script" => {
                if s.endpoint.trim().is_empty() {
                    return Err(self.invalid(at("endpoint"), "a script check needs the command to run as its endpoint"));
                }
                ProbeConfig::Script { command: s.endpoint.clone() }
            }
            other => {
                return Err(self.invalid(
                    at("type"),
                    format!("unknown check type `{other}` (expected http, tcp, grpc or script)"),
                ));
            }
        };
        let interval = s.interval.or(defaults.interval).unwrap_or(Duration::from_secs(10));
        let timeout = s.timeout.or(defaults.timeout).unwrap_or(Duration::from_secs(5));
        if interval.is_zero() {
            return Err(self.invalid(at("interval"), "must be greater than zero"));
        }
        if timeout.is_zero() {
            return Err(self.invalid(at("timeout"), "must be greater than zero"));
        }
        let process = match s.process {
            None => None,
            Some(p) => {
                let mut command = p.command.into_iter();
                let program = command
                    .next()
                    .filter(|p| !p.trim().is_empty())
                    .ok_or_else(|| self.invalid(at("process.command"), "must name a program"))?;
                Some(ProcessConfig { program, args: command.collect(), cwd: p.cwd, env: p.env })
            }
        };
        let actions = s.actions.unwrap_or_default().or(&defaults.actions.clone().unwrap_or_default());
        let on_failure =
            actions.on_failure.unwrap_or(if process.is_some() { OnFailure::Restart } else { OnFailure::Notify });
        let breaker = self.breaker(&at, actions.circuit_breaker)?;
        let backoff = self.backoff(&at, actions.backoff)?;
        let restart = match actions.restart {
            None => None,
            Some(r) if r.command.trim().is_empty() => {
                return Err(self.invalid(at("actions.restart.command"), "must not be empty"));
            }
            Some(r) => {
                Some(RestartCommand { command: r.command, timeout: r.timeout.unwrap_or(Duration::from_secs(60)) })
            }
        };
        let notify_webhook = match actions.notify {
            Some(n) => Some(self.url(&at("actions.notify.webhook"), &n.webhook)?),
            None => default_webhook.map(str::to_owned),
        };
        let restart_limit = match actions.restart_limit {
            None => None,
            Some(l) => {
                let interval = l.interval.unwrap_or(Duration::ZERO);
                if l.burst == 0 || interval.is_zero() {
                    return Err(self.invalid(
                        at("actions.restartLimit"),
                        "burst must be at least 1 and interval greater than zero",
                    ));
                }
                Some(RestartLimit { burst: l.burst, interval })
            }
        };
        if on_failure == OnFailure::Notify && notify_webhook.is_none() {
            return Err(self.invalid(
                at("actions.onFailure"),
                "`notify` needs a webhook: set `actions.notify.webhook` or a top-level `notifications.webhook`",
            ));
        }
        let (recovery_policy, recovery_shadow) = match actions.recovery_policy {
            None => (None, None),
            Some(p) => {
                let p = self.policy(&at("actions.recoveryPolicy"), p.0)?;
                (p.live, p.shadow)
            }
        };
        Ok(ServiceConfig {
            name: s.name.into(),
            endpoint: s.endpoint,
            probe,
            interval,
            timeout,
            retries: s.retries.or(defaults.retries).unwrap_or(0),
            process: process.map(Box::new),
            on_failure,
            breaker,
            backoff,
            restart: restart.map(Box::new),
            restart_limit,
            notify_webhook,
            recovery_policy: recovery_policy.map(Box::new),
            recovery_shadow: recovery_shadow.map(Box::new),
        })
    }

    fn host_port(&self, at: &dyn Fn(&str) -> String, endpoint: &str, scheme: &str) -> Result<String, ConfigError> {
        let address = endpoint.strip_prefix(scheme).unwrap_or(endpoint).trim_end_matches('/');
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(address.to_owned()),
            _ => Err(self.invalid(at("endpoint"), format!("{endpoint:?} is not host:port"))),
        }
    }

    fn http_options(
        &self,
        at: &dyn Fn(&str) -> String,
        wire: Option<HttpWire>,
    ) -> Result<Option<Box<HttpOptions>>, ConfigError> {
        let Some(w) = wire else { return Ok(None) };
        let method = match w.method {
            None => None,
            Some(m) => Some(
                reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| self.invalid(at("http.method"), format!("{m:?} is not an HTTP method")))?,
            ),
        };
        let mut headers = Vec::with_capacity(w.headers.len());
        for (name, value) in w.headers {
            let field = at(&format!("http.headers.{name}"));
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| self.invalid(field.clone(), format!("invalid header name: {e}")))?;
            let v = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| self.invalid(field, format!("invalid header value: {e}")))?;
            headers.push((n, v));
        }
        let expected_status = match w.expected_status {
            None => Vec::new(),
            Some(OneOrMany::One(code)) => vec![code],
            Some(OneOrMany::Many(codes)) => codes,
        };
        if let Some(bad) = expected_status.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(self.invalid(at("http.expectedStatus"), format!("{bad} is not an HTTP status code")));
        }
        let body = match w.body_regex {
            None => None,
            Some(pattern) => Some(
                regex::Regex::new(&pattern)
                    .map_err(|e| self.invalid(at("http.bodyRegex"), format!("invalid regex: {e}")))?,
            ),
        };
        let tls = match w.tls {
            None => None,
            Some(t) => Some(Box::new(self.tls(at, t)?)),
        };
        let options = HttpOptions { method, headers, expected_status, body, tls };
        Ok((!options.is_plain()).then(|| Box::new(options)))
    }

    /// Reads and parses the CA file now, so a bad file is a config error naming the field, not a failing check.
    fn tls(&self, at: &dyn Fn(&str) -> String, wire: TlsWire) -> Result<TlsOptions, ConfigError> {
        let mut ca = Vec::new();
        if let Some(path) = &wire.ca_file {
            let field = at("http.tls.caFile");
            let pem = std::fs::read(path)
                .map_err(|e| self.invalid(field.clone(), format!("cannot read {}: {e}", path.display())))?;
            ca = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                self.invalid(field.clone(), format!("{} is not a PEM certificate bundle: {e}", path.display()))
            })?;
            if ca.is_empty() {
                return Err(self.invalid(field, format!("{} holds no PEM certificate", path.display())));
            }
        }
        if wire.insecure_skip_verify && wire.ca_file.is_some() {
            return Err(self.invalid(at("http.tls"), "caFile and insecureSkipVerify exclude each other"));
        }
        Ok(TlsOptions { ca_file: wire.ca_file, ca, insecure_skip_verify: wire.insecure_skip_verify })
    }

    fn breaker(&self, at: &dyn Fn(&str) -> String, wire: Option<BreakerWire>) -> Result<BreakerConfig, ConfigError> {
        let mut b = BreakerConfig::default();
        let Some(w) = wire else { return Ok(b) };
        b.enabled = w.enabled.unwrap_or(true);
        if let Some(n) = w.failure_threshold {
            if n == 0 {
                return Err(self.invalid(at("actions.circuitBreaker.failureThreshold"), "must be at least 1"));
            }
            b.failure_threshold = n;
        }
        if let Some(d) = w.reset_timeout {
            b.reset_timeout = d;
        }
        b.recovery_time = w.recovery_time.filter(|d| !d.is_zero());
        if let Some(n) = w.success_threshold {
            if n == 0 {
                return Err(self.invalid(at("actions.circuitBreaker.successThreshold"), "must be at least 1"));
            }
            b.success_threshold = n;
        }
        b.slow_call_duration = w.slow_call_duration;
        if let Some(n) = w.window_size {
            if n == 0 || n > 10_000 {
                return Err(self.invalid(at("actions.circuitBreaker.windowSize"), "must be between 1 and 10000"));
            }
            b.window_size = n;
        }
        if let Some(p) = w.trip_policy {
            let p = self.policy(&at("actions.circuitBreaker.tripPolicy"), p.0)?;
            (b.trip_policy, b.trip_shadow) = (p.live.map(Box::new), p.shadow.map(Box::new));
        }
        Ok(b)
    }

    /// A plugin's `config:` map: scalars become strings (the WIT `init` takes string pairs).
    fn plugin_config(
        &self,
        field: &str,
        map: BTreeMap<String, serde_yaml::Value>,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let mut config = Vec::with_capacity(map.len());
        for (key, value) in map {
            let value = match value {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(self.invalid(
                        format!("{field}.{key}"),
                        format!("expected a string, number or boolean, got {}", describe(&other)),
                    ));
                }
            };
            config.push((key, value));
        }
        Ok(config)
    }

    fn backoff(
        &self,
        at: &dyn Fn(&str) -> String,
        wire: Option<BackoffWire>,
    ) -> Result<Option<BackoffSettings>, ConfigError> {
        let mut s = BackoffSettings::default();
        let Some(w) = wire else { return Ok(Some(s)) };
        if w.enabled == Some(false) {
            return Ok(None);
        }
        if let Some(d) = w.initial_interval {
            s.initial = d;
        }
        if let Some(d) = w.max_interval {
            s.max = d;
        }
        if let Some(m) = w.multiplier {
            if !m.is_finite() || m < 1.0 {
                return Err(self.invalid(at("actions.backoff.multiplier"), format!("{m} must be a number >= 1.0")));
            }
            s.multiplier = m;
        }
        if s.max < s.initial {
            return Err(self.invalid(
                at("actions.backoff.maxInterval"),
                format!(
                    "{} is shorter than initialInterval {}",
                    humantime::format_duration(s.max),
                    humantime::format_duration(s.initial)
                ),
            ));
        }
        if let Some(j) = w.jitter {
            s.jitter = match j {
                JitterWire::None => Jitter::None,
                JitterWire::Full => Jitter::Full,
                JitterWire::Equal => Jitter::Equal,
                JitterWire::Decorrelated => Jitter::Decorrelated,
            };
        }
        if w.reset_after.is_some() {
            s.reset_after = w.reset_after;
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(Path::new("test.yaml"), text)
    }

    const MINIMAL: &str = r#"
services:
  - name: web
    type: http
    endpoint: http://127.0.0.1:8081/health
    actions:
      onFailure: restart
"#;

    #[test]
    fn plain_http_options_are_not_kept_and_any_other_are() {
        let options = |http: &str| {
            let service = "name: web, type: http, endpoint: 'http://x/', actions: {onFailure: ignore}";
            let text = format!("services:\n  - {{{service}, {http}}}\n");
            match parse(&text).expect("parses").services.remove(0).probe {
                ProbeConfig::Http { options, .. } => options,
                other => panic!("not http: {other:?}"),
            }
        };
        assert!(options("").is_none());
        assert!(options("http: {}").is_none(), "an empty section is the plain GET too");
        assert!(options("http: {method: get}").is_none(), "an explicit GET is the plain GET");
        let post = options("http: {method: post}").expect("kept");
        assert_eq!(post.method, Some(reqwest::Method::POST));
        assert_eq!(options("http: {expectedStatus: 418}").expect("kept").expected_status, vec![418]);
        assert!(options("http: {bodyRegex: UP}").expect("kept").body.is_some());
        assert!(options("http: {tls: {insecureSkipVerify: true}}").expect("kept").tls.is_some());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).expect("parses");
        let s = &c.services[0];
        assert_eq!(s.interval, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.retries, 0);
        assert_eq!(s.breaker, BreakerConfig::default());
        assert_eq!(c.admin_address.to_string(), DEFAULT_ADMIN_ADDRESS);
        assert_eq!(c.plugins.dir, PathBuf::from("plugins"));
        assert_eq!(c.warnings().len(), 1, "restart without process or command is warned about");
    }

    #[test]
    fn unknown_key_names_line_column_and_field() {
        let text = "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    actions:\n      circuitBreaker:\n        failureTreshold: 3\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:7:9: "), "{err}");
        assert!(err.contains("unknown field `failureTreshold`"), "{err}");
        assert!(err.contains("circuitBreaker"), "{err}");
    }

    #[test]
    fn bare_numbers_are_not_durations() {
        let text = "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    interval: 5\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:5:15: services[0].interval: "), "{err}");
        assert!(err.contains("bare number `5`"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            ("failureThreshold: 0", "actions.circuitBreaker.failureThreshold"),
            ("successThreshold: 0", "actions.circuitBreaker.successThreshold"),
        ];
        for (line, field) in cases {
            let text = format!(
                "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    actions:\n      onFailure: ignore\n      circuitBreaker:\n        {line}\n"
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let text = "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    actions:\n      onFailure: ignore\n      backoff:\n        multiplier: 0.5\n";
        assert!(parse(text).unwrap_err().to_string().contains("services[0] (web).actions.backoff.multiplier"));
    }

    #[test]
    fn notify_without_webhook_is_refused_and_top_level_webhook_applies() {
        let text = "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    actions:\n      onFailure: notify\n";
        assert!(parse(text).unwrap_err().to_string().contains("needs a webhook"));
        let text = format!("notifications:\n  webhook: http://127.0.0.1:1/hook\n{text}");
        let c = parse(&text).expect("parses");
        assert_eq!(c.services[0].notify_webhook.as_deref(), Some("http://127.0.0.1:1/hook"));
    }

    #[test]
    fn duplicate_names_and_unsupported_types_are_refused() {
        let text = "services:\n  - {name: a, type: tcp, endpoint: '127.0.0.1:1', actions: {onFailure: ignore}}\n  - {name: a, type: tcp, endpoint: '127.0.0.1:2', actions: {onFailure: ignore}}\n";
        assert!(parse(text).unwrap_err().to_string().contains("duplicate service name `a`"));
        let text = "services:\n  - {name: g, type: smtp, endpoint: '127.0.0.1:1'}\n";
        assert!(parse(text).unwrap_err().to_string().contains("unknown check type `smtp`"));
    }

    #[test]
    fn trip_policy_config_scalars_become_strings() {
        let text = "services:\n  - name: web\n    type: http\n    endpoint: http://x/\n    actions:\n      onFailure: ignore\n      circuitBreaker:\n        tripPolicy:\n          plugin: window-trip\n          config: {window: 5, failures: 3, strict: true, name: x}\n";
        let c = parse(text).expect("parses");
        let p = c.services[0].breaker.trip_policy.clone().expect("policy");
        assert_eq!(p.plugin, "window-trip");
        assert_eq!(
            p.config,
            vec![
                ("failures".into(), "3".into()),
                ("name".into(), "x".into()),
                ("strict".into(), "true".into()),
                ("window".into(), "5".into())
            ]
        );
    }

    #[test]
    fn malformed_yaml_is_located() {
        let err = parse("services:\n  - name: [unclosed\n").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:"), "{err}");
    }

    #[test]
    fn an_error_at_the_end_of_a_text_without_a_final_line_break_is_on_its_last_line() {
        // libyaml puts it on the line after the last one; found by the `config` fuzz target.
        let err = parse("[").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:1:2: "), "{err}");
        let err = parse("a: b\r\r[").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:3:2: "), "{err}");
        let err = parse("services:\n  - name: [web\n").unwrap_err().to_string();
        assert!(err.starts_with("test.yaml:3:1: "), "an error after the last line break stays there: {err}");
    }

    #[test]
    fn every_file_in_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut parsed = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!config.services.is_empty() || config.logs.enabled, "{} has work", path.display());
                parsed += 1;
            }
        }
        assert!(parsed >= 3, "parsed {parsed} files");
    }

    #[test]
    fn seed_004_example_parses_as_written() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let c = Config::load(&dir.join("seed-004-detection.yaml")).expect("parses");
        assert!(c.services.is_empty() && c.logs.enabled && c.anomaly.enabled);
        assert_eq!(c.logs.settings.poll_interval, Duration::from_secs(60));
        let f = &c.logs.settings.files[0];
        assert_eq!((f.service.as_deref(), f.path.as_str()), (Some("example-service"), "/path/to/example-service.log"));
        let p = &c.logs.settings.patterns[0];
        assert_eq!((p.name.as_str(), p.severity), ("OutOfMemory", aegis_core::policy::Severity::Critical));
        assert!(regex::Regex::new(&p.regex).expect("regex").is_match("java.lang.OutOfMemoryError: heap"));
        assert_eq!((c.anomaly.interval, c.anomaly.history), (Duration::from_secs(30), 100));
        let t = &c.anomaly.thresholds["example-service"];
        assert_eq!((t.latency_ms, t.error_rate, t.throughput), (Some(500.0), Some(0.05), Some(10.0)));
        let warnings = c.warnings();
        assert!(warnings.iter().any(|w| w.contains("logs.files[0].service") && w.contains("example-service")));
        // Alerts are tracked but go nowhere without an `alerting:` section.
        assert!(c.alerting.targets.is_empty());
    }

    #[test]
    fn detection_sections_validate_and_name_the_field() {
        let base =
            "services:\n  - name: web\n    type: tcp\n    endpoint: 127.0.0.1:1\n    actions: {onFailure: ignore}\n";
        let bad = [
            ("logs:\n  patterns:\n    - {name: x, pattern: \"(\"}\n", "logs.patterns[0].pattern"),
            ("logs:\n  patterns:\n    - {name: x, pattern: a, severity: LOUD}\n", "logs.patterns[0].severity"),
            ("logs:\n  files:\n    - {path: \"[\"}\n", "logs.files[0].path"),
            ("logs:\n  scan_interval: 0s\n", "logs.scan_interval"),
            (
                "anomaly_detection:\n  thresholds:\n    error_rate:\n      - {service: web, value: 5}\n",
                "error_rate[0].value",
            ),
            ("anomaly_detection:\n  detector: magic\n", "anomaly_detection.detector"),
            ("alerting:\n  webhook: ftp://x/\n", "alerting.webhook"),
            ("alerting:\n  retry_initial: 1m\n  retry_max: 1s\n", "alerting.retry_initial"),
            ("alerting:\n  rules:\n    anomaly: {severity: meh}\n", "alerting.rules.anomaly.severity"),
            ("alerting:\n  rules:\n    nope: {}\n", "nope"),
            ("alerting:\n  formatter_config: {channel: x}\n", "alerting.formatter_config"),
            ("alerting:\n  formatter: f\n  formatter_config: {channel: [x]}\n", "alerting.formatter_config"),
        ];
        for (section, field) in bad {
            let e = parse(&format!("{base}{section}")).expect_err(section).to_string();
            assert!(e.contains(field), "{section}: {e}");
        }
        let good = format!(
            "{base}notifications: {{webhook: \"http://127.0.0.1:9/hook\"}}\nalerting:\n  alertmanager_url: http://127.0.0.1:9093/\n  \
             repeat_interval: 1h\n  rules:\n    anomaly: {{for: 1m, keep_firing_for: 2m, severity: critical}}\n\
             anomaly_detection:\n  detector: ewma\n  scorers:\n    - {{service: web, plugin: ewma-latency, config: {{alpha: 0.3}}}}\n"
        );
        let c = parse(&good).expect("valid");
        assert_eq!(
            c.alerting.targets,
            [
                AlertTarget::Webhook("http://127.0.0.1:9/hook".into()),
                AlertTarget::Alertmanager("http://127.0.0.1:9093".into())
            ]
        );
        assert_eq!(
            (c.alerting.anomaly.for_, c.alerting.anomaly.keep_firing_for),
            (Duration::from_secs(60), Duration::from_secs(120))
        );
        assert_eq!(c.alerting.anomaly.severity, aegis_core::policy::Severity::Critical);
        assert_eq!(c.anomaly.detector, Detector::Ewma);
        assert_eq!(c.anomaly.scorers["web"].config, [("alpha".to_owned(), "0.3".to_owned())]);
    }

    #[test]
    fn webhook_urls_must_be_http_or_https_and_errors_hide_their_password() {
        let svc = "services:\n  - {name: web, type: tcp, endpoint: '127.0.0.1:1', actions: {onFailure: notify}}\n";
        for (section, field) in [
            ("notifications: {webhook: 'file:///etc/passwd'}\n", "notifications.webhook"),
            ("notifications: {webhook: 'gopher://h/'}\n", "notifications.webhook"),
            ("notifications: {webhook: 'http://h/'}\nalerting: {webhook: 'ftp://h/'}\n", "alerting.webhook"),
            (
                "notifications: {webhook: 'http://h/'}\nalerting: {alertmanager_url: 'unix:/run/am.sock'}\n",
                "alerting.alertmanager_url",
            ),
        ] {
            let e = parse(&format!("{section}{svc}")).expect_err(section).to_string();
            assert!(e.contains(field) && e.contains("not http or https"), "{section}: {e}");
        }
        let own = "services:\n  - {name: web, type: tcp, endpoint: '127.0.0.1:1', \
                   actions: {onFailure: notify, notify: {webhook: 'ftp://u:hunter2@h/'}}}\n";
        let e = parse(own).expect_err("ftp").to_string();
        assert!(e.contains("actions.notify.webhook") && e.contains("u:***@h"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let c = parse(&format!("notifications: {{webhook: 'https://u:hunter2@h/x'}}\n{svc}")).expect("https");
        assert_eq!(c.services[0].notify_webhook.as_deref(), Some("https://u:hunter2@h/x"), "used as written");
        let shown = c.summary().to_string();
        assert!(shown.contains("https://u:***@h/x") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn debug_output_hides_the_admin_token() {
        let c = parse("admin: {token: s3cr3t-t0k3n}\nservices: []\n").expect("valid");
        assert_eq!(c.admin_token.as_deref(), Some("s3cr3t-t0k3n"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t") && debug.contains("admin_token: Some(\"***\")"), "{debug}");
    }

    #[test]
    fn the_latency_histogram_is_per_service_only_when_asked() {
        assert!(!parse("services: []\n").expect("valid").per_service_latency);
        let c = parse("admin: {perServiceLatency: true}\nservices: []\n").expect("valid");
        assert!(c.per_service_latency);
        let e = parse("admin: {perServiceLatency: sometimes}\nservices: []\n").expect_err("not a boolean");
        assert!(e.to_string().contains("perServiceLatency"), "{e}");
    }

    #[test]
    fn plugin_sandbox_settings_parse() {
        let text = "plugins:\n  dir: p\n  cacheDir: /var/cache/aegis\n  quarantine: {strikes: 5, window: 1m, coolDown: 10s}\n  \
                    grants:\n    reader: {stderr: true, clocks: true, env: [TZ], readDirs: [/etc/aegis]}\nservices: []\n";
        let c = parse(text).expect("valid");
        assert_eq!(c.plugins.cache_dir.as_deref(), Some(Path::new("/var/cache/aegis")));
        assert_eq!((c.plugins.quarantine.strikes, c.plugins.quarantine.cool_down), (5, Duration::from_secs(10)));
        let g = &c.plugins.grants["reader"];
        assert!(g.stderr && g.clocks && g.env == ["TZ"] && g.read_dirs == [PathBuf::from("/etc/aegis")]);
        let e =
            parse("plugins:\n  grants:\n    x: {readDirs: [rel]}\nservices: []\n").expect_err("relative").to_string();
        assert!(e.contains("plugins.grants.x.readDirs"), "{e}");
        let e = parse("plugins:\n  quarantine: {strikes: 0}\nservices: []\n").expect_err("zero").to_string();
        assert!(e.contains("plugins.quarantine"), "{e}");
    }

    #[test]
    fn seed_000_examples_parse_as_written() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let breaker = Config::load(&dir.join("seed-000-circuit-breaker.yaml")).expect("parses");
        let s = &breaker.services[0];
        assert_eq!(
            (&*s.name, s.interval, s.timeout, s.retries),
            ("example-service", Duration::from_secs(5), Duration::from_secs(5), 3)
        );
        assert_eq!(s.on_failure, OnFailure::Restart);
        assert_eq!(
            (s.breaker.failure_threshold, s.breaker.reset_timeout, s.breaker.success_threshold),
            (3, Duration::from_secs(20), 1)
        );
        let backoff = Config::load(&dir.join("seed-000-backoff.yaml")).expect("parses");
        let b = backoff.services[0].backoff.expect("enabled");
        assert_eq!((b.initial, b.max, b.multiplier), (Duration::from_secs(2), Duration::from_secs(30), 2.0));
    }

    #[test]
    fn env_overrides_beat_file_defaults_but_not_service_settings() {
        let text = "defaults:\n  actions:\n    circuitBreaker: {failureThreshold: 7, resetTimeout: 9s}\nservices:\n  - {name: a, type: tcp, endpoint: '127.0.0.1:1', actions: {onFailure: ignore}}\n  - {name: b, type: tcp, endpoint: '127.0.0.1:2', actions: {onFailure: ignore, circuitBreaker: {failureThreshold: 2}}}\n";
        let env = |key: &str| match key {
            "CIRCUIT_BREAKER_THRESHOLD" => Some("4".to_owned()),
            "AEGIS_ADMIN_TOKEN" => Some("from-env".to_owned()),
            _ => None,
        };
        let c = Config::from_yaml_with_env(Path::new("t.yaml"), text, &env).expect("parses");
        let a = &c.service("a").expect("a").breaker;
        let b = &c.service("b").expect("b").breaker;
        assert_eq!((a.failure_threshold, a.reset_timeout), (4, Duration::from_secs(9)), "env over file defaults");
        assert_eq!(b.failure_threshold, 2, "the service's own value wins");
        assert_eq!(c.admin_token.as_deref(), Some("from-env"));
        let bad = |key: &str| if key == "CIRCUIT_BREAKER_TIMEOUT" { Some("soon".to_owned()) } else { None };
        let err = Config::from_yaml_with_env(Path::new("t.yaml"), text, &bad).expect_err("bad env").to_string();
        assert!(err.contains("CIRCUIT_BREAKER_TIMEOUT") && err.contains("\"soon\""), "{err}");
    }

    /// Seed 002's block under `defaults:`, the environment over both, a service's own settings over everything.
    const SEED_002: &str = "retries:\n  circuit_breaker_threshold: 5\n  circuit_breaker_timeout: 60s\n  \
        circuit_breaker_recovery_time: 300s\ndefaults:\n  actions:\n    circuitBreaker: {successThreshold: 2}\n\
        services:\n  - {name: a, type: tcp, endpoint: '127.0.0.1:1', actions: {onFailure: ignore}}\n  \
        - {name: b, type: tcp, endpoint: '127.0.0.1:2', actions: {onFailure: ignore, circuitBreaker: \
        {failureThreshold: 2, resetTimeout: 5s, recoveryTime: 0s}}}\n";

    #[test]
    fn seed_002_retries_block_maps_onto_the_breaker_under_defaults() {
        let c = parse(SEED_002).expect("parses");
        let a = &c.service("a").expect("a").breaker;
        assert_eq!(
            (a.failure_threshold, a.reset_timeout, a.recovery_time, a.success_threshold),
            (5, Duration::from_secs(60), Some(Duration::from_secs(300)), 2)
        );
        let b = &c.service("b").expect("b").breaker;
        assert_eq!(
            (b.failure_threshold, b.reset_timeout, b.recovery_time),
            (2, Duration::from_secs(5), None),
            "the service's own settings win; 0s switches the recovery time off"
        );
        let text = "retries:\n  circuit_breaker_timeout: 60s\ndefaults:\n  actions:\n    circuitBreaker: {resetTimeout: 9s}\n\
                    services:\n  - {name: a, type: tcp, endpoint: '127.0.0.1:1', actions: {onFailure: ignore}}\n";
        let a = &parse(text).expect("parses").services[0].breaker;
        assert_eq!(a.reset_timeout, Duration::from_secs(9), "`defaults:` beats `retries:`");
        assert_eq!(a.recovery_time, None, "no recovery time unless one is configured");
    }

    #[test]
    fn circuit_breaker_recovery_time_from_the_environment() {
        let env = |key: &str| match key {
            "CIRCUIT_BREAKER_RECOVERY_TIME" => Some("10m".to_owned()),
            "CIRCUIT_BREAKER_TIMEOUT" => Some("2m".to_owned()),
            _ => None,
        };
        let c = Config::from_yaml_with_env(Path::new("t.yaml"), SEED_002, &env).expect("parses");
        let a = &c.service("a").expect("a").breaker;
        assert_eq!(
            (a.reset_timeout, a.recovery_time),
            (Duration::from_secs(120), Some(Duration::from_secs(600))),
            "the environment beats the file's `retries:`"
        );
        let b = &c.service("b").expect("b").breaker;
        assert_eq!((b.reset_timeout, b.recovery_time), (Duration::from_secs(5), None), "but not a service's own");
        let off = |key: &str| (key == "CIRCUIT_BREAKER_RECOVERY_TIME").then(|| "0".to_owned());
        let c = Config::from_yaml_with_env(Path::new("t.yaml"), SEED_002, &off).expect("parses");
        assert_eq!(c.service("a").expect("a").breaker.recovery_time, None, "0 switches it off");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn seed_002_errors_are_located() {
        let cases = [
            (
                "retries:\n  circuit_breaker_threshold: 0\n",
                "test.yaml:2:30: retries.circuit_breaker_threshold: ",
                "at least 1",
            ),
            (
                "retries:\n  circuit_breaker_timeout: soon\n",
                "test.yaml:2:28: retries.circuit_breaker_timeout: ",
                "\"soon\"",
            ),
            (
                "retries:\n  circuit_breaker_recovery_time: -1\n",
                "test.yaml:2:34: retries.circuit_breaker_recovery_time: ",
                "negative",
            ),
            (
                "retries:\n  circuit_breaker_threshhold: 5\n",
                "test.yaml:2:3: retries: ",
                "unknown field `circuit_breaker_threshhold`",
            ),
            ("retries: 3\n", "test.yaml:1:10: retries: ", "expected seed 002's block of circuit_breaker_threshold"),
        ];
        for (text, location, why) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.starts_with(location) && err.contains(why), "{text}: {err}");
        }
        let env = |key: &str| (key == "CIRCUIT_BREAKER_RECOVERY_TIME").then(|| "later".to_owned());
        let err = Config::from_yaml_with_env(Path::new("t.yaml"), MINIMAL, &env).expect_err("bad env").to_string();
        assert!(err.starts_with("t.yaml: CIRCUIT_BREAKER_RECOVERY_TIME: invalid value \"later\""), "{err}");
        let env = |key: &str| (key == "CIRCUIT_BREAKER_THRESHOLD").then(|| "0".to_owned());
        let err = Config::from_yaml_with_env(Path::new("t.yaml"), MINIMAL, &env).expect_err("zero").to_string();
        assert!(err.contains("CIRCUIT_BREAKER_THRESHOLD") && err.contains("at least 1"), "{err}");
    }

    #[test]
    fn core_only_variables_are_warned_about() {
        let env = |key: &str| (key == "CIRCUIT_BREAKER_MAX_REQUESTS").then(|| "3".to_owned());
        let c = Config::from_yaml_with_env(Path::new("t.yaml"), SEED_002, &env).expect("parses");
        assert_eq!(c.ignored_env, ["CIRCUIT_BREAKER_MAX_REQUESTS"]);
        assert!(c.warnings().iter().any(|w| w.contains("CIRCUIT_BREAKER_MAX_REQUESTS")), "{:?}", c.warnings());
    }
}
