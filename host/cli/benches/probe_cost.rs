//! CPU cost of an HTTP probe in the real daemon, like for like: `aegis-host` checking N services (default 2 000)
//! every interval (default 200 ms) against one loopback HTTP server (nginx when installed, see `probe_cost/target.rs`,
//! else one in this process), with the built-in trip policy and with `window-trip` bound as the trip policy of every
//! service (when the plugin is built: `make plugins`);
//! then, when Debian's `prometheus-blackbox-exporter` is installed, the same probe of the same
//! server through its `/probe?module=http_2xx` endpoint, driven by this process. For each: probes per second, CPU
//! time of the prober's process per probe (user + system, from `/proc/<pid>/stat`), and its resident memory. The
//! target server, the blackbox driver and the probers share the same two cores.
//!
//! ```text
//! cargo bench -p aegis-host --bench probe_cost
//! AEGIS_BENCH_SERVICES=10000 AEGIS_BENCH_INTERVAL_MS=250 cargo bench -p aegis-host --bench probe_cost
//! ```
//!
//! Beside them, the HTTP client's floor (see `probe_cost/floor.rs`): the same requests at the same rate against the
//! same server from a child process that is nothing but the client (reqwest, and a hand-written keep-alive GET on
//! tokio's `TcpStream`), measured the same way; what aegis-host costs above it is ours.
//!
//! `AEGIS_BENCH_SECONDS` (default 15) sets the measured window, `AEGIS_BENCH_BLACKBOX_CLIENTS` (default 16) the
//! concurrent probes asked of blackbox_exporter. `AEGIS_BENCH_BASELINE=/path/to/aegis-host` runs the built-in case
//! with that binary too (a copy of an earlier build) for a before/after in one run, and the plugin case once with it
//! at the end. Every case of the current build (and the baseline's built-in case) runs twice, in nested pairs, and
//! its figure is the mean of its two runs (the later of two runs measures higher, see `main`). Each plugin case's cost
//! is also given over its own build's built-in case: CPU per probe, and resident memory per bound service.
//! `AEGIS_BENCH_MAX_CHECKS` sets aegis-host's `maxConcurrentChecks` (default: the host's own).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Host, cpu_time, env_or, free_port, get, raise_fd_limit, status_kib};

#[path = "probe_cost/floor.rs"]
mod floor;
mod support;
#[path = "probe_cost/target.rs"]
mod target;

const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";

/// What one prober did over the measured window.
struct Cost {
    name: String,
    probes_per_s: f64,
    cpu_us_per_probe: f64,
    cores: f64,
    rss_kib: u64,
}

impl Cost {
    fn new(name: &str, probes: f64, cpu: Duration, window: Duration, pid: u32) -> Cost {
        Cost {
            name: name.to_owned(),
            probes_per_s: probes / window.as_secs_f64(),
            cpu_us_per_probe: cpu.as_secs_f64() * 1e6 / probes.max(1.0),
            cores: cpu.as_secs_f64() / window.as_secs_f64(),
            rss_kib: status_kib(pid, "VmRSS:"),
        }
    }

    /// The mean of two runs of the same prober, named `name`.
    fn mean(name: &str, a: &Cost, b: &Cost) -> Cost {
        Cost {
            name: name.to_owned(),
            probes_per_s: (a.probes_per_s + b.probes_per_s) / 2.0,
            cpu_us_per_probe: (a.cpu_us_per_probe + b.cpu_us_per_probe) / 2.0,
            cores: (a.cores + b.cores) / 2.0,
            rss_kib: (a.rss_kib + b.rss_kib) / 2,
        }
    }
}

