//! The in-process API on top of `try_acquire`/`record`: run a closure or future through a breaker, classify its
//! errors, fall back when the breaker refuses. Owns the permit's lifetime around one call (a drop guard returns it if
//! the call panics or the future is cancelled); never owns state transitions.

use std::future::Future;
use std::time::Instant;

use super::{Breaker, Permit};
use crate::clock::Clock;
use crate::error::{CallError, Rejected};

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
