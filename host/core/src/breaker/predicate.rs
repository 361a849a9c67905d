//! The trip-decision seam: the [`TripPredicate`] trait, the [`TripContext`] it is shown, and the built-in predicates
//! (gobreaker consecutive failures, resilience4j failure-rate and slow-call-rate, combinators). Owns *whether* to trip;
//! never *how* a breaker changes state. A WASM policy plugin implements the same trait (STYLE §6).
//!
//! # When a predicate is called
//! Only in the `Closed` state (never in half-open, open, forced or disabled states), after an outcome has been added
//! to the counts and the window, and only for outcomes selected by [`TripPredicate::evaluate_on`]:
//! - [`EvaluateOn::EveryOutcome`] (the default, so custom predicates see every change of the counts);
//! - [`EvaluateOn::FailureOrSlow`]: after a failure, after a slow call, and after the one outcome that grows the
//!   window from below `minimum_calls` to it (the moment a rate becomes defined). Plain fast successes skip the call,
//!   which keeps the hot path free of virtual calls for the built-ins. (A success cannot raise a count window's
//!   failure or slow rate; in a time window, expiry of old successes can, and is then noticed at the next failure.)
//!
//! Where it runs depends on [`TripPredicate::may_block`]: `false` (built-ins) runs inside the breaker's short critical
//! section (state mutex and counting lane both held); `true` (the default, e.g. a WASM call of up to ~10 ms) runs with
//! no breaker lock held, against a private copy of counts and window, serialised with other evaluations of the same
//! breaker, so admission and recording never wait for it. The verdict of a blocking predicate is applied only if the
//! breaker is still closed in the generation the predicate looked at.

use std::fmt;
use std::sync::Arc;

use super::counts::Counts;
use super::window::{Recent, Sample, Window};

/// Which recorded outcomes trigger a predicate call (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvaluateOn {
    /// After every outcome recorded in the closed state.
    EveryOutcome,
    /// After failures, slow calls and the outcome that fills the window to `minimum_calls`.
    FailureOrSlow,
}

/// What a trip predicate sees: the current generation's counts and the sliding window.
#[derive(Clone, Copy, Debug)]
pub struct TripContext<'a> {
    counts: &'a Counts,
    window: &'a Window,
    minimum_calls: u32,
    generation: Option<u32>,
}

impl<'a> TripContext<'a> {
    /// Builds a context, e.g. for testing a predicate outside a breaker (no generation: see [`Self::generation`]).
    pub fn new(counts: &'a Counts, window: &'a Window, minimum_calls: u32) -> Self {
        TripContext { counts, window, minimum_calls, generation: None }
    }

    /// The same context, as a breaker's generation `generation` (the breaker builds its contexts this way).
    pub fn in_generation(self, generation: u32) -> Self {
        TripContext { generation: Some(generation), ..self }
    }

    /// The breaker generation the counts and window belong to; `None` for a context built outside a breaker. Both
    /// start empty with every generation, and every outcome recorded in it bumps [`Counts::requests`], so
    /// `(generation, requests)` names the data exactly: a predicate that keeps its own copy of the window (a WASM
    /// plugin) can tell one new outcome from a gap. Without a generation, nothing links one context to the next.
    #[inline]
    pub fn generation(&self) -> Option<u32> {
        self.generation
    }

    /// Counters of the current generation.
    #[inline]
    pub fn counts(&self) -> &Counts {
        self.counts
    }

    /// The samples of the sliding window, oldest first.
    pub fn recent(&self) -> Recent<'_> {
        self.window.iter()
    }

    /// The outcome recorded last, if it is still in the window (exact even for a time window).
    #[inline]
    pub fn newest(&self) -> Option<Sample> {
        self.window.newest()
    }

    /// Number of calls in the sliding window.
    #[inline]
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    /// Failed calls in the sliding window.
    #[inline]
    pub fn window_failures(&self) -> u32 {
        self.window.failures()
    }

    /// Slow calls (failed or not) in the sliding window.
    #[inline]
    pub fn window_slow_calls(&self) -> u32 {
        self.window.slow_calls()
    }

    /// The configured `minimum_calls`.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// Failed share of the window in `0.0..=1.0`; `None` while the window holds fewer than `minimum_calls` calls
    /// (resilience4j `minimumNumberOfCalls`) or is empty.
    pub fn failure_rate(&self) -> Option<f64> {
        self.rate(self.window.failures())
    }

    /// Slow share of the window in `0.0..=1.0`; `None` under the same conditions as [`Self::failure_rate`].
    pub fn slow_call_rate(&self) -> Option<f64> {
        self.rate(self.window.slow_calls())
    }

    fn rate(&self, part: u32) -> Option<f64> {
        let len = self.window.len();
        (len > 0 && len >= self.minimum_calls as usize).then(|| f64::from(part) / len as f64)
    }
}

