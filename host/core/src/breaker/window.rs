//! Sliding windows of recent call outcomes (resilience4j `COUNT_BASED` and `TIME_BASED`). Owns the sample storage and
//! its running totals; knows nothing about breaker states, thresholds or predicates.
//!
//! Storage choice (why it is small and fast): a count window of `n` calls keeps one 16-bit *slot* per call in a single
//! heap slice allocated once at construction — for `n = 100` that is 200 bytes, and recording never allocates. A slot
//! is `failed:1 | slow:1 | duration:14`, so recording is one load (the evicted slot) and one store. The duration is a
//! tiny float in nanoseconds (9-bit mantissa, 5-bit power-of-two exponent): truncating, relative error below 0.4 %,
//! exact below 512 ns, saturating at about 18 minutes. That keeps [`Sample::duration`] meaningful for trip predicates
//! at an eighth of the size of a `Duration` (a bitset of flags alone would have lost the durations).
//!
//! Concurrency: the count window's storage is made of atomics accessed with `Relaxed` loads and stores (plain moves on
//! x86), so the breaker can write it through `&self` inside its short spin-locked section without `unsafe`. The window
//! itself assumes one writer at a time — the breaker's lock provides that; unsynchronised concurrent writers could
//! skew its totals but never cause undefined behaviour. A time window sits behind its own (uncontended) mutex.
//!
//! A time window keeps per-bucket partial aggregates (count of fast/slow successes/failures and total duration), as
//! resilience4j does; it therefore cannot replay individual calls. Its [`Window::iter`] reconstructs samples bucket by
//! bucket (oldest bucket first), each carrying the bucket's mean duration; the order *within* a bucket is canonical
//! (failures first), not the arrival order.

use std::sync::atomic::{AtomicU16, AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which sliding window a breaker keeps for rate-based trip predicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// The last `n` recorded calls (`n = 0` is treated as 1).
    Count(u32),
    /// The calls of the last `size`, kept in `buckets` partial aggregates (`buckets = 0` is treated as 1). Calls age
    /// out a whole bucket at a time, so the window really spans between `size - size/buckets` and `size`.
    Time {
        /// Total span of the window.
        size: Duration,
        /// Number of partial aggregates; more buckets = smoother expiry, more memory (32 bytes each).
        buckets: u32,
    },
}

impl Default for WindowKind {
    /// resilience4j's default: the last 100 calls.
    fn default() -> Self {
        WindowKind::Count(100)
    }
}

/// One recorded call as a trip predicate sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Whether the call counted as a success.
    pub success: bool,
    /// How long the call took (compactly stored; see the module docs for the precision).
    pub duration: Duration,
    /// Whether the call took at least the breaker's slow-call threshold.
    pub slow: bool,
}

const MANT_BITS: u32 = 9;
const MANT_MAX: u64 = (1 << MANT_BITS) - 1;
const EXP_MAX: u32 = 31;
/// Largest duration code; also what every longer duration saturates to.
const CODE_MAX: u16 = ((EXP_MAX as u16) << MANT_BITS) | MANT_MAX as u16;
const FAILED: u16 = 1 << 15;
const SLOW: u16 = 1 << 14;

/// Encodes a duration as the 14-bit float described in the module docs (truncating, saturating).
#[inline]
pub(crate) fn encode_duration(d: Duration) -> u16 {
    // Seconds and nanoseconds separately: avoids the 128-bit multiply of `as_nanos` on the hot path.
    let n = d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()));
    if n <= MANT_MAX {
        return n as u16;
    }
    let shift = 64 - n.leading_zeros() - MANT_BITS;
    if shift > EXP_MAX {
        return CODE_MAX;
    }
    ((shift as u16) << MANT_BITS) | ((n >> shift) & MANT_MAX) as u16
}

/// Inverse of [`encode_duration`] (ignores the flag bits).
#[inline]
pub(crate) fn decode_duration(code: u16) -> Duration {
    let exp = u32::from((code & CODE_MAX) >> MANT_BITS);
    Duration::from_nanos((u64::from(code) & MANT_MAX) << exp)
}

