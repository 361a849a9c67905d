//! The supervisor: probes each service on its interval (one scheduler for all of them, a task per check in flight),
//! feeds results into the service's breaker, and runs the recovery action (spaced by the backoff) when the breaker opens.
//!
//! While a breaker is open the service is not probed; after `resetTimeout` the breaker lets one probe through
//! (half-open), and `successThreshold` successes in a row close it again. A disabled breaker never opens: every
//! failed check triggers the recovery action directly, still spaced by the backoff. After `restartLimit.burst`
//! restarts within `restartLimit.interval` Aegis gives up on the service (an event, a metric, a notification if a
//! webhook is configured) until an operator resets its breaker.
//!
//! Breaker states, restart counters and events go to the store as they happen and are restored at start.
//!
//! This file owns the [`Supervisor`]: building the shared state, starting and stopping the services, the background
//! tasks beside them, and reloads. A service's life reads, one file each, `schedule` → `probe_loop` → `transitions`
//! → `recovery` (with `notify` for webhooks); `build` turns a service's config into its handle, `plugins`, `logs`
//! and `anomaly_task` run the plugin-directory, log and detection tasks (the last two change in place on a reload),
//! and `cluster` is what cluster mode means for the services (taking one over, following the owner, forwarded
//! commands). Calls go down that list only: recovery never calls back into transitions or the probe loop. The shared
//! state itself lives in [`crate::state`], which the admin API and alerting use without knowing this module.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aegis_core::{Manager, ManagerConfig};
use aegis_plugin::{PluginEvent, PluginHost};
use tokio::sync::{mpsc, watch};

use self::anomaly_task::AnomalyTask;
use self::build::build_service;
use self::logs::LogMonitoring;
use self::plugins::{record_plugin_events, reload_plugins, watch_plugins};
use self::probe_loop::{Ownership, ServiceJob};
use self::schedule::{Scheduler, Slot};
use self::stop::StopSwitch;
use self::transitions::{Transitions, Watcher};
use crate::alerts::{AlertContext, Alerting};
use crate::anomaly::AnomalyDetector;
use crate::config::{Config, ServiceConfig};
use crate::error::RuntimeError;
use crate::lanes::CheckLanes;
use crate::metrics::Metrics;
use crate::probe::RetryPolicy;
use crate::process::STOP_GRACE;
use crate::reload::{ReloadRequest, ReloadRequests, ReloadSummary};
use crate::state::{ServiceHandle, ServiceMap, Shared};
use crate::store::{Accounted, StateStore, Store};
use crate::systemd::Notifier;

mod anomaly_task;
mod build;
mod cluster;
mod logs;
mod notify;
mod plugins;
mod probe_loop;
mod recovery;
mod schedule;
mod shadow;
mod stop;
mod transitions;

pub use self::build::breaker_settings;

/// A validated config turned into running parts; [`Supervisor::run`] starts them.
#[derive(Debug)]
pub struct Supervisor {
    config: Config,
    shared: Arc<Shared>,
    services: Vec<(Arc<ServiceHandle>, Arc<Transitions>)>,
    /// Plugin quarantines and releases, recorded as events by a task of [`Self::run`].
    plugin_events: Option<mpsc::Receiver<PluginEvent>>,
    /// Reloads asked for by the admin API, served by the loop of [`Self::run`] like SIGHUP.
    reload_requests: Option<mpsc::Receiver<ReloadRequest>>,
}