/// Decides whether a closed breaker opens. `Some(reason)` trips; the reason goes into the state-change event.
///
/// It may be slow (a WASM call): see the module docs for exactly when and under which lock it is called.
pub trait TripPredicate: Send + Sync + fmt::Debug {
    /// `Some(reason)` to open the breaker.
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String>;

    /// Which outcomes trigger a call. Defaults to every outcome.
    fn evaluate_on(&self) -> EvaluateOn {
        EvaluateOn::EveryOutcome
    }

    /// Whether a call may block or take long. Defaults to `true` (evaluated outside the breaker's lock); return
    /// `false` only for predicates that are quick, non-blocking and never call back into the breaker.
    fn may_block(&self) -> bool {
        true
    }

    /// Whether it reads [`Sample::duration`](super::Sample) from the window. Defaults to `true`; a breaker whose
    /// predicate answers `false`, with no slow-call threshold and a count window, does not time the calls it runs
    /// through [`Breaker::call`](super::Breaker::call) (nothing would read the durations), which saves two clock reads.
    fn reads_durations(&self) -> bool {
        true
    }
}

/// gobreaker-style: trips when `consecutive_failures >= n` (seed-000 `failureThreshold`; gobreaker's own default is
/// `> 5`, i.e. `ConsecutiveFailures(6)`). `n = 0` is treated as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsecutiveFailures(pub u32);

impl TripPredicate for ConsecutiveFailures {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        let c = ctx.counts().consecutive_failures;
        (c >= self.0.max(1)).then(|| format!("{c} consecutive failures"))
    }
    fn evaluate_on(&self) -> EvaluateOn {
        EvaluateOn::FailureOrSlow
    }
    fn may_block(&self) -> bool {
        false
    }
    fn reads_durations(&self) -> bool {
        false
    }
}

/// resilience4j `failureRateThreshold`: trips when the window's failure rate is at least `threshold` (a ratio in
/// `0.0..=1.0`) and the window holds at least `minimum_calls` calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureRate {
    /// Ratio in `0.0..=1.0`.
    pub threshold: f64,
}

impl FailureRate {
    /// From a percentage, as resilience4j configures it (`50.0` = half the calls failed).
    pub fn percent(p: f64) -> Self {
        FailureRate { threshold: p / 100.0 }
    }
}

impl TripPredicate for FailureRate {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        let r = ctx.failure_rate()?;
        (r >= self.threshold).then(|| {
            format!("failure rate {:.1}% >= {:.1}% over {} calls", r * 100.0, self.threshold * 100.0, ctx.window_len())
        })
    }
    fn evaluate_on(&self) -> EvaluateOn {
        EvaluateOn::FailureOrSlow
    }
    fn may_block(&self) -> bool {
        false
    }
    fn reads_durations(&self) -> bool {
        false
    }
}

/// resilience4j `slowCallRateThreshold`: trips when the window's slow-call rate is at least `threshold` (ratio).
/// Which calls are slow is the breaker's `slow_call_duration` setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowCallRate {
    /// Ratio in `0.0..=1.0`.
    pub threshold: f64,
}

impl SlowCallRate {
    /// From a percentage.
    pub fn percent(p: f64) -> Self {
        SlowCallRate { threshold: p / 100.0 }
    }
}

impl TripPredicate for SlowCallRate {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        let r = ctx.slow_call_rate()?;
        (r >= self.threshold).then(|| {
            format!(
                "slow-call rate {:.1}% >= {:.1}% over {} calls",
                r * 100.0,
                self.threshold * 100.0,
                ctx.window_len()
            )
        })
    }
    fn evaluate_on(&self) -> EvaluateOn {
        EvaluateOn::FailureOrSlow
    }
    fn may_block(&self) -> bool {
        false
    }
    fn reads_durations(&self) -> bool {
        false
    }
}

/// Trips when any member trips (first reason wins). Evaluated as eagerly and as carefully as its most demanding member.
#[derive(Clone, Debug, Default)]
pub struct AnyOf(pub Vec<Arc<dyn TripPredicate>>);

impl TripPredicate for AnyOf {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        self.0.iter().find_map(|p| p.should_trip(ctx))
    }
    fn evaluate_on(&self) -> EvaluateOn {
        if self.0.iter().any(|p| p.evaluate_on() == EvaluateOn::EveryOutcome) {
            EvaluateOn::EveryOutcome
        } else {
            EvaluateOn::FailureOrSlow
        }
    }
    fn may_block(&self) -> bool {
        self.0.iter().any(|p| p.may_block())
    }
    fn reads_durations(&self) -> bool {
        self.0.iter().any(|p| p.reads_durations())
    }
}

