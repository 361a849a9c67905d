//! The circuit-breaker state machine: states, settings, admission ([`Breaker::try_acquire`]) and outcome recording
//! ([`Breaker::record`]), forced modes, reset and persistence snapshots. Owns every state transition; delegates the
//! trip decision to a [`TripPredicate`] and sample storage to a [`Window`]. Pure: time arrives as `now` arguments.
//!
//! # Concurrency design (the fast path)
//! Two locks, always taken in this order: `inner`, a `Mutex` around the state machine (state, generation, deadline,
//! half-open permits), and the *lane*, a spin lock around the counts and the sliding window. The lane's data are atomics
//! used with `Relaxed` loads and stores, so taking it costs one compare-and-swap and releasing it one plain store, all
//! in safe Rust. Nothing on these paths allocates.
//! - [`Breaker::try_acquire`] in `Closed` (without `interval`), `ForcedClosed` and `Disabled`: one atomic load of a
//!   packed `generation | state` word. No lock.
//! - [`Breaker::try_acquire`] in `Open` before the reset timeout, or `ForcedOpen`: the same load, a deadline
//!   comparison, and one compare-and-swap to count the rejection (in a word that also holds the lane's generation, so
//!   the count lands in the generation the rejection was decided in). No lock.
//! - [`Breaker::record`] in `Closed` (without `interval`): the lane lock only, unless the trip predicate must run (see
//!   below), which then takes the mutex too.
//! - Everything else (half-open, transitions, interval expiry, manual control, snapshots) takes the mutex.
//!
//! # When the trip predicate runs, and under which lock
//! See [`predicate`] for *which* outcomes trigger it. A quick predicate (`may_block() == false`: every built-in and
//! [`ReadyToTrip`]) runs while holding both the mutex and the lane lock, so it sees a consistent state and must not
//! block or call back into the breaker. A blocking one (`may_block() == true`, the trait default, e.g. a WASM plugin)
//! runs with *no* breaker lock held, against a private copy of counts and window allocated at construction;
//! evaluations of one breaker are serialised, and one whose data its predecessor already judged is skipped. Admission
//! and recording never wait for it.
//!
//! The state-change listener is always called after the locks are released, so it may call back into the breaker.
//! Listeners of concurrent transitions may run concurrently; each event is delivered exactly once.
//!
//! # Generations
//! Counts belong to a *generation*; every state change and every closed-state `interval` starts a new one (gobreaker).
//! A [`Permit`] remembers its generation, and the outcome of a permit from an older generation is ignored, so a slow
//! call admitted before a trip cannot close or re-open the breaker afterwards.

mod call;
pub mod counts;
pub mod predicate;
pub mod window;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use self::call::PermitGuard;
pub use self::counts::Counts;
use self::counts::{AtomicCounts, GenerationRejections};
pub use self::predicate::{
    AnyOf, ConsecutiveFailures, EvaluateOn, FailureRate, Never, ReadyToTrip, SlowCallRate, TripContext, TripPredicate,
};
pub use self::window::{Recent, Sample, Window, WindowKind};
use crate::error::ConfigError;
pub use crate::error::Rejected;

/// The state of a breaker. The first three are automatic; the others are set only by [`Breaker::force`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Calls pass; outcomes are counted and may trip the breaker.
    Closed,
    /// Trial calls pass, at most `max_requests` at a time; a failure re-opens, `success_threshold` successes close.
    HalfOpen,
    /// Calls are rejected until `reset_timeout` has elapsed.
    Open,
    /// Calls are rejected until forced back (maintenance, resilience4j `FORCED_OPEN`).
    ForcedOpen,
    /// Calls pass and are counted, but the breaker never trips (resilience4j `METRICS_ONLY`).
    ForcedClosed,
    /// Calls pass and nothing is recorded (resilience4j `DISABLED`).
    Disabled,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 6] =
        [State::Closed, State::HalfOpen, State::Open, State::ForcedOpen, State::ForcedClosed, State::Disabled];

    /// Kebab-case name, as in configuration and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half-open",
            State::Open => "open",
            State::ForcedOpen => "forced-open",
            State::ForcedClosed => "forced-closed",
            State::Disabled => "disabled",
        }
    }

    /// Gauge value (seed 001 `circuit_breaker_state`): 0 passes calls, 1 half-open, 2 rejects calls.
    pub fn metric_value(self) -> i64 {
        match self {
            State::Closed | State::ForcedClosed | State::Disabled => 0,
            State::HalfOpen => 1,
            State::Open | State::ForcedOpen => 2,
        }
    }

    /// Whether the breaker moves in and out of this state by itself.
    pub fn is_automatic(self) -> bool {
        matches!(self, State::Closed | State::HalfOpen | State::Open)
    }

    /// Whether the breaker may move from `self` to `to` *by itself*: closed → open, open → half-open,
    /// half-open → open, half-open → closed. Manual operations (force, reset, restore) may go anywhere.
    pub fn can_transition_to(self, to: State) -> bool {
        matches!(
            (self, to),
            (State::Closed, State::Open)
                | (State::Open, State::HalfOpen)
                | (State::HalfOpen, State::Open)
                | (State::HalfOpen, State::Closed)
        )
    }

    fn code(self) -> u64 {
        self as u64
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s) || st.as_str().replace('-', "_").eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                ConfigError::invalid(
                    "state",
                    s,
                    "expected closed, half-open, open, forced-open, forced-closed or disabled",
                )
            })
    }
}