/// A sliding window of either kind. Recording is O(1) (amortised O(buckets) after an idle gap for time windows) and
/// never allocates.
#[derive(Debug)]
pub struct Window {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Count(CountWindow),
    /// Boxed: a time window is larger than a count window, and most breakers use the latter.
    Time(Box<Mutex<TimeWindow>>),
}

impl Clone for Window {
    fn clone(&self) -> Self {
        let inner = match &self.inner {
            Inner::Count(w) => Inner::Count(w.clone()),
            Inner::Time(w) => Inner::Time(Box::new(Mutex::new(lock(w).clone()))),
        };
        Window { inner }
    }
}

fn lock(w: &Mutex<TimeWindow>) -> MutexGuard<'_, TimeWindow> {
    // Window code never panics while holding the guard, so poisoning carries no meaning here.
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Window {
    /// Allocates the window's storage once.
    pub fn new(kind: WindowKind) -> Self {
        let inner = match kind {
            WindowKind::Count(n) => Inner::Count(CountWindow::new(n.max(1))),
            WindowKind::Time { size, buckets } => {
                Inner::Time(Box::new(Mutex::new(TimeWindow::new(size, buckets.max(1)))))
            }
        };
        Window { inner }
    }

    /// The kind this window was built with (after clamping zero sizes).
    pub fn kind(&self) -> WindowKind {
        match &self.inner {
            Inner::Count(w) => WindowKind::Count(w.cap),
            Inner::Time(w) => {
                let w = lock(w);
                WindowKind::Time {
                    size: Duration::from_nanos(w.bucket_nanos.saturating_mul(w.buckets.len() as u64)),
                    buckets: w.buckets.len() as u32,
                }
            }
        }
    }

    /// Adds a call. Count windows ignore `now`; time windows first expire buckets older than the window.
    #[inline]
    pub fn record(&mut self, now: Instant, sample: Sample) {
        self.record_shared(|| now, sample.success, sample.slow, sample.duration);
    }

    /// [`Self::record`] through a shared reference, for the breaker's locked section (one writer at a time).
    /// Fields rather than a `Sample`: passing the struct by reference made its flag bytes a store-forwarding stall.
    /// `now` is asked for only by a time window, so an untimed call into a count window reads no clock.
    #[inline]
    pub(crate) fn record_shared(&self, now: impl FnOnce() -> Instant, success: bool, slow: bool, duration: Duration) {
        match &self.inner {
            Inner::Count(w) => w.push(success, slow, duration),
            Inner::Time(w) => lock(w).record(now(), Sample { success, duration, slow }),
        }
    }

    /// Expires time-window buckets that are older than the window at `now` (no-op for count windows).
    pub fn advance(&mut self, now: Instant) {
        if let Inner::Time(w) = &self.inner {
            lock(w).advance(now);
        }
    }

    /// Number of calls in the window.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Count(w) => w.len.load(Relaxed) as usize,
            Inner::Time(w) => lock(w).totals.calls() as usize,
        }
    }

    /// True when no call is in the window.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Failed calls in the window.
    #[inline]
    pub fn failures(&self) -> u32 {
        match &self.inner {
            Inner::Count(w) => w.failures.load(Relaxed),
            Inner::Time(w) => lock(w).totals.failures(),
        }
    }

    /// Slow calls (successful or not) in the window.
    #[inline]
    pub fn slow_calls(&self) -> u32 {
        match &self.inner {
            Inner::Count(w) => w.slow.load(Relaxed),
            Inner::Time(w) => lock(w).totals.slow(),
        }
    }

    /// The call recorded last, if it is still in the window. Exact for both kinds (a time window keeps it beside its
    /// buckets), up to the count window's duration precision.
    #[inline]
    pub fn newest(&self) -> Option<Sample> {
        match &self.inner {
            Inner::Count(w) => {
                let len = w.len.load(Relaxed);
                (len > 0).then(|| w.sample((w.head.load(Relaxed) + w.cap - 1) % w.cap))
            }
            Inner::Time(w) => {
                let w = lock(w);
                w.newest.filter(|_| w.totals.calls() > 0)
            }
        }
    }

    /// Empties the window without freeing its storage.
    pub fn clear(&mut self) {
        self.clear_shared();
    }

    pub(crate) fn clear_shared(&self) {
        match &self.inner {
            Inner::Count(w) => w.clear(),
            Inner::Time(w) => lock(w).clear(),
        }
    }

    /// The window's calls, oldest first (see the module docs for what a time window can reproduce). For a time
    /// window the iterator holds the window's lock until dropped.
    pub fn iter(&self) -> Recent<'_> {
        let state = match &self.inner {
            Inner::Count(w) => {
                let len = w.len.load(Relaxed);
                let head = w.head.load(Relaxed);
                RecentState::Count { w, next: (head + w.cap - len) % w.cap, remaining: len }
            }
            Inner::Time(w) => {
                let w = lock(w);
                let n = w.buckets.len() as u64;
                RecentState::Time {
                    next_index: w.current.saturating_sub(n - 1),
                    end: w.current + 1,
                    w,
                    left: Bucket::default(),
                    mean: Duration::ZERO,
                }
            }
        };
        Recent { state }
    }

    /// Bytes this window owns on the heap (allocated once, in [`Window::new`]).
    pub fn heap_bytes(&self) -> usize {
        match &self.inner {
            Inner::Count(w) => std::mem::size_of_val(&*w.slots),
            Inner::Time(w) => std::mem::size_of::<Mutex<TimeWindow>>() + std::mem::size_of_val(&*lock(w).buckets),
        }
    }

    /// Overwrites `self` with `other`'s contents, reusing `self`'s storage when both have the same shape — the breaker
    /// uses it to hand a blocking trip predicate a private copy without allocating.
    pub(crate) fn copy_from(&mut self, other: &Window) {
        match (&mut self.inner, &other.inner) {
            (Inner::Count(a), Inner::Count(b)) if a.slots.len() == b.slots.len() => a.copy_from(b),
            (Inner::Time(a), Inner::Time(b)) => {
                let (a, b) = (a.get_mut().unwrap_or_else(PoisonError::into_inner), lock(b));
                if a.buckets.len() == b.buckets.len() {
                    a.buckets.copy_from_slice(&b.buckets);
                    (a.bucket_nanos, a.epoch, a.current, a.totals, a.newest) =
                        (b.bucket_nanos, b.epoch, b.current, b.totals, b.newest);
                } else {
                    *a = b.clone();
                }
            }
            _ => *self = other.clone(),
        }
    }
}

