//! Named breakers for many services (seed 002): breakers created from defaults plus per-service overrides
//! ([`ManagerConfig`]), lifetime counters (total / success / failed / rejected), a health summary, manual control
//! (reset one, reset all, force open) and a bounded event history with observers. Owns the registry and the event
//! log; every state decision stays in [`Breaker`].
//!
//! Locking: the registry lock is only held to look up or insert an `Arc<Breaker>`, never while a breaker runs, and
//! observers are called with no lock held, so an observer may call back into the manager.

mod config;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use self::config::{
    BreakerConfig, BreakerOverride, ENV_FIELDS, ManagerConfig, SharedRetries, env_name, parse_duration,
};
use crate::breaker::{Breaker, Counts, Force, Permit, Settings, State, StateChange, StateListener};
use crate::clock::Clock;
use crate::error::{CallError, ManagerError, Rejected};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A breaker changed state (automatic or manual).
    StateChange {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// A call was refused through the manager.
    Rejected {
        /// Why.
        reason: RejectedKind,
    },
    /// A breaker was registered.
    Created,
}

/// Serialisable mirror of [`Rejected`] for events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectedKind {
    /// [`Rejected::Open`].
    Open,
    /// [`Rejected::TooManyRequests`].
    TooManyRequests,
}

impl From<Rejected> for RejectedKind {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Open => RejectedKind::Open,
            Rejected::TooManyRequests => RejectedKind::TooManyRequests,
        }
    }
}

/// One entry of the event history (seed 002 `GetEventHistory`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Monotonic sequence number, unique per manager.
    pub seq: u64,
    /// Breaker name.
    pub breaker: String,
    /// What happened.
    pub kind: EventKind,
    /// The `now` of the operation.
    pub at: Instant,
    /// Human-readable detail (e.g. the trip reason).
    pub message: String,
}

/// Receives every event, after it is stored, with no manager lock held.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Handle for [`Manager::unsubscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObserverId(u64);

/// Lifetime counters of one breaker; unlike [`Counts`] they survive state changes and resets (they feed
/// Prometheus counters, which must not go backwards).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Calls attempted through the manager (admitted or rejected).
    pub total: u64,
    /// Successful outcomes.
    pub success: u64,
    /// Failed outcomes.
    pub failed: u64,
    /// Rejected calls.
    pub rejected: u64,
}

/// Per-breaker view for metrics and health (seed 002 `GetAllMetrics`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerMetrics {
    /// Current state.
    pub state: State,
    /// Counts of the current generation.
    pub counts: Counts,
    /// Lifetime counters.
    pub totals: Totals,
    /// `success / (success + failed)` in percent over the lifetime; `None` before any outcome.
    pub success_rate: Option<f64>,
}

/// seed 002 `GetHealthStatus`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthSummary {
    /// Percentage of breakers that pass calls (closed, forced closed, disabled); 100 with no breakers.
    pub overall_health: f64,
    /// Number of breakers.
    pub total: usize,
    /// Breakers that pass calls.
    pub healthy: usize,
    /// Breakers per state (every state present, zero included).
    pub by_state: BTreeMap<State, usize>,
    /// Per-breaker details.
    pub services: BTreeMap<String, BreakerMetrics>,
}

#[derive(Debug, Default)]
struct Stats {
    total: AtomicU64,
    success: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
}