/// Manual override for [`Breaker::force`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Force {
    /// [`State::ForcedOpen`].
    Open,
    /// [`State::ForcedClosed`].
    Closed,
    /// [`State::Disabled`].
    Disabled,
    /// Back to automatic operation: [`State::Closed`] with fresh counts.
    Auto,
}

/// One state transition, as delivered to the listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The breaker's name.
    pub breaker: String,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why (the trip predicate's reason, "reset timeout elapsed", "forced", ...).
    pub reason: String,
    /// The `now` of the operation that caused it.
    pub at: Instant,
}

/// Called once for every transition, including open → half-open and manual ones, after the breaker's lock is
/// released. A panicking listener panics the caller of the breaker method that caused the transition.
pub type StateListener = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Breaker configuration (gobreaker names plus seed-000 and resilience4j names), built fluently from
/// [`Settings::new`].
#[derive(Clone)]
pub struct Settings {
    // `Box<str>` and nanosecond integers instead of `String`/`Option<Duration>`: each breaker embeds its settings,
    // and these choices keep a 100-call breaker within its 512-byte budget.
    name: Box<str>,
    max_requests: u32,
    /// Closed-state count reset period in nanoseconds; 0 = never.
    interval_ns: u64,
    timeout: Duration,
    success_threshold: Option<u32>,
    /// Slow-call threshold; `Duration::MAX` = no call is slow. A `Duration`, not nanoseconds: comparing two is two
    /// integer compares, while converting the call's duration to nanoseconds costs a multiply on the hot path.
    slow: Duration,
    window: WindowKind,
    minimum_calls: u32,
    trip: Arc<dyn TripPredicate>,
    listener: Option<StateListener>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("max_requests", &self.max_requests)
            .field("interval", &self.count_interval())
            .field("timeout", &self.timeout)
            .field("success_threshold", &self.success_threshold)
            .field("slow_call_duration", &self.slow_threshold())
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("trip", &self.trip)
            .field("listener", &self.listener.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Settings {
    /// Defaults: `max_requests` 1, no `interval` (counts are kept until a state change, as gobreaker's zero interval),
    /// `timeout` 60 s, `success_threshold` = `max_requests`, no slow-call threshold, a 100-call count window with
    /// `minimum_calls` 100 (resilience4j defaults), and trip on 5 consecutive failures — seed-000 semantics (`>= 5`);
    /// gobreaker's own default is `> 5`, i.e. `failure_threshold(6)`.
    pub fn new(name: impl Into<String>) -> Self {
        Settings {
            name: name.into().into_boxed_str(),
            max_requests: 1,
            interval_ns: 0,
            timeout: Duration::from_secs(60),
            success_threshold: None,
            slow: Duration::MAX,
            window: WindowKind::default(),
            minimum_calls: 100,
            trip: Arc::new(ConsecutiveFailures(5)),
            listener: None,
        }
    }

    /// seed-000 `failureThreshold`: trip after `n` consecutive failures (replaces the trip predicate).
    pub fn failure_threshold(self, n: u32) -> Self {
        self.trip_predicate(Arc::new(ConsecutiveFailures(n)))
    }

    /// seed-000 `resetTimeout`: how long the breaker stays open before admitting trial calls.
    pub fn reset_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// gobreaker `Timeout`: same as [`Self::reset_timeout`].
    pub fn timeout(self, d: Duration) -> Self {
        self.reset_timeout(d)
    }

    /// seed-000 `successThreshold`: consecutive half-open successes needed to close (0 is treated as 1).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = Some(n.max(1));
        self
    }

    /// gobreaker `MaxRequests`: trial calls allowed *concurrently* in half-open (0 is treated as 1, as gobreaker).
    pub fn max_requests(mut self, n: u32) -> Self {
        self.max_requests = n.max(1);
        self
    }

    /// gobreaker `Interval`: in the closed state, start a fresh generation (zero counts) this often. `None` or zero
    /// keeps counts until the next state change. The sliding window is not affected.
    pub fn interval(mut self, d: Option<Duration>) -> Self {
        self.interval_ns = d.map_or(0, nanos);
        self
    }

    /// resilience4j `slowCallDurationThreshold`: calls taking at least this long are slow. `None` = never slow.
    pub fn slow_call_duration(mut self, d: Option<Duration>) -> Self {
        self.slow = d.unwrap_or(Duration::MAX);
        self
    }

    /// The sliding window used by rate predicates.
    pub fn window(mut self, w: WindowKind) -> Self {
        self.window = w;
        self
    }

    /// resilience4j `minimumNumberOfCalls`: no rate is computed while the window holds fewer calls.
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// The trip decision (gobreaker `ReadyToTrip`, generalised).
    pub fn trip_predicate(mut self, p: Arc<dyn TripPredicate>) -> Self {
        self.trip = p;
        self
    }

    /// gobreaker-style closure over the counts; see [`ReadyToTrip`].
    pub fn ready_to_trip(self, f: impl Fn(&Counts) -> bool + Send + Sync + 'static) -> Self {
        self.trip_predicate(Arc::new(ReadyToTrip(f)))
    }

    /// gobreaker `OnStateChange`: called for every transition (see [`StateListener`]).
    pub fn on_state_change(mut self, l: StateListener) -> Self {
        self.listener = Some(l);
        self
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames (used by the manager to stamp per-service names onto shared defaults).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into().into_boxed_str();
        self
    }

    /// Configured open duration.
    pub fn open_duration(&self) -> Duration {
        self.timeout
    }

    /// Configured half-open permits.
    pub fn half_open_permits(&self) -> u32 {
        self.max_requests
    }

    /// Half-open successes needed to close (defaults to `max_requests`, as gobreaker).
    pub fn successes_to_close(&self) -> u32 {
        self.success_threshold.unwrap_or(self.max_requests)
    }

    /// Configured closed-state count reset period.
    pub fn count_interval(&self) -> Option<Duration> {
        (self.interval_ns != 0).then(|| Duration::from_nanos(self.interval_ns))
    }

    /// Configured slow-call threshold.
    pub fn slow_threshold(&self) -> Option<Duration> {
        (self.slow != Duration::MAX).then_some(self.slow)
    }

    #[inline]
    /// Whether a call of `d` counts as slow (at least the slow-call threshold).
    pub fn is_slow(&self, d: Duration) -> bool {
        d >= self.slow
    }

    /// Configured window.
    pub fn window_kind(&self) -> WindowKind {
        self.window
    }

    /// Configured minimum calls.
    pub fn min_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// Configured trip predicate.
    pub fn predicate(&self) -> &Arc<dyn TripPredicate> {
        &self.trip
    }

    /// Configured listener.
    pub fn listener(&self) -> Option<&StateListener> {
        self.listener.as_ref()
    }
}

/// Proof of admission: pass it back to [`Breaker::record`] (or [`Breaker::release`] if the call never ran). It is
/// deliberately neither `Clone` nor `Copy`, so one admission yields at most one outcome.
#[must_use = "pass the permit to Breaker::record or Breaker::release, or a half-open trial slot leaks"]
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    generation: u32,
}

