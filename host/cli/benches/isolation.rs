//! Isolation of the real `aegis-host` process: does it keep probing healthy services on schedule…
//!
//! - **beside hung neighbours**: 100 healthy HTTP services checked every second, beside M services whose server
//!   accepts the connection and never answers (timeout 2 s), for M = 0 (the baseline), 100, 500 and 1000, once with
//!   the default circuit breakers and once with `circuitBreaker: {enabled: false}` on every service (the worst case:
//!   every hung check runs to its timeout). Healthy checks per second come from `aegis_health_checks_total` at the
//!   two ends of the window, after a warm-up (13 s by default: time for three 2 s timeouts, so the breakers of the
//!   hung services have opened, unless their checks had to queue for a slot); resident memory from
//!   `/proc/<pid>/status`, CPU time (user + system) over the window from `/proc/<pid>/stat`.
//! - **under admin load**: 1000 healthy services checked every 100 ms, with no admin traffic, then while four
//!   keep-alive connections request `GET /metrics` back to back, then `GET /api/v1/services` (like `wrk -t1 -c4`).
//!   Reports probes per second against the ideal, and the requests per second and p50/p99 latency the admin server
//!   achieved meanwhile.
//!
//! ```text
//! cargo bench -p aegis-host --bench isolation
//! AEGIS_BENCH_HUNG=0,500 AEGIS_BENCH_SECONDS=5 AEGIS_BENCH_WARMUP_S=8 cargo bench -p aegis-host --bench isolation
//! ```
//!
//! `AEGIS_BENCH_HUNG` (default `0,100,500,1000`): the hung-service counts to run; empty runs only the admin load.
//! `AEGIS_BENCH_SECONDS` (default 10): each measured window. `AEGIS_BENCH_WARMUP_S` (default 13): the warm-up before
//! a hung-neighbours window; the admin-load runs warm up for 3 s.
//!
//! The healthy server, the hung server and the load generator run in this bench process (a thread per connection),
//! so their memory is not counted, but they share the machine's cores with `aegis-host`. The window edges are read
//! with a request of their own, separate from the load connections.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Host, IO_TIMEOUT, env_or, listen, raise_fd_limit, serve, spawn_small, status_kib};

mod support;

/// Healthy services beside the hung ones, each checked once a second.
const HEALTHY: u64 = 100;
/// Services checked every 100 ms under admin load.
const LOADED: u64 = 1000;
/// Keep-alive connections of the load generator (`wrk -c4`).
const LOAD_CONNECTIONS: usize = 4;
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per second for user space.
const TICKS_PER_S: f64 = 100.0;