/// Checks the host ran so far, from its metrics.
fn checks(host: &Host) -> f64 {
    host.scrape()
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with("aegis_health_checks_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0)
}

/// How each aegis-host run is set up.
struct Setup {
    target: u16,
    services: u64,
    interval: Duration,
    window: Duration,
}

/// aegis-host (`binary`) checking `services` services every `interval`, optionally with a trip-policy plugin from
/// `plugins`.
fn aegis(name: &str, binary: &Path, setup: &Setup, plugin: Option<&Path>) -> Cost {
    let Setup { target, services, interval, window } = *setup;
    let policy = if plugin.is_some() { ", circuitBreaker: {tripPolicy: {plugin: window-trip}}" } else { "" };
    let lines: String = (0..services)
        .map(|i| {
            format!(
                "  - {{name: s{i}, type: http, endpoint: \"http://127.0.0.1:{target}/health\", interval: {}ms, \
                 actions: {{onFailure: ignore{policy}}}}}\n",
                interval.as_millis()
            )
        })
        .collect();
    // `AEGIS_BENCH_MAX_CHECKS`: the quick lane's cap (`maxConcurrentChecks`) instead of the host's default.
    let cap =
        std::env::var("AEGIS_BENCH_MAX_CHECKS").map(|n| format!("maxConcurrentChecks: {n}\n")).unwrap_or_default();
    let host = Host::start_from(binary, plugin, &cap, &lines);
    // Warm-up: every service started (random phase within an interval), connections pooled, plugins instantiated.
    std::thread::sleep((interval * 3).max(Duration::from_secs(3)));
    let (c0, cpu0, t0) = (checks(&host), cpu_time(host.pid()), Instant::now());
    std::thread::sleep(window);
    let (c1, cpu1, t1) = (checks(&host), cpu_time(host.pid()), Instant::now());
    Cost::new(name, c1 - c0, cpu1.saturating_sub(cpu0), t1 - t0, host.pid())
}

/// The `kind` floor client (see [`floor`]) sending the same requests as aegis-host at the same rate.
fn client_floor(kind: &str, setup: &Setup) -> Option<Cost> {
    let Setup { target, services, interval, window } = *setup;
    let Some(mut client) = floor::Floor::start(kind, target, services, interval) else {
        println!("  (the {kind} floor client did not start)");
        return None;
    };
    std::thread::sleep((interval * 3).max(Duration::from_secs(3)));
    let pid = client.pid();
    let ((c0, f0), cpu0, t0) = (client.counts(), cpu_time(pid), Instant::now());
    std::thread::sleep(window);
    let ((c1, f1), cpu1, t1) = (client.counts(), cpu_time(pid), Instant::now());
    if f1 > f0 {
        println!("  ({} {kind} floor requests failed or were not 2xx)", f1 - f0);
    }
    Some(Cost::new(&format!("floor: {kind} client alone"), c1 - c0, cpu1.saturating_sub(cpu0), t1 - t0, pid))
}

/// A child process (blackbox_exporter, nginx) stopped when dropped ([`support::stop`]: SIGTERM first). nginx needs
/// the SIGTERM: its master stops its workers then, while a SIGKILL left each run's worker running (orphaned, still
/// listening).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        support::stop(&mut self.0);
    }
}

/// One `GET` on a kept-alive connection; whether the answer says `probe_success 1`.
fn probe(conn: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<bool> {
    write!(conn.get_mut(), "GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n")?;
    let (mut length, mut chunked, mut line) = (None, false, String::new());
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(v) = header.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                break;
            }
        }
    } else {
        let mut b = vec![0; length.unwrap_or(0)];
        conn.read_exact(&mut b)?;
        body = b;
    }
    Ok(String::from_utf8_lossy(&body).contains("\nprobe_success 1"))
}

