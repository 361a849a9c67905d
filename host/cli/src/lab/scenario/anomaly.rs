//! Anomaly-scorer scenarios: `sample:` (or `samples:`) steps append to a metric's series, capped at `history:`
//! samples (default: the config's `anomaly.history`), and the scorer judges the newest sample after each one, as the
//! live anomaly pipeline does every detection interval; `expect:` checks the verdict on the step's last sample.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use aegis_core::policy::{Anomaly, AnomalyScorer, MetricSample};
use aegis_plugin::PluginHost;
use aegis_runtime::config::AnomalyConfig;
use serde::Deserialize;

use super::file::{BREAKER, Dur, NoneOr, NotFor, Scenario, ScenarioError, Timeline, epoch_ms, load};
use super::report::{Report, quoted};
use super::watch::FailedCalls;

const DEFAULT_METRIC: &str = "latency";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SampleStep {
    at: Option<Dur>,
    metric: Option<String>,
    sample: Option<f64>,
    samples: Option<Vec<f64>>,
    expect: Option<NoneOr<AnomalyWire>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AnomalyWire {
    score_above: Option<f64>,
    score_below: Option<f64>,
    reason_contains: Option<String>,
}

/// Never flags anything: what the adapter answers with when the plugin fails (which [`FailedCalls`] reports).
#[derive(Debug)]
struct NoScorer;

impl AnomalyScorer for NoScorer {
    fn score(&self, _metric: &str, _window: &[MetricSample]) -> Option<Anomaly> {
        None
    }
}

fn shown(a: Option<&Anomaly>) -> String {
    a.map_or_else(|| "none".to_owned(), |a| format!("score {:.3}: {}", a.score, quoted(&a.reason)))
}

type AnomalyScenario = Scenario<SampleStep, NotFor<BREAKER>, usize>;

pub(super) fn run(host: &PluginHost, plugin: &str, file: &Path) -> Result<Report, ScenarioError> {
    let scenario: AnomalyScenario = load(file)?;
    validate(&scenario)?;
    let history = scenario.history.unwrap_or_else(|| AnomalyConfig::default().history).max(1);
    let mut report = Report::of(&scenario);
    let bound = host.anomaly_scorer(plugin, scenario.service.clone(), scenario.config.clone(), Arc::new(NoScorer));
    let Some(scorer) = report.bound(scenario.config_line, bound) else { return Ok(report) };
    let mut failed = FailedCalls::new(host, plugin);
    let mut timeline = Timeline::new(scenario.interval);
    let mut series: BTreeMap<String, VecDeque<MetricSample>> = BTreeMap::new();
    for step in &scenario.steps {
        let s = &step.body;
        let metric = s.metric.as_deref().unwrap_or(DEFAULT_METRIC);
        let values: Vec<f64> = s.sample.into_iter().chain(s.samples.iter().flatten().copied()).collect();
        let mut last = None;
        let mut at = None;
        for (i, value) in values.into_iter().enumerate() {
            let t = timeline.input(if i == 0 { s.at } else { None }).map_err(|e| step.error(file, e))?;
            let window = series.entry(metric.to_owned()).or_default();
            if window.len() == history {
                window.pop_front();
            }
            window.push_back(MetricSample { at_ms: epoch_ms(t), value });
            let verdict = scorer.score(metric, window.make_contiguous());
            report.input(Some(t), format!("{metric} {value} → {}", shown(verdict.as_ref())));
            if let Some(failure) = failed.take() {
                report.check(step, Some(t), "the plugin's call", false, "an answer", failure);
            }
            last = verdict;
            at = Some(t);
        }
        check(&mut report, step, at, s.expect.as_ref(), last.as_ref());
    }
    Ok(report)
}

fn check(
    report: &mut Report,
    step: &super::file::Step<SampleStep>,
    at: Option<std::time::Duration>,
    expect: Option<&NoneOr<AnomalyWire>>,
    verdict: Option<&Anomaly>,
) {
    let actual = shown(verdict);
    match (expect, verdict) {
        (None, _) => {}
        (Some(NoneOr::Nothing), _) => report.check(step, at, "verdict", verdict.is_none(), "none", &actual),
        (Some(NoneOr::Some(_)), None) => report.check(step, at, "verdict", false, "an anomaly", &actual),
        (Some(NoneOr::Some(want)), Some(a)) => {
            if let Some(min) = want.score_above {
                report.check(step, at, "anomaly score", a.score > min, format!("above {min}"), &actual);
            }
            if let Some(max) = want.score_below {
                report.check(step, at, "anomaly score", a.score < max, format!("below {max}"), &actual);
            }
            if let Some(part) = &want.reason_contains {
                let holds = a.reason.contains(part.as_str());
                report.check(step, at, "anomaly reason", holds, format!("containing {}", quoted(part)), &actual);
            }
            if want.score_above.is_none() && want.score_below.is_none() && want.reason_contains.is_none() {
                report.check(step, at, "verdict", true, "an anomaly", &actual);
            }
        }
    }
}

fn validate(s: &AnomalyScenario) -> Result<(), ScenarioError> {
    for step in &s.steps {
        let b = &step.body;
        if b.sample.is_some() == b.samples.is_some() || b.samples.as_ref().is_some_and(Vec::is_empty) {
            return Err(step.error(&s.file, "give either a `sample:` (a number) or `samples:` (a list of numbers)"));
        }
    }
    Ok(())
}
