//! The resolved config as an operator reads it (`aegis-host check-config`): every value after defaults, `retries:`
//! and the environment were applied, with durations in human form (`4h`, `500ms`) and every setting and value named
//! as a config file spells it (`resetTimeout`, `robust_z`, `equal`), so a line can be copied back into a file.
//!
//! Owns wording only: it neither validates nor defaults. It must never use Debug formatting, which leaks Rust names
//! (`Some(500.0)`, `RobustZ`, `14400s`) into operator output; the tests render every file in `config/` to hold that.

use std::fmt::{self, Display, Formatter};
use std::time::Duration;

use super::{AlertTarget, BreakerConfig, Config, ServiceConfig, Thresholds};
use crate::redact::redact_url;

/// [`Config`] rendered for people; see the module doc.
#[derive(Debug)]
pub struct Summary<'a>(&'a Config);

impl Config {
    /// The resolved settings as text for people (what `aegis-host check-config` prints).
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

/// `4h`, `1m 30s`, `500ms`.
fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = self.0;
        writeln!(f, "{}: ok", c.source.display())?;
        writeln!(f, "admin: http://{}/metrics", c.admin_address)?;
        writeln!(
            f,
            "plugins: dir={} deadline={} memoryLimitMib={}",
            c.plugins.dir.display(),
            human(c.plugins.limits.deadline),
            c.plugins.limits.memory_bytes >> 20
        )?;
        let h = &c.history;
        if h.enabled {
            let (age, rows) = (human(h.max_age), h.max_rows);
            writeln!(f, "storage: path={} history: maxAge={age} maxRows={rows}", c.storage_path.display())?;
        } else {
            writeln!(f, "storage: path={} history: enabled=false", c.storage_path.display())?;
        }
        for s in &c.services {
            service(f, s)?;
        }
        logs(f, c)?;
        anomaly(f, c)?;
        alerting(f, c)
    }
}

fn service(f: &mut Formatter<'_>, s: &ServiceConfig) -> fmt::Result {
    writeln!(f, "service {}:", s.name)?;
    writeln!(
        f,
        "  check: {} {} interval={} timeout={} retries={}",
        s.probe.kind(),
        redact_url(&s.endpoint),
        human(s.interval),
        human(s.timeout),
        s.retries
    )?;
    writeln!(f, "  onFailure: {}", s.on_failure.as_str())?;
    writeln!(f, "  circuitBreaker: {}", Breaker(&s.breaker))?;
    match &s.backoff {
        Some(b) => {
            write!(
                f,
                "  backoff: initialInterval={} maxInterval={} multiplier={} jitter={}",
                human(b.initial),
                human(b.max),
                b.multiplier,
                b.jitter
            )?;
            if let Some(d) = b.reset_after {
                write!(f, " resetAfter={}", human(d))?;
            }
            writeln!(f)?;
        }
        None => writeln!(f, "  backoff: disabled")?,
    }
    if let Some(p) = &s.process {
        write!(f, "  process: {}", p.program)?;
        for arg in &p.args {
            write!(f, " {arg}")?;
        }
        writeln!(f)?;
    }
    if let Some(r) = &s.restart {
        // The command goes last: it runs with `sh -c` and may hold spaces and quotes of its own.
        writeln!(f, "  restart: timeout={} command={}", human(r.timeout), r.command)?;
    }
    if let Some(l) = &s.restart_limit {
        writeln!(f, "  restartLimit: burst={} interval={}", l.burst, human(l.interval))?;
    }
    if let Some(url) = &s.notify_webhook {
        writeln!(f, "  notify: webhook={}", redact_url(url))?;
    }
    if let Some(p) = &s.recovery_policy {
        writeln!(f, "  recoveryPolicy: plugin={}", p.plugin)?;
    }
    if let Some(p) = &s.recovery_shadow {
        writeln!(f, "  recoveryPolicy: shadow={}", p.plugin)?;
    }
    Ok(())
}

/// One service's `circuitBreaker:` line; optional settings only when set.
struct Breaker<'a>(&'a BreakerConfig);

