//! Alerts: sources raise and clear conditions, the core [`AlertBook`] turns them into pending → firing → resolved
//! alerts (`for`, `keep_firing_for`, `repeat_interval`, duplicates merged by fingerprint), and every notification
//! goes through a durable outbox in the SQLite store before it is POSTed.
//!
//! Sources: a breaker opened (level: cleared when it closes), the restart limit reached (level: cleared by an
//! operator reset), a log pattern matched (pulse: resolved `keep_firing_for` after the last match) and an anomaly
//! (level: cleared when the metric is back to normal).
//!
//! Delivery is at-least-once: a notification is written to the outbox, then sent; it is deleted only after the
//! receiver answered 2xx, and retried with exponential backoff (`retry_initial` to `retry_max`) otherwise — also
//! after a restart of aegis-host, since both the outbox and the alert book are in the store. Every request carries
//! `Idempotency-Key: <fingerprint>@<startsAt ms>/<status>`; the same key may arrive more than once. Each target is
//! sent to by a lane of its own, so a receiver that hangs delays nothing addressed elsewhere, and an alert's
//! resolution never overtakes its firing notification at a receiver.
//!
//! In cluster mode the local outbox is where notifications wait until they are in the cluster's outbox in Redis,
//! from which the owner of each alert's service delivers them; the alerts of each service are shared with the
//! replica that takes it over (see `cluster.rs`).
//!
//! - `delivery.rs`: sending, and the local outbox's delivery loop.
//! - `cluster.rs`: the cluster's delivery loop and the sharing of alerts.

mod cluster;
mod delivery;

pub use self::cluster::run_cluster_delivery;
pub use self::delivery::run_delivery;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use aegis_core::alerting::{AlertBook, AlertSpec, BookSnapshot, LabelSet, Notice, SourceKind, TrackedAlert};
use aegis_core::policy::{Alert, AlertFormatter, AlertmanagerJson, Severity};
use aegis_core::{Backoff, BackoffSettings, Jitter};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{Notify, watch};

use aegis_core::alerting::label_set;

use crate::config::{AlertRule, AlertTarget, AlertingConfig};
use crate::metrics::Metrics;
use crate::store::{Notification, StateStore};
use crate::unix_ms;

/// Key of the alert book in the store's state table.
const BOOK_KEY: &str = "alert-book";
/// Outbox entries handed to a target's lane at once.
const BATCH: u32 = 32;
/// Longest wait between two looks at the outbox.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Shortest pause between two evaluations of the alert book.
const MIN_EVALUATION_GAP: Duration = Duration::from_millis(50);
/// Per-request timeout of a delivery.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Which built-in source an alert comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    BreakerOpen,
    GaveUp,
    Anomaly,
}

/// What an alert is about, for cluster mode: the value of its `service` label, or `alert:<fingerprint>` for an
/// alert of no service. The replica owning it raises, shares and delivers the alert.
fn owner_key<'a>(mut labels: impl Iterator<Item = (&'a str, &'a str)>, fingerprint: &str) -> String {
    labels.find(|(k, _)| *k == "service").map_or_else(|| format!("alert:{fingerprint}"), |(_, v)| v.to_owned())
}

/// The labels of a service's level alerts (breaker open, restart limit reached).
pub fn service_label(service: &str) -> LabelSet {
    label_set([("service", service)])
}

fn spec(name: &str, rule: &AlertRule, source: SourceKind, repeat: Duration) -> AlertSpec {
    AlertSpec {
        severity: rule.severity,
        source,
        for_: rule.for_,
        keep_firing_for: rule.keep_firing_for,
        repeat_interval: repeat,
        ..AlertSpec::new(name)
    }
}

/// What the `alerting:` section decides: the built-in sources' specs, the targets and the formatter. A reload
/// replaces it as a whole ([`Alerting::reconfigure`]); the book and the outbox stay.
struct Rules {
    config: AlertingConfig,
    breaker_open: AlertSpec,
    gave_up: AlertSpec,
    anomaly: AlertSpec,
    formatter: Arc<dyn AlertFormatter>,
    /// The formatter's name, for logs: `alertmanager` or the plugin's.
    formatter_name: String,
}

