//! Anomaly detection (seed 004 `anomaly_detection:`): every `detection_interval` each service's checks of the past
//! interval become one sample per metric — `latency` (mean check latency, ms), `error-rate` (failed ÷ checks) and
//! `throughput` (lines per second in the service's log files) — kept in a history of `history_size` samples and
//! judged by the service's scorers: its static thresholds, the configured statistical detector, or an
//! anomaly-scorer plugin that replaces both. Owns the series and the scorer bindings; the supervisor turns the
//! verdicts into metrics and alerts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use aegis_core::detect::{Ewma, RobustZ, Threshold};
use aegis_core::policy::{Anomaly, AnomalyScorer, MetricSample, ZScore};
use aegis_plugin::{PluginHost, ServiceInfo};

use crate::config::{AnomalyConfig, Detector, Thresholds};

/// The metrics judged, with the names scorers (and plugins, per the WIT contract) see.
pub const METRICS: [&str; 3] = ["latency", "error-rate", "throughput"];

/// What the checks of one interval added up to (reset after every evaluation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckWindow {
    pub checks: u64,
    pub failures: u64,
    pub latency_ms_sum: f64,
}

impl CheckWindow {
    pub fn record(&mut self, success: bool, latency_ms: f64) {
        self.checks += 1;
        self.failures += u64::from(!success);
        self.latency_ms_sum += latency_ms;
    }
}

/// One interval's input for one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub service: String,
    pub checks: CheckWindow,
    /// Log lines per second over the interval, when the service has log files.
    pub throughput: Option<f64>,
}

/// The verdict on one metric of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub service: String,
    pub metric: &'static str,
    /// The newest sample.
    pub value: f64,
    /// The highest score any scorer gave (0 when none judged it anomalous).
    pub score: f64,
    /// `Some` when a scorer judged the newest sample anomalous (the highest-scoring reason).
    pub anomaly: Option<Anomaly>,
}

/// The scorers of one service, and the name to report ("threshold+robust_z", or the plugin's).
struct Scorers {
    by_metric: BTreeMap<&'static str, Vec<Arc<dyn AnomalyScorer>>>,
    source: String,
}

/// Series and scorers of every service.
pub struct AnomalyDetector {
    history: usize,
    series: BTreeMap<(String, &'static str), VecDeque<MetricSample>>,
    scorers: BTreeMap<String, Scorers>,
    config: AnomalyConfig,
    /// Where each sample is recorded (`storage.history`); off unless [`AnomalyDetector::recording`].
    recorder: crate::history::Recorder,
}

impl std::fmt::Debug for AnomalyDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyDetector")
            .field("history", &self.history)
            .field("series", &self.series.len())
            .field("services", &self.scorers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The statistical detector for `metric`. Its noise floor (the smallest spread taken seriously) is in the metric's
/// unit: 1 ms of latency or 1 line/s of throughput, but 1 % of error rate — a floor of 1 would hide every error-rate
/// change.
fn statistical(detector: Detector, metric: &str) -> Option<Arc<dyn AnomalyScorer>> {
    let floor = if metric == "error-rate" { 0.01 } else { 1.0 };
    match detector {
        Detector::None => None,
        Detector::RobustZ => Some(Arc::new(RobustZ { min_mad: floor, ..RobustZ::default() })),
        Detector::Ewma => Some(Arc::new(Ewma { min_deviation: floor, ..Ewma::default() })),
        Detector::ZScore => Some(Arc::new(ZScore { min_sigma: floor, ..ZScore::default() })),
    }
}

fn detector_name(detector: Detector) -> &'static str {
    match detector {
        Detector::None => "none",
        Detector::RobustZ => "robust_z",
        Detector::Ewma => "ewma",
        Detector::ZScore => "zscore",
    }
}

fn threshold(t: &Thresholds, metric: &str) -> Option<Threshold> {
    match metric {
        "latency" => t.latency_ms.map(Threshold::above),
        "error-rate" => t.error_rate.map(Threshold::above),
        "throughput" => t.throughput.map(Threshold::below),
        _ => None,
    }
}

/// The built-in scorers of a service, by metric: a scorer plugin's fallback (while it is not loaded, quarantined, or
/// failing), so each metric keeps its own thresholds and detector.
#[derive(Debug)]
struct BuiltIns(BTreeMap<&'static str, Vec<Arc<dyn AnomalyScorer>>>);

impl AnomalyScorer for BuiltIns {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        let scorers = self.0.get(metric).map(Vec::as_slice).unwrap_or_default();
        scorers.iter().filter_map(|s| s.score(metric, window)).max_by(|a, b| a.score.total_cmp(&b.score))
    }
}

impl AnomalyDetector {
    pub fn new(config: AnomalyConfig) -> Self {
        AnomalyDetector {
            history: config.history,
            series: BTreeMap::new(),
            scorers: BTreeMap::new(),
            config,
            recorder: crate::history::Recorder::off(),
        }
    }