impl Display for Breaker<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "enabled={} failureThreshold={} resetTimeout={} successThreshold={}",
            b.enabled,
            b.failure_threshold,
            human(b.reset_timeout),
            b.success_threshold
        )?;
        if let Some(d) = b.recovery_time {
            write!(f, " recoveryTime={}", human(d))?;
        }
        if let Some(d) = b.slow_call_duration {
            write!(f, " slowCallDuration={}", human(d))?;
        }
        // The window only feeds a trip plugin; without one it is noise.
        if let Some(p) = &b.trip_policy {
            write!(f, " windowSize={} tripPolicy={}", b.window_size, p.plugin)?;
        }
        if let Some(p) = &b.trip_shadow {
            write!(f, " tripPolicy.shadow={}", p.plugin)?;
        }
        Ok(())
    }
}

fn logs(f: &mut Formatter<'_>, c: &Config) -> fmt::Result {
    let logs = &c.logs;
    if !logs.enabled {
        return Ok(());
    }
    writeln!(
        f,
        "logs: scan_interval={} max_line_bytes={}",
        human(logs.settings.poll_interval),
        logs.settings.max_line_bytes
    )?;
    for file in &logs.settings.files {
        writeln!(f, "  file {} (service {})", file.path, file.service.as_deref().unwrap_or("-"))?;
    }
    for p in &logs.settings.patterns {
        writeln!(f, "  pattern {} [{}]: {}", p.name, p.severity, p.regex)?;
    }
    for name in &logs.plugins {
        writeln!(f, "  rule plugin {name}")?;
    }
    Ok(())
}

fn anomaly(f: &mut Formatter<'_>, c: &Config) -> fmt::Result {
    let a = &c.anomaly;
    if !a.enabled {
        return Ok(());
    }
    writeln!(
        f,
        "anomaly_detection: detection_interval={} history_size={} detector={}",
        human(a.interval),
        a.history,
        a.detector
    )?;
    for (service, t) in &a.thresholds {
        writeln!(f, "  {service}: {}", Limits(t))?;
    }
    for (service, p) in &a.scorers {
        writeln!(f, "  {service}: scorer plugin {}", p.plugin)?;
    }
    Ok(())
}

/// A service's static thresholds, only those that are set, with their units.
struct Limits<'a>(&'a Thresholds);

impl Display for Limits<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let t = self.0;
        let limits = [
            t.latency_ms.map(|v| format!("latency > {v} ms")),
            t.error_rate.map(|v| format!("error_rate > {v}")),
            t.throughput.map(|v| format!("throughput < {v}/s")),
        ];
        let mut first = true;
        for limit in limits.into_iter().flatten() {
            if !first {
                f.write_str(", ")?;
            }
            f.write_str(&limit)?;
            first = false;
        }
        Ok(())
    }
}

