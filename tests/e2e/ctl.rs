//! The control commands against a real aegis-host: the status table and its exit status, force and reset with the
//! token, JSON output, and the errors for a wrong token and a host that is not running.

use std::process::{Command, Output};
use std::time::Duration;

use aegis_tests::{binary, free_port, start_aegis_host, start_http_service, wait_until};

/// Runs `aegis-host ARGS` with `AEGIS_ADMIN_TOKEN` set to `token` (or unset).
fn ctl(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(binary("aegis-host"));
    command.args(args).env_remove("AEGIS_ADMIN_TOKEN").env("AEGIS_LOG", "warn");
    if let Some(t) = token {
        command.env("AEGIS_ADMIN_TOKEN", t);
    }
    command.output().expect("run aegis-host")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn control_commands_show_status_and_change_breakers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let dead = format!("http://127.0.0.1:{}/health", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}", token: "s3cret"}}
storage: {{path: "{db}"}}
plugins: {{dir: "{plugins}"}}
defaults:
  interval: 100ms
  timeout: 1s
  actions:
    onFailure: ignore
    circuitBreaker: {{failureThreshold: 1, resetTimeout: 1h}}
services:
  - {{name: svc, type: http, endpoint: "{base}/health"}}
  - {{name: dead, type: http, endpoint: "{dead}"}}
"#,
            db = tmp.path().join("aegis.db").display(),
            plugins = tmp.path().join("none").display(),
        ),
    )
    .expect("write config");
    let file = config.to_str().expect("utf-8 path");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));

    // Degraded: one breaker open, one closed. Exit status 1; the table names both with the API's state names.
    assert!(
        wait_until(Duration::from_secs(20), || ctl(&["status", "--config", file], None).status.code() == Some(1)),
        "degraded; log:\n{}",
        host.log_text()
    );
    // `/api/v1/services` is rendered at most every 250 ms: wait until the table shows what the health count saw.
    let mut table = String::new();
    assert!(wait_until(Duration::from_secs(5), || {
        table = stdout(&ctl(&["--config", file, "status"], None));
        table.lines().any(|l| l.starts_with("dead ") && l.contains(" open "))
            && table.lines().any(|l| l.starts_with("svc ") && l.contains("100.0%"))
    }));
    assert!(table.starts_with("SERVICE  STATE"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("svc ") && l.contains(" closed ") && l.contains("100.0%")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("dead ") && l.contains(" open ")), "{table}");
    assert!(table.contains("degraded: 50% of 2 services healthy"), "{table}");

    // --json prints the API's JSON.
    let out = ctl(&["status", "--config", file, "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["health"]["status"], "degraded", "{json}");
    assert_eq!(json["services"].as_array().map(Vec::len), Some(2), "{json}");

    // Mutations with the config's token: forced closed is healthy (exit 0), forced open everywhere unhealthy (2).
    let out = ctl(&["force", "dead", "closed", "--config", file], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "dead: forced-closed");
    assert_eq!(ctl(&["status", "--config", file], None).status.code(), Some(0));
    let out = ctl(&["force", "svc", "open", "--config", file, "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["state"], "forced-open");
    let out = ctl(&["force", "dead", "open", "--config", file], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ctl(&["status", "--config", file], None).status.code(), Some(2));
    let out = ctl(&["reset", "svc", "--config", file], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("svc: reset, closed"), "{}", stdout(&out));
    let out = ctl(&["reset", "--all", "--config", file], None);
    assert_eq!(stdout(&out).trim(), "reset 2 breakers");

    // Events and alerts and plugins read without a token.
    let out = ctl(&["events", "--service", "svc", "--config", file], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).lines().any(|l| l.contains("breaker-reset") && l.contains(" ago")), "{}", stdout(&out));
    let out = ctl(&["events", "--service", "svc", "--config", file, "--json", "-n", "1"], None);
    let event: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON event");
    assert_eq!(event["service"], "svc");
    assert!(ctl(&["alerts", "--config", file], None).status.success());
    let out = ctl(&["plugins", "--config", file], None);
    assert_eq!(stdout(&out).trim(), "no plugins loaded", "{}", stderr(&out));

    // --admin URL takes the token from AEGIS_ADMIN_TOKEN: none and a wrong one are refused with a clear error.
    let url = format!("http://{admin}");
    let out = ctl(&["force", "svc", "open", "--admin", &url], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs the admin token"), "{}", stderr(&out));
    let out = ctl(&["reset", "svc", "--admin", &url], Some("wrong"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("token was refused"), "{}", stderr(&out));
    let out = ctl(&["force", "svc", "half-open", "--admin", &url], Some("s3cret"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ctl(&["status", "--admin", &url], None);
    assert!(out.status.code().is_some_and(|c| c <= 2), "{}", stderr(&out));

    // Unknown service: the API's error.
    let out = ctl(&["reset", "nope", "--config", file], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown service `nope`"), "{}", stderr(&out));
}

#[test]
fn control_commands_say_when_the_host_is_not_running() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = ctl(&["status", "--admin", &url], None);
    assert_eq!(out.status.code(), Some(3), "unknown");
    assert!(
        stderr(&out).contains("cannot reach aegis-host at") && stderr(&out).contains("is it running?"),
        "{}",
        stderr(&out)
    );
    let out = ctl(&["reset", "--all", "--admin", &url], Some("t"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is it running?"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "services: 3\n").expect("write");
    let out = ctl(&["events", "--config", bad.to_str().expect("utf-8")], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid config"), "{}", stderr(&out));
}

#[test]
fn reload_over_the_api_applies_the_file_or_refuses_it_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    let write = |services: &str| {
        std::fs::write(
            &config,
            format!(
                "admin: {{address: \"{admin}\", token: \"s3cret\"}}\nstorage: {{path: \"{db}\"}}\n\
                 plugins: {{dir: \"{plugins}\"}}\ndefaults: {{interval: 100ms, actions: {{onFailure: ignore}}}}\n\
                 services:\n{services}",
                db = tmp.path().join("aegis.db").display(),
                plugins = tmp.path().join("none").display(),
            ),
        )
        .expect("write config")
    };
    write(&format!("  - {{name: a, type: http, endpoint: \"{base}/health\"}}\n"));
    let file = config.to_str().expect("utf-8 path");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || ctl(&["status", "--config", file], None).status.code() == Some(0)),
        "up; log:\n{}",
        host.log_text()
    );

    write(&format!(
        "  - {{name: a, type: http, endpoint: \"{base}/health\"}}\n  - {{name: b, type: http, endpoint: \"{base}/health\"}}\n"
    ));
    let out = ctl(&["reload", "--config", file, "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((summary["added"].as_u64(), summary["services"].as_u64()), (Some(1), Some(2)), "{summary}");

    // A bad file: 400 with the located error, and both services keep running.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("read").replace("interval: 100ms", "interval: soon"),
    )
    .expect("write");
    let url = format!("http://{admin}");
    let out = ctl(&["reload", "--admin", &url], Some("s3cret"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reload refused") && stderr(&out).contains("aegis.yaml:"), "{}", stderr(&out));
    let out = ctl(&["reload", "--admin", &url], None);
    assert!(stderr(&out).contains("needs the admin token"), "{}", stderr(&out));
    let out = ctl(&["status", "--admin", &url, "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["services"].as_array().map(Vec::len), Some(2), "{json}");
}
