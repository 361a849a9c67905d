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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_core::{
    Backoff, Breaker, CallError, ConsecutiveFailures, Force, Manager, ManagerConfig, Settings, State, StateChange,
    TripPredicate, WindowKind,
};
use aegis_plugin::{PluginHost, ServiceInfo};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::action::{self, RestartOutcome, notify};
use crate::config::{Config, OnFailure, ServiceConfig};
use crate::error::RuntimeError;
use crate::metrics::Metrics;
use crate::probe::{Probe, ProbeResult, RetryPolicy};
use crate::process::{ManagedProcess, STOP_GRACE};
use crate::store::{Event, Store};

/// The policy name reported when the built-in trip predicate decides.
const BUILT_IN: &str = "built-in";

/// A breaker transition, as the service task sees it.
#[derive(Debug, Clone)]
struct Transition {
    from: State,
    to: State,
    reason: String,
}

/// Everything about one supervised service that outlives a single check.
#[derive(Debug)]
pub struct ServiceHandle {
    pub config: ServiceConfig,
    pub breaker: Arc<Breaker>,
    /// `built-in` or the trip plugin's name.
    pub trip_policy: String,
    pub process: Option<Arc<ManagedProcess>>,
    probe: Probe,
    backoff: Mutex<(Option<Backoff>, SmallRng)>,
    recovering: AtomicBool,
    last_check: Mutex<Option<ProbeResult>>,
    restarts: Mutex<RestartBook>,
}

/// Restart bookkeeping for the restart limit; persisted.
#[derive(Debug, Default)]
struct RestartBook {
    total: u64,
    /// Unix-epoch milliseconds of restarts still inside the limit's interval, oldest first.
    recent_ms: VecDeque<i64>,
    gave_up: bool,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ServiceHandle {
    pub fn last_check(&self) -> Option<ProbeResult> {
        self.last_check.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn restarts(&self) -> std::sync::MutexGuard<'_, RestartBook> {
        self.restarts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Total restarts, and whether Aegis gave up on the service.
    pub fn restart_status(&self) -> (u64, bool) {
        let book = self.restarts();
        (book.total, book.gave_up)
    }

    /// Clears a give-up (an operator reset the service's breaker).
    pub fn clear_give_up(&self, shared: &Shared) {
        let mut book = self.restarts();
        if book.gave_up {
            book.gave_up = false;
            book.recent_ms.clear();
            shared.metrics.gave_up.with_label_values(&[&self.config.name]).set(0);
            persist_restarts(shared, &self.config.name, &book);
        }
    }

    /// Saves the breaker's state (after a transition or an operator action).
    pub fn persist_breaker(&self, shared: &Shared) {
        if let Err(e) = shared.store.save_breaker(&self.config.name, &self.breaker.snapshot()) {
            tracing::error!(service = %self.config.name, "{e}");
        }
    }

    /// Delay before the next recovery attempt, and the attempt number.
    fn next_delay(&self) -> (Duration, u32) {
        let mut guard = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let (backoff, rng) = &mut *guard;
        match backoff {
            Some(b) => {
                let delay = b.next_delay(Instant::now(), rng);
                (delay, b.attempt())
            }
            None => (Duration::ZERO, 0),
        }
    }
}

/// State shared by every service task.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub client: reqwest::Client,
    pub plugins: PluginHost,
    pub store: Store,
    /// Every service's breaker by name: checks run through it, and the admin API's health summary, counters and
    /// reset-all come from it. Its in-memory history is off: events are kept in the store.
    pub breakers: Manager,
    /// Spacing and the shared budget of check retries.
    pub retry: RetryPolicy,
}

impl Shared {
    /// Records an event in the store and the log. A store failure is logged, never fatal.
    pub fn event(&self, service: &str, kind: &str, message: &str) -> Option<Event> {
        match self.store.append_event(service, kind, message) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(service, kind, "cannot record event: {e}");
                None
            }
        }
    }
}

fn persist_restarts(shared: &Shared, service: &str, book: &RestartBook) {
    let recent: Vec<i64> = book.recent_ms.iter().copied().collect();
    if let Err(e) = shared.store.save_restarts(service, book.total, &recent, book.gave_up) {
        tracing::error!(service, "{e}");
    }
}

