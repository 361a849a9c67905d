//! Every Prometheus metric Aegis exports, registered in one place.

mod service;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use self::service::ServiceFamilies;
pub use self::service::{ExportFilter, LATENCY_BUCKETS, ServiceSeries};
use crate::error::RuntimeError;

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Per service: `circuit_breaker_state` (0 closed, 1 half-open, 2 open) and `circuit_breaker_requests_total`
    /// by result (success, failure, rejected) from seed 001; `aegis_health_checks_total` by result,
    /// `aegis_health_check_duration_seconds`, `aegis_service_up`, `aegis_service_gave_up`.
    services: Arc<ServiceFamilies>,
    /// Breaker openings, by who decided: `built-in` or the plugin's name.
    pub breaker_trips: IntCounterVec,
    /// result: success | failure | skipped.
    pub restarts: IntCounterVec,
    /// result: success | failure.
    pub notifications: IntCounterVec,
    /// Plugin calls by result (ok, trap, timeout, invalid, unavailable, quarantined), from the plugin host.
    pub plugin_calls: IntCounterVec,
    /// 1 while a plugin is quarantined (its built-in policy is used).
    pub plugin_quarantined: IntGaugeVec,
    /// Decisions where a shadow policy answered otherwise than the live one, by service and policy (`trip`,
    /// `recovery`): see `tripPolicy.shadow`.
    pub shadow_disagreements: IntCounterVec,
    /// Log lines matched, by rule and severity.
    pub log_matches: IntCounterVec,
    /// Log lines read, by service (`-` for files of no service).
    pub log_lines: IntCounterVec,
    /// The newest anomaly score per service and metric (0 when nothing is anomalous).
    pub anomaly_score: GaugeVec,
    /// Active alerts by state (pending, firing).
    pub alerts: IntGaugeVec,
    /// Alert notification deliveries by target kind and result (success, failure).
    pub alert_deliveries: IntCounterVec,
    /// Notifications waiting in the durable outbox.
    pub outbox_pending: IntGauge,
    /// Checks in flight, by lane (quick, slow): see [`crate::lanes`].
    pub checks_in_flight: IntGaugeVec,
    /// Writes the state database refused, by store operation: see [`crate::store::Accounted`].
    pub storage_errors: IntCounterVec,
    /// Events and notifications dropped while the state database refused writes (more than
    /// [`crate::store::MAX_KEPT`] waited in memory), by kind (event, notification).
    pub storage_dropped: IntCounterVec,
    uptime: Gauge,
    started: Instant,
    /// Length of the last rendering: the next one reserves that much at once.
    rendered_len: Arc<std::sync::atomic::AtomicUsize>,
}

impl Metrics {
    /// Cluster mode: `/metrics` shows the per-service series of the services `filter` accepts (those this replica
    /// owns); the other replicas export the rest.
    pub fn set_exported(&self, filter: ExportFilter) {
        self.services.set_exported(filter);
    }

    /// `admin.perServiceLatency`: `aegis_health_check_duration_seconds` per service (`true`) or one histogram of
    /// every exported service's checks, without a `service` label (`false`, the default: 14 series a service are
    /// most of a scrape at thousands of services).
    pub fn set_per_service_latency(&self, per_service: bool) {
        self.services.set_per_service_latency(per_service);
    }

