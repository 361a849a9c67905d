//! Fault isolation: a hung dependency, a busy admin client or a hung alert receiver costs only itself. Each test runs
//! the real aegis-host beside a real TCP server that accepts connections and never answers.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aegis_tests::{
    Proc, binary, free_port, get_text, http, post, scrape, start_aegis_host, start_http_service, wait_until,
};
use serde_json::Value;

/// A loopback server that accepts every connection and never answers (it reads and discards what it is sent, so
/// clients see neither an answer nor a reset). Stops accepting when dropped; the held connections close with it.
struct HungServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl HungServer {
    fn start() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hung server");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut sink = [0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(true);
                        held.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
                // Drain, never answer; forget connections the client closed.
                held.retain_mut(|s| !matches!(s.read(&mut sink), Ok(0)));
            }
        });
        HungServer { port, stop }
    }
}

impl Drop for HungServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Successful plus failed checks of every service whose name starts with `prefix`.
fn checks(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("aegis_health_checks_total{"))
        .filter(|l| l.contains(&format!("service=\"{prefix}")))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn metrics(admin: &str) -> String {
    get_text(&format!("http://{admin}/metrics")).unwrap_or_default()
}

/// Checks per second of the services named `prefix…` over `window`, measured from `/metrics`.
fn check_rate(admin: &str, prefix: &str, window: Duration) -> f64 {
    let before = checks(&metrics(admin), prefix);
    let started = Instant::now();
    std::thread::sleep(window);
    let after = checks(&metrics(admin), prefix);
    (after - before) / started.elapsed().as_secs_f64()
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

#[test]
fn healthy_services_keep_their_schedule_beside_hung_neighbours() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let hung = HungServer::start();
    let admin = format!("127.0.0.1:{}", free_port());
    // Four check slots and forty endpoints that hang for the whole 2 s timeout, breakers off so every check of theirs
    // runs: with one shared cap, the hung checks held every slot and the healthy services got a fraction of theirs.
    let mut yaml = format!(
        "admin: {{address: \"{admin}\"}}\nstorage: {{path: \"{db}\"}}\nmaxConcurrentChecks: 4\n\
         defaults: {{actions: {{onFailure: ignore}}}}\nservices:\n",
        db = tmp.path().join("aegis.db").display()
    );
    for i in 0..5 {
        yaml.push_str(&format!(
            "  - {{name: healthy-{i}, type: http, endpoint: \"{base}/health\", interval: 100ms, timeout: 2s}}\n"
        ));
    }
    for i in 0..40 {
        yaml.push_str(&format!(
            "  - {{name: hung-{i}, type: http, endpoint: \"http://127.0.0.1:{port}/hung/{i}\", interval: 200ms, \
             timeout: 2s, actions: {{onFailure: ignore, circuitBreaker: {{enabled: false}}}}}}\n",
            port = hung.port
        ));
    }
    let config = tmp.path().join("aegis.yaml");
    write_config(&config, &yaml);
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || checks(&metrics(&admin), "hung-") >= 40.0),
        "every hung service timed out at least once; log:\n{}",
        host.log_text()
    );
    let healthy = check_rate(&admin, "healthy-", Duration::from_secs(3));
    // 5 services every 100 ms: 50 checks a second on schedule.
    assert!(healthy >= 40.0, "healthy services got {healthy:.1} checks/s of 50 beside 40 hung ones");
    let text = metrics(&admin);
    let slow = scrape(&admin, "aegis_checks_in_flight", "lane=\"slow\"").unwrap_or(0.0);
    assert!(slow >= 10.0, "the hung checks wait in the slow lane ({slow} there):\n{text}");
    assert!(scrape(&admin, "aegis_checks_in_flight", "lane=\"quick\"").is_some_and(|q| q <= 4.0), "{text}");
}

/// One client that requests `path` back to back until `stop`; returns how many answers it read.
fn hammer(admin: String, path: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let client = http();
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            if client.get(format!("http://{admin}{path}")).send().and_then(|r| r.bytes()).is_ok() {
                answered += 1;
            }
        }
        answered
    })
}

#[test]
fn probing_keeps_its_schedule_while_the_admin_api_is_hammered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let mut yaml = format!(
        "admin: {{address: \"{admin}\"}}\nstorage: {{path: \"{db}\"}}\ndefaults: {{actions: {{onFailure: ignore}}}}\n\
         services:\n",
        db = tmp.path().join("aegis.db").display()
    );
    for i in 0..100 {
        yaml.push_str(&format!("  - {{name: svc-{i}, type: http, endpoint: \"{base}/health\", interval: 200ms}}\n"));
    }
    let config = tmp.path().join("aegis.yaml");
    write_config(&config, &yaml);
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || checks(&metrics(&admin), "svc-") >= 500.0),
        "probing started; log:\n{}",
        host.log_text()
    );

    // The admin server has a thread of its own, at a lower priority than the probes'.
    let admin_thread = std::fs::read_dir(format!("/proc/{}/task", host.pid()))
        .expect("task list")
        .flatten()
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "aegis-admin"))
        .expect("a thread named aegis-admin");
    let stat = std::fs::read_to_string(admin_thread.path().join("stat")).expect("thread stat");
    // Field 19 is the nice value; the command (field 2) is in parentheses and has no spaces here.
    let nice: i32 = stat.split(' ').nth(18).and_then(|n| n.parse().ok()).expect("nice field");
    assert_eq!(nice, 10, "{stat}");

    // Four clients request back to back, two on /metrics and two on /api/v1/services.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = ["/metrics", "/metrics", "/api/v1/services", "/api/v1/services"]
        .into_iter()
        .map(|path| hammer(admin.clone(), path, Arc::clone(&stop)))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let rate = check_rate(&admin, "svc-", Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let answered: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(answered > 20, "the admin server kept answering ({answered} answers)");
    // 100 services every 200 ms: 500 checks a second on schedule.
    assert!(rate >= 400.0, "probing got {rate:.0} checks/s of 500 while the admin API was hammered");
}

