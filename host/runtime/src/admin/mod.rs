//! The admin HTTP API and Prometheus endpoint. Binds loopback by default; read endpoints are open, mutations need
//! `Authorization: Bearer <token>` with the configured token (and are refused when none is configured). Every error
//! is JSON: `{"error": "..."}`.
//!
//! - `GET  /metrics`
//! - `GET  /api/v1/circuit-breakers/health`            overall status, healthy %, per-service state (seed 003)
//! - `GET  /api/v1/services`
//! - `GET  /api/v1/circuit-breakers/{service}`
//! - `POST /api/v1/circuit-breakers/{service}/force-state`  `{"state": "open|closed|half-open|auto"}`
//! - `POST /api/v1/circuit-breakers/{service}/reset`
//! - `POST /api/v1/circuit-breakers/reset-all`
//! - `GET  /api/v1/events?service=&kind=&limit=` (`service=-`: events of no service; `kind=shadow-disagreed`)
//! - `GET  /api/v1/alerts?state=&service=`                  pending and firing alerts
//! - `GET  /api/v1/services/{service}/checks`              the last checks (time, outcome, latency)
//! - `GET  /api/v1/stream`                                  server-sent events: transitions, check summaries, alerts, plugins
//! - `GET  /`, `/services/{service}`, `/alerts`, `/plugins`  the web console (see [`console`])
//! - `GET  /api/v1/plugins`                                 loaded plugins, their calls and bindings
//! - `POST /api/v1/reload`                                  reload the config file, as SIGHUP does
//!
//! The server runs on a thread of its own at a lower CPU priority, with a cap on open connections, and renders
//! `/metrics` and `/api/v1/services` at most every 250 ms (see [`cache`]): admin traffic never takes the probes'
//! CPU or sockets first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aegis_core::{State, Totals};
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use self::encoding::Coding;
use self::requests::{AlertFilter, ForceTarget};
use crate::state::{OperatorAction, ServiceHandle, ServiceMap, Shared};

mod cache;
mod console;
pub mod encoding;
mod limits;
mod plugins;
mod reload;
pub mod requests;
mod server;

pub use self::server::{AdminServer, MAX_CONNECTIONS, NICENESS};

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    services: ServiceMap,
    token: Option<Arc<str>>,
    /// `/metrics` and `/api/v1/services`, rendered at most every [`cache::MAX_AGE`].
    metrics: Arc<cache::Rendered>,
    services_json: Arc<cache::Rendered>,
}

/// Starts the admin server on `listener`, on a thread of its own (see [`server`]).
pub fn start(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    services: ServiceMap,
    token: Option<String>,
) -> std::io::Result<AdminServer> {
    let state = AppState {
        shared,
        services,
        token: token.map(Arc::from),
        metrics: Arc::default(),
        services_json: Arc::default(),
    };
    AdminServer::start(listener, router(state))
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/circuit-breakers/health", get(health))
        .route("/api/v1/services", get(services))
        .route("/api/v1/circuit-breakers/reset-all", post(reset_all))
        .route("/api/v1/circuit-breakers/{service}", get(breaker))
        .route("/api/v1/circuit-breakers/{service}/force-state", post(force_state))
        .route("/api/v1/circuit-breakers/{service}/reset", post(reset))
        .route("/api/v1/events", get(events))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/plugins", get(plugins::plugins))
        .route("/api/v1/reload", post(reload::reload))
        .route("/api/v1/services/{service}/checks", get(console::checks))
        .route("/api/v1/stream", get(console::live::stream))
        .route("/", get(console::overview))
        .route("/services/{service}", get(console::service))
        .route("/alerts", get(console::alerts))
        .route("/plugins", get(console::plugins))
        .route("/assets/{file}", get(console::asset))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
        .layer(axum::middleware::from_fn(limits::enforce))
}

/// An API error: its status and a message, rendered as `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError { status, message: message.into() }
}

type ApiResult = Result<Response, ApiError>;