impl Rules {
    /// Binds the formatter: the `formatter` plugin if configured and loadable, else the Alertmanager webhook JSON.
    fn new(config: AlertingConfig, plugins: &aegis_plugin::PluginHost) -> Rules {
        let built_in: Arc<dyn AlertFormatter> = Arc::new(AlertmanagerJson);
        let (formatter, formatter_name) = match &config.formatter {
            None => (Arc::clone(&built_in), "alertmanager".to_owned()),
            Some(name) => match plugins.alert_formatter(
                name,
                &config.receiver,
                config.formatter_config.clone(),
                Arc::clone(&built_in),
            ) {
                Ok(f) => {
                    crate::binding::log_binding(plugins, "alert formatter", &config.receiver, name, f.is_loaded());
                    (Arc::new(f) as Arc<dyn AlertFormatter>, name.clone())
                }
                Err(e) => {
                    tracing::error!("{e}; alerts use the Alertmanager webhook body");
                    (built_in, "alertmanager".to_owned())
                }
            },
        };
        let repeat = config.repeat_interval;
        Rules {
            breaker_open: spec("CircuitBreakerOpen", &config.breaker_open, SourceKind::Level, repeat),
            gave_up: spec("RestartLimitReached", &config.gave_up, SourceKind::Level, repeat),
            anomaly: spec("AnomalyDetected", &config.anomaly, SourceKind::Level, repeat),
            config,
            formatter,
            formatter_name,
        }
    }

    /// The spec of `source`, when alerting and the source's rule are enabled.
    fn source(&self, source: Source) -> Option<&AlertSpec> {
        let (spec, rule) = match source {
            Source::BreakerOpen => (&self.breaker_open, &self.config.breaker_open),
            Source::GaveUp => (&self.gave_up, &self.config.gave_up),
            Source::Anomaly => (&self.anomaly, &self.config.anomaly),
        };
        (self.config.enabled && rule.enabled).then_some(spec)
    }

    fn enqueue(&self, store: &dyn StateStore, notice: &Notice) -> usize {
        let alert = &notice.alert;
        let key = format!("{}@{}/{}", alert.fingerprint, alert.starts_at_ms, alert.status.as_str());
        let service = owner_key(alert.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), &alert.fingerprint);
        let mut queued = 0;
        for target in &self.config.targets {
            let rendered = match target {
                AlertTarget::Webhook(url) => self.render_webhook(alert).map(|p| (url.clone(), p)),
                AlertTarget::Alertmanager(base) => Ok((
                    format!("{base}/api/v2/alerts"),
                    aegis_core::policy::Payload {
                        content_type: "application/json".to_owned(),
                        headers: Vec::new(),
                        body: aegis_core::alerting::alertmanager_v2_body(std::slice::from_ref(alert)),
                    },
                )),
            };
            match rendered {
                Ok((url, payload)) => {
                    let notification = Notification {
                        service: service.clone(),
                        idempotency_key: key.clone(),
                        target: url,
                        content_type: payload.content_type,
                        headers: payload.headers,
                        body: payload.body,
                    };
                    match store.enqueue(&notification) {
                        Ok(_) => queued += 1,
                        // The store keeps it in memory and queues it when it accepts writes again.
                        Err(e) => tracing::warn!(alert = %alert.name, "notification not queued yet: {e}"),
                    }
                }
                Err(e) => tracing::error!(alert = %alert.name, formatter = %self.formatter_name, "{e}"),
            }
        }
        // Logged once queued, so that a notification in the log is one the outbox holds (a crash test compares them).
        tracing::info!(
            alert = %alert.name,
            fingerprint = %alert.fingerprint,
            starts_at_ms = alert.starts_at_ms,
            status = alert.status.as_str(),
            kind = ?notice.kind,
            queued,
            "{}",
            if self.config.targets.is_empty() { "alert (not sent: alerting has no targets)" } else { "alert notification" }
        );
        queued
    }

    fn render_webhook(&self, alert: &Alert) -> Result<aegis_core::policy::Payload, String> {
        self.formatter.format(alert, &self.config.receiver).map_err(|e| e.to_string())
    }
}

/// The alert book, the rules of its sources and the wake-up of the evaluation task.
pub struct Alerting {
    rules: RwLock<Arc<Rules>>,
    book: Mutex<AlertBook>,
    changed: Notify,
    queued: Notify,
    /// The book as last written to the store.
    saved: Mutex<String>,
    /// Cluster mode: the alerts of each service as last shared, and what changed since.
    sharing: Mutex<Option<Sharing>>,
}

