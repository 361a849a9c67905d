//! The last few checks of one service, for the console's sparklines and `GET /api/v1/services/{service}/checks`.
//!
//! Owns a fixed-size ring and nothing else; it must not know about breakers, probes or HTTP. Memory per service is
//! what matters at thousands of services: nothing is allocated until the first check, and then one boxed array of
//! [`CAPACITY`] entries of 8 bytes each (a millisecond offset from the ring's base time and the latency in
//! microseconds with the outcome in its top bit), about 500 bytes per service. A `Mutex` is enough: one writer (the
//! service's check, once per check) and an occasional reader (the admin thread).

use std::sync::Mutex;

/// Checks kept per service.
pub const CAPACITY: usize = 60;
/// [`CAPACITY`] for chart arithmetic.
pub const CAPACITY_F64: f64 = 60.0;
/// Top bit of [`Entry::latency`]: the check failed.
const FAILED: u32 = 1 << 31;

/// One recorded check, as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub success: bool,
    /// Latency in microseconds (saturates at about 35 minutes).
    pub latency_us: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// Milliseconds after [`Ring::base_ms`].
    offset_ms: u32,
    latency: u32,
}

#[derive(Debug)]
struct Ring {
    base_ms: u64,
    /// Checks recorded since the ring was made; the next slot is `total % CAPACITY`.
    total: u64,
    entries: [Entry; CAPACITY],
}

/// The recent checks of one service.
#[derive(Debug, Default)]
pub struct RecentChecks(Mutex<Option<Box<Ring>>>);

impl RecentChecks {
    /// Records a check that ended at `at_ms`.
    pub fn record(&self, at_ms: u64, success: bool, latency_us: u64) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ring = guard
            .get_or_insert_with(|| Box::new(Ring { base_ms: at_ms, total: 0, entries: [Entry::default(); CAPACITY] }));
        // A ring older than the offset's range (49 days) starts again from this check.
        let offset = match u32::try_from(at_ms.saturating_sub(ring.base_ms)) {
            Ok(o) => o,
            Err(_) => {
                ring.base_ms = at_ms;
                ring.total = 0;
                0
            }
        };
        let latency = u32::try_from(latency_us).unwrap_or(u32::MAX).min(FAILED - 1) | if success { 0 } else { FAILED };
        let slot = usize::try_from(ring.total % CAPACITY as u64).unwrap_or(0);
        ring.entries[slot] = Entry { offset_ms: offset, latency };
        ring.total += 1;
    }

    /// Checks recorded so far (a counter the console's live summary compares against).
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |r| r.total)
    }

    /// The kept checks, oldest first.
    pub fn list(&self) -> Vec<Check> {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = guard.as_ref() else { return Vec::new() };
        let kept = ring.total.min(CAPACITY as u64);
        (ring.total - kept..ring.total)
            .map(|i| {
                let e = ring.entries[usize::try_from(i % CAPACITY as u64).unwrap_or(0)];
                Check {
                    at_ms: ring.base_ms + u64::from(e.offset_ms),
                    success: e.latency & FAILED == 0,
                    latency_us: e.latency & !FAILED,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_checks_in_order_and_allocates_lazily() {
        let checks = RecentChecks::default();
        assert!(checks.list().is_empty());
        for i in 0..(CAPACITY as u64 + 5) {
            checks.record(1_000 + i, i % 2 == 0, i * 10);
        }
        let list = checks.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0], Check { at_ms: 1_005, success: false, latency_us: 50 });
        assert_eq!(list.last().map(|c| c.at_ms), Some(1_000 + CAPACITY as u64 + 4));
        assert_eq!(checks.total(), CAPACITY as u64 + 5);
        assert_eq!(std::mem::size_of::<Entry>(), 8);
    }

    #[test]
    fn a_huge_latency_saturates_without_flipping_the_outcome() {
        let checks = RecentChecks::default();
        checks.record(5, true, u64::MAX);
        assert_eq!(checks.list()[0], Check { at_ms: 5, success: true, latency_us: FAILED - 1 });
    }
}
