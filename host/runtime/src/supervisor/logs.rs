//! Log monitoring as the supervisor runs it: starting the tailers with the built-in patterns and log-rule plugins,
//! and turning their matches into metrics, (rate-limited) events and log-match alerts. The tailing and matching
//! themselves are [`crate::logs`]'; this file must not read files.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aegis_core::alerting::label_set;
use aegis_core::policy::Severity;
use tokio::sync::{mpsc, watch};

use crate::binding::log_binding;
use crate::config::LogsConfig;
use crate::logs::{LineCounts, LogMonitor, RuleSet};
use crate::state::Shared;
use crate::store::NO_SERVICE;

/// Log monitoring as the supervisor runs it: nothing while `logs:` is disabled or names no file, else a monitor and
/// the task consuming its matches. A reload changes it in place ([`LogMonitoring::apply`]), so files followed before
/// and after keep their positions.
pub(super) struct LogMonitoring {
    shared: Arc<Shared>,
    running: Option<Running>,
    /// The running monitor's line counts, for the anomaly task (which outlives a monitor stopped by a reload).
    counts: Arc<RwLock<Option<Arc<LineCounts>>>>,
}

struct Running {
    monitor: LogMonitor,
    consumer: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl LogMonitoring {
    /// Starts monitoring as `config` says.
    pub(super) fn start(shared: &Arc<Shared>, config: &LogsConfig) -> LogMonitoring {
        let mut monitoring = LogMonitoring { shared: Arc::clone(shared), running: None, counts: Arc::default() };
        if let Err(e) = monitoring.apply(config) {
            tracing::error!("log monitoring disabled: {e}");
        }
        monitoring
    }

    /// Monitors as `config` says from now on: starts, reconfigures (tailer positions kept) or stops the monitor.
    /// On error (the rules do not compile) what ran before goes on.
    pub(super) fn apply(&mut self, config: &LogsConfig) -> Result<(), String> {
        if !config.enabled || config.settings.files.is_empty() {
            if let Some(running) = self.running.take() {
                tracing::info!("log monitoring stopped");
                let _ = running.stop.send(true);
                *self.counts.write().unwrap_or_else(|p| p.into_inner()) = None;
            }
            return Ok(());
        }
        let rules = Arc::new(self.rules(config)?);
        let settings = &config.settings;
        match &self.running {
            Some(running) => running.monitor.reconfigure(settings.clone(), rules),
            None => {
                let (stop, stop_rx) = watch::channel(false);
                let (sink, matches) = mpsc::channel(1024);
                let monitor = crate::logs::spawn(settings.clone(), rules, sink, stop_rx.clone());
                let counts = Arc::clone(&monitor.counts);
                let consumer =
                    tokio::spawn(consume_log_matches(Arc::clone(&self.shared), matches, Arc::clone(&counts), stop_rx));
                *self.counts.write().unwrap_or_else(|p| p.into_inner()) = Some(counts);
                self.running = Some(Running { monitor, consumer, stop });
            }
        }
        tracing::info!(files = settings.files.len(), patterns = settings.patterns.len(), "tailing logs");
        Ok(())
    }

    /// The built-in patterns plus the log-rule plugins. A quarantined or failing plugin matches nothing rather
    /// than everything.
    fn rules(&self, config: &LogsConfig) -> Result<RuleSet, String> {
        let mut rules = RuleSet::new(&config.settings.patterns).map_err(|e| e.to_string())?;
        for name in &config.plugins {
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
        Ok(rules)
    }

    /// Lines read per service with log files, for throughput anomalies; `None` for a service without any.
    pub(super) fn line_source(&self) -> crate::anomaly::LineSource {
        let counts = Arc::clone(&self.counts);
        Arc::new(move |service: &str| {
            counts.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|c| c.get(service))
        })
    }

    /// Stops the monitor and waits for its tasks.
    pub(super) async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(true);
            let _ = running.monitor.task.await;
            let _ = running.consumer.await;
        }
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
        let at_ms = m.at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        shared.history.log_match(&service, &m.rule, i64::try_from(at_ms).unwrap_or(i64::MAX));
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
