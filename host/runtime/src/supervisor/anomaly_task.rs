//! Anomaly detection as the supervisor runs it: the detector lives in [`Shared`] (its series outlive a reload);
//! this file starts the task that feeds it every `detection_interval`, and on a reload rebinds the detector and
//! restarts, starts or stops that task. The detection itself is [`crate::anomaly`]'s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aegis_plugin::ServiceInfo;
use tokio::sync::watch;

use crate::alerts::Source;
use crate::anomaly::LineSource;
use crate::config::AnomalyConfig;
use crate::state::{ServiceMap, Shared};

/// The running detection task, if detection is enabled.
pub(super) struct AnomalyTask {
    shared: Arc<Shared>,
    registry: ServiceMap,
    lines: LineSource,
    running: Option<Running>,
}

struct Running {
    interval: Duration,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AnomalyTask {
    /// Starts detecting as `config` says over the services of `registry` (the services were bound when built).
    pub(super) fn start(
        shared: &Arc<Shared>,
        registry: &ServiceMap,
        lines: LineSource,
        config: &AnomalyConfig,
    ) -> AnomalyTask {
        let mut task = AnomalyTask { shared: Arc::clone(shared), registry: Arc::clone(registry), lines, running: None };
        if config.enabled {
            task.spawn(config.interval);
        }
        task
    }

    fn spawn(&mut self, interval: Duration) {
        let services = Arc::clone(&self.registry);
        let windows: crate::anomaly::WindowSource = Arc::new(move || {
            let handles: Vec<_> = services.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
            handles.iter().map(|h| (h.config.name.to_string(), h.take_window())).collect()
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(crate::anomaly::run(
            Arc::clone(&self.shared.anomaly),
            Arc::clone(&self.shared.alerts),
            self.shared.metrics.clone(),
            windows,
            Arc::clone(&self.lines),
            interval,
            stop_rx,
        ));
        self.running = Some(Running { interval, stop, task });
    }

    /// Applies a reloaded `anomaly_detection:` section to `services` (every service running after the reload):
    /// rebinds their scorers keeping the learnt series, and starts, restarts (a new interval) or stops the task.
    /// Switched off: its alerts are resolved and its scores no longer exported.
    pub(super) async fn apply(&mut self, config: &AnomalyConfig, services: &[ServiceInfo]) {
        self.shared.anomaly_enabled.store(config.enabled, Ordering::Relaxed);
        {
            let mut detector = self.shared.anomaly.lock().unwrap_or_else(|p| p.into_inner());
            detector.reconfigure(config.clone(), services, &self.shared.plugins);
        }
        let interval_changed = self.running.as_ref().is_some_and(|r| r.interval != config.interval);
        if !config.enabled || interval_changed {
            self.stop_task().await;
        }
        if !config.enabled {
            self.shared.alerts.clear_all(Source::Anomaly);
            self.shared.metrics.anomaly_score.reset();
        } else if self.running.is_none() {
            self.spawn(config.interval);
        }
    }

    async fn stop_task(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }

    /// Stops the task and waits for it.
    pub(super) async fn stop(mut self) {
        self.stop_task().await;
    }
}
