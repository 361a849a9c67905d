//! The supervisor: one task per service that probes on the service's interval, feeds results into the service's
//! breaker, and runs the recovery action (spaced by the backoff) when the breaker opens.
//!
//! While a breaker is open the service is not probed; after `resetTimeout` the breaker lets one probe through
//! (half-open), and `successThreshold` successes in a row close it again. A disabled breaker never opens: every
//! failed check triggers the recovery action directly, still spaced by the backoff. After `restartLimit.burst`
//! restarts within `restartLimit.interval` Aegis gives up on the service (an event, a metric, a notification if a
//! webhook is configured) until an operator resets its breaker.
//!
//! Breaker states, restart counters and events go to the store as they happen and are restored at start.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aegis_core::policy::{Failure, FixedAction, RecoveryAction, RecoveryStrategy, Severity};
use aegis_core::{
    Backoff, CallError, ConsecutiveFailures, Force, Manager, ManagerConfig, Settings, State, StateChange,
    TripPredicate, WindowKind,
};
use aegis_plugin::{PluginEvent, PluginHost, ServiceInfo};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use aegis_core::alerting::label_set;

use crate::action::{self, RestartOutcome, notify};
use crate::alerts::{AlertContext, Alerting, Source, service_label};
use crate::anomaly::{AnomalyDetector, CheckWindow};
use crate::binding::log_binding;
use crate::config::{Config, OnFailure, ServiceConfig};
use crate::error::RuntimeError;
use crate::lanes::CheckLanes;
use crate::metrics::Metrics;
use crate::off_worker::OffWorker;
use crate::probe::{Probe, RetryPolicy};
use crate::process::{ManagedProcess, STOP_GRACE};
use crate::state::{RestartBook, ServiceHandle, ServiceMap, Shared};
use crate::store::{NO_SERVICE, Store};
use crate::{unix_ms, unix_ms_i64};

/// The policy name reported when the built-in trip predicate decides.
const BUILT_IN: &str = "built-in";

/// A breaker transition, as the service task sees it.
#[derive(Debug, Clone)]
struct Transition {
    from: State,
    to: State,
    reason: String,
}

/// Breaker transitions waiting for the service task: filled by the breaker's listener (on whatever thread recorded
/// the outcome), drained by the task. Lighter than a channel, which allocates a 32-slot block per service.
#[derive(Debug, Default)]
struct Transitions {
    queue: Mutex<VecDeque<Transition>>,
    wake: tokio::sync::Notify,
}

impl Transitions {
    fn push(&self, t: Transition) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(t);
        self.wake.notify_one();
    }

    fn try_recv(&self) -> Option<Transition> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    async fn recv(&self) -> Transition {
        loop {
            if let Some(t) = self.try_recv() {
                return t;
            }
            self.wake.notified().await;
        }
    }
}

/// Failed checks kept for a recovery strategy.
const FAILURE_HISTORY: usize = 32;

/// Records plugin quarantines and releases in the event history (with [`NO_SERVICE`]: a plugin may decide for many
/// services, or for none, like an alert formatter), until `stop`; events queued by then are recorded too.
async fn record_plugin_events(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<PluginEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let record = |event: PluginEvent| {
        let (kind, message) = match event {
            PluginEvent::Quarantined { plugin, strikes, cool_down, last_error } => (
                "plugin-quarantined",
                format!(
                    "{plugin}: quarantined after {strikes} strike(s), the built-in policy decides for {cool_down:?}; \
                     last: {last_error}"
                ),
            ),
            PluginEvent::Released { plugin } => {
                ("plugin-released", format!("{plugin}: answered well after its quarantine; released"))
            }
        };
        shared.event(NO_SERVICE, kind, &message);
    };
    loop {
        tokio::select! {
            Some(event) = events.recv() => record(event),
            _ = stop.changed() => break,
        }
    }
    while let Ok(event) = events.try_recv() {
        record(event);
    }
}

/// A validated config turned into running parts; [`Supervisor::run`] starts them.
#[derive(Debug)]
pub struct Supervisor {
    config: Config,
    shared: Arc<Shared>,
    services: Vec<(Arc<ServiceHandle>, Arc<Transitions>)>,
    /// Plugin quarantines and releases, recorded as events by a task of [`Self::run`].
    plugin_events: Option<mpsc::Receiver<PluginEvent>>,
}

/// Plugin events waiting to be recorded. They come one per quarantine or release, so a full queue means the
/// recording task is stuck; further events are then only logged (the log has them all anyway).
const PLUGIN_EVENT_QUEUE: usize = 256;