    /// Records every sample it judges in `recorder`.
    pub fn recording(self, recorder: crate::history::Recorder) -> Self {
        AnomalyDetector { recorder, ..self }
    }

    /// Binds the scorers of `service` (again, e.g. after a reload): its thresholds and the statistical detector,
    /// or its anomaly-scorer plugin with those as the plugin's fallback. A plugin that fails to bind is logged and
    /// the built-ins are used.
    pub fn bind(&mut self, service: &ServiceInfo, plugins: &PluginHost) {
        let thresholds = self.config.thresholds.get(&service.name).cloned().unwrap_or_default();
        let mut by_metric: BTreeMap<&'static str, Vec<Arc<dyn AnomalyScorer>>> = BTreeMap::new();
        for metric in METRICS {
            let list = by_metric.entry(metric).or_default();
            if let Some(t) = threshold(&thresholds, metric) {
                list.push(Arc::new(t));
            }
            list.extend(statistical(self.config.detector, metric));
        }
        let mut source = detector_name(self.config.detector).to_owned();
        if let Some(p) = self.config.scorers.get(&service.name) {
            let fallback: Arc<dyn AnomalyScorer> = Arc::new(BuiltIns(by_metric.clone()));
            match plugins.anomaly_scorer(&p.plugin, service.clone(), p.config.clone(), fallback) {
                Ok(scorer) => {
                    crate::binding::log_binding(
                        plugins,
                        "anomaly scorer",
                        &service.name,
                        &p.plugin,
                        scorer.is_loaded(),
                    );
                    let scorer: Arc<dyn AnomalyScorer> = Arc::new(scorer);
                    by_metric = METRICS.iter().map(|m| (*m, vec![Arc::clone(&scorer)])).collect();
                    source = p.plugin.clone();
                }
                Err(e) => tracing::error!(service = %service.name, "{e}; using the built-in anomaly detectors"),
            }
        }
        self.scorers.insert(service.name.clone(), Scorers { by_metric, source });
    }

    /// Applies a reloaded `anomaly_detection:` section: every service in `services` is bound again with the new
    /// thresholds, detector or plugin, and the series learnt so far are kept (cut to the new `history`), so a
    /// changed threshold does not start the learning over. Disabled: everything is forgotten.
    pub fn reconfigure(&mut self, config: AnomalyConfig, services: &[ServiceInfo], plugins: &PluginHost) {
        self.history = config.history;
        for series in self.series.values_mut() {
            while series.len() > self.history {
                series.pop_front();
            }
        }
        self.config = config;
        self.scorers.clear();
        if !self.config.enabled {
            self.series.clear();
            return;
        }
        for service in services {
            self.bind(service, plugins);
        }
        let bound = &self.scorers;
        self.series.retain(|(s, _), _| bound.contains_key(s));
    }

    /// Forgets a removed service.
    pub fn unbind(&mut self, service: &str) {
        self.scorers.remove(service);
        self.series.retain(|(s, _), _| s != service);
    }

