//! Quarantine: a circuit breaker on each plugin. Strikes (traps, missed deadlines, invalid output) within a window
//! quarantine the plugin: every binding of it uses its built-in policy until a cool-down passes, then one call is let
//! through on probation. A good probation call releases the plugin; a bad one quarantines it again for twice as long
//! (Envoy's outlier ejection, capped). Also keeps the per-plugin call counters the runtime exports as
//! `aegis_plugin_calls_total{plugin,result}` and `aegis_plugin_quarantined{plugin}`.
//!
//! Owns the bookkeeping only; it never calls a plugin.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::host::PluginKind;

/// When a plugin is quarantined and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Strikes within `window` that quarantine the plugin.
    pub strikes: u32,
    pub window: Duration,
    /// First quarantine length; each further quarantine without a good call in between doubles it.
    pub cool_down: Duration,
    pub max_cool_down: Duration,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        QuarantinePolicy {
            strikes: 3,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(600),
        }
    }
}

/// The result of one plugin call, as counted in `aegis_plugin_calls_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallResult {
    /// The plugin decided.
    Ok,
    /// The plugin trapped: a panic, a stack overflow, its memory cap.
    Trap,
    /// The plugin missed its deadline.
    Timeout,
    /// The plugin returned something the host refuses (too large, not finite); a strike like a trap.
    Invalid,
    /// No instance could be made (instantiation or re-`init` failed); a strike.
    Unavailable,
    /// The plugin was quarantined; the built-in decided without calling it.
    Quarantined,
}

impl CallResult {
    pub const ALL: [CallResult; 6] = [
        CallResult::Ok,
        CallResult::Trap,
        CallResult::Timeout,
        CallResult::Invalid,
        CallResult::Unavailable,
        CallResult::Quarantined,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Trap => "trap",
            CallResult::Timeout => "timeout",
            CallResult::Invalid => "invalid",
            CallResult::Unavailable => "unavailable",
            CallResult::Quarantined => "quarantined",
        }
    }

    fn is_strike(self) -> bool {
        matches!(self, CallResult::Trap | CallResult::Timeout | CallResult::Invalid | CallResult::Unavailable)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time view of one plugin's health, for metrics and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginStats {
    pub plugin: String,
    pub kind: PluginKind,
    /// Calls by result since the host started (monotonic across reloads of the same name).
    pub calls: Vec<(CallResult, u64)>,
    /// Whether the plugin is quarantined now (`aegis_plugin_quarantined`).
    pub quarantined: bool,
    /// How much longer the quarantine lasts (`Some` exactly when `quarantined`); the first call after it is the
    /// probation call.
    pub quarantined_for: Option<Duration>,
    /// How often it was quarantined since the host started.
    pub quarantines_total: u64,
}

impl PluginStats {
    /// Calls with `result` so far.
    pub fn calls(&self, result: CallResult) -> u64 {
        self.calls.iter().find(|(r, _)| *r == result).map_or(0, |(_, n)| *n)
    }
}

/// Something the runtime may want to record as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginEvent {
    /// `plugin` reached its strike limit and is skipped for `cool_down`.
    Quarantined { plugin: String, strikes: u32, cool_down: Duration, last_error: String },
    /// The cool-down passed and a quarantined plugin answered well again.
    Released { plugin: String },
}

/// Receives plugin events; called on the thread that made the plugin call, so it must be quick.
pub type EventListener = Arc<dyn Fn(&PluginEvent) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Listeners(RwLock<Vec<EventListener>>);

impl Listeners {
    pub(crate) fn add(&self, listener: EventListener) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).push(listener);
    }

    fn emit(&self, event: &PluginEvent) {
        for listener in self.0.read().unwrap_or_else(|p| p.into_inner()).iter() {
            listener(event);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    strikes: VecDeque<Instant>,
    quarantined_until: Option<Instant>,
    /// Set when a cool-down ended: the next result decides between release and a longer quarantine.
    probation: bool,
    /// Quarantines since the last good call, for the doubling cool-down.
    rounds: u32,
}

/// Whether a call may go to the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Call,
    Skip,
}

