//! The series every supervised service has — breaker state and requests, check results and latency, up, gave up —
//! kept as plain atomics and rendered at scrape time.
//!
//! The `prometheus` crate's labelled children each keep their own copy of the family's name, help text, label names
//! and label pairs (about 400 B a series). Nine series for each of a thousand services made those copies the largest
//! part of the daemon's heap; here a service costs its name and about 250 B of counters. Removing a service removes
//! its series.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

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

/// Which services' series a scrape shows (cluster mode: the services this replica owns).
pub type ExportFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The families of [`ServiceSeries`], one series set per registered service.
#[derive(Default)]
pub struct ServiceFamilies {
    services: RwLock<BTreeMap<Arc<str>, Arc<ServiceSeries>>>,
    /// `None`: every registered service.
    exported: RwLock<Option<ExportFilter>>,
    /// The latency histogram per service, or one of all exported services' checks.
    per_service_latency: AtomicBool,
}

impl std::fmt::Debug for ServiceFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("ServiceFamilies").field("services", &services).finish_non_exhaustive()
    }
}

/// Name, help, the service's label name and type of each family, in the order [`ServiceFamilies::write_text`]
/// writes them (a second label, `result` or `le`, is added where the family has one).
const FAMILIES: [(&str, &str, &str, &str); 6] = [
    ("circuit_breaker_state", "Circuit breaker state (0=closed, 1=half-open, 2=open)", "breaker", "gauge"),
    ("circuit_breaker_requests_total", "Checks through the circuit breaker, by result", "breaker", "counter"),
    ("aegis_health_checks_total", "Health check results", "service", "counter"),
    ("aegis_health_check_duration_seconds", "Health check latency", "service", "histogram"),
    ("aegis_service_up", "1 if the last health check succeeded", "service", "gauge"),
    (
        "aegis_service_gave_up",
        "1 while restarts are suspended because the restart limit was reached",
        "service",
        "gauge",
    ),
];

impl ServiceFamilies {
    /// The series of `service`, created at zero (kept, with their counts, if the service already has them).
    pub fn register(&self, service: Arc<str>) -> Arc<ServiceSeries> {
        let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(services.entry(service).or_default())
    }

    /// See [`super::Metrics::set_per_service_latency`].
    pub fn set_per_service_latency(&self, per_service: bool) {
        self.per_service_latency.store(per_service, Relaxed);
    }

    /// Shows only the services `filter` accepts from now on.
    pub fn set_exported(&self, filter: ExportFilter) {
        *self.exported.write().unwrap_or_else(|p| p.into_inner()) = Some(filter);
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

/// Writes a label value as the text format wants it: `\\`, `\"` and `\n` escaped.
fn push_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The metric name, its suffix (`_bucket`, `_sum`, `_count` or none), and the service's label name and value.
#[derive(Clone, Copy)]
struct Series<'a> {
    name: &'a str,
    suffix: &'a str,
    label: &'a str,
    service: &'a str,
}

impl Series<'_> {
    /// One sample line: `name{label="service"[,extra="value"]} value` (without the service's pair when `label` is
    /// empty, and without braces when nothing is left). Label pairs are sorted by label name, as the
    /// `prometheus` crate writes its own series, so `extra` comes first when its name sorts first — except a
    /// bucket's `le`, which comes last, as every Prometheus client writes it.
    fn sample(self, out: &mut String, extra: Option<(&str, &str)>, value: impl Display) {
        out.push_str(self.name);
        out.push_str(self.suffix);
        // An empty `label`: a series of all services, without a label of its own.
        let own = !self.label.is_empty();
        if own || extra.is_some() {
            out.push('{');
            match extra {
                Some((k, v)) if !own => push_pair(out, k, v),
                Some((k, v)) if k < self.label && k != "le" => {
                    push_pair(out, k, v);
                    out.push(',');
                    self.push_own(out);
                }
                Some((k, v)) => {
                    self.push_own(out);
                    out.push(',');
                    push_pair(out, k, v);
                }
                None => self.push_own(out),
            }
            out.push('}');
        }
        out.push(' ');
        let _ = write!(out, "{value}");
        out.push('\n');
    }

    fn push_own(self, out: &mut String) {
        out.push_str(self.label);
        out.push_str("=\"");
        push_label_value(out, self.service);
        out.push('"');
    }
}

/// A label pair whose value needs no escaping (a result or a bucket bound).
fn push_pair(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    out.push_str(value);
    out.push('"');
}

/// [`LATENCY_BUCKETS`] as `le` label values, formatted once.
fn bucket_labels() -> &'static [String] {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    LABELS.get_or_init(|| LATENCY_BUCKETS.iter().map(f64::to_string).collect())
}

impl ServiceFamilies {
    /// Appends every family in the Prometheus text format (0.0.4), with its `# HELP` and `# TYPE` lines. Written
    /// directly rather than through the `prometheus` crate's protobuf structs: building those took about twenty
    /// allocations a service, most of a scrape's time at a thousand services.
    pub fn write_text(&self, out: &mut String) {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        let filter = self.exported.read().unwrap_or_else(|p| p.into_inner()).clone();
        let shown: Vec<(&Arc<str>, &Arc<ServiceSeries>)> =
            services.iter().filter(|(name, _)| filter.as_ref().is_none_or(|f| f(name))).collect();
        let per_service_latency = self.per_service_latency.load(Relaxed);
        for (family, (name, help, label, kind)) in FAMILIES.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if family == 3 && !per_service_latency {
                let mut all = Latency::default();
                for (_, s) in &shown {
                    all.add(s);
                }
                write_histogram(out, Series { name, suffix: "", label: "", service: "" }, &all);
                continue;
            }
            for &(service, s) in &shown {
                let series = Series { name, suffix: "", label, service };
                match family {
                    0 => series.sample(out, None, s.breaker_state.load(Relaxed)),
                    1 => {
                        for (result, count) in RESULTS.iter().zip(&s.requests) {
                            series.sample(out, Some(("result", result)), count.load(Relaxed));
                        }
                    }
                    2 => {
                        for (result, count) in RESULTS.iter().zip(&s.checks) {
                            series.sample(out, Some(("result", result)), count.load(Relaxed));
                        }
                    }
                    3 => write_histogram(out, series, &Latency::of(s)),
                    4 => series.sample(out, None, s.up.load(Relaxed)),
                    _ => series.sample(out, None, s.gave_up.load(Relaxed)),
                }
            }
        }
    }
}

