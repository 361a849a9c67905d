//! Deterministic unit tests of the breaker state machine: every transition and setting, driven by fake instants.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Events = Arc<Mutex<Vec<(State, State, String)>>>;

fn recorder() -> (Events, StateListener) {
    let events: Events = Arc::default();
    let e = events.clone();
    let l: StateListener = Arc::new(move |c: &StateChange| {
        assert!(c.from != c.to);
        e.lock().unwrap().push((c.from, c.to, c.reason.clone()));
    });
    (events, l)
}

fn transitions(e: &Events) -> Vec<(State, State)> {
    e.lock().unwrap().iter().map(|(f, t, _)| (*f, *t)).collect()
}

fn fail(b: &Breaker, now: Instant) {
    let p = b.try_acquire(now).unwrap();
    b.record(now, p, false, ms(1));
}

fn succeed(b: &Breaker, now: Instant) {
    let p = b.try_acquire(now).unwrap();
    b.record(now, p, true, ms(1));
}

#[test]
fn state_names_and_metric_values() {
    let names: Vec<_> = State::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["closed", "half-open", "open", "forced-open", "forced-closed", "disabled"]);
    let metrics: Vec<_> = State::ALL.iter().map(|s| s.metric_value()).collect();
    assert_eq!(metrics, [0, 1, 2, 2, 0, 0]);
    assert_eq!(State::HalfOpen.to_string(), "half-open");
    assert_eq!("half_open".parse::<State>().unwrap(), State::HalfOpen);
    assert!("ajar".parse::<State>().is_err());
    for s in State::ALL {
        let json = format!("\"{}\"", s.as_str());
        assert_eq!(serde_json_like(s), json);
    }
    assert!(State::Closed.can_transition_to(State::Open));
    assert!(!State::Closed.can_transition_to(State::HalfOpen));
    assert!(!State::Open.can_transition_to(State::Closed));
}

/// serde's own rendering of a unit variant through its `Serialize` impl, without a JSON dependency.
fn serde_json_like(s: State) -> String {
    use serde::Serializer;
    struct Name(String);
    impl Serializer for &mut Name {
        type Ok = ();
        type Error = std::fmt::Error;
        type SerializeSeq = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeTuple = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeTupleStruct = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeTupleVariant = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeMap = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeStruct = serde::ser::Impossible<(), std::fmt::Error>;
        type SerializeStructVariant = serde::ser::Impossible<(), std::fmt::Error>;
        fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), std::fmt::Error> {
            self.0 = format!("\"{v}\"");
            Ok(())
        }
        fn serialize_bool(self, _: bool) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_i8(self, _: i8) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_i16(self, _: i16) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_i32(self, _: i32) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_i64(self, _: i64) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_u8(self, _: u8) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_u16(self, _: u16) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_u32(self, _: u32) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_u64(self, _: u64) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_f32(self, _: f32) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_f64(self, _: f64) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_char(self, _: char) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_str(self, _: &str) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_none(self) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_some<T: ?Sized + serde::Serialize>(self, _: &T) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_unit(self) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_newtype_struct<T: ?Sized + serde::Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_newtype_variant<T: ?Sized + serde::Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, std::fmt::Error> {
            Err(std::fmt::Error)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, std::fmt::Error> {
            Err(std::fmt::Error)
        }
    }
    let mut n = Name(String::new());
    serde::Serialize::serialize(&s, &mut n).unwrap();
    n.0
}

#[test]
fn defaults_trip_after_five_consecutive_failures() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc"));
    for _ in 0..4 {
        fail(&b, t0);
    }
    succeed(&b, t0);
    for _ in 0..4 {
        fail(&b, t0);
    }
    assert_eq!(b.state(t0), State::Closed);
    fail(&b, t0);
    assert_eq!(b.state(t0), State::Open);
    assert_eq!(b.opened_until(), Some(t0 + Duration::from_secs(60)));
    assert_eq!(b.name(), "svc");
}