/// The alerts of each service (by [`owner_key`]) as shared with the other replicas, as JSON lists.
#[derive(Debug, Default)]
struct Sharing {
    /// What the cluster holds, as far as this replica knows.
    shared: HashMap<String, String>,
    /// Changed since, to be shared.
    changed: BTreeMap<String, String>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules = self.rules();
        f.debug_struct("Alerting")
            .field("targets", &rules.config.targets)
            .field("formatter", &rules.formatter_name)
            .field("active", &self.book().len())
            .finish_non_exhaustive()
    }
}

impl Alerting {
    /// Restores the book saved in `store` (a book that no longer parses is logged and dropped) and binds the
    /// formatter: the `formatter` plugin if configured and loadable, else the Alertmanager webhook JSON.
    pub fn new(config: AlertingConfig, store: &dyn StateStore, plugins: &aegis_plugin::PluginHost) -> Self {
        let book = match store.get_state(BOOK_KEY) {
            Ok(Some(json)) => match serde_json::from_str::<BookSnapshot>(&json) {
                Ok(snapshot) => {
                    let book = AlertBook::restore(snapshot);
                    if !book.is_empty() {
                        tracing::info!(alerts = book.len(), "active alerts restored");
                    }
                    book
                }
                Err(e) => {
                    tracing::error!("ignoring the saved alerts, they no longer parse: {e}");
                    AlertBook::new()
                }
            },
            Ok(None) => AlertBook::new(),
            Err(e) => {
                tracing::error!("cannot read the saved alerts: {e}");
                AlertBook::new()
            }
        };
        Alerting {
            rules: RwLock::new(Arc::new(Rules::new(config, plugins))),
            book: Mutex::new(book),
            changed: Notify::new(),
            queued: Notify::new(),
            saved: Mutex::new(String::new()),
            sharing: Mutex::new(None),
        }
    }

    /// Cluster mode: from now on the alerts of each service are shared with the other replicas whenever they change
    /// (see [`Self::take_changed`]).
    pub fn share_with_cluster(&self) {
        self.sharing().get_or_insert_with(Sharing::default);
    }

    fn sharing(&self) -> MutexGuard<'_, Option<Sharing>> {
        self.sharing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The services whose alerts changed since they were last shared, with their alerts (a JSON list).
    pub fn take_changed(&self) -> Vec<(String, String)> {
        self.sharing().as_mut().map(|s| std::mem::take(&mut s.changed).into_iter().collect()).unwrap_or_default()
    }

    /// `json` (from [`Self::take_changed`]) is what the cluster holds for `service` now (written, or refused because
    /// another replica owns the service).
    pub fn was_shared(&self, service: &str, json: String) {
        if let Some(s) = self.sharing().as_mut() {
            s.shared.insert(service.to_owned(), json);
        }
    }

    /// `json` (from [`Self::take_changed`]) could not be shared now: it is shared later, unless it changed again.
    pub fn share_later(&self, service: String, json: String) {
        if let Some(s) = self.sharing().as_mut() {
            s.changed.entry(service).or_insert(json);
        }
    }

    /// Whether `notification` belongs to an alert cycle this book no longer carries because it holds another cycle
    /// of the same alert (one adopted from the cluster): such a notification must not be sent.
    pub fn superseded(&self, notification: &Notification) -> bool {
        let (fingerprint, starts_at) = notification.cycle();
        let starts_at = starts_at.parse::<u64>().ok();
        let book = self.book();
        book.get(fingerprint).and_then(|a| a.starts_at_ms).is_some_and(|held| Some(held) != starts_at)
    }