    /// The scorers that judge `metric` of `service` (bound by [`Self::bind`]), for `aegis-host replay` to ask
    /// directly; the highest score among their answers is the verdict, as in [`Self::evaluate`].
    pub fn scorers_of(&self, service: &str, metric: &str) -> Vec<Arc<dyn AnomalyScorer>> {
        self.scorers.get(service).and_then(|s| s.by_metric.get(metric)).cloned().unwrap_or_default()
    }

    /// What judges `service` ("robust_z", "ewma", ..., or a plugin name).
    pub fn source(&self, service: &str) -> Option<&str> {
        self.scorers.get(service).map(|s| s.source.as_str())
    }

    /// Adds one interval's samples and judges them. A service without checks in the interval gets no latency or
    /// error-rate sample (nothing was measured), so a paused service is not "anomalously fast".
    /// Plugin calls are made here: run it on a blocking thread.
    pub fn evaluate(&mut self, at_ms: u64, observations: &[Observation]) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        for o in observations {
            let Some(scorers) = self.scorers.get(&o.service) else { continue };
            let c = o.checks;
            let values: [(&'static str, Option<f64>); 3] = [
                ("latency", (c.checks > 0).then(|| c.latency_ms_sum / c.checks as f64)),
                ("error-rate", (c.checks > 0).then(|| c.failures as f64 / c.checks as f64)),
                ("throughput", o.throughput),
            ];
            for (metric, value) in values {
                let Some(value) = value else { continue };
                let series = self.series.entry((o.service.clone(), metric)).or_default();
                if series.len() == self.history {
                    series.pop_front();
                }
                series.push_back(MetricSample { at_ms, value });
                self.recorder.sample(&o.service, i64::try_from(at_ms).unwrap_or(i64::MAX), metric, value);
                let window = series.make_contiguous();
                let mut best: Option<Anomaly> = None;
                for scorer in scorers.by_metric.get(metric).map(Vec::as_slice).unwrap_or_default() {
                    if let Some(a) = scorer.score(metric, window)
                        && best.as_ref().is_none_or(|b| a.score > b.score)
                    {
                        best = Some(a);
                    }
                }
                let score = best.as_ref().map_or(0.0, |a| a.score);
                verdicts.push(Verdict { service: o.service.clone(), metric, value, score, anomaly: best });
            }
        }
        verdicts
    }
}

/// Cumulative log lines read for a service, if it has log files (for `throughput`).
pub type LineSource = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// Each service's name and its checks since the last call, which starts the next window (the supervisor reads them
/// from the services it runs).
pub type WindowSource = Arc<dyn Fn() -> Vec<(String, CheckWindow)> + Send + Sync>;

/// Every `interval`: collects each service's checks (and log lines) of the past interval, judges them on a blocking
/// thread (plugins may be called) and turns the verdicts into `aegis_anomaly_score` and anomaly alerts.
pub async fn run(
    detector: Arc<std::sync::Mutex<AnomalyDetector>>,
    alerts: Arc<crate::alerts::Alerting>,
    metrics: crate::metrics::Metrics,
    windows: WindowSource,
    lines: LineSource,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::alerts::Source;
    use aegis_core::alerting::label_set;

    let mut previous_lines: BTreeMap<String, u64> = BTreeMap::new();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let observations: Vec<Observation> = windows()
            .into_iter()
            .map(|(name, checks)| {
                let throughput = lines(&name).map(|now| {
                    let before = previous_lines.insert(name.clone(), now).unwrap_or(now);
                    now.saturating_sub(before) as f64 / interval.as_secs_f64()
                });
                Observation { service: name, checks, throughput }
            })
            .collect();
        let at_ms = crate::unix_ms();
        let d = Arc::clone(&detector);
        let verdicts = tokio::task::spawn_blocking(move || {
            d.lock().unwrap_or_else(|p| p.into_inner()).evaluate(at_ms, &observations)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!("anomaly evaluation failed: {e}");
            Vec::new()
        });
        for v in verdicts {
            metrics.anomaly_score.with_label_values(&[v.service.as_str(), v.metric]).set(v.score);
            let labels = label_set([("service", v.service.as_str()), ("metric", v.metric)]);
            match &v.anomaly {
                Some(a) => {
                    tracing::warn!(service = %v.service, metric = v.metric, score = a.score, "anomaly: {}", a.reason);
                    let annotations = label_set([
                        ("summary", format!("{} of {} is anomalous", v.metric, v.service)),
                        ("description", a.reason.clone()),
                        ("value", format!("{:.4}", v.value)),
                        ("score", format!("{:.2}", a.score)),
                    ]);
                    alerts.raise(Source::Anomaly, labels, annotations);
                }
                None => alerts.clear(Source::Anomaly, &labels),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginRef;

    fn info(name: &str) -> ServiceInfo {
        ServiceInfo { name: name.into(), kind: "http".into(), endpoint: "http://127.0.0.1:1/".into() }
    }

    fn window(checks: u64, failures: u64, latency_ms: f64) -> CheckWindow {
        CheckWindow { checks, failures, latency_ms_sum: latency_ms * checks as f64 }
    }

    #[test]
    fn static_thresholds_and_the_statistical_detector_judge_each_metric() {
        let mut config = AnomalyConfig { history: 20, ..AnomalyConfig::default() };
        config.thresholds.insert(
            "web".into(),
            Thresholds { latency_ms: Some(500.0), error_rate: Some(0.05), throughput: Some(10.0) },
        );
        let plugins = PluginHost::new(aegis_plugin::SandboxLimits::default()).expect("host");
        let mut d = AnomalyDetector::new(config);
        d.bind(&info("web"), &plugins);
        assert_eq!(d.source("web"), Some("robust_z"));

        // Steady: nothing anomalous.
        let steady = |i: u64| Observation {
            service: "web".into(),
            checks: window(10, 0, 20.0 + (i % 3) as f64),
            throughput: Some(50.0),
        };
        for i in 0..10 {
            let v = d.evaluate(i * 1000, &[steady(i)]);
            assert_eq!(v.len(), 3);
            assert!(v.iter().all(|v| v.anomaly.is_none()), "{v:?}");
        }
        // Slow, failing and quiet at once.
        let bad = Observation { service: "web".into(), checks: window(10, 3, 900.0), throughput: Some(2.0) };
        let v = d.evaluate(11_000, &[bad]);
        let by: BTreeMap<&str, &Verdict> = v.iter().map(|v| (v.metric, v)).collect();
        assert!(by["latency"].anomaly.is_some() && by["latency"].score > 1.0, "{v:?}");
        assert!((by["error-rate"].value - 0.3).abs() < 1e-9 && by["error-rate"].anomaly.is_some());
        assert!(by["throughput"].anomaly.is_some() && by["throughput"].score > 1.0, "{v:?}");

        // The floor is a lower bound: much more throughput than usual is not flagged by the threshold.
        let mut d2 = AnomalyDetector::new(AnomalyConfig {
            detector: Detector::None,
            thresholds: [("web".to_owned(), Thresholds { throughput: Some(10.0), ..Thresholds::default() })].into(),
            ..AnomalyConfig::default()
        });
        d2.bind(&info("web"), &plugins);
        let busy = Observation { service: "web".into(), checks: CheckWindow::default(), throughput: Some(500.0) };
        assert!(d2.evaluate(0, &[busy])[0].anomaly.is_none());
        let quiet = Observation { service: "web".into(), checks: CheckWindow::default(), throughput: Some(2.0) };
        let reason = d2.evaluate(1, &[quiet])[0].anomaly.clone().expect("below the floor").reason;
        assert!(reason.contains("below 10"), "{reason}");

        // No checks in an interval: no latency or error-rate sample at all.
        let idle = Observation { service: "web".into(), checks: CheckWindow::default(), throughput: None };
        assert!(d.evaluate(12_000, &[idle]).is_empty());
    }

    #[test]
    fn history_is_bounded_and_unknown_services_are_skipped() {
        let mut d = AnomalyDetector::new(AnomalyConfig { history: 5, ..AnomalyConfig::default() });
        let plugins = PluginHost::new(aegis_plugin::SandboxLimits::default()).expect("host");
        d.bind(&info("a"), &plugins);
        for i in 0..50 {
            let o = [
                Observation { service: "a".into(), checks: window(1, 0, 10.0), throughput: None },
                Observation { service: "ghost".into(), checks: window(1, 0, 10.0), throughput: None },
            ];
            let v = d.evaluate(i, &o);
            assert!(v.iter().all(|v| v.service == "a"));
        }
        assert!(d.series.values().all(|s| s.len() == 5));
        d.unbind("a");
        assert!(d.series.is_empty());
    }

    #[test]
    fn a_reload_rebinds_every_service_and_keeps_what_was_learnt() {
        let plugins = PluginHost::new(aegis_plugin::SandboxLimits::default()).expect("host");
        let mut d = AnomalyDetector::new(AnomalyConfig { enabled: true, history: 10, ..AnomalyConfig::default() });
        d.bind(&info("web"), &plugins);
        for i in 0..10 {
            d.evaluate(i, &[Observation { service: "web".into(), checks: window(1, 0, 20.0), throughput: None }]);
        }
        // A threshold added by the reload judges at once, with the history learnt before (cut to the new size).
        let mut config =
            AnomalyConfig { enabled: true, history: 4, detector: Detector::None, ..AnomalyConfig::default() };
        config.thresholds.insert("web".into(), Thresholds { latency_ms: Some(100.0), ..Thresholds::default() });
        d.reconfigure(config.clone(), &[info("web"), info("api")], &plugins);
        assert_eq!(d.source("web"), Some("none"));
        assert_eq!(d.source("api"), Some("none"), "a service bound only by the reload");
        assert!(d.series.values().all(|s| s.len() == 4));
        let slow = Observation { service: "web".into(), checks: window(1, 0, 500.0), throughput: None };
        let v = d.evaluate(11, &[slow]);
        assert!(v.iter().any(|v| v.metric == "latency" && v.anomaly.is_some()), "{v:?}");
        // A service no longer given is forgotten; disabling forgets everything.
        d.reconfigure(config.clone(), &[info("api")], &plugins);
        assert_eq!(d.source("web"), None);
        assert!(d.series.keys().all(|(s, _)| s != "web"));
        d.reconfigure(AnomalyConfig { enabled: false, ..config }, &[info("api")], &plugins);
        assert_eq!(d.source("api"), None);
        assert!(d.series.is_empty());
    }

    #[test]
    fn a_missing_scorer_plugin_falls_back_to_the_built_ins() {
        let mut config = AnomalyConfig::default();
        config.scorers.insert("a".into(), PluginRef { plugin: "nope".into(), config: Vec::new() });
        config.thresholds.insert("a".into(), Thresholds { error_rate: Some(0.5), ..Thresholds::default() });
        let plugins = PluginHost::new(aegis_plugin::SandboxLimits::default()).expect("host");
        let mut d = AnomalyDetector::new(config);
        d.bind(&info("a"), &plugins);
        // The binding waits for the plugin; meanwhile each metric keeps its own built-ins (here: the error-rate
        // threshold).
        assert_eq!(d.source("a"), Some("nope"));
        let scorer = &d.scorers["a"].by_metric["error-rate"][0];
        let sample = |value| MetricSample { at_ms: 1, value };
        assert!(scorer.score("error-rate", &[sample(0.9)]).is_some());
        assert!(scorer.score("error-rate", &[sample(0.1)]).is_none());
    }
}
