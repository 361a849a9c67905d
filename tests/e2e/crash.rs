//! Crash and fault injection: aegis-host killed with SIGKILL at random points while services flap, events are
//! written and the alert receiver fails part of the time — the state database stays intact, forced breaker states
//! come back, and every alert that fired is delivered, firing and resolved; a wall-clock step while a service is
//! healthy and an alert is firing opens no breaker and re-sends nothing; an alert that fires while the state
//! database refuses writes is delivered once it accepts them again.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use aegis_tests::{
    Proc, binary, free_port, get_text, http, post, received, scrape, start_aegis_host, start_http_service,
    start_receiver, wait_until,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TOKEN: &str = "t0k3n-s3cret";

/// A config: services `names` checked every 100 ms at the matching `endpoints`, breakers opening after two failures,
/// alerts to the webhook at `hook_port`, and `extra` YAML under `alerting:`.
fn write_config(dir: &Path, admin: &str, services: &[(&str, &str)], hook_port: u16, extra: &str) -> std::path::PathBuf {
    let mut yaml = format!(
        r#"
admin: {{address: "{admin}", token: "{TOKEN}"}}
storage: {{path: "{db}"}}
plugins: {{dir: "{plugins}"}}
defaults:
  interval: 100ms
  timeout: 1s
  actions:
    circuitBreaker: {{failureThreshold: 2, resetTimeout: 300ms}}
alerting:
  webhook: http://127.0.0.1:{hook_port}/hook
  evaluation_interval: 100ms
  retry_initial: 100ms
  retry_max: 400ms
{extra}
services:
"#,
        db = dir.join("aegis.db").display(),
        plugins = dir.join("plugins").display(),
    );
    for (name, endpoint) in services {
        yaml.push_str(&format!(
            "  - {{name: {name}, type: http, endpoint: \"{endpoint}\", actions: {{onFailure: ignore}}}}\n"
        ));
    }
    let config = dir.join("aegis.yaml");
    std::fs::write(&config, yaml).expect("write config");
    config
}

/// The state of `service`'s breaker from the API (`closed`, `forced-open`, …), `None` while it does not answer.
fn breaker(admin: &str, service: &str) -> Option<String> {
    let text = get_text(&format!("http://{admin}/api/v1/circuit-breakers/{service}"))?;
    serde_json::from_str::<Value>(&text).ok()?["state"].as_str().map(str::to_owned)
}

fn force(admin: &str, service: &str, state: &str) {
    let answer = http()
        .post(format!("http://{admin}/api/v1/circuit-breakers/{service}/force-state"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!(r#"{{"state":"{state}"}}"#))
        .send()
        .expect("POST force-state");
    assert_eq!(answer.status().as_u16(), 200, "force {service} {state}");
}

/// `PRAGMA integrity_check` of the database at `db`, opened read-only.
fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", db.display()));
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap_or_else(|e| format!("integrity_check: {e}"))
}

/// An alert notification: fingerprint, start (ms since epoch), status.
type Notification = (String, u64, String);

/// The notifications aegis-host queued, from its `alert notification` log lines (logged once queued).
fn queued(log: &str) -> BTreeSet<Notification> {
    log.lines()
        .filter(|l| l.contains("alert notification") && !l.contains("queued=0"))
        .filter_map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .map(|v| v.trim_matches('"').to_owned())
            };
            Some((field("fingerprint")?, field("starts_at_ms")?.parse().ok()?, field("status")?))
        })
        .collect()
}

/// The notifications the receiver got.
fn delivered(out: &Path) -> BTreeSet<Notification> {
    deliveries(out).into_iter().collect()
}

/// Every notification the receiver got, repeats included.
fn deliveries(out: &Path) -> Vec<Notification> {
    received(out)
        .iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            let starts = humantime::parse_rfc3339_weak(a["startsAt"].as_str()?).ok()?;
            let starts_ms = u64::try_from(starts.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
            Some((a["fingerprint"].as_str()?.to_owned(), starts_ms, a["status"].as_str()?.to_owned()))
        })
        .collect()
}

