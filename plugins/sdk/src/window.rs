//! The plugin's own copy of the breaker's sliding window.
//!
//! A trip decision crosses the WASM boundary as plain numbers (counts and a `window-summary`), so the call costs no
//! memory copy; the copy here is kept in step by appending each decision's newest outcome. `(generation, requests)`
//! names the breaker's data exactly (both restart with every generation, and every recorded outcome bumps
//! `requests`), so a step is recognised for what it is: one new outcome, none (a time window may have dropped old
//! ones), or a gap — a fresh instance, a call the host skipped — after which the host sends the whole window once.
//! The copy also checks itself against the summary's totals, so it can never silently disagree with the host.

use crate::ProbeOutcome;

/// The numbers of the WIT `window-summary`, unpacked.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowSummary {
    pub generation: u32,
    pub len: u32,
    pub failures: u32,
    pub slow_calls: u32,
    pub newest: ProbeOutcome,
}

/// Dropped outcomes are compacted away once they are at least this many and at least as many as the live ones, which
/// keeps appending amortised O(1) without a ring buffer (a policy gets its window as one slice), and a copy of a
/// window of n outcomes within 2·max(n, this) slots: half a KiB for a small window, which counts when an instance
/// holds the copies of many services.
const COMPACT_AT: usize = 16;

/// The copy of one binding's window (one breaker's: an instance's own, or one service's in a shared instance).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct WindowCopy {
    outcomes: Vec<ProbeOutcome>,
    /// Index of the oldest outcome still in the window.
    start: usize,
    failures: u32,
    slow_calls: u32,
    /// `(generation, requests)` of the data the copy holds; `None` while it is out of step.
    at: Option<(u32, u32)>,
}

impl WindowCopy {
    pub const fn new() -> Self {
        WindowCopy { outcomes: Vec::new(), start: 0, failures: 0, slow_calls: 0, at: None }
    }

    /// Steps the copy to the breaker's data for a decision at `requests`. `false`: the copy cannot follow (a gap, or
    /// totals that disagree) and the host must send the whole window ([`Self::replace`]).
    pub fn advance(&mut self, requests: u32, summary: &WindowSummary) -> bool {
        let step = match self.at {
            // A saturated request count no longer tells outcomes apart.
            _ if requests == u32::MAX => false,
            Some((generation, seen)) if generation == summary.generation && requests == seen => {
                self.outcomes().last().is_none_or(|last| *last == summary.newest)
            }
            Some((generation, seen)) if generation == summary.generation && requests == seen + 1 => {
                self.push(summary.newest);
                true
            }
            // The first outcome of a generation: the window restarted with it, whatever came before.
            _ if requests == 1 => {
                self.clear();
                self.push(summary.newest);
                true
            }
            _ => false,
        };
        if step {
            self.keep_newest(summary.len as usize);
            if self.agrees_with(summary) {
                self.at = Some((summary.generation, requests));
                return true;
            }
        }
        self.at = None;
        false
    }

    /// Replaces the copy with the host's whole window, oldest first.
    pub fn replace(
        &mut self,
        requests: u32,
        summary: &WindowSummary,
        outcomes: impl IntoIterator<Item = ProbeOutcome>,
    ) {
        self.clear();
        for outcome in outcomes {
            self.push(outcome);
        }
        self.at = Some((summary.generation, requests));
    }

    /// The window, oldest first.
    pub fn outcomes(&self) -> &[ProbeOutcome] {
        self.outcomes.get(self.start..).unwrap_or_default()
    }

    fn agrees_with(&self, summary: &WindowSummary) -> bool {
        self.outcomes().len() == summary.len as usize
            && self.failures == summary.failures
            && self.slow_calls == summary.slow_calls
    }

    fn push(&mut self, outcome: ProbeOutcome) {
        self.failures += u32::from(!outcome.success);
        self.slow_calls += u32::from(outcome.slow);
        self.outcomes.push(outcome);
    }

    /// Drops the oldest outcomes until at most `len` are left (a count window evicts one per push; a time window
    /// expires a bucket at a time).
    fn keep_newest(&mut self, len: usize) {
        let live = self.outcomes().len();
        if live <= len {
            return;
        }
        let end = self.start + (live - len);
        for dropped in self.outcomes.get(self.start..end).unwrap_or_default() {
            self.failures -= u32::from(!dropped.success);
            self.slow_calls -= u32::from(dropped.slow);
        }
        self.start = end;
        if self.start >= COMPACT_AT && self.start >= self.outcomes.len() - self.start {
            self.outcomes.drain(..self.start);
            self.start = 0;
        }
    }

