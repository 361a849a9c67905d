//! Detection and alerting end to end: anomalies on the example service's slow mode, log rules on a real file that
//! is rotated and truncated, and alerts delivered through the durable outbox to a real webhook receiver that is
//! down for a while — with aegis-host restarted in between — so that every alert still arrives, firing and resolved.
//! A formatter plugin that tries to set the request's framing headers is refused, and the alert still arrives whole.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_tests::{
    free_port, get_text, plugin_calls, post, received, scrape, start_aegis_host, start_http_service, start_receiver,
    wait_until,
};
use serde_json::Value;

/// `(alertname, status)` of every alert in every received Alertmanager webhook body.
fn alert_statuses(out: &Path) -> Vec<(String, String)> {
    received(out)
        .iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (a["labels"]["alertname"].as_str().unwrap_or("").to_owned(), a["status"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn has(out: &Path, name: &str, status: &str) -> bool {
    alert_statuses(out).iter().any(|(n, s)| n == name && s == status)
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open log");
    writeln!(f, "{line}").expect("write log line");
}

#[test]
fn anomalies_log_matches_and_breaker_alerts_are_delivered_at_least_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let hook_port = free_port();
    let out = tmp.path().join("received.jsonl");
    let mut receiver = start_receiver(hook_port, &out, &tmp.path().join("hooks-1.log"));
    let app_log = tmp.path().join("app.log");
    std::fs::write(&app_log, "an old out of memory line, before aegis started: not reported\n").expect("seed log");

    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    timeout: 3s
    actions:
      onFailure: ignore
      circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
logs:
  scan_interval: 50ms
  files:
    - service: svc
      path: "{app_log}"
  patterns:
    - name: OutOfMemory
      pattern: "(?i)(out of memory|java\\.lang\\.OutOfMemoryError)"
      severity: CRITICAL
      description: Out of memory error detected
anomaly_detection:
  detection_interval: 500ms
  history_size: 20
  detector: none
  thresholds:
    latency:
      - service: svc
        value: 250
alerting:
  webhook: http://127.0.0.1:{hook_port}/hook
  alertmanager_url: http://127.0.0.1:{hook_port}
  evaluation_interval: 100ms
  retry_initial: 100ms
  retry_max: 400ms
  rules:
    log_match: {{keep_firing_for: 1s}}
    anomaly: {{keep_firing_for: 0s}}
"#,
            plugins = tmp.path().join("no-plugins").display(),
            db = tmp.path().join("aegis.db").display(),
            app_log = app_log.display(),
        ),
    )
    .expect("write config");
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis-1.log"));
    let api = |path: &str| -> Value {
        get_text(&format!("http://{admin}{path}")).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
    };
    assert!(
        wait_until(Duration::from_secs(20), || scrape(&admin, "circuit_breaker_state", "breaker=\"svc\"") == Some(0.0)),
        "up; log:\n{}",
        host.log_text()
    );

    // Slow mode: the mean latency crosses 250 ms, the anomaly fires; back to normal, it resolves.
    post(&format!("{base}/slow?ms=400"));
    assert!(
        wait_until(Duration::from_secs(15), || has(&out, "AnomalyDetected", "firing")),
        "anomaly alert delivered; received {:?}; log:\n{}",
        alert_statuses(&out),
        host.log_text()
    );
    let score = scrape(&admin, "aegis_anomaly_score", "metric=\"latency\",service=\"svc\"").unwrap_or(0.0);
    assert!(score > 1.0, "latency score {score}");
    let listed = api("/api/v1/alerts?state=firing");
    assert!(listed["alerts"].as_array().is_some_and(|a| a.iter().any(|x| x["name"] == "AnomalyDetected")), "{listed}");
    let body = received(&out).into_iter().find(|b| b["alerts"][0]["labels"]["alertname"] == "AnomalyDetected");
    let body = body.expect("anomaly body");
    assert_eq!((body["version"].as_str(), body["status"].as_str()), (Some("4"), Some("firing")), "{body}");
    assert_eq!(body["alerts"][0]["labels"]["metric"], "latency", "{body}");
    assert!(body["alerts"][0]["fingerprint"].as_str().is_some_and(|f| f.len() == 16), "{body}");
    post(&format!("{base}/slow?ms=0"));
    assert!(
        wait_until(Duration::from_secs(15), || has(&out, "AnomalyDetected", "resolved")),
        "anomaly resolved; received {:?}",
        alert_statuses(&out)
    );

    // A log line matching the pattern fires an alert; the old line written before start did not.
    append(&app_log, "java.lang.OutOfMemoryError: Java heap space");
    assert!(
        wait_until(Duration::from_secs(10), || has(&out, "OutOfMemory", "firing")),
        "log alert; received {:?}; log:\n{}",
        alert_statuses(&out),
        host.log_text()
    );
    let matches = || scrape(&admin, "aegis_log_matches_total", "rule=\"OutOfMemory\",severity=\"critical\"");
    // `/metrics` may be up to 250 ms old: wait for the count, then make sure it stays at one.
    assert!(wait_until(Duration::from_secs(2), || matches() == Some(1.0)), "one match: {:?}", matches());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(matches(), Some(1.0), "one match, not the pre-existing line");
    assert!(wait_until(Duration::from_secs(10), || has(&out, "OutOfMemory", "resolved")), "resolved after 1s quiet");
    // Rotation (rename + new file) and truncation keep matching.
    std::fs::rename(&app_log, tmp.path().join("app.log.1")).expect("rotate");
    append(&app_log, "ERROR: out of memory in worker 2");
    assert!(
        wait_until(Duration::from_secs(10), || matches() == Some(2.0)),
        "match in the new file after rotation; log:\n{}",
        host.log_text()
    );
    // Truncated, then a shorter line (a file that is truncated and refilled past its old size between two polls is
    // indistinguishable from one that grew, for any size-based tailer such as `tail -F`).
    std::fs::write(&app_log, "").expect("truncate");
    append(&app_log, "out of memory (3)");
    assert!(
        wait_until(Duration::from_secs(10), || matches() == Some(3.0)),
        "match after truncation; log:\n{}",
        host.log_text()
    );

    // The receiver goes away; the service goes down: the breaker alert waits in the outbox.
    assert!(receiver.terminate(Duration::from_secs(10)).is_some());
    post(&format!("{base}/down"));
    assert!(
        wait_until(Duration::from_secs(15), || scrape(&admin, "aegis_alert_outbox_pending", "").unwrap_or(0.0) >= 1.0),
        "queued while the receiver is down; log:\n{}",
        host.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            scrape(&admin, "aegis_alert_deliveries_total", "result=\"failure\",target=\"webhook\"").unwrap_or(0.0)
                >= 1.0
        }),
        "delivery attempted and failed"
    );
    // aegis-host restarts while the alert is undelivered; meanwhile the service recovers.
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
    post(&format!("{base}/up"));
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis-2.log"));
    assert!(
        wait_until(Duration::from_secs(20), || scrape(&admin, "circuit_breaker_state", "breaker=\"svc\"") == Some(0.0)),
        "closed after the restart; log:\n{}",
        host.log_text()
    );
    let _receiver = start_receiver(hook_port, &out, &tmp.path().join("hooks-2.log"));
    assert!(
        wait_until(Duration::from_secs(20), || has(&out, "CircuitBreakerOpen", "firing")
            && has(&out, "CircuitBreakerOpen", "resolved")),
        "the alert raised while the receiver was down arrived after the restart; received {:?}; log:\n{}",
        alert_statuses(&out),
        host.log_text()
    );
    assert!(wait_until(Duration::from_secs(5), || scrape(&admin, "aegis_alert_outbox_pending", "") == Some(0.0)));

    // Nothing was lost: every alert that fired was also resolved, and every fingerprint arrived as both.
    let mut fired = BTreeSet::new();
    let mut resolved = BTreeSet::new();
    for body in received(&out) {
        for a in body["alerts"].as_array().cloned().unwrap_or_default() {
            let key = a["fingerprint"].as_str().unwrap_or_default().to_owned();
            match a["status"].as_str() {
                Some("firing") => fired.insert(key),
                Some("resolved") => resolved.insert(key),
                _ => false,
            };
        }
    }
    // The same alerts went to the Alertmanager API too, as v2 alert arrays.
    let v2: Vec<Value> = received(&out).into_iter().filter_map(|b| b.as_array().cloned()).flatten().collect();
    assert!(
        v2.iter().any(|a| a["labels"]["alertname"] == "CircuitBreakerOpen" && a["endsAt"].is_string()),
        "resolved breaker alert posted to /api/v2/alerts: {v2:?}"
    );
    assert!(v2.iter().all(|a| a["startsAt"].is_string() && a["labels"]["severity"].is_string()), "{v2:?}");
    assert!(fired.len() >= 3, "anomaly, log and breaker alerts: {fired:?}");
    assert_eq!(fired, resolved, "every alert that fired also resolved");
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// The three detection policy kinds as plugins, wired through the config: a log-rule plugin finds the panic in a
/// log file, an anomaly-scorer plugin judges the latency series, and an alert-formatter plugin renders the
/// webhook bodies.
#[test]
fn log_rule_anomaly_scorer_and_alert_formatter_plugins_decide() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    for p in ["panic-detector", "ewma-latency", "chat-formatter"] {
        aegis_tests::install_plugin(p, &plugins);
    }
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let hook_port = free_port();
    let out = tmp.path().join("received.jsonl");
    let _receiver = start_receiver(hook_port, &out, &tmp.path().join("hooks.log"));
    let app_log = tmp.path().join("app.log");
    std::fs::write(&app_log, "").expect("create log");
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 50ms
    timeout: 3s
    actions: {{onFailure: ignore}}