/// A validated config turned into running parts; [`Supervisor::run`] starts them.
#[derive(Debug)]
pub struct Supervisor {
    config: Config,
    shared: Arc<Shared>,
    services: Vec<(Arc<ServiceHandle>, mpsc::UnboundedReceiver<Transition>)>,
}

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
        let plugins = PluginHost::new(config.plugins.limits)?;
        let report = plugins.load_dir(&config.plugins.dir)?;
        for info in &report.loaded {
            tracing::info!(plugin = %info.name, kind = %info.kind, path = %info.path.display(), "plugin loaded");
        }
        for error in &report.failed {
            tracing::error!("plugin skipped: {error}");
        }
        let breakers = Manager::new(ManagerConfig { history: 0, ..ManagerConfig::default() });
        let retry = RetryPolicy::new(config.retry_budget);
        let shared = Arc::new(Shared { metrics, client, plugins, store, breakers, retry });
        let services =
            config.services.iter().map(|s| build_service(&shared, s, None)).collect::<Result<Vec<_>, _>>()?;
        Ok(Supervisor { config, shared, services })
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
        let listener = tokio::net::TcpListener::bind(self.config.admin_address)
            .await
            .map_err(|source| RuntimeError::Bind { address: self.config.admin_address.to_string(), source })?;
        let admin_addr = listener
            .local_addr()
            .map_err(|source| RuntimeError::Bind { address: self.config.admin_address.to_string(), source })?;
        tracing::info!("admin API and metrics on http://{admin_addr}/metrics");
        let registry: ServiceMap = Arc::default();
        let (admin_stop, admin_stop_rx) = watch::channel(false);
        let admin = tokio::spawn(crate::admin::serve(
            listener,
            Arc::clone(&self.shared),
            Arc::clone(&registry),
            self.config.admin_token.clone(),
            admin_stop_rx,
        ));

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
        let _ = admin_stop.send(true);
        let _ = admin.await;
        Ok(())
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
        if new.admin_address != self.config.admin_address
            || new.storage_path != self.config.storage_path
            || new.admin_token != self.config.admin_token
        {
            tracing::warn!("admin and storage settings change only with a restart of aegis-host");
        }
        // Changed plugins are swapped in at their bindings' next call; a broken replacement keeps the old version.
        match self.shared.plugins.reload_dir(&new.plugins.dir) {
            Ok(report) => {
                tracing::info!(
                    added = ?report.added,
                    updated = ?report.updated,
                    removed = ?report.removed,
                    "plugins reloaded"
                );
                for error in &report.failed {
                    tracing::error!("plugin not reloaded: {error}");
                }
            }
            Err(e) => tracing::error!("plugins not reloaded: {e}"),
        }
        let wanted: BTreeMap<&str, &ServiceConfig> = new.services.iter().map(|s| (s.name.as_str(), s)).collect();
        let gone: Vec<String> = running.keys().filter(|n| !wanted.contains_key(n.as_str())).cloned().collect();
        for name in gone {
            if let Some(service) = running.remove(&name) {
                tracing::info!(service = %name, "removed by reload");
                service.stop(true).await;
                self.shared.breakers.remove(&name);
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
                    p.stop(STOP_GRACE).await;
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
            admin_address: self.config.admin_address,
            admin_token: self.config.admin_token.clone(),
            storage_path: self.config.storage_path.clone(),
            ..new
        };
    }
}

/// The services the admin API sees; replaced as a whole on reload.
pub type ServiceMap = Arc<std::sync::RwLock<BTreeMap<String, Arc<ServiceHandle>>>>;

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
                process.stop(STOP_GRACE).await;
            } else if let Some(pid) = process.pid().await {
                tracing::info!(service = %handle.config.name, pid, "leaving the supervised process running");
                process.detach().await;
            }
        }
    }
}

