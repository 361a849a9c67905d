//! The in-process API on top of `try_acquire`/`record`: run a closure or future through a breaker, classify its
//! errors, fall back when the breaker refuses. Owns the permit's lifetime around one call (a drop guard returns it if
//! the call panics or the future is cancelled); never owns state transitions.
//!
//! # The synchronous fast path
//! A clock read costs more than the rest of a closed-state call, so [`Breaker::call_classified`] reads the clock only
//! where the result can depend on it. In the states that admit without a lock, a breaker that is not `timed` (no
//! slow-call threshold, a count window, a predicate that does not read durations) runs the closure and counts the
//! outcome without any clock read; the clock is read only if the outcome must be judged by the trip predicate (a trip
//! is stamped with it). An open breaker compares its deadline against [`Clock::elapsed_ns_bounds`], which a
//! [`MonotonicClock`](crate::MonotonicClock) answers from the coarse clock and a [`TickedClock`](crate::TickedClock)
//! from its ticker's cached reading (both from the breaker's epoch kept on the coarse timeline,
//! [`Clock::coarse_origin_ns`], so no `Instant` arithmetic per call), and reads the precise clock only near the
//! deadline (and for one rejection in a thousand). The rejection is then counted with one compare-and-swap, no lock.
//! A forced-open breaker reads no clock. Everything else takes the timed path through `try_acquire`.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ADMIT, Breaker, Permit, Recorded, STATE_MASK, State};
use crate::clock::Clock;
use crate::error::{CallError, Rejected};

/// One rejection in this many takes the precise path (see `reject_without_precise_time`).
pub(super) const PRECISE_EVERY: u32 = 1024;

/// A permit tied to its breaker: [`PermitGuard::finish`] records the outcome; dropping it unfinished releases the
/// permit without an outcome (so a cancelled half-open trial does not hold its slot forever).
#[derive(Debug)]
pub struct PermitGuard<'a> {
    breaker: &'a Breaker,
    // The permit's generation plus a flag, rather than an `Option<Permit>`: moving the five-byte option around made
    // the compiler copy it byte-wise through the stack, a store-forwarding stall that tripled the cost of `call`.
    generation: u32,
    armed: bool,
}

impl<'a> PermitGuard<'a> {
    /// Wraps a permit obtained from `breaker`.
    #[inline]
    pub fn new(breaker: &'a Breaker, permit: Permit) -> Self {
        PermitGuard { breaker, generation: permit.generation(), armed: true }
    }

    /// Records the outcome (see [`Breaker::record`]).
    #[inline]
    pub fn finish(mut self, now: Instant, success: bool, duration: std::time::Duration) {
        self.armed = false;
        self.breaker.record(now, Permit { generation: self.generation }, success, duration);
    }
}

impl Drop for PermitGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.armed {
            self.breaker.release(Permit { generation: self.generation });
        }
    }
}

