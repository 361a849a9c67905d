//! What every policy adapter shares: one plugin instance per binding (a service's trip predicate, a log source's
//! rule, …) with `init` and the binding's config, or a seat in an instance that bindings share (a trip predicate
//! that exports `trip-predicates`, see [`crate::shared`]); an epoch deadline per call, a fresh `Store` after any
//! trap, and the plugin's quarantine bookkeeping. The adapters only convert types and pick the built-in fallback.
//!
//! Must never panic or block on anything but the binding's own instance or its shard's: a plugin call is bounded by
//! the deadline.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use wasmtime::component::ResourceAny;
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{alert, anomaly, log_rule, recovery, trip, trip_shared, types};
use crate::epoch::Epoch;
use crate::error::PluginError;
use crate::host::{Loaded, PluginHost, PluginKind, PluginSlot, Pre};
use crate::quarantine::{Admission, CallResult, PluginHealth};
use crate::sandbox::{FIRST_SLICE_TICKS, SLICE_FUEL, SandboxLimits, StoreData, UNMETERED, new_store};
use crate::shared::{Seat, ShardState, SharedInstance, SharedPool};

/// Runs a call that overran its first slice (see [`Binding::call_off_worker`]): the async runtime's way of letting
/// a worker block without holding up its other tasks (tokio's `block_in_place`). It must call its argument once.
pub type HandOff = fn(&mut dyn FnMut());

/// A call cut off at the end of its first slice.
struct Overran;

/// A call's way through its instance, before it is counted.
enum Prepared<R> {
    Ran(Answer<R>),
    /// Cut off to run again off the async worker: a WASI function that blocks, or a shared instance that is busy.
    Overran,
    /// No instance to call: it could not be made, or the plugin refused the binding's config.
    Unavailable(PluginError),
}

/// Longest text (reason, message) a plugin may hand back; longer text is cut, not refused.
pub(crate) const MAX_TEXT: usize = 1024;

/// Longest account of a failed call (the log line of a strike, the last error of a quarantine event). Longer than
/// [`MAX_TEXT`]: it may carry the plugin's text and a wasm backtrace, whose frame names are the plugin's own too.
const MAX_STRIKE_TEXT: usize = 4096;

/// The typed exports of one policy world.
pub(crate) trait World: Sized + Send + 'static {
    const KIND: PluginKind;

    /// `None` when `pre` is of another kind.
    fn instantiate(pre: &Pre, store: &mut Store<StoreData>) -> Option<wasmtime::Result<Self>>;

    #[allow(clippy::ptr_arg, reason = "the generated bindings take the WIT `config` list as `&Vec`")]
    fn init(
        &self,
        store: &mut Store<StoreData>,
        service: Option<&types::ServiceInfo>,
        config: &Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), String>>;
}

macro_rules! world {
    ($ty:ty, $kind:ident, $variant:ident) => {
        impl World for $ty {
            const KIND: PluginKind = PluginKind::$kind;

            fn instantiate(pre: &Pre, store: &mut Store<StoreData>) -> Option<wasmtime::Result<Self>> {
                match pre {
                    Pre::$variant(pre) => Some(pre.instantiate(store)),
                    _ => None,
                }
            }

            fn init(
                &self,
                store: &mut Store<StoreData>,
                service: Option<&types::ServiceInfo>,
                config: &Vec<(String, String)>,
            ) -> wasmtime::Result<Result<(), String>> {
                self.aegis_policy_lifecycle().call_init(store, service, config)
            }
        }
    };
}

world!(trip::TripPredicatePlugin, TripPredicate, Trip);
world!(recovery::RecoveryStrategyPlugin, RecoveryStrategy, Recovery);
world!(log_rule::LogRulePlugin, LogRule, LogRule);
world!(anomaly::AnomalyScorerPlugin, AnomalyScorer, Anomaly);
world!(alert::AlertFormatterPlugin, AlertFormatter, Alert);

struct Instance<W> {
    store: Store<StoreData>,
    world: W,
}