/// Never trips: a breaker that only collects metrics (resilience4j `METRICS_ONLY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Never;

impl TripPredicate for Never {
    fn should_trip(&self, _: &TripContext<'_>) -> Option<String> {
        None
    }
    fn evaluate_on(&self) -> EvaluateOn {
        EvaluateOn::FailureOrSlow
    }
    fn may_block(&self) -> bool {
        false
    }
    fn reads_durations(&self) -> bool {
        false
    }
}

/// gobreaker `ReadyToTrip(counts) bool` as a closure. Assumed quick (evaluated under the lock), called after every
/// closed-state outcome.
pub struct ReadyToTrip<F>(pub F);

impl<F> fmt::Debug for ReadyToTrip<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadyToTrip(..)")
    }
}

impl<F: Fn(&Counts) -> bool + Send + Sync> TripPredicate for ReadyToTrip<F> {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        (self.0)(ctx.counts()).then(|| String::from("ready_to_trip returned true"))
    }
    fn may_block(&self) -> bool {
        false
    }
    fn reads_durations(&self) -> bool {
        false
    }
}

/// Consecutive-failure counts only ever reach a threshold on a failure, and window rates only become defined at
/// `minimum_calls`: this is where [`EvaluateOn::FailureOrSlow`] is turned into a yes/no for one outcome.
/// `reached_min`: this outcome grew the window from below `minimum_calls` to it.
#[inline]
pub(crate) fn wants_evaluation(on: EvaluateOn, success: bool, slow: bool, reached_min: bool) -> bool {
    match on {
        EvaluateOn::EveryOutcome => true,
        EvaluateOn::FailureOrSlow => !success || slow || reached_min,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::breaker::window::{Sample, WindowKind};

    fn window(outcomes: &[(bool, bool)]) -> Window {
        let t = Instant::now();
        let mut w = Window::new(WindowKind::Count(10));
        for &(success, slow) in outcomes {
            w.record(t, Sample { success, slow, duration: Duration::from_millis(1) });
        }
        w
    }

    #[test]
    fn consecutive_failures_reason() {
        let w = window(&[]);
        let c = Counts { consecutive_failures: 3, ..Counts::default() };
        let ctx = TripContext::new(&c, &w, 0);
        assert_eq!(ConsecutiveFailures(3).should_trip(&ctx).as_deref(), Some("3 consecutive failures"));
        assert_eq!(ConsecutiveFailures(4).should_trip(&ctx), None);
        assert!(!ConsecutiveFailures(1).may_block());
    }

    #[test]
    fn rates_respect_minimum_calls() {
        let w = window(&[(false, true), (false, false), (true, true), (true, false)]);
        let c = Counts::default();
        let ctx = TripContext::new(&c, &w, 5);
        assert_eq!(ctx.failure_rate(), None);
        assert_eq!(FailureRate::percent(10.0).should_trip(&ctx), None);
        let ctx = TripContext::new(&c, &w, 4);
        assert_eq!(ctx.failure_rate(), Some(0.5));
        assert_eq!(ctx.slow_call_rate(), Some(0.5));
        assert!(FailureRate::percent(50.0).should_trip(&ctx).is_some());
        assert!(FailureRate::percent(51.0).should_trip(&ctx).is_none());
        assert!(SlowCallRate { threshold: 0.5 }.should_trip(&ctx).is_some());
        assert_eq!(ctx.recent().filter(|s| s.slow).count(), 2);
        assert_eq!(TripContext::new(&c, &window(&[]), 0).failure_rate(), None);
    }

    #[test]
    fn combinators() {
        let w = window(&[(false, false)]);
        let c = Counts { consecutive_failures: 1, ..Counts::default() };
        let ctx = TripContext::new(&c, &w, 1);
        let any = AnyOf(vec![Arc::new(Never), Arc::new(FailureRate::percent(100.0))]);
        assert!(any.should_trip(&ctx).unwrap().starts_with("failure rate 100.0%"));
        assert!(!any.may_block());
        assert_eq!(any.evaluate_on(), EvaluateOn::FailureOrSlow);
        let rt = ReadyToTrip(|c: &Counts| c.consecutive_failures > 0);
        assert!(rt.should_trip(&ctx).is_some());
        assert_eq!(rt.evaluate_on(), EvaluateOn::EveryOutcome);
        assert!(wants_evaluation(EvaluateOn::FailureOrSlow, true, false, true));
        assert!(!wants_evaluation(EvaluateOn::FailureOrSlow, true, false, false));
        assert!(wants_evaluation(EvaluateOn::FailureOrSlow, true, true, false));
        assert!(wants_evaluation(EvaluateOn::EveryOutcome, true, false, false));
    }
}