logs:
  scan_interval: 50ms
  files: [{{service: svc, path: "{app_log}"}}]
  plugins: [panic-detector]
anomaly_detection:
  detection_interval: 300ms
  history_size: 30
  scorers:
    - {{service: svc, plugin: ewma-latency, config: {{warmup: 3, k: 4, min_sigma: 5}}}}
alerting:
  webhook: http://127.0.0.1:{hook_port}/hook
  formatter: chat-formatter
  formatter_config: {{channel: '#ops'}}
  evaluation_interval: 100ms
  rules:
    log_match: {{keep_firing_for: 1s}}
    anomaly: {{keep_firing_for: 0s}}
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
            app_log = app_log.display(),
        ),
    )
    .expect("write config");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let texts = || -> Vec<String> {
        received(&out).iter().filter_map(|b| b["text"].as_str().map(str::to_owned)).collect::<Vec<_>>()
    };
    let calls = |plugin: &str| plugin_calls(&admin, plugin, "ok");
    assert!(
        wait_until(Duration::from_secs(20), || calls("ewma-latency") >= 4.0),
        "scorer warmed up; log:\n{}",
        host.log_text()
    );

    append(&app_log, "thread 'main' panicked at src/main.rs:3:5:");
    append(&app_log, "called `Option::unwrap()` on a `None` value");
    assert!(
        wait_until(Duration::from_secs(10), || texts().iter().any(|t| t.contains("[FIRING] rust-panic"))),
        "the plugin's finding, rendered by the formatter plugin; got {:?}; log:\n{}",
        texts(),
        host.log_text()
    );
    let findings = || scrape(&admin, "aegis_log_matches_total", "rule=\"rust-panic\",severity=\"critical\"");
    assert!(wait_until(Duration::from_secs(2), || findings() == Some(1.0)), "one finding: {:?}", findings());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(findings(), Some(1.0), "one crash, one finding");

    post(&format!("{base}/slow?ms=300"));
    assert!(
        wait_until(Duration::from_secs(15), || texts().iter().any(|t| t.contains("[FIRING] AnomalyDetected"))),
        "the scorer plugin flagged the slow checks; got {:?}; log:\n{}",
        texts(),
        host.log_text()
    );
    post(&format!("{base}/slow?ms=0"));
    assert!(calls("panic-detector") >= 2.0 && calls("chat-formatter") >= 2.0);
    let body = received(&out).into_iter().find(|b| b["text"].as_str().is_some_and(|t| t.contains("rust-panic")));
    assert!(
        body.is_some_and(|b| b["attachments"].is_array() && b["channel"] == "#ops"),
        "chat-formatter's message shape, with its configured channel"
    );
}