fn seed() -> u64 {
    std::env::var("AEGIS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64))
}

#[test]
fn sigkill_at_random_points_loses_no_alert_and_no_forced_state_and_keeps_the_database_intact() {
    const KILLS: usize = 20;
    let seed = seed();
    println!("crash loop seed {seed} (rerun with AEGIS_CRASH_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let services: Vec<(Proc, String)> =
        (0..3).map(|i| start_http_service(&tmp.path().join(format!("svc{i}.log")))).collect();
    let hook_port = free_port();
    let out = tmp.path().join("received.jsonl");
    let _receiver = start_receiver(hook_port, &out, &tmp.path().join("receiver.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let names = ["flap0", "flap1", "flap2", "pinned"];
    let endpoints: Vec<String> = (0..4).map(|i| format!("{}/health", services[i % 3].1)).collect();
    let listed: Vec<(&str, &str)> = names.iter().copied().zip(endpoints.iter().map(String::as_str)).collect();
    let config = write_config(tmp.path(), &admin, &listed, hook_port, "");
    let db = tmp.path().join("aegis.db");

    let mut logs = Vec::new();
    let mut forced: Option<&str> = None;
    let mut checks = 0;
    for round in 0..KILLS {
        let log = tmp.path().join(format!("aegis-{round}.log"));
        let mut host = start_aegis_host(&config, &log);
        logs.push(log);
        assert!(
            wait_until(Duration::from_secs(20), || breaker(&admin, "pinned").is_some()),
            "round {round}: up; log:\n{}",
            host.log_text()
        );
        if let Some(state) = forced {
            assert_eq!(
                breaker(&admin, "pinned").as_deref(),
                Some(state),
                "round {round} (seed {seed}): the forced state came back; log:\n{}",
                host.log_text()
            );
        }
        // Services flap, the receiver fails its next few deliveries, an operator forces the pinned breaker.
        for (_, base) in &services {
            post(&format!("{base}/{}", if rng.random_bool(0.5) { "down" } else { "up" }));
        }
        post(&format!("http://127.0.0.1:{hook_port}/fail?count={}", rng.random_range(0..6)));
        let (asked, shown) = if rng.random_bool(0.5) { ("open", "forced-open") } else { ("closed", "forced-closed") };
        force(&admin, "pinned", asked);
        forced = Some(shown);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        assert!(host.kill9().is_some(), "round {round}: killed");
        let check = integrity(&db);
        assert_eq!(check, "ok", "round {round} (seed {seed}): integrity_check after SIGKILL");
        checks += 1;
    }

    // Everything healthy, the receiver too: every notification queued by any run arrives.
    for (_, base) in &services {
        post(&format!("{base}/up"));
    }
    post(&format!("http://127.0.0.1:{hook_port}/fail?count=0"));
    let log = tmp.path().join("aegis-final.log");
    let host = start_aegis_host(&config, &log);
    logs.push(log);
    assert!(wait_until(Duration::from_secs(20), || breaker(&admin, "pinned").is_some()), "final run up");
    assert_eq!(breaker(&admin, "pinned").as_deref(), forced, "the forced state came back after the last kill");
    force(&admin, "pinned", "auto");
    let fired = || logs.iter().flat_map(|l| queued(&std::fs::read_to_string(l).unwrap_or_default())).collect();
    let missing = || -> BTreeSet<Notification> {
        let fired: BTreeSet<Notification> = fired();
        fired.difference(&delivered(&out)).cloned().collect()
    };
    let settled = wait_until(Duration::from_secs(30), || {
        names.iter().all(|n| breaker(&admin, n).as_deref() == Some("closed"))
            && scrape(&admin, "aegis_alert_outbox_pending", "") == Some(0.0)
            && missing().is_empty()
    });
    let fired = fired();
    let got = delivered(&out);
    let firing = |set: &BTreeSet<Notification>| set.iter().filter(|n| n.2 == "firing").count();
    println!(
        "crash loop: {KILLS} SIGKILLs, {checks} integrity checks ok; alerts queued: {} firing + {} resolved; \
         delivered: {} firing + {} resolved ({} deliveries in all, duplicates included)",
        firing(&fired),
        fired.len() - firing(&fired),
        firing(&got),
        got.len() - firing(&got),
        received(&out).len()
    );
    assert!(settled, "seed {seed}: not delivered: {:?}; log:\n{}", missing(), host.log_text());
    assert!(fired.iter().any(|n| n.2 == "resolved"), "the run resolved alerts too: {fired:?}");
}

#[test]
fn a_wall_clock_step_opens_no_breaker_and_re_sends_no_alert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("svc.log"));
    let hook_port = free_port();
    let out = tmp.path().join("received.jsonl");
    let _receiver = start_receiver(hook_port, &out, &tmp.path().join("receiver.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let healthy = format!("{base}/health");
    // With timers on the wall clock, the step forward would be past `repeat_interval` and re-send the firing alert.
    let config = write_config(
        tmp.path(),
        &admin,
        &[("healthy", &healthy), ("down", "http://127.0.0.1:9/health")],
        hook_port,
        "  repeat_interval: 30m",
    );
    let offset = tmp.path().join("clock-offset");
    std::fs::write(&offset, "0").expect("write offset");
    let host = Proc::start_with_env(
        &binary("aegis-host"),
        &["--config", config.to_str().expect("utf-8")],
        &tmp.path().join("aegis.log"),
        &[("AEGIS_TEST_CLOCK_OFFSET_FILE", offset.to_str().expect("utf-8"))],
    );
    let firing = || deliveries(&out).iter().filter(|n| n.2 == "firing").count();
    assert!(
        wait_until(Duration::from_secs(20), || breaker(&admin, "healthy").as_deref() == Some("closed")
            && firing() == 1),
        "healthy closed, down's alert delivered; log:\n{}",
        host.log_text()
    );
    let trips = || scrape(&admin, "aegis_breaker_trips_total", "breaker=\"healthy\",policy=\"built-in\"");
    for (step, logged) in [("3600000", "+3600.0 s"), ("-3600000", "-3600.0 s"), ("0", "+0.0 s")] {
        std::fs::write(&offset, step).expect("step the wall clock");
        assert!(
            wait_until(Duration::from_secs(10), || host.log_text().contains(logged)),
            "the step to {step} ms was noticed; log:\n{}",
            host.log_text()
        );
        // Several evaluations and checks at the stepped time.
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(breaker(&admin, "healthy").as_deref(), Some("closed"));
    assert_eq!(trips().unwrap_or(0.0), 0.0, "no breaker opened");
    assert_eq!(firing(), 1, "nothing re-sent: {:?}", deliveries(&out));
    assert!(delivered(&out).iter().all(|n| n.2 == "firing"), "nothing resolved: {:?}", delivered(&out));
    let alerts = get_text(&format!("http://{admin}/api/v1/alerts?state=firing")).unwrap_or_default();
    assert!(alerts.contains("\"down\""), "still firing: {alerts}");
}

#[test]
fn an_alert_fired_while_the_database_refuses_writes_is_delivered_when_it_accepts_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hook_port = free_port();
    let out = tmp.path().join("received.jsonl");
    let _receiver = start_receiver(hook_port, &out, &tmp.path().join("receiver.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_config(tmp.path(), &admin, &[("down", "http://127.0.0.1:9/health")], hook_port, "");
    let host = Proc::start_with_env(
        &binary("aegis-host"),
        &["--config", config.to_str().expect("utf-8")],
        &tmp.path().join("aegis.log"),
        &[("AEGIS_TEST_STORE_FAULT", "read-only:6s")],
    );
    let refused = || scrape(&admin, "aegis_storage_errors_total", "operation=\"enqueue\"").unwrap_or(0.0);
    assert!(
        wait_until(Duration::from_secs(20), || refused() >= 1.0),
        "the alert's notification was refused; log:\n{}",
        host.log_text()
    );
    assert!(delivered(&out).is_empty(), "nothing delivered while the store refuses writes");
    assert!(
        wait_until(Duration::from_secs(30), || delivered(&out).iter().any(|n| n.2 == "firing")),
        "delivered once the store is back; log:\n{}",
        host.log_text()
    );
    let events = get_text(&format!("http://{admin}/api/v1/events?limit=50")).unwrap_or_default();
    assert!(events.contains("1 notification(s) kept"), "{events}");
}
