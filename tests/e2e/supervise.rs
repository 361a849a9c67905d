//! The walking skeleton end to end: probe → breaker → WASM trip plugin → restart → metrics.

use std::path::Path;
use std::time::{Duration, Instant};

use aegis_tests::{
    Proc, binary, free_port, get_text, install_plugin, plugin_calls, post, scrape, start_aegis_host,
    start_http_service, successful_checks, wait_until, write_host_config,
};

const STATE: &str = "circuit_breaker_state";

fn state(admin: &str) -> Option<f64> {
    scrape(admin, STATE, "breaker=\"svc\"")
}

/// The pid the example service reports at `/status`, while it answers.
fn service_pid(base: &str) -> Option<u32> {
    get_text(&format!("{base}/status"))
        .and_then(|s| s.split("\"pid\":").nth(1)?.split([',', '}']).next()?.parse::<u32>().ok())
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

    let (service, base) = start_http_service(&tmp.path().join("service.log"));

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
  deadline: 250ms   # generous: CI machines are loaded; the deadline itself is tested in host/plugin
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
    let mut host = start_aegis_host(&config, &host_log);

    assert!(
        wait_until(Duration::from_secs(20), || state(&admin) == Some(0.0) && successful_checks(&admin, "svc") >= 2.0),
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
    // The service's lines carry its span (entered per check and per transition, not held by the task).
    for what in ["supervising", "probe failed", "circuit breaker OPEN"] {
        let attributed = log.lines().any(|l| l.contains(what) && l.contains("run_service{service=svc}"));
        assert!(attributed, "`{what}` logged in the service's span; log:\n{log}");
    }
    assert_eq!(scrape(&admin, "aegis_breaker_trips_total", "breaker=\"svc\",policy=\"window-trip\""), Some(1.0));
    let plugin_ok = plugin_calls(&admin, "window-trip", "ok");
    assert!(plugin_ok >= 3.0, "plugin calls are exported: {plugin_ok}");
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
plugins: {{dir: "{plugins}", deadline: 250ms}}
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
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let pid_of = || service_pid(&base);
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

/// `shutdown: {stopChildren: false}`: on SIGTERM aegis-host leaves its supervised process running (e.g. so it can be
/// upgraded without downtime of the services it supervises).
#[test]
fn shutdown_can_leave_supervised_processes_running() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms}}
storage: {{path: "{db}"}}
shutdown: {{stopChildren: false}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 150ms
    process:
      command: ["{service}", "--port", "{port}"]
"#,
            plugins = tmp.path().join("no-plugins").display(),
            db = tmp.path().join("aegis.db").display(),
            service = binary("http-service").display(),
        ),
    );
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let pid_of = || service_pid(&base);
    assert!(
        wait_until(Duration::from_secs(20), || pid_of().is_some() && state(&admin) == Some(0.0)),
        "service started by aegis; log:\n{}",
        host.log_text()
    );
    let pid = pid_of().expect("pid");
    let status = host.terminate(Duration::from_secs(15)).expect("aegis-host stops on SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    std::thread::sleep(Duration::from_millis(500));
    let still = pid_of();
    // Clean up before asserting, so a failure does not leak the process.
    let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    assert_eq!(still, Some(pid), "the service outlived aegis-host; log:\n{}", host.log_text());
    assert!(host.log_text().contains("leaving the supervised process running"), "{}", host.log_text());
    assert!(wait_until(Duration::from_secs(5), || get_text(&format!("{base}/health")).is_none()), "cleaned up");
}