impl Permit {
    /// The generation the permit was issued in.
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

/// Persistable breaker state (seed 003 "state persistence"). Time is stored relative, so it survives a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The state.
    pub state: State,
    /// Counts of the current generation.
    pub counts: Counts,
    /// When open: how long until half-open, measured from the last `now` the breaker saw.
    pub open_remaining: Option<Duration>,
}

/// A thread-safe circuit breaker (`Send + Sync`); share it with `Arc`.
// `repr(C)` fixes the field order: the read-mostly fields (settings, `fast`) come first, the lane — written by every
// closed-state outcome — last, with more than a cache line (`eval`, `inner`) between them. Under contention this keeps
// one thread's lane writes from evicting the line another thread reads `fast` and the settings from (measured: the
// two-thread benchmark doubled in speed), without the ~100 bytes of padding a 64-byte-aligned lane would cost.
#[repr(C)]
pub struct Breaker {
    settings: Settings,
    /// `generation << 32 | ADMIT? | state code`, republished under `inner` on every generation change.
    fast: AtomicU64,
    evaluate_on: EvaluateOn,
    /// Whether `call` times its closure: a slow-call threshold, a time window or the predicate reads durations.
    timed: bool,
    successes_to_close: u32,
    /// Present only for blocking predicates: the private copy they are evaluated against, and the serialisation point
    /// of their evaluations.
    eval: Option<Box<Mutex<EvalScratch>>>,
    /// The state machine proper; taken for every transition and every non-closed operation.
    inner: Mutex<Inner>,
    /// Counts and window; the closed-state hot path touches only this and `fast`.
    lane: Lane,
    /// Reference point for `open_until_ns` and `last_seen_ns`: the first `now` a locked operation saw (there is no
    /// clock at construction).
    epoch: OnceLock<Instant>,
    /// Latest `now` seen by a locked operation or a lock-free rejection, as nanoseconds after `epoch`; the reference
    /// point of `Snapshot::open_remaining`. Last writer wins: concurrent callers' instants differ by nanoseconds.
    last_seen_ns: AtomicU64,
    /// `epoch` on the coarse timeline of the clocks that have one (`Clock::coarse_origin_ns`), once one was passed to
    /// `call`; 0 until then. The epoch never changes, so neither does this.
    epoch_coarse_ns: AtomicU64,
    /// In `Open`: the half-open instant as nanoseconds after `epoch`, so a rejection needs no mutex. Written before
    /// `fast` is republished for the new generation, so a reader that saw that generation sees this deadline.
    open_until_ns: AtomicU64,
}

