//! Trip predicates that share instances (`trip-predicates`): many services per instance, each with its own state;
//! a trap resets only its shard; bindings that go away give their seats back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aegis_core::{Breaker, Settings, State, WindowKind};
use aegis_plugin::{
    CallResult, PluginHost, QuarantinePolicy, SHARED_SEATS, SandboxLimits, ServiceInfo, WasmTripPredicate,
};

use crate::support::{BuiltIn, ask, config, host, host_with};

fn service(i: usize) -> ServiceInfo {
    ServiceInfo { name: format!("s{i}"), kind: "http".into(), endpoint: format!("http://127.0.0.1:1/{i}") }
}

fn bind(host: &PluginHost, plugin: &str, i: usize, pairs: &[(&str, &str)]) -> Arc<WasmTripPredicate> {
    Arc::new(host.trip_predicate(plugin, service(i), config(pairs), Arc::new(BuiltIn)).unwrap())
}

fn breaker(i: usize, predicate: &Arc<WasmTripPredicate>) -> Breaker {
    Breaker::new(Settings::new(format!("s{i}")).window(WindowKind::Count(4)).trip_predicate(predicate.clone()))
}

fn record(breaker: &Breaker, ok: bool) {
    let now = Instant::now();
    let permit = breaker.try_acquire(now).unwrap();
    breaker.record(now, permit, ok, Duration::from_millis(3));
}

/// 130 services in three shards, asked in turn: each decides on its own window (a predicate sharing an instance
/// with another service's never sees that one's outcomes), and every copy follows its breaker without a resend.
#[test]
fn many_services_share_a_few_instances_and_each_keeps_its_own_window() {
    let (host, _dir) = host(&["window-trip"]);
    let predicates: Vec<_> =
        (0..130).map(|i| bind(&host, "window-trip", i, &[("window", "4"), ("failures", "3")])).collect();
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![SHARED_SEATS, SHARED_SEATS, 2]));
    let breakers: Vec<_> = predicates.iter().enumerate().map(|(i, p)| breaker(i, p)).collect();
    // Every third service fails each probe; the others fail every other one (two of four, never three).
    for round in 0..6 {
        for (i, b) in breakers.iter().enumerate() {
            if b.current_state() == State::Closed {
                record(b, if i % 3 == 0 { false } else { round % 2 == 0 });
            }
        }
    }
    for (i, b) in breakers.iter().enumerate() {
        let expected = if i % 3 == 0 { State::Open } else { State::Closed };
        assert_eq!(b.current_state(), expected, "service s{i}");
    }
    assert!(predicates.iter().all(|p| p.windows_sent() == 0), "no copy fell out of step");
    assert_eq!(host.shared_shards("window-trip", true), Some(vec![]), "no shadow bindings");
}

/// A plugin without `trip-predicates` (bare-trip is built without the SDK) keeps an instance per binding.
#[test]
fn a_plugin_without_the_shared_interface_gets_an_instance_per_binding() {
    let (host, _dir) = host(&["bare-trip"]);
    let p = bind(&host, "bare-trip", 0, &[]);
    assert_eq!(host.shared_shards("bare-trip", false), None);
    let b = breaker(0, &p);
    record(&b, false);
    assert_eq!(host.stats()[0].calls(CallResult::Ok), 1);
}

/// A trap resets the instance it happened in: the other predicates there are opened again and resynchronised
/// with one window each, and keep deciding; a shard of its own is not touched.
#[test]
fn a_trap_resets_its_shard_and_the_others_there_resynchronise() {
    let quarantine = QuarantinePolicy { strikes: 100, ..QuarantinePolicy::default() };
    let (host, _dir) = host_with(&["hostile"], SandboxLimits::default(), quarantine);
    let trapper = bind(&host, "hostile", 0, &[("mode", "panic"), ("when", "failures")]);
    let neighbours: Vec<_> = (1..SHARED_SEATS + 1).map(|i| bind(&host, "hostile", i, &[("mode", "ok")])).collect();
    assert_eq!(host.shared_shards("hostile", false), Some(vec![SHARED_SEATS, 1]));
    let breakers: Vec<_> = neighbours.iter().enumerate().map(|(i, p)| breaker(i + 1, p)).collect();
    for b in &breakers {
        record(b, true);
    }
    let bad = breaker(0, &trapper);
    record(&bad, false);
    assert_eq!(host.stats()[0].calls(CallResult::Trap), 1);
    for b in &breakers {
        record(b, true);
        assert_eq!(b.current_state(), State::Closed);
    }
    let sent: Vec<u64> = neighbours.iter().map(|p| p.windows_sent()).collect();
    let (same_shard, other_shard) = sent.split_at(SHARED_SEATS - 1);
    assert!(same_shard.iter().all(|&n| n == 1), "each neighbour resent its window once: {same_shard:?}");
    assert_eq!(other_shard, [0], "the next shard kept its instance");
    assert_eq!(host.stats()[0].calls(CallResult::Trap), 1, "nothing else trapped");
}