async fn start_service(
    shared: &Arc<Shared>,
    handle: Arc<ServiceHandle>,
    changes: mpsc::UnboundedReceiver<Transition>,
) -> RunningService {
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
) -> Result<(Arc<ServiceHandle>, mpsc::UnboundedReceiver<Transition>), RuntimeError> {
    let b = &s.breaker;
    let built_in: Arc<dyn TripPredicate> = Arc::new(ConsecutiveFailures(b.failure_threshold));
    let (predicate, trip_policy): (Arc<dyn TripPredicate>, String) = match &b.trip_policy {
        None => (Arc::clone(&built_in), BUILT_IN.to_owned()),
        Some(policy) => {
            let info =
                ServiceInfo { name: s.name.clone(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() };
            match shared.plugins.trip_predicate(&policy.plugin, info, policy.config.clone(), Arc::clone(&built_in)) {
                Ok(p) => {
                    tracing::info!(service = %s.name, plugin = %policy.plugin, "trip predicate bound to plugin");
                    (Arc::new(p), policy.plugin.clone())
                }
                Err(e) => {
                    tracing::error!(service = %s.name, "{e}; using the built-in trip predicate");
                    (Arc::clone(&built_in), BUILT_IN.to_owned())
                }
            }
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = Arc::new(move |change: &StateChange| {
        let _ = tx.send(Transition { from: change.from, to: change.to, reason: change.reason.clone() });
    });
    let settings = Settings::new(s.name.clone())
        .failure_threshold(b.failure_threshold)
        .reset_timeout(b.reset_timeout)
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
    while rx.try_recv().is_ok() {}
    shared.metrics.register_service(&s.name);
    shared.metrics.breaker_state.with_label_values(&[&s.name]).set(breaker.state(Instant::now()).metric_value());
    shared.metrics.gave_up.with_label_values(&[&s.name]).set(i64::from(saved.gave_up));
    let handle = ServiceHandle {
        config: s.clone(),
        breaker,
        trip_policy,
        process: process.or_else(|| s.process.clone().map(|p| Arc::new(ManagedProcess::new(s.name.clone(), p)))),
        probe: Probe::new(&s.name, &s.probe, &shared.client),
        backoff: Mutex::new((s.backoff.map(Backoff::new), SmallRng::from_os_rng())),
        recovering: AtomicBool::new(false),
        last_check: Mutex::new(None),
        restarts: Mutex::new(RestartBook {
            total: saved.restarts_total,
            recent_ms: saved.recent_restarts_ms.into_iter().collect(),
            gave_up: saved.gave_up,
        }),
    };
    Ok((Arc::new(handle), rx))
}

#[tracing::instrument(skip_all, fields(service = %handle.config.name))]
async fn run_service(
    handle: Arc<ServiceHandle>,
    shared: Arc<Shared>,
    mut changes: mpsc::UnboundedReceiver<Transition>,
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
            _ = ticker.tick() => check_once(&handle, &shared, &mut changes, &stop).await,
            Some(t) = changes.recv() => on_transition(&handle, &shared, t, &stop),
            _ = stop.changed() => break,
        }
    }
}

/// Handles the transitions the breaker reported so far, so the log reads in the order things happened.
fn drain(
    handle: &Arc<ServiceHandle>,
    shared: &Arc<Shared>,
    changes: &mut mpsc::UnboundedReceiver<Transition>,
    stop: &watch::Receiver<bool>,
) {
    while let Ok(t) = changes.try_recv() {
        on_transition(handle, shared, t, stop);
    }
}

async fn check_once(
    handle: &Arc<ServiceHandle>,
    shared: &Arc<Shared>,
    changes: &mut mpsc::UnboundedReceiver<Transition>,
    stop: &watch::Receiver<bool>,
) {
    let name = handle.config.name.as_str();
    let m = &shared.metrics;
    // The check runs through the manager's breaker: admission, the outcome and its duration, the lifetime counters.
    // The trip predicate runs inside the recording; a plugin call is bounded by its epoch deadline.
    let checked = shared
        .breakers
        .execute_async(name, &Instant::now, || async {
            // Admitted: report a half-open transition before the check's own log lines.
            drain(handle, shared, changes, stop);
            let result =
                handle.probe.check_with(handle.config.timeout, handle.config.retries, Some(&shared.retry)).await;
            if result.success { Ok(result) } else { Err(result) }
        })
        .await;
    let result = match checked {
        Ok(result) | Err(CallError::Inner(result)) => result,
        Err(rejected) => {
            drain(handle, shared, changes, stop);
            m.breaker_requests.with_label_values(&[name, "rejected"]).inc();
            let why = if matches!(rejected, CallError::TooManyRequests) { "a trial is running" } else { "open" };
            tracing::debug!("check skipped: the breaker is {why}");
            return;
        }
    };
    let outcome = if result.success { "success" } else { "failure" };
    m.checks.with_label_values(&[name, outcome]).inc();
    m.breaker_requests.with_label_values(&[name, outcome]).inc();
    m.check_duration.with_label_values(&[name]).observe(result.latency.as_secs_f64());
    m.service_up.with_label_values(&[name]).set(i64::from(result.success));
    let latency_ms = result.latency.as_secs_f64() * 1000.0;
    if result.success {
        tracing::info!(latency_ms = format_args!("{latency_ms:.1}"), "probe ok: {}", result.detail);
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
    if disabled && !result.success {
        start_recovery(handle, shared, &result.detail, stop);
    }
}

fn on_transition(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, t: Transition, stop: &watch::Receiver<bool>) {
    let name = handle.config.name.as_str();
    shared.metrics.breaker_state.with_label_values(&[name]).set(t.to.metric_value());
    handle.persist_breaker(shared);
    let kind = match t.to {
        State::Open => "breaker-opened",
        State::Closed => "breaker-closed",
        State::HalfOpen => "breaker-half-open",
        State::ForcedOpen | State::ForcedClosed | State::Disabled => "breaker-forced",
    };
    shared.event(name, kind, &format!("{} -> {}: {}", t.from, t.to, t.reason));
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
            tracing::info!("circuit breaker CLOSED: service recovered ({})", t.reason);
            notify_if_configured(handle, shared, "breaker-closed", t.to, &t.reason);
        }
        _ => tracing::info!(from = %t.from, "circuit breaker {}: {}", t.to.as_str().to_uppercase(), t.reason),
    }
}

