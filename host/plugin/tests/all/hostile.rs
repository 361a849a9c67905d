//! The hostile test plugin, one misbehaviour at a time: each is contained (the call returns within a bound, the
//! built-in decides), logged with the plugin's name, and leaks nothing.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aegis_plugin::{CallResult, PluginHost, QuarantinePolicy, SandboxLimits, WasmTripPredicate};
use tempfile::TempDir;

use crate::support::{BuiltIn, ask, capture_log, config, host_with, service};

/// Generous on a loaded two-core machine; without containment these calls would never return.
const BOUND: Duration = Duration::from_secs(3);

/// A deadline so long that only a plugin that never stops reaches it: these tests are about the other limits.
const GENEROUS: Duration = Duration::from_secs(2);

fn hostile(mode: &[(&str, &str)]) -> (PluginHost, TempDir, WasmTripPredicate) {
    hostile_with(mode, GENEROUS)
}

fn hostile_with(mode: &[(&str, &str)], deadline: Duration) -> (PluginHost, TempDir, WasmTripPredicate) {
    let limits = SandboxLimits { deadline, ..SandboxLimits::default() };
    // A high strike count keeps these tests about containment; `quarantine.rs` covers quarantine.
    let quarantine = QuarantinePolicy { strikes: 100, ..QuarantinePolicy::default() };
    let (host, dir) = host_with(&["hostile"], limits, quarantine);
    let p = host.trip_predicate("hostile", service(), config(mode), Arc::new(BuiltIn)).unwrap();
    (host, dir, p)
}

fn calls(host: &PluginHost, result: CallResult) -> u64 {
    host.stats().iter().find(|s| s.plugin == "hostile").map_or(0, |s| s.calls(result))
}

/// Asks twice (the second call needs a fresh instance) and checks each answer came from the built-in in time.
fn assert_contained(mode: &str, deadline: Duration, expected: CallResult, log_says: &str) {
    let (host, _dir, p) = hostile_with(&[("mode", mode)], deadline);
    for _ in 0..2 {
        let started = Instant::now();
        let (decision, log) = capture_log(|| ask(&p, &[true]));
        assert_eq!(decision.as_deref(), Some("built-in"), "{mode}");
        assert!(started.elapsed() < BOUND, "{mode}: took {:?}", started.elapsed());
        assert!(log.contains("plugin=hostile") && log.contains(log_says), "{mode}: {log}");
    }
    assert_eq!(calls(&host, expected), 2, "{mode}");
}

#[test]
fn infinite_loop_misses_the_deadline() {
    assert_contained("loop", Duration::from_millis(20), CallResult::Timeout, "missed its 20ms deadline");
}

/// Decisions [`counting_hand_off`] ran.
static HANDED_OFF: AtomicU32 = AtomicU32::new(0);

fn counting_hand_off(f: &mut dyn FnMut()) {
    HANDED_OFF.fetch_add(1, Ordering::Relaxed);
    f();
}

/// For a caller on an async worker, a quick decision runs in place; a runaway one is cut off after its first slice
/// and run again through the hand-off under the whole deadline, which it misses once: one timeout, not two.
#[test]
fn only_a_decision_that_outruns_its_first_slice_is_handed_off() {
    let deadline = Duration::from_millis(60);
    let (host, _dir, quick) = hostile_with(&[("mode", "ok")], deadline);
    let quick = quick.off_worker(counting_hand_off);
    for _ in 0..20 {
        assert_eq!(ask(&quick, &[true, false]), None, "the plugin decided");
    }
    assert_eq!(HANDED_OFF.load(Ordering::Relaxed), 0, "a quick decision stays in place");
    let runaway = host.trip_predicate("hostile", service(), config(&[("mode", "loop")]), Arc::new(BuiltIn)).unwrap();
    let runaway = runaway.off_worker(counting_hand_off);
    let started = Instant::now();
    let (decision, log) = capture_log(|| ask(&runaway, &[true]));
    let took = started.elapsed();
    assert_eq!(decision.as_deref(), Some("built-in"));
    assert_eq!(HANDED_OFF.load(Ordering::Relaxed), 1, "handed off once");
    // The first slice (at most 2 ms) and then the whole deadline (60 ticks of at least a millisecond, less the
    // part of a tick already gone when it was set).
    assert!(took >= deadline - Duration::from_millis(1) && took < BOUND, "took {took:?}");
    assert_eq!(calls(&host, CallResult::Timeout), 1, "the cut-off slice is not a strike: {log}");
    assert!(log.contains("missed its 60ms deadline"), "{log}");
}

