//! Footprint of the real `aegis-host` process: N HTTP services (default 1000) probed every 100 ms against one
//! loopback server, measured from outside — probes per second from its `/metrics`, resident memory from
//! `/proc/<pid>/status` — against a one-service baseline measured in the same run.
//!
//! Then the memory slope at scale: the same kind of services at two sizes (N and `AEGIS_BENCH_SCALE`, default
//! 10 000) probed every `AEGIS_BENCH_SCALE_INTERVAL_MS` (default 1 s, so that 10 000 services stay within what two
//! cores probe on time), and the resident memory each additional service adds between them. A slope between two
//! large sizes leaves out what any host has (the binary, the runtime, the WASM engine) and what only grows with the
//! probe rate (pooled connections), which a one-service baseline would spread over the services. On a loaded machine
//! the checks bunch up, more run at once and the pool keeps more connections (tens of KiB each): the `fds` column
//! shows it, and a slope whose two sizes ended with very different descriptor counts is not comparable.
//!
//! ```text
//! cargo bench -p aegis-host --bench footprint
//! AEGIS_BENCH_SERVICES=2000 AEGIS_BENCH_INTERVAL_MS=200 AEGIS_BENCH_SECONDS=20 cargo bench -p aegis-host --bench footprint
//! AEGIS_BENCH_MAX_CONCURRENT=16 cargo bench -p aegis-host --bench footprint     # maxConcurrentChecks
//! AEGIS_BENCH_SCALE=0 cargo bench -p aegis-host --bench footprint                # without the slope runs
//! AEGIS_BENCH_COMPARE=/tmp/aegis-host-before cargo bench -p aegis-host --bench footprint  # slope of another build too
//! ```
//!
//! `AEGIS_BENCH_COMPARE` names another `aegis-host` binary (a copy of an earlier build): its slope is measured in the
//! same run, each size right after this build's, so that both meet the same load on the machine.
//!
//! The HTTP server runs in this bench process (a thread per keep-alive connection), so its memory is not counted.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Host, env_or, get, open_fds, serve, status_kib};

mod support;

