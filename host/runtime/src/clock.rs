//! The runtime's time base: milliseconds since the Unix epoch for events, restart books, alerts and the outbox,
//! read from the wall clock once and advanced by the monotonic clock from then on. A wall-clock step (an operator's
//! `date -s`, a VM resumed, NTP stepping) therefore moves no timer: an alert's `for`, `keep_firing_for` and
//! `repeat_interval`, the restart limit's window and the outbox's retry times all count real elapsed time, so a jump
//! neither re-sends a firing alert nor holds a notification back for an hour. (NTP's slewing still reaches this time
//! base: the kernel slews the monotonic clock too.) A step is noticed, logged once, and followed at the next start;
//! until then the times shown are off by it. Must not know what the times are used for.
//!
//! Debug builds only: the file named by [`CLOCK_OFFSET_ENV`] holds a signed offset in milliseconds added to every
//! wall-clock reading (re-read at most every [`RECHECK`]), so an end-to-end test can step the wall clock of a
//! running host; release builds ignore it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Debug builds only: a file holding a signed offset (ms) added to the wall clock, for tests.
pub const CLOCK_OFFSET_ENV: &str = "AEGIS_TEST_CLOCK_OFFSET_FILE";

/// How often the wall clock is compared with the time base (and the test offset re-read).
const RECHECK: Duration = Duration::from_secs(1);

/// A step smaller than this is jitter between two clock reads, not a step.
const STEP: i64 = 2_000;

/// The instant the wall clock was read, and what it said.
static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
/// Milliseconds after the anchor of the last comparison with the wall clock.
static CHECKED_MS: AtomicU64 = AtomicU64::new(0);
/// The step last reported (wall clock minus time base, ms), so that one step is logged once.
static REPORTED: AtomicI64 = AtomicI64::new(0);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 before it): the time base of events, restarts, alerts and the store.
pub fn unix_ms() -> u64 {
    let (at, wall_at) = *ANCHOR.get_or_init(|| (Instant::now(), wall_ms()));
    let elapsed = millis(at.elapsed());
    let now = wall_at.saturating_add(elapsed);
    let checked = CHECKED_MS.load(Ordering::Relaxed);
    if elapsed.saturating_sub(checked) >= millis(RECHECK)
        && CHECKED_MS.compare_exchange(checked, elapsed, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        notice_step(now);
    }
    now
}

/// Logs a wall-clock step away from the time base once (and a step back to it).
fn notice_step(now: u64) {
    let step = i64::try_from(wall_ms()).unwrap_or(i64::MAX).saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
    let reported = REPORTED.load(Ordering::Relaxed);
    if (step - reported).abs() < STEP {
        return;
    }
    REPORTED.store(step, Ordering::Relaxed);
    tracing::warn!(
        step_ms = step,
        "the wall clock is {:+.1} s away from aegis-host's time base: timers go on in real elapsed time, and the \
         times shown follow the wall clock again at the next start",
        step as f64 / 1000.0
    );
}

/// The wall clock now, in ms since the epoch (with the test offset in debug builds).
fn wall_ms() -> u64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis);
    let offset = test_offset();
    if offset >= 0 { ms.saturating_add(offset.unsigned_abs()) } else { ms.saturating_sub(offset.unsigned_abs()) }
}

#[cfg(debug_assertions)]
fn test_offset() -> i64 {
    let Some(path) = std::env::var_os(CLOCK_OFFSET_ENV) else { return 0 };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    match text.trim() {
        "" => 0,
        t => t.parse().unwrap_or_else(|e| {
            tracing::warn!("{CLOCK_OFFSET_ENV}: {t:?} in {} ignored: {e}", std::path::Path::new(&path).display());
            0
        }),
    }
}

#[cfg(not(debug_assertions))]
fn test_offset() -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_base_follows_the_monotonic_clock() {
        let a = unix_ms();
        std::thread::sleep(Duration::from_millis(20));
        let b = unix_ms();
        assert!(b >= a + 20, "{a} {b}");
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis);
        assert!(b.abs_diff(wall) < 60_000, "anchored on the wall clock: {b} vs {wall}");
    }
}
