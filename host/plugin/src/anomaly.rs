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

/// An anomaly scorer implemented by a plugin; falls back to the built-in on trap, timeout, a non-finite score or
/// quarantine.
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
            plugin.aegis_policy_anomaly_scorer().call_score(store, metric, &samples).map(|a| match a {
                Some(a) if !a.score.is_finite() => Err(format!("score {} is not finite", a.score)),
                a => Ok(a.map(|a| Anomaly { score: a.score, reason: clamp_text(a.reason) })),
            })
        });
        match scored {
            Some(anomaly) => anomaly,
            None => self.fallback.score(metric, window),
        }
    }
}