/// Total checks so far, from the host's metrics.
fn checks(admin: SocketAddr) -> Option<f64> {
    let text = get(admin, "/metrics")?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("aegis_health_checks_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

struct Run {
    services: u64,
    probes_per_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
    /// RSS split: heap and stacks, pages of the binary and libraries, shared memory.
    anon_kib: u64,
    file_kib: u64,
    /// Open descriptors at the end: mostly pooled keep-alive connections, each with its buffers (tens of KiB), more
    /// of them when a loaded machine delays the checks and more are in flight at once.
    fds: u64,
}

/// The `aegis-host` built with this bench.
const HOST: &str = env!("CARGO_BIN_EXE_aegis-host");

fn run(
    host_bin: &Path,
    target_port: u16,
    services: u64,
    interval_ms: u64,
    seconds: u64,
    max_concurrent: Option<u64>,
) -> Run {
    let sections = max_concurrent.map(|n| format!("maxConcurrentChecks: {n}\n")).unwrap_or_default();
    let lines: String = (0..services)
        .map(|i| {
            format!(
                "  - {{name: s{i}, type: http, endpoint: \"http://127.0.0.1:{target_port}/health\", interval: \
                 {interval_ms}ms, actions: {{onFailure: ignore}}}}\n"
            )
        })
        .collect();
    // Stopped when dropped (SIGTERM, then SIGKILL if it has not exited within seconds).
    let host = Host::start_from(host_bin, None, &sections, &lines);
    // Warm-up: every service has started (random phase within one interval) and connections are pooled.
    std::thread::sleep(Duration::from_millis(interval_ms * 2).max(Duration::from_secs(2)));
    let (c0, t0) = (checks(host.admin).unwrap_or(0.0), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (c1, t1) = (checks(host.admin).unwrap_or(0.0), Instant::now());
    let pid = host.pid();
    Run {
        services,
        probes_per_s: (c1 - c0) / (t1 - t0).as_secs_f64(),
        rss_kib: status_kib(pid, "VmRSS:"),
        hwm_kib: status_kib(pid, "VmHWM:"),
        anon_kib: status_kib(pid, "RssAnon:"),
        file_kib: status_kib(pid, "RssFile:"),
        fds: open_fds(pid),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let services = env_or("AEGIS_BENCH_SERVICES", 1000);
    let interval_ms = env_or("AEGIS_BENCH_INTERVAL_MS", 100);
    let seconds = env_or("AEGIS_BENCH_SECONDS", 10);
    let max_concurrent = std::env::var("AEGIS_BENCH_MAX_CONCURRENT").ok().and_then(|v| v.parse().ok());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || serve(listener));

    let scale = env_or("AEGIS_BENCH_SCALE", 10_000);
    let scale_interval_ms = env_or("AEGIS_BENCH_SCALE_INTERVAL_MS", 1000);
    let compare = std::env::var_os("AEGIS_BENCH_COMPARE");
    let host = Path::new(HOST);
    let baseline = run(host, port, 1, interval_ms, seconds.min(5), max_concurrent);
    let load = run(host, port, services, interval_ms, seconds, max_concurrent);
    println!("aegis-host footprint, checks every {interval_ms} ms, {seconds} s measured");
    for r in [&baseline, &load] {
        print_run(r);
    }
    let per_service = (load.rss_kib.saturating_sub(baseline.rss_kib)) as f64 / (load.services - 1).max(1) as f64;
    println!(
        "  RSS ratio {:.2}x the one-service baseline; {per_service:.1} KiB per extra service",
        load.rss_kib as f64 / baseline.rss_kib.max(1) as f64
    );
    println!(
        "  targets: >= 5000 probes/s: {}; RSS <= 30 MB (28.6 MiB): {}",
        if load.probes_per_s >= 5000.0 { "met" } else { "missed" },
        if load.rss_kib as f64 * 1024.0 <= 30e6 { "met" } else { "missed" }
    );
    if scale <= services {
        return;
    }
    let mut hosts = vec![("this build", host)];
    if let Some(other) = &compare {
        hosts.push(("AEGIS_BENCH_COMPARE", Path::new(other)));
    }
    let [small, large] = [services, scale].map(|n| {
        hosts.iter().map(|(_, bin)| run(bin, port, n, scale_interval_ms, seconds, max_concurrent)).collect::<Vec<_>>()
    });
    println!("memory per service at scale, checks every {scale_interval_ms} ms, {seconds} s measured");
    let added = (scale - services) as f64;
    let slope = |from: u64, to: u64| to.saturating_sub(from) as f64 / added;
    let mut slopes = Vec::new();
    for (i, (name, bin)) in hosts.iter().enumerate() {
        println!("  {name} ({}):", bin.display());
        print_run(&small[i]);
        print_run(&large[i]);
        let per_service = slope(small[i].rss_kib, large[i].rss_kib);
        println!(
            "  {per_service:.2} KiB RSS per additional service from {services} to {scale} ({:.2} KiB anonymous)",
            slope(small[i].anon_kib, large[i].anon_kib)
        );
        slopes.push(per_service);
    }
    if let [ours, other] = slopes[..] {
        println!("  this build uses {:.2}x the memory per service of AEGIS_BENCH_COMPARE", ours / other.max(0.01));
    }
    println!("  target: <= 4 KiB per additional service: {}", if slopes[0] <= 4.0 { "met" } else { "missed" });
}

fn print_run(r: &Run) {
    println!(
        "  {:>5} services: {:>8.0} probes/s, RSS {:>6.1} MiB (peak {:.1} MiB; anonymous {:.1}, file-backed {:.1}), \
         {} fds",
        r.services,
        r.probes_per_s,
        r.rss_kib as f64 / 1024.0,
        r.hwm_kib as f64 / 1024.0,
        r.anon_kib as f64 / 1024.0,
        r.file_kib as f64 / 1024.0,
        r.fds
    );
}
