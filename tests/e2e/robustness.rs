//! Robustness: the admin API's size limits, secrets kept out of logs, events, `check-config` and the API, a plugin
//! directory receiving a half-copied plugin, and a state database that stops accepting writes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use aegis_tests::{
    Proc, binary, built_plugins, free_port, get_text, http, install_plugin, scrape, start_aegis_host, wait_until,
};

/// A config with one service checked every 100 ms at `endpoint` with `actions` (YAML flow mapping), and `extra`
/// YAML at the top level (which may set `plugins:`; by default, a directory with none).
fn write_config(dir: &Path, admin: &str, endpoint: &str, extra: &str, actions: &str) -> std::path::PathBuf {
    let config = dir.join("aegis.yaml");
    let plugins = if extra.contains("plugins:") {
        String::new()
    } else {
        format!("plugins: {{dir: \"{}\"}}", dir.join("plugins").display())
    };
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}", token: "t0k3n-s3cret"}}
storage: {{path: "{db}"}}
{plugins}
defaults:
  interval: 100ms
  timeout: 1s
  actions:
    circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
{extra}
services:
  - name: svc
    type: http
    endpoint: {endpoint}
    actions: {actions}
"#,
            db = dir.join("aegis.db").display(),
        ),
    )
    .expect("write config");
    config
}

/// The actions of most tests here: notify (to the webhook `extra` names).
const NOTIFY: &str = "{onFailure: notify}";