/// Ring buffer of the last `cap` calls; see the module docs for the slot layout.
#[derive(Debug)]
struct CountWindow {
    cap: u32,
    /// Slot the next call is written to.
    head: AtomicU32,
    len: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
    slots: Box<[AtomicU16]>,
}

impl Clone for CountWindow {
    fn clone(&self) -> Self {
        let c = CountWindow::new(self.cap);
        c.copy_from(self);
        c
    }
}

impl CountWindow {
    fn new(cap: u32) -> Self {
        CountWindow {
            cap,
            head: AtomicU32::new(0),
            len: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            slow: AtomicU32::new(0),
            slots: (0..cap).map(|_| AtomicU16::new(0)).collect(),
        }
    }

    fn copy_from(&self, other: &CountWindow) {
        for (a, b) in self.slots.iter().zip(other.slots.iter()) {
            a.store(b.load(Relaxed), Relaxed);
        }
        for (a, b) in [
            (&self.head, &other.head),
            (&self.len, &other.len),
            (&self.failures, &other.failures),
            (&self.slow, &other.slow),
        ] {
            a.store(b.load(Relaxed), Relaxed);
        }
    }

    #[inline]
    fn sample(&self, i: u32) -> Sample {
        let slot = self.slots.get(i as usize).map_or(0, |s| s.load(Relaxed));
        Sample { success: slot & FAILED == 0, slow: slot & SLOW != 0, duration: decode_duration(slot) }
    }

