//! The HTTP probe's own client for plain `http://`: keep-alive reuse, what it sends, servers that close connections,
//! chunked and headless (`HEAD`) answers, redirects handed to reqwest, and its errors. Against a raw TCP server written
//! here (to see connections and request bytes) and an axum server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_runtime::config::ProbeConfig;
use aegis_runtime::probe::{HttpOptions, Probe};
use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_millis(1000);

fn probe(url: String, options: Option<HttpOptions>) -> Probe {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Probe::new("t", &ProbeConfig::Http { url, options: options.map(Box::new) }, &reqwest::Client::new())
}

/// A keep-alive HTTP/1.1 server that answers `200 ok` to every request (no body for `HEAD`), counts the connections
/// it accepts, keeps each request's head, and closes each connection after its answer while `close` is set (as a
/// server whose idle timeout is shorter than the client's would).
struct RawServer {
    base: String,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    close: Arc<AtomicBool>,
}

async fn raw_server() -> RawServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (accepted, requests, close) = (Arc::default(), Arc::default(), Arc::default());
    let server = RawServer { base, accepted: Arc::clone(&accepted), requests: Arc::clone(&requests), close };
    let close = Arc::clone(&server.close);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (requests, close) = (Arc::clone(&requests), Arc::clone(&close));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let body = if head.starts_with("HEAD ") { "" } else { "ok" };
                    requests.lock().expect("requests").push(head);
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{body}");
                    if stream.write_all(answer.as_bytes()).await.is_err() || close.load(Ordering::SeqCst) {
                        return;
                    }
                }
            });
        }
    });
    server
}

#[tokio::test]
async fn one_connection_serves_many_checks_and_a_closed_one_is_replaced() {
    let server = raw_server().await;
    let plain = probe(format!("{}/health?full=1", server.base), None);
    for _ in 0..5 {
        let r = plain.check(T, 0).await;
        assert!(r.success && r.detail == "HTTP 200", "{r:?}");
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "five checks over one kept-alive connection");

    // What is sent: origin-form target, Host with the port, the user agent, Accept.
    let head = server.requests.lock().expect("requests")[0].to_lowercase();
    let port = server.base.rsplit(':').next().expect("port");
    assert!(head.starts_with("get /health?full=1 http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{port}")), "{head}");
    assert!(head.contains(&format!("\r\nuser-agent: aegis-host/{}", env!("CARGO_PKG_VERSION"))), "{head}");
    assert!(head.contains("\r\naccept: */*"), "{head}");

    // The server now closes each connection after answering: every check still succeeds, on a new connection.
    server.close.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let r = plain.check(T, 0).await;
        assert!(r.success, "{r:?}");
        // Give the server's close time to arrive, so that the next check meets a pooled connection already closed.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The one kept from before the switch served the first of them; each later one needed a new connection.
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn head_answers_without_a_body_keep_the_connection_and_headers_replace_the_defaults() {
    let server = raw_server().await;
    let name = reqwest::header::HeaderName::from_static("user-agent");
    let options = HttpOptions {
        method: Some(reqwest::Method::HEAD),
        headers: vec![(name, "probe/1".parse().expect("value"))],
        ..HttpOptions::default()
    };
    let head = probe(format!("{}/", server.base), Some(options));
    for _ in 0..3 {
        let r = head.check(T, 0).await;
        assert!(r.success && r.detail == "HTTP 200", "{r:?}");
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "a HEAD answer's length is not waited for");
    let heads = server.requests.lock().expect("requests").clone();
    assert!(heads.iter().all(|h| h.starts_with("HEAD / HTTP/1.1\r\n")), "{heads:?}");
    let agents = heads[0].to_lowercase().matches("user-agent:").count();
    assert!(agents == 1 && heads[0].contains("probe/1"), "the configured header replaces the default: {heads:?}");
}

#[tokio::test]
async fn chunked_bodies_are_matched_and_redirects_followed() {
    let app = Router::new()
        .route("/ok", get(|| async { "status: UP" }))
        .route("/moved", get(|| async { Redirect::temporary("/ok") }))
        .route(
            "/chunked",
            get(|| async {
                let parts = ["sta", "tus: ", "UP"].map(|p| Ok::<_, std::io::Error>(axum::body::Bytes::from(p)));
                Body::from_stream(futures_util::stream::iter(parts))
            }),
        )
        .route("/huge", get(|| async { (StatusCode::OK, "x".repeat(3 << 20)) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let up = || HttpOptions { body: Some(regex::Regex::new("status: UP").expect("regex")), ..HttpOptions::default() };
    let r = probe(format!("{base}/chunked"), Some(up())).check(T, 0).await;
    assert!(r.success && r.detail == "HTTP 200, body matches", "{r:?}");
    let r = probe(format!("{base}/moved"), Some(up())).check(T, 0).await;
    assert!(r.success && r.detail == "HTTP 200, body matches", "the redirect is followed: {r:?}");
    let r = probe(format!("{base}/moved"), None).check(T, 0).await;
    assert!(r.success && r.detail == "HTTP 200", "{r:?}");
    // A body past the 1 MiB read for matching: matched on what was read, the connection dropped, nothing hangs.
    let r = probe(format!("{base}/huge"), Some(up())).check(T, 0).await;
    assert!(!r.success && r.detail.contains("does not match"), "{r:?}");
    let r = probe(format!("{base}/huge"), None).check(T, 0).await;
    assert!(r.success, "{r:?}");
}

#[tokio::test]
async fn a_refused_connection_and_a_silent_server_are_failures_with_a_reason() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let r = probe(format!("http://{closed}/"), None).check(T, 0).await;
    assert!(!r.success && r.detail.starts_with(&format!("cannot connect to {closed}:")), "{r:?}");
    assert!(r.detail.to_lowercase().contains("refused"), "{r:?}");

    // Accepts and never answers: the check's timeout ends it.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = hung.local_addr().expect("addr");
    let r = probe(format!("http://{address}/"), None).check(Duration::from_millis(200), 0).await;
    assert!(!r.success && r.detail.contains("timed out"), "{r:?}");
    drop(hung);

    // A server that closes without answering.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = rude.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = rude.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
        }
    });
    let r = probe(format!("http://{address}/"), None).check(T, 0).await;
    assert!(!r.success && !r.detail.is_empty() && !r.detail.contains("timed out"), "{r:?}");
}