/// Sends `head` (and `body`) on a raw connection and returns the status code of the answer; 0 when the server
/// closed the connection without one.
fn raw_status(admin: &str, head: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(admin).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    // The server may answer and close before it read all we send: a failed write is not the test's concern.
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn admin_api_refuses_oversized_bodies_and_headers_and_serves_normal_requests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &admin,
        "http://127.0.0.1:9/health",
        "notifications: {webhook: 'http://127.0.0.1:9/'}",
        NOTIFY,
    );
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let base = format!("http://{admin}");
    assert!(
        wait_until(Duration::from_secs(20), || get_text(&format!("{base}/healthz")).is_some()),
        "admin up; log:\n{}",
        host.log_text()
    );
    let force = format!("{base}/api/v1/circuit-breakers/svc/force-state");
    // The status, or `None` when the server answered and closed while the client was still sending (a refusal the
    // client may see as a reset instead of the 413, depending on timing).
    let post = |body: reqwest::blocking::Body| {
        http()
            .post(&force)
            .bearer_auth("t0k3n-s3cret")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    };
    assert_eq!(post(r#"{"state":"open"}"#.into()), Some(200), "a normal mutation");
    // 100 KiB of valid JSON: refused for its size, not its content.
    let big = format!(r#"{{"state":"auto","pad":"{}"}}"#, "x".repeat(100 * 1024));
    let refused = |status: Option<u16>| matches!(status, Some(413) | None);
    let status = post(big.clone().into());
    assert!(refused(status), "declared length over the limit: {status:?}");
    // The same without a Content-Length (chunked): cut off at the limit.
    let status = post(reqwest::blocking::Body::new(std::io::Cursor::new(big.into_bytes())));
    assert!(refused(status), "chunked: {status:?}");
    // Neither was applied: the breaker is still forced open.
    let breaker = get_text(&format!("{base}/api/v1/circuit-breakers/svc")).unwrap_or_default();
    assert!(breaker.contains("\"state\":\"forced-open\""), "{breaker}");
    // 20 KiB of headers: 431, from the layer; 200 headers: 431 from hyper (or the connection closes).
    let status = http().get(format!("{base}/api/v1/services")).header("x-pad", "y".repeat(20 * 1024)).send();
    assert_eq!(status.expect("GET").status().as_u16(), 431);
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let status = raw_status(&admin, &format!("GET /api/v1/services HTTP/1.1\r\nHost: a\r\n{many}\r\n"), b"");
    assert!(status == 431 || status == 0, "200 headers: {status}");
    // A header block far over hyper's own buffer: refused, never buffered without end.
    let huge = format!("GET /healthz HTTP/1.1\r\nHost: a\r\nx-pad: {}\r\n\r\n", "z".repeat(1 << 20));
    let status = raw_status(&admin, &huge, b"");
    assert!(status == 431 || status == 0, "1 MiB header: {status}");
    // And the server still answers normally afterwards.
    assert_eq!(get_text(&format!("{base}/healthz")).as_deref(), Some("ok\n"));
    assert_eq!(post(r#"{"state":"auto"}"#.into()), Some(200));
}

#[test]
fn credentials_in_urls_and_the_admin_token_never_reach_logs_events_or_the_api() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hook_port = free_port();
    let _hooks =
        Proc::start(&binary("webhook-server"), &["--port", &hook_port.to_string()], &tmp.path().join("hooks.log"));
    assert!(
        wait_until(Duration::from_secs(10), || get_text(&format!("http://127.0.0.1:{hook_port}/received")).is_some())
    );
    let admin = format!("127.0.0.1:{}", free_port());
    let dead = free_port();
    // The service's checks fail (nothing listens): its breaker opens and both webhooks are called, one answering
    // (a `notified` event) and one refusing connections (a `notify-failed` event with reqwest's error).
    let extra = format!(
        "notifications: {{webhook: 'http://hook-user:hunter2@127.0.0.1:{hook_port}/hook'}}\n\
         alerting: {{webhook: 'http://alert-user:swordfish@127.0.0.1:{dead}/alerts'}}"
    );
    // The check URL carries credentials too: they reach the probed service, nothing else.
    let endpoint = format!("http://check-user:pa55w0rd@127.0.0.1:{dead}/health");
    let config = write_config(tmp.path(), &admin, &endpoint, &extra, NOTIFY);
    let secrets = ["hunter2", "swordfish", "t0k3n-s3cret", "pa55w0rd"];

    let out = std::process::Command::new(binary("aegis-host"))
        .args(["check-config", config.to_str().expect("utf-8")])
        .output()
        .expect("check-config");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("hook-user:***@") && printed.contains("alert-user:***@"), "{printed}");
    assert!(!secrets.iter().any(|s| printed.contains(s)), "{printed}");

    let log = tmp.path().join("aegis.log");
    let host = Proc::start_with_env(
        &binary("aegis-host"),
        &["--config", config.to_str().expect("utf-8")],
        &log,
        &[("AEGIS_LOG", "debug")],
    );
    let events = || get_text(&format!("http://{admin}/api/v1/events?limit=200")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(30), || events().contains("\"notified\"")),
        "notified; events: {}; log:\n{}",
        events(),
        host.log_text()
    );
    let shown = events();
    assert!(shown.contains("hook-user:***@"), "{shown}");
    // Alert delivery to the dead receiver fails at least once (logged with the URL it tried).
    assert!(
        wait_until(Duration::from_secs(30), || host.log_text().contains("alert-user:***@")),
        "alert delivery logged; log:\n{}",
        host.log_text()
    );
    let mut everything = shown;
    for path in ["/api/v1/services", "/api/v1/alerts", "/api/v1/circuit-breakers/svc", "/metrics"] {
        everything.push_str(&get_text(&format!("http://{admin}{path}")).unwrap_or_default());
    }
    everything.push_str(&host.log_text());
    for secret in secrets {
        assert!(!everything.contains(secret), "`{secret}` shown:\n{everything}");
    }
}

/// A plugin copied in slowly (the file grows over several watch intervals) is loaded once, when complete: never as
/// a torn file. A symlink loop beside it is named in the log, and the other plugins load and decide.
#[test]
fn a_plugin_copied_in_slowly_loads_once_complete_and_a_symlink_loop_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    install_plugin("window-trip", &plugins);
    std::os::unix::fs::symlink("loop-b.wasm", plugins.join("loop-a.wasm")).expect("link");
    std::os::unix::fs::symlink("loop-a.wasm", plugins.join("loop-b.wasm")).expect("link");
    let admin = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "notifications: {{webhook: 'http://127.0.0.1:9/'}}\nplugins: {{dir: \"{}\", watchInterval: 150ms}}",
        plugins.display()
    );
    // The service's breaker asks `late-trip`, which is not there yet.
    let actions = "{onFailure: notify, circuitBreaker: {tripPolicy: {plugin: late-trip}}}";
    let config = write_config(tmp.path(), &admin, "http://127.0.0.1:9/health", &extra, actions);
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || host.log_text().contains("no plugin named `late-trip`")),
        "started; log:\n{}",
        host.log_text()
    );
    let log = host.log_text();
    for name in ["loop-a.wasm", "loop-b.wasm"] {
        assert!(
            log.lines().any(|l| l.contains(name) && l.contains("symlink") && l.contains("symbolic links")),
            "{name} named; log:\n{log}"
        );
    }
    assert!(log.contains("window-trip"), "the other plugin loaded; log:\n{log}");

    // Copy in progress: a growing file, a chunk every 60 ms over about a second (several watch intervals).
    let wasm = std::fs::read(built_plugins().join("window_trip.wasm")).expect("built plugin");
    let target = plugins.join("late-trip.wasm");
    let mut file = std::fs::File::create(&target).expect("create");
    let chunk = wasm.len() / 16 + 1;
    for part in wasm.chunks(chunk) {
        file.write_all(part).expect("write");
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(60));
    }
    drop(file);
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().contains("added=[\"late-trip\"]")),
        "the complete plugin loaded; log:\n{}",
        host.log_text()
    );
    let log = host.log_text();
    let waiting = format!("waiting for {} to settle", target.display());
    assert_eq!(log.matches(&waiting).count(), 1, "announced once; log:\n{log}");
    assert!(!log.contains("not a loadable WASM component"), "no torn load; log:\n{log}");
}