#[test]
fn full_cycle_closed_open_half_open_closed() {
    let t0 = Instant::now();
    let (events, l) = recorder();
    let b = Breaker::new(Settings::new("svc").failure_threshold(3).reset_timeout(ms(20_000)).on_state_change(l));
    for _ in 0..3 {
        fail(&b, t0);
    }
    assert_eq!(b.current_state(), State::Open);
    assert_eq!(b.try_acquire(t0 + ms(19_999)), Err(Rejected::Open));
    assert_eq!(b.counts().rejected, 1);
    assert_eq!(b.state(t0 + ms(19_999)), State::Open);
    // gobreaker: state() itself performs the due transition.
    assert_eq!(b.state(t0 + ms(20_000)), State::HalfOpen);
    assert_eq!(b.opened_until(), None);
    let p = b.try_acquire(t0 + ms(20_001)).unwrap();
    assert_eq!(b.try_acquire(t0 + ms(20_001)), Err(Rejected::TooManyRequests));
    assert_eq!(b.half_open_in_flight(), 1);
    b.record(t0 + ms(20_002), p, true, ms(1));
    assert_eq!(b.current_state(), State::Closed);
    assert_eq!(b.counts(), Counts::default());
    assert_eq!(
        transitions(&events),
        vec![(State::Closed, State::Open), (State::Open, State::HalfOpen), (State::HalfOpen, State::Closed)]
    );
    let reasons: Vec<_> = events.lock().unwrap().iter().map(|e| e.2.clone()).collect();
    assert_eq!(reasons[0], "3 consecutive failures");
    assert_eq!(reasons[1], "reset timeout elapsed");
}

#[test]
fn half_open_failure_reopens_with_a_fresh_timeout() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(100)));
    fail(&b, t0);
    let p = b.try_acquire(t0 + ms(100)).unwrap();
    b.record(t0 + ms(150), p, false, ms(1));
    assert_eq!(b.current_state(), State::Open);
    assert_eq!(b.opened_until(), Some(t0 + ms(250)));
}

#[test]
fn success_threshold_and_max_requests() {
    let t0 = Instant::now();
    let b = Breaker::new(
        Settings::new("svc").failure_threshold(1).reset_timeout(ms(10)).max_requests(2).success_threshold(3),
    );
    fail(&b, t0);
    let t = t0 + ms(10);
    let p1 = b.try_acquire(t).unwrap();
    let p2 = b.try_acquire(t).unwrap();
    assert_eq!(b.try_acquire(t), Err(Rejected::TooManyRequests));
    b.record(t, p1, true, ms(1));
    assert_eq!(b.current_state(), State::HalfOpen, "1 of 3 successes");
    let p3 = b.try_acquire(t).unwrap();
    b.record(t, p2, true, ms(1));
    assert_eq!(b.current_state(), State::HalfOpen, "2 of 3 successes");
    b.record(t, p3, true, ms(1));
    assert_eq!(b.current_state(), State::Closed);
}

#[test]
fn success_threshold_defaults_to_max_requests() {
    assert_eq!(Settings::new("x").max_requests(3).successes_to_close(), 3);
    assert_eq!(Settings::new("x").max_requests(0).half_open_permits(), 1);
    assert_eq!(Settings::new("x").max_requests(3).success_threshold(1).successes_to_close(), 1);
}

#[test]
fn released_permit_frees_a_half_open_slot() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(10)));
    fail(&b, t0);
    let p = b.try_acquire(t0 + ms(10)).unwrap();
    assert!(b.try_acquire(t0 + ms(10)).is_err());
    b.release(p);
    assert!(b.try_acquire(t0 + ms(10)).is_ok());
}

#[test]
fn stale_permits_are_ignored() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(10)));
    let slow = b.try_acquire(t0).unwrap();
    fail(&b, t0);
    assert_eq!(b.current_state(), State::Open);
    let trial = b.try_acquire(t0 + ms(10)).unwrap();
    // The pre-trip call finishing late must neither close nor re-open the half-open breaker.
    b.record(t0 + ms(11), slow, true, ms(11));
    assert_eq!(b.current_state(), State::HalfOpen);
    assert_eq!(b.counts().requests, 0);
    b.record(t0 + ms(12), trial, true, ms(1));
    assert_eq!(b.current_state(), State::Closed);
}