/// blackbox_exporter probing the same target with `clients` probes in flight.
fn blackbox(target: u16, clients: u64, window: Duration) -> Option<Cost> {
    if !Path::new(BLACKBOX).exists() {
        println!("  (prometheus-blackbox-exporter is not installed: `apt-get install prometheus-blackbox-exporter`)");
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let config = dir.path().join("blackbox.yml");
    std::fs::write(&config, "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n").ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().ok()?;
    let child = Command::new(BLACKBOX)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let exporter = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, "/metrics").is_none() {
        if Instant::now() > deadline {
            println!("  (blackbox_exporter did not come up)");
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let path = format!("/probe?module=http_2xx&target=http://127.0.0.1:{target}/health");
    let (done, failed, stop) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let drivers: Vec<_> = (0..clients)
        .map(|_| {
            let (done, failed, stop, path) = (Arc::clone(&done), Arc::clone(&failed), Arc::clone(&stop), path.clone());
            std::thread::spawn(move || {
                let Ok(stream) = TcpStream::connect(addr) else { return };
                let mut conn = BufReader::new(stream);
                while !stop.load(Ordering::Relaxed) {
                    match probe(&mut conn, &path) {
                        Ok(true) => done.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => failed.fetch_add(1, Ordering::Relaxed),
                        Err(_) => return,
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let pid = exporter.0.id();
    let (c0, cpu0, t0) = (done.load(Ordering::Relaxed), cpu_time(pid), Instant::now());
    std::thread::sleep(window);
    let (c1, cpu1, t1) = (done.load(Ordering::Relaxed), cpu_time(pid), Instant::now());
    let cost =
        Cost::new("blackbox_exporter /probe http_2xx", (c1 - c0) as f64, cpu1.saturating_sub(cpu0), t1 - t0, pid);
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        let _ = d.join();
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  ({failed} blackbox probes reported probe_success 0)");
    }
    Some(cost)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.get(1).is_some_and(|a| a == "--floor") {
        floor::run(&args[2..]);
        return;
    }
    raise_fd_limit();
    let services = env_or("AEGIS_BENCH_SERVICES", 2000);
    let interval = Duration::from_millis(env_or("AEGIS_BENCH_INTERVAL_MS", 200));
    let window = Duration::from_secs(env_or("AEGIS_BENCH_SECONDS", 15));
    let clients = env_or("AEGIS_BENCH_BLACKBOX_CLIENTS", 16);
    let server = target::start();
    let port = server.port;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built =
        [repo.join("plugins/window-trip.wasm"), repo.join("plugins/target/wasm32-wasip2/release/window_trip.wasm")];
    // A directory of its own holding only window-trip, so nothing else is loaded.
    let plugins = tempfile::tempdir().expect("tempdir");
    let window_trip: Option<PathBuf> = built
        .iter()
        .find(|p| p.exists())
        .and_then(|p| std::fs::copy(p, plugins.path().join("window-trip.wasm")).ok())
        .map(|_| plugins.path().to_path_buf());
    let ideal = services as f64 * 1000.0 / interval.as_millis().max(1) as f64;

    println!(
        "probe cost: {services} HTTP services every {} ms (ideal {ideal:.0} probes/s), {} s measured, against {}",
        interval.as_millis(),
        window.as_secs(),
        server.name
    );
    let setup = Setup { target: port, services, interval, window };
    let current = Path::new(env!("CARGO_BIN_EXE_aegis-host"));
    let baseline = std::env::var_os("AEGIS_BENCH_BASELINE").map(PathBuf::from);
    const BUILT_IN: &str = "aegis-host, built-in trip policy";
    const BASELINE: &str = "baseline aegis-host, built-in trip policy";
    const PLUGIN: &str = "aegis-host, window-trip plugin";
    const BASELINE_PLUGIN: &str = "baseline aegis-host, window-trip plugin";
    // Of two runs one after the other against the same server, the later one measures several µs a probe more, even
    // for the same binary twice. So the cases run in nested pairs, [baseline,] built-in, [plugin, plugin,] built-in[,
    // baseline], and each case's figure is the mean of its two runs, which sit symmetrically around the middle: the
    // drift cancels out of every comparison. The baseline build with the plugin runs once, last (its memory is what
    // it is there for; its CPU carries the drift).
    let mut plan: Vec<(&str, &Path, Option<&Path>)> = Vec::new();
    let outer: Vec<_> = baseline.iter().map(|b| (BASELINE, b.as_path(), None)).collect();
    let inner: Vec<_> = window_trip.iter().map(|dir| (PLUGIN, current, Some(dir.as_path()))).collect();
    plan.extend(&outer);
    plan.push((BUILT_IN, current, None));
    plan.extend(inner.iter().chain(&inner));
    plan.push((BUILT_IN, current, None));
    plan.extend(&outer);
    if window_trip.is_none() {
        println!("  (window-trip is not built: `make plugins`; the plugin runs are skipped)");
    }
    // The single runs: listed, and compared only through their means.
    let mut singles: Vec<Cost> = Vec::new();
    for (i, (name, binary, plugins)) in plan.iter().enumerate() {
        singles.push(aegis(&format!("{name} (run {})", i + 1), binary, &setup, *plugins));
    }
    let mut runs: Vec<Cost> = Vec::new();
    for name in [BASELINE, BUILT_IN, PLUGIN] {
        let of: Vec<&Cost> = singles.iter().filter(|c| c.name.starts_with(&format!("{name} (run "))).collect();
        if let [early, late] = of[..] {
            runs.push(Cost::mean(name, early, late));
        }
    }
    if let (Some(baseline), Some(dir)) = (&baseline, &window_trip) {
        runs.push(aegis(BASELINE_PLUGIN, baseline, &setup, Some(dir)));
    }
    runs.extend(floor::KINDS.iter().filter_map(|kind| client_floor(kind, &setup)));
    runs.extend(blackbox(port, clients, window));
    println!(
        "{:<42} {:>10} {:>8} {:>14} {:>7} {:>9}",
        "prober", "probes/s", "% ideal", "CPU-µs/probe", "cores", "RSS MiB"
    );
    for r in runs.iter().chain(&singles) {
        let of_ideal =
            if r.name.starts_with("blackbox") { "-".into() } else { format!("{:.1}", 100.0 * r.probes_per_s / ideal) };
        println!(
            "{:<42} {:>10.0} {:>8} {:>14.1} {:>7.2} {:>9.1}",
            r.name,
            r.probes_per_s,
            of_ideal,
            r.cpu_us_per_probe,
            r.cores,
            r.rss_kib as f64 / 1024.0
        );
    }
    // What binding the plugin adds, over the same build's built-in run.
    for (plugin, built_in) in [(PLUGIN, BUILT_IN), (BASELINE_PLUGIN, BASELINE)] {
        let run = |name: &str| runs.iter().find(|r| r.name == name);
        if let (Some(plugin), Some(built_in)) = (run(plugin), run(built_in)) {
            println!(
                "{}: {:+.1} CPU-µs per probe and {:+.1} KiB RSS per bound service over its built-in run",
                plugin.name,
                plugin.cpu_us_per_probe - built_in.cpu_us_per_probe,
                (plugin.rss_kib as f64 - built_in.rss_kib as f64) / services as f64
            );
        }
    }
    let Some(built_in) = runs.iter().find(|r| r.name == BUILT_IN) else { return };
    for r in runs.iter().filter(|r| !std::ptr::eq(*r, built_in)) {
        println!(
            "{} / built-in aegis: {:.2}× the CPU per probe",
            r.name,
            r.cpu_us_per_probe / built_in.cpu_us_per_probe
        );
    }
}