    /// One writer at a time (see the module docs): every access is a plain `Relaxed` load or store, no RMW.
    #[inline(always)]
    fn push(&self, success: bool, slow: bool, duration: Duration) {
        let i = self.head.load(Relaxed);
        let len = self.len.load(Relaxed);
        let new = encode_duration(duration) | if success { 0 } else { FAILED } | if slow { SLOW } else { 0 };
        // Slots beyond `len` may hold data from before a `clear`, so only a full ring evicts.
        let full = len == self.cap;
        if let Some(slot) = self.slots.get(i as usize) {
            let old = if full { slot.load(Relaxed) } else { 0 };
            slot.store(new, Relaxed);
            // Totals are rewritten only when they change (a success replacing a success changes neither): fewer
            // stores for the breaker's lock to wait for.
            let (old_failed, old_slow) = (old & FAILED != 0, old & SLOW != 0);
            if old_failed == success {
                let f = self.failures.load(Relaxed);
                self.failures.store(if success { f - 1 } else { f + 1 }, Relaxed);
            }
            if old_slow != slow {
                let n = self.slow.load(Relaxed);
                self.slow.store(if slow { n + 1 } else { n - 1 }, Relaxed);
            }
        }
        if !full {
            self.len.store(len + 1, Relaxed);
        }
        self.head.store(if i + 1 == self.cap { 0 } else { i + 1 }, Relaxed);
    }

    fn clear(&self) {
        // Slots need no wiping: `len` says which are live, and a push overwrites its whole slot.
        for a in [&self.head, &self.len, &self.failures, &self.slow] {
            a.store(0, Relaxed);
        }
    }
}

/// Partial aggregate of one time bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    /// Absolute bucket number since the window's epoch; a slot whose index is stale holds no live data.
    index: u64,
    fast_ok: u32,
    slow_ok: u32,
    fast_failed: u32,
    slow_failed: u32,
    nanos: u64,
}

impl Bucket {
    fn calls(&self) -> u32 {
        self.fast_ok + self.slow_ok + self.fast_failed + self.slow_failed
    }
    fn failures(&self) -> u32 {
        self.fast_failed + self.slow_failed
    }
    fn slow(&self) -> u32 {
        self.slow_ok + self.slow_failed
    }
    fn add(&mut self, s: Sample) {
        match (s.success, s.slow) {
            (true, false) => self.fast_ok += 1,
            (true, true) => self.slow_ok += 1,
            (false, false) => self.fast_failed += 1,
            (false, true) => self.slow_failed += 1,
        }
        self.nanos = self.nanos.saturating_add(u64::try_from(s.duration.as_nanos()).unwrap_or(u64::MAX));
    }
    fn sub(&mut self, o: &Bucket) {
        self.fast_ok -= o.fast_ok;
        self.slow_ok -= o.slow_ok;
        self.fast_failed -= o.fast_failed;
        self.slow_failed -= o.slow_failed;
        self.nanos = self.nanos.saturating_sub(o.nanos);
    }
}

#[derive(Clone, Debug)]
struct TimeWindow {
    bucket_nanos: u64,
    /// Set by the first call; bucket numbers count from here.
    epoch: Option<Instant>,
    /// Bucket number of the newest bucket.
    current: u64,
    /// Sum of all live buckets, kept so rates are O(1).
    totals: Bucket,
    buckets: Box<[Bucket]>,
    /// The last recorded call as it was (the buckets keep only aggregates); stale once every bucket expired.
    newest: Option<Sample>,
}

impl TimeWindow {
    fn new(size: Duration, buckets: u32) -> Self {
        let nanos = u64::try_from(size.as_nanos()).unwrap_or(u64::MAX);
        TimeWindow {
            bucket_nanos: (nanos / u64::from(buckets)).max(1),
            epoch: None,
            current: 0,
            totals: Bucket::default(),
            buckets: vec![Bucket::default(); buckets as usize].into_boxed_slice(),
            newest: None,
        }
    }

