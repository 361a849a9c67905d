//! Example webhook receiver: accepts `POST /hook` and `POST /api/v2/alerts` (Alertmanager's ingest path; any JSON
//! body on either), prints each one on a line, appends it to an
//! optional JSON-lines file, and lists what it received at `GET /received`. `POST /fail?count=N` makes the next N
//! deliveries answer 503, to exercise retries.
//!
//! ```text
//! webhook-server [--port 9000] [--out received.jsonl]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

#[derive(Default)]
struct Receiver {
    received: Mutex<Vec<serde_json::Value>>,
    out: Option<PathBuf>,
    fail_next: AtomicU32,
}

struct Args {
    port: u16,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args { port: 9000, out: None };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let v = args.next().ok_or("--port needs a value")?;
                parsed.port = v.parse().map_err(|e| format!("invalid port {v:?}: {e}"))?;
            }
            "--out" => parsed.out = Some(args.next().ok_or("--out needs a file")?.into()),
            "-h" | "--help" => {
                println!("usage: webhook-server [--port PORT] [--out FILE.jsonl]");
                std::process::exit(0);
            }
            other => {
                return Err(format!("unknown argument {other:?} (usage: webhook-server [--port PORT] [--out FILE])"));
            }
        }
    }
    Ok(parsed)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("webhook-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let state = Arc::new(Receiver { out: args.out, ..Receiver::default() });
    let app = Router::new()
        .route("/hook", post(hook))
        // Alertmanager's alert-ingest endpoint, so Aegis' `alerting.alertmanager_url` can point here too.
        .route("/api/v2/alerts", post(hook))
        .route("/received", get(received))
        .route("/fail", post(fail))
        .with_state(state);
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("webhook-server: cannot listen on {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("webhook-server listening on http://{addr}/hook");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("webhook-server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

async fn hook(State(r): State<Arc<Receiver>>, body: Bytes) -> (StatusCode, String) {
    if r.fail_next.load(Ordering::SeqCst) > 0 {
        r.fail_next.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose\n".into());
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}\n")),
    };
    let line = value.to_string();
    println!("{line}");
    if let Some(path) = &r.out {
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await;
        if let Ok(mut f) = file {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
    }
    r.received.lock().await.push(value);
    (StatusCode::OK, "ok\n".into())
}

async fn received(State(r): State<Arc<Receiver>>) -> String {
    serde_json::Value::Array(r.received.lock().await.clone()).to_string()
}

#[derive(serde::Deserialize)]
struct FailQuery {
    count: u32,
}

async fn fail(State(r): State<Arc<Receiver>>, Query(q): Query<FailQuery>) -> String {
    r.fail_next.store(q.count, Ordering::SeqCst);
    format!("failing the next {} deliveries\n", q.count)
}