/// Runs the service's recovery action once, after its backoff delay. At most one recovery runs per service.
fn start_recovery(handle: &Arc<ServiceHandle>, shared: &Arc<Shared>, reason: &str, stop: &watch::Receiver<bool>) {
    match handle.config.on_failure {
        OnFailure::Ignore => {
            tracing::info!("onFailure is `ignore`: no action ({reason})");
        }
        // The breaker-opened notification was sent with the transition: that is the whole action.
        OnFailure::Notify => tracing::info!("onFailure is `notify`: no restart ({reason})"),
        OnFailure::Restart => {
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
                    _ = stop.changed() => {
                        handle.recovering.store(false, Ordering::Release);
                        return;
                    }
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
                        tracing::error!(
                            service = name,
                            "restart requested, but the service has no process or restart command"
                        );
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
                        notify_if_configured(
                            &handle,
                            &shared,
                            "restarted",
                            handle.breaker.state(Instant::now()),
                            &message,
                        );
                    }
                    Err(e) => {
                        shared.event(name, "restart-failed", &format!("attempt {attempt}: {e}"));
                    }
                }
                if !matches!(result, Ok(RestartOutcome::NothingToRestart)) {
                    let mut book = handle.restarts();
                    book.total += 1;
                    book.recent_ms.push_back(unix_ms());
                    persist_restarts(&shared, name, &book);
                }
                handle.recovering.store(false, Ordering::Release);
            });
        }
    }
}

/// `Some(message)` (and the give-up recorded) when the restart limit forbids another restart.
fn restart_limit_reached(handle: &ServiceHandle, shared: &Shared) -> Option<String> {
    let limit = handle.config.restart_limit?;
    let mut book = handle.restarts();
    let horizon = unix_ms() - i64::try_from(limit.interval.as_millis()).unwrap_or(i64::MAX);
    while book.recent_ms.front().is_some_and(|&t| t < horizon) {
        book.recent_ms.pop_front();
    }
    if book.recent_ms.len() < limit.burst as usize {
        return None;
    }
    book.gave_up = true;
    persist_restarts(shared, &handle.config.name, &book);
    shared.metrics.gave_up.with_label_values(&[&handle.config.name]).set(1);
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