fn alerting(f: &mut Formatter<'_>, c: &Config) -> fmt::Result {
    let a = &c.alerting;
    if !a.enabled {
        return writeln!(f, "alerting: disabled");
    }
    if a.targets.is_empty() {
        return writeln!(f, "alerting: tracked at /api/v1/alerts, not sent (no webhook)");
    }
    f.write_str("alerting:")?;
    for t in &a.targets {
        match t {
            AlertTarget::Webhook(url) => write!(f, " webhook={}", redact_url(url))?,
            AlertTarget::Alertmanager(url) => write!(f, " alertmanager_url={}", redact_url(url))?,
        }
    }
    if let Some(p) = &a.formatter {
        write!(f, " formatter={p}")?;
    }
    writeln!(
        f,
        " repeat_interval={} retry_initial={} retry_max={}",
        human(a.repeat_interval),
        human(a.retry_initial),
        human(a.retry_max)
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Rust's Debug forms (`Some(..)`, `None`, `Variant(..)`, `Struct { .. }`, `=Variant`) and durations as Debug
    /// writes them (`14400s`, `1.5s`), none of which an operator should read.
    fn debug_forms(text: &str) -> Vec<String> {
        let debug = regex::Regex::new(
            r"Some\(|\bNone\b|\bOk\(|\bErr\(|\b[A-Z]\w*\(|\b[A-Z]\w* \{|=[A-Z]|detector [A-Z]|\b\d{3,}s\b|\b[6-9]\ds\b|\d\.\d+m?s\b",
        )
        .expect("regex");
        debug.find_iter(text).map(|m| m.as_str().to_owned()).collect()
    }

    #[test]
    fn every_file_in_config_reads_without_debug_forms() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).expect("read");
                let config = Config::from_yaml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
                let summary = config.summary().to_string();
                assert_eq!(debug_forms(&summary), Vec::<String>::new(), "{}:\n{summary}", path.display());
            }
        }
    }

    #[test]
    fn every_optional_line_reads_as_written() {
        let text = "notifications: {webhook: http://127.0.0.1:9/hook}\n\
            storage: {path: /var/lib/aegis/aegis.db, history: {maxAge: 2d, maxRows: 5000}}\n\
            alerting: {alertmanager_url: http://127.0.0.1:9093/, formatter: chat, repeat_interval: 90m}\n\
            logs:\n  files: [{path: /var/log/a.log}]\n  plugins: [panic-detector]\n\
            anomaly_detection:\n  detector: zscore\n  thresholds:\n    error_rate: [{service: web, value: 0.05}]\n    \
            throughput: [{service: web, value: 2.5}]\n  scorers: [{service: web, plugin: ewma-latency}]\n\
            services:\n  - name: web\n    type: tcp\n    endpoint: 127.0.0.1:1\n    actions:\n      onFailure: notify\n      \
            circuitBreaker: {recoveryTime: 5m, slowCallDuration: 1500ms, tripPolicy: {plugin: window-trip}}\n      \
            backoff: {jitter: decorrelated, resetAfter: 10m}\n      restart: {command: systemctl restart web}\n      \
            restartLimit: {burst: 5, interval: 1h}\n      recoveryPolicy: {plugin: escalating-restart}\n";
        let config = Config::from_yaml(Path::new("t.yaml"), text).expect("valid");
        let summary = config.summary().to_string();
        let expected = "\
t.yaml: ok
admin: http://127.0.0.1:9797/metrics
plugins: dir=plugins deadline=10ms memoryLimitMib=16
storage: path=/var/lib/aegis/aegis.db history: maxAge=2days maxRows=5000
service web:
  check: tcp 127.0.0.1:1 interval=10s timeout=5s retries=0
  onFailure: notify
  circuitBreaker: enabled=true failureThreshold=3 resetTimeout=30s successThreshold=1 recoveryTime=5m slowCallDuration=1s 500ms windowSize=20 tripPolicy=window-trip
  backoff: initialInterval=1s maxInterval=1m multiplier=2 jitter=decorrelated resetAfter=10m
  restart: timeout=1m command=systemctl restart web
  restartLimit: burst=5 interval=1h
  notify: webhook=http://127.0.0.1:9/hook
  recoveryPolicy: plugin=escalating-restart
logs: scan_interval=1s max_line_bytes=65536
  file /var/log/a.log (service -)
  rule plugin panic-detector
anomaly_detection: detection_interval=30s history_size=100 detector=zscore
  web: error_rate > 0.05, throughput < 2.5/s
  web: scorer plugin ewma-latency
alerting: webhook=http://127.0.0.1:9/hook alertmanager_url=http://127.0.0.1:9093 formatter=chat repeat_interval=1h 30m retry_initial=1s retry_max=5m
";
        assert_eq!(summary, expected);
        assert_eq!(debug_forms(&summary), Vec::<String>::new());
    }

    #[test]
    fn debug_forms_are_caught() {
        let leaked = [
            "latency > Some(500.0) ms",
            "error rate > None",
            "detector RobustZ",
            "jitter=Equal",
            "repeat every 14400s",
            "deadline 1.5s",
            "window 90s",
            "[Webhook(\"x\")]",
            "Thresholds { latency_ms: 1 }",
        ];
        for text in leaked {
            assert_ne!(debug_forms(text), Vec::<String>::new(), "{text}");
        }
    }
}
