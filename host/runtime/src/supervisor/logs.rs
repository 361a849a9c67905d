//! Log monitoring as the supervisor runs it: starting the tailers with the built-in patterns and log-rule plugins,
//! and turning their matches into metrics, (rate-limited) events and log-match alerts. The tailing and matching
//! themselves are [`crate::logs`]'; this file must not read files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::alerting::label_set;
use aegis_core::policy::Severity;
use tokio::sync::{mpsc, watch};

use super::Supervisor;
use crate::binding::log_binding;
use crate::state::Shared;
use crate::store::NO_SERVICE;

impl Supervisor {
    /// Starts tailing the configured log files (built-in patterns plus log-rule plugins) and the task that turns
    /// matches into metrics, events and alerts. Returns the per-service line counts for throughput anomalies.
    pub(super) fn start_logs(
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
