//! `GET /api/v1/stream`: server-sent events for open consoles. Transitions come from the service tasks through
//! [`crate::state::Stream`]; checks, alerts and plugins arrive as summaries made here once a second, only while
//! someone listens, and only for what changed: 1 000 services checked ten times a second make one event a second,
//! not ten thousand.
//!
//! One summariser task runs on the admin thread for all listeners, so ten consoles cost one scan, serialised once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use aegis_core::State;
use axum::extract::State as Extract;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream as FutureStream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::super::AppState;

/// How often the summary is made.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

pub(in crate::admin) async fn stream(
    Extract(state): Extract<AppState>,
) -> Sse<impl FutureStream<Item = Result<Event, Infallible>>> {
    let rx = state.shared.stream.subscribe();
    if state.shared.stream.claim_summary() {
        tokio::spawn(summarise(state.clone()));
    }
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(e) => Event::default().event(e.kind).data(&e.data),
            // The console missed events: it reloads what it shows.
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// What the last summary said about one service.
#[derive(PartialEq)]
struct Seen {
    checks: u64,
    state: State,
    /// Cluster mode: the replica that owns the service.
    owner: Option<String>,
}

/// Publishes a summary of what changed every [`SUMMARY_EVERY`] until the last listener leaves.
async fn summarise(state: AppState) {
    let mut seen: HashMap<std::sync::Arc<str>, Seen> = HashMap::new();
    let (mut alerts_seen, mut plugins_seen) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(SUMMARY_EVERY);
    loop {
        ticker.tick().await;
        let stream = &state.shared.stream;
        if stream.listeners() == 0 {
            stream.release_summary();
            // A console that connected in between found the flag still taken: keep going for it.
            if stream.listeners() == 0 || !stream.claim_summary() {
                return;
            }
        }
        summarise_checks(&state, &mut seen);
        let alerts = state.shared.alerts.active();
        let alerts_digest = digest(alerts.iter().map(|a| (&a.fingerprint, a.state.as_str(), a.starts_at_ms)));
        if alerts_digest != alerts_seen {
            alerts_seen = alerts_digest;
            stream.publish("alerts", || {
                let list: Vec<_> = alerts
                    .iter()
                    .map(|a| {
                        json!({ "name": a.name, "state": a.state.as_str(), "labels": a.labels,
                                     "since_ms": a.starts_at_ms.unwrap_or(a.active_at_ms) })
                    })
                    .collect();
                json!({ "alerts": list })
            });
        }
        let plugins = state.shared.plugins.stats();
        let plugins_digest =
            digest(plugins.iter().map(|p| (&p.plugin, p.quarantined, p.calls.iter().map(|c| c.1).sum::<u64>())));
        if plugins_digest != plugins_seen {
            plugins_seen = plugins_digest;
            stream.publish("plugins", || {
                let list: Vec<_> = plugins
                    .iter()
                    .map(|p| {
                        let calls: serde_json::Map<_, _> =
                            p.calls.iter().map(|(r, n)| (r.as_str().to_owned(), json!(n))).collect();
                        json!({ "plugin": p.plugin, "kind": p.kind.as_str(), "quarantined": p.quarantined,
                                "calls": calls })
                    })
                    .collect();
                json!({ "plugins": list })
            });
        }
    }
}

fn summarise_checks(state: &AppState, seen: &mut HashMap<std::sync::Arc<str>, Seen>) {
    let now = Instant::now();
    let services = state.all();
    let mut changed = Vec::new();
    for (name, h) in &services {
        let owner = state.shared.cluster.as_ref().map(|c| c.owner(name).unwrap_or_else(|| "unknown".to_owned()));
        let current = Seen { checks: h.recent.total(), state: h.breaker.state(now), owner };
        let previous = seen.get(&**name);
        if previous == Some(&current) {
            continue;
        }
        // A service this summariser has not seen yet (it starts with the first console after none was open) sends
        // its latest check only: the page that just opened drew the rest from its HTML, and all recent checks of
        // 1 000 services made a first summary eight times the usual size for the page to redraw right after loading.
        let new = previous.map_or(current.checks.min(1), |p| current.checks - p.checks.min(current.checks));
        let recent = h.recent.list();
        let tail = &recent[recent.len() - recent.len().min(usize::try_from(new).unwrap_or(usize::MAX))..];
        let mut summary = json!({
            "s": &**name,
            "st": current.state.as_str(),
            "f": tail.iter().filter(|c| !c.success).count(),
            "c": tail.iter().map(|c| [c.latency_us, u32::from(!c.success)]).collect::<Vec<_>>(),
            "at": recent.last().map(|c| c.at_ms),
            "r": super::super::success_rate(&h.breaker.counts()),
        });
        if let Some(owner) = &current.owner {
            summary["o"] = json!(owner);
        }
        changed.push(summary);
        seen.insert(name.clone(), current);
    }
    seen.retain(|name, _| services.contains_key(&**name));
    if changed.is_empty() {
        return;
    }
    let health = state.shared.breakers.health(now);
    state.shared.stream.publish("checks", || {
        json!({ "services": changed, "healthy_percent": health.overall_health, "healthy": health.healthy,
                "total": health.total })
    });
}

fn digest<T: Hash>(items: impl Iterator<Item = T>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for item in items {
        item.hash(&mut hasher);
    }
    hasher.finish()
}