#[test]
fn memory_bomb_hits_the_cap() {
    assert_contained("alloc", GENEROUS, CallResult::Trap, "memory cap");
}

#[test]
fn panic_traps() {
    assert_contained("panic", GENEROUS, CallResult::Trap, "a panic or abort");
}

#[test]
fn runaway_recursion_traps() {
    assert_contained("recurse", GENEROUS, CallResult::Trap, "trapped");
}

#[test]
fn a_multi_megabyte_answer_is_cut() {
    let (host, _dir, p) = hostile(&[("mode", "big"), ("size", "4194304")]);
    let started = Instant::now();
    let reason = ask(&p, &[true]).unwrap();
    assert!(started.elapsed() < BOUND);
    assert!(reason.len() <= 1024 + 3 && reason.ends_with('…'), "{}", reason.len());
    assert_eq!(calls(&host, CallResult::Ok), 1);
}

#[test]
fn init_that_never_returns_refuses_the_binding() {
    let limits = SandboxLimits { deadline: Duration::from_millis(20), ..SandboxLimits::default() };
    let (host, _dir) = host_with(&["hostile"], limits, QuarantinePolicy::default());
    let started = Instant::now();
    let err = host.trip_predicate("hostile", service(), config(&[("mode", "loop"), ("at", "init")]), Arc::new(BuiltIn));
    assert!(started.elapsed() < BOUND);
    let err = err.unwrap_err().to_string();
    assert!(err.contains("hostile") && err.contains("deadline"), "{err}");
}

#[test]
fn files_environment_sockets_and_clocks_are_denied() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let secret = std::env::temp_dir().join(format!("aegis-hostile-{}", std::process::id()));
    std::fs::write(&secret, "secret").unwrap();
    let path = secret.to_string_lossy().into_owned();
    for mode in [
        vec![("mode", "file"), ("path", path.as_str())],
        vec![("mode", "env")],
        vec![("mode", "socket"), ("addr", &addr)],
        vec![("mode", "clock")],
    ] {
        let (_host, _dir, p) = hostile(&mode);
        let reason = ask(&p, &[true]).unwrap();
        assert!(reason.starts_with("denied"), "{mode:?}: {reason}");
    }
    assert!(listener.accept().is_err(), "the plugin reached the socket");
    let _ = std::fs::remove_file(secret);
}

#[test]
fn log_flood_is_capped_per_call() {
    let (_host, _dir, p) = hostile(&[("mode", "log-flood")]);
    let (_, log) = capture_log(|| ask(&p, &[true]));
    let lines = log.lines().filter(|l| l.contains("plugin=\"hostile\"") || l.contains("plugin=hostile")).count();
    assert!(lines <= 64 + 2, "{lines} lines");
    assert!(log.contains("dropping the rest"), "{}", log.lines().last().unwrap_or_default());
}

#[test]
fn text_that_would_forge_log_lines_is_escaped() {
    let (_host, _dir, p) = hostile(&[("mode", "forge")]);
    let (reason, log) = capture_log(|| ask(&p, &[true]));
    let reason = reason.unwrap();
    assert_eq!(reason, r"harmless\n2026-01-01T00:00:00Z ERROR aegis: forged by a plugin\u{1b}[2J");
    assert!(log.contains(&reason), "the plugin's log line is escaped the same way: {log}");
    assert!(!log.contains('\u{1b}'), "no terminal escape reaches the log: {log:?}");
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")), "no line of the log is the plugin's: {log}");
}
