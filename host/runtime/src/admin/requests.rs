//! What the admin API reads from a request besides its path: the force-state body and the query strings of
//! `/api/v1/events` and `/api/v1/alerts`, turned into the handler's decision or the 400 message. Owns parsing only:
//! the handlers look up services and touch state.
//!
//! Each function takes what axum's extractor produced (`Json::from_bytes` and `Query::try_from_uri` are the functions
//! the extractors call), so the fuzzer drives exactly the handlers' parsing without a server.

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use serde::Deserialize;

use crate::store::NO_SERVICE;

/// Most events one `/api/v1/events` page returns, whatever `limit` asks.
pub const MAX_EVENTS_PER_PAGE: u32 = 1000;
/// Events per page when `limit` is not given.
const DEFAULT_EVENTS_PER_PAGE: u32 = 100;

/// The body of `POST /api/v1/circuit-breakers/{service}/force-state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceBody {
    state: String,
}

/// The state an operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceTarget {
    Open,
    Closed,
    Auto,
    HalfOpen,
}

/// The force-state body as a target, or the 400 message.
pub fn force_target(body: Result<Json<ForceBody>, JsonRejection>) -> Result<ForceTarget, String> {
    let Json(body) = body.map_err(|e| format!("expected {{\"state\": \"open|closed|half-open|auto\"}}: {e}"))?;
    match body.state.as_str() {
        "open" => Ok(ForceTarget::Open),
        "closed" => Ok(ForceTarget::Closed),
        "auto" => Ok(ForceTarget::Auto),
        "half-open" => Ok(ForceTarget::HalfOpen),
        other => Err(format!("unknown state `{other}` (expected open, closed, half-open or auto)")),
    }
}

/// The query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    service: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
}

/// Which events to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    /// `None`: every service; [`NO_SERVICE`]: events of no service.
    pub service: Option<String>,
    /// Only events of this kind (`shadow-disagreed`), if given.
    pub kind: Option<String>,
    /// At most [`MAX_EVENTS_PER_PAGE`].
    pub limit: u32,
}

impl EventFilter {
    /// The service to look up before listing: none for all events or for events of no service.
    pub fn service_to_check(&self) -> Option<&str> {
        self.service.as_deref().filter(|n| *n != NO_SERVICE)
    }
}

/// The events query as a filter, or the 400 message.
pub fn event_filter(query: Result<Query<EventQuery>, QueryRejection>) -> Result<EventFilter, String> {
    let Query(q) = query.map_err(|e| format!("bad query: {e} (expected ?service=NAME&kind=KIND&limit=N)"))?;
    Ok(EventFilter {
        service: q.service.filter(|n| !n.is_empty()),
        kind: q.kind.filter(|k| !k.is_empty()),
        limit: q.limit.unwrap_or(DEFAULT_EVENTS_PER_PAGE).min(MAX_EVENTS_PER_PAGE),
    })
}

/// The query of `GET /api/v1/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    state: Option<String>,
    service: Option<String>,
}

/// Which active alerts to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertFilter {
    /// `pending` or `firing`; `None` for both.
    pub state: Option<&'static str>,
    pub service: Option<String>,
}

/// The alerts query as a filter, or the 400 message.
pub fn alert_filter(query: Result<Query<AlertQuery>, QueryRejection>) -> Result<AlertFilter, String> {
    let Query(q) = query.map_err(|e| format!("bad query: {e} (expected ?state=pending|firing&service=NAME)"))?;
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("pending") => Some("pending"),
        Some("firing") => Some("firing"),
        Some(other) => return Err(format!("unknown state `{other}` (expected pending or firing)")),
    };
    Ok(AlertFilter { state, service: q.service.filter(|s| !s.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(query: &str) -> Result<EventFilter, String> {
        let uri: axum::http::Uri = format!("/api/v1/events?{query}").parse().map_err(|e| format!("{e}"))?;
        event_filter(Query::try_from_uri(&uri))
    }

    fn alerts(query: &str) -> Result<AlertFilter, String> {
        let uri: axum::http::Uri = format!("/api/v1/alerts?{query}").parse().map_err(|e| format!("{e}"))?;
        alert_filter(Query::try_from_uri(&uri))
    }

    #[test]
    fn force_bodies() {
        let force = |body: &str| force_target(Json::from_bytes(body.as_bytes()));
        assert_eq!(force(r#"{"state":"half-open"}"#), Ok(ForceTarget::HalfOpen));
        assert_eq!(force(r#"{"state":"open"}"#), Ok(ForceTarget::Open));
        let unknown = force(r#"{"state":"ajar"}"#).unwrap_err();
        assert!(unknown.starts_with("unknown state `ajar`"), "{unknown}");
        for bad in ["", "{", r#"{"state":1}"#, r#"{"state":"open","x":1}"#] {
            let e = force(bad).unwrap_err();
            assert!(e.starts_with("expected {\"state\""), "{bad}: {e}");
        }
    }

    #[test]
    fn event_queries() {
        assert_eq!(events(""), Ok(EventFilter { service: None, kind: None, limit: 100 }));
        assert_eq!(events("service=&limit=5"), Ok(EventFilter { service: None, kind: None, limit: 5 }));
        assert_eq!(
            events("limit=4000000000"),
            Ok(EventFilter { service: None, kind: None, limit: MAX_EVENTS_PER_PAGE })
        );
        assert_eq!(events("kind=shadow-disagreed").unwrap().kind.as_deref(), Some("shadow-disagreed"));
        let no_service = events("service=-").unwrap();
        assert_eq!(no_service.service_to_check(), None);
        assert_eq!(events("service=a%20b").unwrap().service_to_check(), Some("a b"));
        for bad in ["limit=-1", "limit=x", "other=1", "limit=5000000000"] {
            assert!(events(bad).unwrap_err().starts_with("bad query:"), "{bad}");
        }
    }

    #[test]
    fn alert_queries() {
        assert_eq!(alerts("state=&service="), Ok(AlertFilter { state: None, service: None }));
        assert_eq!(alerts("state=firing&service=api").unwrap().state, Some("firing"));
        assert!(alerts("state=resolved").unwrap_err().starts_with("unknown state `resolved`"));
        assert!(alerts("x=1").unwrap_err().starts_with("bad query:"));
    }
}
