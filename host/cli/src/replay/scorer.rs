//! `aegis-host replay --scorer-plugin`: the recorded anomaly samples of a service, metric by metric and in recorded
//! order, judged by the service's configured scorers (thresholds and detector, or its scorer plugin, bound by the
//! runtime's [`AnomalyDetector`]) and by the candidate scorer plugin (with the built-ins as its fallback, as live).
//! A run of anomalous verdicts is one alert, firing from its first sample to the first sample judged normal again;
//! the comparison is of those alerts. The alert rules' own pending delays are not modelled: an alert here is the
//! anomaly that would have raised one.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use aegis_core::history::MetricSample as Recorded;
use aegis_core::policy::{Anomaly, AnomalyScorer, MetricSample};
use aegis_plugin::ServiceInfo;
use aegis_runtime::Config;
use aegis_runtime::anomaly::AnomalyDetector;
use aegis_runtime::config::ServiceConfig;
use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use super::policies::plugin_host;
use super::range::show;

/// One alert a scorer would have raised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub metric: String,
    pub from_ms: i64,
    /// When a sample was judged normal again (`None`: still firing at the end).
    pub to_ms: Option<i64>,
    pub peak_score: f64,
    /// The first anomalous verdict's reason.
    pub reason: String,
}

/// Both sides' alerts.
#[derive(Debug, Serialize)]
pub struct ScorerReplay {
    pub service: String,
    pub samples: usize,
    pub baseline_scorer: String,
    pub candidate_scorer: String,
    pub baseline: Vec<Alert>,
    pub candidate: Vec<Alert>,
}

/// The highest-scoring answer of several scorers (how the runtime combines a metric's scorers).
#[derive(Debug)]
struct Best(Vec<Arc<dyn AnomalyScorer>>);

impl AnomalyScorer for Best {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        self.0.iter().filter_map(|s| s.score(metric, window)).max_by(|a, b| a.score.total_cmp(&b.score))
    }
}

/// Each metric's own scorers (the runtime's fallback for a scorer plugin).
#[derive(Debug)]
struct ByMetric(BTreeMap<&'static str, Best>);

impl AnomalyScorer for ByMetric {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        self.0.get(metric)?.score(metric, window)
    }
}