/// The state database refuses writes (read-only for its first seconds, through the debug-build test hook): the host
/// keeps checking and acting, reports the failure once in the log and in `aegis_storage_errors_total`, and once the
/// database accepts writes again records a `storage-error` event and writes the breaker state it could not, so a
/// forced-open breaker is still forced open after a restart.
#[test]
fn an_unwritable_database_is_reported_once_and_caught_up_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _service =
        Proc::start(&binary("http-service"), &["--port", &port.to_string()], &tmp.path().join("service.log"));
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/health")).is_some()));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &admin,
        &format!("{base}/health"),
        "notifications: {webhook: 'http://127.0.0.1:9/'}",
        NOTIFY,
    );
    let args = ["--config", config.to_str().expect("utf-8")];
    let mut host = Proc::start_with_env(
        &binary("aegis-host"),
        &args,
        &tmp.path().join("aegis.log"),
        &[("AEGIS_TEST_STORE_FAULT", "read-only:12s")],
    );
    let checks = || scrape(&admin, "aegis_health_checks_total", "result=\"success\",service=\"svc\"").unwrap_or(0.0);
    assert!(wait_until(Duration::from_secs(20), || checks() >= 1.0), "checking; log:\n{}", host.log_text());

    // Through the breaker: checks that ran and checks the open breaker rejected, both made by the probe loop.
    let through = || {
        ["success", "failure", "rejected"]
            .iter()
            .map(|r| {
                scrape(&admin, "circuit_breaker_requests_total", &format!("breaker=\"svc\",result=\"{r}\""))
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    // Acting works while nothing can be written: the breaker opens at once, its event and snapshot are refused.
    let forced = http()
        .post(format!("http://{admin}/api/v1/circuit-breakers/svc/force-state"))
        .bearer_auth("t0k3n-s3cret")
        .header("content-type", "application/json")
        .body(r#"{"state":"open"}"#)
        .send()
        .expect("POST");
    assert_eq!(forced.status().as_u16(), 200);
    let refused = |operation: &str| {
        scrape(&admin, "aegis_storage_errors_total", &format!("operation=\"{operation}\"")).unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || refused("append_event") >= 1.0 && refused("save_breaker") >= 1.0),
        "counted; log:\n{}",
        host.log_text()
    );
    // The probe loop goes on while the store refuses writes.
    let before = through();
    assert!(
        wait_until(Duration::from_secs(5), || through() >= before + 5.0 && refused("append_event") >= 1.0),
        "checks go on; log:\n{}",
        host.log_text()
    );
    assert!(
        !events_text(&admin).contains("storage-error"),
        "still failing: {}; log:\n{}",
        events_text(&admin),
        host.log_text()
    );

    // Space returns: one storage-error event, and the refused snapshot is written.
    let events = || events_text(&admin);
    assert!(
        wait_until(Duration::from_secs(30), || events().contains("storage-error")),
        "storage-error event; events: {}; log:\n{}",
        events(),
        host.log_text()
    );
    let log = host.log_text();
    assert_eq!(log.matches("does not accept writes").count(), 1, "reported once:\n{log}");
    assert_eq!(events().matches("storage-error").count(), 1, "{}", events());
    host.terminate(Duration::from_secs(10)).expect("stops");

    let host = start_aegis_host(&config, &tmp.path().join("aegis2.log"));
    let state = || {
        get_text(&format!("http://{admin}/api/v1/circuit-breakers/svc"))
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["state"].as_str().map(str::to_owned))
    };
    assert!(wait_until(Duration::from_secs(20), || state().is_some()), "restarted; log:\n{}", host.log_text());
    assert_eq!(state().as_deref(), Some("forced-open"), "the caught-up snapshot survived the restart");
}

/// The newest events of no service, as the API's JSON text.
fn events_text(admin: &str) -> String {
    get_text(&format!("http://{admin}/api/v1/events?service=-&limit=50")).unwrap_or_default()
}
