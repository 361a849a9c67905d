//! The trip-predicate adapter: a WASM component behind `aegis_core::TripPredicate`.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
        let binding = Binding::new(self, name, service.name.clone(), Some(service.into()), config)?;
        Ok(WasmTripPredicate { binding, fallback })
    }
}

impl WasmTripPredicate {
    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
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
        WINDOW.with(|window| {
            // A call that re-enters this thread's buffer (a plugin cannot, but be safe) packs into a fresh one.
            let mut fresh = Vec::new();
            let mut buffer = window.try_borrow_mut();
            let window = buffer.as_deref_mut().unwrap_or(&mut fresh);
            window.clear();
            window.extend(ctx.recent().map(|s| pack_outcome(s.success, s.slow, s.duration)));
            self.decide(ctx, counts, window)
        })
    }
}

thread_local! {
    /// The packed window of the call in progress, reused so that a decision does not allocate.
    static WINDOW: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl WasmTripPredicate {
    fn decide(&self, ctx: &TripContext<'_>, counts: types::Counts, window: &[u64]) -> Option<String> {
        let decision = self.binding.call(|plugin, store| {
            plugin
                .aegis_policy_trip_predicate()
                .call_should_trip(store, counts, window)
                .map(|reason| Ok(reason.map(clamp_text)))
        });
        match decision {
            Some(decision) => decision,
            None => self.fallback.should_trip(ctx),
        }
    }
}

/// Largest latency a packed outcome can carry (62 bits of milliseconds).
const MAX_PACKED_MS: u64 = u64::MAX >> 2;

/// A probe outcome as the WIT `packed-outcome`: bit 0 success, bit 1 slow, bits 2.. latency in ms (saturated).
fn pack_outcome(success: bool, slow: bool, latency: Duration) -> u64 {
    // Seconds and milliseconds apart: `as_millis` divides in 128 bits, a cost paid for every outcome of every call.
    let ms =
        latency.as_secs().saturating_mul(1000).saturating_add(u64::from(latency.subsec_millis())).min(MAX_PACKED_MS);
    ms << 2 | u64::from(slow) << 1 | u64::from(success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_pack_into_the_wit_layout() {
        assert_eq!(pack_outcome(true, false, Duration::from_millis(3)), 3 << 2 | 1);
        assert_eq!(pack_outcome(false, true, Duration::from_millis(250)), 250 << 2 | 2);
        assert_eq!(pack_outcome(true, true, Duration::from_secs(u64::MAX)), u64::MAX);
        assert_eq!(pack_outcome(false, false, Duration::ZERO), 0);
    }
}
