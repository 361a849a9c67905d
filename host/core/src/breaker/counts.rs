//! Per-generation call counters of a breaker (gobreaker `Counts`, plus slow calls and rejections). Owns only the
//! arithmetic; when counters are cleared (state change, closed-state interval) is decided by the breaker.

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
    /// Adds one recorded outcome. Saturating: a counter that would overflow sticks at `u32::MAX` instead of wrapping
    /// to a small number that could un-trip a rate predicate.
    #[inline]
    pub(crate) fn on_outcome(&mut self, success: bool, slow: bool) {
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

    #[inline]
    pub(crate) fn on_rejected(&mut self) {
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
    fn counters_saturate() {
        let mut c = Counts { requests: u32::MAX, total_failures: u32::MAX, ..Counts::default() };
        c.on_outcome(false, false);
        assert_eq!(c.requests, u32::MAX);
        assert_eq!(c.total_failures, u32::MAX);
    }
}