/// One plugin's quarantine state and counters, shared by all its bindings.
pub(crate) struct PluginHealth {
    name: String,
    kind: RwLock<PluginKind>,
    policy: QuarantinePolicy,
    state: Mutex<State>,
    /// Quarantined or on probation: only then do admission and good results need the clock and the lock.
    guarded: AtomicBool,
    calls: [AtomicU64; CallResult::ALL.len()],
    quarantines: AtomicU64,
    listeners: Arc<Listeners>,
}

impl fmt::Debug for PluginHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHealth").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PluginHealth {
    pub(crate) fn new(name: &str, kind: PluginKind, policy: QuarantinePolicy, listeners: Arc<Listeners>) -> Self {
        PluginHealth {
            name: name.to_owned(),
            kind: RwLock::new(kind),
            policy,
            state: Mutex::new(State::default()),
            guarded: AtomicBool::new(false),
            calls: Default::default(),
            quarantines: AtomicU64::new(0),
            listeners,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new version of the plugin was loaded: it starts with a clean record (the counters stay monotonic).
    pub(crate) fn reset(&self, kind: PluginKind) {
        *self.kind.write().unwrap_or_else(|p| p.into_inner()) = kind;
        let mut state = self.state();
        *state = State::default();
        self.guarded.store(false, Ordering::Relaxed);
    }

    /// Decides whether the next call reaches the plugin; counts a skipped call. Lock- and clock-free while the
    /// plugin is in good standing.
    pub(crate) fn admit(&self) -> Admission {
        if self.guarded.load(Ordering::Relaxed) { self.admit_at(Instant::now()) } else { Admission::Call }
    }

    /// Counts a good call if the plugin is in good standing (nothing but a counter to bump, safe under any lock);
    /// `false` leaves it to [`Self::record_ok`].
    pub(crate) fn count_ok_in_good_standing(&self) -> bool {
        let good = !self.guarded.load(Ordering::Relaxed);
        if good {
            self.count(CallResult::Ok);
        }
        good
    }

    /// Counts a good call; while the plugin is quarantined or on probation, through the quarantine bookkeeping.
    pub(crate) fn record_ok(&self) {
        if !self.count_ok_in_good_standing() {
            self.record(CallResult::Ok, Instant::now(), "");
        }
    }

    pub(crate) fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.state();
        match state.quarantined_until {
            Some(until) if now < until => {
                drop(state);
                self.count(CallResult::Quarantined);
                Admission::Skip
            }
            Some(_) => {
                state.quarantined_until = None;
                state.probation = true;
                tracing::info!(plugin = %self.name, "plugin quarantine over; trying it again");
                Admission::Call
            }
            None => Admission::Call,
        }
    }

    /// Counts a call's result; strikes may quarantine the plugin.
    pub(crate) fn record(&self, result: CallResult, now: Instant, error: &str) {
        self.count(result);
        let mut state = self.state();
        if !result.is_strike() {
            if state.probation {
                state.probation = false;
                state.rounds = 0;
                state.strikes.clear();
                if state.quarantined_until.is_none() {
                    self.guarded.store(false, Ordering::Relaxed);
                }
                drop(state);
                tracing::info!(plugin = %self.name, "plugin answered well after its quarantine; released");
                self.listeners.emit(&PluginEvent::Released { plugin: self.name.clone() });
            }
            return;
        }
        if state.quarantined_until.is_some() {
            return;
        }
        state.strikes.push_back(now);
        while state.strikes.front().is_some_and(|&t| now.saturating_duration_since(t) > self.policy.window) {
            state.strikes.pop_front();
        }
        let strikes = u32::try_from(state.strikes.len()).unwrap_or(u32::MAX);
        if !state.probation && strikes < self.policy.strikes.max(1) {
            return;
        }
        let factor = 2u32.saturating_pow(state.rounds.min(16));
        let cool_down =
            self.policy.cool_down.saturating_mul(factor).min(self.policy.max_cool_down.max(self.policy.cool_down));
        state.quarantined_until = Some(now + cool_down);
        self.guarded.store(true, Ordering::Relaxed);
        state.probation = false;
        state.rounds = state.rounds.saturating_add(1);
        state.strikes.clear();
        drop(state);
        self.quarantines.fetch_add(1, Ordering::Relaxed);
        tracing::error!(plugin = %self.name, strikes, ?cool_down,
            "plugin quarantined after {strikes} strike(s), built-in policy used for {cool_down:?}; last: {error}");
        self.listeners.emit(&PluginEvent::Quarantined {
            plugin: self.name.clone(),
            strikes,
            cool_down,
            last_error: error.to_owned(),
        });
    }

    fn count(&self, result: CallResult) {
        self.calls[result.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self, now: Instant) -> PluginStats {
        let quarantined_for =
            self.state().quarantined_until.and_then(|until| until.checked_duration_since(now)).filter(|d| !d.is_zero());
        PluginStats {
            plugin: self.name.clone(),
            kind: *self.kind.read().unwrap_or_else(|p| p.into_inner()),
            calls: CallResult::ALL.iter().map(|&r| (r, self.calls[r.index()].load(Ordering::Relaxed))).collect(),
            quarantined: quarantined_for.is_some(),
            quarantined_for,
            quarantines_total: self.quarantines.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(strikes: u32) -> (PluginHealth, Arc<Mutex<Vec<PluginEvent>>>) {
        let listeners = Arc::new(Listeners::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        listeners.add(Arc::new(move |e: &PluginEvent| sink.lock().unwrap().push(e.clone())));
        let policy = QuarantinePolicy {
            strikes,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(5),
            max_cool_down: Duration::from_secs(12),
        };
        (PluginHealth::new("p", PluginKind::TripPredicate, policy, listeners), seen)
    }

    #[test]
    fn strikes_within_the_window_quarantine_then_probation_releases() {
        let (h, events) = health(3);
        let t0 = Instant::now();
        h.record(CallResult::Trap, t0, "boom");
        h.record(CallResult::Ok, t0, "");
        h.record(CallResult::Timeout, t0 + Duration::from_secs(1), "slow");
        assert_eq!(h.admit_at(t0 + Duration::from_secs(1)), Admission::Call);
        h.record(CallResult::Trap, t0 + Duration::from_secs(2), "boom");
        let stats = h.stats(t0 + Duration::from_secs(2));
        assert!(stats.quarantined);
        assert_eq!(stats.quarantined_for, Some(Duration::from_secs(5)));
        assert_eq!(h.stats(t0 + Duration::from_secs(6)).quarantined_for, Some(Duration::from_secs(1)));
        assert_eq!(h.admit_at(t0 + Duration::from_secs(6)), Admission::Skip);
        assert_eq!(h.admit_at(t0 + Duration::from_secs(8)), Admission::Call);
        h.record(CallResult::Ok, t0 + Duration::from_secs(8), "");
        let stats = h.stats(t0 + Duration::from_secs(8));
        assert!(!stats.quarantined);
        assert_eq!(stats.quarantined_for, None);
        assert_eq!((stats.calls(CallResult::Trap), stats.calls(CallResult::Quarantined)), (2, 1));
        assert_eq!(stats.quarantines_total, 1);
        let events = events.lock().unwrap();
        assert!(matches!(&events[0], PluginEvent::Quarantined { strikes: 3, last_error, .. } if last_error == "boom"));
        assert_eq!(events[1], PluginEvent::Released { plugin: "p".into() });
    }

    #[test]
    fn old_strikes_expire() {
        let (h, _) = health(2);
        let t0 = Instant::now();
        h.record(CallResult::Trap, t0, "");
        h.record(CallResult::Trap, t0 + Duration::from_secs(11), "");
        assert!(!h.stats(t0 + Duration::from_secs(11)).quarantined);
    }

    #[test]
    fn a_bad_probation_call_doubles_the_cool_down_up_to_the_cap() {
        let (h, events) = health(1);
        let t0 = Instant::now();
        h.record(CallResult::Trap, t0, "");
        assert_eq!(h.admit_at(t0 + Duration::from_secs(5)), Admission::Call);
        h.record(CallResult::Trap, t0 + Duration::from_secs(5), "");
        assert_eq!(h.admit_at(t0 + Duration::from_secs(14)), Admission::Skip);
        assert_eq!(h.admit_at(t0 + Duration::from_secs(15)), Admission::Call);
        h.record(CallResult::Invalid, t0 + Duration::from_secs(15), "");
        let cool_downs: Vec<Duration> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                PluginEvent::Quarantined { cool_down, .. } => Some(*cool_down),
                PluginEvent::Released { .. } => None,
            })
            .collect();
        assert_eq!(cool_downs, [Duration::from_secs(5), Duration::from_secs(10), Duration::from_secs(12)]);
    }
}