impl Supervisor {
    /// Loads plugins and builds one breaker, backoff and probe per service. Plugins that fail to load are skipped
    /// (and logged); a service whose trip plugin is missing or refuses its config uses the built-in predicate.
    pub fn new(config: Config) -> Result<Supervisor, RuntimeError> {
        // reqwest is built without a default crypto provider; ring is the one we ship.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("aegis-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RuntimeError::HttpClient(crate::probe::error_chain(&e)))?;
        let metrics = Metrics::new()?;
        let store = Store::open(&config.storage_path)?;
        // Compiled plugins are cached beside the state database unless `plugins.cacheDir` says otherwise.
        let cache_dir = config.plugins.cache_dir.clone().unwrap_or_else(|| {
            config.storage_path.parent().unwrap_or(std::path::Path::new("")).join("aegis-plugin-cache")
        });
        let plugins = PluginHost::new(config.plugins.limits)?
            .with_quarantine(config.plugins.quarantine)
            .with_cache_dir(cache_dir);
        for (name, capabilities) in &config.plugins.grants {
            plugins.grant(name, capabilities.clone());
        }
        // The listener runs on the thread of the plugin call that caused the event: it only queues it.
        let (events_tx, plugin_events) = mpsc::channel(PLUGIN_EVENT_QUEUE);
        plugins.on_event(Arc::new(move |event: &PluginEvent| {
            if events_tx.try_send(event.clone()).is_err() {
                tracing::warn!("plugin event not recorded, the event queue is full: {event:?}");
            }
        }));
        let report = plugins.load_dir(&config.plugins.dir)?;
        for info in &report.loaded {
            tracing::info!(plugin = %info.name, kind = %info.kind, path = %info.path.display(), "plugin loaded");
        }
        for error in &report.failed {
            tracing::error!("plugin skipped: {error}");
        }
        let breakers = Manager::new(ManagerConfig { history: 0, ..ManagerConfig::default() });
        let retry = RetryPolicy::new(config.retry_budget);
        let alerts = Alerting::new(config.alerting.clone(), &store, &plugins);
        let anomaly = Mutex::new(AnomalyDetector::new(config.anomaly.clone()));
        let lanes = CheckLanes::new(
            config.max_concurrent_checks,
            metrics.checks_in_flight.with_label_values(&["quick"]),
            metrics.checks_in_flight.with_label_values(&["slow"]),
        );
        let shared = Arc::new(Shared {
            metrics,
            client,
            plugins,
            store: Arc::new(store),
            breakers,
            retry,
            alerts: Arc::new(alerts),
            anomaly: Arc::new(anomaly),
            anomaly_enabled: config.anomaly.enabled,
            lanes,
        });
        let mut config = config;
        // Each service's settings live in its handle from now on; the supervisor keeps the rest of the config.
        let services = std::mem::take(&mut config.services)
            .into_iter()
            .map(|s| build_service(&shared, &s, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Supervisor { config, shared, services, plugin_events: Some(plugin_events) })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn handles(&self) -> Vec<Arc<ServiceHandle>> {
        self.services.iter().map(|(h, _)| Arc::clone(h)).collect()
    }

    /// Runs the admin server and every service until `shutdown` resolves, then stops supervised processes. SIGHUP
    /// reloads the config file: added, removed and changed services only; the others keep running untouched. An
    /// invalid file is refused and the running config kept.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), RuntimeError> {
        let bind_error = |source| RuntimeError::Bind { address: self.config.admin_address.to_string(), source };
        // Bound by Tokio (SO_REUSEADDR: a restart rebinds at once), then handed to the admin server's own runtime.
        let listener = tokio::net::TcpListener::bind(self.config.admin_address)
            .await
            .and_then(tokio::net::TcpListener::into_std)
            .map_err(bind_error)?;
        let admin_addr = listener.local_addr().map_err(bind_error)?;
        let registry: ServiceMap = Arc::default();
        let admin = crate::admin::start(
            listener,
            Arc::clone(&self.shared),
            Arc::clone(&registry),
            self.config.admin_token.clone(),
        )
        .map_err(bind_error)?;
        tracing::info!("admin API and metrics on http://{admin_addr}/metrics");

        // Alert evaluation and delivery, anomaly detection and log tailing run beside the service tasks.
        let (tasks_stop, tasks_stop_rx) = watch::channel(false);
        let alerting = Arc::new(AlertContext {
            alerts: Arc::clone(&self.shared.alerts),
            store: Arc::clone(&self.shared.store),
            metrics: self.shared.metrics.clone(),
            client: self.shared.client.clone(),
        });
        let mut tasks = vec![
            tokio::spawn(crate::alerts::run_evaluation(Arc::clone(&alerting), tasks_stop_rx.clone())),
            tokio::spawn(crate::alerts::run_delivery(alerting, tasks_stop_rx.clone())),
        ];
        if let Some(events) = self.plugin_events.take() {
            tasks.push(tokio::spawn(record_plugin_events(Arc::clone(&self.shared), events, tasks_stop_rx.clone())));
        }
        if let Some(every) = self.config.plugins.watch {
            let dir = self.config.plugins.dir.clone();
            tasks.push(tokio::spawn(watch_plugins(Arc::clone(&self.shared), dir, every, tasks_stop_rx.clone())));
        }
        let lines = self.start_logs(&mut tasks, &tasks_stop_rx);
        if self.config.anomaly.enabled {
            let services = Arc::clone(&registry);
            let windows: crate::anomaly::WindowSource = Arc::new(move || {
                let handles: Vec<_> = services.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
                handles.iter().map(|h| (h.config.name.clone(), h.take_window())).collect()
            });
            tasks.push(tokio::spawn(crate::anomaly::run(
                Arc::clone(&self.shared.anomaly),
                Arc::clone(&self.shared.alerts),
                self.shared.metrics.clone(),
                windows,
                lines,
                self.config.anomaly.interval,
                tasks_stop_rx.clone(),
            )));
        }

        let mut running = BTreeMap::new();
        for (handle, changes) in std::mem::take(&mut self.services) {
            running.insert(handle.config.name.clone(), start_service(&self.shared, handle, changes).await);
        }
        publish(&registry, &running);

        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.reload(&mut running).await;
                    publish(&registry, &running);
                }
            }
        }

        tracing::info!("shutting down");
        for (_, service) in std::mem::take(&mut running) {
            service.stop(self.config.stop_children_on_exit).await;
        }
        let _ = tasks_stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        admin.stop().await;
        Ok(())
    }

    /// Starts tailing the configured log files (built-in patterns plus log-rule plugins) and the task that turns
    /// matches into metrics, events and alerts. Returns the per-service line counts for throughput anomalies.
    fn start_logs(
        &self,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
        stop: &watch::Receiver<bool>,
    ) -> crate::anomaly::LineSource {
        let none: crate::anomaly::LineSource = Arc::new(|_: &str| None);
        let logs = &self.config.logs;
        if !logs.enabled || logs.settings.files.is_empty() {
            return none;
        }
        let mut rules = match crate::logs::RuleSet::new(&logs.settings.patterns) {
            Ok(rules) => rules,
            Err(e) => {
                tracing::error!("log monitoring disabled: {e}");
                return none;
            }
        };
        for name in &logs.plugins {
            // A quarantined or failing plugin matches nothing rather than everything.
            let fallback: Arc<dyn aegis_core::policy::LogRule> =
                Arc::new(aegis_core::policy::Contains::new(name.clone(), Severity::Info, Vec::<String>::new()));
            match self.shared.plugins.log_rule(name, "logs", Vec::new(), fallback) {
                Ok(rule) => {
                    log_binding(&self.shared.plugins, "log rule", "logs", name, rule.is_loaded());
                    rules = rules.with_rule(Arc::new(rule), None);
                }
                Err(e) => tracing::error!("log rule plugin skipped: {e}"),
            }
        }
        let (sink, matches) = mpsc::channel(1024);
        let monitor = crate::logs::spawn(logs.settings.clone(), Arc::new(rules), sink, stop.clone());
        tracing::info!(files = logs.settings.files.len(), patterns = logs.settings.patterns.len(), "tailing logs");
        tasks.push(monitor.task);
        tasks.push(tokio::spawn(consume_log_matches(
            Arc::clone(&self.shared),
            matches,
            Arc::clone(&monitor.counts),
            stop.clone(),
        )));
        let counts = monitor.counts;
        let with_files: std::collections::BTreeSet<String> =
            logs.settings.files.iter().filter_map(|f| f.service.clone()).collect();
        Arc::new(move |service: &str| with_files.contains(service).then(|| counts.lines(service)))
    }

    async fn reload(&mut self, running: &mut BTreeMap<String, RunningService>) {
        tracing::info!(config = %self.config.source.display(), "SIGHUP: reloading the config");
        let new = match Config::load(&self.config.source) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, the running config stays: {e}");
                return;
            }
        };
        if new.logs != self.config.logs || new.anomaly != self.config.anomaly || new.alerting != self.config.alerting {
            tracing::warn!("logs, anomaly_detection and alerting settings change only with a restart of aegis-host");
        }
        if new.admin_address != self.config.admin_address
            || new.storage_path != self.config.storage_path
            || new.admin_token != self.config.admin_token
        {
            tracing::warn!("admin and storage settings change only with a restart of aegis-host");
        }
        reload_plugins(&self.shared, new.plugins.dir.clone()).await;
        let wanted: BTreeMap<&str, &ServiceConfig> = new.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let gone: Vec<String> = running.keys().filter(|n| !wanted.contains_key(n.as_str())).cloned().collect();
        for name in gone {
            if let Some(service) = running.remove(&name) {
                tracing::info!(service = %name, "removed by reload");
                service.stop(true).await;
                self.shared.breakers.remove(&name);
                self.shared.metrics.remove_service(&name);
                self.shared.anomaly.lock().unwrap_or_else(|p| p.into_inner()).unbind(&name);
            }
        }
        let (mut added, mut changed) = (0, 0);
        for s in &new.services {
            let old = match running.get(&s.name) {
                Some(r) if r.handle.config == *s => continue,
                Some(_) => running.remove(&s.name),
                None => None,
            };
            // A supervised process whose own settings did not change keeps running across the reload.
            let keep_process = old
                .as_ref()
                .and_then(|o| (o.handle.config.process == s.process).then(|| o.handle.process.clone()).flatten());
            if let Some(o) = old {
                let previous = o.stop_task().await;
                if keep_process.is_none()
                    && let Some(p) = &previous.process
                {
                    p.close(STOP_GRACE).await;
                }
                changed += 1;
            } else {
                added += 1;
            }
            match build_service(&self.shared, s, keep_process) {
                Ok((handle, changes)) => {
                    running.insert(s.name.clone(), start_service(&self.shared, handle, changes).await);
                }
                Err(e) => tracing::error!(service = %s.name, "not started after reload: {e}"),
            }
        }
        tracing::info!(added, changed, services = running.len(), "config reloaded");
        self.config = Config {
            services: Vec::new(),
            admin_address: self.config.admin_address,
            admin_token: self.config.admin_token.clone(),
            storage_path: self.config.storage_path.clone(),
            logs: self.config.logs.clone(),
            anomaly: self.config.anomaly.clone(),
            alerting: self.config.alerting.clone(),
            ..new
        };
    }
}