/// `actions.recoveryPolicy`: the bundled escalating-restart plugin decides instead of `onFailure` — one restart, then
/// a notification carrying the plugin's message, then waiting instead of restarting in a loop.
#[test]
fn recovery_strategy_plugin_escalates_from_restart_to_notify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    install_plugin("escalating-restart", &plugins);
    let port = free_port();
    let service = Proc::start(&binary("http-service"), &["--port", &port.to_string()], &tmp.path().join("service.log"));
    let base = format!("http://127.0.0.1:{port}");
    let hook_port = free_port();
    let hooks =
        Proc::start(&binary("webhook-server"), &["--port", &hook_port.to_string()], &tmp.path().join("hooks.log"));
    let hook_base = format!("http://127.0.0.1:{hook_port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/health")).is_some()
        && get_text(&format!("{hook_base}/received")).is_some()));

    let admin = format!("127.0.0.1:{}", free_port());
    let restarts = tmp.path().join("restarts.log");
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms}}
storage: {{path: "{db}"}}
notifications: {{webhook: "{hook_base}/hook"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    actions:
      onFailure: restart
      restart: {{command: "echo restarted >> {restarts}"}}
      circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
      backoff: {{initialInterval: 10ms, maxInterval: 50ms}}
      recoveryPolicy:
        plugin: escalating-restart
        config: {{restarts: 1, wait_ms: 60000}}
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
            restarts = restarts.display(),
        ),
    );
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(wait_until(Duration::from_secs(20), || state(&admin) == Some(0.0)), "up; log:\n{}", host.log_text());
    assert!(host.log_text().contains("recovery strategy bound to plugin"), "{}", host.log_text());

    post(&format!("{base}/down"));
    let notified = || {
        get_text(&format!("{hook_base}/received"))
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|n| n["event"] == "recovery-notify")
    };
    assert!(wait_until(Duration::from_secs(20), || notified().is_some()), "escalated; log:\n{}", host.log_text());
    let message = notified().expect("notification")["reason"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("still failing after 1 restart"), "the plugin's message is delivered: {message}");
    // Escalated: it now waits (60 s) instead of restarting again.
    std::thread::sleep(Duration::from_millis(1500));
    let lines = std::fs::read_to_string(&restarts).unwrap_or_default().lines().count();
    assert_eq!(lines, 1, "exactly one restart before escalating; log:\n{}", host.log_text());
    assert!(host.log_text().contains("Wait"), "third decision waits; log:\n{}", host.log_text());
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
    drop((service, hooks));
}

