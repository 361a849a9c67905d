//! Every probe kind against a real server (or process) started here.

use std::time::Duration;

use aegis_runtime::config::ProbeConfig;
use aegis_runtime::probe::{HttpOptions, Probe};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tonic_health::ServingStatus;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn http_server() -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "status: UP" }))
        .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "status: DOWN") }))
        .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
        .route("/post", post(|| async { "posted" }))
        .route(
            "/auth",
            get(|headers: HeaderMap| async move {
                if headers.get("x-token").is_some_and(|v| v == "s3cret") {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn http(base: &str, path: &str, options: HttpOptions) -> Probe {
    Probe::new("t", &ProbeConfig::Http { url: format!("{base}{path}"), options: Some(Box::new(options)) }, &client())
}

const T: Duration = Duration::from_millis(500);

#[tokio::test]
async fn http_status_body_method_headers_and_timeout() {
    let base = http_server().await;
    let r = http(&base, "/ok", HttpOptions::default()).check(T, 0).await;
    assert!(r.success && r.detail == "HTTP 200", "{r:?}");

    let r = http(&base, "/down", HttpOptions::default()).check(T, 2).await;
    assert!(!r.success && r.detail.starts_with("HTTP 503 (expected 2xx)"), "{r:?}");
    assert_eq!(r.attempts, 3, "two retries after the first failure");

    let teapot = HttpOptions { expected_status: vec![418], ..HttpOptions::default() };
    assert!(http(&base, "/teapot", teapot).check(T, 0).await.success);

    let body =
        HttpOptions { body: Some(regex::Regex::new("status: (UP|OK)").expect("regex")), ..HttpOptions::default() };
    assert!(http(&base, "/ok", body.clone()).check(T, 0).await.success);
    let r = http(&base, "/teapot", HttpOptions { expected_status: vec![418], ..body }).check(T, 0).await;
    assert!(!r.success && r.detail.contains("does not match"), "{r:?}");

    let post = HttpOptions { method: Some(reqwest::Method::POST), ..HttpOptions::default() };
    assert!(http(&base, "/post", post).check(T, 0).await.success);
    assert!(!http(&base, "/post", HttpOptions::default()).check(T, 0).await.success, "GET on a POST route");

    let name = reqwest::header::HeaderName::from_static("x-token");
    let auth = HttpOptions { headers: vec![(name, "s3cret".parse().expect("value"))], ..HttpOptions::default() };
    assert!(http(&base, "/auth", auth).check(T, 0).await.success);

    let started = std::time::Instant::now();
    let r = http(&base, "/slow", HttpOptions::default()).check(Duration::from_millis(200), 0).await;
    assert!(!r.success && r.detail.contains("timed out"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn tcp_connect_and_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let open = listener.local_addr().expect("addr").to_string();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let probe = |address: &str| Probe::new("t", &ProbeConfig::Tcp { address: address.to_owned() }, &client());
    assert!(probe(&open).check(T, 0).await.success);
    let r = probe(&closed).check(T, 0).await;
    assert!(!r.success && r.detail.to_lowercase().contains("refused"), "{r:?}");
}

#[tokio::test]
async fn grpc_health_against_a_tonic_health_server() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("shop.Cart", ServingStatus::Serving).await;
    reporter.set_service_status("shop.Billing", ServingStatus::NotServing).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let probe = |name: &str| {
        Probe::new("t", &ProbeConfig::Grpc { uri: format!("http://{addr}"), service: name.to_owned() }, &client())
    };
    let r = probe("shop.Cart").check(Duration::from_secs(2), 0).await;
    assert!(r.success && r.detail == "gRPC SERVING", "{r:?}");
    let r = probe("shop.Billing").check(Duration::from_secs(2), 0).await;
    assert!(!r.success && r.detail == "gRPC NOT_SERVING", "{r:?}");
    let r = probe("shop.Unknown").check(Duration::from_secs(2), 0).await;
    assert!(!r.success && r.detail.contains("NotFound"), "{r:?}");
    assert!(probe("").check(Duration::from_secs(2), 0).await.success, "the server as a whole is serving");
    reporter.set_service_status("shop.Cart", ServingStatus::NotServing).await;
    assert!(!probe("shop.Cart").check(Duration::from_secs(2), 0).await.success, "status changes are seen");
}

#[tokio::test]
async fn script_exit_status_output_and_timeout_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = |command: String| Probe::new("t", &ProbeConfig::Script { command }, &client());
    let r = probe("echo all good".into()).check(T, 0).await;
    assert!(r.success && r.detail == "exit 0: all good", "{r:?}");
    let r = probe("echo disk full >&2; exit 3".into()).check(T, 0).await;
    assert!(!r.success && r.detail.contains("exit status: 3") && r.detail.contains("disk full"), "{r:?}");

    // A script that outlives its timeout is killed with its whole process group: the grandchild never writes.
    let marker = dir.path().join("late");
    let r =
        probe(format!("(sleep 1; touch {}) & sleep 5", marker.display())).check(Duration::from_millis(200), 0).await;
    assert!(!r.success && r.detail.contains("timed out"), "{r:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the background child was killed with the group");
}

#[tokio::test]
async fn retries_are_spaced_by_backoff_and_rationed_by_the_shared_budget() {
    use aegis_core::BudgetSettings;
    use aegis_runtime::probe::RetryPolicy;

    let base = http_server().await;
    let down = http(&base, "/down", HttpOptions::default());

    // A generous budget: every retry happens, each after a backoff delay (at most 100 ms, then 200 ms, full jitter).
    let generous = RetryPolicy::new(BudgetSettings::default());
    let r = down.check_with(T, 2, Some(&generous)).await;
    assert_eq!(r.attempts, 3, "{r:?}");
    assert_eq!(generous.totals(), (1, 2), "one check, two retries withdrawn");

    // No reserve and no deposit: the first failure ends the check, and says why.
    let spent = RetryPolicy::new(BudgetSettings { ratio: 0.0, min_per_second: 0.0, ..BudgetSettings::default() });
    let r = down.check_with(T, 2, Some(&spent)).await;
    assert_eq!(r.attempts, 1, "{r:?}");
    assert!(r.detail.ends_with("(retry budget exhausted)"), "{r:?}");

    // A 50 % budget without reserve: of ten failing checks asking for up to two retries each, at most five retries
    // are granted in total.
    let half = RetryPolicy::new(BudgetSettings { ratio: 0.5, min_per_second: 0.0, ..BudgetSettings::default() });
    let mut attempts = 0;
    for _ in 0..10 {
        attempts += down.check_with(T, 2, Some(&half)).await.attempts;
    }
    let (checks, retries) = half.totals();
    assert_eq!(checks, 10);
    assert!(retries <= 5, "retries {retries} exceed half of the checks");
    assert_eq!(attempts as u64, checks + retries);
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM.
fn ca_and_server_cert() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A minimal HTTPS/1.1 server answering every request with `200 ok`; returns its port.
async fn https_server(cert_pem: &str, key_pem: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert der")];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key der");
    let config =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("tls config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn https_with_a_custom_ca_from_the_config() {
    use aegis_runtime::Config;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, cert_pem, key_pem) = ca_and_server_cert();
    let port = https_server(&cert_pem, &key_pem).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write ca");
    let (other_ca, _, _) = ca_and_server_cert();
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, &other_ca).expect("write other ca");

    let probe_of = |tls: &str| {
        let yaml = format!(
            "services:\n  - name: s\n    type: http\n    endpoint: https://127.0.0.1:{port}/health\n    http:\n      tls: {tls}\n    actions: {{onFailure: ignore}}\n"
        );
        let config = Config::from_yaml(std::path::Path::new("t.yaml"), &yaml).expect("config");
        Probe::new("s", &config.services[0].probe, &client())
    };
    let trusted = probe_of(&format!("{{caFile: {}}}", ca_file.display())).check(T, 0).await;
    assert!(trusted.success && trusted.detail == "HTTP 200", "{trusted:?}");

    // Neither the system roots nor another CA vouch for the server.
    let plain = http(&format!("https://127.0.0.1:{port}"), "/health", HttpOptions::default()).check(T, 0).await;
    assert!(!plain.success && plain.detail.to_lowercase().contains("certificate"), "{plain:?}");
    let wrong = probe_of(&format!("{{caFile: {}}}", other_file.display())).check(T, 0).await;
    assert!(!wrong.success && wrong.detail.to_lowercase().contains("certificate"), "{wrong:?}");

    let insecure = probe_of("{insecureSkipVerify: true}").check(T, 0).await;
    assert!(insecure.success, "{insecure:?}");

    // A CA file that is missing or not PEM is a config error naming the field.
    for bad in [dir.path().join("missing.pem"), dir.path().to_owned()] {
        let yaml = format!(
            "services:\n  - name: s\n    type: http\n    endpoint: https://127.0.0.1:{port}/\n    http:\n      tls: {{caFile: {}}}\n    actions: {{onFailure: ignore}}\n",
            bad.display()
        );
        let e = Config::from_yaml(std::path::Path::new("t.yaml"), &yaml).expect_err("bad ca file").to_string();
        assert!(e.contains("services[0] (s).http.tls.caFile") && e.contains("t.yaml"), "{e}");
    }
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").expect("write junk");
    let yaml = format!(
        "services:\n  - name: s\n    type: http\n    endpoint: https://127.0.0.1:{port}/\n    http:\n      tls: {{caFile: {}}}\n    actions: {{onFailure: ignore}}\n",
        dir.path().join("junk.pem").display()
    );
    let e = Config::from_yaml(std::path::Path::new("t.yaml"), &yaml).expect_err("junk ca").to_string();
    assert!(e.contains("http.tls.caFile") && e.contains("PEM"), "{e}");
}
