//! `GET /api/v1/plugins`: the loaded plugins, how their calls went, whether they are quarantined (their live and
//! their shadow bindings apart), and which services bind them (as trip predicate or recovery strategy, live or shadow). Reads the plugin host and the service handles only; loading
//! and quarantining are the plugin host's.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use aegis_plugin::{CallResult, PluginStats, shadow_name};
use axum::extract::State as Extract;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::AppState;

#[derive(Serialize)]
struct PluginView {
    name: String,
    kind: &'static str,
    version: Option<String>,
    path: String,
    size_bytes: u64,
    #[serde(flatten)]
    health: HealthView,
    /// The plugin's shadow bindings (`tripPolicy.shadow`, `recoveryPolicy.shadow`), counted and quarantined apart
    /// from its live ones; `null` when it never shadowed.
    shadow: Option<HealthView>,
    /// The services using it and how: `trip-predicate`, `recovery-strategy`, `shadow-trip-predicate` or
    /// `shadow-recovery-strategy`.
    bound_by: Vec<Binding>,
}

/// How a plugin's calls went (its live bindings', or its shadow bindings').
#[derive(Serialize)]
struct HealthView {
    /// Calls since the host started, by result (`ok`, `trap`, `timeout`, …); results never seen are left out.
    calls: BTreeMap<&'static str, u64>,
    quarantined: bool,
    /// When the quarantine ends (RFC 3339, UTC), `null` when not quarantined.
    quarantined_until: Option<String>,
    /// The same for people: `in 4m 10s`.
    quarantined_until_human: Option<String>,
    quarantined_for_ms: Option<u64>,
    quarantines_total: u64,
}

impl HealthView {
    fn of(stat: Option<&PluginStats>, now_ms: u64) -> HealthView {
        let calls = CallResult::ALL
            .iter()
            .filter_map(|r| stat.map(|s| s.calls(*r)).filter(|n| *n > 0).map(|n| (r.as_str(), n)))
            .collect();
        let end = stat.and_then(|s| s.quarantined_for).map(|left| QuarantineEnd::after(left, now_ms));
        HealthView {
            calls,
            quarantined: stat.is_some_and(|s| s.quarantined),
            quarantined_for_ms: end.as_ref().map(|e| e.left_ms),
            quarantined_until_human: end.as_ref().map(|e| e.human.clone()),
            quarantined_until: end.map(|e| e.rfc3339),
            quarantines_total: stat.map_or(0, |s| s.quarantines_total),
        }
    }
}

#[derive(Serialize)]
struct Binding {
    service: String,
    #[serde(rename = "as")]
    role: &'static str,
}

pub(super) async fn plugins(Extract(state): Extract<AppState>) -> Response {
    let shared = &state.shared;
    let stats: BTreeMap<String, _> = shared.plugins.stats().into_iter().map(|s| (s.plugin.clone(), s)).collect();
    let services = state.all();
    let now_ms = crate::unix_ms();
    let list: Vec<PluginView> = shared
        .plugins
        .plugins()
        .into_iter()
        .map(|info| {
            let mut bound_by = Vec::new();
            for h in services.values() {
                if h.trip_policy == info.name {
                    bound_by.push(Binding { service: h.config.name.to_string(), role: "trip-predicate" });
                }
                if h.recovery.as_deref().is_some_and(|(_, name)| *name == info.name) {
                    bound_by.push(Binding { service: h.config.name.to_string(), role: "recovery-strategy" });
                }
                if h.config.breaker.trip_shadow.as_ref().is_some_and(|p| p.plugin == info.name) {
                    bound_by.push(Binding { service: h.config.name.to_string(), role: "shadow-trip-predicate" });
                }
                if h.config.recovery_shadow.as_ref().is_some_and(|p| p.plugin == info.name) {
                    bound_by.push(Binding { service: h.config.name.to_string(), role: "shadow-recovery-strategy" });
                }
            }
            PluginView {
                kind: info.kind.as_str(),
                version: info.version.clone(),
                path: info.path.display().to_string(),
                size_bytes: info.size_bytes,
                health: HealthView::of(stats.get(&info.name), now_ms),
                shadow: stats.get(&shadow_name(&info.name)).map(|s| HealthView::of(Some(s), now_ms)),
                bound_by,
                name: info.name,
            }
        })
        .collect();
    axum::Json(json!({ "plugins": list })).into_response()
}

/// When a plugin's quarantine ends, as the API and the console show it.
pub(super) struct QuarantineEnd {
    /// The end in UTC, to the second.
    pub rfc3339: String,
    /// `in 4m 10s`: the time left, rounded up to whole seconds so it never reads `in 0s` while still quarantined.
    pub human: String,
    pub left_ms: u64,
}

impl QuarantineEnd {
    /// The end of a quarantine with `left` to go, seen at `now_ms` (Unix milliseconds).
    pub fn after(left: Duration, now_ms: u64) -> QuarantineEnd {
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        let end = UNIX_EPOCH + Duration::from_millis(now_ms.saturating_add(left_ms));
        let seconds = left_ms.div_ceil(1000);
        QuarantineEnd {
            rfc3339: humantime::format_rfc3339_seconds(end).to_string(),
            human: format!("in {}", humantime::format_duration(Duration::from_secs(seconds))),
            left_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantine_end_reads_as_a_time_and_as_time_left() {
        let end = QuarantineEnd::after(Duration::from_millis(249_200), 1_700_000_000_000);
        assert_eq!(end.rfc3339, "2023-11-14T22:17:29Z");
        assert_eq!(end.human, "in 4m 10s");
        assert_eq!(end.left_ms, 249_200);
        assert_eq!(QuarantineEnd::after(Duration::from_millis(1), 0).human, "in 1s");
    }
}