    /// Cluster mode: `service` moved here; carries on the alerts its last owner shared (`json`, a list), with their
    /// start and notification times, so they neither fire again nor get a new `startsAt`.
    pub fn adopt(&self, service: &str, json: &str) {
        let alerts: Vec<TrackedAlert> = match serde_json::from_str(json) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(service, "ignoring shared alerts that do not parse: {e}");
                return;
            }
        };
        let mut book = self.book();
        let adopted = alerts.into_iter().filter(|a| book.adopt(a.clone())).count();
        drop(book);
        if adopted > 0 {
            tracing::info!(service, alerts = adopted, "carrying on the alerts of the service's last owner");
        }
        // What this replica noted to share about the service before is older than what it just took on.
        if let Some(s) = self.sharing().as_mut() {
            s.changed.remove(service);
            s.shared.insert(service.to_owned(), json.to_owned());
        }
        self.changed.notify_one();
    }

    fn book(&self) -> MutexGuard<'_, AlertBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rules(&self) -> Arc<Rules> {
        Arc::clone(&self.rules.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies a reloaded `alerting:` section. Active alerts, their notifications in the outbox and the book's
    /// history stay; the alerts of a built-in source that is now disabled are resolved (nothing would clear them
    /// any more); targets, formatter, intervals and rule settings apply to what is raised and sent from now on.
    pub fn reconfigure(&self, config: AlertingConfig, plugins: &aegis_plugin::PluginHost) {
        let rules = Arc::new(Rules::new(config, plugins));
        let before = std::mem::replace(&mut *self.rules.write().unwrap_or_else(|p| p.into_inner()), Arc::clone(&rules));
        for source in [Source::BreakerOpen, Source::GaveUp, Source::Anomaly] {
            if let (Some(spec), None) = (before.source(source), rules.source(source)) {
                self.release_all(&spec.name);
            }
        }
        self.changed.notify_one();
    }

    /// Resolves every active alert named `name`; `true` if there was one.
    fn release_all(&self, name: &str) -> bool {
        let now = unix_ms();
        let mut book = self.book();
        let fingerprints = active_fingerprints(&book, now, |a| a.name == name);
        let mut released = false;
        for fingerprint in fingerprints {
            released |= book.release(&fingerprint, now);
        }
        released
    }

    /// Cluster mode: `service` moved to another replica, which carries its alerts on (from what this replica
    /// shared) and raises them from now on. They are dropped here without a notification, so this replica neither
    /// repeats nor resolves what it no longer watches.
    pub fn hand_over(&self, service: &str) {
        let now = unix_ms();
        let mut book = self.book();
        let fingerprints = active_fingerprints(&book, now, |a| owner_of(a) == service);
        for fingerprint in fingerprints {
            book.forget(&fingerprint);
        }
        drop(book);
        // The next owner shares them from now on.
        if let Some(s) = self.sharing().as_mut() {
            s.shared.remove(service);
            s.changed.remove(service);
        }
    }

    /// The condition of `source` no longer holds for any instance (e.g. anomaly detection was switched off).
    pub fn clear_all(&self, source: Source) {
        if let Some(spec) = self.rules().source(source)
            && self.release_all(&spec.name)
        {
            self.changed.notify_one();
        }
    }

    /// The condition of `source` holds for the instance with `labels`.
    pub fn raise(&self, source: Source, labels: LabelSet, annotations: LabelSet) {
        if let Some(spec) = self.rules().source(source) {
            self.book().assert(spec, &labels, &annotations, unix_ms());
            self.changed.notify_one();
        }
    }

    /// The condition of `source` no longer holds for the instance with `labels`.
    pub fn clear(&self, source: Source, labels: &LabelSet) {
        if let Some(spec) = self.rules().source(source)
            && self.book().release_labels(spec, labels, unix_ms())
        {
            self.changed.notify_one();
        }
    }

    /// A log pattern matched: a pulse alert named after the rule, with the pattern's severity.
    pub fn log_match(&self, rule: &str, severity: Severity, labels: LabelSet, annotations: LabelSet) {
        let rules = self.rules();
        let r = &rules.config.log_match;
        if !(rules.config.enabled && r.enabled) {
            return;
        }
        let spec = AlertSpec {
            severity,
            source: SourceKind::Pulse,
            for_: r.for_,
            keep_firing_for: r.keep_firing_for,
            repeat_interval: rules.config.repeat_interval,
            ..AlertSpec::new(rule)
        };
        self.book().assert(&spec, &labels, &annotations, unix_ms());
        self.changed.notify_one();
    }

    /// Pending and firing alerts, for `GET /api/v1/alerts`.
    pub fn active(&self) -> Vec<TrackedAlert> {
        self.book().active(unix_ms())
    }

    /// Advances the book, queues its notifications in the outbox and saves the book. Formatting may call a plugin:
    /// run this on a blocking thread. Returns how many notifications were queued.
    pub fn evaluate(&self, store: &dyn StateStore, metrics: &Metrics) -> usize {
        let now = unix_ms();
        let (notices, snapshot, counts) = {
            let mut book = self.book();
            let notices = book.tick(now);
            let active = book.active(now);
            let firing = active.iter().filter(|a| a.state == aegis_core::alerting::AlertState::Firing).count();
            (notices, book.snapshot(), (active.len() - firing, firing))
        };
        metrics.alerts.with_label_values(&["pending"]).set(i64::try_from(counts.0).unwrap_or(i64::MAX));
        metrics.alerts.with_label_values(&["firing"]).set(i64::try_from(counts.1).unwrap_or(i64::MAX));
        let mut queued = 0;
        let rules = self.rules();
        for notice in &notices {
            queued += rules.enqueue(store, notice);
        }
        // Saved after queueing: a crash in between re-sends (at-least-once), it never skips a notification. Only a
        // changed book is written.
        match serde_json::to_string(&snapshot) {
            Ok(json) => {
                let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
                if *saved != json {
                    // Also shared after queueing: a replica carrying an alert on never skips a notification.
                    self.note_changes(&snapshot);
                    match store.put_state(BOOK_KEY, &json) {
                        Ok(()) => *saved = json,
                        Err(e) => {
                            tracing::debug!("cannot save the alerts (kept, written when the store recovers): {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::error!("cannot serialise the alerts: {e}"),
        }
        if queued > 0 {
            self.queued.notify_one();
        }
        queued
    }

    /// Cluster mode: notes the services whose alerts differ from what was shared.
    fn note_changes(&self, snapshot: &BookSnapshot) {
        let mut guard = self.sharing();
        let Some(sharing) = guard.as_mut() else { return };
        let mut by_service: BTreeMap<String, Vec<&TrackedAlert>> = BTreeMap::new();
        for alert in &snapshot.alerts {
            let key = owner_of(alert);
            by_service.entry(key).or_default().push(alert);
        }
        let gone: Vec<String> = sharing.shared.keys().filter(|k| !by_service.contains_key(*k)).cloned().collect();
        for service in gone {
            sharing.shared.remove(&service);
            sharing.changed.insert(service, "[]".to_owned());
        }
        for (service, alerts) in by_service {
            match serde_json::to_string(&alerts) {
                Ok(json) if sharing.shared.get(&service) != Some(&json) => {
                    sharing.changed.insert(service, json);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(service, "cannot serialise the alerts: {e}"),
            }
        }
    }

    fn retry_delay(&self, attempts: u32) -> Duration {
        let rules = self.rules();
        let (initial, max) = (rules.config.retry_initial, rules.config.retry_max);
        let backoff = Backoff::new(BackoffSettings { initial, max, multiplier: 2.0, ..BackoffSettings::default() });
        let exp = backoff.exponential(attempts);
        Jitter::Equal.apply(exp, initial, max, exp, &mut SmallRng::from_os_rng())
    }
}

/// [`owner_key`] of a tracked alert.
fn owner_of(alert: &TrackedAlert) -> String {
    owner_key(alert.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), &alert.fingerprint)
}

/// The fingerprints of the active alerts of `book` that `wanted` picks.
fn active_fingerprints(book: &AlertBook, now_ms: u64, wanted: impl Fn(&TrackedAlert) -> bool) -> Vec<String> {
    book.active(now_ms).into_iter().filter(|a| wanted(a)).map(|a| a.fingerprint).collect()
}

/// What the alert tasks work with: the book, the store holding it and the outbox, the metrics and the HTTP client.
/// The tasks take this rather than the runtime's whole shared state, so alerting depends on no part that uses it.
#[derive(Debug)]
pub struct AlertContext {
    pub alerts: Arc<Alerting>,
    /// Cluster mode: notifications are delivered through the cluster's outbox.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    pub store: Arc<dyn StateStore>,
    pub metrics: Metrics,
    pub client: reqwest::Client,
}

/// Evaluates the alert book every `evaluation_interval`, and at once when a source changed something.
pub async fn run_evaluation(shared: Arc<AlertContext>, mut stop: watch::Receiver<bool>) {
    loop {
        // Read at every round: a reload may change it.
        let interval = shared.alerts.rules().config.evaluation_interval;
        // A burst of source changes (a log flood) is evaluated at most this often.
        let gap = interval.min(MIN_EVALUATION_GAP);
        let s = Arc::clone(&shared);
        let _ = tokio::task::spawn_blocking(move || s.alerts.evaluate(s.store.as_ref(), &s.metrics)).await;
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = stop.changed() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.alerts.changed.notified() => {}
            _ = stop.changed() => break,
        }
    }
}
