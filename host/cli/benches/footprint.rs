//! Footprint of the real `aegis-host` process: N HTTP services (default 1000) probed every 100 ms against one
//! loopback server, measured from outside — probes per second from its `/metrics`, resident memory from
//! `/proc/<pid>/status` — against a one-service baseline measured in the same run.
//!
//! ```text
//! cargo bench -p aegis-host --bench footprint
//! AEGIS_BENCH_SERVICES=2000 AEGIS_BENCH_INTERVAL_MS=200 AEGIS_BENCH_SECONDS=20 cargo bench -p aegis-host --bench footprint
//! AEGIS_BENCH_MAX_CONCURRENT=16 cargo bench -p aegis-host --bench footprint     # maxConcurrentChecks
//! ```
//!
//! The HTTP server runs in this bench process (a thread per keep-alive connection), so its memory is not counted.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{env_or, free_port, get, serve, status_kib};

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
}

fn run(target_port: u16, services: u64, interval_ms: u64, seconds: u64, max_concurrent: Option<u64>) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("admin address");
    let mut yaml = format!(
        "admin: {{address: \"{admin}\"}}\nplugins: {{dir: \"{}\"}}\nstorage: {{path: \"{}\"}}\n",
        dir.path().join("plugins").display(),
        dir.path().join("aegis.db").display()
    );
    if let Some(n) = max_concurrent {
        yaml.push_str(&format!("maxConcurrentChecks: {n}\n"));
    }
    yaml.push_str("services:\n");
    for i in 0..services {
        yaml.push_str(&format!(
            "  - {{name: s{i}, type: http, endpoint: \"http://127.0.0.1:{target_port}/health\", interval: {interval_ms}ms, \
             actions: {{onFailure: ignore}}}}\n"
        ));
    }
    let config = dir.path().join("aegis.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let mut host: Child = Command::new(env!("CARGO_BIN_EXE_aegis-host"))
        .arg("--config")
        .arg(&config)
        .env("AEGIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aegis-host");
    let deadline = Instant::now() + Duration::from_secs(30);
    while checks(admin).is_none() {
        assert!(Instant::now() < deadline, "aegis-host did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Warm-up: every service has started (random phase within one interval) and connections are pooled.
    std::thread::sleep(Duration::from_millis(interval_ms * 2).max(Duration::from_secs(2)));
    let (c0, t0) = (checks(admin).unwrap_or(0.0), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (c1, t1) = (checks(admin).unwrap_or(0.0), Instant::now());
    let pid = host.id();
    let result = Run {
        services,
        probes_per_s: (c1 - c0) / (t1 - t0).as_secs_f64(),
        rss_kib: status_kib(pid, "VmRSS:"),
        hwm_kib: status_kib(pid, "VmHWM:"),
        anon_kib: status_kib(pid, "RssAnon:"),
        file_kib: status_kib(pid, "RssFile:"),
    };
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = host.wait();
    result
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

    let baseline = run(port, 1, interval_ms, seconds.min(5), max_concurrent);
    let load = run(port, services, interval_ms, seconds, max_concurrent);
    println!("aegis-host footprint, checks every {interval_ms} ms, {seconds} s measured");
    for r in [&baseline, &load] {
        println!(
            "  {:>5} services: {:>8.0} probes/s, RSS {:>6.1} MiB (peak {:.1} MiB; anonymous {:.1}, file-backed {:.1})",
            r.services,
            r.probes_per_s,
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
            r.anon_kib as f64 / 1024.0,
            r.file_kib as f64 / 1024.0
        );
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
}