impl AppState {
    /// The services as of now (a reload may replace them).
    fn all(&self) -> BTreeMap<Arc<str>, Arc<ServiceHandle>> {
        self.services.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn service(&self, name: &str) -> Result<Arc<ServiceHandle>, ApiError> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("unknown service `{name}`")))
    }

    /// An operator changed something: the next reads render afresh, so the change reads back at once.
    fn changed(&self) {
        self.metrics.clear();
        self.services_json.clear();
    }

    /// Mutations need the configured bearer token.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Err(error(
                StatusCode::FORBIDDEN,
                "mutations are disabled: set admin.token in the config or AEGIS_ADMIN_TOKEN",
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            None => Err(error(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer <token>`")),
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(error(StatusCode::UNAUTHORIZED, "invalid token")),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(Extract(state): Extract<AppState>, headers: HeaderMap) -> ApiResult {
    let shared = &state.shared;
    let coding = Coding::negotiate(&headers);
    let text = state
        .metrics
        .get(coding, || {
            shared.metrics.sync_plugins(&shared.plugins.stats());
            shared.metrics.render().map(axum::body::Bytes::from)
        })
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(coded("text/plain; version=0.0.4; charset=utf-8", coding, text))
}

/// A cached answer with its content type, in the coding negotiated for it.
fn coded(content_type: &'static str, coding: Coding, body: axum::body::Bytes) -> Response {
    let mut response =
        ([(header::CONTENT_TYPE, content_type), (header::VARY, "accept-encoding")], body).into_response();
    if let Some(value) = coding.header() {
        response.headers_mut().insert(header::CONTENT_ENCODING, header::HeaderValue::from_static(value));
    }
    response
}

#[derive(Serialize)]
struct ServiceView {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    endpoint: String,
    state: State,
    trip_policy: String,
    on_failure: &'static str,
    success_rate: Option<f64>,
    requests: u32,
    failures: u32,
    consecutive_failures: u32,
    rejected: u32,
    /// Lifetime checks through the breaker: total, success, failed, rejected.
    totals: Option<Totals>,
    restarts: u64,
    gave_up: bool,
    /// While open: milliseconds until half-open.
    open_remaining_ms: Option<u64>,
    last_check: Option<LastCheck>,
    /// Cluster mode: the replica that probes and acts for the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

#[derive(Serialize)]
struct LastCheck {
    success: bool,
    latency_ms: f64,
    detail: String,
}

/// Successes ÷ requests of the breaker's current generation; `None` before the first request.
fn success_rate(counts: &aegis_core::Counts) -> Option<f64> {
    (counts.requests > 0).then(|| f64::from(counts.total_successes) / f64::from(counts.requests))
}

fn view(shared: &Shared, h: &ServiceHandle, now: Instant) -> ServiceView {
    let counts = h.breaker.counts();
    let totals = shared.breakers.metrics(&h.config.name, now);
    let (restarts, gave_up) = h.restart_status();
    ServiceView {
        name: h.config.name.to_string(),
        kind: h.config.probe.kind(),
        endpoint: crate::redact::redact_url(&h.config.endpoint).into_owned(),
        state: h.breaker.state(now),
        trip_policy: h.trip_policy.to_string(),
        on_failure: h.config.on_failure.as_str(),
        success_rate: success_rate(&counts),
        requests: counts.requests,
        failures: counts.total_failures,
        consecutive_failures: counts.consecutive_failures,
        rejected: counts.rejected,
        totals: totals.map(|m| m.totals),
        restarts,
        gave_up,
        open_remaining_ms: h
            .breaker
            .opened_until()
            .map(|until| u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)),
        last_check: h.last_check().map(|c| LastCheck {
            success: c.success,
            latency_ms: c.latency.as_secs_f64() * 1000.0,
            detail: c.detail.into_owned(),
        }),
        owner: shared.cluster.as_ref().map(|c| c.owner(&h.config.name).unwrap_or_else(|| "unknown".to_owned())),
    }
}

#[derive(Serialize)]
struct Health {
    /// `healthy` (every breaker lets traffic through), `degraded` (some do not) or `unhealthy` (none do).
    status: &'static str,
    healthy_percent: f64,
    total: usize,
    states: BTreeMap<&'static str, usize>,
    services: BTreeMap<String, ServiceHealth>,
}

#[derive(Serialize)]
struct ServiceHealth {
    state: State,
    /// Lifetime successes ÷ outcomes (0..=1); `None` before the first check.
    success_rate: Option<f64>,
    /// Lifetime checks: total, success, failed, rejected.
    totals: Totals,
}

async fn health(Extract(state): Extract<AppState>) -> Response {
    let summary = state.shared.breakers.health(Instant::now());
    let states = summary.by_state.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (s.as_str(), *n)).collect();
    let services = summary
        .services
        .iter()
        .map(|(name, m)| {
            let rate = m.success_rate.map(|percent| percent / 100.0);
            (name.clone(), ServiceHealth { state: m.state, success_rate: rate, totals: m.totals })
        })
        .collect();
    let status = match summary.healthy {
        h if h == summary.total => "healthy",
        0 => "unhealthy",
        _ => "degraded",
    };
    axum::Json(Health { status, healthy_percent: summary.overall_health, total: summary.total, states, services })
        .into_response()
}

async fn services(Extract(state): Extract<AppState>, headers: HeaderMap) -> ApiResult {
    let coding = Coding::negotiate(&headers);
    let body = state
        .services_json
        .get(coding, || {
            let now = Instant::now();
            let list: Vec<ServiceView> = state.all().values().map(|h| view(&state.shared, h, now)).collect();
            serde_json::to_vec(&json!({ "services": list })).map(axum::body::Bytes::from)
        })
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(coded("application/json", coding, body))
}

async fn breaker(Extract(state): Extract<AppState>, Path(service): Path<String>) -> ApiResult {
    let h = state.service(&service)?;
    Ok(axum::Json(view(&state.shared, &h, Instant::now())).into_response())
}

async fn force_state(
    Extract(state): Extract<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Result<axum::Json<requests::ForceBody>, JsonRejection>,
) -> ApiResult {
    state.authorize(&headers)?;
    let h = state.service(&service)?;
    let target = requests::force_target(body).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    let action = match target {
        ForceTarget::Open => OperatorAction::ForceOpen,
        ForceTarget::Closed => OperatorAction::ForceClosed,
        ForceTarget::Auto => OperatorAction::Auto,
        ForceTarget::HalfOpen => OperatorAction::HalfOpen,
    };
    operate(&state, &h, action).await
}

/// Applies `action` here, or (cluster mode) sends it to the replica that owns the service: `202 Accepted` with the
/// owner's name; it takes effect there within a second and every replica's API shows it.
async fn operate(state: &AppState, h: &ServiceHandle, action: OperatorAction) -> ApiResult {
    let service = h.config.name.clone();
    if let Some(cluster) = &state.shared.cluster
        && !cluster.owns(&service)
    {
        let command = crate::cluster::Command { service: service.to_string(), action: action.name().to_owned() };
        let owner = cluster.send(&command).await.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e))?;
        tracing::info!(service = &*service, owner, action = action.name(), "operator command sent to the owner");
        let body = json!({ "service": &*service, "state": h.breaker.state(Instant::now()), "forwarded_to": owner });
        return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
    }
    let new_state = action.apply(&state.shared, h, Instant::now());
    state.changed();
    Ok(axum::Json(json!({ "service": &*service, "state": new_state })).into_response())
}

async fn reset(Extract(state): Extract<AppState>, Path(service): Path<String>, headers: HeaderMap) -> ApiResult {
    state.authorize(&headers)?;
    let h = state.service(&service)?;
    operate(&state, &h, OperatorAction::Reset).await
}

async fn reset_all(Extract(state): Extract<AppState>, headers: HeaderMap) -> ApiResult {
    state.authorize(&headers)?;
    let all = state.all();
    for h in all.values() {
        operate(&state, h, OperatorAction::Reset).await?;
    }
    state.changed();
    Ok(axum::Json(json!({ "reset": all.len() })).into_response())
}

async fn events(
    Extract(state): Extract<AppState>,
    query: Result<Query<requests::EventQuery>, QueryRejection>,
) -> ApiResult {
    let filter = requests::event_filter(query).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    // Events of no service have no service to look up.
    if let Some(name) = filter.service_to_check() {
        state.service(name)?;
    }
    // Cluster mode: every replica's events, from Redis (each with its `node`); this replica's own while Redis
    // cannot be asked.
    if let Some(cluster) = &state.shared.cluster
        && let Some(events) = cluster.events(filter.service.as_deref(), filter.kind.as_deref(), filter.limit).await
    {
        return Ok(axum::Json(json!({ "events": events })).into_response());
    }
    let store = &state.shared.store;
    let events = match filter.kind.as_deref() {
        None => store.events(filter.service.as_deref(), filter.limit),
        Some(kind) => store.events_of_kind(filter.service.as_deref(), kind, filter.limit),
    }
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(axum::Json(json!({ "events": events })).into_response())
}

async fn alerts(
    Extract(state): Extract<AppState>,
    query: Result<Query<requests::AlertQuery>, QueryRejection>,
) -> ApiResult {
    let AlertFilter { state: wanted, service } =
        requests::alert_filter(query).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    let list: Vec<_> = state
        .shared
        .alerts
        .active()
        .into_iter()
        .filter(|a| wanted.is_none_or(|w| a.state.as_str() == w))
        .filter(|a| service.as_deref().is_none_or(|s| a.labels.get("service").map(String::as_str) == Some(s)))
        .collect();
    Ok(axum::Json(json!({ "alerts": list })).into_response())
}