#[test]
fn interval_clears_closed_counts() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc").failure_threshold(3).interval(Some(ms(1000))));
    fail(&b, t0);
    fail(&b, t0 + ms(500));
    assert_eq!(b.counts().consecutive_failures, 2);
    // A new generation starts at t0 + 1000: the two failures no longer count, and a permit from before is stale.
    let old = b.try_acquire(t0 + ms(999)).unwrap();
    fail(&b, t0 + ms(1000));
    b.record(t0 + ms(1001), old, false, ms(1));
    fail(&b, t0 + ms(1500));
    assert_eq!(b.current_state(), State::Closed);
    assert_eq!(b.counts().consecutive_failures, 2);
    fail(&b, t0 + ms(1600));
    assert_eq!(b.current_state(), State::Open);
    assert_eq!(Settings::new("x").interval(Some(Duration::ZERO)).count_interval(), None);
}

#[test]
fn slow_calls_and_slow_call_rate() {
    let t0 = Instant::now();
    let b = Breaker::new(
        Settings::new("svc")
            .slow_call_duration(Some(ms(100)))
            .window(WindowKind::Count(4))
            .minimum_calls(4)
            .trip_predicate(Arc::new(SlowCallRate::percent(50.0))),
    );
    let rec = |d: u64| {
        let p = b.try_acquire(t0).unwrap();
        b.record(t0, p, true, ms(d));
    };
    rec(100);
    rec(10);
    rec(200);
    assert_eq!(b.counts().slow_calls, 2);
    assert_eq!(b.current_state(), State::Closed, "below minimum_calls");
    rec(10);
    assert_eq!(b.current_state(), State::Open, "2 of 4 slow, evaluated when the window reaches minimum_calls");
}

#[test]
fn failure_rate_over_count_window() {
    let t0 = Instant::now();
    let b = Breaker::new(
        Settings::new("svc")
            .window(WindowKind::Count(10))
            .minimum_calls(10)
            .trip_predicate(Arc::new(FailureRate::percent(50.0))),
    );
    for i in 0..9 {
        if i % 2 == 0 { fail(&b, t0) } else { succeed(&b, t0) }
    }
    assert_eq!(b.current_state(), State::Closed);
    succeed(&b, t0);
    assert_eq!(b.current_state(), State::Open, "5 of 10 failed");
}

#[test]
fn failure_rate_over_time_window() {
    let t0 = Instant::now();
    let b = Breaker::new(
        Settings::new("svc")
            .window(WindowKind::Time { size: Duration::from_secs(10), buckets: 10 })
            .minimum_calls(4)
            .trip_predicate(Arc::new(FailureRate::percent(75.0))),
    );
    fail(&b, t0);
    fail(&b, t0 + ms(100));
    succeed(&b, t0 + ms(200));
    // The two early failures age out; then three more failures and one success are 3 of 4 = 75 %.
    fail(&b, t0 + ms(11_000));
    assert_eq!(b.current_state(), State::Closed);
    fail(&b, t0 + ms(11_100));
    succeed(&b, t0 + ms(11_200));
    assert_eq!(b.current_state(), State::Closed, "2 of 3 after expiry, below minimum");
    fail(&b, t0 + ms(11_300));
    assert_eq!(b.current_state(), State::Open);
}

