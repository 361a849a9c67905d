//! The injected time source. Core code never reads the wall clock itself: state machines take `now: Instant`
//! arguments, and the few helpers that must time a closure (`Breaker::call`) take a [`Clock`]. Owns only that seam and
//! a fake clock for deterministic tests.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A source of monotonic instants. The runtime passes `&std::time::Instant::now`; tests pass a [`FakeClock`].
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<F: Fn() -> Instant> Clock for F {
    fn now(&self) -> Instant {
        self()
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
    }
}