/// Longest wait for Redis at start before the services start anyway (watching all, acting on none).
const CLUSTER_JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
            .user_agent(crate::probe::USER_AGENT)
            .build()
            .map_err(|e| RuntimeError::HttpClient(crate::probe::error_chain(&e)))?;
        let metrics = Metrics::new()?;
        let store: Arc<dyn StateStore> = Arc::new(Accounted::new(
            Arc::new(Store::open(&config.storage_path)?),
            metrics.storage_errors.clone(),
            metrics.storage_dropped.clone(),
        ));
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
        let alerts = Alerting::new(config.alerting.clone(), store.as_ref(), &plugins);
        let history = crate::history::Recorder::start(
            &config.storage_path,
            &config.history,
            metrics.storage_dropped.with_label_values(&["history"]),
            metrics.storage_errors.with_label_values(&["history"]),
        );
        let anomaly = Mutex::new(AnomalyDetector::new(config.anomaly.clone()).recording(history.clone()));
        let lanes = CheckLanes::new(
            config.max_concurrent_checks,
            metrics.checks_in_flight.with_label_values(&["quick"]),
            metrics.checks_in_flight.with_label_values(&["slow"]),
        );
        metrics.set_per_service_latency(config.per_service_latency);
        let cluster = match &config.cluster {
            Some(c) => {
                let cluster = crate::cluster::Cluster::new(c.clone(), &metrics)?;
                let owner = Arc::clone(&cluster);
                metrics.set_exported(Arc::new(move |service: &str| owner.owns(service)));
                Some(cluster)
            }
            None => None,
        };
        let (reload, reload_requests) = ReloadRequests::channel();
        let shared = Arc::new(Shared {
            metrics,
            client,
            plugins,
            store,
            breakers,
            retry,
            alerts: Arc::new(alerts),
            anomaly: Arc::new(anomaly),
            anomaly_enabled: config.anomaly.enabled.into(),
            lanes,
            reload,
            stream: crate::state::Stream::default(),
            cluster,
            history,
        });
        let mut config = config;
        // Each service's settings live in its handle from now on; the supervisor keeps the rest of the config.
        let services = std::mem::take(&mut config.services)
            .into_iter()
            .map(|s| build_service(&shared, &s, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Supervisor {
            config,
            shared,
            services,
            plugin_events: Some(plugin_events),
            reload_requests: Some(reload_requests),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn handles(&self) -> Vec<Arc<ServiceHandle>> {
        self.services.iter().map(|(h, _)| Arc::clone(h)).collect()
    }

    /// Runs the admin server and every service until `shutdown` resolves, then stops supervised processes. SIGHUP
    /// and `POST /api/v1/reload` reload the config file: added, removed and changed services (the others keep
    /// running untouched), plugins, and the `logs:`, `anomaly_detection:` and `alerting:` sections, changed in place
    /// (alerts, the outbox and the tailers' positions stay). Admin, storage and cluster settings wait for a restart.
    /// An invalid file is refused and the running config kept. Under systemd (`NOTIFY_SOCKET`) the loop reports
    /// readiness, reloads, shutdown and watchdog pings (see [`crate::systemd`]).
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
            cluster: self.shared.cluster.clone(),
            store: Arc::clone(&self.shared.store),
            metrics: self.shared.metrics.clone(),
            client: self.shared.client.clone(),
        });
        let delivery = match &self.shared.cluster {
            Some(cluster) => {
                self.shared.alerts.share_with_cluster();
                tokio::spawn(crate::alerts::run_cluster_delivery(
                    Arc::clone(&alerting),
                    Arc::clone(cluster),
                    tasks_stop_rx.clone(),
                ))
            }
            None => tokio::spawn(crate::alerts::run_delivery(Arc::clone(&alerting), tasks_stop_rx.clone())),
        };
        let mut tasks = vec![tokio::spawn(crate::alerts::run_evaluation(alerting, tasks_stop_rx.clone())), delivery];
        if let Some(events) = self.plugin_events.take() {
            tasks.push(tokio::spawn(record_plugin_events(Arc::clone(&self.shared), events, tasks_stop_rx.clone())));
        }
        if let Some(every) = self.config.plugins.watch {
            let dir = self.config.plugins.dir.clone();
            tasks.push(tokio::spawn(watch_plugins(Arc::clone(&self.shared), dir, every, tasks_stop_rx.clone())));
        }
        // Both change in place with a reload.
        let logs = LogMonitoring::start(&self.shared, &self.config.logs);
        let anomaly = AnomalyTask::start(&self.shared, &registry, logs.line_source(), &self.config.anomaly);
        let mut sections = Sections { logs, anomaly };

        // Cluster mode: join before the services start, so that each starts knowing whether it is this replica's.
        if let Some(cluster) = &self.shared.cluster {
            let names: BTreeMap<Arc<str>, Arc<ServiceHandle>> =
                self.services.iter().map(|(h, _)| (h.config.name.clone(), Arc::clone(h))).collect();
            *registry.write().unwrap_or_else(|p| p.into_inner()) = names;
            let replica =
                Arc::new(cluster::Replica { shared: Arc::clone(&self.shared), registry: Arc::clone(&registry) });
            cluster.join(replica.as_ref(), CLUSTER_JOIN_WAIT).await;
            tasks.push(tokio::spawn(Arc::clone(cluster).run(replica, tasks_stop_rx.clone())));
        }
        let scheduler = Scheduler::start();
        let mut running = BTreeMap::new();
        for (handle, changes) in std::mem::take(&mut self.services) {
            running.insert(handle.config.name.clone(), start_service(&self.shared, &scheduler, handle, changes).await);
        }
        publish(&registry, &running);
        // The SIGHUP handler is in place before READY=1: a reload sent right after it must not meet the default
        // action (terminate).
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let notifier = Notifier::from_env();
        notifier.ready();

        let mut requests = self.reload_requests.take();
        // Pinged from this loop, not from a task of its own: a stuck loop stops the pings and systemd notices.
        let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    tracing::info!(config = %self.config.source.display(), "SIGHUP: reloading the config");
                    notifier.reloading();
                    let _ = self.reload(&mut running, &mut sections, &scheduler).await;
                    publish(&registry, &running);
                    notifier.ready();
                }
                Some(request) = async { match requests.as_mut() { Some(r) => r.recv().await, None => None } } => {
                    tracing::info!(config = %self.config.source.display(), "reload requested over the admin API");
                    notifier.reloading();
                    let outcome = self.reload(&mut running, &mut sections, &scheduler).await;
                    publish(&registry, &running);
                    notifier.ready();
                    let _ = request.reply.send(outcome);
                }
                Some(_) = async { match watchdog.as_mut() { Some(w) => Some(w.tick().await), None => None } } => {
                    notifier.watchdog();
                }
            }
        }

        tracing::info!("shutting down");
        notifier.stopping();
        stop_all(std::mem::take(&mut running).into_values(), self.config.stop_children_on_exit).await;
        scheduler.close().await;
        sections.logs.stop().await;
        sections.anomaly.stop().await;
        // What the last second recorded, and the log counts of the running interval.
        self.shared.history.stop();
        let _ = tasks_stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        admin.stop().await;
        Ok(())
    }

    /// Applies the config file again; a file that does not load is refused as a whole with its located error.
    async fn reload(
        &mut self,
        running: &mut BTreeMap<Arc<str>, RunningService>,
        sections: &mut Sections,
        scheduler: &Scheduler<ServiceJob>,
    ) -> Result<ReloadSummary, String> {
        let new = match Config::load(&self.config.source) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, the running config stays: {e}");
                return Err(e.to_string());
            }
        };
        let mut notes = Vec::new();
        if new.admin_address != self.config.admin_address
            || new.storage_path != self.config.storage_path
            || new.admin_token != self.config.admin_token
            || new.cluster != self.config.cluster
            || new.history != self.config.history
        {
            let note = "admin, storage and cluster settings change only with a restart of aegis-host";
            tracing::warn!("{note}");
            notes.push(note.to_owned());
        }
        reload_plugins(&self.shared, new.plugins.dir.clone()).await;
        let wanted: BTreeMap<&str, &ServiceConfig> = new.services.iter().map(|s| (&*s.name, s)).collect();
        let gone: Vec<Arc<str>> = running.keys().filter(|n| !wanted.contains_key(&***n)).cloned().collect();
        let removed = gone.len();
        let stopping: Vec<RunningService> = gone.iter().filter_map(|name| running.remove(name)).collect();
        for name in &gone {
            tracing::info!(service = %name, "removed by reload");
        }
        stop_all(stopping, true).await;
        for name in &gone {
            self.shared.breakers.remove(name);
            self.shared.metrics.remove_service(name);
            self.shared.anomaly.lock().unwrap_or_else(|p| p.into_inner()).unbind(name);
        }
        let (mut added, mut changed) = (0, 0);
        for s in &new.services {
            let old = match running.get(&*s.name) {
                Some(r) if r.handle.config == *s => continue,
                Some(_) => running.remove(&*s.name),
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
                    running.insert(s.name.clone(), start_service(&self.shared, scheduler, handle, changes).await);
                }
                Err(e) => tracing::error!(service = %s.name, "not started after reload: {e}"),
            }
        }
        scheduler.forget_stopped();
        // The other sections after the services, so that anomaly detection binds the services running now. Alert
        // state, the outbox and the tailers' positions stay.
        if new.alerting != self.config.alerting {
            self.shared.alerts.reconfigure(new.alerting.clone(), &self.shared.plugins);
            notes.push("alerting applied".to_owned());
        }
        let mut logs = new.logs.clone();
        if new.logs != self.config.logs {
            match sections.logs.apply(&new.logs) {
                Ok(()) => notes.push("logs applied".to_owned()),
                Err(e) => {
                    tracing::error!("logs not applied, log monitoring goes on as before: {e}");
                    notes.push(format!("logs not applied, log monitoring goes on as before: {e}"));
                    logs = self.config.logs.clone();
                }
            }
        }
        if new.anomaly != self.config.anomaly {
            let services: Vec<_> = running.values().map(|r| build::service_info(&r.handle.config)).collect();
            sections.anomaly.apply(&new.anomaly, &services).await;
            notes.push("anomaly_detection applied".to_owned());
        }
        self.shared.metrics.set_per_service_latency(new.per_service_latency);
        tracing::info!(added, changed, services = running.len(), notes = %notes.join("; "), "config reloaded");
        self.config = Config {
            services: Vec::new(),
            admin_address: self.config.admin_address,
            admin_token: self.config.admin_token.clone(),
            storage_path: self.config.storage_path.clone(),
            history: self.config.history.clone(),
            cluster: self.config.cluster.clone(),
            logs,
            ..new
        };
        Ok(ReloadSummary { added, changed, removed, services: running.len(), notes })
    }
}

