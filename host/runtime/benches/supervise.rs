//! Throughput and memory of the supervisor: N HTTP services (default 1000) probed every 100 ms against one loopback
//! server, for a fixed time. Prints probes per second and the process's resident memory growth.
//!
//! ```text
//! cargo bench -p aegis-runtime --bench supervise            # 1000 services, 10 s
//! AEGIS_BENCH_SERVICES=2000 AEGIS_BENCH_SECONDS=20 cargo bench -p aegis-runtime --bench supervise
//! ```
//!
//! The HTTP server runs on its own thread and runtime in this process; its memory is part of the baseline taken
//! before the supervisor starts, so the reported growth is the supervisor's (services, breakers, connections).

use std::time::{Duration, Instant};

use aegis_runtime::{Config, Supervisor};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn start_server() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("server runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route("/health", axum::routing::get(|| async { "UP" }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("server address")
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass other flags: only run as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let services = env_or("AEGIS_BENCH_SERVICES", 1000);
    let seconds = env_or("AEGIS_BENCH_SECONDS", 10);
    let server = start_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = format!(
        "admin: {{address: \"127.0.0.1:0\"}}\nstorage: {{path: \"{}\"}}\nplugins: {{dir: \"{}\"}}\n\
         defaults: {{interval: 100ms, timeout: 1s, actions: {{onFailure: ignore}}}}\nservices:\n",
        dir.path().join("bench.db").display(),
        dir.path().join("none").display()
    );
    for i in 0..services {
        yaml.push_str(&format!("  - {{name: s{i}, type: http, endpoint: \"http://{server}/health\"}}\n"));
    }
    let config = Config::from_yaml(std::path::Path::new("bench.yaml"), &yaml).expect("bench config");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let baseline = rss_kib();
    runtime.block_on(async move {
        let supervisor = Supervisor::new(config).expect("supervisor");
        let shared = std::sync::Arc::clone(supervisor.shared());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(supervisor.run(async move {
            let _ = stop_rx.await;
        }));
        let checks = |i: u64| shared.metrics.service(&format!("s{i}")).map_or((0, 0), |s| s.checks());
        let total = || -> u64 {
            (0..services)
                .map(|i| {
                    let (ok, failed) = checks(i);
                    ok + failed
                })
                .sum()
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (start, begin) = (total(), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (end, elapsed) = (total(), begin.elapsed());
        let failures: u64 = (0..services).map(|i| checks(i).1).sum();
        let rss = rss_kib();
        let rate = (end - start) as f64 / elapsed.as_secs_f64();
        let ideal = services as f64 * 10.0;
        println!("supervise/{services}-http-services/100ms: {rate:.0} probes/s ({:.0}% of the ideal {ideal:.0}/s), {failures} failed", rate * 100.0 / ideal);
        println!(
            "supervise/{services}-http-services/rss: {:.1} MiB total, {:.1} MiB above the {:.1} MiB baseline",
            rss as f64 / 1024.0,
            rss.saturating_sub(baseline) as f64 / 1024.0,
            baseline as f64 / 1024.0
        );
        let _ = stop_tx.send(());
        let _ = run.await;
    });
}
