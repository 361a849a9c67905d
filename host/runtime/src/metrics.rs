//! Every Prometheus metric Aegis exports, registered in one place.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::RuntimeError;

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// 0 closed, 1 half-open, 2 open (seed 001).
    pub breaker_state: IntGaugeVec,
    /// result: success | failure | rejected (seed 001).
    pub breaker_requests: IntCounterVec,
    /// Breaker openings, by who decided: `built-in` or the plugin's name.
    pub breaker_trips: IntCounterVec,
    /// result: success | failure.
    pub checks: IntCounterVec,
    pub check_duration: HistogramVec,
    /// 1 when the last check succeeded.
    pub service_up: IntGaugeVec,
    /// result: success | failure | skipped.
    pub restarts: IntCounterVec,
    /// result: success | failure.
    pub notifications: IntCounterVec,
    /// 1 while Aegis has given up restarting the service (restart limit reached).
    pub gave_up: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, RuntimeError> {
        let registry = Registry::new();
        let breaker_state = IntGaugeVec::new(
            Opts::new("circuit_breaker_state", "Circuit breaker state (0=closed, 1=half-open, 2=open)"),
            &["breaker"],
        )?;
        let breaker_requests = IntCounterVec::new(
            Opts::new("circuit_breaker_requests_total", "Checks through the circuit breaker, by result"),
            &["breaker", "result"],
        )?;
        let breaker_trips = IntCounterVec::new(
            Opts::new("aegis_breaker_trips_total", "Times a breaker opened, by the policy that decided"),
            &["breaker", "policy"],
        )?;
        let checks =
            IntCounterVec::new(Opts::new("aegis_health_checks_total", "Health check results"), &["service", "result"])?;
        let check_duration = HistogramVec::new(
            HistogramOpts::new("aegis_health_check_duration_seconds", "Health check latency")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["service"],
        )?;
        let service_up =
            IntGaugeVec::new(Opts::new("aegis_service_up", "1 if the last health check succeeded"), &["service"])?;
        let restarts = IntCounterVec::new(
            Opts::new("aegis_service_restarts_total", "Restart actions, by result"),
            &["service", "result"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new("aegis_notifications_total", "Webhook notifications, by result"),
            &["service", "result"],
        )?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(breaker_requests.clone()))?;
        registry.register(Box::new(breaker_trips.clone()))?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(check_duration.clone()))?;
        registry.register(Box::new(service_up.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        let gave_up = IntGaugeVec::new(
            Opts::new("aegis_service_gave_up", "1 while restarts are suspended because the restart limit was reached"),
            &["service"],
        )?;
        registry.register(Box::new(gave_up.clone()))?;
        Ok(Metrics {
            registry,
            breaker_state,
            breaker_requests,
            breaker_trips,
            checks,
            check_duration,
            service_up,
            restarts,
            notifications,
            gave_up,
        })
    }

    /// Creates every labelled series of a service at zero, so dashboards see it before the first event.
    pub fn register_service(&self, service: &str) {
        self.breaker_state.with_label_values(&[service]).set(0);
        for result in ["success", "failure", "rejected"] {
            self.breaker_requests.with_label_values(&[service, result]);
        }
        for result in ["success", "failure"] {
            self.checks.with_label_values(&[service, result]);
        }
        self.service_up.with_label_values(&[service]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, RuntimeError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| RuntimeError::Metrics(prometheus::Error::Msg(e.to_string())))
    }
}
