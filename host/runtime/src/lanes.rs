//! Check lanes: how many checks may be in flight at once, without letting slow checks starve quick ones.
//!
//! A global cap on checks in flight bounds what the host holds when it falls behind (CPU-bound, thousands of due
//! checks would otherwise all be in flight together, each with a connection and its buffers). But one cap shared by
//! every check lets slow ones take every slot: during a partition that hangs hundreds of endpoints, each hung check
//! sat on its slot until its timeout and the healthy services waited behind them — the supervisor went blind exactly
//! when it was needed.
//!
//! So checks run in two lanes, each with its own cap:
//! - the **quick** lane (`maxConcurrentChecks` slots) takes every check of a service whose last check was quick.
//!   A check still running after [`SLOW_AFTER`] hands its quick slot back and finishes outside it;
//! - the **slow** lane ([`SLOW_LANE_FACTOR`] × `maxConcurrentChecks` slots) takes every check of a service whose last
//!   check was slow (a hung endpoint, a timeout), so hung services wait for each other, never the quick lane.
//!
//! Memory stays bounded: each service has at most one check in flight, the lanes cap how many start, and a check
//! that turns slow inside the quick lane holds a quick slot for at most [`SLOW_AFTER`] (its service starts in the
//! slow lane next time). This module only counts; it knows nothing of probes or services.

use std::future::Future;
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a check may hold a quick slot. Far above a healthy check on a LAN (milliseconds), far below a timeout.
pub const SLOW_AFTER: Duration = Duration::from_millis(50);

/// The slow lane's cap, as a multiple of the quick lane's: slow checks mostly wait on the network and cost little
/// while they do.
pub const SLOW_LANE_FACTOR: usize = 16;

/// The two lanes and their in-flight gauges.
#[derive(Debug)]
pub struct CheckLanes {
    quick: Semaphore,
    slow: Semaphore,
    quick_in_flight: IntGauge,
    slow_in_flight: IntGauge,
}

/// A slot in a lane, taken before a check starts; released when the check ends (or, for a quick slot, when the
/// check turns slow).
#[derive(Debug)]
pub struct Slot<'a> {
    quick: bool,
    _permit: Option<SemaphorePermit<'a>>,
    _in_flight: InFlight<'a>,
}

