//! The anomaly-scorer adapter: a WASM component behind `aegis_core::policy::AnomalyScorer`.

use std::fmt;
use std::sync::Arc;

use aegis_core::policy::{Anomaly, AnomalyScorer, MetricSample};

use crate::ServiceInfo;
use crate::binding::{Binding, clamp_text};
use crate::bindings::anomaly::AnomalyScorerPlugin;
use crate::bindings::anomaly::exports::aegis::policy::anomaly_scorer as wit;
use crate::error::PluginError;
use crate::host::PluginHost;

/// Most samples a scorer is shown (the newest ones).
const MAX_WINDOW: usize = 4096;

/// An anomaly scorer implemented by a plugin; falls back to the built-in on trap, timeout, a score that is not a
/// positive finite number (an invalid result) or quarantine.
pub struct WasmAnomalyScorer {
    binding: Binding<AnomalyScorerPlugin>,
    fallback: Arc<dyn AnomalyScorer>,
}

impl fmt::Debug for WasmAnomalyScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmAnomalyScorer")
            .field("binding", &self.binding)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Binds the anomaly-scorer plugin `name` to a service and runs its `init` with `config` now.
    pub fn anomaly_scorer(
        &self,
        name: &str,
        service: ServiceInfo,
        config: Vec<(String, String)>,
        fallback: Arc<dyn AnomalyScorer>,
    ) -> Result<WasmAnomalyScorer, PluginError> {
        let binding = Binding::new(self, name, service.name.clone(), Some(service.into()), config)?;
        Ok(WasmAnomalyScorer { binding, fallback })
    }
}

impl WasmAnomalyScorer {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
    }
}

impl AnomalyScorer for WasmAnomalyScorer {
    fn score(&self, metric: &str, window: &[MetricSample]) -> Option<Anomaly> {
        let recent = &window[window.len().saturating_sub(MAX_WINDOW)..];
        let samples: Vec<wit::Sample> = recent.iter().map(|s| wit::Sample { at_ms: s.at_ms, value: s.value }).collect();
        let scored = self.binding.call(|plugin, store| {
            plugin
                .aegis_policy_anomaly_scorer()
                .call_score(store, metric, &samples)
                .map(|a| a.map(validate).transpose())
        });
        match scored {
            Some(anomaly) => anomaly,
            None => self.fallback.score(metric, window),
        }
    }
}

/// An anomaly as the host passes it on: its reason cut and escaped, its score a positive finite number. The score
/// becomes `aegis_anomaly_score{service,metric}`, where 0 means "not anomalous" and higher is more anomalous, and picks
/// the strongest of several scorers: NaN would poison that comparison and the gauge, an infinite score would always
/// win, and a zero or negative one would raise an alert while the gauge reads "not anomalous". Large finite scores
/// are accepted: the scale is the scorer's (a z-score, a ratio, a percentage), the gauge holds any finite value, and
/// the alert's `score` annotation (two decimals) stays a few hundred bytes even at `f64::MAX`.
pub(crate) fn validate(a: wit::Anomaly) -> Result<Anomaly, String> {
    if !(a.score.is_finite() && a.score > 0.0) {
        return Err(format!("score {} is not a positive finite number", a.score));
    }
    Ok(Anomaly { score: a.score, reason: clamp_text(a.reason) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly(score: f64) -> wit::Anomaly {
        wit::Anomaly { score, reason: "latency\n2026-01-01 ERROR forged".into() }
    }

    #[test]
    fn positive_finite_scores_pass_with_their_reason_escaped() {
        for score in [f64::MIN_POSITIVE, 0.5, 3.7, 1e12, f64::MAX] {
            let a = validate(anomaly(score)).unwrap();
            assert_eq!(a.score, score);
            assert_eq!(a.reason, r"latency\n2026-01-01 ERROR forged");
        }
    }

    #[test]
    fn scores_that_are_not_positive_and_finite_are_refused() {
        for score in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, -1.0, f64::MIN] {
            let err = validate(anomaly(score)).unwrap_err();
            assert!(err.contains("not a positive finite number"), "{score}: {err}");
        }
    }
}