    /// Adds a collector of another part (cluster mode's metrics) to `/metrics`.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), RuntimeError> {
        self.registry.register(collector)?;
        Ok(())
    }

    pub fn new() -> Result<Self, RuntimeError> {
        let registry = Registry::new();
        let services = Arc::new(ServiceFamilies::default());
        let breaker_trips = IntCounterVec::new(
            Opts::new("aegis_breaker_trips_total", "Times a breaker opened, by the policy that decided"),
            &["breaker", "policy"],
        )?;
        let restarts = IntCounterVec::new(
            Opts::new("aegis_service_restarts_total", "Restart actions, by result"),
            &["service", "result"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new("aegis_notifications_total", "Webhook notifications, by result"),
            &["service", "result"],
        )?;
        registry.register(Box::new(breaker_trips.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        let start_time = Gauge::new("aegis_start_time_seconds", "Start time of aegis-host since the Unix epoch")?;
        start_time.set(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
        registry.register(Box::new(start_time))?;
        let plugin_calls = IntCounterVec::new(
            Opts::new("aegis_plugin_calls_total", "Policy plugin calls, by result"),
            &["plugin", "result"],
        )?;
        registry.register(Box::new(plugin_calls.clone()))?;
        let plugin_quarantined = IntGaugeVec::new(
            Opts::new("aegis_plugin_quarantined", "1 while the plugin is quarantined and its built-in policy is used"),
            &["plugin"],
        )?;
        registry.register(Box::new(plugin_quarantined.clone()))?;
        let shadow_disagreements = IntCounterVec::new(
            Opts::new(
                "aegis_shadow_disagreements_total",
                "Decisions where a shadow policy answered otherwise than the live one, by service and policy",
            ),
            &["service", "policy"],
        )?;
        registry.register(Box::new(shadow_disagreements.clone()))?;
        let log_matches = IntCounterVec::new(
            Opts::new("aegis_log_matches_total", "Log lines matched by a rule, by rule and severity"),
            &["rule", "severity"],
        )?;
        registry.register(Box::new(log_matches.clone()))?;
        let log_lines =
            IntCounterVec::new(Opts::new("aegis_log_lines_total", "Log lines read, by service"), &["service"])?;
        registry.register(Box::new(log_lines.clone()))?;
        let anomaly_score = GaugeVec::new(
            Opts::new("aegis_anomaly_score", "Newest anomaly score per service and metric (0: not anomalous)"),
            &["service", "metric"],
        )?;
        registry.register(Box::new(anomaly_score.clone()))?;
        let alerts = IntGaugeVec::new(Opts::new("aegis_alerts", "Active alerts, by state"), &["state"])?;
        registry.register(Box::new(alerts.clone()))?;
        let alert_deliveries = IntCounterVec::new(
            Opts::new("aegis_alert_deliveries_total", "Alert notification deliveries, by target and result"),
            &["target", "result"],
        )?;
        registry.register(Box::new(alert_deliveries.clone()))?;
        let outbox_pending =
            IntGauge::new("aegis_alert_outbox_pending", "Alert notifications waiting in the durable outbox")?;
        registry.register(Box::new(outbox_pending.clone()))?;
        let checks_in_flight = IntGaugeVec::new(
            Opts::new("aegis_checks_in_flight", "Health checks in flight, by lane (quick, slow)"),
            &["lane"],
        )?;
        registry.register(Box::new(checks_in_flight.clone()))?;
        let storage_errors = IntCounterVec::new(
            Opts::new("aegis_storage_errors_total", "Writes the state database refused, by operation"),
            &["operation"],
        )?;
        registry.register(Box::new(storage_errors.clone()))?;
        let storage_dropped = IntCounterVec::new(
            Opts::new(
                "aegis_storage_dropped_total",
                "Events and notifications dropped because too many waited for the state database, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(storage_dropped.clone()))?;
        let uptime = Gauge::new("aegis_uptime_seconds", "Seconds since aegis-host started")?;
        registry.register(Box::new(uptime.clone()))?;
        Ok(Metrics {
            registry,
            services,
            breaker_trips,
            restarts,
            notifications,
            plugin_calls,
            plugin_quarantined,
            shadow_disagreements,
            log_matches,
            log_lines,
            anomaly_score,
            alerts,
            alert_deliveries,
            outbox_pending,
            checks_in_flight,
            storage_errors,
            storage_dropped,
            uptime,
            started: Instant::now(),
            rendered_len: Arc::default(),
        })
    }

    /// The series of a service, created at zero so dashboards see it before the first event (a service that is
    /// already registered keeps its counts).
    pub fn register_service(&self, service: Arc<str>) -> Arc<ServiceSeries> {
        self.services.register(service)
    }

    /// The series of a registered service.
    pub fn service(&self, service: &str) -> Option<Arc<ServiceSeries>> {
        self.services.get(service)
    }

    /// Drops every series of a service that is no longer supervised.
    pub fn remove_service(&self, service: &str) {
        self.services.remove(service);
        remove_where(&self.breaker_trips, "breaker", service);
        remove_where(&self.restarts, "service", service);
        remove_where(&self.notifications, "service", service);
        remove_where(&self.shadow_disagreements, "service", service);
        remove_where(&self.log_lines, "service", service);
        remove_where(&self.anomaly_score, "service", service);
    }

    /// Brings the plugin series up to date with the plugin host's cumulative statistics.
    pub fn sync_plugins(&self, stats: &[aegis_plugin::PluginStats]) {
        for s in stats {
            for (result, total) in &s.calls {
                let counter = self.plugin_calls.with_label_values(&[s.plugin.as_str(), result.as_str()]);
                let seen = counter.get();
                if *total > seen {
                    counter.inc_by(total - seen);
                }
            }
            self.plugin_quarantined.with_label_values(&[s.plugin.as_str()]).set(i64::from(s.quarantined));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, RuntimeError> {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut text = String::with_capacity(self.rendered_len.load(std::sync::atomic::Ordering::Relaxed));
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text)?;
        self.services.write_text(&mut text);
        self.rendered_len.store(text.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(text)
    }
}

/// Removes the series of `vec` whose `label` is `value`, whatever their other labels.
fn remove_where<T: prometheus::core::MetricVecBuilder>(vec: &prometheus::core::MetricVec<T>, label: &str, value: &str) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> =
                metric.get_label().iter().map(|pair| (pair.name(), pair.value())).collect();
            if labels.get(label) == Some(&value) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_renders_and_promtool_accepts_it_when_installed() {
        let m = Metrics::new().expect("metrics");
        m.set_per_service_latency(true);
        let svc = m.register_service("svc".into());
        svc.set_breaker_state(2);
        svc.checked(false, std::time::Duration::from_millis(20));
        m.register_service("gone".into());
        m.restarts.with_label_values(&["gone", "failure"]).inc();
        m.breaker_trips.with_label_values(&["gone", "built-in"]).inc();
        m.anomaly_score.with_label_values(&["gone", "latency"]).set(3.0);
        m.remove_service("gone");
        m.restarts.with_label_values(&["svc", "success"]).inc();
        let text = m.render().expect("render");
        for name in [
            "circuit_breaker_state{breaker=\"svc\"} 2",
            "circuit_breaker_requests_total{breaker=\"svc\",result=\"rejected\"} 0",
            "aegis_health_check_duration_seconds_bucket{service=\"svc\",le=\"0.025\"} 1",
            "aegis_health_check_duration_seconds_bucket{service=\"svc\",le=\"+Inf\"} 1",
            "aegis_health_check_duration_seconds_count{service=\"svc\"} 1",
            "aegis_health_checks_total{result=\"failure\",service=\"svc\"} 1",
            "circuit_breaker_requests_total{breaker=\"svc\",result=\"failure\"} 1",
            "aegis_service_up{service=\"svc\"} 0",
            "aegis_service_restarts_total{result=\"success\",service=\"svc\"} 1",
            "aegis_service_gave_up{service=\"svc\"} 0",
            "aegis_uptime_seconds ",
            "aegis_start_time_seconds ",
        ] {
            assert!(text.contains(name), "missing {name} in:\n{text}");
        }
        assert!(!text.contains("gone"), "a removed service's series are gone:\n{text}");
        assert!(text.contains("# TYPE aegis_health_check_duration_seconds histogram"), "{text}");
        // `promtool check metrics` lints names, units and help texts; Debian's `prometheus` package ships it.
        let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool not installed: lint skipped");
            return;
        };
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
        let out = child.wait_with_output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
