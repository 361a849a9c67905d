//! Soak of the real `aegis-host` process: N services (default 1000) whose health endpoints flap — each answers `200`
//! for [`HALF_PERIOD`], then `503` for as long, with phases spread over the services — checked every second for
//! `AEGIS_SOAK_MINUTES` (default 10). Every 10 s it samples the host's resident memory and open file descriptors
//! from `/proc`, and its breaker trips from `/metrics` (to show the flapping reaches the breakers); at the end it
//! reports the RSS slope after the warm-up (least squares over the samples, in MiB per hour) — also with the open
//! descriptors as a second regressor, since RSS follows the HTTP connection pool — and the descriptors over time.
//!
//! ```text
//! cargo bench -p aegis-host --bench soak
//! AEGIS_SOAK_MINUTES=60 AEGIS_SOAK_WARMUP_S=300 AEGIS_BENCH_SERVICES=2000 cargo bench -p aegis-host --bench soak
//! ```
//!
//! Every flap opens a breaker (3 failed checks) and closes it again (a half-open check after 5 s, then one success),
//! so the run writes breaker snapshots and events all the time: the event history, the breakers' windows, the
//! connection pool and the metrics all get exercised. Target: no growth after the warm-up (≤ 1 MiB per hour
//! extrapolated), descriptors flat. The flapping server runs in this bench process (a thread per keep-alive
//! connection), so its memory is not counted.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{Host, env_or, listen, open_fds, raise_fd_limit, serve_with, status_kib};

mod support;

/// How long a service stays up, then down.
const HALF_PERIOD: Duration = Duration::from_secs(15);
/// Between two samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// When the flapping server started: the phases count from here.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Whether `/s<i>` is up now: service `i` is shifted by a pseudo-random part of the period, so that about the same
/// number of services change state every second rather than all at once.
fn flapping(path: &str) -> bool {
    let i: u128 = path.trim_start_matches("/s").parse().unwrap_or(0);
    let half = HALF_PERIOD.as_millis();
    let elapsed = STARTED.get_or_init(Instant::now).elapsed().as_millis();
    let shift = i.wrapping_mul(7919) % (2 * half);
    ((elapsed + shift) / half).is_multiple_of(2)
}

struct Sample {
    at_s: f64,
    rss_kib: u64,
    fds: u64,
    trips: Option<f64>,
}

