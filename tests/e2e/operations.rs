//! Operating Aegis: the admin API (auth, errors, force/reset), the restart limit, webhook notifications, and state
//! that survives a restart of aegis-host.

use std::time::Duration;

use aegis_tests::{
    Proc, binary, free_port, get_text, http, post, scrape, start_aegis_host, successful_checks, wait_until,
};

struct Api {
    base: String,
}

impl Api {
    /// Status and JSON body; status 0 while the host is not listening (yet).
    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match http().get(format!("{}{path}", self.base)).send() {
            Ok(r) => (r.status().as_u16(), r.json().unwrap_or(serde_json::Value::Null)),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    fn post(&self, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = http().post(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let r = req.send().expect("POST");
        (r.status().as_u16(), r.json().unwrap_or(serde_json::Value::Null))
    }

    fn service(&self) -> serde_json::Value {
        self.get("/api/v1/circuit-breakers/svc").1
    }

    fn event_kinds(&self) -> Vec<String> {
        let (_, v) = self.get("/api/v1/events?service=svc&limit=200");
        v["events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

#[test]
fn admin_api_restart_limit_notifications_and_persistence() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hook_port = free_port();
    let _hooks =
        Proc::start(&binary("webhook-server"), &["--port", &hook_port.to_string()], &tmp.path().join("hooks.log"));
    let port = free_port();
    let _service =
        Proc::start(&binary("http-service"), &["--port", &port.to_string()], &tmp.path().join("service.log"));
    let base = format!("http://127.0.0.1:{port}");
    let hooks = format!("http://127.0.0.1:{hook_port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/status")).is_some()
        && get_text(&format!("{hooks}/received")).is_some()));

    let admin = format!("127.0.0.1:{}", free_port());
    let restarts = tmp.path().join("restarts.log");
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}", token: "t0k3n"}}
storage: {{path: "{db}"}}
plugins: {{dir: "{plugins}"}}
notifications: {{webhook: "{hooks}/hook"}}
defaults:
  interval: 100ms
  timeout: 1s
  actions:
    circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
    backoff: {{initialInterval: 50ms, maxInterval: 100ms, jitter: none}}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    actions:
      onFailure: restart
      restart: {{command: "echo restarted >> {restarts}"}}
      restartLimit: {{burst: 2, interval: 1m}}
"#,
            db = tmp.path().join("aegis.db").display(),
            plugins = tmp.path().join("none").display(),
            restarts = restarts.display(),
        ),
    )
    .expect("write config");
    let log = tmp.path().join("aegis.log");
    let mut host = start_aegis_host(&config, &log);
    let api = Api { base: format!("http://{admin}") };
    let state = || scrape(&admin, "circuit_breaker_state", "breaker=\"svc\"");
    assert!(wait_until(Duration::from_secs(20), || state() == Some(0.0)), "up; log:\n{}", host.log_text());

    // Reads are open; errors are JSON.
    let (code, body) = api.get("/api/v1/services");
    assert_eq!(code, 200);
    assert_eq!(body["services"][0]["name"], "svc");
    let (code, body) = api.get("/api/v1/circuit-breakers/nope");
    assert_eq!(code, 404);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("nope")), "{body}");
    let (code, body) = api.get("/api/v1/circuit-breakers/health");
    assert_eq!((code, body["status"].as_str()), (200, Some("healthy")), "{body}");
    assert_eq!((body["healthy_percent"].as_f64(), body["total"].as_u64()), (Some(100.0), Some(1)), "{body}");
    // Checks run through the breaker manager, which counts them.
    let counted = || api.get("/api/v1/circuit-breakers/health").1["services"]["svc"].clone();
    assert!(wait_until(Duration::from_secs(5), || counted()["totals"]["success"].as_u64().is_some_and(|n| n >= 1)));
    let svc = counted();
    assert_eq!((&svc["totals"]["failed"], &svc["success_rate"]), (&serde_json::json!(0), &serde_json::json!(1.0)));

    // Mutations need the token; bad bodies are 400.
    let force = "/api/v1/circuit-breakers/svc/force-state";
    assert_eq!(api.post(force, None, Some(r#"{"state":"open"}"#)).0, 401);
    assert_eq!(api.post(force, Some("wrong"), Some(r#"{"state":"open"}"#)).0, 401);
    assert_eq!(api.post(force, Some("t0k3n"), Some(r#"{"state":"sideways"}"#)).0, 400);
    assert_eq!(api.post(force, Some("t0k3n"), Some("not json")).0, 400);
    assert_eq!(api.post("/api/v1/circuit-breakers/nope/reset", Some("t0k3n"), None).0, 404);
    let (code, body) = api.post(force, Some("t0k3n"), Some(r#"{"state":"open"}"#));
    assert_eq!((code, body["state"].as_str()), (200, Some("forced-open")), "{body}");
    assert!(wait_until(Duration::from_secs(5), || state() == Some(2.0)));
    assert_eq!(api.get("/api/v1/circuit-breakers/health").1["status"], "unhealthy");
    assert_eq!(api.post(force, Some("t0k3n"), Some(r#"{"state":"auto"}"#)).1["state"], "closed");

    // Down for good: two restarts, then Aegis gives up instead of looping.
    post(&format!("{base}/down"));
    assert!(
        wait_until(Duration::from_secs(20), || api.event_kinds().iter().any(|k| k == "gave-up")),
        "gave up; log:\n{}",
        host.log_text()
    );
    std::thread::sleep(Duration::from_millis(800));
    let lines = std::fs::read_to_string(&restarts).unwrap_or_default().lines().count();
    assert_eq!(lines, 2, "exactly restartLimit.burst restarts");
    assert_eq!(scrape(&admin, "aegis_service_gave_up", "service=\"svc\""), Some(1.0));
    assert_eq!(api.service()["gave_up"], true);
    assert_eq!(api.service()["restarts"], 2);

    // The webhook heard about it, in order.
    let received = || -> Vec<String> {
        get_text(&format!("{hooks}/received"))
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v.as_array().map(|a| a.iter().filter_map(|n| n["event"].as_str().map(str::to_owned)).collect())
            })
            .unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(10), || received().iter().any(|e| e == "gave-up")), "{:?}", received());
    let got = received();
    let first = |name: &str| got.iter().position(|e| e == name).unwrap_or_else(|| panic!("no {name} in {got:?}"));
    assert!(first("breaker-opened") < first("restarted") && first("restarted") < first("gave-up"), "{got:?}");

    // Force it open, restart aegis-host: the forced state, the give-up and the history survive.
    assert_eq!(api.post(force, Some("t0k3n"), Some(r#"{"state":"open"}"#)).0, 200);
    let events_before = api.event_kinds().len();
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis-2.log"));
    assert!(wait_until(Duration::from_secs(20), || get_text(&format!("http://{admin}/healthz")).is_some()));
    assert_eq!(api.service()["state"], "forced-open", "log:\n{}", host.log_text());
    assert_eq!(state(), Some(2.0));
    assert_eq!(api.service()["gave_up"], true);
    assert!(api.event_kinds().len() >= events_before, "history kept");

    // An operator reset resumes supervision; with the service back up the breaker stays closed.
    post(&format!("{base}/up"));
    let (code, body) = api.post("/api/v1/circuit-breakers/svc/reset", Some("t0k3n"), None);
    assert_eq!((code, body["state"].as_str()), (200, Some("closed")), "{body}");
    assert_eq!(api.service()["gave_up"], false);
    assert!(wait_until(Duration::from_secs(5), || api.service()["last_check"]["success"] == true));
    assert_eq!(state(), Some(0.0));

    // reset-all goes through the breaker manager: a forced breaker is back to closed.
    assert_eq!(api.post(force, Some("t0k3n"), Some(r#"{"state":"open"}"#)).0, 200);
    assert_eq!(api.post("/api/v1/circuit-breakers/reset-all", None, None).0, 401);
    let (code, body) = api.post("/api/v1/circuit-breakers/reset-all", Some("t0k3n"), None);
    assert_eq!((code, body["reset"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(api.service()["state"], "closed");
    assert!(wait_until(Duration::from_secs(5), || state() == Some(0.0)));
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// SIGHUP applies added, removed and changed services and leaves the others alone; an invalid file is refused.
#[test]
fn sighup_reloads_services_and_refuses_a_bad_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _service =
        Proc::start(&binary("http-service"), &["--port", &port.to_string()], &tmp.path().join("service.log"));
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until(Duration::from_secs(10), || get_text(&format!("{base}/status")).is_some()));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    let write = |services: &str| {
        let text = format!(
            "admin: {{address: \"{admin}\", token: t}}\nstorage: {{path: \"{}\"}}\nplugins: {{dir: \"{}\"}}\n\
             defaults: {{interval: 100ms, actions: {{onFailure: ignore}}}}\nservices:\n{services}",
            tmp.path().join("aegis.db").display(),
            tmp.path().join("none").display()
        );
        std::fs::write(&config, text).expect("write config");
    };
    let a = format!("  - {{name: a, type: http, endpoint: \"{base}/health\"}}\n");
    let b = format!("  - {{name: b, type: tcp, endpoint: \"127.0.0.1:{port}\"}}\n");
    let c = format!("  - {{name: c, type: tcp, endpoint: \"127.0.0.1:{port}\"}}\n");
    write(&format!("{a}{b}"));
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let api = Api { base: format!("http://{admin}") };
    let names = || -> Vec<String> {
        api.get("/api/v1/services").1["services"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(20), || names() == ["a", "b"]), "log:\n{}", host.log_text());
    assert_eq!(api.post("/api/v1/circuit-breakers/a/force-state", Some("t"), Some(r#"{"state":"open"}"#)).0, 200);

    write(&format!("{a}{c}"));
    host.hangup();
    assert!(wait_until(Duration::from_secs(10), || names() == ["a", "c"]), "reloaded; log:\n{}", host.log_text());
    let log = host.log_text();
    assert!(log.contains("removed by reload") && log.contains("added=1 changed=0"), "log:\n{log}");
    assert_eq!(api.get("/api/v1/circuit-breakers/a").1["state"], "forced-open", "untouched service kept its state");
    assert!(
        wait_until(Duration::from_secs(5), || successful_checks(&admin, "c") >= 1.0),
        "the added service is probed"
    );
    let metrics = get_text(&format!("http://{admin}/metrics")).expect("metrics");
    assert!(
        metrics.contains("circuit_breaker_state{breaker=\"a\"}") && !metrics.contains("\"b\""),
        "the removed service's series are gone:\n{metrics}"
    );

    std::fs::write(&config, "services:\n  - name: a\n    type: http\n    bogus: 1\n").expect("write bad config");
    host.hangup();
    assert!(
        wait_until(Duration::from_secs(10), || host.log_text().contains("reload refused")),
        "log:\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("bogus"), "the refusal names the field");
    assert_eq!(names(), ["a", "c"], "the running config stays");
    assert!(host.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}
