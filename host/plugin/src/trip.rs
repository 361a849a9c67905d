//! The trip-predicate adapter: a WASM component behind `aegis_core::TripPredicate`.

use std::fmt;
use std::sync::Arc;

use aegis_core::{TripContext, TripPredicate};

use crate::ServiceInfo;
use crate::binding::{Binding, clamp_text};
use crate::bindings::trip::TripPredicatePlugin;
use crate::bindings::types;
use crate::error::PluginError;
use crate::host::PluginHost;

/// A trip predicate implemented by a plugin. Calls are serialised per binding (one instance, one store); a trap,
/// timeout or quarantine falls back to the built-in predicate for that decision.
pub struct WasmTripPredicate {
    binding: Binding<TripPredicatePlugin>,
    service: types::ServiceInfo,
    fallback: Arc<dyn TripPredicate>,
}

impl fmt::Debug for WasmTripPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmTripPredicate")
            .field("binding", &self.binding)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Binds the trip-predicate plugin `name` to a service: instantiates it and runs its `init` with `config`, so a
    /// refused config is an error now, not at the first failure.
    pub fn trip_predicate(
        &self,
        name: &str,
        service: ServiceInfo,
        config: Vec<(String, String)>,
        fallback: Arc<dyn TripPredicate>,
    ) -> Result<WasmTripPredicate, PluginError> {
        let binding = Binding::new(self, name, service.name.clone(), config)?;
        Ok(WasmTripPredicate { binding, service: service.into(), fallback })
    }
}

impl WasmTripPredicate {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }
}

impl TripPredicate for WasmTripPredicate {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        let c = ctx.counts();
        let counts = types::Counts {
            requests: c.requests,
            successes: c.total_successes,
            failures: c.total_failures,
            consecutive_successes: c.consecutive_successes,
            consecutive_failures: c.consecutive_failures,
            slow_calls: c.slow_calls,
        };
        let window: Vec<types::ProbeOutcome> = ctx
            .recent()
            .map(|s| types::ProbeOutcome {
                success: s.success,
                latency_ms: u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
                slow: s.slow,
            })
            .collect();
        let decision = self.binding.call(|plugin, store| {
            plugin
                .aegis_policy_trip_predicate()
                .call_should_trip(store, &self.service, counts, &window)
                .map(|reason| Ok(reason.map(clamp_text)))
        });
        match decision {
            Some(decision) => decision,
            None => self.fallback.should_trip(ctx),
        }
    }
}
