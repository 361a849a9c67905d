//! The supervisor's side of cluster mode: what the other replicas' changes and commands mean for the services this
//! replica runs ([`Replica`]), and taking a service over when it moves here. The Redis protocol is
//! [`crate::cluster`]'s; this file only touches services.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_core::Snapshot;

use super::transitions::Transitions;
use crate::cluster::{ClusterHost, Command, Shared as Kind, ownership};
use crate::state::{OperatorAction, RestartBook, ServiceHandle, ServiceMap, Shared};

/// The services of this replica, as the cluster sees them.
pub(super) struct Replica {
    pub(super) shared: Arc<Shared>,
    pub(super) registry: ServiceMap,
}

impl Replica {
    fn handle(&self, service: &str) -> Option<Arc<ServiceHandle>> {
        self.registry.read().unwrap_or_else(|p| p.into_inner()).get(service).cloned()
    }
}

impl ClusterHost for Replica {
    fn services(&self) -> Vec<String> {
        self.registry.read().unwrap_or_else(|p| p.into_inner()).keys().map(|k| k.to_string()).collect()
    }

    fn follow(&self, service: &str, kind: Kind, json: &str, age: Duration) {
        let Some(h) = self.handle(service) else { return };
        // A follower's breaker mirrors the owner's: restored without transitions that mean anything here (the
        // supervisor only sets the state metric from the transitions of a service it does not own, see `take_over`).
        adopt(&self.shared, &h, kind, json, age);
    }

    fn rejoined<'a>(&'a self, members: &'a [String]) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Some(cluster) = &self.shared.cluster else { return };
            // Another replica may have raised (and delivered) the alerts of the services this one owns again: its
            // account wins, and what this replica raised of the same alerts while cut off is superseded (not
            // forwarded, see `alerts::cluster`).
            for service in self.services() {
                if ownership::owner(&service, members) != Some(cluster.node()) {
                    continue;
                }
                carry_on_alerts(&self.shared, cluster, &service).await;
            }
        })
    }

    fn command(&self, command: Command) {
        let Some(h) = self.handle(&command.service) else {
            tracing::warn!(service = %command.service, "operator command for an unknown service ignored");
            return;
        };
        match OperatorAction::from_name(&command.action) {
            Some(action) => {
                action.apply(&self.shared, &h, Instant::now());
            }
            None => tracing::warn!(service = %command.service, action = %command.action, "unknown operator command"),
        }
    }
}

/// Applies what the owner shared about a service to this replica's copy.
fn adopt(shared: &Shared, h: &ServiceHandle, kind: Kind, json: &str, age: Duration) {
    match kind {
        Kind::Breaker => match serde_json::from_str::<Snapshot>(json) {
            Ok(mut snapshot) => {
                snapshot.open_remaining = snapshot.open_remaining.map(|r| r.saturating_sub(age));
                h.breaker.restore(Instant::now(), &snapshot);
                h.series.set_breaker_state(h.breaker.state(Instant::now()).metric_value());
                if let Err(e) = shared.store.save_breaker(&h.config.name, &snapshot) {
                    tracing::debug!(service = %h.config.name, "{e}");
                }
            }
            Err(e) => {
                tracing::warn!(service = %h.config.name, "ignoring a shared breaker state that does not parse: {e}")
            }
        },
        Kind::Restarts => match serde_json::from_str::<RestartBook>(json) {
            Ok(book) => {
                h.series.set_gave_up(book.gave_up);
                *h.restarts() = book;
            }
            Err(e) => {
                tracing::warn!(service = %h.config.name, "ignoring a shared restart book that does not parse: {e}")
            }
        },
    }
}

/// The service just moved to this replica: resumes from what its last owner shared (an open breaker stays open,
/// the restart limit keeps counting). The transitions restoring causes are not news (the last owner acted on
/// them), so they are dropped.
pub(super) async fn take_over(handle: &ServiceHandle, shared: &Shared, changes: &Transitions) {
    let Some(cluster) = &shared.cluster else { return };
    let name = &*handle.config.name;
    for kind in [Kind::Breaker, Kind::Restarts] {
        if let Some((json, age)) = cluster.read(name, kind).await {
            adopt(shared, handle, kind, &json, age);
        }
    }
    changes.discard();
    // Its alerts move with it: the last owner dropped them (`hand_over`); this replica carries on what it shared
    // (same start, no second firing), then raises or clears the level alerts by the state it resumed from.
    carry_on_alerts(shared, cluster, name).await;
    handle.sync_level_alerts(shared, "this replica took the service over");
    tracing::info!(state = %handle.breaker.state(Instant::now()), "took the service over");
}

/// Takes on the alerts of `service` that the cluster holds (its last owner shared them), if any.
async fn carry_on_alerts(shared: &Shared, cluster: &crate::cluster::Cluster, service: &str) {
    if let Some(json) = cluster.shared_alerts(service).await {
        shared.alerts.adopt(service, &json);
    }
}