impl Stats {
    fn totals(&self) -> Totals {
        Totals {
            total: self.total.load(Ordering::Relaxed),
            success: self.success.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    breaker: Arc<Breaker>,
    stats: Arc<Stats>,
}

struct EventLog {
    capacity: usize,
    next_seq: AtomicU64,
    buf: Mutex<VecDeque<Event>>,
    observers: RwLock<Vec<(ObserverId, Observer)>>,
    next_observer: AtomicU64,
}

impl EventLog {
    fn publish(&self, breaker: &str, kind: EventKind, at: Instant, message: String) {
        let event = Event {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            breaker: breaker.to_owned(),
            kind,
            at,
            message,
        };
        if self.capacity > 0 {
            let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
            if buf.len() == self.capacity {
                buf.pop_front();
            }
            buf.push_back(event.clone());
        }
        // Snapshot the observer list so an observer may subscribe or unsubscribe from inside its callback.
        let observers: Vec<Observer> =
            self.observers.read().unwrap_or_else(PoisonError::into_inner).iter().map(|(_, o)| Arc::clone(o)).collect();
        for o in observers {
            o(&event);
        }
    }
}

/// The registry of named breakers.
pub struct Manager {
    config: ManagerConfig,
    entries: RwLock<BTreeMap<String, Entry>>,
    log: Arc<EventLog>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("breakers", &self.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// An empty registry; breakers are created on first use from `config`.
    pub fn new(config: ManagerConfig) -> Self {
        let log = Arc::new(EventLog {
            capacity: config.history,
            next_seq: AtomicU64::new(0),
            buf: Mutex::new(VecDeque::with_capacity(config.history.min(1024))),
            observers: RwLock::new(Vec::new()),
            next_observer: AtomicU64::new(0),
        });
        Manager { config, entries: RwLock::new(BTreeMap::new()), log }
    }

    /// The configuration breakers are created from.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// The breaker named `name`, created from the configuration on first use (seed 002 `GetCircuitBreaker`).
    pub fn breaker(&self, name: &str, now: Instant) -> Arc<Breaker> {
        self.entry(name, now).breaker
    }

    /// The breaker named `name` if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Breaker>> {
        self.read().get(name).map(|e| Arc::clone(&e.breaker))
    }

    /// Creates (or replaces) `name` with a custom configuration (seed 002 `CreateServiceCircuitBreaker`).
    pub fn create(&self, name: &str, config: &BreakerConfig, now: Instant) -> Arc<Breaker> {
        let entry = self.build(config.settings(name));
        self.write().insert(name.to_owned(), entry.clone());
        self.announce(name, &entry, config.enabled, now);
        entry.breaker
    }

    /// Registers a breaker built from arbitrary settings (replacing one of the same name). Its own state listener, if
    /// any, keeps being called, after the manager's event log.
    pub fn register(&self, settings: Settings, now: Instant) -> Arc<Breaker> {
        let name = settings.name().to_owned();
        let entry = self.build(settings);
        self.write().insert(name.clone(), entry.clone());
        self.announce(&name, &entry, true, now);
        entry.breaker
    }

    /// A breaker whose transitions feed the event log (and then the settings' own listener).
    fn build(&self, settings: Settings) -> Entry {
        let user = settings.listener().cloned();
        let log = Arc::clone(&self.log);
        let listener: StateListener = Arc::new(move |c: &StateChange| {
            log.publish(&c.breaker, EventKind::StateChange { from: c.from, to: c.to }, c.at, c.reason.clone());
            if let Some(u) = &user {
                u(c);
            }
        });
        Entry { breaker: Arc::new(Breaker::new(settings.on_state_change(listener))), stats: Arc::default() }
    }

    /// Logs the creation and applies `enabled: false` — after insertion and outside the registry lock, so the events
    /// are in a sensible order and listeners may call back.
    fn announce(&self, name: &str, entry: &Entry, enabled: bool, now: Instant) {
        self.log.publish(name, EventKind::Created, now, String::from("registered"));
        if !enabled {
            entry.breaker.force(now, Force::Disabled);
        }
    }

    /// Removes `name` from the registry (a service was removed from the config). Holders of its `Arc<Breaker>` keep
    /// a working breaker; the manager just stops counting, listing and resetting it. False if there was none.
    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// Names of all breakers, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every breaker's state at `now` (seed 002 `ListCircuitBreakers`).
    pub fn states(&self, now: Instant) -> BTreeMap<String, State> {
        self.entries().into_iter().map(|(n, e)| (n, e.breaker.state(now))).collect()
    }

    /// Admission through the manager: counts the attempt and, when refused, the rejection (and logs an event).
    pub fn try_acquire(&self, name: &str, now: Instant) -> Result<Permit, Rejected> {
        self.admit(name, &self.entry(name, now), now)
    }

    /// [`Self::try_acquire`] on the entry of `name`, already looked up.
    fn admit(&self, name: &str, e: &Entry, now: Instant) -> Result<Permit, Rejected> {
        e.stats.total.fetch_add(1, Ordering::Relaxed);
        e.breaker.try_acquire(now).inspect_err(|r| {
            e.stats.rejected.fetch_add(1, Ordering::Relaxed);
            self.log.publish(name, EventKind::Rejected { reason: (*r).into() }, now, r.to_string());
        })
    }

    /// Records an outcome of a permit from [`Self::try_acquire`].
    pub fn record(&self, name: &str, now: Instant, permit: Permit, success: bool, duration: Duration) {
        let e = self.entry(name, now);
        let counter = if success { &e.stats.success } else { &e.stats.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        e.breaker.record(now, permit, success, duration);
    }

    /// Runs `f` through breaker `name` (seed 002 `ExecuteWithCircuitBreaker`); every `Err` is a failure.
    pub fn execute<T, E, C>(&self, name: &str, clock: &C, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>>
    where
        C: Clock + ?Sized,
    {
        let start = clock.now();
        let permit = self.try_acquire(name, start)?;
        let r = f();
        let end = clock.now();
        self.record(name, end, permit, r.is_ok(), end.saturating_duration_since(start));
        r.map_err(CallError::Inner)
    }

    /// Async [`Self::execute`]. If the future is dropped mid-call, the permit is released without an outcome.
    pub async fn execute_async<T, E, C, Fut>(
        &self,
        name: &str,
        clock: &C,
        f: impl FnOnce() -> Fut,
    ) -> Result<T, CallError<E>>
    where
        C: Clock + ?Sized,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = clock.now();
        // One registry lookup per call: the probe loop runs thousands of these a second.
        let e = self.entry(name, start);
        let permit = self.admit(name, &e, start)?;
        let guard = crate::breaker::PermitGuard::new(&e.breaker, permit);
        let r = f().await;
        let end = clock.now();
        let counter = if r.is_ok() { &e.stats.success } else { &e.stats.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        guard.finish(end, r.is_ok(), end.saturating_duration_since(start));
        r.map_err(CallError::Inner)
    }

    /// Metrics of one breaker at `now`.
    pub fn metrics(&self, name: &str, now: Instant) -> Option<BreakerMetrics> {
        let e = self.read().get(name).cloned()?;
        Some(metrics_of(&e, now))
    }

    /// Metrics of every breaker at `now` (seed 002 `GetAllMetrics`).
    pub fn all_metrics(&self, now: Instant) -> BTreeMap<String, BreakerMetrics> {
        self.entries().into_iter().map(|(n, e)| (n, metrics_of(&e, now))).collect()
    }

    /// Health summary at `now` (seed 002 `GetHealthStatus`).
    pub fn health(&self, now: Instant) -> HealthSummary {
        let services = self.all_metrics(now);
        let mut by_state: BTreeMap<State, usize> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for m in services.values() {
            *by_state.entry(m.state).or_default() += 1;
        }
        let total = services.len();
        let healthy = services.values().filter(|m| m.state.metric_value() == 0).count();
        let overall_health = if total == 0 { 100.0 } else { healthy as f64 * 100.0 / total as f64 };
        HealthSummary { overall_health, total, healthy, by_state, services }
    }

    /// Resets one breaker to closed with zero counts (lifetime totals are kept).
    pub fn reset(&self, name: &str, now: Instant) -> Result<(), ManagerError> {
        self.existing(name)?.breaker.reset(now);
        Ok(())
    }

    /// Resets every breaker.
    pub fn reset_all(&self, now: Instant) {
        for (_, e) in self.entries() {
            e.breaker.reset(now);
        }
    }

    /// Forces one breaker open, e.g. for maintenance (seed 002 `ForceOpenCircuitBreaker`).
    pub fn force_open(&self, name: &str, now: Instant) -> Result<(), ManagerError> {
        self.force(name, now, Force::Open)
    }

    /// Any manual override of one breaker.
    pub fn force(&self, name: &str, now: Instant, mode: Force) -> Result<(), ManagerError> {
        self.existing(name)?.breaker.force(now, mode);
        Ok(())
    }

    /// The last `limit` events, oldest first.
    pub fn events(&self, limit: usize) -> Vec<Event> {
        let buf = self.log.buf.lock().unwrap_or_else(PoisonError::into_inner);
        buf.iter().skip(buf.len().saturating_sub(limit)).cloned().collect()
    }

    /// Calls `observer` for every future event.
    pub fn subscribe(&self, observer: Observer) -> ObserverId {
        let id = ObserverId(self.log.next_observer.fetch_add(1, Ordering::Relaxed));
        self.log.observers.write().unwrap_or_else(PoisonError::into_inner).push((id, observer));
        id
    }

    /// Stops calling an observer; false if it was not subscribed.
    pub fn unsubscribe(&self, id: ObserverId) -> bool {
        let mut obs = self.log.observers.write().unwrap_or_else(PoisonError::into_inner);
        let before = obs.len();
        obs.retain(|(i, _)| *i != id);
        obs.len() != before
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cloned list, so no registry lock is held while breakers (and through them listeners) run.
    fn entries(&self) -> Vec<(String, Entry)> {
        self.read().iter().map(|(n, e)| (n.clone(), e.clone())).collect()
    }

    fn existing(&self, name: &str) -> Result<Entry, ManagerError> {
        self.read().get(name).cloned().ok_or_else(|| ManagerError::UnknownBreaker(name.to_owned()))
    }

    fn entry(&self, name: &str, now: Instant) -> Entry {
        if let Some(e) = self.read().get(name) {
            return e.clone();
        }
        let cfg = self.config.resolve(name);
        let fresh = self.build(cfg.settings(name));
        {
            // Insert-if-absent under one write lock: of two threads racing to create `name`, one wins and both get
            // its breaker; the loser's unused breaker never emitted an event.
            let mut w = self.write();
            if let Some(e) = w.get(name) {
                return e.clone();
            }
            w.insert(name.to_owned(), fresh.clone());
        }
        self.announce(name, &fresh, cfg.enabled, now);
        fresh
    }
}

fn metrics_of(e: &Entry, now: Instant) -> BreakerMetrics {
    let totals = e.stats.totals();
    let outcomes = totals.success + totals.failed;
    BreakerMetrics {
        state: e.breaker.state(now),
        counts: e.breaker.counts(),
        totals,
        success_rate: (outcomes > 0).then(|| totals.success as f64 * 100.0 / outcomes as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    fn manager() -> Manager {
        let yaml = "history: 5\ndefaults:\n  failure_threshold: 2\n  timeout: 10s\nservices:\n  git:\n    failure_threshold: 1\n  off:\n    enabled: false\n";
        Manager::new(ManagerConfig::from_yaml(yaml).unwrap())
    }

    #[test]
    fn removed_breakers_leave_the_registry_and_health() {
        let t0 = Instant::now();
        let m = manager();
        m.breaker("git", t0);
        m.breaker("minio", t0);
        assert!(m.remove("git"));
        assert!(!m.remove("git"));
        assert_eq!(m.names(), ["minio"]);
        assert_eq!(m.health(t0).total, 1);
        assert!(m.reset("git", t0).is_err());
    }

    #[test]
    fn breakers_come_from_defaults_and_overrides() {
        let t0 = Instant::now();
        let m = manager();
        let git = m.breaker("git", t0);
        let minio = m.breaker("minio", t0);
        assert!(Arc::ptr_eq(&git, &m.breaker("git", t0)));
        let clock = FakeClock::new(t0);
        let _ = m.execute("git", &clock, || Err::<(), _>("down"));
        assert_eq!(git.current_state(), State::Open);
        let _ = m.execute("minio", &clock, || Err::<(), _>("down"));
        assert_eq!(minio.current_state(), State::Closed);
        assert_eq!(m.breaker("off", t0).current_state(), State::Disabled);
        assert_eq!(m.names(), vec!["git", "minio", "off"]);
        assert!(m.get("nope").is_none());
    }

    #[test]
    fn counters_health_and_events() {
        let t0 = Instant::now();
        let clock = FakeClock::new(t0);
        let m = manager();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let id = m.subscribe(Arc::new(move |e: &Event| s2.lock().unwrap().push(e.kind)));
        assert_eq!(m.execute("git", &clock, || Ok::<_, ()>(1)), Ok(1));
        assert_eq!(m.execute("git", &clock, || Err::<(), _>(())), Err(CallError::Inner(())));
        assert_eq!(m.execute("git", &clock, || Ok::<_, ()>(1)), Err(CallError::CircuitOpen));
        m.breaker("web", t0);
        let met = m.metrics("git", t0).unwrap();
        assert_eq!(met.totals, Totals { total: 3, success: 1, failed: 1, rejected: 1 });
        assert_eq!(met.success_rate, Some(50.0));
        let h = m.health(t0);
        assert_eq!((h.total, h.healthy, h.overall_health), (2, 1, 50.0));
        assert_eq!(h.by_state[&State::Open], 1);
        assert_eq!(h.by_state[&State::HalfOpen], 0);
        let kinds = seen.lock().unwrap().clone();
        assert_eq!(
            kinds,
            vec![
                EventKind::Created,
                EventKind::StateChange { from: State::Closed, to: State::Open },
                EventKind::Rejected { reason: RejectedKind::Open },
                EventKind::Created,
            ]
        );
        assert!(m.unsubscribe(id));
        assert!(!m.unsubscribe(id));
        let last = m.events(2);
        assert_eq!(last.len(), 2);
        assert_eq!(last[0].message, "circuit breaker is open");
        assert!(last[0].seq < last[1].seq);
        assert_eq!(m.states(t0 + Duration::from_secs(10))["git"], State::HalfOpen);
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let m = manager();
        for i in 0..20 {
            m.breaker(&format!("svc{i}"), t0);
        }
        let ev = m.events(100);
        assert_eq!(ev.len(), 5);
        assert_eq!(ev[4].breaker, "svc19");
    }

    #[test]
    fn manual_control() {
        let t0 = Instant::now();
        let m = manager();
        m.breaker("a", t0);
        m.breaker("b", t0);
        m.force_open("a", t0).unwrap();
        m.force("b", t0, Force::Open).unwrap();
        assert!(matches!(m.force_open("zz", t0), Err(ManagerError::UnknownBreaker(n)) if n == "zz"));
        assert_eq!(m.try_acquire("a", t0), Err(Rejected::Open));
        m.reset("a", t0).unwrap();
        assert_eq!(m.get("a").unwrap().current_state(), State::Closed);
        assert_eq!(m.get("b").unwrap().current_state(), State::ForcedOpen);
        m.reset_all(t0);
        assert_eq!(m.get("b").unwrap().current_state(), State::Closed);
        assert!(m.reset("zz", t0).is_err());
    }

    #[test]
    fn observer_may_call_back_into_the_manager() {
        let t0 = Instant::now();
        let m = Arc::new(manager());
        let weak = Arc::downgrade(&m);
        let names = Arc::new(Mutex::new(0));
        let n2 = Arc::clone(&names);
        m.subscribe(Arc::new(move |_e: &Event| {
            if let Some(m) = weak.upgrade() {
                *n2.lock().unwrap() += m.names().len();
                let _ = m.health(t0);
            }
        }));
        m.breaker("x", t0);
        m.force_open("x", t0).unwrap();
        assert_eq!(*names.lock().unwrap(), 2);
    }

    #[test]
    fn register_keeps_the_user_listener() {
        let t0 = Instant::now();
        let m = Manager::new(ManagerConfig::default());
        let hits = Arc::new(Mutex::new(0));
        let h2 = Arc::clone(&hits);
        let s =
            Settings::new("custom").failure_threshold(1).on_state_change(Arc::new(move |_| *h2.lock().unwrap() += 1));
        let b = m.register(s, t0);
        let p = b.try_acquire(t0).unwrap();
        b.record(t0, p, false, Duration::ZERO);
        assert_eq!(*hits.lock().unwrap(), 1);
        assert_eq!(m.events(10).len(), 2);
        assert!(format!("{m:?}").contains("custom"));
    }

    #[test]
    fn async_execute() {
        use std::task::{Context, Poll, Waker};
        let clock = FakeClock::new(Instant::now());
        let m = manager();
        let mut fut = std::pin::pin!(m.execute_async("git", &clock, || async { Ok::<_, ()>(3) }));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(3)));
        assert_eq!(m.metrics("git", clock.now()).unwrap().totals.success, 1);
    }
}
