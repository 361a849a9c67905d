//! Per-generation call counters of a breaker (gobreaker `Counts`, plus slow calls and rejections). Owns only the
//! arithmetic; when counters are cleared (state change, closed-state interval) is decided by the breaker.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};

use serde::{Deserialize, Serialize};

/// Counters of the breaker's current generation. They are cleared on every state change and, in the closed state,
/// every `interval` (gobreaker semantics).
///
/// Invariant: `requests == total_successes + total_failures` — a request is counted when its outcome is recorded,
/// so the closed-state admission path stays a single atomic load. Rejections are not requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Outcomes recorded in this generation.
    pub requests: u32,
    /// Recorded successes.
    pub total_successes: u32,
    /// Recorded failures.
    pub total_failures: u32,
    /// Successes since the last failure.
    pub consecutive_successes: u32,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Recorded outcomes (successes or failures) at or above the slow-call threshold.
    pub slow_calls: u32,
    /// Calls refused (open, forced open, or half-open without a free permit).
    pub rejected: u32,
}

impl Counts {
    /// Adds one recorded outcome, exactly as a breaker does (useful to build counts for testing a predicate).
    /// Saturating: a counter that would overflow sticks at `u32::MAX` instead of wrapping to a small number that
    /// could un-trip a rate predicate.
    #[inline]
    pub fn on_outcome(&mut self, success: bool, slow: bool) {
        self.requests = self.requests.saturating_add(1);
        if success {
            self.total_successes = self.total_successes.saturating_add(1);
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            self.consecutive_failures = 0;
        } else {
            self.total_failures = self.total_failures.saturating_add(1);
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
        }
        if slow {
            self.slow_calls = self.slow_calls.saturating_add(1);
        }
    }

    /// Adds one rejection.
    #[inline]
    pub fn on_rejected(&mut self) {
        self.rejected = self.rejected.saturating_add(1);
    }

    /// Failures divided by requests, `None` before the first request.
    pub fn failure_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| f64::from(self.total_failures) / f64::from(self.requests))
    }

    /// Successes divided by requests, `None` before the first request.
    pub fn success_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| f64::from(self.total_successes) / f64::from(self.requests))
    }
}

/// [`Counts`] as atomics, for the breaker's spin-locked lane: one writer at a time (the lane lock), so every update of
/// an outcome counter is a `Relaxed` load plus store — plain moves, no read-modify-write instructions.
///
/// To keep the hot path to as few stores as possible (each one must drain before the lane lock's next
/// compare-and-swap), `requests` is not stored but derived as successes + failures, and a counter that does not change
/// is not rewritten.
///
/// Rejections are not here: they are counted without the lane lock (an open breaker's rejection takes no lock at all),
/// in one word with the lane's generation, [`GenerationRejections`].
#[derive(Debug, Default)]
pub(crate) struct AtomicCounts {
    total_successes: AtomicU32,
    total_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    consecutive_failures: AtomicU32,
    slow_calls: AtomicU32,
}

impl AtomicCounts {
    /// The outcome counters, with `rejected` as given (see above).
    pub(crate) fn load(&self, rejected: u32) -> Counts {
        let (total_successes, total_failures) = (self.total_successes.load(Relaxed), self.total_failures.load(Relaxed));
        Counts {
            requests: total_successes.saturating_add(total_failures),
            total_successes,
            total_failures,
            consecutive_successes: self.consecutive_successes.load(Relaxed),
            consecutive_failures: self.consecutive_failures.load(Relaxed),
            slow_calls: self.slow_calls.load(Relaxed),
            rejected,
        }
    }

    /// Stores the outcome counters of `c`; its `requests` (derived, see above) and `rejected` are ignored.
    pub(crate) fn store(&self, c: &Counts) {
        self.total_successes.store(c.total_successes, Relaxed);
        self.total_failures.store(c.total_failures, Relaxed);
        self.consecutive_successes.store(c.consecutive_successes, Relaxed);
        self.consecutive_failures.store(c.consecutive_failures, Relaxed);
        self.slow_calls.store(c.slow_calls, Relaxed);
    }

