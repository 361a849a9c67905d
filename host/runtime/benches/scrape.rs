//! Cost and size of `/metrics` at N services (default 1000): aegis's renderer with the defaults (one check-latency
//! histogram of all services) and with `admin.perServiceLatency: true`, against the same series kept in the
//! `prometheus` crate's own labelled vectors and encoded by its `TextEncoder` (the baseline, and what Aegis did before
//! it wrote the per-service families as text directly), in the same run. The baseline carries every per-service
//! family with the same label sets as the per-service rendering, so those two texts have the same lines. The default
//! rendering is also gzip-compressed as the admin API sends it to a scraper that accepts gzip (Prometheus does).
//!
//! ```text
//! cargo bench -p aegis-runtime --bench scrape
//! AEGIS_BENCH_SERVICES=10000 cargo bench -p aegis-runtime --bench scrape
//! ```

use std::time::{Duration, Instant};

use aegis_runtime::admin::encoding::gzip;
use aegis_runtime::metrics::{LATENCY_BUCKETS, Metrics};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The median of `runs` timings of `f`, after one warm-up call; also returns the last output's length.
fn median(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut len = f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            len = f();
            started.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], len)
}

/// The per-service families in the crate's own vectors, as a registry of a process that uses them would hold them.
fn crate_registry(services: u64) -> Registry {
    let registry = Registry::new();
    let state = IntGaugeVec::new(Opts::new("circuit_breaker_state", "state"), &["breaker"]).expect("vec");
    let requests = IntCounterVec::new(Opts::new("circuit_breaker_requests_total", "requests"), &["breaker", "result"])
        .expect("vec");
    let checks =
        IntCounterVec::new(Opts::new("aegis_health_checks_total", "checks"), &["service", "result"]).expect("vec");
    let latency = HistogramVec::new(
        HistogramOpts::new("aegis_health_check_duration_seconds", "latency").buckets(LATENCY_BUCKETS.to_vec()),
        &["service"],
    )
    .expect("vec");
    let up = IntGaugeVec::new(Opts::new("aegis_service_up", "up"), &["service"]).expect("vec");
    let gave_up = IntGaugeVec::new(Opts::new("aegis_service_gave_up", "gave up"), &["service"]).expect("vec");
    for i in 0..services {
        let name = format!("service-{i}");
        state.with_label_values(&[&name]).set(0);
        for result in ["success", "failure", "rejected"] {
            requests.with_label_values(&[&name, result]).inc_by(1000 + i);
        }
        for result in ["success", "failure"] {
            checks.with_label_values(&[&name, result]).inc_by(1000 + i);
        }
        latency.with_label_values(&[&name]).observe(0.003);
        up.with_label_values(&[&name]).set(1);
        gave_up.with_label_values(&[&name]).set(0);
    }
    for c in [
        Box::new(state) as Box<dyn prometheus::core::Collector>,
        Box::new(requests),
        Box::new(checks),
        Box::new(latency),
        Box::new(up),
        Box::new(gave_up),
    ] {
        registry.register(c).expect("register");
    }
    registry
}

fn main() {
    let services = env_or("AEGIS_BENCH_SERVICES", 1000);
    let runs = usize::try_from(env_or("AEGIS_BENCH_RUNS", 50)).unwrap_or(50);
    let metrics = Metrics::new().expect("metrics");
    for i in 0..services {
        let s = metrics.register_service(format!("service-{i}").into());
        for _ in 0..3 {
            s.checked(true, Duration::from_millis(3));
        }
    }
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let (aegis, aegis_len) = median(runs, || metrics.render().map_or(0, |t| t.len()));
    let aegis_series = metrics.render().map_or(0, |t| series(&t));
    let text = metrics.render().unwrap_or_default();
    let (gzipped, gzip_len) = median(runs, || gzip(text.as_bytes()).len());
    metrics.set_per_service_latency(true);
    let (per_service, per_service_len) = median(runs, || metrics.render().map_or(0, |t| t.len()));
    let per_service_series = metrics.render().map_or(0, |t| series(&t));
    let registry = crate_registry(services);
    let encode = || {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
        buf
    };
    let (baseline, baseline_len) = median(runs, || encode().len());
    let baseline_series = series(&String::from_utf8_lossy(&encode()));
    println!("render /metrics at {services} services (median of {runs})");
    println!("{:<44} {:>10} {:>12} {:>9}", "renderer", "ms", "bytes", "series");
    for (name, time, len, count) in [
        ("aegis, defaults (one latency histogram)", aegis, aegis_len, aegis_series),
        ("  + gzip as sent (compression time only)", gzipped, gzip_len, aegis_series),
        ("aegis, perServiceLatency: true", per_service, per_service_len, per_service_series),
        ("prometheus crate vectors + encoder", baseline, baseline_len, baseline_series),
    ] {
        println!("{name:<44} {:>10.3} {len:>12} {count:>9}", time.as_secs_f64() * 1e3);
    }
    println!(
        "per-service aegis / baseline: {:.2} (time); defaults / per-service: {:.2} (bytes)",
        per_service.as_secs_f64() / baseline.as_secs_f64(),
        aegis_len as f64 / per_service_len as f64
    );
}