    fn advance(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let idx = now.saturating_duration_since(epoch).as_nanos() / u128::from(self.bucket_nanos);
        let idx = u64::try_from(idx).unwrap_or(u64::MAX);
        // A `now` older than the newest bucket (clock skew between callers) lands in the newest bucket.
        if idx <= self.current {
            return;
        }
        let n = self.buckets.len() as u64;
        // Only the last `n` bucket numbers can be live, so an idle gap costs at most `n` steps.
        let start = (self.current + 1).max(idx.saturating_sub(n - 1));
        for i in start..=idx {
            let slot = (i % n) as usize;
            if let Some(b) = self.buckets.get_mut(slot) {
                self.totals.sub(b);
                *b = Bucket { index: i, ..Bucket::default() };
            }
        }
        self.current = idx;
    }

    fn record(&mut self, now: Instant, s: Sample) {
        self.advance(now);
        let slot = (self.current % self.buckets.len() as u64) as usize;
        if let Some(b) = self.buckets.get_mut(slot) {
            b.index = self.current;
            b.add(s);
            self.totals.add(s);
            self.newest = Some(s);
        }
    }

    fn clear(&mut self) {
        self.epoch = None;
        self.current = 0;
        self.totals = Bucket::default();
        self.newest = None;
        self.buckets.fill(Bucket::default());
    }
}

/// Iterator over a window's samples, oldest first. Created by [`Window::iter`] and
/// [`TripContext::recent`](crate::TripContext::recent).
#[derive(Debug)]
pub struct Recent<'a> {
    state: RecentState<'a>,
}