/// Events recorded per rule and second; a log flood still counts every match (metric) and alerts once, but does
/// not flood the event history.
const LOG_EVENTS_PER_RULE_PER_SECOND: u32 = 10;

/// Turns log matches into `aegis_log_matches_total`, events and alerts, and keeps `aegis_log_lines_total` in step
/// with the tailers' counts.
async fn consume_log_matches(
    shared: Arc<Shared>,
    mut matches: mpsc::Receiver<crate::logs::LogMatch>,
    counts: Arc<crate::logs::LineCounts>,
    mut stop: watch::Receiver<bool>,
) {
    let mut budget: BTreeMap<String, (u64, u32)> = BTreeMap::new();
    let mut sync = tokio::time::interval(Duration::from_secs(1));
    loop {
        let m = tokio::select! {
            m = matches.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = sync.tick() => {
                for (service, total) in counts.snapshot() {
                    let counter = shared.metrics.log_lines.with_label_values(&[&service]);
                    counter.inc_by(total.saturating_sub(counter.get()));
                }
                continue;
            }
            _ = stop.changed() => break,
        };
        let severity = m.severity.as_str();
        shared.metrics.log_matches.with_label_values(&[&m.rule, severity]).inc();
        let service = m.service.clone().unwrap_or_else(|| NO_SERVICE.to_owned());
        let second = m.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let slot = budget.entry(m.rule.clone()).or_insert((second, 0));
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
        if slot.1 <= LOG_EVENTS_PER_RULE_PER_SECOND {
            let message = format!("[{}] {}: {}", m.rule, m.path.display(), m.line);
            shared.event(&service, "log-match", &message);
            tracing::warn!(rule = %m.rule, severity, path = %m.path.display(), "log match: {}", m.line);
        }
        let mut labels = label_set([("rule", m.rule.as_str()), ("path", &m.path.display().to_string())]);
        if let Some(s) = &m.service {
            labels.insert("service".to_owned(), s.clone());
        }
        let summary = m.description.clone().unwrap_or_else(|| format!("log lines match {}", m.rule));
        shared.alerts.log_match(&m.rule, m.severity, labels, label_set([("summary", summary), ("line", m.line)]));
    }
}