/// One request as it reached [`RawReceiver`]: the head as sent (request line and header lines) and the body, read by
/// the framing the head announced.
#[derive(Clone, Debug)]
struct RawRequest {
    head: String,
    body: Vec<u8>,
}

impl RawRequest {
    /// Every value of header `name` (case-insensitive), in order.
    fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// A minimal HTTP/1.1 receiver on a loopback port that answers every request 200 and keeps each one as it arrived on
/// the wire: the example webhook server keeps JSON bodies only, and this test is about the Host header and framing.
struct RawReceiver {
    port: u16,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    stop: Arc<AtomicBool>,
}

impl RawReceiver {
    fn start() -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the raw receiver");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let seen = Arc::clone(&seen);
                        std::thread::spawn(move || serve(stream, &seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        RawReceiver { port, requests, stop }
    }

    fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads requests from one connection until it closes (or is idle for 5 s), answering each 200.
fn serve(stream: TcpStream, seen: &Mutex<Vec<RawRequest>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(request);
        if writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// One request: the head up to its blank line, then a chunked body if `Transfer-Encoding` says chunked, else
/// `Content-Length` bytes (RFC 9112 §6.3). `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut request = RawRequest { head, body: Vec::new() };
    if request.header("transfer-encoding").iter().any(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            request.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = request.header("content-length").first().and_then(|v| v.parse::<usize>().ok()) {
        request.body = vec![0; length];
        reader.read_exact(&mut request.body).ok()?;
    }
    Some(request)
}

/// The measured defect: a formatter plugin answering `Host: evil.example`, `Content-Length: 0`, `Transfer-Encoding:
/// chunked` and an empty body got those headers sent, the receiver read an empty body, and the outbox counted the
/// alert delivered. Now the answer is an invalid result and the built-in Alertmanager JSON goes out instead.
#[test]
fn a_formatter_plugin_cannot_set_the_framing_headers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    aegis_tests::install_plugin("hostile-formatter", &plugins);
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let receiver = RawReceiver::start();
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    timeout: 3s
    actions:
      onFailure: ignore
      circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
alerting:
  webhook: http://127.0.0.1:{port}/hook
  formatter: hostile-formatter
  formatter_config: {{mode: framing}}
  evaluation_interval: 100ms
  retry_initial: 100ms
  retry_max: 400ms
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
            port = receiver.port,
        ),
    )
    .expect("write config");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || scrape(&admin, "circuit_breaker_state", "breaker=\"svc\"") == Some(0.0)),
        "up; log:\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("alert formatter bound to plugin"), "{}", host.log_text());

