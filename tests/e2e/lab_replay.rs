//! Policy lab, replay (issue 17): a real outage of the example service is recorded by a real aegis-host running
//! `window-trip`; after the host stops, `aegis-host replay` runs the record through the same plugin with the live
//! config (no divergence, exit 0, the same openings the host logged) and with a stricter config (an earlier opening,
//! exit 1); a recovery strategy in place of `onFailure` (the same restarts, or a notification instead); the
//! recorded anomaly samples through a scorer plugin that misses the error-rate alert the config's
//! threshold raised (exit 1); a log file through `panic-detector` against the config's pattern (exit 1, and 0 when
//! configured to the same rule); bad input exits 2.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aegis_tests::{
    binary, built_plugins, free_port, install_plugin, post, scrape, start_aegis_host, start_http_service,
    successful_checks, wait_until,
};

fn replay(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["replay", "--config", config.to_str().expect("utf-8 path"), "--service", "svc"];
    all.extend_from_slice(args);
    std::process::Command::new(binary("aegis-host")).args(&all).output().expect("run aegis-host replay")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("replay --json printed JSON ({e}); stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr))
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `at_ms` of every opening (a transition to `open`) of one side of a replay document.
fn openings(doc: &serde_json::Value, side: &str) -> Vec<i64> {
    doc["breaker"][side]["run"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["to"] == "open")
        .map(|c| c["at_ms"].as_i64().expect("at_ms"))
        .collect()
}

#[test]
fn a_recorded_outage_replays_without_divergence_and_a_stricter_config_opens_earlier() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    let plugin = install_plugin("window-trip", &plugins);
    let scorer = built_plugins().join("ewma_latency.wasm");
    let rule = built_plugins().join("panic_detector.wasm");
    let app_log = tmp.path().join("app.log");
    std::fs::write(&app_log, "").expect("create the app log");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin:
  address: {admin}
plugins:
  dir: {plugins}
  deadline: 250ms
storage:
  path: {db}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    timeout: 1s
    retries: 0
    actions:
      onFailure: restart
      restart:
        command: "true"
      circuitBreaker:
        failureThreshold: 50
        resetTimeout: 1s
        successThreshold: 1
        tripPolicy:
          plugin: window-trip
          config: {{window: 6, failures: 4}}
      backoff:
        initialInterval: 200ms
        maxInterval: 1s
        multiplier: 2.0
        jitter: none
logs:
  scan_interval: 50ms
  files: [{{service: svc, path: "{app_log}"}}]
  patterns:
    - name: OutOfMemory
      pattern: "(?i)(out of memory|java\\.lang\\.OutOfMemoryError)"
      severity: CRITICAL
anomaly_detection:
  detection_interval: 300ms
  history_size: 20
  detector: none
  thresholds:
    error_rate:
      - service: svc
        value: 0.5
"#,
            app_log = app_log.display(),
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
        ),
    )
    .expect("write config");
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let state = || scrape(&admin, "circuit_breaker_state", "breaker=\"svc\"");
    assert!(
        wait_until(Duration::from_secs(20), || state() == Some(0.0) && successful_checks(&admin, "svc") >= 10.0),
        "healthy checks before the outage; log:\n{}",
        host.log_text()
    );
    post(&format!("{base}/down"));
    assert!(wait_until(Duration::from_secs(10), || state() == Some(2.0)), "opened; log:\n{}", host.log_text());
    // Down long enough for a failed trial to open it again, then back up until it closes.
    std::thread::sleep(Duration::from_millis(1600));
    post(&format!("{base}/up"));
    assert!(wait_until(Duration::from_secs(10), || state() == Some(0.0)), "closed; log:\n{}", host.log_text());
    let healthy = successful_checks(&admin, "svc");
    assert!(wait_until(Duration::from_secs(10), || successful_checks(&admin, "svc") >= healthy + 10.0));
    // Stopping the host writes what it recorded last.
    host.terminate(Duration::from_secs(10)).expect("aegis-host stopped");
    let log = host.log_text();
    let live_openings = log.matches("circuit breaker OPEN").count();
    assert!(live_openings >= 2, "the trial failed and re-opened; log:\n{log}");

    let plugin = plugin.to_str().expect("utf-8 path");
    let live = ["--trip-plugin", plugin, "--plugin-config", "window=6", "--plugin-config", "failures=4"];
    let same = replay(&config, &[&live[..], &["--json"]].concat());
    let doc = json(&same);
    assert_eq!(same.status.code(), Some(0), "the live config agrees; stderr:\n{}\n{doc:#}", text(&same.stderr));
    assert_eq!(doc["agrees"], true);
    let baseline = openings(&doc, "baseline");
    assert_eq!(baseline, openings(&doc, "candidate"));
    assert_eq!(baseline.len(), live_openings, "the replay opens as often as the host did; {doc:#}\nlog:\n{log}");
    assert!(doc["breaker"]["baseline"]["restarts"].as_u64().is_some_and(|n| n >= 1), "{doc:#}");

    let table = replay(&config, &live);
    assert_eq!(table.status.code(), Some(0));
    assert!(text(&table.stdout).contains("no divergence"), "{}", text(&table.stdout));

    let strict = ["--trip-plugin", plugin, "--plugin-config", "window=6", "--plugin-config", "failures=2"];
    let stricter = replay(&config, &[&strict[..], &["--json"]].concat());
    let doc = json(&stricter);
    assert_eq!(stricter.status.code(), Some(1), "a stricter config diverges; stderr:\n{}", text(&stricter.stderr));
    assert_eq!(doc["agrees"], false);
    let earlier = openings(&doc, "candidate");
    assert!(earlier[0] < baseline[0], "the stricter config opens earlier: {earlier:?} vs {baseline:?}");
    let divergence = &doc["breaker"]["divergence"];
    assert_eq!(divergence["at_ms"].as_i64(), Some(earlier[0]), "{divergence:#}");
    assert_eq!(divergence["candidate"]["what"], "closed -> open", "{divergence:#}");
    let table = replay(&config, &strict);
    assert_eq!(table.status.code(), Some(1));
    let shown = text(&table.stdout);
    assert!(shown.contains("first divergence at") && shown.contains(">>"), "{shown}");
    eprintln!("{shown}");

    // A recovery strategy instead of `onFailure: restart`: escalating-restart restarts as often as onFailure did when
    // allowed enough restarts; allowed one, it notifies at the second opening instead.
    let escalating = built_plugins().join("escalating_restart.wasm");
    let escalating = escalating.to_str().expect("utf-8");
    let patient = replay(&config, &["--recovery-plugin", escalating, "--recovery-config", "restarts=5", "--json"]);
    let doc = json(&patient);
    assert_eq!(patient.status.code(), Some(0), "five restarts allowed: the same restarts; {doc:#}");
    let steps = doc["breaker"]["candidate"]["run"]["recovery"].as_array().expect("recovery steps");
    assert!(steps.iter().any(|s| s["kind"] == "decided" && s["action"] == "restart"), "{doc:#}");
    let hasty = replay(&config, &["--recovery-plugin", escalating, "--recovery-config", "restarts=1", "--json"]);
    let doc = json(&hasty);
    assert_eq!(hasty.status.code(), Some(1), "one restart allowed: a notification instead; {doc:#}");
    assert_eq!(doc["breaker"]["divergence"]["candidate"]["what"], "notify", "{doc:#}");
    assert_eq!(doc["breaker"]["divergence"]["at_ms"].as_i64(), Some(baseline[1]), "at the second opening; {doc:#}");

    // The anomaly samples: the config's error-rate threshold fired during the outage; a latency-only scorer would not
    // have raised it.
    let scored = replay(&config, &["--scorer-plugin", scorer.to_str().expect("utf-8"), "--json"]);
    let doc = json(&scored);
    assert_eq!(scored.status.code(), Some(1), "the scorer misses the alert; {doc:#}");
    let raised = doc["anomaly"]["replay"]["baseline"].as_array().expect("baseline alerts");
    assert!(raised.iter().any(|a| a["metric"] == "error-rate"), "the threshold's alert is replayed: {doc:#}");
    // ewma-latency scores latency only: it may flag a latency spike of a loaded machine, never the error rate.
    let candidate = doc["anomaly"]["replay"]["candidate"].as_array().expect("candidate alerts");
    assert!(candidate.iter().all(|a| a["metric"] != "error-rate"), "{doc:#}");

    // A log through panic-detector and the config's pattern.
    std::fs::write(
        &app_log,
        "started\nthread 'main' panicked at src/main.rs:2:5:\njava.lang.OutOfMemoryError: Java heap space\nok\n",
    )
    .expect("write the app log");
    let logs = |extra: &[&str]| {
        let mut args = vec!["replay-logs", "--config", config.to_str().expect("utf-8"), "--rule-plugin"];
        args.push(rule.to_str().expect("utf-8"));
        args.extend_from_slice(extra);
        args.push(app_log.to_str().expect("utf-8"));
        std::process::Command::new(binary("aegis-host")).args(&args).output().expect("run replay-logs")
    };
    let all_rules = logs(&[]);
    let shown = text(&all_rules.stdout);
    assert_eq!(all_rules.status.code(), Some(1), "panic-detector also matches the panic: {shown}");
    eprintln!("{shown}");
    assert!(shown.contains("rust-panic") && shown.contains("OutOfMemory") && shown.contains("app.log:2"), "{shown}");
    let oom_only = logs(&["--plugin-config", "rules=oom"]);
    assert_eq!(oom_only.status.code(), Some(0), "the same line: {}", text(&oom_only.stdout));

    // Bad input: exit status 2 with the reason.
    let none = std::process::Command::new(binary("aegis-host"))
        .args(["replay", "--config", config.to_str().expect("utf-8"), "--service", "nope", "--trip-plugin", plugin])
        .output()
        .expect("run");
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("no service `nope`"), "{}", text(&none.stderr));
    let refused = replay(&config, &["--trip-plugin", plugin, "--plugin-config", "failures=99"]);
    assert_eq!(refused.status.code(), Some(2), "a refused plugin config is bad input: {}", text(&refused.stderr));
}