/// The alerts (name, status) in every Alertmanager v2 body the receiver wrote to `out`, in arrival order.
fn alertmanager_statuses(out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|body| body.as_array().cloned().unwrap_or_default())
        .map(|a| {
            let name = a["labels"]["alertname"].as_str().unwrap_or("").to_owned();
            // A v2 body carries `endsAt` only for resolved alerts.
            let status = if a.get("endsAt").is_some() { "ended" } else { "open" };
            (name, status.to_owned())
        })
        .collect()
}

#[test]
fn a_hung_receiver_or_restart_command_delays_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let hung = HungServer::start();
    let hook_port = free_port();
    let out = tmp.path().join("received.jsonl");
    let _receiver = Proc::start(
        &binary("webhook-server"),
        &["--port", &hook_port.to_string(), "--out", out.to_str().expect("utf-8 path")],
        &tmp.path().join("hooks.log"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || get_text(&format!("http://127.0.0.1:{hook_port}/received")).is_some())
    );
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    // The alert webhook target hangs (each delivery waits out the 10 s send timeout); Alertmanager's ingest is the real
    // receiver. The hung target is queued first, so one shared delivery queue would put the real one behind it. The
    // service's notification webhook hangs too, and its restart command never ends by itself.
    write_config(
        &config,
        &format!(
            r#"
admin: {{address: "{admin}"}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    timeout: 1s
    actions:
      onFailure: restart
      restart: {{command: "sleep 30", timeout: 500ms}}
      circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
notifications: {{webhook: "http://127.0.0.1:{hung}/notify"}}
alerting:
  webhook: http://127.0.0.1:{hung}/hook
  alertmanager_url: http://127.0.0.1:{hook_port}
  evaluation_interval: 100ms
  retry_initial: 100ms
  retry_max: 400ms
"#,
            db = tmp.path().join("aegis.db").display(),
            hung = hung.port,
        ),
    );
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let state = || scrape(&admin, "circuit_breaker_state", "breaker=\"svc\"");
    assert!(wait_until(Duration::from_secs(20), || state() == Some(0.0)), "up; log:\n{}", host.log_text());

    post(&format!("{base}/down"));
    assert!(wait_until(Duration::from_secs(10), || state() == Some(2.0)), "opened; log:\n{}", host.log_text());
    let opened = Instant::now();
    let delivered =
        |status: &str| alertmanager_statuses(&out).iter().any(|(n, s)| n == "CircuitBreakerOpen" && s == status);
    assert!(
        wait_until(Duration::from_secs(8), || delivered("open")),
        "the real receiver got the firing alert while the other one hangs; log:\n{}",
        host.log_text()
    );
    assert!(opened.elapsed() < Duration::from_secs(8), "not after a 10 s send timeout of the hung target");

    // The restart command is killed at its timeout, and the breaker keeps trying the service meanwhile.
    let events = || get_text(&format!("http://{admin}/api/v1/events?service=svc&limit=200")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || events().contains("timed out after 500ms")),
        "restart command bounded by its timeout: {}",
        events()
    );
    let trials = scrape(&admin, "aegis_health_checks_total", "result=\"failure\",service=\"svc\"").unwrap_or(0.0);
    assert!(
        wait_until(Duration::from_secs(5), || scrape(
            &admin,
            "aegis_health_checks_total",
            "result=\"failure\",service=\"svc\""
        )
        .is_some_and(|n| n > trials)),
        "half-open trials go on"
    );

    post(&format!("{base}/up"));
    assert!(
        wait_until(Duration::from_secs(8), || delivered("ended")),
        "and the resolution, still while the other one hangs; log:\n{}",
        host.log_text()
    );
    let statuses: Vec<String> =
        alertmanager_statuses(&out).into_iter().filter(|(n, _)| n == "CircuitBreakerOpen").map(|(_, s)| s).collect();
    assert_eq!(statuses.first().map(String::as_str), Some("open"), "firing arrives before resolved: {statuses:?}");
    let delivered = || scrape(&admin, "aegis_alert_deliveries_total", "result=\"success\",target=\"alertmanager\"");
    assert!(wait_until(Duration::from_secs(2), || delivered() == Some(2.0)), "{}", metrics(&admin));
}
