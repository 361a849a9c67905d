//! One binding's trip-decision state, shared by both ways the SDK exports a trip predicate: the copy of the
//! breaker's window and the reason of the last `trip` verdict. A plugin instance bound to one service keeps one in a
//! thread-local; an instance shared by many services keeps one in each service's `predicate` resource.

use crate::ProbeOutcome;
use crate::window::{WindowCopy, WindowSummary};

/// A trip decision before it is mapped to the WIT `verdict` of the interface that asked.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    StayClosed,
    Trip,
    NeedWindow,
}

/// The window copy and pending reason of one binding.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct TripState {
    window: WindowCopy,
    reason: String,
}

impl TripState {
    pub const fn new() -> Self {
        TripState { window: WindowCopy::new(), reason: String::new() }
    }

    /// A decision at `requests` on the plain numbers: `decide` gets the window if the copy can follow the breaker,
    /// otherwise the host is asked for the whole window.
    pub fn step(
        &mut self,
        requests: u32,
        summary: &WindowSummary,
        decide: impl FnOnce(&[ProbeOutcome]) -> Option<String>,
    ) -> Verdict {
        if self.window.advance(requests, summary) { self.decide(decide) } else { Verdict::NeedWindow }
    }

    /// A decision with the host's whole window, oldest first, which replaces the copy.
    pub fn resync(
        &mut self,
        requests: u32,
        summary: &WindowSummary,
        outcomes: impl IntoIterator<Item = ProbeOutcome>,
        decide: impl FnOnce(&[ProbeOutcome]) -> Option<String>,
    ) -> Verdict {
        self.window.replace(requests, summary, outcomes);
        self.decide(decide)
    }

    /// The reason of the last `trip` verdict (empty once taken).
    pub fn take_reason(&mut self) -> String {
        std::mem::take(&mut self.reason)
    }

    fn decide(&mut self, decide: impl FnOnce(&[ProbeOutcome]) -> Option<String>) -> Verdict {
        match decide(self.window.outcomes()) {
            Some(reason) => {
                self.reason = reason;
                Verdict::Trip
            }
            None => Verdict::StayClosed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(generation: u32, len: u32, failures: u32, newest: ProbeOutcome) -> WindowSummary {
        WindowSummary { generation, len, failures, slow_calls: 0, newest }
    }

    const FAIL: ProbeOutcome = ProbeOutcome { success: false, latency_ms: 1, slow: false };

    #[test]
    fn asks_for_the_window_after_a_gap_and_keeps_the_reason_until_taken() {
        let mut state = TripState::new();
        let two_failures = |w: &[ProbeOutcome]| (w.iter().filter(|o| !o.success).count() >= 2).then(|| "two".into());
        // A fresh state first meets the third outcome of a generation: a gap.
        assert_eq!(state.step(3, &summary(1, 3, 1, FAIL), two_failures), Verdict::NeedWindow);
        let ok = ProbeOutcome { success: true, latency_ms: 1, slow: false };
        assert_eq!(state.resync(3, &summary(1, 3, 1, FAIL), [ok, ok, FAIL], two_failures), Verdict::StayClosed);
        assert_eq!(state.step(4, &summary(1, 4, 2, FAIL), two_failures), Verdict::Trip);
        assert_eq!(state.take_reason(), "two");
        assert_eq!(state.take_reason(), "");
    }
}
