//! Property tests (proptest): counts add up, only valid transitions, never more than `max_requests` concurrent
//! half-open calls, backoff within `[0, max]`, window totals match its samples.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_core::{
    AnyOf, Backoff, BackoffSettings, Breaker, ConsecutiveFailures, FailureRate, Force, Jitter, Permit, Sample,
    Settings, SlowCallRate, State, StateChange, TripPredicate, Window, WindowKind,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    /// Finish the `n`-th outstanding permit (modulo their number).
    Finish {
        n: usize,
        success: bool,
        ms: u64,
    },
    Release {
        n: usize,
    },
    Advance {
        ms: u64,
    },
    State,
    Force(Force),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Acquire),
        6 => (any::<usize>(), any::<bool>(), 0u64..300).prop_map(|(n, success, ms)| Op::Finish { n, success, ms }),
        1 => any::<usize>().prop_map(|n| Op::Release { n }),
        3 => (0u64..2_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::State),
        1 => prop_oneof![Just(Force::Open), Just(Force::Closed), Just(Force::Disabled), Just(Force::Auto)].prop_map(Op::Force),
        1 => Just(Op::Reset),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        1u32..6,
        1u32..4,
        1u32..4,
        prop::option::of(500u64..5_000),
        prop_oneof![
            (1u32..20).prop_map(WindowKind::Count),
            (1u64..10, 1u32..6).prop_map(|(s, b)| WindowKind::Time { size: Duration::from_secs(s), buckets: b })
        ],
        0u32..8,
        0u8..3,
    )
        .prop_map(|(fail, max_req, succ, interval, window, min_calls, pred)| {
            let trip: Arc<dyn TripPredicate> = match pred {
                0 => Arc::new(ConsecutiveFailures(fail)),
                1 => Arc::new(FailureRate::percent(50.0)),
                _ => Arc::new(AnyOf(vec![Arc::new(ConsecutiveFailures(fail)), Arc::new(SlowCallRate::percent(60.0))])),
            };
            Settings::new("prop")
                .max_requests(max_req)
                .success_threshold(succ)
                .reset_timeout(Duration::from_millis(1_000))
                .interval(interval.map(Duration::from_millis))
                .slow_call_duration(Some(Duration::from_millis(150)))
                .window(window)
                .minimum_calls(min_calls)
                .trip_predicate(trip)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn breaker_invariants(settings in settings(), ops in prop::collection::vec(op(), 1..200)) {
        let max_requests = settings.half_open_permits();
        let events: Arc<Mutex<Vec<(State, State, bool)>>> = Arc::default();
        let manual = Arc::new(Mutex::new(false));
        let (e2, m2) = (events.clone(), manual.clone());
        let settings = settings.on_state_change(Arc::new(move |c: &StateChange| {
            e2.lock().unwrap().push((c.from, c.to, *m2.lock().unwrap()));
        }));
        let b = Breaker::new(settings);
        let mut now = Instant::now();
        let mut outstanding: Vec<Permit> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => {
                    if let Ok(p) = b.try_acquire(now) {
                        outstanding.push(p);
                    }
                }
                Op::Finish { n, success, ms } if !outstanding.is_empty() => {
                    let p = outstanding.swap_remove(n % outstanding.len());
                    b.record(now, p, success, Duration::from_millis(ms));
                }
                Op::Release { n } if !outstanding.is_empty() => {
                    let p = outstanding.swap_remove(n % outstanding.len());
                    b.release(p);
                }
                Op::Finish { .. } | Op::Release { .. } => {}
                Op::Advance { ms } => now += Duration::from_millis(ms),
                Op::State => { b.state(now); }
                Op::Force(f) => {
                    *manual.lock().unwrap() = true;
                    b.force(now, f);
                    *manual.lock().unwrap() = false;
                }
                Op::Reset => {
                    *manual.lock().unwrap() = true;
                    b.reset(now);
                    *manual.lock().unwrap() = false;
                }
            }
            // Counts add up.
            let c = b.counts();
            prop_assert_eq!(c.requests, c.total_successes + c.total_failures);
            prop_assert!(c.consecutive_successes <= c.total_successes);
            prop_assert!(c.consecutive_failures <= c.total_failures);
            prop_assert!(c.consecutive_successes == 0 || c.consecutive_failures == 0);
            prop_assert!(c.slow_calls <= c.requests);
            // Half-open never has more than max_requests trials in flight.
            let in_flight = b.half_open_in_flight();
            prop_assert!(in_flight <= max_requests);
            let current = b.current_state();
            if current == State::HalfOpen {
                let live = outstanding.iter().filter(|p| p.generation() == b.generation()).count();
                prop_assert!(live as u32 <= max_requests);
            }
            if current != State::Open {
                prop_assert_eq!(b.opened_until(), None);
            }
        }
        // Only valid transitions; events chain.
        let ev = events.lock().unwrap();
        for (from, to, manual) in ev.iter() {
            prop_assert!(from != to);
            prop_assert!(*manual || from.can_transition_to(*to), "automatic {from} -> {to}");
        }
        for w in ev.windows(2) {
            prop_assert_eq!(w[0].1, w[1].0);
        }
        if let Some(last) = ev.last() {
            prop_assert_eq!(last.1, b.current_state());
        }
    }

    #[test]
    fn backoff_stays_within_bounds(
        initial_ms in 0u64..10_000,
        max_ms in 0u64..120_000,
        multiplier in 1.0f64..10.0,
        jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)],
        reset in prop::option::of(1u64..100_000),
        steps in prop::collection::vec(0u64..200_000, 1..100),
        seed in any::<u64>(),
    ) {
        let s = BackoffSettings {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            multiplier,
            jitter,
            reset_after: reset.map(Duration::from_millis),
        };
        let mut b = Backoff::new(s);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut now = Instant::now();
        let mut prev_exp = Duration::ZERO;
        for step in steps {
            now += Duration::from_millis(step);
            let d = b.next_delay(now, &mut rng);
            prop_assert!(d <= s.max, "{d:?} > {:?}", s.max);
            if jitter == Jitter::None && b.attempt() > 1 {
                // Without jitter the sequence never shrinks unless it was reset.
                prop_assert!(d >= prev_exp || b.attempt() == 1);
            }
            prev_exp = d;
        }
    }

    #[test]
    fn window_totals_match_samples(
        kind in prop_oneof![(1u32..130).prop_map(WindowKind::Count), (1u64..5_000, 1u32..8).prop_map(|(ms, b)| WindowKind::Time { size: Duration::from_millis(ms), buckets: b })],
        samples in prop::collection::vec((any::<bool>(), any::<bool>(), 0u64..10_000_000_000u64, 0u64..500), 0..400),
    ) {
        let mut w = Window::new(kind);
        let mut now = Instant::now();
        let mut pushed = Vec::new();
        for (success, slow, ns, dt) in samples {
            now += Duration::from_millis(dt);
            let s = Sample { success, slow, duration: Duration::from_nanos(ns) };
            w.record(now, s);
            pushed.push(s);
            let got: Vec<Sample> = w.iter().collect();
            prop_assert_eq!(got.len(), w.len());
            prop_assert_eq!(got.iter().filter(|s| !s.success).count(), w.failures() as usize);
            prop_assert_eq!(got.iter().filter(|s| s.slow).count(), w.slow_calls() as usize);
            if let WindowKind::Count(n) = kind {
                // A count window reproduces the last n calls exactly, durations within 0.4 % (below 18 min).
                let tail = &pushed[pushed.len().saturating_sub(n as usize)..];
                prop_assert_eq!(got.len(), tail.len());
                for (g, t) in got.iter().zip(tail) {
                    prop_assert_eq!((g.success, g.slow), (t.success, t.slow));
                    prop_assert!(g.duration <= t.duration);
                    prop_assert!((t.duration - g.duration).as_nanos() * 256 <= t.duration.as_nanos());
                }
            }
        }
    }
}