/// Accepts every connection and never answers; reads (and drops) what arrives, so a connection the checker gave up
/// on is closed here too.
fn serve_hung(listener: TcpListener) {
    for mut stream in listener.incoming().flatten() {
        let _ = spawn_small(move || {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
}

/// Checks so far of the services whose names start with `prefix`, summed over results, from the host's metrics.
fn checks(metrics: &str, prefix: &str) -> f64 {
    let label = format!("service=\"{prefix}");
    metrics
        .lines()
        .filter(|l| l.starts_with("aegis_health_checks_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// User plus system CPU time so far, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; `utime` and `stime` are fields 14 and 15, counted past its `)`.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_S
}

impl Host {
    /// The counters of the services named `prefix…`, and the host's CPU time, now.
    fn sample(&self, prefixes: &[&str]) -> Sample {
        let metrics = self.scrape();
        Sample {
            at: Instant::now(),
            checks: prefixes.iter().map(|p| metrics.as_deref().map(|m| checks(m, p))).collect(),
            cpu_s: cpu_s(self.pid()),
        }
    }
}

struct Sample {
    at: Instant,
    /// Per prefix asked for; `None` when the scrape failed.
    checks: Vec<Option<f64>>,
    cpu_s: f64,
}

/// Checks per second of prefix `i` between two samples.
fn rate(s0: &Sample, s1: &Sample, i: usize) -> Option<f64> {
    Some((s1.checks[i]? - s0.checks[i]?) / (s1.at - s0.at).as_secs_f64())
}

fn service(name: &str, endpoint: &str, interval: &str, timeout: &str, breakers: bool) -> String {
    let breaker = if breakers { "" } else { ", circuitBreaker: {enabled: false}" };
    format!(
        "  - {{name: {name}, type: http, endpoint: \"{endpoint}\", interval: {interval}, timeout: {timeout}, \
         actions: {{onFailure: ignore{breaker}}}}}\n"
    )
}

struct HungRun {
    hung: u64,
    breakers: bool,
    healthy_per_s: Option<f64>,
    hung_per_s: Option<f64>,
    rss_kib: u64,
    cpu_s: f64,
}

fn hung_run(healthy_port: u16, hung_port: u16, hung: u64, breakers: bool, warmup: u64, seconds: u64) -> HungRun {
    let mut services = String::new();
    for i in 0..HEALTHY {
        services.push_str(&service(
            &format!("healthy-{i}"),
            &format!("http://127.0.0.1:{healthy_port}/health"),
            "1s",
            "2s",
            breakers,
        ));
    }
    for i in 0..hung {
        services.push_str(&service(
            &format!("hung-{i}"),
            &format!("http://127.0.0.1:{hung_port}/hung/{i}"),
            "1s",
            "2s",
            breakers,
        ));
    }
    let host = Host::start(&services);
    std::thread::sleep(Duration::from_secs(warmup));
    let s0 = host.sample(&["healthy-", "hung-"]);
    std::thread::sleep(Duration::from_secs(seconds));
    let s1 = host.sample(&["healthy-", "hung-"]);
    HungRun {
        hung,
        breakers,
        healthy_per_s: rate(&s0, &s1, 0),
        hung_per_s: rate(&s0, &s1, 1),
        rss_kib: status_kib(host.pid(), "VmRSS:"),
        cpu_s: s1.cpu_s - s0.cpu_s,
    }
}

/// What the load connections achieved: requests finished, their latencies, and failed requests.
#[derive(Default)]
struct Load {
    /// When each request finished, and how long it took.
    done: Vec<(Instant, Duration)>,
    errors: u64,
}

/// Requests `path` back to back on [`LOAD_CONNECTIONS`] keep-alive connections until `stop`.
fn start_load(admin: SocketAddr, path: &'static str, stop: Arc<AtomicBool>) -> Vec<JoinHandle<Load>> {
    (0..LOAD_CONNECTIONS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut load = Load::default();
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    let reader = match conn.as_mut() {
                        Some(r) => r,
                        None => match connect(admin) {
                            Ok(r) => conn.insert(r),
                            Err(_) => {
                                load.errors += 1;
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        },
                    };
                    let start = Instant::now();
                    match request(reader, admin, path) {
                        Ok(Reply { ok, keep_alive }) => {
                            let end = Instant::now();
                            if ok {
                                load.done.push((end, end - start));
                            } else {
                                load.errors += 1;
                            }
                            if !keep_alive {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            load.errors += 1;
                            conn = None;
                        }
                    }
                }
                load
            })
        })
        .collect()
}

fn connect(addr: SocketAddr) -> io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(BufReader::with_capacity(64 << 10, s))
}

struct Reply {
    ok: bool,
    keep_alive: bool,
}

/// One `GET` on a kept-alive connection; reads the whole response (by content-length, chunked, or to the end).
fn request(conn: &mut BufReader<TcpStream>, host: SocketAddr, path: &str) -> io::Result<Reply> {
    write!(conn.get_mut(), "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: keep-alive\r\n\r\n")?;
    let mut line = String::new();
    read_line(conn, &mut line)?;
    let ok = line.split_whitespace().nth(1) == Some("200");
    let (mut length, mut chunked, mut keep_alive) = (None, false, true);
    loop {
        read_line(conn, &mut line)?;
        if line == "\r\n" {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<u64>().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => keep_alive = value != "close",
            _ => {}
        }
    }
    if chunked {
        loop {
            read_line(conn, &mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while {
                    read_line(conn, &mut line)?;
                    line != "\r\n"
                } {}
                break;
            }
            discard(conn, size + 2)?;
        }
    } else if let Some(n) = length {
        discard(conn, n)?;
    } else {
        io::copy(conn, &mut io::sink())?;
        keep_alive = false;
    }
    Ok(Reply { ok, keep_alive })
}

fn read_line(conn: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<()> {
    line.clear();
    match conn.read_line(line)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

fn discard(conn: &mut BufReader<TcpStream>, n: u64) -> io::Result<()> {
    match io::copy(&mut conn.take(n), &mut io::sink())? {
        copied if copied == n => Ok(()),
        _ => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

struct LoadRun {
    label: &'static str,
    probes_per_s: Option<f64>,
    cpu_s: f64,
    /// Requests per second and p50, p99 latency, when there was load.
    requests: Option<(f64, Duration, Duration)>,
    errors: u64,
}

fn load_run(host: &Host, label: &'static str, path: Option<&'static str>, seconds: u64) -> LoadRun {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = path.map(|p| start_load(host.admin, p, stop.clone())).unwrap_or_default();
    // Let the connections settle into their stride before the window opens.
    std::thread::sleep(Duration::from_secs(1));
    let s0 = host.sample(&["healthy-"]);
    std::thread::sleep(Duration::from_secs(seconds));
    let s1 = host.sample(&["healthy-"]);
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for t in threads {
        let load = t.join().unwrap_or_default();
        errors += load.errors;
        latencies.extend(load.done.into_iter().filter(|(end, _)| (s0.at..s1.at).contains(end)).map(|(_, d)| d));
    }
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    let requests = (path.is_some() && !latencies.is_empty())
        .then(|| (latencies.len() as f64 / (s1.at - s0.at).as_secs_f64(), percentile(50), percentile(99)));
    LoadRun { label, probes_per_s: rate(&s0, &s1, 0), cpu_s: s1.cpu_s - s0.cpu_s, requests, errors }
}

fn per_s(rate: Option<f64>) -> String {
    rate.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1}"))
}

fn of_ideal(rate: Option<f64>, ideal: f64) -> String {
    rate.map_or_else(|| "n/a".to_owned(), |r| format!("{:.1} %", r / ideal * 100.0))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hung_counts: Vec<u64> = std::env::var("AEGIS_BENCH_HUNG")
        .unwrap_or_else(|_| "0,100,500,1000".to_owned())
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.trim().parse().expect("AEGIS_BENCH_HUNG: comma-separated counts"))
        .collect();
    let seconds = env_or("AEGIS_BENCH_SECONDS", 10);
    let warmup = env_or("AEGIS_BENCH_WARMUP_S", 13);
    raise_fd_limit();
    let (healthy, healthy_port) = listen();
    let (hung, hung_port) = listen();
    std::thread::spawn(move || serve(healthy));
    std::thread::spawn(move || serve_hung(hung));

    if !hung_counts.is_empty() {
        hung_neighbours(healthy_port, hung_port, &hung_counts, warmup, seconds);
        println!();
    }
    admin_load(healthy_port, seconds);
}

fn hung_neighbours(healthy_port: u16, hung_port: u16, hung_counts: &[u64], warmup: u64, seconds: u64) {
    println!("hung neighbours ({HEALTHY} healthy × 1 s, hung timeout 2 s; warm-up {warmup} s, {seconds} s measured)");
    println!(
        "{:<6}{:<10}{:>18}{:>10}{:>16}{:>9}{:>7}",
        "hung", "breakers", "healthy checks/s", "of ideal", "hung checks/s", "RSS MiB", "CPU s"
    );
    for &m in hung_counts {
        for breakers in [true, false] {
            let r = hung_run(healthy_port, hung_port, m, breakers, warmup, seconds);
            println!(
                "{:<6}{:<10}{:>18}{:>10}{:>16}{:>9.1}{:>7.2}",
                r.hung,
                if r.breakers { "on" } else { "off" },
                per_s(r.healthy_per_s),
                of_ideal(r.healthy_per_s, HEALTHY as f64),
                per_s(r.hung_per_s),
                r.rss_kib as f64 / 1024.0,
                r.cpu_s
            );
        }
    }
}

fn admin_load(healthy_port: u16, seconds: u64) {
    let ideal = LOADED as f64 * 10.0;
    let mut services = String::new();
    for i in 0..LOADED {
        services.push_str(&service(
            &format!("healthy-{i}"),
            &format!("http://127.0.0.1:{healthy_port}/health"),
            "100ms",
            "2s",
            true,
        ));
    }
    let host = Host::start(&services);
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "admin load ({LOADED} services × 100 ms; {LOAD_CONNECTIONS} keep-alive connections, {seconds} s measured)"
    );
    println!(
        "{:<22}{:>10}{:>10}{:>12}{:>8}{:>8}{:>7}",
        "load", "probes/s", "of ideal", "requests/s", "p50 ms", "p99 ms", "CPU s"
    );
    for (label, path) in
        [("none", None), ("GET /metrics", Some("/metrics")), ("GET /api/v1/services", Some("/api/v1/services"))]
    {
        let r = load_run(&host, label, path, seconds);
        let (requests, p50, p99) = match r.requests {
            Some((n, p50, p99)) => (
                format!("{n:.1}"),
                format!("{:.1}", p50.as_secs_f64() * 1e3),
                format!("{:.1}", p99.as_secs_f64() * 1e3),
            ),
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<22}{:>10}{:>10}{:>12}{:>8}{:>8}{:>7.2}",
            r.label,
            per_s(r.probes_per_s),
            of_ideal(r.probes_per_s, ideal),
            requests,
            p50,
            p99,
            r.cpu_s
        );
        if r.errors > 0 {
            println!("  ({} failed requests)", r.errors);
        }
    }
}
