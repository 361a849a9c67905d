//! The injected time source. Core code never reads the wall clock itself: state machines take `now: Instant`
//! arguments, and the few helpers that must time a closure (`Breaker::call`) take a [`Clock`]. Owns that seam, a fake
//! clock for deterministic tests, and two system clocks with a cheap answer for hot-path deadline checks:
//! [`MonotonicClock`] (the kernel's coarse clock) and [`TickedClock`] (a reading cached by the caller's ticker). They
//! are the only place here that reads the system clock, and only when a caller injects them; neither starts a thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A source of monotonic instants. The runtime passes `&std::time::Instant::now`; tests pass a [`FakeClock`].
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Nanoseconds elapsed since `since` as `(at_least, slack)`: the time [`Self::now`] would report lies within
    /// `at_least ..= at_least + slack` after `since`. A hot path that only compares against a far deadline (an open
    /// breaker's) can decide from this without a precise read. The default answers from the clock's coarse timeline
    /// if it has one ([`Self::coarse_origin_ns`]), else reads [`Self::now`] (`slack` 0).
    #[inline]
    fn elapsed_ns_bounds(&self, since: Instant) -> (u64, u64) {
        match self.coarse_origin_ns(since) {
            Some(origin) => self.coarse_elapsed_ns_bounds(origin),
            None => (nanos(self.now().saturating_duration_since(since)), 0),
        }
    }

    /// For a caller that measures from the same `since` again and again (an open breaker from its epoch): `since` on
    /// the clock's coarse timeline, to keep and pass to [`Self::coarse_elapsed_ns_bounds`], which then spares the
    /// `Instant` arithmetic of [`Self::elapsed_ns_bounds`] (a third of a rejection's cost). `None` (the default): no
    /// coarse timeline. Every clock that returns an origin uses the same timeline (`CLOCK_MONOTONIC` nanoseconds), and
    /// an origin is never earlier than `since` on it, so an origin from one such clock only under-estimates the time
    /// elapsed read through another.
    #[inline]
    fn coarse_origin_ns(&self, since: Instant) -> Option<u64> {
        let _ = since;
        None
    }

    /// [`Self::elapsed_ns_bounds`] from an origin of [`Self::coarse_origin_ns`]. The default knows nothing (`0`,
    /// unbounded slack): the caller then reads [`Self::now`].
    #[inline]
    fn coarse_elapsed_ns_bounds(&self, origin_ns: u64) -> (u64, u64) {
        let _ = origin_ns;
        (0, u64::MAX)
    }
}

impl<F: Fn() -> Instant> Clock for F {
    fn now(&self) -> Instant {
        self()
    }
}