#[test]
fn forced_states() {
    let t0 = Instant::now();
    let (events, l) = recorder();
    let b = Breaker::new(Settings::new("svc").failure_threshold(1).on_state_change(l));
    b.force(t0, Force::Open);
    assert_eq!(b.try_acquire(t0 + Duration::from_secs(3600)), Err(Rejected::Open));
    assert_eq!(b.counts().rejected, 1, "lock-free rejections are counted");
    assert_eq!(b.state(t0 + Duration::from_secs(3600)), State::ForcedOpen, "no automatic half-open");
    b.force(t0, Force::Closed);
    fail(&b, t0);
    fail(&b, t0);
    assert_eq!(b.current_state(), State::ForcedClosed, "never trips");
    assert_eq!(b.counts().total_failures, 2, "but still counts");
    b.force(t0, Force::Disabled);
    fail(&b, t0);
    assert_eq!(b.counts(), Counts::default(), "disabled records nothing");
    b.force(t0, Force::Auto);
    assert_eq!(b.current_state(), State::Closed);
    fail(&b, t0);
    assert_eq!(b.current_state(), State::Open);
    assert_eq!(
        transitions(&events),
        vec![
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::ForcedClosed),
            (State::ForcedClosed, State::Disabled),
            (State::Disabled, State::Closed),
            (State::Closed, State::Open),
        ]
    );
}

#[test]
fn reset_clears_everything_and_notifies_only_on_change() {
    let t0 = Instant::now();
    let (events, l) = recorder();
    let b = Breaker::new(Settings::new("svc").failure_threshold(2).on_state_change(l));
    fail(&b, t0);
    b.reset(t0);
    assert_eq!(b.counts(), Counts::default());
    assert!(events.lock().unwrap().is_empty());
    fail(&b, t0);
    fail(&b, t0);
    b.reset(t0);
    assert_eq!(b.current_state(), State::Closed);
    assert_eq!(transitions(&events), vec![(State::Closed, State::Open), (State::Open, State::Closed)]);
}

#[test]
fn snapshot_roundtrip_preserves_remaining_open_time() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(1000)));
    fail(&b, t0);
    assert_eq!(b.try_acquire(t0 + ms(400)), Err(Rejected::Open));
    let snap = b.snapshot();
    assert_eq!(snap.state, State::Open);
    assert_eq!(snap.open_remaining, Some(ms(600)));
    assert_eq!(snap.counts.rejected, 1);

    let t1 = t0 + Duration::from_secs(100);
    let (events, l) = recorder();
    let restored = Breaker::new(Settings::new("svc").on_state_change(l));
    restored.restore(t1, &snap);
    assert_eq!(restored.current_state(), State::Open);
    assert_eq!(restored.opened_until(), Some(t1 + ms(600)));
    assert_eq!(restored.counts(), snap.counts);
    assert_eq!(restored.state(t1 + ms(600)), State::HalfOpen);
    assert_eq!(transitions(&events), vec![(State::Closed, State::Open), (State::Open, State::HalfOpen)]);
    assert_eq!(Breaker::new(Settings::new("c")).snapshot().open_remaining, None);
}

#[derive(Debug)]
struct Blocking {
    calls: Arc<Mutex<u32>>,
    breaker_seen: Arc<Mutex<Option<Arc<Breaker>>>>,
}

impl TripPredicate for Blocking {
    fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
        *self.calls.lock().unwrap() += 1;
        // Runs outside the breaker's lock: calling back into the breaker must not deadlock.
        if let Some(b) = self.breaker_seen.lock().unwrap().as_ref() {
            let _ = b.counts();
            assert!(b.try_acquire(Instant::now()).is_ok());
        }
        (ctx.counts().total_failures >= 2).then(|| "plugin says so".to_string())
    }
}

#[test]
fn blocking_predicate_runs_outside_the_lock_on_every_outcome() {
    let t0 = Instant::now();
    let calls = Arc::new(Mutex::new(0));
    let slot = Arc::new(Mutex::new(None));
    let pred = Blocking { calls: calls.clone(), breaker_seen: slot.clone() };
    let (events, l) = recorder();
    let b = Arc::new(Breaker::new(Settings::new("svc").trip_predicate(Arc::new(pred)).on_state_change(l)));
    *slot.lock().unwrap() = Some(b.clone());
    succeed(&b, t0);
    fail(&b, t0);
    assert_eq!(*calls.lock().unwrap(), 2, "default EvaluateOn::EveryOutcome");
    fail(&b, t0);
    assert_eq!(b.current_state(), State::Open);
    assert_eq!(events.lock().unwrap()[0].2, "plugin says so");
    assert!(b.heap_bytes() >= 2 * Window::new(WindowKind::Count(100)).heap_bytes(), "scratch copy allocated up front");
    *slot.lock().unwrap() = None;
}