/// The plugin directory is watched: an added plugin is loaded, a broken replacement is refused while the running
/// version keeps deciding, and a removed one is unloaded — all without restarting aegis-host or missing a probe.
#[test]
fn plugin_directory_changes_are_picked_up_without_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    install_plugin("window-trip", &plugins);
    let port = free_port();
    let _service = Proc::start(&binary("http-service"), &["--port", &port.to_string()], &tmp.path().join("svc.log"));
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/health")).is_some()));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms, watchInterval: 100ms}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 50ms
    actions:
      onFailure: ignore
      circuitBreaker:
        tripPolicy: {{plugin: window-trip, config: {{window: 4, failures: 3}}}}
  - name: late
    type: http
    endpoint: {base}/health
    interval: 50ms
    actions:
      onFailure: ignore
      circuitBreaker:
        tripPolicy: {{plugin: late-trip}}
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
        ),
    );
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let calls = || plugin_calls(&admin, "window-trip", "ok");
    let checks = || successful_checks(&admin, "svc");
    assert!(wait_until(Duration::from_secs(20), || calls() >= 1.0), "plugin deciding; log:\n{}", host.log_text());

    assert!(host.log_text().contains("no plugin named `late-trip` is loaded"), "{}", host.log_text());

    // Added: a service that named it while it was missing starts using it.
    std::fs::copy(plugins.join("window-trip.wasm"), plugins.join("late-trip.tmp")).expect("copy late-trip");
    std::fs::rename(plugins.join("late-trip.tmp"), plugins.join("late-trip.wasm")).expect("install late-trip");
    let late = || plugin_calls(&admin, "late-trip", "ok");
    assert!(wait_until(Duration::from_secs(10), || late() >= 1.0), "late plugin decides; log:\n{}", host.log_text());
    install_plugin("escalating-restart", &plugins);
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().contains("added=[\"escalating-restart\"]")),
        "added plugin loaded; log:\n{}",
        host.log_text()
    );
    // A broken replacement: refused, the running version keeps deciding, and probing goes on.
    std::fs::write(plugins.join("window-trip.wasm"), b"\0asm\x0d\0\x01\0not a component").expect("overwrite");
    assert!(
        wait_until(Duration::from_secs(10), || host
            .log_text()
            .contains("plugin not reloaded, the running version stays")),
        "broken replacement refused; log:\n{}",
        host.log_text()
    );
    let (calls_before, checks_before) = (calls(), checks());
    std::thread::sleep(Duration::from_millis(1000));
    assert!(calls() >= calls_before + 5.0, "the old window-trip still decides: {calls_before} -> {}", calls());
    // 50 ms interval: about 20 checks a second; a stall would show as far fewer.
    assert!(checks() >= checks_before + 10.0, "probes kept their schedule: {checks_before} -> {}", checks());
    // Removed.
    std::fs::remove_file(plugins.join("escalating-restart.wasm")).expect("remove");
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().contains("removed=[\"escalating-restart\"]")),
        "removed plugin unloaded; log:\n{}",
        host.log_text()
    );
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// A trip plugin that never returns (the test-only `hostile` plugin, `mode: loop`) costs its own service one deadline
/// per decision and nothing more: the log names the plugin and what it did, the third strike quarantines it, and
/// another service keeps its probe schedule the whole time.
#[test]
fn a_runaway_plugin_is_cut_off_and_quarantined_while_other_services_keep_their_schedule() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    install_plugin("hostile", &plugins);
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
# A long deadline makes each runaway decision hold on for a whole second: a host that waited for it would show.
plugins: {{dir: "{plugins}", deadline: 1s, quarantine: {{strikes: 3, window: 60s, coolDown: 60s}}}}
storage: {{path: "{db}"}}
services:
  - name: runaway
    type: http
    endpoint: {base}/health
    interval: 50ms
    actions:
      onFailure: ignore
      circuitBreaker:
        tripPolicy: {{plugin: hostile, config: {{mode: loop}}}}
  - name: steady
    type: http
    endpoint: {base}/health
    interval: 50ms
    actions: {{onFailure: ignore}}
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
        ),
    );
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let timeouts = || plugin_calls(&admin, "hostile", "timeout");
    let steady = || successful_checks(&admin, "steady");
    let quarantined = || scrape(&admin, "aegis_plugin_quarantined", "plugin=\"hostile\"");

    assert!(wait_until(Duration::from_secs(20), || timeouts() >= 1.0), "first strike; log:\n{}", host.log_text());
    let (started, checks_before) = (Instant::now(), steady());
    assert_eq!(quarantined(), Some(0.0), "one strike does not quarantine");
    assert!(
        wait_until(Duration::from_secs(20), || quarantined() == Some(1.0)),
        "quarantined after the third strike; log:\n{}",
        host.log_text()
    );
    let (elapsed, checks) = (started.elapsed(), steady() - checks_before);
    assert_eq!(timeouts(), 3.0, "every strike was a missed deadline");
    // Two more runaway decisions, a second each, ran in between. At a 50 ms interval the other service gets about
    // 20 checks a second; when the decisions held up the async worker they ran on (two workers on two cores), it got
    // half of that.
    assert!(elapsed >= Duration::from_secs(2), "each strike used its whole deadline: {elapsed:?}");
    let expected = elapsed.as_secs_f64() * 20.0;
    assert!(
        checks >= expected * 0.7,
        "steady kept its schedule: {checks} checks in {elapsed:?}, expected {expected:.0}"
    );

    let log = host.log_text();
    assert!(log.contains("plugin=hostile") && log.contains("missed its 1s deadline"), "the log names it; log:\n{log}");
    assert!(log.contains("plugin quarantined after 3 strike(s)"), "quarantine logged; log:\n{log}");
    // And recorded in the event history, with the last strike's reason.
    let quarantine_event = || {
        let events = get_text(&format!("http://{admin}/api/v1/events?service=-"))?;
        let events: serde_json::Value = serde_json::from_str(&events).ok()?;
        events["events"].as_array()?.iter().find(|e| e["kind"] == "plugin-quarantined").cloned()
    };
    assert!(wait_until(Duration::from_secs(5), || quarantine_event().is_some()), "quarantine event recorded");
    let message = quarantine_event().map(|e| e["message"].to_string()).unwrap_or_default();
    assert!(
        message.contains("hostile: quarantined after 3 strike(s)") && message.contains("missed its 1s deadline"),
        "{message}"
    );
    // Quarantined: the built-in decides and the plugin is not called again within the cool-down.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(timeouts(), 3.0, "no call during the quarantine");
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// With the directory watch off, SIGHUP is what picks up plugin changes: a service that names a plugin not there yet
/// starts using it after the signal, and aegis-host keeps running (and probing) throughout.
#[test]
fn sighup_picks_up_plugin_changes_when_the_directory_is_not_watched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin directory");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", deadline: 250ms, watch: false}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 50ms
    actions:
      onFailure: ignore
      circuitBreaker:
        tripPolicy: {{plugin: window-trip}}
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
        ),
    );
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let calls = || plugin_calls(&admin, "window-trip", "ok");
    let checks = || successful_checks(&admin, "svc");
    assert!(wait_until(Duration::from_secs(20), || checks() >= 3.0), "probing; log:\n{}", host.log_text());
    assert!(host.log_text().contains("no plugin named `window-trip` is loaded"), "{}", host.log_text());

    install_plugin("window-trip", &plugins);
    // Not watched: nothing changes until the signal.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls(), 0.0, "the new plugin is not loaded before SIGHUP");
    host.hangup();
    assert!(
        wait_until(Duration::from_secs(10), || calls() >= 3.0),
        "the service decides with the plugin after SIGHUP; log:\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("added=[\"window-trip\"]"), "{}", host.log_text());
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// Whether a live (not zombie) process has `marker` in its command line.
fn alive_with(marker: &str) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
    })
}

