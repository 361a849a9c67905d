//! `/metrics` as a real Prometheus server scrapes it: gzip-compressed when asked for (Prometheus asks on every
//! scrape), plain otherwise, and ingested by Debian's `prometheus` (when installed; `.ci/run` installs it for promtool).

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use aegis_tests::{
    Proc, free_port, get_text, http, start_aegis_host, start_http_service, wait_until, write_host_config,
};

#[test]
fn metrics_are_gzipped_for_clients_that_ask_and_a_real_prometheus_ingests_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = write_host_config(
        tmp.path(),
        &admin,
        &format!(
            "services:\n  - {{name: svc, type: http, endpoint: \"{base}/health\", interval: 100ms, actions: {{onFailure: ignore}}}}\n"
        ),
    );
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let url = format!("http://{admin}/metrics");
    assert!(
        wait_until(Duration::from_secs(20), || get_text(&url).is_some_and(|t| t.contains("service=\"svc\""))),
        "aegis-host serves its metrics; log:\n{}",
        host.log_text()
    );

    // Plain without Accept-Encoding, gzip with it: the same text either way.
    let plain = http().get(&url).send().expect("plain scrape");
    assert_eq!(plain.headers().get("content-encoding"), None);
    assert_eq!(plain.headers().get("vary").and_then(|v| v.to_str().ok()), Some("accept-encoding"));
    let plain = plain.text().expect("text");
    let packed = http().get(&url).header("accept-encoding", "gzip").send().expect("gzip scrape");
    assert_eq!(packed.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let packed = packed.bytes().expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut text).expect("a gzip stream");
    assert!(packed.len() < text.len() / 2, "{} bytes for {} of text", packed.len(), text.len());
    for family in ["# TYPE aegis_health_checks_total counter", "circuit_breaker_state{breaker=\"svc\"}"] {
        assert!(text.contains(family) && plain.contains(family), "{family} in both:\n{text}");
    }
    let refused = http().get(&url).header("accept-encoding", "gzip;q=0, identity").send().expect("scrape");
    assert_eq!(refused.headers().get("content-encoding"), None, "gzip;q=0 means no gzip");

    // A real Prometheus scraping it (it sends `Accept-Encoding: gzip`).
    if Command::new("prometheus").arg("--version").output().is_err() {
        eprintln!("prometheus not installed: the real scrape is skipped");
        return;
    }
    let prom_config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: aegis\n    static_configs: [{{targets: [\"{admin}\"]}}]\n"),
    )
    .expect("write prometheus config");
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = Proc::start(
        std::path::Path::new("prometheus"),
        &[
            &format!("--config.file={}", prom_config.display()),
            &format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()),
            &format!("--web.listen-address={prom_addr}"),
        ],
        &tmp.path().join("prometheus.log"),
    );
    let query = format!(
        "http://{prom_addr}/api/v1/query?query=aegis_health_checks_total%7Bservice%3D%22svc%22%2Cresult%3D%22success%22%7D"
    );
    let ingested = wait_until(Duration::from_secs(30), || {
        get_text(&query).and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok()).is_some_and(|v| {
            v["data"]["result"][0]["value"][1].as_str().and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n > 0.0)
        })
    });
    assert!(
        ingested,
        "Prometheus ingested the service's checks; its log:\n{}",
        std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
    );
}
