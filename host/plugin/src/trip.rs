//! The trip-predicate adapter: a WASM component behind `aegis_core::TripPredicate`.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aegis_core::{TripContext, TripPredicate};
use wasmtime::Store;

use crate::ServiceInfo;
use crate::binding::{Binding, HandOff, Target, clamp_text};
use crate::bindings::trip::TripPredicatePlugin;
use crate::bindings::trip::exports::aegis::policy::trip_predicate::Verdict;
use crate::bindings::trip_shared::exports::aegis::policy::trip_predicate::Verdict as SharedVerdict;
use crate::bindings::types;
use crate::error::PluginError;
use crate::host::PluginHost;
use crate::sandbox::StoreData;

/// A trip predicate implemented by a plugin. Calls are serialised per binding (one instance, one store), or per
/// shard when the plugin shares instances (see [`crate::shared`]); a trap, timeout or quarantine falls back to the
/// built-in predicate for that decision.
pub struct WasmTripPredicate {
    binding: Binding<TripPredicatePlugin>,
    fallback: Arc<dyn TripPredicate>,
    /// Decisions for which the whole window was sent (see [`Self::windows_sent`]).
    windows_sent: AtomicU64,
    /// Whether the last decision was about a context from outside a breaker.
    untracked: AtomicBool,
    /// How a decision that runs long leaves the async worker it started on (see [`Self::off_worker`]).
    hand_off: Option<HandOff>,
}

impl fmt::Debug for WasmTripPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmTripPredicate")
            .field("binding", &self.binding)
            .field("fallback", &self.fallback)
            .field("windows_sent", &self.windows_sent())
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
        Ok(WasmTripPredicate::with(binding, fallback))
    }
}

impl WasmTripPredicate {
    fn with(binding: Binding<TripPredicatePlugin>, fallback: Arc<dyn TripPredicate>) -> Self {
        WasmTripPredicate {
            binding,
            fallback,
            windows_sent: AtomicU64::new(0),
            untracked: AtomicBool::new(false),
            hand_off: None,
        }
    }

    /// The same predicate for a caller on an async worker: each decision runs in place for its first slice (1 to
    /// 2 ms, where a policy takes about a microsecond), and one that runs longer is run again from the start
    /// through `hand_off`, under the whole deadline, so the worker's other tasks do not wait for it. Without it a
    /// decision runs in place for as long as its deadline allows.
    pub fn off_worker(self, hand_off: HandOff) -> Self {
        WasmTripPredicate { hand_off: Some(hand_off), ..self }
    }

    /// The same binding as a service's shadow trip predicate, asked through [`Self::answer`] only: its calls,
    /// strikes and quarantine are counted on the plugin's shadow record (see [`crate::shadow_name`]).
    pub fn into_shadow(self, host: &PluginHost) -> Self {
        WasmTripPredicate { binding: self.binding.into_shadow(host), ..self }
    }

    pub fn plugin_name(&self) -> &str {
        self.binding.plugin_name()
    }

    /// Whether the plugin is loaded now. A binding made before its plugin appeared uses the built-in policy and
    /// binds the plugin at the first call after it is loaded.
    pub fn is_loaded(&self) -> bool {
        self.binding.is_loaded()
    }

    /// How many decisions had to send the plugin the whole window because its copy was out of step (a fresh
    /// instance in the middle of a breaker generation, a decision skipped during quarantine, a context built outside
    /// a breaker). Every other decision crosses as plain numbers.
    pub fn windows_sent(&self) -> u64 {
        self.windows_sent.load(Ordering::Relaxed)
    }
}

impl TripPredicate for WasmTripPredicate {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        match self.answer(ctx) {
            Some(decision) => decision,
            None => self.fallback.should_trip(ctx),
        }
    }
}

impl WasmTripPredicate {
    /// The plugin's own decision, `None` when it gave none (quarantined, not loaded, trapped, too slow, an invalid
    /// answer): what a shadow is compared by, since the built-in's answer in its place would compare the built-in.
    pub fn answer(&self, ctx: &TripContext<'_>) -> Option<Option<String>> {
        let c = ctx.counts();
        let counts = types::Counts {
            requests: c.requests,
            successes: c.total_successes,
            failures: c.total_failures,
            consecutive_successes: c.consecutive_successes,
            consecutive_failures: c.consecutive_failures,
            slow_calls: c.slow_calls,
        };
        let window = window_summary(ctx);
        let decide = |target: Target<'_, TripPredicatePlugin>, store: &mut Store<StoreData>| {
            let trip = Calls(target);
            // A context from outside a breaker is not linked to the one before it, and neither is the first one from a
            // breaker after it (the flag changes only when the plugin is called: a skipped call does not count).
            let untracked = ctx.generation().is_none();
            let was_untracked = self.untracked.load(Ordering::Relaxed);
            if was_untracked != untracked {
                self.untracked.store(untracked, Ordering::Relaxed);
            }
            let send_window = was_untracked || untracked;
            let mut verdict =
                if send_window { Verdict::NeedWindow } else { trip.should_trip(&mut *store, counts, window)? };
            if verdict == Verdict::NeedWindow {
                // The plugin's copy is out of step (a fresh instance, a skipped call) or cannot be: send it all.
                self.windows_sent.fetch_add(1, Ordering::Relaxed);
                verdict = OUTCOMES.with(|outcomes| {
                    // A call that re-enters this thread's buffer (a plugin cannot, but be safe) packs into a fresh one.
                    let mut fresh = Vec::new();
                    let mut buffer = outcomes.try_borrow_mut();
                    let outcomes = buffer.as_deref_mut().unwrap_or(&mut fresh);
                    pack_window(ctx, outcomes);
                    trip.should_trip_with_window(&mut *store, counts, window, outcomes)
                })?;
            }
            settle(verdict, || trip.trip_reason(store))
        };
        match self.hand_off {
            Some(hand_off) => self.binding.call_off_worker(hand_off, decide),
            None => self.binding.call_target(decide),
        }
    }
}

