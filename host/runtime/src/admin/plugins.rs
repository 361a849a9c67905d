//! `GET /api/v1/plugins`: the loaded plugins, how their calls went, whether they are quarantined, and which services
//! bind them (as trip predicate or recovery strategy). Reads the plugin host and the service handles only; loading
//! and quarantining are the plugin host's.

use std::collections::BTreeMap;

use aegis_plugin::CallResult;
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
    /// Calls since the host started, by result (`ok`, `trap`, `timeout`, …); results never seen are left out.
    calls: BTreeMap<&'static str, u64>,
    quarantined: bool,
    quarantines_total: u64,
    /// The services using it and how: `trip-predicate` or `recovery-strategy`.
    bound_by: Vec<Binding>,
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
    let list: Vec<PluginView> = shared
        .plugins
        .plugins()
        .into_iter()
        .map(|info| {
            let stat = stats.get(&info.name);
            let calls = CallResult::ALL
                .iter()
                .filter_map(|r| stat.map(|s| s.calls(*r)).filter(|n| *n > 0).map(|n| (r.as_str(), n)))
                .collect();
            let mut bound_by = Vec::new();
            for h in services.values() {
                if h.trip_policy == info.name {
                    bound_by.push(Binding { service: h.config.name.clone(), role: "trip-predicate" });
                }
                if h.recovery.as_ref().is_some_and(|(_, name)| *name == info.name) {
                    bound_by.push(Binding { service: h.config.name.clone(), role: "recovery-strategy" });
                }
            }
            PluginView {
                kind: info.kind.as_str(),
                version: info.version.clone(),
                path: info.path.display().to_string(),
                size_bytes: info.size_bytes,
                calls,
                quarantined: stat.is_some_and(|s| s.quarantined),
                quarantines_total: stat.map_or(0, |s| s.quarantines_total),
                bound_by,
                name: info.name,
            }
        })
        .collect();
    axum::Json(json!({ "plugins": list })).into_response()
}