/// Breaker trips so far, summed over services and policies.
fn trips(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("aegis_breaker_trips_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, n| sum + n)
}

/// The least-squares slope of `y` over `x`; `None` with fewer than two distinct `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Least squares of `y` over two regressors (`x1`, `x2`): the coefficients of `x1` and `x2`; `None` when they cannot
/// be told apart (too few samples, or one does not vary).
fn slope2(points: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (m1, m2, my) =
        points.iter().fold((0.0, 0.0, 0.0), |(a, b, c), (x1, x2, y)| (a + x1 / n, b + x2 / n, c + y / n));
    let (mut s11, mut s22, mut s12, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (x1, x2, y) in points {
        let (d1, d2, dy) = (x1 - m1, x2 - m2, y - my);
        s11 += d1 * d1;
        s22 += d2 * d2;
        s12 += d1 * d2;
        s1y += d1 * dy;
        s2y += d2 * dy;
    }
    let det = s11 * s22 - s12 * s12;
    (det.abs() > f64::EPSILON * s11 * s22 && det != 0.0)
        .then(|| ((s22 * s1y - s12 * s2y) / det, (s11 * s2y - s12 * s1y) / det))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let services = env_or("AEGIS_BENCH_SERVICES", 1000);
    let minutes = env_or("AEGIS_SOAK_MINUTES", 10);
    let warmup_s = env_or("AEGIS_SOAK_WARMUP_S", (minutes * 60 / 5).clamp(60, 300));
    raise_fd_limit();
    let (listener, port) = listen();
    STARTED.get_or_init(Instant::now);
    std::thread::spawn(move || serve_with(listener, flapping));

    let mut yaml = String::new();
    for i in 0..services {
        yaml.push_str(&format!(
            "  - {{name: s{i}, type: http, endpoint: \"http://127.0.0.1:{port}/s{i}\", interval: 1s, timeout: 1s, \
             actions: {{onFailure: ignore, circuitBreaker: {{failureThreshold: 3, resetTimeout: 5s, \
             successThreshold: 1}}}}}}\n"
        ));
    }
    let host = Host::start(&yaml);
    let pid = host.pid();
    println!(
        "aegis-host soak: {services} services flapping ({} s up, {} s down), checked every 1 s, {minutes} min, \
         warm-up {warmup_s} s, a sample every {} s",
        HALF_PERIOD.as_secs(),
        HALF_PERIOD.as_secs(),
        SAMPLE_EVERY.as_secs()
    );
    println!("{:>7}{:>10}{:>7}{:>9}", "t s", "RSS MiB", "fds", "trips");
    let start = Instant::now();
    let end = start + Duration::from_secs(minutes * 60);
    let mut samples = Vec::new();
    let mut next = start;
    while next <= end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let s = Sample {
            at_s: start.elapsed().as_secs_f64(),
            rss_kib: status_kib(pid, "VmRSS:"),
            fds: open_fds(pid),
            trips: host.scrape().as_deref().map(trips),
        };
        println!(
            "{:>7.0}{:>10.1}{:>7}{:>9}",
            s.at_s,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.trips.map_or_else(|| "-".to_owned(), |t| format!("{t:.0}"))
        );
        samples.push(s);
        next += SAMPLE_EVERY;
    }

    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= warmup_s as f64).collect();
    let points: Vec<(f64, f64)> = after.iter().map(|s| (s.at_s / 3600.0, s.rss_kib as f64 / 1024.0)).collect();
    let fds: Vec<u64> = after.iter().map(|s| s.fds).collect();
    let peak = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    println!("after the warm-up ({} samples):", after.len());
    match slope(&points) {
        Some(mib_per_hour) => println!(
            "  RSS slope {mib_per_hour:+.2} MiB/hour (least squares; {:.1} → {:.1} MiB, peak {peak:.1} MiB); \
             target ≤ 1 MiB/hour: {}",
            points.first().map_or(0.0, |p| p.1),
            points.last().map_or(0.0, |p| p.1),
            if mib_per_hour <= 1.0 { "met" } else { "missed" }
        ),
        None => println!("  RSS slope: too few samples after the warm-up (run longer than AEGIS_SOAK_WARMUP_S)"),
    }
    // RSS follows the HTTP connection pool (each open connection holds buffers): the slope with the open descriptors
    // held constant tells growth from a pool that happens to be larger at the end of the run.
    let with_fds: Vec<(f64, f64, f64)> =
        after.iter().map(|s| (s.at_s / 3600.0, s.fds as f64, s.rss_kib as f64 / 1024.0)).collect();
    if let Some((mib_per_hour, mib_per_fd)) = slope2(&with_fds) {
        println!(
            "  RSS slope with the open descriptors held constant {mib_per_hour:+.2} MiB/hour ({:.1} KiB per open \
             descriptor); target ≤ 1 MiB/hour: {}",
            mib_per_fd * 1024.0,
            if mib_per_hour <= 1.0 { "met" } else { "missed" }
        );
    }
    if let (Some(min), Some(max), Some(first), Some(last)) =
        (fds.iter().min(), fds.iter().max(), fds.first(), fds.last())
    {
        println!(
            "  open fds {first} → {last} (min {min}, max {max}); flat: {}",
            if last <= first || max - min <= 8 { "yes" } else { "no" }
        );
    }
    let trips: Vec<f64> = samples.iter().filter_map(|s| s.trips).collect();
    if let (Some(first), Some(last)) = (trips.first(), trips.last()) {
        println!("  breaker trips during the run: {:.0}", last - first);
    }
}
