//! The runtime's shared state: [`Shared`] (what every service task, the admin API and the background tasks use:
//! metrics, HTTP client, plugin host, store, breakers, alerting, anomaly detector, check lanes), the
//! [`ServiceHandle`] of each service and the [`ServiceMap`] the admin API and the anomaly task read.
//!
//! Direction of the imports: this module sits above the parts it holds and below the parts that use it. It holds an
//! [`Alerting`] and an [`AnomalyDetector`] as fields, so it imports `alerts` and `anomaly`; they never import it
//! back — their tasks take the pieces they need (the alerting, the store, the metrics, a source of check windows),
//! not `Shared`. The admin API and the supervisor import this module; it imports neither, and never spawns tasks
//! or runs checks. Writes to the store go through the small methods here and on [`ServiceHandle`], so a failing
//! store is logged in one place and never stops supervision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use aegis_core::Manager;
use aegis_plugin::PluginHost;

use crate::alerts::Alerting;
use crate::anomaly::AnomalyDetector;
use crate::lanes::CheckLanes;
use crate::metrics::Metrics;
use crate::probe::RetryPolicy;
use crate::store::{Event, StateStore};

mod checks;
mod operator;
mod service;
mod stream;

pub use self::checks::{CAPACITY_F64, Check, RecentChecks};
pub use self::operator::OperatorAction;
pub use self::stream::{Stream, StreamEvent};

pub(crate) use self::service::RestartBook;
pub use self::service::{SHADOW_DISAGREED, ServiceHandle};

/// State shared by every service task.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub client: reqwest::Client,
    pub plugins: PluginHost,
    /// Breaker snapshots, restart books, events, the alert outbox and named state: SQLite, or another backend.
    pub store: Arc<dyn StateStore>,
    /// Every service's breaker by name: checks run through it, and the admin API's health summary, counters and
    /// reset-all come from it. Its in-memory history is off: events are kept in the store.
    pub breakers: Manager,
    /// Spacing and the shared budget of check retries.
    pub retry: RetryPolicy,
    /// Active alerts and their delivery.
    pub alerts: Arc<Alerting>,
    /// Metric series and scorers of every service (bound only when anomaly detection is enabled).
    pub anomaly: Arc<Mutex<AnomalyDetector>>,
    /// Whether anomaly detection is enabled (a reload may switch it): services built meanwhile are bound to it.
    pub anomaly_enabled: std::sync::atomic::AtomicBool,
    /// Checks in flight at once: `maxConcurrentChecks` quick ones, and a lane of their own for slow ones.
    pub lanes: CheckLanes,
    /// Reloads asked for by the admin API, served by the supervisor loop.
    pub reload: crate::reload::ReloadRequests,
    /// The live stream of the web console (`GET /api/v1/stream`).
    pub stream: Stream,
    /// Cluster mode: the replicas sharing this host's work; `None` for a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Recorded history (`storage.history`): check outcomes, anomaly samples, log-match counts.
    pub history: crate::history::Recorder,
}

impl Shared {
    /// Records an event in the store. A store failure is never fatal: the store reports it (once per streak, see
    /// [`crate::store::Accounted`]) and keeps the event in memory until it accepts writes; the log has it meanwhile.
    pub fn event(&self, service: &str, kind: &str, message: &str) -> Option<Event> {
        match self.store.append_event(service, kind, message) {
            Ok(e) => {
                // Cluster mode: the cluster's history has it too, off the caller's path.
                if let (Some(cluster), Ok(runtime)) = (&self.cluster, tokio::runtime::Handle::try_current())
                    && let Ok(json) = serde_json::to_value(&e)
                {
                    let cluster = Arc::clone(cluster);
                    runtime.spawn(async move { cluster.record_event(json).await });
                }
                Some(e)
            }
            Err(e) => {
                tracing::warn!(service, kind, "event not recorded yet (the state database refuses writes): {message}");
                tracing::debug!(service, kind, "cannot record event: {e}");
                None
            }
        }
    }

    /// Saves a service's restart book. A store failure is never fatal; the store reports it and writes the book
    /// once it accepts writes again.
    /// Cluster mode: shares `json` about `service` with the other replicas, if this replica owns it (a follower
    /// applying what the owner shared must not echo it). Off the caller's path: a slow Redis delays nothing.
    pub(crate) fn share(&self, service: &str, kind: crate::cluster::Shared, json: String) {
        let Some(cluster) = &self.cluster else { return };
        if !cluster.owns(service) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (cluster, service) = (Arc::clone(cluster), service.to_owned());
        runtime.spawn(async move { cluster.publish(&service, kind, &json).await });
    }

    pub(crate) fn save_restarts(&self, service: &str, book: &RestartBook) {
        let recent: Vec<i64> = book.recent_ms.iter().copied().collect();
        if let Err(e) = self.store.save_restarts(service, book.total, &recent, book.gave_up) {
            tracing::debug!(service, "cannot save the restart book: {e}");
        }
        match serde_json::to_string(book) {
            Ok(json) => self.share(service, crate::cluster::Shared::Restarts, json),
            Err(e) => tracing::error!(service, "cannot serialise the restart book: {e}"),
        }
    }
}

/// The services the admin API sees; replaced as a whole on reload.
pub type ServiceMap = Arc<RwLock<BTreeMap<Arc<str>, Arc<ServiceHandle>>>>;