/// One check counted in a lane's gauge while it lives.
#[derive(Debug)]
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl CheckLanes {
    /// Lanes with `quick` quick slots (at least one) and [`SLOW_LANE_FACTOR`] times as many slow ones; the gauges
    /// count the checks in flight in each lane.
    pub fn new(quick: usize, quick_in_flight: IntGauge, slow_in_flight: IntGauge) -> Self {
        let quick = quick.max(1);
        CheckLanes {
            quick: Semaphore::new(quick),
            slow: Semaphore::new(quick.saturating_mul(SLOW_LANE_FACTOR)),
            quick_in_flight,
            slow_in_flight,
        }
    }

    /// Waits for a slot in the lane a check starts in: the slow lane when the service's last check was slow.
    pub async fn admit(&self, last_was_slow: bool) -> Slot<'_> {
        let (lane, gauge) =
            if last_was_slow { (&self.slow, &self.slow_in_flight) } else { (&self.quick, &self.quick_in_flight) };
        // The semaphores are never closed: without a permit the check would only run unbounded.
        let permit = lane.acquire().await.ok();
        Slot { quick: !last_was_slow, _permit: permit, _in_flight: InFlight::new(gauge) }
    }

    /// Runs `check` in `slot`; returns its output and whether it was slow (ran [`SLOW_AFTER`] or longer). A check
    /// that turns slow in the quick lane gives its quick slot back and finishes outside both caps: taking a slow slot
    /// could wait, and waiting while holding the quick slot is the starvation the lanes exist to prevent.
    pub async fn run<F: Future>(&self, slot: Slot<'_>, check: F) -> (F::Output, bool) {
        let started = Instant::now();
        if !slot.quick {
            let out = check.await;
            drop(slot);
            return (out, started.elapsed() >= SLOW_AFTER);
        }
        let mut check = std::pin::pin!(check);
        tokio::select! {
            biased;
            out = &mut check => return (out, started.elapsed() >= SLOW_AFTER),
            _ = tokio::time::sleep(SLOW_AFTER) => {}
        }
        drop(slot);
        let _slow = InFlight::new(&self.slow_in_flight);
        (check.await, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(quick: usize) -> CheckLanes {
        let gauge = |n: &str| IntGauge::new(n, "test").expect("gauge");
        CheckLanes::new(quick, gauge("quick"), gauge("slow"))
    }

    #[tokio::test]
    async fn a_hung_check_gives_its_quick_slot_back_after_slow_after() {
        let lanes = lanes(1);
        let hung = async {
            let slot = lanes.admit(false).await;
            lanes.run(slot, tokio::time::sleep(Duration::from_secs(3))).await
        };
        let quick = async {
            // Starts after the hung check took the only quick slot.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let waited = Instant::now();
            let slot = lanes.admit(false).await;
            let admitted_after = waited.elapsed();
            let (_, slow) = lanes.run(slot, async {}).await;
            (admitted_after, slow)
        };
        let ((_, hung_slow), (admitted_after, quick_slow)) = tokio::join!(hung, quick);
        assert!(hung_slow, "the hung check is reported slow");
        assert!(!quick_slow, "the quick check is reported quick");
        assert!(
            admitted_after < Duration::from_secs(1),
            "the quick check waited {admitted_after:?}: about SLOW_AFTER, not the hung check's 3 s"
        );
    }

    #[tokio::test]
    async fn slow_services_wait_for_each_other_and_never_for_the_quick_lane() {
        let lanes = lanes(1);
        // Fill the whole slow lane with hung checks.
        let mut hung = Vec::new();
        for _ in 0..SLOW_LANE_FACTOR {
            hung.push(lanes.admit(true).await);
        }
        assert_eq!(lanes.slow_in_flight.get(), i64::try_from(SLOW_LANE_FACTOR).expect("small"));
        // A quick check still gets in at once.
        let slot = tokio::time::timeout(Duration::from_secs(1), lanes.admit(false)).await.expect("quick lane free");
        assert_eq!(lanes.quick_in_flight.get(), 1);
        drop(slot);
        // Another slow one waits until a slow slot frees.
        assert!(tokio::time::timeout(Duration::from_millis(200), lanes.admit(true)).await.is_err());
        hung.pop();
        let _slot = tokio::time::timeout(Duration::from_secs(1), lanes.admit(true)).await.expect("a slot freed");
        drop(hung);
        assert_eq!(lanes.quick_in_flight.get(), 0);
        assert_eq!(lanes.slow_in_flight.get(), 1);
    }

    #[tokio::test]
    async fn a_check_that_turns_slow_is_counted_in_the_slow_lane_until_it_ends() {
        let lanes = lanes(4);
        let slot = lanes.admit(false).await;
        let check = lanes.run(slot, tokio::time::sleep(SLOW_AFTER * 8));
        let watch = async {
            tokio::time::sleep(SLOW_AFTER / 5).await;
            let early = (lanes.quick_in_flight.get(), lanes.slow_in_flight.get());
            tokio::time::sleep(SLOW_AFTER * 3).await;
            (early, (lanes.quick_in_flight.get(), lanes.slow_in_flight.get()))
        };
        let ((_, slow), (early, late)) = tokio::join!(check, watch);
        assert!(slow);
        assert_eq!(early, (1, 0), "quick while young");
        assert_eq!(late, (0, 1), "slow once past SLOW_AFTER");
        assert_eq!((lanes.quick_in_flight.get(), lanes.slow_in_flight.get()), (0, 0));
    }
}
