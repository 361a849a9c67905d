//! The walking skeleton end to end: probe → breaker → WASM trip plugin → restart → metrics.

use std::path::Path;
use std::time::Duration;

use aegis_tests::{Proc, binary, free_port, get_text, install_plugin, post, scrape, wait_until};

const STATE: &str = "circuit_breaker_state";

fn state(admin: &str) -> Option<f64> {
    scrape(admin, STATE, "breaker=\"svc\"")
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("aegis.yaml");
    std::fs::write(&path, body).expect("write config");
    path
}

/// The service goes DOWN: the window-trip plugin opens the breaker, the restart command runs (spaced by the backoff);
/// the service comes back UP: the breaker goes half-open and closes after `successThreshold` good probes.
#[test]
fn breaker_opens_via_wasm_plugin_restarts_and_closes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    install_plugin("window-trip", &plugins);
    // A broken component beside it must be skipped with a clear log line, not stop the host.
    std::fs::write(plugins.join("broken.wasm"), b"\0asm\x0d\0\x01\0garbage").expect("write broken plugin");

    let port = free_port();
    let service = Proc::start(&binary("http-service"), &["--port", &port.to_string()], &tmp.path().join("service.log"));
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/health")).is_some()), "service started");

    let admin = format!("127.0.0.1:{}", free_port());
    let restarts = tmp.path().join("restarts.log");
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin:
  address: {admin}
plugins:
  dir: {plugins}
storage:
  path: {db}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 150ms
    timeout: 1s
    retries: 0
    actions:
      onFailure: restart
      restart:
        command: "echo restarted >> {restarts}"
      circuitBreaker:
        failureThreshold: 10
        resetTimeout: 1s
        successThreshold: 2
        tripPolicy:
          plugin: window-trip
          config: {{window: 4, failures: 3}}
      backoff:
        initialInterval: 100ms
        maxInterval: 1s
        multiplier: 2.0
        jitter: none
"#,
            plugins = plugins.display(),
            restarts = restarts.display(),
            db = tmp.path().join("aegis.db").display(),
        ),
    );
    let host_log = tmp.path().join("aegis.log");
    let mut host = Proc::start(&binary("aegis-host"), &["--config", config.to_str().expect("utf-8 path")], &host_log);

    assert!(
        wait_until(Duration::from_secs(20), || state(&admin) == Some(0.0)
            && scrape(&admin, "aegis_health_checks_total", "result=\"success\",service=\"svc\"").unwrap_or(0.0) >= 2.0),
        "breaker closed with successful checks before the outage; log:\n{}",
        host.log_text()
    );
    let log = host.log_text();
    assert!(log.contains("trip predicate bound to plugin"), "plugin bound; log:\n{log}");
    assert!(log.contains("plugin skipped") && log.contains("broken.wasm"), "broken plugin reported; log:\n{log}");

    post(&format!("{base}/down"));
    assert!(
        wait_until(Duration::from_secs(10), || state(&admin) == Some(2.0)),
        "breaker opened after the service went down; log:\n{}",
        host.log_text()
    );
    // failureThreshold is 10, so only the plugin (3 bad of the last 4) can have opened it this early.
    let log = host.log_text();
    assert!(log.contains("3 of the last 4 probes failed"), "the WASM plugin's reason is logged; log:\n{log}");
    assert_eq!(scrape(&admin, "aegis_breaker_trips_total", "breaker=\"svc\",policy=\"window-trip\""), Some(1.0));
    let plugin_ok = scrape(&admin, "aegis_plugin_calls_total", "plugin=\"window-trip\",result=\"ok\"");
    assert!(plugin_ok.is_some_and(|n| n >= 3.0), "plugin calls are exported: {plugin_ok:?}");
    assert_eq!(scrape(&admin, "aegis_plugin_quarantined", "plugin=\"window-trip\""), Some(0.0));

    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&restarts)
            .is_ok_and(|t| t.lines().any(|l| l == "restarted"))),
        "the restart command ran; log:\n{}",
        host.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || scrape(
            &admin,
            "aegis_service_restarts_total",
            "result=\"success\",service=\"svc\""
        )
        .is_some_and(|v| v >= 1.0)),
        "restart counted"
    );

    // Still down: the half-open probe fails and the breaker opens again, with a longer backoff before the restart.
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().matches("restarting in").count() >= 2),
        "second restart scheduled after a failed half-open probe; log:\n{}",
        host.log_text()
    );

    post(&format!("{base}/up"));
    assert!(
        wait_until(Duration::from_secs(15), || state(&admin) == Some(0.0)),
        "breaker closed after the service came back; log:\n{}",
        host.log_text()
    );
    let log = host.log_text();
    let half_open = log.rfind("circuit breaker HALF-OPEN").expect("went half-open");
    let closed = log.rfind("circuit breaker CLOSED").expect("closed");
    assert!(half_open < closed);
    let oks = log[half_open..closed].matches("probe ok").count();
    assert!(oks >= 2, "closed only after successThreshold=2 good probes, saw {oks}; log:\n{log}");

    let status = host.terminate(Duration::from_secs(10)).expect("aegis-host stops on SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    drop(service);
}

/// With `process:`, Aegis starts the service itself and a restart respawns it: after the breaker opens the service
/// comes back with a new pid, and the breaker closes without anyone switching it UP.
#[test]
fn supervised_process_is_respawned_and_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}"}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 150ms
    timeout: 1s
    process:
      command: ["{service}", "--port", "{port}"]
    actions:
      onFailure: restart
      circuitBreaker: {{failureThreshold: 2, resetTimeout: 1s, successThreshold: 2}}
      backoff: {{initialInterval: 50ms, maxInterval: 1s, jitter: full}}
"#,
            plugins = tmp.path().join("no-plugins").display(),
            db = tmp.path().join("aegis.db").display(),
            service = binary("http-service").display(),
        ),
    );
    let mut host = Proc::start(
        &binary("aegis-host"),
        &["--config", config.to_str().expect("utf-8 path")],
        &tmp.path().join("aegis.log"),
    );
    let pid_of = || {
        get_text(&format!("{base}/status"))
            .and_then(|s| s.split("\"pid\":").nth(1)?.split([',', '}']).next()?.parse::<u32>().ok())
    };
    assert!(
        wait_until(Duration::from_secs(20), || pid_of().is_some() && state(&admin) == Some(0.0)),
        "service started by aegis; log:\n{}",
        host.log_text()
    );
    let first = pid_of().expect("pid");

    post(&format!("{base}/down"));
    assert!(
        wait_until(Duration::from_secs(15), || pid_of().is_some_and(|p| p != first)),
        "service respawned with a new pid; log:\n{}",
        host.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(15), || state(&admin) == Some(0.0)
            && scrape(&admin, "aegis_service_restarts_total", "result=\"success\",service=\"svc\"")
                .is_some_and(|v| v >= 1.0)),
        "breaker closed again after the respawn; log:\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("process respawned"));

    let second = pid_of().expect("pid");
    let status = host.terminate(Duration::from_secs(15)).expect("aegis-host stops on SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    // Shutting down stops the supervised service too.
    assert!(
        wait_until(Duration::from_secs(5), || get_text(&format!("{base}/health")).is_none()),
        "service {second} stopped with the host"
    );
}