impl Breaker {
    /// Acquires a permit wrapped in a [`PermitGuard`].
    #[inline]
    pub fn acquire_guard(&self, now: Instant) -> Result<PermitGuard<'_>, Rejected> {
        self.try_acquire(now).map(|p| PermitGuard::new(self, p))
    }

    /// Runs `f` if the breaker admits it; every `Err` counts as a failure.
    ///
    /// Returns `Err(CallError::CircuitOpen)` / `Err(CallError::TooManyRequests)` without running `f` when refused,
    /// otherwise `f`'s result with its error wrapped in [`CallError::Inner`].
    pub fn call<T, E, C>(&self, clock: &C, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>>
    where
        C: Clock + ?Sized,
    {
        self.call_classified(clock, |_| true, f)
    }

    /// Like [`Self::call`], but only errors for which `is_failure` returns true count as failures; the others are
    /// recorded as successes (gobreaker `IsSuccessful`) and still returned to the caller.
    pub fn call_classified<T, E, C>(
        &self,
        clock: &C,
        is_failure: impl FnOnce(&E) -> bool,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CallError<E>>
    where
        C: Clock + ?Sized,
    {
        let w = self.fast.load(Ordering::Acquire);
        if w & ADMIT != 0 && !self.timed {
            // No permit guard: a lock-free admission is never a half-open trial, so there is no slot to give back.
            let r = f();
            let success = match &r {
                Ok(_) => true,
                Err(e) => !is_failure(e),
            };
            self.record_untimed(clock, (w >> 32) as u32, success);
            return r.map_err(CallError::Inner);
        }
        if w & ADMIT == 0 && self.reject_without_precise_time(clock, w) {
            return Err(CallError::CircuitOpen);
        }
        let start = clock.now();
        let guard = self.acquire_guard(start)?;
        let r = f();
        let end = clock.now();
        let success = match &r {
            Ok(_) => true,
            Err(e) => !is_failure(e),
        };
        guard.finish(end, success, end.saturating_duration_since(start));
        r.map_err(CallError::Inner)
    }

    /// `record` for an untimed call admitted by the lock-free path: duration zero (nothing reads it), never slow (no
    /// threshold), and the clock read only when the outcome needs a time.
    #[inline]
    fn record_untimed<C: Clock + ?Sized>(&self, clock: &C, generation: u32, success: bool) {
        let w = self.fast.load(Ordering::Acquire);
        if w & (ADMIT | STATE_MASK) == ADMIT && (w >> 32) as u32 == generation {
            if let Recorded::Evaluate = self.record_in_lane(|| clock.now(), generation, success, false, Duration::ZERO)
            {
                self.evaluate_after_lane(clock.now(), generation);
            }
            return;
        }
        self.record_locked(clock.now(), Permit { generation }, success, false, Duration::ZERO);
    }

    /// The lock-free rejection of `try_acquire`, deciding "still open" from the clock's cheap bounds. `false` means
    /// "not decided here": the caller takes the precise path.
    #[inline]
    fn reject_without_precise_time<C: Clock + ?Sized>(&self, clock: &C, w: u64) -> bool {
        let generation = (w >> 32) as u32;
        match w & STATE_MASK {
            s if s == State::ForcedOpen.code() => self.count_rejection(generation),
            s if s == State::Open.code() => {
                // A clock's cheap bounds rest on a promise (a ticker keeping up, a kernel tick running): one rejection
                // in `PRECISE_EVERY` goes through the precise path all the same, so a broken promise delays the
                // half-open turn by at most that many rejections.
                if self.lane.rejections.rejected() % PRECISE_EVERY == PRECISE_EVERY - 1 {
                    return false;
                }
                let (at_least, slack) = match self.epoch_coarse_ns(clock) {
                    Some(origin) => clock.coarse_elapsed_ns_bounds(origin),
                    None => match self.epoch.get() {
                        Some(epoch) => clock.elapsed_ns_bounds(*epoch),
                        None => return false,
                    },
                };
                if at_least.saturating_add(slack) >= self.open_until_ns.load(Ordering::Acquire) {
                    return false;
                }
                self.last_seen_ns.store(at_least, Ordering::Relaxed);
                self.count_rejection(generation)
            }
            _ => false,
        }
    }

    /// The epoch on `clock`'s coarse timeline, kept from the first clock that had one (checked first: once kept, a
    /// rejection does not look at the epoch itself).
    #[inline]
    fn epoch_coarse_ns<C: Clock + ?Sized>(&self, clock: &C) -> Option<u64> {
        match self.epoch_coarse_ns.load(Ordering::Relaxed) {
            0 => {
                let origin = clock.coarse_origin_ns(*self.epoch.get()?)?;
                self.epoch_coarse_ns.store(origin, Ordering::Relaxed);
                Some(origin)
            }
            kept => Some(kept),
        }
    }

    /// Like [`Self::call`], but a refused call returns `fallback(reason)` instead of an error.
    pub fn call_with_fallback<T, E, C>(
        &self,
        clock: &C,
        f: impl FnOnce() -> Result<T, E>,
        fallback: impl FnOnce(Rejected) -> Result<T, E>,
    ) -> Result<T, E>
    where
        C: Clock + ?Sized,
    {
        match self.call(clock, f) {
            Ok(v) => Ok(v),
            Err(CallError::Inner(e)) => Err(e),
            Err(CallError::CircuitOpen) => fallback(Rejected::Open),
            Err(CallError::TooManyRequests) => fallback(Rejected::TooManyRequests),
        }
    }

    /// Async [`Self::call`]. If the returned future is dropped before `f`'s future completes, the permit is released
    /// without an outcome.
    pub async fn call_async<T, E, C, Fut>(&self, clock: &C, f: impl FnOnce() -> Fut) -> Result<T, CallError<E>>
    where
        C: Clock + ?Sized,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_async_classified(clock, |_| true, f).await
    }

    /// Async [`Self::call_classified`].
    pub async fn call_async_classified<T, E, C, Fut>(
        &self,
        clock: &C,
        is_failure: impl FnOnce(&E) -> bool,
        f: impl FnOnce() -> Fut,
    ) -> Result<T, CallError<E>>
    where
        C: Clock + ?Sized,
        Fut: Future<Output = Result<T, E>>,
    {
        let start = clock.now();
        let guard = self.acquire_guard(start)?;
        let r = f().await;
        let end = clock.now();
        let success = match &r {
            Ok(_) => true,
            Err(e) => !is_failure(e),
        };
        guard.finish(end, success, end.saturating_duration_since(start));
        r.map_err(CallError::Inner)
    }

    /// Async [`Self::call_with_fallback`]; the fallback is itself a future.
    pub async fn call_async_with_fallback<T, E, C, Fut, FbFut>(
        &self,
        clock: &C,
        f: impl FnOnce() -> Fut,
        fallback: impl FnOnce(Rejected) -> FbFut,
    ) -> Result<T, E>
    where
        C: Clock + ?Sized,
        Fut: Future<Output = Result<T, E>>,
        FbFut: Future<Output = Result<T, E>>,
    {
        match self.call_async(clock, f).await {
            Ok(v) => Ok(v),
            Err(CallError::Inner(e)) => Err(e),
            Err(CallError::CircuitOpen) => fallback(Rejected::Open).await,
            Err(CallError::TooManyRequests) => fallback(Rejected::TooManyRequests).await,
        }
    }
}