/// What a predicate that mirrors the window relies on: `(generation, requests)` names the data, the window starts
/// empty with every generation, and `newest` is the outcome just recorded.
#[test]
fn predicates_see_the_generation_and_the_newest_outcome() {
    type Seen = (Option<u32>, u32, usize, Option<bool>);
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Seen>>);
    impl TripPredicate for Recorder {
        fn should_trip(&self, ctx: &TripContext<'_>) -> Option<String> {
            let seen = (ctx.generation(), ctx.counts().requests, ctx.window_len(), ctx.newest().map(|s| s.success));
            self.0.lock().unwrap().push(seen);
            (ctx.counts().consecutive_failures >= 2).then(|| "two in a row".to_string())
        }
    }
    let t0 = Instant::now();
    let seen = Arc::new(Recorder::default());
    let b = Breaker::new(Settings::new("svc").reset_timeout(ms(10)).trip_predicate(seen.clone()));
    succeed(&b, t0);
    fail(&b, t0);
    fail(&b, t0);
    assert_eq!(b.current_state(), State::Open);
    // Open (generation 1), then half-open (2); one success closes it into generation 3 with an empty window.
    let p = b.try_acquire(t0 + ms(10)).unwrap();
    b.record(t0 + ms(10), p, true, ms(1));
    assert_eq!(b.current_state(), State::Closed);
    fail(&b, t0 + ms(11));
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![
            (Some(0), 1, 1, Some(true)),
            (Some(0), 2, 2, Some(false)),
            (Some(0), 3, 3, Some(false)),
            (Some(3), 1, 1, Some(false))
        ]
    );
}

#[test]
fn builtin_predicate_is_not_called_on_plain_successes() {
    #[derive(Debug)]
    struct Counting(Arc<Mutex<u32>>);
    impl TripPredicate for Counting {
        fn should_trip(&self, _: &TripContext<'_>) -> Option<String> {
            *self.0.lock().unwrap() += 1;
            None
        }
        fn evaluate_on(&self) -> EvaluateOn {
            EvaluateOn::FailureOrSlow
        }
        fn may_block(&self) -> bool {
            false
        }
    }
    let t0 = Instant::now();
    let n = Arc::new(Mutex::new(0));
    let b = Breaker::new(Settings::new("svc").minimum_calls(3).trip_predicate(Arc::new(Counting(n.clone()))));
    succeed(&b, t0);
    succeed(&b, t0);
    assert_eq!(*n.lock().unwrap(), 0);
    succeed(&b, t0);
    assert_eq!(*n.lock().unwrap(), 1, "window reached minimum_calls");
    succeed(&b, t0);
    fail(&b, t0);
    assert_eq!(*n.lock().unwrap(), 2);
}

#[test]
fn ready_to_trip_closure() {
    let t0 = Instant::now();
    let b = Breaker::new(Settings::new("svc").ready_to_trip(|c| c.requests >= 3 && c.total_failures * 2 > c.requests));
    fail(&b, t0);
    fail(&b, t0);
    assert_eq!(b.current_state(), State::Closed);
    succeed(&b, t0);
    assert_eq!(b.current_state(), State::Open);
}

#[test]
fn settings_debug_and_accessors() {
    let s = Settings::new("svc").reset_timeout(ms(5)).slow_call_duration(Some(ms(7))).window(WindowKind::Count(3));
    let dbg = format!("{s:?}");
    assert!(dbg.contains("svc") && dbg.contains("ConsecutiveFailures(5)"));
    assert_eq!(s.open_duration(), ms(5));
    assert_eq!(s.slow_threshold(), Some(ms(7)));
    assert_eq!(s.window_kind(), WindowKind::Count(3));
    assert_eq!(s.min_calls(), 100);
    assert!(s.listener().is_none());
    assert_eq!(s.clone().with_name("other").name(), "other");
    let b = Breaker::new(s);
    assert!(format!("{b:?}").contains("Closed"));
}

