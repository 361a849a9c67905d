//! The trip-predicate adapter: a WASM component behind `aegis_core::TripPredicate`.

use std::fmt;
use std::sync::{Arc, Mutex};

use aegis_core::{TripContext, TripPredicate};
use wasmtime::Store;

use crate::ServiceInfo;
use crate::bindings::trip::TripPredicatePlugin;
use crate::bindings::types;
use crate::error::PluginError;
use crate::host::{Loaded, PluginHost, PluginKind, Pre};
use crate::sandbox::{SandboxLimits, StoreData, new_store};

/// A live instance: its store and the typed exports. Dropped after any trap, since a trapped instance is unusable.
struct Instance {
    store: Store<StoreData>,
    bindings: TripPredicatePlugin,
}

/// A trip predicate implemented by a plugin. Calls are serialised per binding (one instance, one store); a trap,
/// timeout or refused re-initialisation falls back to the built-in predicate for that decision.
pub struct WasmTripPredicate {
    plugin: Arc<Loaded>,
    engine: wasmtime::Engine,
    limits: SandboxLimits,
    service: types::ServiceInfo,
    config: Vec<(String, String)>,
    fallback: Arc<dyn TripPredicate>,
    instance: Mutex<Option<Instance>>,
}

impl fmt::Debug for WasmTripPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmTripPredicate")
            .field("plugin", &self.plugin.info.name)
            .field("service", &self.service.name)
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
        let plugin = self.get(name, PluginKind::TripPredicate)?;
        let adapter = WasmTripPredicate {
            plugin,
            engine: self.engine().clone(),
            limits: *self.limits(),
            service: types::ServiceInfo { name: service.name, kind: service.kind, endpoint: service.endpoint },
            config,
            fallback,
            instance: Mutex::new(None),
        };
        let instance = adapter.instantiate()?;
        *adapter.lock() = Some(instance);
        Ok(adapter)
    }
}

impl WasmTripPredicate {
    pub fn plugin_name(&self) -> &str {
        &self.plugin.info.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instance>> {
        self.instance.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn instantiate(&self) -> Result<Instance, PluginError> {
        let name = &self.plugin.info.name;
        let Pre::Trip(pre) = &self.plugin.pre else {
            return Err(PluginError::WrongKind {
                name: name.clone(),
                actual: self.plugin.info.kind.as_str(),
                wanted: PluginKind::TripPredicate.as_str(),
            });
        };
        let instantiate_err =
            |e: wasmtime::Error| PluginError::Instantiate { name: name.clone(), reason: format!("{e:#}") };
        let mut store = new_store(&self.engine, Arc::from(name.as_str()), &self.limits);
        let bindings = pre.instantiate(&mut store).map_err(instantiate_err)?;
        store.set_epoch_deadline(self.limits.deadline_ticks());
        bindings
            .aegis_policy_lifecycle()
            .call_init(&mut store, &self.config)
            .map_err(instantiate_err)?
            .map_err(|reason| PluginError::InitRefused { name: name.clone(), reason })?;
        Ok(Instance { store, bindings })
    }

    fn call(&self, instance: &mut Instance, ctx: &TripContext<'_>) -> wasmtime::Result<Option<String>> {
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
        instance.store.set_epoch_deadline(self.limits.deadline_ticks());
        instance.bindings.aegis_policy_trip_predicate().call_should_trip(
            &mut instance.store,
            &self.service,
            counts,
            &window,
        )
    }
}

impl TripPredicate for WasmTripPredicate {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        let mut slot = self.lock();
        if slot.is_none() {
            match self.instantiate() {
                Ok(instance) => *slot = Some(instance),
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin.info.name, service = %self.service.name,
                        "trip plugin unavailable, using the built-in predicate: {e}");
                    return self.fallback.should_trip(ctx);
                }
            }
        }
        let instance = slot.as_mut()?;
        match self.call(instance, ctx) {
            Ok(decision) => decision,
            Err(e) => {
                *slot = None;
                tracing::warn!(plugin = %self.plugin.info.name, service = %self.service.name,
                    "trip plugin failed, using the built-in predicate for this decision: {e:#}");
                self.fallback.should_trip(ctx)
            }
        }
    }
}