/// Reloads the plugin directory on a blocking thread (compiling a plugin takes milliseconds to seconds). Changed
/// plugins are swapped in at their bindings' next call; a broken replacement keeps the old version running.
async fn reload_plugins(shared: &Arc<Shared>, dir: PathBuf) {
    let s = Arc::clone(shared);
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || s.plugins.reload_dir(&dir)).await {
        Ok(Ok(report)) => {
            if !(report.added.is_empty() && report.updated.is_empty() && report.removed.is_empty()) {
                tracing::info!(
                    added = ?report.added,
                    updated = ?report.updated,
                    removed = ?report.removed,
                    "plugins reloaded"
                );
            }
            for error in &report.failed {
                tracing::error!("plugin not reloaded, the running version stays: {error}");
            }
        }
        Ok(Err(e)) => tracing::error!("plugins in {shown} not reloaded: {e}"),
        Err(e) => tracing::error!("plugin reload task failed: {e}"),
    }
}

/// Name, size and modification time of every `.wasm` in `dir`: a change means a plugin was added, replaced or
/// removed. An unreadable directory reads as empty (and is reported by the reload it triggers).
fn plugin_dir_signature(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .map(|e| {
            let meta = e.metadata().ok();
            (e.path(), meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// Polls the plugin directory (portable, and immune to the editors and `cp` variants that defeat inotify) and
/// reloads it when a `.wasm` appeared, changed or disappeared. Probes keep running meanwhile: bindings switch to the
/// new version at their next call.
async fn watch_plugins(shared: Arc<Shared>, dir: PathBuf, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut last = plugin_dir_signature(&dir);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        let now = plugin_dir_signature(&dir);
        if now != last {
            tracing::info!(dir = %dir.display(), "plugin directory changed; reloading");
            reload_plugins(&shared, dir.clone()).await;
            last = now;
        }
    }
}

fn publish(registry: &ServiceMap, running: &BTreeMap<String, RunningService>) {
    let map = running.iter().map(|(name, r)| (name.clone(), Arc::clone(&r.handle))).collect();
    *registry.write().unwrap_or_else(|p| p.into_inner()) = map;
}

/// A service task and the switch that stops it.
struct RunningService {
    handle: Arc<ServiceHandle>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningService {
    async fn stop_task(self) -> Arc<ServiceHandle> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.handle
    }

    /// Stops the task and then the supervised process (or leaves it running).
    async fn stop(self, stop_process: bool) {
        let handle = self.stop_task().await;
        if let Some(process) = &handle.process {
            if stop_process {
                process.close(STOP_GRACE).await;
            } else if let Some(pid) = process.pid().await {
                tracing::info!(service = %handle.config.name, pid, "leaving the supervised process running");
                process.detach().await;
            }
        }
    }
}

async fn start_service(shared: &Arc<Shared>, handle: Arc<ServiceHandle>, changes: Arc<Transitions>) -> RunningService {
    if let Some(process) = &handle.process
        && let Err(e) = process.start().await
    {
        tracing::error!(service = %handle.config.name, "{e}");
    }
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_service(Arc::clone(&handle), Arc::clone(shared), changes, stop_rx));
    RunningService { handle, stop, task }
}

fn build_service(
    shared: &Arc<Shared>,
    s: &ServiceConfig,
    process: Option<Arc<ManagedProcess>>,
) -> Result<(Arc<ServiceHandle>, Arc<Transitions>), RuntimeError> {
    let b = &s.breaker;
    let built_in: Arc<dyn TripPredicate> = Arc::new(ConsecutiveFailures(b.failure_threshold));
    let (predicate, trip_policy): (Arc<dyn TripPredicate>, String) = match &b.trip_policy {
        None => (Arc::clone(&built_in), BUILT_IN.to_owned()),
        Some(policy) => {
            let info =
                ServiceInfo { name: s.name.clone(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() };
            match shared.plugins.trip_predicate(&policy.plugin, info, policy.config.clone(), Arc::clone(&built_in)) {
                Ok(p) => {
                    log_binding(&shared.plugins, "trip predicate", &s.name, &policy.plugin, p.is_loaded());
                    (Arc::new(OffWorker(p)), policy.plugin.clone())
                }
                Err(e) => {
                    tracing::error!(service = %s.name, "{e}; using the built-in trip predicate");
                    (Arc::clone(&built_in), BUILT_IN.to_owned())
                }
            }
        }
    };
    let recovery = s.recovery_policy.as_ref().and_then(|policy| {
        let info = ServiceInfo { name: s.name.clone(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() };
        let fixed: Arc<dyn RecoveryStrategy> = Arc::new(FixedAction(fixed_action(s.on_failure)));
        match shared.plugins.recovery_strategy(&policy.plugin, info, policy.config.clone(), fixed) {
            Ok(p) => {
                log_binding(&shared.plugins, "recovery strategy", &s.name, &policy.plugin, p.is_loaded());
                Some((Arc::new(p) as Arc<dyn RecoveryStrategy>, policy.plugin.clone()))
            }
            Err(e) => {
                tracing::error!(service = %s.name, "{e}; using onFailure `{}`", s.on_failure.as_str());
                None
            }
        }
    });
    let changes = Arc::new(Transitions::default());
    let tx = Arc::clone(&changes);
    let listener = Arc::new(move |change: &StateChange| {
        tx.push(Transition { from: change.from, to: change.to, reason: change.reason.clone() });
    });
    let settings = Settings::new(s.name.clone())
        .failure_threshold(b.failure_threshold)
        .reset_timeout(b.reset_timeout)
        .interval(b.recovery_time)
        .success_threshold(b.success_threshold)
        .max_requests(1)
        .slow_call_duration(b.slow_call_duration)
        .window(WindowKind::Count(b.window_size))
        .trip_predicate(predicate)
        .on_state_change(listener);
    let breaker = shared.breakers.register(settings, Instant::now());
    let saved = shared.store.load(&s.name)?;
    if let Some(snapshot) = &saved.breaker {
        breaker.restore(Instant::now(), snapshot);
        tracing::info!(service = %s.name, state = %snapshot.state, "breaker state restored");
    }
    if !b.enabled {
        breaker.force(Instant::now(), Force::Disabled);
    } else if breaker.state(Instant::now()) == State::Disabled {
        // Disabled in the saved state but enabled in the config now: the config wins.
        breaker.force(Instant::now(), Force::Auto);
    }
    // Transitions caused by restoring are not news: no recovery, no trip count.
    while changes.try_recv().is_some() {}
    let series = shared.metrics.register_service(&s.name);
    series.set_breaker_state(breaker.state(Instant::now()).metric_value());
    series.set_gave_up(saved.gave_up);
    let handle = ServiceHandle {
        config: s.clone(),
        breaker,
        trip_policy,
        process: process.or_else(|| s.process.clone().map(|p| Arc::new(ManagedProcess::new(s.name.clone(), p)))),
        probe: Probe::new(&s.name, &s.probe, &shared.client),
        backoff: Mutex::new((s.backoff.map(Backoff::new), SmallRng::from_os_rng())),
        recovering: AtomicBool::new(false),
        slow: AtomicBool::new(false),
        last_check: Mutex::new(None),
        restarts: Mutex::new(RestartBook {
            total: saved.restarts_total,
            recent_ms: saved.recent_restarts_ms.into_iter().collect(),
            gave_up: saved.gave_up,
        }),
        recovery,
        deciding: AtomicBool::new(false),
        decisions: AtomicU32::new(0),
        failures: Mutex::new(VecDeque::new()),
        window: Mutex::new(CheckWindow::default()),
        series,
    };
    // Level alerts restored from the store follow the restored state: still open (or given up) keeps them, anything
    // else clears them.
    let labels = service_label(&s.name);
    if handle.breaker.state(Instant::now()) == State::Open {
        shared.alerts.raise(
            Source::BreakerOpen,
            labels.clone(),
            label_set([("summary", "open when aegis-host started")]),
        );
    } else {
        shared.alerts.clear(Source::BreakerOpen, &labels);
    }
    if saved.gave_up {
        shared.alerts.raise(Source::GaveUp, labels.clone(), label_set([("summary", "restart limit reached")]));
    } else {
        shared.alerts.clear(Source::GaveUp, &labels);
    }
    if shared.anomaly_enabled {
        let info = ServiceInfo { name: s.name.clone(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() };
        shared.anomaly.lock().unwrap_or_else(|p| p.into_inner()).bind(&info, &shared.plugins);
    }
    Ok((Arc::new(handle), changes))
}

#[tracing::instrument(skip_all, fields(service = %handle.config.name))]
async fn run_service(
    handle: Arc<ServiceHandle>,
    shared: Arc<Shared>,
    changes: Arc<Transitions>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = handle.config.interval;
    // A random phase spreads thousands of services over the interval instead of probing them all at once; after
    // it the ticks keep a fixed period, however long each check takes (no drift).
    let phase = {
        use rand::Rng;
        let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(SmallRng::from_os_rng().random_range(0..=nanos))
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(
        endpoint = %handle.config.endpoint,
        every = %humantime::format_duration(interval),
        trip_policy = %handle.trip_policy,
        on_failure = handle.config.on_failure.as_str(),
        "supervising"
    );
    loop {
        tokio::select! {
            _ = ticker.tick() => check_once(&handle, &shared, &changes, &stop).await,
            t = changes.recv() => on_transition(&handle, &shared, t, &stop),
            _ = stop.changed() => break,
        }
    }
}

/// Handles the transitions the breaker reported so far, so the log reads in the order things happened.
fn drain(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, changes: &Transitions, stop: &watch::Receiver<bool>) {
    while let Some(t) = changes.try_recv() {
        on_transition(handle, shared, t, stop);
    }
}

async fn check_once(
    handle: &Arc<ServiceHandle>,
    shared: &Arc<Shared>,
    changes: &Transitions,
    stop: &watch::Receiver<bool>,
) {
    let name = handle.config.name.as_str();
    // The check runs through the manager's breaker: admission, the outcome and its duration, the lifetime counters.
    // The trip predicate runs inside the recording; a plugin call is bounded by its epoch deadline. The slot is taken
    // before the breaker times the check, so waiting for it is not counted as the check's latency.
    let slot = shared.lanes.admit(handle.slow.load(Ordering::Relaxed)).await;
    let mut trial = false;
    let checked = shared
        .breakers
        .execute_async(name, &Instant::now, || async {
            // Admitted: report a half-open transition before the check's own log lines.
            drain(handle, shared, changes, stop);
            trial = handle.breaker.state(Instant::now()) == State::HalfOpen;
            // Boxed: the probe's future (an HTTP request is several KiB) then takes memory only while a check is in
            // flight, instead of being part of every service task's state between checks.
            let check = handle.probe.check_with(handle.config.timeout, handle.config.retries, Some(&shared.retry));
            let (result, slow) = shared.lanes.run(slot, Box::pin(check)).await;
            handle.slow.store(slow, Ordering::Relaxed);
            if result.success { Ok(result) } else { Err(result) }
        })
        .await;
    let result = match checked {
        Ok(result) | Err(CallError::Inner(result)) => result,
        Err(rejected) => {
            drain(handle, shared, changes, stop);
            handle.series.rejected();
            let why = if matches!(rejected, CallError::TooManyRequests) { "a trial is running" } else { "open" };
            tracing::debug!("check skipped: the breaker is {why}");
            return;
        }
    };
    handle.series.checked(result.success, result.latency);
    let latency_ms = result.latency.as_secs_f64() * 1000.0;
    if result.success && trial {
        tracing::info!(latency_ms = format_args!("{latency_ms:.1}"), "probe ok (half-open trial): {}", result.detail);
    } else if result.success {
        // Debug: with thousands of services a line per healthy check would drown everything else.
        tracing::debug!(latency_ms = format_args!("{latency_ms:.1}"), "probe ok: {}", result.detail);
    } else {
        tracing::warn!(
            latency_ms = format_args!("{latency_ms:.1}"),
            attempts = result.attempts,
            "probe failed: {}",
            result.detail
        );
    }
    drain(handle, shared, changes, stop);
    let disabled = handle.breaker.state(Instant::now()) == State::Disabled;
    *handle.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
    handle.window.lock().unwrap_or_else(|p| p.into_inner()).record(result.success, latency_ms);
    if !result.success {
        let mut failures = handle.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() == FAILURE_HISTORY {
            failures.pop_front();
        }
        failures.push_back(Failure { at_ms: unix_ms(), detail: result.detail.clone() });
    }
    if disabled && !result.success {
        start_recovery(handle, shared, &result.detail, stop);
    }
}

fn on_transition(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, t: Transition, stop: &watch::Receiver<bool>) {
    let name = handle.config.name.as_str();
    handle.series.set_breaker_state(t.to.metric_value());
    handle.persist_breaker(shared);
    let kind = match t.to {
        State::Open => "breaker-opened",
        State::Closed => "breaker-closed",
        State::HalfOpen => "breaker-half-open",
        State::ForcedOpen | State::ForcedClosed | State::Disabled => "breaker-forced",
    };
    shared.event(name, kind, &format!("{} -> {}: {}", t.from, t.to, t.reason));
    match t.to {
        State::Open => shared.alerts.raise(
            Source::BreakerOpen,
            service_label(name),
            label_set([
                ("summary", format!("circuit breaker of {name} opened")),
                ("description", t.reason.clone()),
                ("endpoint", handle.config.endpoint.clone()),
            ]),
        ),
        State::Closed | State::ForcedClosed | State::Disabled => {
            shared.alerts.clear(Source::BreakerOpen, &service_label(name));
        }
        State::HalfOpen | State::ForcedOpen => {}
    }
    match t.to {
        State::Open => {
            tracing::warn!(from = %t.from, "circuit breaker OPEN: {}", t.reason);
            if t.from == State::Closed {
                shared.metrics.breaker_trips.with_label_values(&[name, &handle.trip_policy]).inc();
            }
            notify_if_configured(handle, shared, "breaker-opened", t.to, &t.reason);
            start_recovery(handle, shared, &t.reason, stop);
        }
        State::Closed if t.from == State::HalfOpen => {
            handle.decisions.store(0, Ordering::Release);
            tracing::info!("circuit breaker CLOSED: service recovered ({})", t.reason);
            notify_if_configured(handle, shared, "breaker-closed", t.to, &t.reason);
        }
        _ => tracing::info!(from = %t.from, "circuit breaker {}: {}", t.to.as_str().to_uppercase(), t.reason),
    }
}

fn fixed_action(on_failure: OnFailure) -> RecoveryAction {
    match on_failure {
        OnFailure::Restart => RecoveryAction::Restart,
        OnFailure::Notify => RecoveryAction::Notify(None),
        OnFailure::Ignore => RecoveryAction::Ignore,
    }
}

/// Recovers a failing service: by its recovery-strategy plugin's decision when it has one, else by `onFailure`.
fn start_recovery(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, reason: &str, stop: &watch::Receiver<bool>) {
    match &handle.recovery {
        None => match handle.config.on_failure {
            OnFailure::Ignore => tracing::info!("onFailure is `ignore`: no action ({reason})"),
            // The breaker-opened notification was sent with the transition: that is the whole action.
            OnFailure::Notify => tracing::info!("onFailure is `notify`: no restart ({reason})"),
            OnFailure::Restart => restart_after_backoff(handle, shared, stop),
        },
        Some((strategy, plugin)) => decide_recovery(handle, shared, Arc::clone(strategy), plugin.clone(), stop),
    }
}

/// Asks the strategy (on a blocking thread: a plugin call may take up to its deadline) and acts on the answer. One
/// decision at a time per service; `wait` asks again later if the service has not recovered by then.
fn decide_recovery(
    handle: &Arc<ServiceHandle>,
    shared: &Arc<Shared>,
    strategy: Arc<dyn RecoveryStrategy>,
    plugin: String,
    stop: &watch::Receiver<bool>,
) {
    if handle.deciding.swap(true, Ordering::AcqRel) {
        tracing::debug!("a recovery decision is already under way");
        return;
    }
    let (handle, shared, mut stop) = (Arc::clone(handle), Arc::clone(shared), stop.clone());
    tokio::spawn(async move {
        let name = handle.config.name.clone();
        let attempt = handle.decisions.fetch_add(1, Ordering::AcqRel);
        let history: Vec<Failure> = handle.failures.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let decided = tokio::task::spawn_blocking(move || strategy.decide(&history, attempt)).await;
        let action = decided.unwrap_or_else(|e| {
            tracing::error!(service = %name, "recovery strategy task failed: {e}; using onFailure");
            fixed_action(handle.config.on_failure)
        });
        tracing::info!(service = %name, plugin = %plugin, attempt, ?action, "recovery strategy decided");
        shared.event(&name, "recovery-decision", &format!("{plugin}: {action:?} (attempt {attempt})"));
        let wait = match action {
            RecoveryAction::Restart => {
                restart_after_backoff(&handle, &shared, &stop);
                None
            }
            RecoveryAction::Notify(message) => {
                let message = message.unwrap_or_else(|| format!("{name} is failing"));
                tracing::warn!(service = %name, "recovery strategy asks to notify: {message}");
                let state = handle.breaker.state(Instant::now());
                notify_if_configured(&handle, &shared, "recovery-notify", state, &message);
                None
            }
            RecoveryAction::Ignore => None,
            RecoveryAction::Wait(d) => Some(d),
        };
        let Some(wait) = wait else {
            handle.deciding.store(false, Ordering::Release);
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {
                handle.deciding.store(false, Ordering::Release);
                return;
            }
        }
        handle.deciding.store(false, Ordering::Release);
        if !is_passing(handle.breaker.state(Instant::now())) {
            start_recovery(&handle, &shared, "still failing after the strategy's wait", &stop);
        }
    });
}

/// Whether the breaker lets checks through as healthy.
fn is_passing(state: State) -> bool {
    matches!(state, State::Closed | State::ForcedClosed)
}

/// Runs the restart once, after its backoff delay. At most one restart is pending per service.
fn restart_after_backoff(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, stop: &watch::Receiver<bool>) {
    if handle.restarts().gave_up {
        tracing::debug!("gave up restarting; waiting for an operator reset");
        return;
    }
    if handle.recovering.swap(true, Ordering::AcqRel) {
        tracing::debug!("restart already pending");
        return;
    }
    if let Some(message) = restart_limit_reached(handle, shared) {
        handle.recovering.store(false, Ordering::Release);
        tracing::error!("{message}");
        shared.event(&handle.config.name, "gave-up", &message);
        shared.alerts.raise(
            Source::GaveUp,
            service_label(&handle.config.name),
            label_set([
                ("summary", format!("gave up restarting {}", handle.config.name)),
                ("description", message.clone()),
            ]),
        );
        notify_if_configured(handle, shared, "gave-up", State::Open, &message);
        return;
    }
    let (delay, attempt) = handle.next_delay();
    tracing::warn!(attempt, "restarting in {}", humantime::format_duration(round_ms(delay)));
    let handle = Arc::clone(handle);
    let shared = Arc::clone(shared);
    let mut stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
        // Stopping (shutdown, reload or removal): a pending restart is cancelled. One already running when the stop
        // comes finishes, but its process is closed by then and starts nothing new.
        if *stop.borrow() {
            handle.recovering.store(false, Ordering::Release);
            return;
        }
        let name = handle.config.name.as_str();
        let result = action::restart(&handle.config, handle.process.as_ref()).await;
        let label = match &result {
            Ok(RestartOutcome::Respawned { pid }) => {
                tracing::warn!(service = name, pid, attempt, "restarted: process respawned");
                "success"
            }
            Ok(RestartOutcome::CommandSucceeded { output }) => {
                tracing::warn!(service = name, attempt, "restarted: restart command succeeded: {output}");
                "success"
            }
            Ok(RestartOutcome::NothingToRestart) => {
                tracing::error!(service = name, "restart requested, but the service has no process or restart command");
                "skipped"
            }
            Err(e) => {
                tracing::error!(service = name, attempt, "restart failed: {e}");
                "failure"
            }
        };
        shared.metrics.restarts.with_label_values(&[name, label]).inc();
        match &result {
            Ok(RestartOutcome::NothingToRestart) => {}
            Ok(outcome) => {
                let message = format!("attempt {attempt}: {outcome}");
                shared.event(name, "restart", &message);
                notify_if_configured(&handle, &shared, "restarted", handle.breaker.state(Instant::now()), &message);
            }
            Err(e) => {
                shared.event(name, "restart-failed", &format!("attempt {attempt}: {e}"));
            }
        }
        if !matches!(result, Ok(RestartOutcome::NothingToRestart)) {
            let mut book = handle.restarts();
            book.total += 1;
            book.recent_ms.push_back(unix_ms_i64());
            shared.save_restarts(name, &book);
        }
        handle.recovering.store(false, Ordering::Release);
    });
}

/// `Some(message)` (and the give-up recorded) when the restart limit forbids another restart.
fn restart_limit_reached(handle: &ServiceHandle, shared: &Shared) -> Option<String> {
    let limit = handle.config.restart_limit?;
    let mut book = handle.restarts();
    let horizon = unix_ms_i64() - i64::try_from(limit.interval.as_millis()).unwrap_or(i64::MAX);
    while book.recent_ms.front().is_some_and(|&t| t < horizon) {
        book.recent_ms.pop_front();
    }
    if book.recent_ms.len() < limit.burst as usize {
        return None;
    }
    book.gave_up = true;
    shared.save_restarts(&handle.config.name, &book);
    handle.series.set_gave_up(true);
    Some(format!(
        "gave up: {} restarts within {}; reset the breaker to resume",
        book.recent_ms.len(),
        humantime::format_duration(limit.interval)
    ))
}

/// Sends a webhook notification when the service has a webhook (its own or the top-level one), whatever its
/// `onFailure`: operators want to hear about openings, restarts and recoveries of restarted services too.
fn notify_if_configured(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, event: &str, state: State, reason: &str) {
    let Some(url) = handle.config.notify_webhook.clone() else {
        return;
    };
    let body = notify::Notification::new(&handle.config.name, &handle.config.endpoint, event, state.as_str(), reason);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let result = notify::send(&shared.client, &url, &body).await;
        let label = if result.is_ok() { "success" } else { "failure" };
        shared.metrics.notifications.with_label_values(&[&body.service, label]).inc();
        let (kind, message) = match &result {
            Ok(()) => ("notified", format!("{} to {url}", body.event)),
            Err(e) => ("notify-failed", format!("{}: {e}", body.event)),
        };
        shared.event(&body.service, kind, &message);
        match result {
            Ok(()) => tracing::info!(service = %body.service, event = %body.event, "notified {url}"),
            Err(e) => tracing::error!(service = %body.service, event = %body.event, "notification failed: {e}"),
        }
    });
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