    post(&format!("{base}/down"));
    let breaker_alert = || {
        receiver.requests().into_iter().find(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|b| b["alerts"][0]["labels"]["alertname"] == "CircuitBreakerOpen")
        })
    };
    assert!(
        wait_until(Duration::from_secs(15), || breaker_alert().is_some()),
        "the breaker alert arrived; received {:?}; log:\n{}",
        receiver.requests(),
        host.log_text()
    );
    let request = breaker_alert().expect("breaker alert");
    assert_eq!(request.header("host"), [format!("127.0.0.1:{}", receiver.port)], "{}", request.head);
    assert!(request.header("transfer-encoding").is_empty(), "{}", request.head);
    assert_eq!(request.header("content-length"), [request.body.len().to_string()], "{}", request.head);
    assert_eq!(request.header("content-type"), ["application/json"], "{}", request.head);
    assert_eq!(request.header("idempotency-key").len(), 1, "{}", request.head);
    let body: Value = serde_json::from_slice(&request.body).expect("the body is JSON");
    assert_eq!((body["version"].as_str(), body["status"].as_str()), (Some("4"), Some("firing")), "{body}");
    assert_eq!(body["alerts"][0]["labels"]["service"], "svc", "{body}");
    for r in receiver.requests() {
        assert!(!r.head.to_ascii_lowercase().contains("evil.example") && !r.body.is_empty(), "{r:?}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || plugin_calls(&admin, "hostile-formatter", "invalid") >= 1.0),
        "the answer counted as invalid; metrics:\n{}\nlog:\n{}",
        get_text(&format!("http://{admin}/metrics")).unwrap_or_default(),
        host.log_text()
    );
    assert_eq!(plugin_calls(&admin, "hostile-formatter", "ok"), 0.0);
    assert!(host.log_text().contains("header Host is set by the host"), "{}", host.log_text());
}

