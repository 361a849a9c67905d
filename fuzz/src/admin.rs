//! The admin API's request parsing: the force-state body and the events and alerts query strings, through the same
//! functions the handlers use (axum's `Json::from_bytes` and `Query::try_from_uri` are what its extractors call).
//! Never a panic; an accepted request is one of the documented forms, a refused one gets a message.

use aegis_runtime::admin::requests::{self, ForceTarget, MAX_EVENTS_PER_PAGE};
use axum::Json;
use axum::extract::Query;
use axum::http::Uri;

use crate::input::Input;

pub fn admin(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => force_state(input.rest()),
        1 => events(input.rest()),
        _ => alerts(input.rest()),
    }
}

fn force_state(body: &[u8]) {
    match requests::force_target(Json::from_bytes(body)) {
        Ok(target) => {
            let value: serde_json::Value = match serde_json::from_slice(body) {
                Ok(value) => value,
                Err(e) => panic!("accepted a body serde_json refuses ({e}): {:?}", String::from_utf8_lossy(body)),
            };
            let expected = match target {
                ForceTarget::Open => "open",
                ForceTarget::Closed => "closed",
                ForceTarget::Auto => "auto",
                ForceTarget::HalfOpen => "half-open",
            };
            assert_eq!(value, serde_json::json!({ "state": expected }), "accepted a body of another shape");
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// The request target as hyper would hand it over; `None` for bytes no request line can carry.
fn uri(path: &str, query: &[u8]) -> Option<Uri> {
    let mut target = format!("{path}?").into_bytes();
    target.extend_from_slice(query);
    Uri::try_from(target).ok()
}

fn events(query: &[u8]) {
    let Some(uri) = uri("/api/v1/events", query) else { return };
    match requests::event_filter(Query::try_from_uri(&uri)) {
        Ok(filter) => {
            assert!(filter.limit <= MAX_EVENTS_PER_PAGE, "limit {} over the page size", filter.limit);
            assert!(filter.service.as_deref() != Some(""), "an empty service filters");
        }
        Err(message) => assert!(message.starts_with("bad query: "), "{message}"),
    }
}

fn alerts(query: &[u8]) {
    let Some(uri) = uri("/api/v1/alerts", query) else { return };
    match requests::alert_filter(Query::try_from_uri(&uri)) {
        Ok(filter) => {
            assert!(matches!(filter.state, None | Some("pending" | "firing")), "{:?}", filter.state);
            assert!(filter.service.as_deref() != Some(""), "an empty service filters");
        }
        Err(message) => assert!(!message.is_empty()),
    }
}