#[test]
fn breaker_is_send_sync_and_small() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Breaker>();
    let b = Breaker::new(Settings::new("svc").window(WindowKind::Count(100)));
    assert!(
        std::mem::size_of::<Breaker>() + b.heap_bytes() <= 512,
        "{} + {}",
        std::mem::size_of::<Breaker>(),
        b.heap_bytes()
    );
}

mod call_api {
    use super::*;
    use crate::clock::{Clock, FakeClock};
    use crate::error::CallError;

    #[test]
    fn call_returns_inner_errors_and_rejections() {
        let clock = FakeClock::new(Instant::now());
        let b = Breaker::new(Settings::new("svc").failure_threshold(2));
        assert_eq!(b.call(&clock, || Ok::<_, &str>(1)), Ok(1));
        assert_eq!(b.call(&clock, || Err::<u8, _>("e1")), Err(CallError::Inner("e1")));
        assert_eq!(b.call(&clock, || Err::<u8, _>("e2")), Err(CallError::Inner("e2")));
        let r = b.call(&clock, || -> Result<u8, &str> { unreachable!("must not run while open") });
        assert_eq!(r, Err(CallError::CircuitOpen));
        assert!(r.unwrap_err().is_circuit_breaker_error());
        let fb = b.call_with_fallback(
            &clock,
            || Ok::<_, &str>(1),
            |why| {
                assert_eq!(why, Rejected::Open);
                Ok(42)
            },
        );
        assert_eq!(fb, Ok(42));
    }

    /// A fake clock with a coarse timeline: nanoseconds after `base`, lagging the precise time by `lag`.
    struct FakeCoarse {
        clock: FakeClock,
        base: Instant,
        lag: Duration,
        coarse_reads: std::cell::Cell<u32>,
    }

    impl Clock for FakeCoarse {
        fn now(&self) -> Instant {
            self.clock.now()
        }

        fn coarse_origin_ns(&self, since: Instant) -> Option<u64> {
            u64::try_from((since - self.base).as_nanos()).ok()
        }

        fn coarse_elapsed_ns_bounds(&self, origin_ns: u64) -> (u64, u64) {
            self.coarse_reads.set(self.coarse_reads.get() + 1);
            let coarse = (self.clock.now() - self.base).saturating_sub(self.lag).as_nanos() as u64;
            (coarse.saturating_sub(origin_ns), self.lag.as_nanos() as u64)
        }
    }

    /// A clock whose cheap bounds break their promise, as with a ticker that died: the coarse reading stays at
    /// `stopped`, with no lag admitted.
    struct StoppedTicker {
        clock: FakeClock,
        base: Instant,
        stopped: Instant,
    }

    impl Clock for StoppedTicker {
        fn now(&self) -> Instant {
            self.clock.now()
        }

        fn coarse_origin_ns(&self, since: Instant) -> Option<u64> {
            u64::try_from((since - self.base).as_nanos()).ok()
        }

        fn coarse_elapsed_ns_bounds(&self, origin_ns: u64) -> (u64, u64) {
            (((self.stopped - self.base).as_nanos() as u64).saturating_sub(origin_ns), 0)
        }
    }