/// SIGHUP applies changed `logs:`, `anomaly_detection:` and `alerting:` sections without a restart: a new log
/// pattern matches a line whose first half was read before the reload (the tailer kept its position, the old line
/// is not read again), alerts go to the new receiver, detection switched on judges at once — and the alert that
/// fired before the reload is still active. A file with a bad section is refused whole and changes nothing.
#[test]
fn a_reload_applies_logs_anomaly_detection_and_alerting_keeping_alerts_and_positions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let (port_a, port_b) = (free_port(), free_port());
    let (out_a, out_b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    let _a = start_receiver(port_a, &out_a, &tmp.path().join("hooks-a.log"));
    let _b = start_receiver(port_b, &out_b, &tmp.path().join("hooks-b.log"));
    let app_log = tmp.path().join("app.log");
    std::fs::write(&app_log, "").expect("create log");
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    let write = |receiver: u16, extra_pattern: &str, anomaly: &str| {
        std::fs::write(
            &config,
            format!(
                r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}"}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    timeout: 3s
    actions: {{onFailure: ignore}}
logs:
  scan_interval: 50ms
  files: [{{service: svc, path: "{app_log}"}}]
  patterns:
    - {{name: OutOfMemory, pattern: "(?i)out of memory", severity: CRITICAL}}
{extra_pattern}
{anomaly}
alerting:
  webhook: http://127.0.0.1:{receiver}/hook
  evaluation_interval: 100ms
  retry_initial: 100ms
  retry_max: 400ms
  rules:
    log_match: {{keep_firing_for: 1h}}
    anomaly: {{keep_firing_for: 0s}}
"#,
                plugins = tmp.path().join("no-plugins").display(),
                db = tmp.path().join("aegis.db").display(),
                app_log = app_log.display(),
            ),
        )
        .expect("write config")
    };
    write(port_a, "", "");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let matches = |rule: &str, severity: &str| {
        scrape(&admin, "aegis_log_matches_total", &format!("rule=\"{rule}\",severity=\"{severity}\"")).unwrap_or(0.0)
    };
    assert!(wait_until(Duration::from_secs(20), || get_text(&format!("http://{admin}/health")).is_some()));
    // Until a line is seen the tailer may not have opened the file yet (it starts at the end).
    assert!(
        wait_until(Duration::from_secs(10), || {
            append(&app_log, "out of memory (before the reload)");
            std::thread::sleep(Duration::from_millis(200));
            has(&out_a, "OutOfMemory", "firing")
        }),
        "the first alert reaches receiver A; log:\n{}",
        host.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let oom_before = matches("OutOfMemory", "critical");
    // Half a line, read before the reload and completed after it.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&app_log)
        .and_then(|mut f| f.write_all(b"half a FATAL"))
        .expect("append");
    std::thread::sleep(Duration::from_millis(300));

    write(
        port_b,
        "    - {name: Fatal, pattern: FATAL, severity: WARNING}",
        "anomaly_detection: {detection_interval: 300ms, history_size: 20, detector: none, \
         thresholds: {latency: [{service: svc, value: 250}]}}",
    );
    host.hangup();
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().contains("config reloaded")),
        "reloaded; log:\n{}",
        host.log_text()
    );
    let log = host.log_text();
    for applied in ["alerting applied", "logs applied", "anomaly_detection applied"] {
        assert!(log.contains(applied), "{applied}; log:\n{log}");
    }
    assert!(!log.contains("only with a restart"), "log:\n{log}");

    append(&app_log, " line, completed after the reload");
    assert!(
        wait_until(Duration::from_secs(10), || has(&out_b, "Fatal", "firing")),
        "the new pattern's alert reaches the new receiver; B got {:?}; log:\n{}",
        alert_statuses(&out_b),
        host.log_text()
    );
    let fatal = received(&out_b)
        .into_iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .find(|a| a["labels"]["alertname"] == "Fatal")
        .expect("Fatal alert");
    assert_eq!(fatal["annotations"]["line"], "half a FATAL line, completed after the reload", "{fatal}");
    assert!(!has(&out_a, "Fatal", "firing"), "the old receiver gets nothing new");
    assert_eq!(matches("OutOfMemory", "critical"), oom_before, "no line read twice");
    // The alert raised before the reload is still active.
    let active = get_text(&format!("http://{admin}/api/v1/alerts")).unwrap_or_default();
    assert!(active.contains("OutOfMemory") && active.contains("Fatal"), "{active}");

    // Detection, switched on by the reload, judges the service.
    post(&format!("{base}/slow?ms=400"));
    assert!(
        wait_until(Duration::from_secs(15), || has(&out_b, "AnomalyDetected", "firing")),
        "anomaly alert at B; B got {:?}; log:\n{}",
        alert_statuses(&out_b),
        host.log_text()
    );
    post(&format!("{base}/slow?ms=0"));

    // A bad pattern: the whole file is refused with its location, and everything goes on as it was.
    write(port_a, "    - {name: Broken, pattern: \"(unclosed\", severity: WARNING}", "");
    host.hangup();
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().contains("reload refused")),
        "refused; log:\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("aegis.yaml:"), "located; log:\n{}", host.log_text());
    let fatal_before = matches("Fatal", "warning");
    append(&app_log, "FATAL again");
    assert!(
        wait_until(Duration::from_secs(10), || matches("Fatal", "warning") > fatal_before),
        "the running rules stay; log:\n{}",
        host.log_text()
    );
}
