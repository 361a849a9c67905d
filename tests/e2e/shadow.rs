//! Shadow mode (issue 17): a second trip predicate / recovery strategy runs on the live inputs, its disagreements
//! become `shadow-disagreed` events and `aegis_shadow_disagreements_total`, listed by the API and the console, and it
//! never acts: the live policy opens the breaker and restarts. A shadow that traps is quarantined on its own.

use std::path::Path;
use std::time::Duration;

use aegis_tests::browser::Browser;
use aegis_tests::{
    Proc, free_port, get_text, install_plugin, post, scrape, start_aegis_host, start_http_service, successful_checks,
    wait_until,
};
use serde_json::Value;

fn breaker_state(admin: &str) -> Option<f64> {
    scrape(admin, "circuit_breaker_state", "breaker=\"svc\"")
}

fn disagreements(admin: &str, policy: &str) -> f64 {
    scrape(admin, "aegis_shadow_disagreements_total", &format!("policy=\"{policy}\",service=\"svc\"")).unwrap_or(0.0)
}

fn json(url: &str) -> Value {
    get_text(url).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
}

/// The messages of the service's `shadow-disagreed` events, newest first, from the events API.
fn disagreement_events(admin: &str) -> Vec<String> {
    let events = json(&format!("http://{admin}/api/v1/events?service=svc&kind=shadow-disagreed"));
    events["events"]
        .as_array()
        .map(|list| list.iter().filter_map(|e| e["message"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The events of one kind of the service, from the unfiltered list (to check the filter against).
fn events_of(admin: &str, kind: &str) -> Vec<String> {
    let events = json(&format!("http://{admin}/api/v1/events?service=svc&limit=1000"));
    events["events"]
        .as_array()
        .map(|list| {
            list.iter().filter(|e| e["kind"] == kind).filter_map(|e| e["message"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

/// A temporary directory with `plugins` installed in its `plugins/`, the example service running, and a free admin
/// address: `(dir, service, its base URL, admin address)`.
fn setup(plugins: &[&str]) -> (tempfile::TempDir, Proc, String, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for plugin in plugins {
        install_plugin(plugin, &tmp.path().join("plugins"));
    }
    let (service, base) = start_http_service(&tmp.path().join("service.log"));
    (tmp, service, base, format!("127.0.0.1:{}", free_port()))
}

/// A config supervising the example service at `base` with `actions` (indented for `actions:`).
fn write_config(dir: &Path, admin: &str, base: &str, actions: &str) -> std::path::PathBuf {
    let text = format!(
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
    interval: 250ms
    timeout: 1s
    actions:
{actions}"#,
        plugins = dir.join("plugins").display(),
        db = dir.join("aegis.db").display(),
    );
    let path = dir.join("aegis.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Live window-trip opens at 6 bad of the last 8 probes, its stricter shadow would at 2: the shadow's disagreements
/// are recorded (event, metric, API, console) while the breaker stays closed until the live plugin says so, with the
/// live reason. The built-in recovery (`onFailure: restart`) is shadowed by escalating-restart told to wait: the
/// restart runs all the same and the disagreement is recorded.
#[test]
fn a_stricter_shadow_disagrees_while_the_live_policy_acts() {
    let (tmp, _service, base, admin) = setup(&["window-trip", "escalating-restart"]);
    let restarts = tmp.path().join("restarts.log");
    let actions = format!(
        r#"      onFailure: restart
      restart:
        command: "echo restarted >> {restarts}"
      circuitBreaker:
        failureThreshold: 50
        resetTimeout: 30s
        tripPolicy:
          plugin: window-trip
          config: {{window: 8, failures: 6}}
          shadow:
            plugin: window-trip
            config: {{window: 8, failures: 2}}
      recoveryPolicy:
        shadow:
          plugin: escalating-restart
          config: {{restarts: 0, notify: false, wait_ms: 60000}}
      backoff:
        initialInterval: 100ms
        jitter: none
"#,
        restarts = restarts.display()
    );
    let config = write_config(tmp.path(), &admin, &base, &actions);
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || breaker_state(&admin) == Some(0.0)
            && successful_checks(&admin, "svc") >= 3.0),
        "closed and checking before the outage; log:\n{}",
        host.log_text()
    );
    let log = host.log_text();
    assert!(log.contains("shadow trip predicate bound to plugin"), "shadow bound; log:\n{log}");
    assert_eq!(disagreements(&admin, "trip"), 0.0, "a healthy service gives nothing to disagree about");

    post(&format!("{base}/down"));
    // The shadow says trip at the second failure, the live plugin only at the sixth: in between, the shadow has
    // disagreed and the breaker is still closed.
    let mut seen_closed_while_disagreeing = false;
    assert!(
        wait_until(Duration::from_secs(15), || {
            let state = breaker_state(&admin);
            if state == Some(0.0) && disagreements(&admin, "trip") >= 1.0 {
                seen_closed_while_disagreeing = true;
            }
            state == Some(2.0)
        }),
        "the live policy opened the breaker; log:\n{}",
        host.log_text()
    );
    assert!(seen_closed_while_disagreeing, "the shadow's trip opened nothing; log:\n{}", host.log_text());
    let opened = events_of(&admin, "breaker-opened");
    assert!(
        opened.iter().any(|m| m.contains("6 of the last 8 probes failed")),
        "opened with the live reason: {opened:?}"
    );
    assert!(!opened.iter().any(|m| m.contains("2 of the last")), "never with the shadow's: {opened:?}");
    assert_eq!(scrape(&admin, "aegis_breaker_trips_total", "breaker=\"svc\",policy=\"window-trip\""), Some(1.0));

    // The disagreement: event with both answers, listed by kind, and counted.
    assert!(
        wait_until(Duration::from_secs(5), || !disagreement_events(&admin).is_empty()),
        "a shadow-disagreed event; log:\n{}",
        host.log_text()
    );
    let trip = disagreement_events(&admin);
    assert!(
        trip.iter().any(|m| m.starts_with("trip: live=false shadow=true") && m.contains("2 of the last")),
        "the message carries both answers: {trip:?}"
    );
    assert_eq!(disagreement_events(&admin), events_of(&admin, "shadow-disagreed"), "the kind filter lists them all");
    let counted = disagreements(&admin, "trip");
    assert!(counted >= 1.0, "aegis_shadow_disagreements_total counts them: {counted}");
    // Nothing else comes through the kind filter.
    let all = json(&format!("http://{admin}/api/v1/events?kind=shadow-disagreed"));
    assert!(all["events"].as_array().is_some_and(|l| l.iter().all(|e| e["kind"] == "shadow-disagreed")), "{all}");

    // Recovery: the live (built-in) restart runs; the shadow would have waited.
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&restarts)
            .is_ok_and(|t| t.contains("restarted"))),
        "the live restart ran; log:\n{}",
        host.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || disagreement_events(&admin)
            .iter()
            .any(|m| m.starts_with("recovery: live=restart shadow=wait(1m)"))),
        "the recovery disagreement: {:?}",
        disagreement_events(&admin)
    );
    assert!(disagreements(&admin, "recovery") >= 1.0);

    // The plugins API names the shadow binding.
    let list = json(&format!("http://{admin}/api/v1/plugins"));
    let window_trip = list["plugins"].as_array().and_then(|l| l.iter().find(|p| p["name"] == "window-trip")).cloned();
    let bound = window_trip.as_ref().map(|p| p["bound_by"].clone()).unwrap_or(Value::Null);
    assert!(
        bound.as_array().is_some_and(|b| b.iter().any(|x| x["as"] == "shadow-trip-predicate")),
        "bound as shadow: {list}"
    );

    // The console's service page lists the disagreements, in a real browser.
    let Some(browser) = Browser::start(tmp.path()) else { return };
    browser.goto(&format!("http://{admin}/services/svc"));
    assert!(
        wait_until(Duration::from_secs(10), || browser
            .text("#shadow-disagreements")
            .is_some_and(|t| t.contains("trip: live=false shadow=true") && t.contains("recovery: live=restart"))),
        "the console lists the disagreements: {:?}",
        browser.text("main")
    );
    let shown = browser.text("#shadows td.disagreements[data-policy=\"trip\"]").unwrap_or_default();
    assert!(shown.contains("disagreement"), "the count is shown: {shown:?}");
}

/// A shadow that traps at every call is quarantined on its own record: the API shows the shadow quarantined and
/// the live plugin not, the live plugin keeps deciding (it opens the breaker with its reason), and nothing is
/// compared while the shadow gives no answer.
#[test]
fn a_trapping_shadow_is_quarantined_alone_and_the_live_policy_goes_on() {
    let (tmp, _service, base, admin) = setup(&["window-trip", "hostile"]);
    let actions = r#"      onFailure: ignore
      circuitBreaker:
        failureThreshold: 50
        resetTimeout: 30s
        tripPolicy:
          plugin: window-trip
          config: {window: 4, failures: 3}
          shadow:
            plugin: hostile
            config: {mode: panic}
"#;
    let config = write_config(tmp.path(), &admin, &base, actions);
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let plugins_api = format!("http://{admin}/api/v1/plugins");
    let plugin = |name: &str| {
        json(&plugins_api)["plugins"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    assert!(
        wait_until(Duration::from_secs(20), || plugin("hostile")["shadow"]["quarantined"] == true),
        "the trapping shadow is quarantined: {}; log:\n{}",
        plugin("hostile"),
        host.log_text()
    );
    let hostile = plugin("hostile");
    assert_eq!(hostile["quarantined"], false, "its live record is untouched: {hostile}");
    assert!(hostile["shadow"]["calls"]["trap"].as_u64().is_some_and(|n| n >= 3), "{hostile}");
    assert_eq!(plugin("window-trip")["quarantined"], false);
    assert_eq!(scrape(&admin, "aegis_plugin_quarantined", "plugin=\"hostile (shadow)\""), Some(1.0));
    assert_eq!(scrape(&admin, "aegis_plugin_quarantined", "plugin=\"window-trip\""), Some(0.0));
    let live_calls = plugin("window-trip")["calls"]["ok"].as_u64().unwrap_or(0);

    post(&format!("{base}/down"));
    assert!(
        wait_until(Duration::from_secs(10), || breaker_state(&admin) == Some(2.0)),
        "the live plugin opened the breaker with its shadow quarantined; log:\n{}",
        host.log_text()
    );
    let opened = events_of(&admin, "breaker-opened");
    assert!(opened.iter().any(|m| m.contains("3 of the last 4 probes failed")), "the live reason: {opened:?}");
    assert!(plugin("window-trip")["calls"]["ok"].as_u64().unwrap_or(0) > live_calls, "the live plugin kept deciding");
    assert_eq!(plugin("window-trip")["quarantined"], false);
    assert!(disagreement_events(&admin).is_empty(), "a shadow that answers nothing disagrees with nothing");
    assert_eq!(disagreements(&admin, "trip"), 0.0);
    let quarantined = json(&format!("http://{admin}/api/v1/events?service=-&kind=plugin-quarantined"));
    assert!(
        quarantined["events"].as_array().is_some_and(|l| l.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("hostile (shadow):") && m.contains("it is not asked")))),
        "the quarantine event names the shadow: {quarantined}"
    );
}