    #[test]
    fn a_clock_breaking_its_promise_delays_the_half_open_turn_by_a_bounded_number_of_rejections() {
        let base = Instant::now();
        let clock = StoppedTicker { clock: FakeClock::new(base + ms(1_000)), base, stopped: base + ms(1_000) };
        let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(10_000)));
        assert_eq!(b.call(&clock, || Err::<u8, _>("down")), Err(CallError::Inner("down")));
        clock.clock.advance(ms(60_000));
        let every = super::super::call::PRECISE_EVERY;
        let admitted = (1..=2 * every).find(|_| b.call(&clock, || Ok::<_, &str>(1)).is_ok());
        let calls = admitted.expect("a stopped ticker must not hold the breaker open for ever");
        assert!(calls <= every, "admitted after {calls} calls");
        assert_eq!(b.counts().rejected, 0, "a new generation after the half-open turn");
    }

    #[test]
    fn an_open_breaker_rejects_from_the_coarse_timeline_and_decides_near_its_deadline_precisely() {
        let base = Instant::now();
        let clock = FakeCoarse {
            clock: FakeClock::new(base + ms(1_000)),
            base,
            lag: ms(20),
            coarse_reads: std::cell::Cell::new(0),
        };
        let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(10_000)));
        assert_eq!(b.call(&clock, || Err::<u8, _>("boom")), Err(CallError::Inner("boom")));
        assert_eq!(b.current_state(), State::Open);
        clock.clock.advance(ms(5_000));
        assert_eq!(b.call(&clock, || Ok::<_, &str>(1)), Err(CallError::CircuitOpen));
        assert_eq!(clock.coarse_reads.get(), 1, "decided from the coarse timeline");
        // Within the lag of the deadline the coarse answer cannot decide: the precise clock says "still open".
        clock.clock.advance(ms(4_990));
        assert_eq!(b.call(&clock, || Ok::<_, &str>(1)), Err(CallError::CircuitOpen));
        assert_eq!(clock.coarse_reads.get(), 2);
        clock.clock.advance(ms(20));
        assert_eq!(b.call(&clock, || Ok::<_, &str>(1)), Ok(1));
        assert_eq!(b.current_state(), State::Closed);
    }

    #[test]
    fn classifier_decides_what_counts_as_failure() {
        let clock = FakeClock::new(Instant::now());
        let b = Breaker::new(Settings::new("svc").failure_threshold(1));
        let r = b.call_classified(&clock, |e: &&str| *e != "not found", || Err::<(), _>("not found"));
        assert_eq!(r, Err(CallError::Inner("not found")));
        assert_eq!(b.current_state(), State::Closed);
        assert_eq!(b.counts().total_successes, 1);
    }

    #[test]
    fn call_measures_duration_with_the_clock() {
        let clock = FakeClock::new(Instant::now());
        let b = Breaker::new(Settings::new("svc").slow_call_duration(Some(ms(50))));
        b.call(&clock, || {
            clock.advance(ms(60));
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(b.counts().slow_calls, 1);
    }

    #[test]
    fn panicking_call_releases_its_half_open_permit() {
        let clock = FakeClock::new(Instant::now());
        let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(1)));
        let _ = b.call(&clock, || Err::<(), _>(()));
        clock.advance(ms(1));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = b.call(&clock, || -> Result<(), ()> { panic!("boom") });
        }));
        assert!(r.is_err());
        assert_eq!(b.half_open_in_flight(), 0);
        assert_eq!(b.call(&clock, || Ok::<_, ()>(5)), Ok(5));
        assert_eq!(b.current_state(), State::Closed);
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn async_calls_and_cancellation() {
        let clock = FakeClock::new(Instant::now());
        let b = Breaker::new(Settings::new("svc").failure_threshold(1).reset_timeout(ms(1)));
        assert_eq!(block_on(b.call_async(&clock, || async { Err::<(), _>("x") })), Err(CallError::Inner("x")));
        assert_eq!(block_on(b.call_async(&clock, || async { Ok::<_, ()>(()) })), Err(CallError::CircuitOpen));
        clock.advance(ms(1));
        // A half-open trial whose future is dropped mid-flight gives its permit back.
        {
            let fut = b.call_async(&clock, std::future::pending::<Result<(), ()>>);
            let mut fut = Box::pin(fut);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(b.half_open_in_flight(), 1);
        }
        assert_eq!(b.half_open_in_flight(), 0);
        let r = block_on(b.call_async_with_fallback(&clock, || async { Ok::<_, ()>(1) }, |_| async { Ok(2) }));
        assert_eq!(r, Ok(1));
        assert_eq!(b.current_state(), State::Closed);
    }
}