/// Replays `samples` through the service's scorers and the candidate in `file`.
pub fn compare(
    config: &Config,
    s: &ServiceConfig,
    file: &Path,
    candidate_config: Vec<(String, String)>,
    samples: &[Recorded],
) -> anyhow::Result<ScorerReplay> {
    let info = ServiceInfo { name: s.name.to_string(), kind: s.probe.kind().to_owned(), endpoint: s.endpoint.clone() };
    let baseline_host = plugin_host(config)?;
    if config.plugins.dir.is_dir() {
        baseline_host
            .load_dir(&config.plugins.dir)
            .with_context(|| format!("cannot read the plugin directory {}", config.plugins.dir.display()))?;
    }
    let mut live = AnomalyDetector::new(config.anomaly.clone());
    live.bind(&info, &baseline_host);
    let baseline_scorer = live.source(&s.name).unwrap_or("none").to_owned();
    // The candidate's fallback: the built-ins the service would have without a scorer plugin.
    let mut without_plugin = config.anomaly.clone();
    without_plugin.scorers.remove(&*s.name);
    let mut built_ins = AnomalyDetector::new(without_plugin);
    built_ins.bind(&info, &baseline_host);
    let metrics: Vec<&str> =
        samples.iter().map(|r| r.metric.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let fallback: Arc<dyn AnomalyScorer> = Arc::new(ByMetric(
        aegis_runtime::anomaly::METRICS.iter().map(|m| (*m, Best(built_ins.scorers_of(&s.name, m)))).collect(),
    ));
    let host = plugin_host(config)?;
    let loaded = host.load_file(file).with_context(|| format!("cannot load {}", file.display()))?;
    let candidate: Arc<dyn AnomalyScorer> = Arc::new(
        host.anomaly_scorer(&loaded.name, info, candidate_config, fallback)
            .with_context(|| format!("{}: the anomaly scorer refused its config", file.display()))?,
    );
    let history = config.anomaly.history.max(1);
    let mut baseline = Vec::new();
    let mut replayed = Vec::new();
    for metric in metrics {
        let series: Vec<&Recorded> = samples.iter().filter(|r| r.metric == metric).collect();
        let own = Best(live.scorers_of(&s.name, metric));
        baseline.extend(alerts(metric, &series, history, &own));
        replayed.extend(alerts(metric, &series, history, candidate.as_ref()));
    }
    Ok(ScorerReplay {
        service: s.name.to_string(),
        samples: samples.len(),
        baseline_scorer,
        candidate_scorer: file.display().to_string(),
        baseline,
        candidate: replayed,
    })
}

/// The alerts `scorer` raises over one metric's series, judging each newest sample against the last `history`.
fn alerts(metric: &str, series: &[&Recorded], history: usize, scorer: &dyn AnomalyScorer) -> Vec<Alert> {
    let mut window: VecDeque<MetricSample> = VecDeque::with_capacity(history);
    let mut out: Vec<Alert> = Vec::new();
    let mut firing = false;
    for r in series {
        if window.len() == history {
            window.pop_front();
        }
        window.push_back(MetricSample { at_ms: u64::try_from(r.at_ms).unwrap_or(0), value: r.value });
        match scorer.score(metric, window.make_contiguous()) {
            Some(a) if firing => {
                if let Some(last) = out.last_mut() {
                    last.peak_score = last.peak_score.max(a.score);
                }
            }
            Some(a) => {
                firing = true;
                out.push(Alert {
                    metric: metric.to_owned(),
                    from_ms: r.at_ms,
                    to_ms: None,
                    peak_score: a.score,
                    reason: a.reason,
                });
            }
            None if firing => {
                firing = false;
                if let Some(last) = out.last_mut() {
                    last.to_ms = Some(r.at_ms);
                }
            }
            None => {}
        }
    }
    out
}

impl ScorerReplay {
    /// Whether both sides raise the same alerts (metric, start and end); scores and reasons may differ.
    pub fn agrees(&self) -> bool {
        let key = |a: &Alert| (a.metric.clone(), a.from_ms, a.to_ms);
        self.baseline.iter().map(key).eq(self.candidate.iter().map(key))
    }

    pub fn json(&self) -> Value {
        json!({ "agrees": self.agrees(), "replay": self })
    }

    /// Side by side, per metric.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "anomaly replay of {}: {} recorded samples", self.service, self.samples);
        let _ = writeln!(out, "  baseline:  {}", self.baseline_scorer);
        let _ = writeln!(out, "  candidate: {}", self.candidate_scorer);
        let mut by_metric: BTreeMap<&str, (Vec<&Alert>, Vec<&Alert>)> = BTreeMap::new();
        for a in &self.baseline {
            by_metric.entry(&a.metric).or_default().0.push(a);
        }
        for a in &self.candidate {
            by_metric.entry(&a.metric).or_default().1.push(a);
        }
        for (metric, (base, cand)) in &by_metric {
            let _ = writeln!(out, "\n  {metric}: baseline {} alert(s), candidate {}", base.len(), cand.len());
            for i in 0..base.len().max(cand.len()) {
                let cell = |a: Option<&&Alert>| a.map_or_else(String::new, |a| span(a));
                let _ = writeln!(out, "    {:<56}  {}", cell(base.get(i)), cell(cand.get(i)));
            }
        }
        if by_metric.is_empty() {
            let _ = writeln!(out, "\n  no alert on either side");
        }
        let verdict = if self.agrees() {
            "no divergence: the candidate scorer raises the same alerts"
        } else {
            "the candidate scorer raises different alerts"
        };
        let _ = writeln!(out, "\n{verdict}");
        out
    }
}

fn span(a: &Alert) -> String {
    let to = a.to_ms.map_or_else(|| "still firing".to_owned(), show);
    format!("{} .. {} (score {:.1})", show(a.from_ms), to, a.peak_score)
}

#[cfg(test)]
mod tests {
    use aegis_core::detect::Threshold;

    use super::*;

    fn series(values: &[f64]) -> Vec<Recorded> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| Recorded { at_ms: 1000 * i as i64, metric: "latency".to_owned(), value })
            .collect()
    }

    #[test]
    fn a_run_of_anomalous_samples_is_one_alert_until_a_normal_one() {
        let recorded = series(&[10.0, 500.0, 600.0, 10.0, 700.0]);
        let refs: Vec<&Recorded> = recorded.iter().collect();
        let got = alerts("latency", &refs, 10, &Threshold::above(100.0));
        let spans: Vec<(i64, Option<i64>)> = got.iter().map(|a| (a.from_ms, a.to_ms)).collect();
        assert_eq!(spans, [(1000, Some(3000)), (4000, None)]);
    }
}
