//! The admin HTTP server: Prometheus metrics and read-only breaker health. Binds loopback by default.

use std::sync::Arc;
use std::time::Instant;

use aegis_core::State;
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::supervisor::{ServiceHandle, Shared};

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    services: Arc<Vec<Arc<ServiceHandle>>>,
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    services: Vec<Arc<ServiceHandle>>,
    mut stop: watch::Receiver<bool>,
) {
    let state = AppState { shared, services: Arc::new(services) };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/circuit-breakers/health", get(health))
        .with_state(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("admin server stopped: {e}");
    }
}

async fn metrics(Extract(state): Extract<AppState>) -> Response {
    match state.shared.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(Serialize)]
struct Health {
    /// `healthy` (all closed), `degraded` (some not closed) or `unhealthy` (none closed).
    status: &'static str,
    healthy_percent: f64,
    services: Vec<ServiceHealth>,
}

#[derive(Serialize)]
struct ServiceHealth {
    name: String,
    state: State,
    trip_policy: String,
    requests: u32,
    failures: u32,
    consecutive_failures: u32,
    last_check: Option<LastCheck>,
}

#[derive(Serialize)]
struct LastCheck {
    success: bool,
    latency_ms: f64,
    detail: String,
}

async fn health(Extract(state): Extract<AppState>) -> Response {
    let now = Instant::now();
    let services: Vec<ServiceHealth> = state
        .services
        .iter()
        .map(|h| {
            let counts = h.breaker.counts();
            ServiceHealth {
                name: h.config.name.clone(),
                state: h.breaker.state(now),
                trip_policy: h.trip_policy.clone(),
                requests: counts.requests,
                failures: counts.total_failures,
                consecutive_failures: counts.consecutive_failures,
                last_check: h.last_check().map(|c| LastCheck {
                    success: c.success,
                    latency_ms: c.latency.as_secs_f64() * 1000.0,
                    detail: c.detail,
                }),
            }
        })
        .collect();
    let healthy =
        services.iter().filter(|s| matches!(s.state, State::Closed | State::ForcedClosed | State::Disabled)).count();
    let healthy_percent = if services.is_empty() { 100.0 } else { healthy as f64 * 100.0 / services.len() as f64 };
    let status = match healthy {
        h if h == services.len() => "healthy",
        0 => "unhealthy",
        _ => "degraded",
    };
    axum::Json(Health { status, healthy_percent, services }).into_response()
}