/// A latency histogram as read for one scrape: checks per bucket (not cumulative, `+Inf` last) and the sum.
#[derive(Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    nanos: u64,
}

impl Latency {
    fn of(s: &ServiceSeries) -> Latency {
        let mut l = Latency::default();
        l.add(s);
        l
    }

    fn add(&mut self, s: &ServiceSeries) {
        for (sum, count) in self.buckets.iter_mut().zip(&s.latency) {
            *sum += count.load(Relaxed);
        }
        self.nanos = self.nanos.saturating_add(s.latency_nanos.load(Relaxed));
    }
}

/// The `_bucket` (cumulative, then `+Inf`), `_sum` and `_count` lines of a latency histogram (of one service, or of
/// all with an empty `series.label`). The count is the sum of what the buckets show, so `+Inf` always equals `_count`
/// in one scrape.
fn write_histogram(out: &mut String, series: Series<'_>, latency: &Latency) {
    let bucket = Series { suffix: "_bucket", ..series };
    let mut cumulative = 0;
    for (le, count) in bucket_labels().iter().zip(&latency.buckets) {
        cumulative += count;
        bucket.sample(out, Some(("le", le)), cumulative);
    }
    cumulative += latency.buckets[LATENCY_BUCKETS.len()];
    bucket.sample(out, Some(("le", "+Inf")), cumulative);
    let sum = Duration::from_nanos(latency.nanos).as_secs_f64();
    Series { suffix: "_sum", ..series }.sample(out, None, sum);
    Series { suffix: "_count", ..series }.sample(out, None, cumulative);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it_and_count_matches_inf() {
        let families = ServiceFamilies::default();
        families.set_per_service_latency(true);
        let s = families.register("svc".into());
        s.checked(true, Duration::from_millis(1));
        s.checked(false, Duration::from_millis(30));
        s.checked(true, Duration::from_secs(60));
        let mut text = String::new();
        families.write_text(&mut text);
        let buckets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("aegis_health_check_duration_seconds_bucket"))
            .filter_map(|l| l.rsplit(' ').next())
            .collect();
        assert_eq!(buckets, ["1", "1", "1", "1", "1", "2", "2", "2", "2", "2", "2", "2", "2", "3"]);
        assert!(text.contains("aegis_health_check_duration_seconds_bucket{service=\"svc\",le=\"0.001\"} 1\n"));
        assert!(text.contains("aegis_health_check_duration_seconds_bucket{service=\"svc\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("aegis_health_check_duration_seconds_sum{service=\"svc\"} 60.031\n"), "{text}");
        assert!(text.contains("aegis_health_check_duration_seconds_count{service=\"svc\"} 3\n"));
        assert!(text.contains("aegis_health_checks_total{result=\"failure\",service=\"svc\"} 1\n"));
        assert!(text.contains("circuit_breaker_requests_total{breaker=\"svc\",result=\"success\"} 2\n"));
        assert!(text.contains("aegis_service_up{service=\"svc\"} 1\n"));
        assert!(text.contains("# TYPE aegis_health_check_duration_seconds histogram\n"));
    }

    #[test]
    fn by_default_one_latency_histogram_sums_every_exported_service() {
        let families = ServiceFamilies::default();
        families.register("a".into()).checked(true, Duration::from_millis(1));
        families.register("b".into()).checked(false, Duration::from_millis(30));
        families.register("hidden".into()).checked(true, Duration::from_secs(60));
        families.set_exported(Arc::new(|s: &str| s != "hidden"));
        let mut text = String::new();
        families.write_text(&mut text);
        assert!(text.contains("aegis_health_check_duration_seconds_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("aegis_health_check_duration_seconds_bucket{le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("aegis_health_check_duration_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("aegis_health_check_duration_seconds_sum 0.031\n"), "{text}");
        assert!(text.contains("aegis_health_check_duration_seconds_count 2\n"), "{text}");
        assert!(!text.contains("duration_seconds_bucket{service="), "{text}");
        assert!(text.contains("aegis_service_up{service=\"b\"} 0\n"), "the other families stay per service");
    }

    #[test]
    fn label_values_are_escaped_and_every_family_has_its_header_once() {
        let families = ServiceFamilies::default();
        families.register("a\"b\\c\nd".into());
        families.register("plain".into());
        let mut text = String::new();
        families.write_text(&mut text);
        assert!(text.contains("circuit_breaker_state{breaker=\"a\\\"b\\\\c\\nd\"} 0\n"), "{text}");
        for (name, ..) in FAMILIES {
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
        // Two services: 1 + 3 + 2 + 1 + 1 samples each, one latency histogram of both (16), and two header lines per
        // family; with the histogram per service, 16 samples more each.
        assert_eq!(text.lines().count(), 2 * 8 + 16 + 2 * FAMILIES.len());
        families.set_per_service_latency(true);
        let mut text = String::new();
        families.write_text(&mut text);
        assert_eq!(text.lines().count(), 2 * 24 + 2 * FAMILIES.len());
    }
}