/// Saturating conversion; durations beyond ~584 years are "forever" anyway.
#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The system's monotonic clock: [`Clock::now`] is `Instant::now()`, while [`Clock::elapsed_ns_bounds`] reads the
/// kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`, a few nanoseconds through the vDSO instead of ~25 for a
/// precise read). That clock is the same timeline as `Instant` (`CLOCK_MONOTONIC`), updated once per scheduler tick;
/// it is never ahead of the precise one and lags it by at most a tick (1–10 ms) on a CPU whose tick runs. The slack
/// allowed for is [`MonotonicClock::SLACK`], far above a tick, so a breaker reads the precise clock in the last
/// 50 ms before its deadline and decides exactly as with `Instant::now()`. (Only a `nohz_full` CPU that idles its
/// tick for longer could see a rejection up to that extra lag late.) Elsewhere than Linux and Android, the default
/// precise answer is used.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    /// An `Instant` and, read just after it, the coarse-clock-compatible nanoseconds of the same timeline: mapping
    /// through them can only under-estimate elapsed time, which the slack then covers.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    anchor: (Instant, u64),
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock {
    /// How far the coarse reading may fall short of the precise one (see the type's docs).
    pub const SLACK: Duration = Duration::from_millis(50);

    /// Anchors the coarse timeline to `Instant` once (a precise read of each).
    pub fn new() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let at = Instant::now();
            let raw = timespec_ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic));
            MonotonicClock { anchor: (at, raw) }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        MonotonicClock {}
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn timespec_ns(t: rustix::time::Timespec) -> u64 {
    // CLOCK_MONOTONIC is non-negative and its nanoseconds are below 10⁹.
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn coarse_origin_ns(&self, since: Instant) -> Option<u64> {
        Some(self.origin_ns(since))
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn coarse_elapsed_ns_bounds(&self, origin_ns: u64) -> (u64, u64) {
        let coarse = timespec_ns(rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse));
        (coarse.saturating_sub(origin_ns), nanos(Self::SLACK))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl MonotonicClock {
    /// `since` on the raw timeline, through the anchor: never earlier than the true value (the raw half of the
    /// anchor was read after its `Instant`).
    #[inline]
    fn origin_ns(&self, since: Instant) -> u64 {
        let (at, raw) = self.anchor;
        if since >= at {
            raw.saturating_add(nanos(since.duration_since(at)))
        } else {
            raw.saturating_sub(nanos(at.duration_since(since)))
        }
    }
}

/// The system's monotonic clock with a cached reading for deadline checks, kept fresh by a ticker the caller runs:
/// [`Clock::now`] is `Instant::now()`, while [`Clock::elapsed_ns_bounds`] is one atomic load of the time of the latest
/// [`TickedClock::tick`] — about 1 ns, against ~13 ns for [`MonotonicClock`]'s coarse kernel clock read through the vDSO
/// and ~80 ns for a precise read on this project's machines. For an application that calls an open breaker at a high
/// rate (a failing dependency behind a busy endpoint), this is the clock that makes a rejection cost no clock read.
///
/// The caller promises to call [`TickedClock::tick`] at least every `max_lag` (given to [`TickedClock::new`]): a
/// thread of its own, or a timer task of its runtime. A deadline check trusts the cached reading only while the
/// deadline is more than `max_lag` away, and reads the precise clock in the last `max_lag` before it, so a breaker
/// decides exactly as with `Instant::now()` as long as the promise holds. A ticker that falls behind by more than
/// `max_lag` (a starved thread) makes rejections late by the excess; a breaker still goes through the precise path
/// for one rejection in every thousand or so, so even a ticker that stopped delays its half-open turn by at most that
/// many rejections, never forever. Elsewhere than Linux and Android this is [`MonotonicClock`]'s precise fallback.
///
/// ```
/// use std::time::Duration;
/// use aegis_core::TickedClock;
///
/// let clock = TickedClock::new(Duration::from_millis(50));
/// let ticker = clock.clone();
/// std::thread::spawn(move || loop {
///     ticker.tick();
///     std::thread::sleep(Duration::from_millis(1));
/// });
/// // Pass `&clock` to `Breaker::call`.
/// ```
///
/// Clones share the cached reading.
#[derive(Clone, Debug)]
pub struct TickedClock {
    base: MonotonicClock,
    /// The latest tick on the raw `CLOCK_MONOTONIC` timeline ([`Clock::coarse_origin_ns`]); never decreases.
    latest_ns: Arc<AtomicU64>,
    max_lag_ns: u64,
}

impl TickedClock {
    /// A clock whose ticker promises to tick at least every `max_lag`; it reads the clock once (a first tick).
    pub fn new(max_lag: Duration) -> Self {
        let clock = TickedClock { base: MonotonicClock::new(), latest_ns: Arc::default(), max_lag_ns: nanos(max_lag) };
        clock.tick();
        clock
    }

    /// Refreshes the cached reading (one precise clock read). Concurrent tickers are harmless: the latest wins.
    pub fn tick(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let raw = timespec_ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic));
            self.latest_ns.fetch_max(raw, Ordering::Release);
        }
    }
}