/// SIGTERM to aegis-host while it restarts a process that ignores SIGTERM (the restart waits out its 5 s grace):
/// shutdown cancels the restart, and no process of the service outlives aegis-host — not the old one, and no new one
/// started by the restart after shutdown began.
#[test]
fn shutdown_during_a_restart_leaves_no_child_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = format!("127.0.0.1:{}", free_port());
    // A number no other process has on its command line: the test's own pid, offset.
    let marker = format!("{}", 2_000_000 + std::process::id());
    let config = write_config(
        tmp.path(),
        &format!(
            r#"
admin: {{address: "{admin}"}}
storage: {{path: "{db}"}}
services:
  - name: svc
    type: tcp
    endpoint: 127.0.0.1:{closed}
    interval: 100ms
    timeout: 200ms
    process:
      command: ["sh", "-c", "trap '' TERM; exec sleep {marker}"]
    actions:
      onFailure: restart
      circuitBreaker: {{failureThreshold: 1, resetTimeout: 30s}}
      backoff: {{initialInterval: 10ms, maxInterval: 10ms, jitter: none}}
"#,
            db = tmp.path().join("aegis.db").display(),
            closed = free_port(),
        ),
    );
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || host.log_text().contains("restarting in")),
        "the check fails and a restart begins; log:\n{}",
        host.log_text()
    );
    assert!(alive_with(&marker), "the supervised process runs");
    // The restart has sent SIGTERM and waits out its grace: stop aegis-host now.
    std::thread::sleep(Duration::from_millis(500));
    let status = host.terminate(Duration::from_secs(20)).expect("aegis-host stops on SIGTERM");
    let gone = wait_until(Duration::from_secs(5), || !alive_with(&marker));
    if !gone {
        let _ = std::process::Command::new("pkill").args(["-KILL", "-f", &format!("sleep {marker}")]).status();
    }
    assert!(status.success(), "clean exit: {status}");
    assert!(gone, "no `sleep {marker}` outlived aegis-host; log:\n{}", host.log_text());
    assert!(!host.log_text().contains("restarted: process respawned"), "{}", host.log_text());
}

