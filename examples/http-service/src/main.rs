//! Example service for Aegis: `/health` answers 200 `UP` or 503 `DOWN`, switchable at run time, with an optional
//! slow mode that delays every health answer.
//!
//! ```text
//! http-service [--port 8081]          (or PORT=8081)
//! curl -X POST localhost:8081/down    health answers 503
//! curl -X POST localhost:8081/up      health answers 200
//! curl -X POST localhost:8081/toggle  flips between the two
//! curl -X POST 'localhost:8081/slow?ms=800'   delay each /health by 800 ms (ms=0 turns it off)
//! curl localhost:8081/status          {"pid":4242,"up":true,"slow_ms":0,"health_requests":12}
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

#[derive(Default)]
struct Service {
    up: AtomicBool,
    slow_ms: AtomicU64,
    health_requests: AtomicU64,
}

#[derive(serde::Deserialize)]
struct SlowQuery {
    ms: u64,
}

fn port_from_args() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = std::env::var("PORT").ok();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = Some(args.next().ok_or("--port needs a value")?),
            "-h" | "--help" => {
                println!("usage: http-service [--port PORT]   (default 8081, or $PORT)");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (usage: http-service [--port PORT])")),
        }
    }
    match port {
        None => Ok(8081),
        Some(p) => p.parse().map_err(|e| format!("invalid port {p:?}: {e}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let port = match port_from_args() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("http-service: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let service = Arc::new(Service { up: AtomicBool::new(true), ..Service::default() });
    let app = Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/up", post(|State(s): State<Arc<Service>>| async move { set(&s, true) }))
        .route("/down", post(|State(s): State<Arc<Service>>| async move { set(&s, false) }))
        .route(
            "/toggle",
            post(|State(s): State<Arc<Service>>| async move {
                let now_up = !s.up.fetch_xor(true, Ordering::SeqCst);
                describe(now_up)
            }),
        )
        .route("/slow", post(slow))
        .with_state(service);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http-service: cannot listen on {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("http-service listening on http://{addr} (pid {})", std::process::id());
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("http-service: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

fn describe(up: bool) -> String {
    if up { "UP\n".to_owned() } else { "DOWN\n".to_owned() }
}

fn set(s: &Service, up: bool) -> String {
    s.up.store(up, Ordering::SeqCst);
    println!("http-service switched {}", if up { "UP" } else { "DOWN" });
    describe(up)
}

async fn health(State(s): State<Arc<Service>>) -> (StatusCode, String) {
    s.health_requests.fetch_add(1, Ordering::Relaxed);
    let delay = s.slow_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if s.up.load(Ordering::SeqCst) {
        (StatusCode::OK, describe(true))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, describe(false))
    }
}

async fn status(State(s): State<Arc<Service>>) -> String {
    format!(
        "{{\"pid\":{},\"up\":{},\"slow_ms\":{},\"health_requests\":{}}}\n",
        std::process::id(),
        s.up.load(Ordering::SeqCst),
        s.slow_ms.load(Ordering::Relaxed),
        s.health_requests.load(Ordering::Relaxed)
    )
}

async fn slow(State(s): State<Arc<Service>>, Query(q): Query<SlowQuery>) -> String {
    s.slow_ms.store(q.ms, Ordering::Relaxed);
    format!("slow_ms={}\n", q.ms)
}