#[derive(Debug)]
enum RecentState<'a> {
    Count { w: &'a CountWindow, next: u32, remaining: u32 },
    Time { w: MutexGuard<'a, TimeWindow>, next_index: u64, end: u64, left: Bucket, mean: Duration },
}

impl Iterator for Recent<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        match &mut self.state {
            RecentState::Count { w, next, remaining } => {
                if *remaining == 0 {
                    return None;
                }
                let i = *next;
                *next = if i + 1 == w.cap { 0 } else { i + 1 };
                *remaining -= 1;
                Some(w.sample(i))
            }
            RecentState::Time { w, next_index, end, left, mean } => loop {
                let (success, slow, counter) = if left.fast_failed > 0 {
                    (false, false, &mut left.fast_failed)
                } else if left.slow_failed > 0 {
                    (false, true, &mut left.slow_failed)
                } else if left.fast_ok > 0 {
                    (true, false, &mut left.fast_ok)
                } else if left.slow_ok > 0 {
                    (true, true, &mut left.slow_ok)
                } else {
                    if *next_index >= *end {
                        return None;
                    }
                    let i = *next_index;
                    *next_index += 1;
                    let slot = (i % w.buckets.len() as u64) as usize;
                    if let Some(b) = w.buckets.get(slot).filter(|b| b.index == i && b.calls() > 0) {
                        *left = *b;
                        *mean = Duration::from_nanos(b.nanos / u64::from(b.calls()));
                    }
                    continue;
                };
                *counter -= 1;
                return Some(Sample { success, slow, duration: *mean });
            },
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.state {
            RecentState::Count { remaining, .. } => (*remaining as usize, Some(*remaining as usize)),
            RecentState::Time { w, .. } => (0, Some(w.totals.calls() as usize)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations below 512 ns are stored exactly, so samples round-trip through the window unchanged.
    fn s(success: bool, ns: u64, slow: bool) -> Sample {
        Sample { success, duration: Duration::from_nanos(ns), slow }
    }

    #[test]
    fn duration_codec_roundtrip_is_tight() {
        for n in [0u64, 1, 511, 512, 513, 999, 123_456, 1_000_000_007, 60_000_000_000, 1_000_000_000_000] {
            let d = Duration::from_nanos(n);
            let code = encode_duration(d);
            assert_eq!(code & (FAILED | SLOW), 0, "{n}: code must leave the flag bits free");
            let back = decode_duration(code);
            assert!(back <= d, "{n}: decoding must not overstate");
            let err = (d - back).as_nanos() as f64;
            assert!(err <= n as f64 / 256.0, "{n} -> {back:?}");
        }
        let max = decode_duration(CODE_MAX);
        assert!(max > Duration::from_secs(17 * 60) && max < Duration::from_secs(19 * 60), "{max:?}");
        assert_eq!(decode_duration(encode_duration(Duration::from_secs(10_000))), max);
        assert_eq!(decode_duration(encode_duration(Duration::MAX)), max);
        assert_eq!(decode_duration(FAILED | SLOW | 7), Duration::from_nanos(7));
    }

    #[test]
    fn count_window_evicts_oldest_and_keeps_totals() {
        let t = Instant::now();
        let mut w = Window::new(WindowKind::Count(3));
        w.record(t, s(false, 1, false));
        w.record(t, s(true, 2, true));
        w.record(t, s(true, 3, false));
        assert_eq!((w.len(), w.failures(), w.slow_calls()), (3, 1, 1));
        w.record(t, s(false, 4, true));
        assert_eq!((w.len(), w.failures(), w.slow_calls()), (3, 1, 2));
        let got: Vec<_> = w.iter().collect();
        assert_eq!(got, vec![s(true, 2, true), s(true, 3, false), s(false, 4, true)]);
        assert_eq!(w.newest(), Some(s(false, 4, true)));
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.iter().count(), 0);
        assert_eq!(w.newest(), None);
    }

    #[test]
    fn count_window_of_100_is_small() {
        let w = Window::new(WindowKind::Count(100));
        assert_eq!(w.heap_bytes(), 200);
        assert_eq!(Window::new(WindowKind::Count(0)).kind(), WindowKind::Count(1));
    }

    #[test]
    fn time_window_expires_whole_buckets() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut w = Window::new(WindowKind::Time { size: Duration::from_secs(10), buckets: 10 });
        w.record(ms(0), s(false, 10, false));
        w.record(ms(500), s(true, 30, true));
        w.record(ms(1500), s(true, 5, false));
        assert_eq!((w.len(), w.failures(), w.slow_calls()), (3, 1, 1));
        let got: Vec<_> = w.iter().collect();
        assert_eq!(got, vec![s(false, 20, false), s(true, 20, true), s(true, 5, false)]);
        // The buckets blur order and durations; the newest call is kept as it was.
        w.record(ms(1600), s(false, 7, true));
        assert_eq!(w.newest(), Some(s(false, 7, true)));
        assert_eq!(w.iter().last(), Some(s(true, 6, false)), "a bucket replays failures first, at its mean");
        assert_eq!((w.len(), w.failures(), w.slow_calls()), (4, 2, 2));
        // Bucket 0 (t in [0, 1 s)) expires once bucket 10 begins.
        w.advance(ms(9_999));
        assert_eq!(w.len(), 4);
        w.advance(ms(10_000));
        assert_eq!((w.len(), w.failures()), (2, 1));
        // A long idle gap empties everything in at most `buckets` steps.
        w.advance(ms(1_000_000));
        assert!(w.is_empty());
        assert_eq!(w.newest(), None, "an expired call is not the newest one in the window");
        // Time going backwards lands in the newest bucket instead of corrupting totals.
        w.record(ms(5), s(false, 1, false));
        assert_eq!((w.len(), w.failures()), (1, 1));
    }

    #[test]
    fn copy_from_reuses_storage() {
        let t = Instant::now();
        let mut a = Window::new(WindowKind::Count(10));
        let mut b = Window::new(WindowKind::Count(10));
        b.record(t, s(false, 1, true));
        a.copy_from(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        let mut tw = Window::new(WindowKind::Time { size: Duration::from_secs(1), buckets: 2 });
        tw.copy_from(&b);
        assert_eq!(tw.len(), 1);
    }
}
