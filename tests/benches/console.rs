//! The web console at N services (default 1000), measured from outside the real release `aegis-host`:
//!
//! - **Page weight:** bytes of the overview's HTML, its script and its stylesheet, at N services and with none, and
//!   whether the server compresses them (it is asked for gzip, as a browser would).
//! - **First paint:** headless Chromium (through chromedriver, as the console test drives it) loads `/` several
//!   times; the bench reads `first-contentful-paint` and the navigation timing (responseStart, responseEnd,
//!   domContentLoaded, load) and the bytes transferred, and reports medians, with the browser cache off (every load
//!   fetches the script and stylesheet) and on (they come from the cache).
//! - **Live stream fan-out:** CPU time of the aegis-host process (`/proc/<pid>/stat` utime + stime) over a fixed
//!   window with no console open, then with C (default 10) clients reading `/api/v1/stream` continuously, then with
//!   none again, in the same run. Every service is checked once a second and one in twenty flaps (its target
//!   answers 503 for 3 s every 6 s), so the stream carries transitions as well as check summaries.
//!
//! ```text
//! cargo build --release -p aegis-host -p http-service && cargo bench -p aegis-tests --bench console
//! AEGIS_BENCH_SERVICES=2000 AEGIS_BENCH_LOADS=9 AEGIS_BENCH_SECONDS=30 AEGIS_BENCH_CONSOLES=20 cargo bench -p aegis-tests --bench console
//! ```
//!
//! The binaries come from `target/release` (the profile this bench is built in): build them first, or the bench
//! measures whatever was built last. The targets are two `http-service` processes (stable and flapping); their CPU
//! is not counted.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aegis_tests::browser::Browser;
use aegis_tests::{Proc, binary, free_port, get_text, http, post, start_aegis_host, start_http_service, wait_until};
use serde_json::{Value, json};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Writes a config with `services` HTTP services checked every second (every twentieth one against `flapping`) and
/// starts the release aegis-host on it; returns it and its admin address.
fn start_host(dir: &Path, services: u64, stable: &str, flapping: &str) -> (Proc, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut yaml = format!(
        "admin: {{address: \"{admin}\"}}\nplugins: {{dir: \"{}\"}}\nstorage: {{path: \"{}\"}}\nservices:",
        dir.join("plugins").display(),
        dir.join("aegis.db").display()
    );
    if services == 0 {
        yaml.push_str(" []");
    }
    yaml.push('\n');
    for i in 0..services {
        let base = if i % 20 == 0 { flapping } else { stable };
        yaml.push_str(&format!(
            "  - {{name: svc-{i:04}, type: http, endpoint: \"{base}/health\", interval: 1s, actions: {{onFailure: ignore, \
             circuitBreaker: {{failureThreshold: 2, resetTimeout: 2s, successThreshold: 1}}}}}}\n"
        ));
    }
    let config = dir.join("aegis.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let host = start_aegis_host(&config, &dir.join("aegis.log"));
    let up = wait_until(Duration::from_secs(30), || get_text(&format!("http://{admin}/healthz")).is_some());
    assert!(up, "aegis-host did not come up:\n{}", host.log_text());
    (host, admin)
}

/// One asset as served: its size, and its size and encoding when gzip is accepted.
struct Served {
    bytes: usize,
    encoded_bytes: usize,
    encoding: Option<String>,
}

fn fetch(url: &str) -> Served {
    let plain = http().get(url).send().and_then(|r| r.bytes()).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let response = http()
        .get(url)
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .unwrap_or_else(|e| panic!("GET {url} (gzip accepted): {e}"));
    let encoding = response.headers().get("content-encoding").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let encoded = response.bytes().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    Served { bytes: plain.len(), encoded_bytes: encoded.len(), encoding }
}

/// The overview, its script and its stylesheet at `admin`.
fn page_weight(admin: &str) -> [Served; 3] {
    ["/", "/assets/console.js", "/assets/console.css"].map(|p| fetch(&format!("http://{admin}{p}")))
}

fn print_weight(label: &str, served: &[Served; 3]) {
    let total: usize = served.iter().map(|s| s.bytes).sum();
    let encodings: Vec<&str> = served.iter().map(|s| s.encoding.as_deref().unwrap_or("identity")).collect();
    let encoded: usize = served.iter().map(|s| s.encoded_bytes).sum();
    println!(
        "  {label}: HTML {} + JS {} + CSS {} = {total} bytes; with gzip accepted the server sends {encoded} bytes \
         (content-encoding {})",
        served[0].bytes,
        served[1].bytes,
        served[2].bytes,
        encodings.join("/")
    );
}

/// What one page load measured, in milliseconds from navigation start and in bytes.
#[derive(Clone, Copy, Default)]
struct Load {
    first_contentful_paint: f64,
    response_start: f64,
    response_end: f64,
    dom_content_loaded: f64,
    load: f64,
    /// Bytes over the wire (headers included) for the document and for the script and stylesheet.
    document_transfer: f64,
    assets_transfer: f64,
}

const TIMING: &str = r##"
const nav = performance.getEntriesByType("navigation")[0];
const fcp = performance.getEntriesByName("first-contentful-paint")[0];
if (!nav || !fcp || nav.loadEventEnd === 0) return null;
const assets = performance.getEntriesByType("resource")
  .filter((r) => r.name.includes("/assets/"))
  .reduce((n, r) => n + r.transferSize, 0);
return { fcp: fcp.startTime, responseStart: nav.responseStart, responseEnd: nav.responseEnd,
         dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, doc: nav.transferSize, assets,
         rows: document.querySelectorAll("#services tbody tr").length };
"##;

fn load_once(browser: &Browser, url: &str, services: u64) -> Load {
    browser.goto("about:blank");
    browser.goto(url);
    let mut timing = Value::Null;
    let ready = wait_until(Duration::from_secs(30), || {
        timing = browser.script(TIMING);
        !timing.is_null()
    });
    assert!(ready, "no paint or navigation timing for {url}");
    assert_eq!(timing["rows"], json!(services), "every service has its row");
    let ms = |k: &str| timing[k].as_f64().unwrap_or(f64::NAN);
    Load {
        first_contentful_paint: ms("fcp"),
        response_start: ms("responseStart"),
        response_end: ms("responseEnd"),
        dom_content_loaded: ms("dcl"),
        load: ms("load"),
        document_transfer: ms("doc"),
        assets_transfer: ms("assets"),
    }
}

fn median(loads: &[Load], field: impl Fn(&Load) -> f64) -> f64 {
    let mut values: Vec<f64> = loads.iter().map(field).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn print_loads(label: &str, loads: &[Load]) {
    let each: Vec<String> = loads
        .iter()
        .map(|l| format!("{:.0}/{:.0}/{:.0}", l.response_end, l.first_contentful_paint, l.dom_content_loaded))
        .collect();
    println!(
        "  {label}, median of {}: first contentful paint {:.0} ms (each, response end/first paint/DOMContentLoaded: {}), response start {:.0} ms, response end \
         {:.0} ms, DOMContentLoaded {:.0} ms, load {:.0} ms; transferred: document {:.0} bytes, script + stylesheet \
         {:.0} bytes",
        loads.len(),
        median(loads, |l| l.first_contentful_paint),
        each.join(" "),
        median(loads, |l| l.response_start),
        median(loads, |l| l.response_end),
        median(loads, |l| l.dom_content_loaded),
        median(loads, |l| l.load),
        median(loads, |l| l.document_transfer),
        median(loads, |l| l.assets_transfer),
    );
}

/// Long tasks (over 50 ms) on the open page's main thread over `window`: milliseconds of them per second, and the
/// longest. What the live updates cost the browser; a page that handles a summary of every service badly shows here.
fn live_page_cost(browser: &Browser, window: Duration) -> (f64, f64) {
    let live = wait_until(Duration::from_secs(10), || {
        browser.script("return document.body.dataset.live || null") == json!("1")
    });
    assert!(live, "the overview's live stream did not open");
    browser.script(
        "window.aegisLongTasks = []; new PerformanceObserver((list) => { \
         for (const e of list.getEntries()) window.aegisLongTasks.push(e.duration); }).observe({ type: 'longtask' }); \
         return true;",
    );
    std::thread::sleep(window);
    let tasks = browser.script("return window.aegisLongTasks");
    let tasks: Vec<f64> = tasks.as_array().map_or(&[][..], Vec::as_slice).iter().filter_map(Value::as_f64).collect();
    (tasks.iter().sum::<f64>() / window.as_secs_f64(), tasks.iter().copied().fold(0.0, f64::max))
}

/// Clock ticks per second, the unit of utime and stime.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds `pid` has used so far (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name may hold spaces; the fields after it are space-separated, utime and stime 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (field(11) + field(12)) / ticks
}

/// The host's CPU use over `window`, as a percentage of one core.
fn cpu_percent(pid: u32, ticks: f64, window: Duration) -> f64 {
    let (c0, t0) = (cpu_seconds(pid, ticks), Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (cpu_seconds(pid, ticks), Instant::now());
    (c1 - c0) / (t1 - t0).as_secs_f64() * 100.0
}

/// `count` clients reading the live stream until `stop`; they add what they read to `bytes` and `events`.
struct Subscribers {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Subscribers {
    fn open(admin: &str, count: u64) -> Subscribers {
        let (stop, bytes, events) = Default::default();
        let mut subscribers = Subscribers { stop, bytes, events, threads: Vec::new() };
        for _ in 0..count {
            let url = format!("http://{admin}/api/v1/stream");
            let (stop, bytes, events) =
                (subscribers.stop.clone(), subscribers.bytes.clone(), subscribers.events.clone());
            subscribers.threads.push(std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(None).build().expect("HTTP client");
                let mut response = client.get(&url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let mut buffer = vec![0; 64 << 10];
                while !stop.load(Ordering::Relaxed) {
                    match response.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                            let text = &buffer[..n];
                            let ends = text.windows(2).filter(|w| w == b"\n\n").count();
                            events.fetch_add(ends as u64, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        subscribers
    }

    /// Stops the readers (each leaves after its next read: the stream carries a summary every second).
    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Takes the flapping target down for 3 s every 6 s until `stop`.
fn flap(base: String, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut up = true;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(3));
            up = !up;
            post(&format!("{base}/{}", if up { "up" } else { "down" }));
        }
        if !up {
            post(&format!("{base}/up"));
        }
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let services = env_or("AEGIS_BENCH_SERVICES", 1000);
    let loads = env_or("AEGIS_BENCH_LOADS", 7);
    let seconds = env_or("AEGIS_BENCH_SECONDS", 20);
    let consoles = env_or("AEGIS_BENCH_CONSOLES", 10);
    let tmp = tempfile::tempdir().expect("tempdir");
    println!("aegis-host console at {services} services ({})", binary("aegis-host").display());

    let empty_dir = tmp.path().join("empty");
    std::fs::create_dir_all(&empty_dir).expect("create dir");
    let (empty_host, empty_admin) = start_host(&empty_dir, 0, "", "");
    let empty_weight = page_weight(&empty_admin);
    drop(empty_host);

    let (_stable, stable) = start_http_service(&tmp.path().join("stable.log"));
    let (_flapping, flapping) = start_http_service(&tmp.path().join("flapping.log"));
    let stop_flapping = Arc::new(AtomicBool::new(false));
    let flapper = flap(flapping.clone(), Arc::clone(&stop_flapping));
    let (host, admin) = start_host(tmp.path(), services, &stable, &flapping);
    // The page at its heaviest: every service's ring of recent checks is full (60 checks, a minute at 1 s).
    let full = |i: u64| {
        let url = format!("http://{admin}/api/v1/services/svc-{i:04}/checks");
        get_text(&url)
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["checks"].as_array().is_some_and(|c| c.len() >= 60))
    };
    let filled = wait_until(Duration::from_secs(120), || full(0) && full(services.saturating_sub(1)));
    assert!(filled, "the recent-checks rings did not fill in two minutes:\n{}", host.log_text());
    std::thread::sleep(Duration::from_secs(2));

    println!("page weight (uncompressed; the server does not compress unless the encoding says so)");
    print_weight("empty overview (no services)", &empty_weight);
    print_weight(&format!("overview at {services} services"), &page_weight(&admin));

    if let Some(browser) = Browser::start(tmp.path()) {
        let url = format!("http://{admin}/");
        browser.call("POST", "/goog/cdp/execute", json!({ "cmd": "Network.enable", "params": {} }));
        let cache = |disabled: bool| {
            let params = json!({ "cacheDisabled": disabled });
            browser.call("POST", "/goog/cdp/execute", json!({ "cmd": "Network.setCacheDisabled", "params": params }));
        };
        println!("first paint of the overview in headless Chromium (1100x720)");
        cache(true);
        let cold: Vec<Load> = (0..loads).map(|_| load_once(&browser, &url, services)).collect();
        print_loads("cache off", &cold);
        cache(false);
        load_once(&browser, &url, services);
        let warm: Vec<Load> = (0..loads).map(|_| load_once(&browser, &url, services)).collect();
        print_loads("cache on", &warm);
        let (busy, longest) = live_page_cost(&browser, Duration::from_secs(seconds.min(10)));
        println!(
            "  the open overview, updated live: the page's main thread spent {busy:.0} ms a second in long tasks \
             (over 50 ms), the longest {longest:.0} ms"
        );
        browser.goto("about:blank");
    }

    let ticks = clock_ticks();
    let window = Duration::from_secs(seconds);
    println!("aegis-host CPU over {seconds} s windows (100 % = one core), checks every 1 s, 1 in 20 services flapping");
    let idle_before = cpu_percent(host.pid(), ticks, window);
    let subscribers = Subscribers::open(&admin, consoles);
    std::thread::sleep(Duration::from_secs(3));
    let (b0, e0) = (subscribers.bytes.load(Ordering::Relaxed), subscribers.events.load(Ordering::Relaxed));
    let watched = cpu_percent(host.pid(), ticks, window);
    let (b1, e1) = (subscribers.bytes.load(Ordering::Relaxed), subscribers.events.load(Ordering::Relaxed));
    subscribers.close();
    std::thread::sleep(Duration::from_secs(3));
    let idle_after = cpu_percent(host.pid(), ticks, window);
    stop_flapping.store(true, Ordering::Relaxed);
    let _ = flapper.join();

    let idle = (idle_before + idle_after) / 2.0;
    let per_client = |n: u64| n as f64 / consoles.max(1) as f64 / window.as_secs_f64();
    println!("  no console:            {idle_before:.1} % (before), {idle_after:.1} % (after)");
    println!(
        "  {consoles} stream clients:     {watched:.1} %; each read {:.0} bytes/s in {:.1} events/s",
        per_client(b1 - b0),
        per_client(e1 - e0)
    );
    println!(
        "  fan-out cost: {:+.1} % of a core ({:.2}x the mean of the two windows without a console)",
        watched - idle,
        watched / idle.max(f64::MIN_POSITIVE)
    );
}
