//! The series every supervised service has — breaker state and requests, check results and latency, up, gave up —
//! kept as plain atomics and rendered at scrape time.
//!
//! The `prometheus` crate's labelled children each keep their own copy of the family's name, help text, label names
//! and label pairs (about 400 B a series). Nine series for each of a thousand services made those copies the largest
//! part of the daemon's heap; here a service costs its name and about 250 B of counters. Removing a service removes
//! its series.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

/// Upper bounds of `aegis_health_check_duration_seconds`, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Check results, in the order of the counters below.
const RESULTS: [&str; 3] = ["success", "failure", "rejected"];

/// One service's counters and gauges.
#[derive(Debug, Default)]
pub struct ServiceSeries {
    breaker_state: AtomicI64,
    /// `circuit_breaker_requests_total` by [`RESULTS`].
    requests: [AtomicU64; 3],
    /// `aegis_health_checks_total`: success, failure.
    checks: [AtomicU64; 2],
    /// Checks per latency bucket (not cumulative); the last one is `+Inf`.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of latencies in nanoseconds (584 years before it wraps).
    latency_nanos: AtomicU64,
    up: AtomicI64,
    gave_up: AtomicI64,
}

impl ServiceSeries {
    /// `circuit_breaker_state`: 0 closed, 1 half-open, 2 open.
    pub fn set_breaker_state(&self, value: i64) {
        self.breaker_state.store(value, Relaxed);
    }

    /// A check the open breaker (or a running trial) did not let through.
    pub fn rejected(&self) {
        self.requests[2].fetch_add(1, Relaxed);
    }

    /// A check that ran: its result, latency and the service's up gauge.
    pub fn checked(&self, success: bool, latency: Duration) {
        let i = usize::from(!success);
        self.checks[i].fetch_add(1, Relaxed);
        self.requests[i].fetch_add(1, Relaxed);
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_nanos.fetch_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.up.store(i64::from(success), Relaxed);
    }

    /// Checks that ran: (succeeded, failed).
    pub fn checks(&self) -> (u64, u64) {
        (self.checks[0].load(Relaxed), self.checks[1].load(Relaxed))
    }

    /// `aegis_service_gave_up`: 1 while restarts are suspended.
    pub fn set_gave_up(&self, gave_up: bool) {
        self.gave_up.store(i64::from(gave_up), Relaxed);
    }
}

/// The families of [`ServiceSeries`], one series set per registered service.
#[derive(Debug)]
pub struct ServiceFamilies {
    services: RwLock<BTreeMap<String, Arc<ServiceSeries>>>,
    descs: Vec<Desc>,
}

/// Name, help, label names and type of each family, in the order [`ServiceFamilies::collect`] renders them.
const FAMILIES: [(&str, &str, &[&str], MetricType); 6] = [
    ("circuit_breaker_state", "Circuit breaker state (0=closed, 1=half-open, 2=open)", &["breaker"], MetricType::GAUGE),
    (
        "circuit_breaker_requests_total",
        "Checks through the circuit breaker, by result",
        &["breaker", "result"],
        MetricType::COUNTER,
    ),
    ("aegis_health_checks_total", "Health check results", &["service", "result"], MetricType::COUNTER),
    ("aegis_health_check_duration_seconds", "Health check latency", &["service"], MetricType::HISTOGRAM),
    ("aegis_service_up", "1 if the last health check succeeded", &["service"], MetricType::GAUGE),
    (
        "aegis_service_gave_up",
        "1 while restarts are suspended because the restart limit was reached",
        &["service"],
        MetricType::GAUGE,
    ),
];

impl ServiceFamilies {
    pub fn new() -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels, _)| {
                Desc::new(name.to_string(), help.to_string(), labels.iter().map(|l| l.to_string()).collect(), [].into())
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(ServiceFamilies { services: RwLock::new(BTreeMap::new()), descs })
    }

    /// The series of `service`, created at zero (kept, with their counts, if the service already has them).
    pub fn register(&self, service: &str) -> Arc<ServiceSeries> {
        let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(services.entry(service.to_owned()).or_default())
    }

    /// The series of `service`, if it is registered.
    pub fn get(&self, service: &str) -> Option<Arc<ServiceSeries>> {
        self.services.read().unwrap_or_else(|p| p.into_inner()).get(service).cloned()
    }

    /// Drops the series of a service that is no longer supervised.
    pub fn remove(&self, service: &str) {
        self.services.write().unwrap_or_else(|p| p.into_inner()).remove(service);
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn gauge(labels: Vec<LabelPair>, value: i64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels);
    m.set_gauge(g);
    m
}

fn counter(labels: Vec<LabelPair>, value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels);
    m.set_counter(c);
    m
}

fn histogram(labels: Vec<LabelPair>, s: &ServiceSeries) -> proto::Metric {
    let counts: Vec<u64> = s.latency.iter().map(|c| c.load(Relaxed)).collect();
    let mut cumulative = 0;
    let buckets = LATENCY_BUCKETS
        .iter()
        .zip(&counts)
        .map(|(&le, &n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    // The count is the sum of what the buckets show, so `+Inf` always equals `_count` in one scrape.
    h.set_sample_count(counts.iter().sum());
    h.set_sample_sum(Duration::from_nanos(s.latency_nanos.load(Relaxed)).as_secs_f64());
    h.set_bucket(buckets);
    let mut m = proto::Metric::from_label(labels);
    m.set_histogram(h);
    m
}

impl Collector for ServiceFamilies {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        let mut families: Vec<Vec<proto::Metric>> =
            FAMILIES.iter().map(|_| Vec::with_capacity(services.len())).collect();
        for (name, s) in services.iter() {
            // Label pairs are sorted by label name, as the text format and the crate's own series have them.
            families[0].push(gauge(vec![label("breaker", name)], s.breaker_state.load(Relaxed)));
            for (result, count) in RESULTS.iter().zip(&s.requests) {
                families[1].push(counter(vec![label("breaker", name), label("result", result)], count.load(Relaxed)));
            }
            for (result, count) in RESULTS.iter().zip(&s.checks) {
                families[2].push(counter(vec![label("result", result), label("service", name)], count.load(Relaxed)));
            }
            families[3].push(histogram(vec![label("service", name)], s));
            families[4].push(gauge(vec![label("service", name)], s.up.load(Relaxed)));
            families[5].push(gauge(vec![label("service", name)], s.gave_up.load(Relaxed)));
        }
        FAMILIES
            .iter()
            .zip(families)
            .map(|((name, help, _, kind), metrics)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(*kind);
                f.set_metric(metrics);
                f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it_and_count_matches_inf() {
        let s = ServiceSeries::default();
        s.checked(true, Duration::from_millis(1));
        s.checked(false, Duration::from_millis(30));
        s.checked(true, Duration::from_secs(60));
        let m = histogram(vec![], &s);
        let h = m.get_histogram();
        let cumulative: Vec<u64> = h.get_bucket().iter().map(|b| b.cumulative_count()).collect();
        assert_eq!(cumulative, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(h.get_sample_count(), 3);
        assert!((h.get_sample_sum() - 60.031).abs() < 1e-9);
        assert_eq!(s.checks[1].load(Relaxed), 1);
        assert_eq!(s.up.load(Relaxed), 1);
    }
}