const ADMIT: u64 = 1 << 8;
const STATE_MASK: u64 = 0xFF;

/// Where outcomes are counted. Guarded by its own spin lock whose protected data are atomics used with `Relaxed`
/// loads and stores, so taking it costs one compare-and-swap and releasing it one plain store — cheaper than a
/// `Mutex`, without `unsafe`. Critical sections are a few dozen instructions (plus a non-blocking predicate when a
/// failure is evaluated); waiters spin briefly, then yield their time slice.
///
/// Lock order: `inner`, then `lane`.
#[derive(Debug)]
struct Lane {
    lock: AtomicBool,
    /// The counts of outcomes, of the generation in `rejections`.
    outcomes: AtomicCounts,
    /// The generation being counted (an outcome of another generation is stale) and its rejections, counted without
    /// the lock. A separate field rather than part of `outcomes`, so that it packs with the lock's byte.
    rejections: GenerationRejections,
    window: Window,
}

/// Proof of holding the lane lock; releases it on drop.
struct LaneGuard<'a>(&'a Lane);

impl std::ops::Deref for LaneGuard<'_> {
    type Target = Lane;
    fn deref(&self) -> &Lane {
        self.0
    }
}

impl Drop for LaneGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

impl Lane {
    /// The counts of the current generation (consistent when the lock is held, apart from concurrent rejections).
    fn counts(&self) -> Counts {
        self.outcomes.load(self.rejections.rejected())
    }

    /// Replaces the counts of the current generation.
    fn store_counts(&self, c: &Counts) {
        self.outcomes.store(c);
        self.rejections.set(self.rejections.generation(), c.rejected);
    }

    #[inline]
    fn lock(&self) -> LaneGuard<'_> {
        if self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        LaneGuard(self)
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.lock.load(Ordering::Relaxed) {
                // A holder that was preempted cannot be helped by spinning: after a short while, give up the CPU.
                if spins < 4 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            if self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    generation: u32,
    /// `Open`: when it turns half-open. `Closed` with an interval: when the next generation starts. One field for
    /// both because the states exclude each other (it keeps the breaker small).
    deadline: Option<Instant>,
    /// Half-open permits handed out and not yet returned.
    in_flight: u32,
}

#[derive(Debug)]
struct EvalScratch {
    counts: Counts,
    window: Window,
    /// `(generation, requests)` of the data last judged, so queued evaluations can skip data already judged.
    evaluated: Option<(u32, u32)>,
}

struct Transition {
    from: State,
    to: State,
    reason: Cow<'static, str>,
    at: Instant,
}

/// What the lane's closed-state recording asks its caller to do next.
enum Recorded {
    /// Counted; nothing else to do.
    Done,
    /// The permit belongs to an older generation; ignored.
    Stale,
    /// Counted; the trip predicate wants to see it.
    Evaluate,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.fast.load(Ordering::Relaxed);
        f.debug_struct("Breaker")
            .field("name", &self.settings.name)
            .field("state", &state_from_code(w & STATE_MASK))
            .field("generation", &(w >> 32))
            .finish_non_exhaustive()
    }
}

/// Saturating conversion; durations beyond ~584 years are "forever" anyway.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn state_from_code(c: u64) -> State {
    State::ALL.get(c as usize).copied().unwrap_or(State::Closed)
}

