//! Recorded history (issue 17, record): a real aegis-host probing the example service through an outage records
//! every check (successes with their latency, failures with their reason), the anomaly samples and the log-match
//! counts in its state database, readable with `HistoryReader` once it stops; `storage.history: {enabled: false}`
//! records nothing.

use std::path::Path;
use std::time::Duration;

use aegis_runtime::history::HistoryReader;
use aegis_tests::{free_port, post, start_aegis_host, start_http_service, successful_checks, wait_until};

fn config(dir: &Path, admin: &str, base: &str, history: &str) -> std::path::PathBuf {
    let path = dir.join("aegis.yaml");
    let yaml = format!(
        r#"
admin:
  address: {admin}
storage:
  path: {db}
  history: {history}
services:
  - name: svc
    type: http
    endpoint: {base}/health
    interval: 100ms
    timeout: 1s
    retries: 0
    actions:
      onFailure: ignore
      circuitBreaker:
        failureThreshold: 1000
logs:
  scan_interval: 50ms
  files: [{{service: svc, path: "{app_log}"}}]
  patterns:
    - name: OutOfMemory
      pattern: "out of memory"
      severity: CRITICAL
anomaly_detection:
  detection_interval: 300ms
  detector: none
"#,
        db = dir.join("aegis.db").display(),
        app_log = dir.join("app.log").display(),
    );
    std::fs::write(dir.join("app.log"), "").expect("create the app log");
    std::fs::write(&path, yaml).expect("write config");
    path
}

#[test]
fn a_real_outage_is_recorded_check_by_check_and_read_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = config(tmp.path(), &admin, &base, "{maxAge: 1d}");
    let started_ms = aegis_ms();
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(
        wait_until(Duration::from_secs(20), || successful_checks(&admin, "svc") >= 5.0),
        "healthy checks; log:\n{}",
        host.log_text()
    );
    post(&format!("{base}/down"));
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(tmp.path().join("app.log"), "ERROR out of memory\n").expect("write the app log");
    post(&format!("{base}/up"));
    let healthy = successful_checks(&admin, "svc");
    assert!(wait_until(Duration::from_secs(10), || successful_checks(&admin, "svc") >= healthy + 5.0));
    host.terminate(Duration::from_secs(10)).expect("aegis-host stopped");
    let stopped_ms = aegis_ms();

    let reader = HistoryReader::open(&tmp.path().join("aegis.db")).expect("the state database has history");
    let outcomes = reader.outcomes("svc", 0, i64::MAX).expect("outcomes");
    assert!(outcomes.len() >= 15, "{} outcomes: {outcomes:?}", outcomes.len());
    assert!(outcomes.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "oldest first");
    assert!(outcomes.iter().all(|o| (started_ms..=stopped_ms).contains(&o.at_ms)), "{outcomes:?}");
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.success).collect();
    assert!(failed.len() >= 4, "the outage's checks: {outcomes:?}");
    assert!(failed.iter().all(|o| o.detail.as_deref().is_some_and(|d| d.contains("503"))), "{failed:?}");
    assert!(outcomes.iter().filter(|o| o.success).all(|o| o.detail.is_none() && o.latency_us > 0), "{outcomes:?}");
    // The outage sits between healthy checks, in the order it happened.
    let first_failure = outcomes.iter().position(|o| !o.success).expect("a failure");
    let last_failure = outcomes.iter().rposition(|o| !o.success).expect("a failure");
    assert!(first_failure >= 5 && outcomes[last_failure + 1..].len() >= 5, "{outcomes:?}");
    assert!(outcomes[first_failure..=last_failure].iter().all(|o| !o.success), "{outcomes:?}");

    let samples = reader.samples("svc", 0, i64::MAX).expect("samples");
    assert!(samples.iter().any(|s| s.metric == "error-rate" && s.value > 0.0), "{samples:?}");
    assert!(samples.iter().any(|s| s.metric == "latency" && s.value > 0.0), "{samples:?}");
    let counts = reader.log_counts("svc", 0, i64::MAX).expect("log counts");
    assert_eq!(counts.iter().map(|c| (c.rule.as_str(), c.count)).collect::<Vec<_>>(), vec![("OutOfMemory", 1)]);
}

#[test]
fn history_switched_off_records_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = config(tmp.path(), &admin, &base, "{enabled: false}");
    let mut host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    assert!(wait_until(Duration::from_secs(20), || successful_checks(&admin, "svc") >= 3.0), "{}", host.log_text());
    host.terminate(Duration::from_secs(10)).expect("aegis-host stopped");
    let err = HistoryReader::open(&tmp.path().join("aegis.db")).expect_err("nothing recorded").to_string();
    assert!(err.contains("no recorded history"), "{err}");
}

/// Now, as aegis-host's clock reads it (ms since the Unix epoch).
fn aegis_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit i64")
}