    fn clear(&mut self) {
        self.outcomes.clear();
        (self.start, self.failures, self.slow_calls, self.at) = (0, 0, 0, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ms: u64) -> ProbeOutcome {
        ProbeOutcome { success: true, latency_ms: ms, slow: false }
    }

    fn failed(ms: u64) -> ProbeOutcome {
        ProbeOutcome { success: false, latency_ms: ms, slow: false }
    }

    /// A host-side count window of `cap` in generation `generation`, for driving a copy call by call.
    struct Breaker {
        generation: u32,
        requests: u32,
        cap: usize,
        window: Vec<ProbeOutcome>,
    }

    impl Breaker {
        fn new(cap: usize) -> Self {
            Breaker { generation: 0, requests: 0, cap, window: Vec::new() }
        }

        fn record(&mut self, outcome: ProbeOutcome) -> WindowSummary {
            self.requests += 1;
            self.window.push(outcome);
            if self.window.len() > self.cap {
                self.window.remove(0);
            }
            self.summary()
        }

        fn summary(&self) -> WindowSummary {
            WindowSummary {
                generation: self.generation,
                len: self.window.len() as u32,
                failures: self.window.iter().filter(|o| !o.success).count() as u32,
                slow_calls: self.window.iter().filter(|o| o.slow).count() as u32,
                newest: self.window.last().copied().unwrap_or_default(),
            }
        }

        fn new_generation(&mut self) {
            self.generation += 1;
            self.requests = 0;
            self.window.clear();
        }
    }

    #[test]
    fn follows_a_count_window_one_outcome_at_a_time() {
        let mut host = Breaker::new(3);
        let mut copy = WindowCopy::default();
        for i in 0..200 {
            let outcome = if i % 3 == 0 { failed(i) } else { ok(i) };
            let summary = host.record(outcome);
            assert!(copy.advance(host.requests, &summary), "step {i}");
            assert_eq!(copy.outcomes(), host.window.as_slice(), "step {i}");
        }
        assert!(copy.outcomes.len() <= 2 * COMPACT_AT, "dropped outcomes are compacted away");
        assert!(copy.outcomes.capacity() <= 2 * COMPACT_AT, "{}", copy.outcomes.capacity());
    }

    #[test]
    fn a_fresh_copy_needs_the_window_unless_the_generation_just_began() {
        let mut host = Breaker::new(10);
        let first = host.record(failed(1));
        assert!(WindowCopy::default().advance(1, &first), "the window is just the newest outcome");

        let second = host.record(ok(2));
        let mut copy = WindowCopy::default();
        assert!(!copy.advance(host.requests, &second));
        copy.replace(host.requests, &second, host.window.iter().copied());
        assert_eq!(copy.outcomes(), [failed(1), ok(2)]);
        let third = host.record(ok(3));
        assert!(copy.advance(host.requests, &third));
        assert_eq!(copy.outcomes(), [failed(1), ok(2), ok(3)]);
    }

    #[test]
    fn a_missed_outcome_is_a_gap() {
        let mut host = Breaker::new(10);
        let mut copy = WindowCopy::default();
        let summary = host.record(ok(1));
        assert!(copy.advance(host.requests, &summary));
        host.record(failed(2));
        let summary = host.record(ok(3));
        assert!(!copy.advance(host.requests, &summary), "requests jumped by two");
        // Out of step stays out of step until the window is sent, even if the next call looks like one step.
        let summary = host.record(ok(4));
        assert!(!copy.advance(host.requests, &summary));
    }

    #[test]
    fn a_new_generation_starts_from_its_first_outcome() {
        let mut host = Breaker::new(10);
        let mut copy = WindowCopy::default();
        for i in 0..5 {
            let summary = host.record(failed(i));
            assert!(copy.advance(host.requests, &summary));
        }
        host.new_generation();
        let summary = host.record(ok(9));
        assert!(copy.advance(host.requests, &summary));
        assert_eq!(copy.outcomes(), [ok(9)]);
        // A new generation seen only from its second outcome on is a gap.
        host.new_generation();
        host.record(ok(10));
        let summary = host.record(ok(11));
        assert!(!copy.advance(host.requests, &summary));
    }

    #[test]
    fn no_new_outcome_keeps_the_newest_len() {
        let mut host = Breaker::new(10);
        let mut copy = WindowCopy::default();
        for i in 0..4 {
            let summary = host.record(ok(i));
            assert!(copy.advance(host.requests, &summary));
        }
        // A time window expired its two oldest outcomes; no outcome was added.
        host.window.drain(..2);
        assert!(copy.advance(host.requests, &host.summary()));
        assert_eq!(copy.outcomes(), [ok(2), ok(3)]);
    }

    #[test]
    fn totals_that_disagree_put_the_copy_out_of_step() {
        let mut host = Breaker::new(10);
        let mut copy = WindowCopy::default();
        let summary = host.record(ok(1));
        assert!(copy.advance(host.requests, &summary));
        let mut summary = host.record(ok(2));
        summary.failures = 1;
        assert!(!copy.advance(host.requests, &summary));
        assert!(!copy.advance(u32::MAX, &host.summary()), "a saturated request count is never trusted");

        // The same (generation, requests) with another newest outcome is other data, whatever the totals say.
        let summary = host.summary();
        copy.replace(host.requests, &summary, host.window.iter().copied());
        assert!(copy.advance(host.requests, &summary));
        assert!(!copy.advance(host.requests, &WindowSummary { newest: ok(99), ..summary }));
    }
}