impl Clock for TickedClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn coarse_origin_ns(&self, since: Instant) -> Option<u64> {
        Some(self.base.origin_ns(since))
    }

    /// The latest tick is a past reading of the precise clock, so it under-estimates the time elapsed by at most the
    /// ticker's lag.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn coarse_elapsed_ns_bounds(&self, origin_ns: u64) -> (u64, u64) {
        (self.latest_ns.load(Ordering::Acquire).saturating_sub(origin_ns), self.max_lag_ns)
    }
}

/// A manually advanced clock for tests. Clones share the same time.
#[derive(Clone, Debug)]
pub struct FakeClock {
    now: Arc<Mutex<Instant>>,
}

impl FakeClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> Self {
        FakeClock { now: Arc::new(Mutex::new(start)) }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut t = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *t += d;
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Instant) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_advances_shared_time() {
        let t0 = Instant::now();
        let c = FakeClock::new(t0);
        let c2 = c.clone();
        c.advance(Duration::from_secs(2));
        assert_eq!(c2.now(), t0 + Duration::from_secs(2));
        c.set(t0);
        assert_eq!(c2.now(), t0);
        let f = || t0;
        assert_eq!(Clock::now(&f), t0);
        assert_eq!(c.elapsed_ns_bounds(t0 - Duration::from_nanos(7)), (7, 0));
    }

    #[test]
    fn monotonic_clock_bounds_contain_the_precise_elapsed_time() {
        let clock = MonotonicClock::new();
        for back in [Duration::ZERO, Duration::from_millis(3), Duration::from_secs(2)] {
            let since = Instant::now().checked_sub(back).unwrap_or_else(Instant::now);
            let before = nanos(since.elapsed());
            let (at_least, slack) = clock.elapsed_ns_bounds(since);
            let after = nanos(since.elapsed());
            assert!(at_least <= after, "{at_least} > {after}");
            assert!(at_least + slack >= before, "{at_least} + {slack} < {before}");
        }
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(clock.elapsed_ns_bounds(later).0, 0);
        // Through a kept origin, from another clock: the same bounds.
        let since = Instant::now().checked_sub(Duration::from_secs(2)).unwrap_or_else(Instant::now);
        let origin = MonotonicClock::new().coarse_origin_ns(since).expect("a coarse timeline on Linux");
        let before = nanos(since.elapsed());
        let (at_least, slack) = clock.coarse_elapsed_ns_bounds(origin);
        let after = nanos(since.elapsed());
        assert!(at_least <= after && at_least + slack >= before, "{at_least} + {slack} vs {before}..{after}");
        // A clock without a coarse timeline knows nothing from an origin.
        let plain = || since;
        assert_eq!(plain.coarse_origin_ns(since), None);
        assert_eq!(plain.coarse_elapsed_ns_bounds(origin), (0, u64::MAX));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn ticked_clock_bounds_hold_while_the_ticker_keeps_its_promise() {
        let max_lag = Duration::from_millis(50);
        let clock = TickedClock::new(max_lag);
        let since = Instant::now().checked_sub(Duration::from_secs(2)).unwrap_or_else(Instant::now);
        let ticker = clock.clone();
        ticker.tick();
        let before = nanos(since.elapsed());
        let (at_least, slack) = clock.elapsed_ns_bounds(since);
        let after = nanos(since.elapsed());
        assert_eq!(slack, nanos(max_lag));
        assert!(at_least <= after && at_least + slack >= before, "{at_least} + {slack} vs {before}..{after}");
        // Without ticks the reading stands still (the lower bound stays true), and a tick moves it on.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.elapsed_ns_bounds(since).0, at_least);
        ticker.tick();
        let moved = clock.elapsed_ns_bounds(since).0;
        assert!(moved >= at_least + nanos(Duration::from_millis(5)) && moved <= nanos(since.elapsed()));
        // Its origins are on the same timeline as the coarse clock's.
        let origin = clock.coarse_origin_ns(since).expect("a coarse timeline on Linux");
        let (coarse, coarse_slack) = MonotonicClock::new().coarse_elapsed_ns_bounds(origin);
        assert!(coarse + coarse_slack >= moved, "{coarse} + {coarse_slack} < {moved}");
    }
}