    /// [`Counts::on_outcome`] for the lane.
    #[inline(always)]
    pub(crate) fn on_outcome(&self, success: bool, slow: bool) {
        let bump = |a: &AtomicU32| a.store(a.load(Relaxed).saturating_add(1), Relaxed);
        let zero = |a: &AtomicU32| {
            if a.load(Relaxed) != 0 {
                a.store(0, Relaxed);
            }
        };
        if success {
            bump(&self.total_successes);
            bump(&self.consecutive_successes);
            zero(&self.consecutive_failures);
        } else {
            bump(&self.total_failures);
            bump(&self.consecutive_failures);
            zero(&self.consecutive_successes);
        }
        if slow {
            bump(&self.slow_calls);
        }
    }

    /// Successes + failures, as in [`Counts::requests`].
    pub(crate) fn requests(&self) -> u32 {
        self.total_successes.load(Relaxed).saturating_add(self.total_failures.load(Relaxed))
    }
}

/// A generation and its rejection count in one word, `generation << 32 | rejected`, so that a rejection decided
/// without any lock is counted by one compare-and-swap that also confirms the generation it was decided in (the lane
/// lock it replaces cost a compare-and-swap of its own plus the release), and a new generation starts with zero
/// rejections in the same store that names it.
#[derive(Debug, Default)]
pub(crate) struct GenerationRejections(AtomicU64);

impl GenerationRejections {
    #[inline(always)]
    pub(crate) fn generation(&self) -> u32 {
        (self.0.load(Relaxed) >> 32) as u32
    }

    #[inline(always)]
    pub(crate) fn rejected(&self) -> u32 {
        self.0.load(Relaxed) as u32
    }

    pub(crate) fn set(&self, generation: u32, rejected: u32) {
        self.0.store((u64::from(generation) << 32) | u64::from(rejected), Relaxed);
    }

    /// One more rejection in `generation` (saturating, as every counter), or `false` if the word is on another one.
    #[inline(always)]
    pub(crate) fn count(&self, generation: u32) -> bool {
        let mut word = self.0.load(Relaxed);
        loop {
            if (word >> 32) as u32 != generation {
                return false;
            }
            if word as u32 == u32::MAX {
                return true;
            }
            match self.0.compare_exchange_weak(word, word + 1, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(seen) => word = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_update_consecutive_runs() {
        let mut c = Counts::default();
        c.on_outcome(true, false);
        c.on_outcome(true, true);
        assert_eq!((c.consecutive_successes, c.consecutive_failures), (2, 0));
        c.on_outcome(false, false);
        assert_eq!((c.consecutive_successes, c.consecutive_failures), (0, 1));
        c.on_rejected();
        assert_eq!(
            c,
            Counts {
                requests: 3,
                total_successes: 2,
                total_failures: 1,
                consecutive_successes: 0,
                consecutive_failures: 1,
                slow_calls: 1,
                rejected: 1
            }
        );
        assert_eq!(c.failure_ratio(), Some(1.0 / 3.0));
        assert_eq!(c.success_ratio(), Some(2.0 / 3.0));
        assert_eq!(Counts::default().failure_ratio(), None);
    }

    #[test]
    fn atomic_counts_mirror_counts() {
        let (mut c, a) = (Counts::default(), AtomicCounts::default());
        for (success, slow) in [(true, false), (false, true), (false, false), (true, true)] {
            c.on_outcome(success, slow);
            a.on_outcome(success, slow);
        }
        c.on_rejected();
        assert_eq!(a.load(1), c);
        a.store(&Counts::default());
        assert_eq!(a.load(0), Counts::default());
    }

    #[test]
    fn rejections_count_only_in_their_generation_and_saturate() {
        let r = GenerationRejections::default();
        r.set(7, 0);
        assert!(r.count(7));
        assert!(!r.count(6), "a rejection decided in an older generation is not counted");
        assert_eq!((r.generation(), r.rejected()), (7, 1));
        r.set(7, u32::MAX);
        assert!(r.count(7));
        assert_eq!((r.generation(), r.rejected()), (7, u32::MAX));
        r.set(8, 0);
        assert_eq!((r.generation(), r.rejected()), (8, 0));
    }

    #[test]
    fn counters_saturate() {
        let mut c = Counts { requests: u32::MAX, total_failures: u32::MAX, ..Counts::default() };
        c.on_outcome(false, false);
        assert_eq!(c.requests, u32::MAX);
        assert_eq!(c.total_failures, u32::MAX);
    }
}