impl Breaker {
    /// A closed breaker. Allocates the window (and, for a blocking predicate, its scratch copy) once, here.
    pub fn new(settings: Settings) -> Self {
        let trip = &settings.trip;
        let eval = trip.may_block().then(|| {
            Box::new(Mutex::new(EvalScratch {
                counts: Counts::default(),
                window: Window::new(settings.window),
                evaluated: None,
            }))
        });
        let lane = Lane {
            lock: AtomicBool::new(false),
            outcomes: AtomicCounts::default(),
            rejections: GenerationRejections::default(),
            window: Window::new(settings.window),
        };
        let inner = Inner { state: State::Closed, generation: 0, deadline: None, in_flight: 0 };
        let timed = settings.slow_threshold().is_some()
            || matches!(settings.window, WindowKind::Time { .. })
            || trip.reads_durations();
        let breaker = Breaker {
            evaluate_on: trip.evaluate_on(),
            timed,
            successes_to_close: settings.successes_to_close(),
            settings,
            fast: AtomicU64::new(0),
            lane,
            inner: Mutex::new(inner),
            eval,
            epoch: OnceLock::new(),
            last_seen_ns: AtomicU64::new(0),
            epoch_coarse_ns: AtomicU64::new(0),
            open_until_ns: AtomicU64::new(0),
        };
        // With an interval the first generation's expiry is only known at the first locked call (no clock here), so
        // the fast path stays off until then.
        let g = breaker.lock();
        breaker.publish(&g);
        drop(g);
        breaker
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Asks to run a call. Performs the open → half-open transition once `reset_timeout` has elapsed.
    ///
    /// Closed (without interval), forced-closed and disabled breakers answer with one atomic load.
    ///
    /// An open breaker whose reset timeout has not elapsed, and a forced-open one, reject without the state
    /// machine's mutex (one atomic compare-and-swap, to count the rejection).
    #[inline]
    pub fn try_acquire(&self, now: Instant) -> Result<Permit, Rejected> {
        let w = self.fast.load(Ordering::Acquire);
        if w & ADMIT != 0 {
            return Ok(Permit { generation: (w >> 32) as u32 });
        }
        let state = w & STATE_MASK;
        if (state == State::ForcedOpen.code() || (state == State::Open.code() && self.still_open(now)))
            && self.count_rejection((w >> 32) as u32)
        {
            return Err(Rejected::Open);
        }
        self.try_acquire_locked(now)
    }

    #[inline]
    fn still_open(&self, now: Instant) -> bool {
        let Some(epoch) = self.epoch.get() else { return false };
        let now_ns = nanos(now.saturating_duration_since(*epoch));
        self.last_seen_ns.store(now_ns, Ordering::Relaxed);
        now_ns < self.open_until_ns.load(Ordering::Acquire)
    }

    /// Remembers `now` as the latest instant seen (see `last_seen_ns`).
    fn see(&self, now: Instant) {
        let epoch = *self.epoch.get_or_init(|| now);
        self.last_seen_ns.store(nanos(now.saturating_duration_since(epoch)), Ordering::Relaxed);
    }

    /// Counts a rejection if the lane is still on `generation` (else the caller takes the locked path). Lock-free.
    #[inline]
    fn count_rejection(&self, generation: u32) -> bool {
        self.lane.rejections.count(generation)
    }

    fn try_acquire_locked(&self, now: Instant) -> Result<Permit, Rejected> {
        let mut g = self.lock();
        self.see(now);
        let t = self.advance(&mut g, now);
        let r = match g.state {
            State::Closed | State::ForcedClosed | State::Disabled => Ok(Permit { generation: g.generation }),
            State::HalfOpen if g.in_flight < self.settings.max_requests => {
                g.in_flight += 1;
                Ok(Permit { generation: g.generation })
            }
            State::Open | State::ForcedOpen => Err(Rejected::Open),
            State::HalfOpen => Err(Rejected::TooManyRequests),
        };
        if r.is_err() {
            // Under `inner` the lane's generation is `g.generation`, so this counts.
            self.lane.rejections.count(g.generation);
        }
        drop(g);
        self.notify(t);
        r
    }

    /// Records the outcome of an admitted call. May trip (closed), re-open or close (half-open). Outcomes of permits
    /// from an older generation are ignored. `duration` decides slowness and is kept in the window.
    ///
    /// In the closed state (without `interval`) this takes only the lane's spin lock; the state machine's mutex is
    /// taken only when the trip predicate must run.
    #[inline]
    pub fn record(&self, now: Instant, permit: Permit, success: bool, duration: Duration) {
        let slow = self.settings.is_slow(duration);
        let w = self.fast.load(Ordering::Acquire);
        // Closed (state code 0), fast admission on, and the permit is of the published generation.
        if w & (ADMIT | STATE_MASK) == ADMIT && (w >> 32) as u32 == permit.generation {
            match self.record_in_lane(|| now, permit.generation, success, slow, duration) {
                Recorded::Done | Recorded::Stale => {}
                Recorded::Evaluate => self.evaluate_after_lane(now, permit.generation),
            }
            return;
        }
        self.record_locked(now, permit, success, slow, duration);
    }

    /// Counts a closed-state outcome if the lane is still on `generation`. `now` is read only for a time window.
    #[inline(always)]
    fn record_in_lane(
        &self,
        now: impl FnOnce() -> Instant,
        generation: u32,
        success: bool,
        slow: bool,
        duration: Duration,
    ) -> Recorded {
        let lane = self.lane.lock();
        // Re-checked under the lane lock: a transition may have happened since the caller looked at `fast`.
        if lane.rejections.generation() != generation {
            return Recorded::Stale;
        }
        lane.outcomes.on_outcome(success, slow);
        let min = self.settings.minimum_calls as usize;
        let before = lane.window.len();
        lane.window.record_shared(now, success, slow, duration);
        let reached_min = before < min && lane.window.len() >= min;
        if predicate::wants_evaluation(self.evaluate_on, success, slow, reached_min) {
            Recorded::Evaluate
        } else {
            Recorded::Done
        }
    }

    /// The trip decision after a lane-recorded outcome: takes the state machine's lock (a transition needs it).
    #[inline(never)]
    fn evaluate_after_lane(&self, now: Instant, generation: u32) {
        let mut g = self.lock();
        if g.state != State::Closed || g.generation != generation {
            return;
        }
        let (t, outside) = self.evaluate_locked(&mut g, now);
        drop(g);
        self.notify(t);
        if outside {
            self.evaluate_outside(now);
        }
    }

    /// Runs a non-blocking predicate in place (under both locks); for a blocking one, asks the caller to run
    /// [`Self::evaluate_outside`] once the locks are released.
    fn evaluate_locked(&self, g: &mut Inner, now: Instant) -> (Option<Transition>, bool) {
        if self.eval.is_some() {
            return (None, true);
        }
        let verdict = {
            let lane = self.lane.lock();
            let counts = lane.counts();
            let ctx = TripContext::new(&counts, &lane.window, self.settings.minimum_calls).in_generation(g.generation);
            self.settings.trip.should_trip(&ctx)
        };
        (verdict.map(|reason| self.transition(g, State::Open, now, reason.into())), false)
    }

    /// `record` for everything but a closed breaker on the fast path: half-open, forced-closed, closed with an
    /// interval (time decides the generation), and outcomes whose generation the fast path could not confirm.
    #[inline(never)]
    fn record_locked(&self, now: Instant, permit: Permit, success: bool, slow: bool, duration: Duration) {
        let mut g = self.lock();
        let t1 = self.advance(&mut g, now);
        if permit.generation != g.generation {
            drop(g);
            self.notify(t1);
            return;
        }
        let mut t2 = None;
        let mut outside = false;
        match g.state {
            State::Closed => {
                if let Recorded::Evaluate = self.record_in_lane(|| now, g.generation, success, slow, duration) {
                    (t2, outside) = self.evaluate_locked(&mut g, now);
                }
            }
            State::HalfOpen => {
                g.in_flight = g.in_flight.saturating_sub(1);
                let consecutive = {
                    let lane = self.lane.lock();
                    lane.outcomes.on_outcome(success, slow);
                    lane.counts().consecutive_successes
                };
                if !success {
                    t2 = Some(self.transition(&mut g, State::Open, now, "failure in half-open state".into()));
                } else if consecutive >= self.successes_to_close {
                    let reason = format!("{consecutive} consecutive successes in half-open state");
                    t2 = Some(self.transition(&mut g, State::Closed, now, reason.into()));
                }
            }
            State::ForcedClosed => {
                let lane = self.lane.lock();
                lane.outcomes.on_outcome(success, slow);
                lane.window.record_shared(|| now, success, slow, duration);
            }
            // Unreachable with a current-generation permit (these states never hand one out, except `Disabled`,
            // which by definition records nothing).
            State::Open | State::ForcedOpen | State::Disabled => {}
        }
        drop(g);
        self.notify(t1);
        self.notify(t2);
        if outside {
            self.evaluate_outside(now);
        }
    }

    /// Gives back a permit whose call never ran (cancelled, panicked) without recording an outcome, freeing its
    /// half-open trial slot.
    pub fn release(&self, permit: Permit) {
        let mut g = self.lock();
        if permit.generation == g.generation && g.state == State::HalfOpen {
            g.in_flight = g.in_flight.saturating_sub(1);
        }
    }

    /// The state at `now`. Like gobreaker's `State()`, this performs a due open → half-open transition (and notifies
    /// the listener), so it reports `HalfOpen` as soon as `reset_timeout` has elapsed.
    pub fn state(&self, now: Instant) -> State {
        let mut g = self.lock();
        self.see(now);
        let t = self.advance(&mut g, now);
        let s = g.state;
        drop(g);
        self.notify(t);
        s
    }

    /// The state as of the last operation, without advancing time (no transition, no lock).
    pub fn current_state(&self) -> State {
        state_from_code(self.fast.load(Ordering::Acquire) & STATE_MASK)
    }

    /// The current generation (bumped by every state change and closed-state interval); permits carry it.
    pub fn generation(&self) -> u32 {
        (self.fast.load(Ordering::Acquire) >> 32) as u32
    }

    /// Counts of the current generation (a consistent snapshot).
    pub fn counts(&self) -> Counts {
        self.lane.lock().counts()
    }

    /// When open: the instant it becomes half-open.
    pub fn opened_until(&self) -> Option<Instant> {
        let g = self.lock();
        g.deadline.filter(|_| g.state == State::Open)
    }

    /// Half-open trial calls currently admitted and not yet recorded or released.
    pub fn half_open_in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// Manual override; `Force::Auto` returns to automatic operation in `Closed` with fresh counts.
    pub fn force(&self, now: Instant, mode: Force) {
        let (to, reason) = match mode {
            Force::Open => (State::ForcedOpen, "forced open"),
            Force::Closed => (State::ForcedClosed, "forced closed"),
            Force::Disabled => (State::Disabled, "disabled"),
            Force::Auto => (State::Closed, "returned to automatic operation"),
        };
        self.set_state(now, to, reason.into());
    }

    /// Back to `Closed` with zero counts and an empty window, whatever the state.
    pub fn reset(&self, now: Instant) {
        self.set_state(now, State::Closed, "reset".into());
    }

    /// State and counts for persistence. `open_remaining` is measured from the latest `now` the breaker saw.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let open_remaining = match (g.state, g.deadline) {
            (State::Open, Some(until)) => {
                let seen =
                    self.epoch.get().map(|e| *e + Duration::from_nanos(self.last_seen_ns.load(Ordering::Relaxed)));
                Some(seen.map_or(Duration::ZERO, |seen| until.saturating_duration_since(seen)))
            }
            _ => None,
        };
        Snapshot { state: g.state, counts: self.counts(), open_remaining }
    }

    /// Restores a [`Snapshot`] at `now` (a new generation; the window starts empty; a restored half-open breaker has
    /// no trials in flight). Notifies the listener if the state changes.
    pub fn restore(&self, now: Instant, s: &Snapshot) {
        let mut g = self.lock();
        let from = g.state;
        self.start_generation(&mut g, s.state, now);
        self.lane.lock().store_counts(&s.counts);
        if s.state == State::Open {
            g.deadline = now.checked_add(s.open_remaining.unwrap_or(Duration::ZERO));
            // A lock-free reader between the two stores used the timeout-based deadline of the same (restored)
            // generation: at worst one call is rejected, or sent to the locked path, a moment early or late.
            self.set_open_deadline(&g, now);
        }
        drop(g);
        if from != s.state {
            self.notify(Some(Transition { from, to: s.state, reason: "restored from snapshot".into(), at: now }));
        }
    }

    /// Heap bytes owned by this breaker (window storage, plus the scratch copy for blocking predicates). Together with
    /// `size_of::<Breaker>()` this is its whole footprint, apart from the settings' shared `Arc`s and name.
    pub fn heap_bytes(&self) -> usize {
        let scratch = self.eval.as_ref().map_or(0, |e| {
            std::mem::size_of::<Mutex<EvalScratch>>()
                + e.lock().unwrap_or_else(PoisonError::into_inner).window.heap_bytes()
        });
        self.lane.window.heap_bytes() + scratch
    }

    fn set_state(&self, now: Instant, to: State, reason: Cow<'static, str>) {
        let mut g = self.lock();
        let from = g.state;
        self.see(now);
        let t = if from == to {
            self.start_generation(&mut g, to, now);
            None
        } else {
            Some(self.transition(&mut g, to, now, reason))
        };
        drop(g);
        self.notify(t);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No invariant spans a panic point: the only foreign code run under the lock is a non-blocking predicate,
        // called after the counts are consistent. So a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies time-driven changes due at `now`: the closed-state interval and open → half-open.
    fn advance(&self, g: &mut Inner, now: Instant) -> Option<Transition> {
        match g.state {
            State::Closed => {
                if let Some(interval) = self.settings.count_interval()
                    && g.deadline.is_none_or(|until| now >= until)
                {
                    // First locked call after construction only arms the expiry; later expiries start a generation.
                    if g.deadline.is_some() {
                        self.start_generation(g, State::Closed, now);
                    }
                    g.deadline = now.checked_add(interval);
                }
                None
            }
            State::Open if g.deadline.is_some_and(|until| now >= until) => {
                Some(self.transition(g, State::HalfOpen, now, "reset timeout elapsed".into()))
            }
            _ => None,
        }
    }

    fn transition(&self, g: &mut Inner, to: State, now: Instant, reason: Cow<'static, str>) -> Transition {
        let from = g.state;
        debug_assert!(from != to);
        self.start_generation(g, to, now);
        Transition { from, to, reason, at: now }
    }

    /// Enters `to` with a fresh generation: zero counts, empty window, no trials in flight, fresh deadlines.
    fn start_generation(&self, g: &mut Inner, to: State, now: Instant) {
        g.state = to;
        g.generation = g.generation.wrapping_add(1);
        g.in_flight = 0;
        self.see(now);
        g.deadline = match to {
            State::Open => now.checked_add(self.settings.timeout),
            State::Closed => self.settings.count_interval().and_then(|i| now.checked_add(i)),
            State::HalfOpen | State::ForcedOpen | State::ForcedClosed | State::Disabled => None,
        };
        if to == State::Open {
            self.set_open_deadline(g, now);
        }
        {
            let lane = self.lane.lock();
            lane.outcomes.store(&Counts::default());
            lane.rejections.set(g.generation, 0);
            lane.window.clear_shared();
        }
        self.publish(g);
    }

    /// Mirrors `g.deadline` into `open_until_ns` for the lock-free rejection path.
    fn set_open_deadline(&self, g: &Inner, now: Instant) {
        let epoch = *self.epoch.get_or_init(|| now);
        let until = g.deadline.map_or(u64::MAX, |d| nanos(d.saturating_duration_since(epoch)));
        self.open_until_ns.store(until, Ordering::Release);
    }

    fn publish(&self, g: &Inner) {
        let admit = match g.state {
            State::Closed => self.settings.interval_ns == 0,
            State::ForcedClosed | State::Disabled => true,
            State::HalfOpen | State::Open | State::ForcedOpen => false,
        };
        let w = (u64::from(g.generation) << 32) | if admit { ADMIT } else { 0 } | g.state.code();
        self.fast.store(w, Ordering::Release);
    }

    #[inline]
    fn notify(&self, t: Option<Transition>) {
        if let Some(t) = t {
            self.notify_listener(t);
        }
    }

    #[cold]
    #[inline(never)]
    fn notify_listener(&self, t: Transition) {
        if let Some(l) = &self.settings.listener {
            l(&StateChange {
                breaker: self.settings.name.to_string(),
                from: t.from,
                to: t.to,
                reason: t.reason.into_owned(),
                at: t.at,
            });
        }
    }

    /// Runs a blocking predicate outside every breaker lock. Evaluations of one breaker are serialised by the scratch
    /// lock; a queued evaluation whose data was already judged by its predecessor is skipped.
    fn evaluate_outside(&self, now: Instant) {
        let Some(eval) = &self.eval else { return };
        let mut e = eval.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = {
            let g = self.lock();
            if g.state != State::Closed {
                return;
            }
            let lane = self.lane.lock();
            // (generation, requests) identifies the data: every recorded outcome bumps `requests`.
            let version = (g.generation, lane.outcomes.requests());
            if e.evaluated == Some(version) {
                return;
            }
            let EvalScratch { counts, window, evaluated } = &mut *e;
            *counts = lane.counts();
            window.copy_from(&lane.window);
            *evaluated = Some(version);
            g.generation
        };
        let ctx = TripContext::new(&e.counts, &e.window, self.settings.minimum_calls).in_generation(generation);
        let verdict = self.settings.trip.should_trip(&ctx);
        let Some(reason) = verdict else { return };
        let mut g = self.lock();
        // The verdict is about a generation; if the breaker moved on meanwhile, it no longer applies.
        let t = (g.state == State::Closed && g.generation == generation)
            .then(|| self.transition(&mut g, State::Open, now, reason.into()));
        drop(g);
        drop(e);
        self.notify(t);
    }
}

#[cfg(test)]
mod tests;
