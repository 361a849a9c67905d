//! The web console: server-rendered pages (overview, service, alerts, plugins), their two static assets embedded in
//! the binary, the recent-checks endpoint the pages need, and the live stream ([`live`]).
//!
//! Every page is complete HTML without JavaScript (the table is the page); `console.js` only adds live updates,
//! sorting, filtering and the operator actions, which send the bearer token the operator typed (kept in
//! `sessionStorage`) to the JSON API's existing endpoints. Reads only: it must not change state itself, and it
//! reads the same [`ServiceHandle`]s and store as the JSON API. maud escapes every interpolated string, and every
//! page carries a Content-Security-Policy that allows only this server's own scripts and styles.

use std::time::Instant;

use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, AppState, error};

pub(super) mod live;
mod pages;
mod shadow;

const CSS: &str = include_str!("../../../assets/console.css");
const JS: &str = include_str!("../../../assets/console.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(markup: maud::Markup) -> Response {
    let mut response = axum::response::Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) async fn overview(Extract(state): Extract<AppState>) -> Response {
    page(pages::overview(&state, Instant::now()))
}

pub(super) async fn service(Extract(state): Extract<AppState>, Path(name): Path<String>, q: Query<Range>) -> ApiResult {
    let h = state.service(&name)?;
    let day = q.range.as_deref() == Some("day");
    let events = state
        .shared
        .store
        .events(Some(&name), 1000)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(page(pages::service(&state, &h, &events, day, Instant::now())))
}

#[derive(Deserialize)]
pub(super) struct Range {
    range: Option<String>,
}

pub(super) async fn alerts(Extract(state): Extract<AppState>) -> Response {
    page(pages::alerts(&state.shared.alerts.active()))
}

pub(super) async fn plugins(Extract(state): Extract<AppState>) -> Response {
    page(pages::plugins(&state))
}

pub(super) async fn asset(Path(file): Path<String>) -> ApiResult {
    let (kind, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => return Err(error(StatusCode::NOT_FOUND, format!("no asset `{file}`"))),
    };
    Ok(([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body).into_response())
}

/// `GET /api/v1/services/{service}/checks`: the last checks, oldest first.
pub(super) async fn checks(Extract(state): Extract<AppState>, Path(name): Path<String>) -> ApiResult {
    let h = state.service(&name)?;
    Ok(axum::Json(json!({ "service": name, "checks": h.recent.list() })).into_response())
}

/// `name` as one URL path segment.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_become_one_path_segment() {
        assert_eq!(path_segment("api-1.x"), "api-1.x");
        assert_eq!(path_segment("a/b c<"), "a%2Fb%20c%3C");
    }
}