/// The background work whose settings a reload changes in place: log monitoring and anomaly detection.
struct Sections {
    logs: LogMonitoring,
    anomaly: AnomalyTask,
}

fn publish(registry: &ServiceMap, running: &BTreeMap<Arc<str>, RunningService>) {
    let map = running.iter().map(|(name, r)| (name.clone(), Arc::clone(&r.handle))).collect();
    *registry.write().unwrap_or_else(|p| p.into_inner()) = map;
}

/// A running service: its slot in the schedule, and the switch its recoveries listen to, whose flipping also takes
/// it out of the schedule.
struct RunningService {
    handle: Arc<ServiceHandle>,
    stop: StopSwitch,
    slot: Arc<Slot<ServiceJob>>,
}

impl RunningService {
    /// Stops the service's checks, waiting for one in flight.
    async fn stop_task(self) -> Arc<ServiceHandle> {
        self.stop.stop();
        self.slot.finished().await;
        Arc::clone(&self.handle)
    }

    /// Stops the checks and then the supervised process (or leaves it running).
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

/// Stops `services` all at once: a service's stop waits for its check in flight and for its process's grace, so one
/// after another N processes that ignore SIGTERM held the host (at shutdown, or a reload removing them) N × 5 s.
async fn stop_all(services: impl IntoIterator<Item = RunningService>, stop_processes: bool) {
    futures_util::future::join_all(services.into_iter().map(|s| s.stop(stop_processes))).await;
}

async fn start_service(
    shared: &Arc<Shared>,
    scheduler: &Scheduler<ServiceJob>,
    handle: Arc<ServiceHandle>,
    changes: Arc<Transitions>,
) -> RunningService {
    if let Some(process) = &handle.process
        && let Err(e) = process.start().await
    {
        tracing::error!(service = %handle.config.name, "{e}");
    }
    // Dropped without `stop_task` (the supervisor's own end), the switch still stops the service.
    let stop = StopSwitch::default();
    let job = ServiceJob {
        handle: Arc::clone(&handle),
        shared: Arc::clone(shared),
        changes,
        stop: stop.listener(),
        owned: Ownership::default(),
    };
    job.started();
    let slot = scheduler.add(job, stop.listener());
    // Transitions from now on are handed over between checks too (the slot starts a task for them).
    let watcher: Arc<dyn Watcher> = Arc::clone(&slot) as Arc<dyn Watcher>;
    slot.job().changes.watch(Arc::downgrade(&watcher));
    RunningService { handle, stop, slot }
}