/// Bindings that go away give their seats back (the last one takes the instance), and the next binding sits there.
#[test]
fn dropped_bindings_give_their_seats_back() {
    let (host, _dir) = host(&["window-trip"]);
    let mut bound: Vec<_> = (0..3).map(|i| bind(&host, "window-trip", i, &[])).collect();
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![3]));
    bound.truncate(1);
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![1]));
    bound.clear();
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![0]));
    let again = bind(&host, "window-trip", 9, &[("window", "2"), ("failures", "1")]);
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![1]));
    let b = breaker(9, &again);
    record(&b, false);
    assert_eq!(b.current_state(), State::Open);
}

/// A config the plugin refuses is an error when binding, as `init`'s refusal is for an instance of its own, and
/// the refused binding keeps no seat.
#[test]
fn a_refused_config_refuses_the_binding_and_frees_its_seat() {
    let (host, _dir) = host(&["window-trip"]);
    let refused = host.trip_predicate("window-trip", service(0), config(&[("failures", "0")]), Arc::new(BuiltIn));
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("window-trip") && error.contains("failures"), "{error}");
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![0]));
}

/// A shadow binding sits in a shadow shard: its failures never reset live predicates.
#[test]
fn shadow_bindings_have_shards_of_their_own() {
    let (host, _dir) = host(&["window-trip"]);
    let _live = bind(&host, "window-trip", 0, &[]);
    let shadow =
        host.trip_predicate("window-trip", service(1), config(&[]), Arc::new(BuiltIn)).unwrap().into_shadow(&host);
    assert_eq!(host.shared_shards("window-trip", false), Some(vec![1]));
    assert_eq!(host.shared_shards("window-trip", true), Some(vec![1]));
    drop(shadow);
    assert_eq!(host.shared_shards("window-trip", true), Some(vec![0]));
}

/// Decisions of the neighbour below that went to its hand-off.
static NEIGHBOUR_HANDED_OFF: AtomicU32 = AtomicU32::new(0);

fn neighbour_hand_off(f: &mut dyn FnMut()) {
    NEIGHBOUR_HANDED_OFF.fetch_add(1, Ordering::Relaxed);
    f();
}

fn plain_hand_off(f: &mut dyn FnMut()) {
    f();
}

/// A caller on an async worker never waits there for a shard that another binding's runaway call holds: its decision
/// goes to the hand-off (which frees the worker) and waits there, then decides in the shard's fresh instance.
#[test]
fn a_busy_shard_sends_an_async_caller_to_its_hand_off() {
    let deadline = Duration::from_millis(400);
    let limits = SandboxLimits { deadline, ..SandboxLimits::default() };
    let quarantine = QuarantinePolicy { strikes: 100, ..QuarantinePolicy::default() };
    let (host, _dir) = host_with(&["hostile"], limits, quarantine);
    let bind_off_worker = |i, mode, hand_off| {
        let p = host.trip_predicate("hostile", service(i), config(&[("mode", mode)]), Arc::new(BuiltIn)).unwrap();
        p.off_worker(hand_off)
    };
    let runaway = bind_off_worker(0, "loop", plain_hand_off);
    let neighbour = bind_off_worker(1, "ok", neighbour_hand_off);
    assert_eq!(host.shared_shards("hostile", false), Some(vec![2]));
    std::thread::scope(|s| {
        let started = Instant::now();
        let running = s.spawn(|| ask(&runaway, &[true]));
        // The runaway's first slice is over (1 to 2 ms) and its hand-off holds the shard for the whole deadline.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ask(&neighbour, &[true]), None, "the plugin decided");
        assert_eq!(NEIGHBOUR_HANDED_OFF.load(Ordering::Relaxed), 1, "the busy shard sent it to its hand-off");
        assert!(started.elapsed() >= deadline - Duration::from_millis(20), "it waited for the shard there");
        assert_eq!(running.join().unwrap().as_deref(), Some("built-in"));
    });
    assert_eq!(host.stats()[0].calls(CallResult::Timeout), 1);
    // Free again: the next decision stays in place.
    assert_eq!(ask(&neighbour, &[true]), None);
    assert_eq!(NEIGHBOUR_HANDED_OFF.load(Ordering::Relaxed), 1);
}

/// Opening a predicate is bounded by the deadline alone, as `init` is, even in a shard whose store last ran a call in
/// place under its fuel meter: a long but finite `open` (ten million iterations) binds.
#[test]
fn a_long_open_is_not_cut_by_the_meter_of_a_decision_in_place() {
    let limits = SandboxLimits { deadline: Duration::from_secs(2), ..SandboxLimits::default() };
    let (host, _dir) = host_with(&["hostile"], limits, QuarantinePolicy::default());
    let quick = host
        .trip_predicate("hostile", service(0), config(&[("mode", "ok")]), Arc::new(BuiltIn))
        .unwrap()
        .off_worker(plain_hand_off);
    assert_eq!(ask(&quick, &[true]), None, "decided in place, under the meter");
    let slow_init = [("mode", "work"), ("at", "init"), ("size", "10000000")];
    let bound = host.trip_predicate("hostile", service(1), config(&slow_init), Arc::new(BuiltIn));
    assert!(bound.is_ok(), "{:?}", bound.err());
    assert_eq!(host.shared_shards("hostile", false), Some(vec![2]));
}