/// The trip predicate's three calls, against the binding's own instance or its predicate in a shared one.
struct Calls<'a>(Target<'a, TripPredicatePlugin>);

impl Calls<'_> {
    fn should_trip(
        &self,
        store: &mut Store<StoreData>,
        counts: types::Counts,
        window: types::WindowSummary,
    ) -> wasmtime::Result<Verdict> {
        match self.0 {
            Target::Own(p) => p.aegis_policy_trip_predicate().call_should_trip(store, counts, window),
            Target::Shared(w, predicate) => {
                w.aegis_policy_trip_predicates().predicate().call_should_trip(store, predicate, counts, window).map(own)
            }
        }
    }

    fn should_trip_with_window(
        &self,
        store: &mut Store<StoreData>,
        counts: types::Counts,
        window: types::WindowSummary,
        outcomes: &[u64],
    ) -> wasmtime::Result<Verdict> {
        match self.0 {
            Target::Own(p) => {
                p.aegis_policy_trip_predicate().call_should_trip_with_window(store, counts, window, outcomes)
            }
            Target::Shared(w, predicate) => w
                .aegis_policy_trip_predicates()
                .predicate()
                .call_should_trip_with_window(store, predicate, counts, window, outcomes)
                .map(own),
        }
    }

    fn trip_reason(&self, store: &mut Store<StoreData>) -> wasmtime::Result<String> {
        match self.0 {
            Target::Own(p) => p.aegis_policy_trip_predicate().call_trip_reason(store),
            Target::Shared(w, predicate) => {
                w.aegis_policy_trip_predicates().predicate().call_trip_reason(store, predicate)
            }
        }
    }
}

/// A shared instance's verdict as the one-instance world's (the same WIT enum, generated in both worlds).
fn own(verdict: SharedVerdict) -> Verdict {
    match verdict {
        SharedVerdict::StayClosed => Verdict::StayClosed,
        SharedVerdict::Trip => Verdict::Trip,
        SharedVerdict::NeedWindow => Verdict::NeedWindow,
    }
}

/// The WIT `window-summary` of the breaker's window at `ctx`.
pub(crate) fn window_summary(ctx: &TripContext<'_>) -> types::WindowSummary {
    types::WindowSummary {
        generation: ctx.generation().unwrap_or(0),
        len: u32::try_from(ctx.window_len()).unwrap_or(u32::MAX),
        failures: ctx.window_failures(),
        slow_calls: ctx.window_slow_calls(),
        newest: ctx.newest().map_or(0, |s| pack_outcome(s.success, s.slow, s.duration)),
    }
}

/// Replaces `outcomes` with the whole window at `ctx`, packed, oldest first.
pub(crate) fn pack_window(ctx: &TripContext<'_>, outcomes: &mut Vec<u64>) {
    outcomes.clear();
    outcomes.extend(ctx.recent().map(|s| pack_outcome(s.success, s.slow, s.duration)));
}

/// The plugin's last verdict of a decision (after any resend of the window) as the decision: `Ok(None)` stays closed,
/// `Ok(Some(reason))` trips with the reason `reason` fetches, cut and escaped; `Err` is an invalid result (a second
/// `need-window`). `E` is the failure of the call that fetches the reason (a trap).
pub(crate) fn settle<E>(
    verdict: Verdict,
    reason: impl FnOnce() -> Result<String, E>,
) -> Result<Result<Option<String>, String>, E> {
    Ok(match verdict {
        Verdict::StayClosed => Ok(None),
        Verdict::Trip => Ok(Some(clamp_text(reason()?))),
        Verdict::NeedWindow => Err("asked for the window again right after it was sent".to_owned()),
    })
}

thread_local! {
    /// The packed window of a resynchronising call, reused so that it does not allocate.
    static OUTCOMES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Largest latency a packed outcome can carry (62 bits of milliseconds).
const MAX_PACKED_MS: u64 = u64::MAX >> 2;

/// A probe outcome as the WIT `packed-outcome`: bit 0 success, bit 1 slow, bits 2.. latency in ms (saturated).
pub(crate) fn pack_outcome(success: bool, slow: bool, latency: Duration) -> u64 {
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