/// What a call runs against: the binding's own instance, or its predicate in an instance that bindings share (a
/// trip-predicate plugin that exports `trip-predicates`, see [`crate::shared`]).
pub(crate) enum Target<'a, W> {
    Own(&'a W),
    Shared(&'a trip_shared::TripPredicatesPlugin, ResourceAny),
}

/// A call's answer before it is counted: a trap (`Err`), an invalid result (`Ok(Err)`) or a value.
type Answer<R> = wasmtime::Result<Result<R, String>>;

/// The plugin version a binding runs (none while the plugin is not loaded), the slot's number for it, and the
/// binding's instance of it, or its seat in a shared instance when the plugin offers one.
struct Current<W> {
    version: u64,
    plugin: Option<Arc<Loaded>>,
    instance: Option<Instance<W>>,
    seat: Option<Seat>,
}

/// A slot version no slot has: the binding looks the plugin up at its next call.
const UNSEEN: u64 = u64::MAX;

/// One binding of a plugin: its instance (created lazily again after a trap or a reload) and what it needs to
/// re-create it.
pub(crate) struct Binding<W> {
    name: String,
    slot: Arc<PluginSlot>,
    engine: Engine,
    epoch: Epoch,
    limits: SandboxLimits,
    /// What the binding is for (a service, a log source, a receiver), for the log.
    subject: String,
    /// The service given to the plugin's `init`, if the binding decides for one.
    service: Option<types::ServiceInfo>,
    config: Vec<(String, String)>,
    /// A shadow binding's own quarantine record (see [`PluginHost::shadow_health`]); `None`: the plugin's.
    shadow: Option<Arc<PluginHealth>>,
    current: Mutex<Current<W>>,
}

impl<W: World> fmt::Debug for Binding<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("plugin", &self.name)
            .field("kind", &W::KIND)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl<W: World> Binding<W> {
    /// Binds plugin `name` and, if it is loaded, instantiates it now, so a wrong kind or a refused config is an
    /// error at configuration time rather than at the first decision. A plugin that is not loaded (yet) gives a
    /// binding that uses the built-in policy until the plugin appears (a reload or the directory watcher), and then
    /// binds at its next call. `subject` names what the binding is for in the log; `service`, if any, is handed to
    /// the plugin's `init`.
    pub(crate) fn new(
        host: &PluginHost,
        name: &str,
        subject: String,
        service: Option<types::ServiceInfo>,
        config: Vec<(String, String)>,
    ) -> Result<Self, PluginError> {
        let (slot, version, plugin) = match host.get(name, W::KIND) {
            Ok((slot, version, plugin)) => (slot, version, Some(plugin)),
            Err(PluginError::NotFound { .. }) => (host.slot_for(name), UNSEEN, None),
            Err(e) => return Err(e),
        };
        let binding = Binding {
            name: name.to_owned(),
            slot,
            engine: host.engine().clone(),
            epoch: host.epoch(),
            limits: *host.limits(),
            subject,
            service,
            config,
            shadow: None,
            current: Mutex::new(Current { version, plugin: plugin.clone(), instance: None, seat: None }),
        };
        if let Some(plugin) = plugin {
            match &plugin.shared {
                None => {
                    let instance = binding.instantiate(&plugin)?;
                    binding.lock().instance = Some(instance);
                }
                Some(pool) => {
                    let mut seat = pool.take_seat(binding.shadow.is_some());
                    binding.open_seat(&plugin, pool, &mut seat)?;
                    binding.lock().seat = Some(seat);
                }
            }
        }
        Ok(binding)
    }

    /// The same binding as a shadow: its calls, strikes and quarantine are counted on the plugin's shadow record,
    /// never on the record its live bindings share, so a failing shadow cannot quarantine a live policy. A shared
    /// binding moves to a shadow shard, so that a failing shadow never resets live predicates either.
    pub(crate) fn into_shadow(mut self, host: &PluginHost) -> Self {
        self.shadow = Some(host.shadow_health(&self.name, W::KIND));
        let current = self.current.get_mut().unwrap_or_else(|p| p.into_inner());
        if current.seat.take().is_some()
            && let Some(plugin) = current.plugin.clone()
            && let Some(pool) = &plugin.shared
        {
            let mut seat = pool.take_seat(true);
            // Opened at the first call if this fails now (it did not, a moment ago, in the live shard).
            if self.open_seat(&plugin, pool, &mut seat).is_err() {
                tracing::debug!(plugin = %self.name, subject = %self.subject, "shadow predicate not opened yet");
            }
            self.current.get_mut().unwrap_or_else(|p| p.into_inner()).seat = Some(seat);
        }
        self
    }

    /// Whether the plugin is loaded now (otherwise the built-in policy decides).
    pub(crate) fn is_loaded(&self) -> bool {
        self.slot.current().is_some()
    }

    pub(crate) fn plugin_name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Current<W>> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn instantiate(&self, plugin: &Loaded) -> Result<Instance<W>, PluginError> {
        // Instantiation and `init` run plugin code under the whole deadline.
        let _claim = self.epoch.ticking();
        let name = &self.name;
        let instantiate_err =
            |e: wasmtime::Error| PluginError::Instantiate { name: name.clone(), reason: describe(&e, &self.limits) };
        let mut store = self.store(plugin).map_err(instantiate_err)?;
        let world = W::instantiate(&plugin.pre, &mut store)
            .ok_or_else(|| PluginError::WrongKind {
                name: name.clone(),
                actual: plugin.info.kind.as_str(),
                wanted: W::KIND.as_str(),
            })?
            .map_err(instantiate_err)?;
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let config = self.config_with_defaults(plugin);
        world
            .init(&mut store, self.service.as_ref(), &config)
            .map_err(instantiate_err)?
            .map_err(|reason| PluginError::InitRefused { name: name.clone(), reason: clamp_text(reason) })?;
        Ok(Instance { store, world })
    }

    /// The binding's config with the plugin manifest's defaults under it, as `init` and `open` take it.
    fn config_with_defaults(&self, plugin: &Loaded) -> Vec<(String, String)> {
        plugin.default_config.iter().chain(&self.config).cloned().collect()
    }

    /// A fresh store for this binding's plugin, with the deadline armed for what runs first in it.
    fn store(&self, plugin: &Loaded) -> wasmtime::Result<Store<StoreData>> {
        let mut store =
            new_store(&self.engine, Arc::from(self.name.as_str()), &self.limits, &plugin.info.capabilities)?;
        store.set_epoch_deadline(self.limits.deadline_ticks());
        Ok(store)
    }

    /// The shared instance of a shard: the one it has, or a new one (no `lifecycle.init`: each predicate gets its
    /// service and config from `open`).
    fn shared_instance<'s>(
        &self,
        pool: &SharedPool,
        plugin: &Loaded,
        state: &'s mut ShardState,
    ) -> Result<&'s mut SharedInstance, PluginError> {
        let live = match state.instance.take() {
            Some(live) => live,
            None => {
                let _claim = self.epoch.ticking();
                let instantiate_err = |e: wasmtime::Error| PluginError::Instantiate {
                    name: self.name.clone(),
                    reason: describe(&e, &self.limits),
                };
                let mut store = self.store(plugin).map_err(instantiate_err)?;
                let world = pool.pre.instantiate(&mut store).map_err(instantiate_err)?;
                SharedInstance { store, world }
            }
        };
        Ok(state.instance.insert(live))
    }

    /// Opens the binding's predicate in its shard under the whole deadline, so that a refused config is an error at
    /// bind time, as a refusing `init` is for a binding with an instance of its own.
    fn open_seat(&self, plugin: &Loaded, pool: &SharedPool, seat: &mut Seat) -> Result<(), PluginError> {
        let _claim = self.epoch.ticking();
        let mut state = seat.lock();
        seat.drop_orphans(&mut state);
        let live = self.shared_instance(pool, plugin, &mut state)?;
        live.store.set_epoch_deadline(self.limits.deadline_ticks());
        // The shard's store may still carry the meter of a call in place: `open` is bounded by the deadline alone, as
        // `init` is.
        let opened = match live.store.set_fuel(UNMETERED) {
            Ok(()) => self.open_predicate(plugin, &live.world, &mut live.store),
            Err(e) => Err(e),
        };
        match opened {
            Ok(Ok(predicate)) => {
                seat.set_predicate(&state, predicate);
                Ok(())
            }
            Ok(Err(reason)) => Err(PluginError::InitRefused { name: self.name.clone(), reason: clamp_text(reason) }),
            Err(e) => {
                let reason = describe(&e, &self.limits);
                state.discard();
                Err(PluginError::Instantiate { name: self.name.clone(), reason })
            }
        }
    }

    /// `predicate.open` with this binding's service and config (the manifest's defaults under it).
    fn open_predicate(
        &self,
        plugin: &Loaded,
        world: &trip_shared::TripPredicatesPlugin,
        store: &mut Store<StoreData>,
    ) -> Answer<ResourceAny> {
        let config = self.config_with_defaults(plugin);
        let service = self.service.clone().unwrap_or_else(|| crate::ServiceInfo::default().into());
        world.aegis_policy_trip_predicates().predicate().call_open(store, &service, &config)
    }

    /// Runs `f` against the plugin under the deadline. `None` means "use the built-in": the plugin is quarantined,
    /// unloaded, could not be instantiated, trapped, missed its deadline, or `f` refused its output
    /// (`Ok(Err(why))`).
    ///
    /// The hot path takes the binding's own lock and reads the slot's version number: no shared lock, no reference
    /// count touched.
    pub(crate) fn call<R>(&self, mut f: impl FnMut(&W, &mut Store<StoreData>) -> Answer<R>) -> Option<R> {
        self.call_target(|target, store| match target {
            Target::Own(world) => f(world, store),
            // Only trip-predicate plugins are shared, and their adapter calls `call_target`.
            Target::Shared(..) => Ok(Err("a shared instance for a kind that has none".to_owned())),
        })
    }

    /// [`Self::call`] for an adapter whose plugin may serve it from a shared instance (a trip predicate).
    pub(crate) fn call_target<R>(
        &self,
        mut f: impl FnMut(Target<'_, W>, &mut Store<StoreData>) -> Answer<R>,
    ) -> Option<R> {
        self.call_for(self.limits.deadline_ticks(), &mut f).unwrap_or(None)
    }

    /// [`Self::call_target`] for a caller on an async worker, whose other tasks must not wait for a plugin that runs
    /// long: the call runs in place for at most [`SLICE_FUEL`] (about a millisecond of a loop; a policy answers in
    /// about a microsecond, so nothing is handed anywhere), and only a call still running then is cut off and run
    /// again from the start through `hand_off` (which moves the worker's other tasks to another thread), with a fresh
    /// instance and the whole deadline. A shared instance that another binding's call holds for more than a short
    /// spin sends the call there too, rather than have the worker wait. The cut-off call counts for nothing: no
    /// strike, no call. A plugin that logs while it overruns logs those lines twice.
    pub(crate) fn call_off_worker<R>(
        &self,
        hand_off: HandOff,
        mut f: impl FnMut(Target<'_, W>, &mut Store<StoreData>) -> Answer<R>,
    ) -> Option<R> {
        let whole = self.limits.deadline_ticks();
        if whole > FIRST_SLICE_TICKS {
            match self.call_for(FIRST_SLICE_TICKS, &mut f) {
                Ok(answer) => return answer,
                Err(Overran) => tracing::debug!(plugin = %self.name, subject = %self.subject,
                    "plugin call overran its first slice or found its shared instance busy; running it again off \
                     the async worker"),
            }
        }
        let mut answer = None;
        hand_off(&mut || answer = self.call_for(whole, &mut f).unwrap_or(None));
        answer
    }

    /// Runs `f` with `ticks` epoch ticks to go. `Err(Overran)`: `ticks` is less than the deadline and the plugin
    /// ran into it (the instance is dropped; nothing is counted), or its shared instance was busy.
    fn call_for<R>(
        &self,
        ticks: u64,
        f: &mut impl FnMut(Target<'_, W>, &mut Store<StoreData>) -> Answer<R>,
    ) -> Result<Option<R>, Overran> {
        let mut current = self.lock();
        if current.version != self.slot.version() {
            self.refresh(&mut current);
        }
        let Current { plugin, instance, seat, .. } = &mut *current;
        let Some(plugin) = plugin.as_ref().filter(|p| p.info.kind == W::KIND) else { return Ok(None) };
        let health = self.shadow.as_ref().unwrap_or(&plugin.health);
        if health.admit() == Admission::Skip {
            return Ok(None);
        }
        let cut_short = ticks < self.limits.deadline_ticks();
        if cut_short && plugin.blocks_on_wasi.load(Ordering::Relaxed) {
            return Err(Overran);
        }
        let prepared = match &plugin.shared {
            None => self.call_own(plugin, instance, ticks, f),
            Some(pool) => {
                let seat = seat.get_or_insert_with(|| pool.take_seat(self.shadow.is_some()));
                self.call_shared(plugin, pool, seat, ticks, f)
            }
        };
        let outcome = match prepared {
            Prepared::Ran(outcome) => outcome,
            Prepared::Overran => return Err(Overran),
            Prepared::Unavailable(e) => {
                let health = Arc::clone(health);
                drop(current);
                self.strike(&health, CallResult::Unavailable, &e.to_string());
                return Ok(None);
            }
        };
        let outcome = match outcome {
            Ok(Ok(value)) if health.count_ok_in_good_standing() => return Ok(Some(value)),
            other => other,
        };
        if cut_short
            && outcome
                .as_ref()
                .is_err_and(|e| matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt | Trap::OutOfFuel)))
        {
            return Err(Overran);
        }
        // Quarantine bookkeeping may log and notify listeners: not under the binding's lock.
        let health = Arc::clone(health);
        drop(current);
        Ok(match outcome {
            Ok(Ok(value)) => {
                health.record_ok();
                Some(value)
            }
            Ok(Err(why)) => {
                self.strike(&health, CallResult::Invalid, &format!("returned an invalid result: {why}"));
                None
            }
            Err(e) => {
                let result = match e.downcast_ref::<Trap>() {
                    Some(Trap::Interrupt) => CallResult::Timeout,
                    _ => CallResult::Trap,
                };
                self.strike(&health, result, &describe(&e, &self.limits));
                None
            }
        })
    }

    /// A call against the binding's own instance (made first if it has none). Anything but a value drops the
    /// instance: a trap leaves it unusable, and a plugin that returned garbage once may hold bad state.
    fn call_own<R>(
        &self,
        plugin: &Loaded,
        instance: &mut Option<Instance<W>>,
        ticks: u64,
        f: &mut impl FnMut(Target<'_, W>, &mut Store<StoreData>) -> Answer<R>,
    ) -> Prepared<R> {
        let live = match instance {
            Some(live) => live,
            None => match self.instantiate(plugin) {
                Ok(fresh) => instance.insert(fresh),
                Err(e) => return Prepared::Unavailable(e),
            },
        };
        let world = &live.world;
        let ran = self.run(plugin, &mut live.store, ticks, |store| f(Target::Own(world), store));
        if !matches!(ran, Prepared::Ran(Ok(Ok(_)))) {
            *instance = None;
        }
        ran
    }

    /// A call against the binding's predicate in its shard's shared instance: the instance is made and the
    /// predicate opened first if need be, within the call's deadline. Anything but a value drops the instance and
    /// every predicate in it, except a refused `open` (a reloaded plugin that no longer takes the binding's config),
    /// which is the binding's own failure, as a refusing `init` is.
    fn call_shared<R>(
        &self,
        plugin: &Loaded,
        pool: &SharedPool,
        seat: &Seat,
        ticks: u64,
        f: &mut impl FnMut(Target<'_, W>, &mut Store<StoreData>) -> Answer<R>,
    ) -> Prepared<R> {
        // In place on an async worker (cut short), a busy shard sends the call to its hand-off rather than have the
        // worker wait.
        let state = if ticks < self.limits.deadline_ticks() { seat.try_lock() } else { Some(seat.lock()) };
        let Some(mut state) = state else { return Prepared::Overran };
        seat.drop_orphans(&mut state);
        let known = seat.predicate(&state);
        let (mut opened, mut refused) = (None, None);
        let ran = match self.shared_instance(pool, plugin, &mut state) {
            Err(e) => return Prepared::Unavailable(e),
            Ok(SharedInstance { store, world }) => self.run(plugin, store, ticks, |store| {
                let predicate = match known {
                    Some(predicate) => predicate,
                    None => match self.open_predicate(plugin, world, store)? {
                        Ok(predicate) => *opened.insert(predicate),
                        Err(reason) => {
                            refused = Some(reason);
                            return Ok(Err(String::new()));
                        }
                    },
                };
                f(Target::Shared(world, predicate), store)
            }),
        };
        if let Some(predicate) = opened {
            seat.set_predicate(&state, predicate);
        }
        if let Some(reason) = refused {
            return Prepared::Unavailable(PluginError::InitRefused {
                name: self.name.clone(),
                reason: clamp_text(reason),
            });
        }
        if !matches!(ran, Prepared::Ran(Ok(Ok(_)))) {
            state.discard();
        }
        ran
    }

    /// Runs `call` in `store` with `ticks` epoch ticks to go and a fresh log budget.
    fn run<R>(
        &self,
        plugin: &Loaded,
        store: &mut Store<StoreData>,
        ticks: u64,
        call: impl FnOnce(&mut Store<StoreData>) -> Answer<R>,
    ) -> Prepared<R> {
        store.set_epoch_deadline(ticks);
        store.data_mut().reset_log_budget();
        if ticks >= self.limits.deadline_ticks() {
            // A left-over meter from a call in place must not end this one: only its deadline does.
            if let Err(e) = store.set_fuel(UNMETERED) {
                return Prepared::Ran(Err(e));
            }
            let _claim = self.epoch.ticking();
            return Prepared::Ran(call(store));
        }
        if let Err(e) = store.set_fuel(SLICE_FUEL) {
            return Prepared::Ran(Err(e));
        }
        // In place on an async worker, a WASI function that blocks on the runtime (wasmtime-wasi's sync bindings)
        // panics ("Cannot start a runtime from within a runtime"). Caught here, before the binding's lock is
        // released, so nothing is poisoned; the caller drops the instance and the call runs again off the worker.
        match std::panic::catch_unwind(AssertUnwindSafe(|| call(store))) {
            Ok(outcome) => Prepared::Ran(outcome),
            Err(_) => {
                plugin.blocks_on_wasi.store(true, Ordering::Relaxed);
                tracing::warn!(plugin = %self.name, subject = %self.subject,
                    "plugin called a blocking WASI function (a print, a panic message, a sleep) while deciding; \
                     its decisions now run off the async worker, at a cost of tens of microseconds each");
                Prepared::Overran
            }
        }
    }

    /// Takes up the slot's current version after a reload or removal (the instance is re-created at the next call).
    fn refresh(&self, current: &mut Current<W>) {
        let (version, plugin) = self.slot.versioned();
        match &plugin {
            None => tracing::debug!(plugin = %self.name, subject = %self.subject,
                "plugin unloaded; using the built-in policy"),
            Some(p) if p.info.kind == W::KIND => tracing::info!(plugin = %self.name, subject = %self.subject,
                "switching to the loaded plugin version"),
            // Only a plugin that appeared after the binding was made can be of another kind (a reload keeps the
            // kind). Said once per version, not at every call.
            Some(p) => tracing::error!(plugin = %self.name, subject = %self.subject,
                "plugin is a {}, not a {}; using the built-in policy", p.info.kind, W::KIND),
        }
        *current = Current { version, plugin, instance: None, seat: None };
    }

    /// Counts a failed call. `error` may hold the plugin's text (its answer, its frame names in a backtrace): it is
    /// escaped and cut like any plugin text before it reaches the log and the quarantine event.
    fn strike(&self, health: &PluginHealth, result: CallResult, error: &str) {
        let error = plain_text(error.to_owned(), MAX_STRIKE_TEXT);
        let instead = if self.shadow.is_some() {
            "shadow plugin failed, nothing to compare for this decision"
        } else {
            "plugin failed, using the built-in policy for this decision"
        };
        tracing::warn!(plugin = %self.name, kind = %W::KIND, subject = %self.subject, %result, "{instead}: {error}");
        health.record(result, Instant::now(), &error);
    }
}

/// A one-line account of a failed plugin call, naming the limit it hit. The error chain may carry a wasm backtrace
/// whose frame names come from the plugin's own name section: escaped and cut like any plugin text.
fn describe(e: &wasmtime::Error, limits: &SandboxLimits) -> String {
    let chain = format!("{e:#}");
    let account = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("missed its {:?} deadline", limits.deadline),
        Some(Trap::StackOverflow) => "overflowed its stack (runaway recursion?)".to_owned(),
        Some(Trap::UnreachableCodeReached) => format!("trapped (a panic or abort in the plugin): {chain}"),
        _ if chain.contains("growing memory") || chain.contains("memory growth failure") => {
            format!("hit its {} MiB memory cap: {chain}", limits.memory_bytes >> 20)
        }
        _ => format!("trapped: {chain}"),
    };
    plain_text(account, MAX_STRIKE_TEXT)
}

/// `e`'s error chain as one escaped line of bounded length, for an error that may come from running plugin code
/// (a start function that traps while instantiating): its wasm backtrace names the plugin's own frames.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    plain_text(format!("{e:#}"), MAX_STRIKE_TEXT)
}