/// Config lines of TCP services (checking the admin server's port, so they pass) whose processes record in `terms`
/// when SIGTERM arrives and run on: only the SIGKILL after their 5 s grace ends them.
fn services_ignoring_sigterm(names: &[&str], admin: &str, terms: &Path) -> String {
    names
        .iter()
        .map(|name| {
            let script =
                format!("trap 'echo {name} $(date +%s%N) >> {}' TERM; while :; do sleep 0.1; done", terms.display());
            format!(
                "  - name: {name}\n    type: tcp\n    endpoint: {admin}\n    interval: 200ms\n    \
                 process: {{command: [\"sh\", \"-c\", \"{script}\"]}}\n"
            )
        })
        .collect()
}

/// Starts aegis-host with `services` and waits until each of `names` was checked (so its process runs).
fn start_with_services(dir: &Path, admin: &str, names: &[&str], services: &str) -> Proc {
    let config = write_host_config(dir, admin, &format!("services:\n{services}"));
    let host = start_aegis_host(&config, &dir.join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || names.iter().all(|s| successful_checks(admin, s) >= 1.0)),
        "every service checked; log:\n{}",
        host.log_text()
    );
    // The shells have set their trap by now (their first command, run as they start).
    std::thread::sleep(Duration::from_millis(300));
    host
}

/// How far apart the SIGTERMs recorded in `terms` arrived, once `expected` have (panics if they do not within 20 s).
fn sigterm_spread(terms: &Path, expected: usize, host: &Proc) -> Duration {
    let times = || -> Vec<u64> {
        let recorded = std::fs::read_to_string(terms).unwrap_or_default();
        recorded.lines().filter_map(|l| l.split(' ').nth(1)?.parse().ok()).collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || times().len() >= expected),
        "each process got its SIGTERM: {:?}; log:\n{}",
        std::fs::read_to_string(terms).unwrap_or_default(),
        host.log_text()
    );
    let times = times();
    assert_eq!(times.len(), expected, "one SIGTERM each: {times:?}");
    Duration::from_nanos(times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0))
}

/// SIGTERM to aegis-host with several supervised processes that ignore SIGTERM: they are stopped together, so each
/// gets its SIGTERM at once rather than after the previous one's 5 s grace (one after another, shutdown took the sum
/// of the graces: minutes at a few dozen such services).
#[test]
fn shutdown_stops_the_supervised_processes_together() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = format!("127.0.0.1:{}", free_port());
    let terms = tmp.path().join("terms");
    let names = ["a", "b", "c"];
    let mut host = start_with_services(tmp.path(), &admin, &names, &services_ignoring_sigterm(&names, &admin, &terms));
    let status = host.terminate(Duration::from_secs(30)).expect("aegis-host stops on SIGTERM");
    assert!(status.success(), "clean exit: {status}");
    let spread = sigterm_spread(&terms, names.len(), &host);
    // Well under the 5 s grace that separated them one after another.
    assert!(spread < Duration::from_millis(2500), "SIGTERMs {spread:?} apart");
}

/// The same for services a reload removes: their processes are stopped together, and the reload is not held up by
/// one grace after another.
#[test]
fn a_reload_stops_the_removed_services_processes_together() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let admin = format!("127.0.0.1:{}", free_port());
    let terms = tmp.path().join("terms");
    let names = ["a", "b", "c", "kept"];
    let host = start_with_services(tmp.path(), &admin, &names, &services_ignoring_sigterm(&names, &admin, &terms));
    write_host_config(
        tmp.path(),
        &admin,
        &format!("services:\n{}", services_ignoring_sigterm(&["kept"], &admin, &terms)),
    );
    host.hangup();
    let spread = sigterm_spread(&terms, 3, &host);
    assert!(spread < Duration::from_millis(2500), "SIGTERMs {spread:?} apart");
    assert!(wait_until(Duration::from_secs(20), || host.log_text().contains("config reloaded")), "{}", host.log_text());
    let recorded = std::fs::read_to_string(&terms).unwrap_or_default();
    assert!(!recorded.contains("kept "), "the unchanged service's process runs on: {recorded:?}");
}