/// Text a plugin hands back (a reason, a message), as the host passes it on: see [`plain_text`], at [`MAX_TEXT`].
pub(crate) fn clamp_text(text: String) -> String {
    plain_text(text, MAX_TEXT)
}

/// `text` safe to put in a log line, an event or a label: control characters are written as escapes (`\n`,
/// `\u{1b}`), so a plugin cannot start a forged log line or send a terminal escape, and the result is cut to `max`
/// bytes on a character boundary (never inside an escape), marked with `…` when cut. Plain short text is returned as
/// is, without a copy.
pub(crate) fn plain_text(text: String, max: usize) -> String {
    if text.len() <= max && !text.contains(char::is_control) {
        return text;
    }
    let mut plain = String::with_capacity(text.len().min(max) + '…'.len_utf8());
    for c in text.chars() {
        let before = plain.len();
        if c.is_control() {
            plain.extend(c.escape_default());
        } else {
            plain.push(c);
        }
        if plain.len() > max {
            plain.truncate(before);
            plain.push('…');
            break;
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_text_cuts_on_char_boundaries() {
        assert_eq!(clamp_text("short".into()), "short");
        let cut = clamp_text("é".repeat(MAX_TEXT));
        assert!(cut.len() <= MAX_TEXT + '…'.len_utf8() && cut.ends_with('…'));
    }

    #[test]
    fn failure_accounts_are_one_escaped_line_of_bounded_length() {
        let limits = SandboxLimits::default();
        let forged = wasmtime::Error::msg("wasm backtrace:\n    0: 0x2a - x\n2026-01-01 ERROR forged\u{1b}[2J");
        assert_eq!(
            describe(&forged, &limits),
            r"trapped: wasm backtrace:\n    0: 0x2a - x\n2026-01-01 ERROR forged\u{1b}[2J"
        );
        let long = describe(&wasmtime::Error::msg("f".repeat(10 * MAX_STRIKE_TEXT)), &limits);
        assert!(long.len() <= MAX_STRIKE_TEXT + '…'.len_utf8() && long.ends_with('…'), "{}", long.len());
    }

    #[test]
    fn plain_text_escapes_control_characters_and_never_cuts_an_escape() {
        assert_eq!(
            plain_text("ok\n2026-01-01 ERROR forged\u{1b}[2J".into(), 100),
            r"ok\n2026-01-01 ERROR forged\u{1b}[2J"
        );
        assert_eq!(plain_text("tab\there".into(), 100), r"tab\there");
        // `\n` is two bytes: at a limit of 3 it does not fit after "ab".
        assert_eq!(plain_text("ab\ncd".into(), 3), "ab…");
        assert_eq!(plain_text("abc".into(), 3), "abc");
        assert_eq!(plain_text("abcd".into(), 3), "abc…");
    }
}
