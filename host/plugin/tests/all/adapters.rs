//! Every bundled plugin through its adapter: the plugin decides, types survive the boundary, config reaches `init`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_core::policy::{
    Alert, AlertFormatter, AlertStatus, AnomalyScorer, Contains, Failure, FixedAction, FormatError, LogRule,
    MetricSample, Payload, RecoveryAction, RecoveryStrategy, Severity, ZScore,
};
use aegis_core::{
    Breaker, ConsecutiveFailures, Counts, Sample, Settings, State, StateChange, TripContext, TripPredicate, Window,
    WindowKind,
};
use aegis_plugin::{CallResult, PluginError, PluginKind};

use crate::support::{BuiltIn, ask, config, host, service};

const BUNDLED: [&str; 5] = ["window-trip", "escalating-restart", "panic-detector", "ewma-latency", "chat-formatter"];

#[test]
fn every_bundled_plugin_loads_as_its_kind() {
    let (host, _dir) = host(&BUNDLED);
    let kinds: Vec<(String, PluginKind)> = host.plugins().into_iter().map(|p| (p.name, p.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("chat-formatter".to_owned(), PluginKind::AlertFormatter),
            ("escalating-restart".to_owned(), PluginKind::RecoveryStrategy),
            ("ewma-latency".to_owned(), PluginKind::AnomalyScorer),
            ("panic-detector".to_owned(), PluginKind::LogRule),
            ("window-trip".to_owned(), PluginKind::TripPredicate),
        ]
    );
}

#[test]
fn window_trip_decides_through_the_adapter() {
    let (host, _dir) = host(&["window-trip"]);
    let p = host
        .trip_predicate("window-trip", service(), config(&[("window", "4"), ("failures", "2")]), Arc::new(BuiltIn))
        .unwrap();
    assert_eq!(ask(&p, &[true, false, true, true]), None);
    assert_eq!(ask(&p, &[true, false, true, false]).as_deref(), Some("2 of the last 4 probes failed or slow"));
}

/// Latency and the host's slow verdict cross the boundary packed into one u64 each; the plugin sees them unpacked.
#[test]
fn window_trip_sees_latencies_and_slow_verdicts() {
    let (host, _dir) = host(&["window-trip"]);
    let config = config(&[("window", "3"), ("failures", "2"), ("slow_ms", "100")]);
    let p = host.trip_predicate("window-trip", service(), config, Arc::new(BuiltIn)).unwrap();
    let ask_samples = |samples: &[(u64, bool)]| {
        let mut counts = Counts::default();
        let mut window = Window::new(WindowKind::Count(20));
        let now = Instant::now();
        for &(ms, slow) in samples {
            counts.on_outcome(true, slow);
            window.record(now, Sample { success: true, duration: Duration::from_millis(ms), slow });
        }
        p.should_trip(&TripContext::new(&counts, &window, 1))
    };
    assert_eq!(ask_samples(&[(50, false), (100, false), (99, false)]), None);
    assert_eq!(
        ask_samples(&[(50, false), (150, false), (400, false)]).as_deref(),
        Some("2 of the last 3 probes failed or slower than 100 ms")
    );
    assert!(ask_samples(&[(1, true), (1, true), (1, false)]).is_some(), "the host's slow verdict reaches the plugin");
}

/// The hot path sends no window: the plugin's copy follows a real breaker outcome by outcome, across generations,
/// and the whole window crosses only when that copy is out of step (a fresh instance in mid-generation).
#[test]
fn window_trip_follows_a_breaker_outcome_by_outcome() {
    let (host, dir) = host(&["window-trip"]);
    let config = config(&[("window", "4"), ("failures", "3")]);
    let p = Arc::new(host.trip_predicate("window-trip", service(), config, Arc::new(BuiltIn)).unwrap());
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reasons);
    let breaker = Breaker::new(
        Settings::new("api")
            .window(WindowKind::Count(4))
            .reset_timeout(Duration::from_millis(10))
            .trip_predicate(p.clone())
            .on_state_change(Arc::new(move |change: &StateChange| {
                seen.lock().unwrap().push(change.reason.to_string())
            })),
    );
    let t0 = Instant::now();
    let record = |ok: bool, at: Instant| {
        let permit = breaker.try_acquire(at).unwrap();
        breaker.record(at, permit, ok, Duration::from_millis(3));
    };
    // Two bad probes among the last four, sliding, never three.
    for ok in [true, false, true, false, true, true, false, true, false] {
        record(ok, t0);
    }
    assert_eq!(breaker.current_state(), State::Closed);
    record(false, t0);
    assert_eq!(breaker.current_state(), State::Open);
    // Half-open, one good trial closes it: a new generation whose window starts empty.
    record(true, t0 + Duration::from_millis(10));
    assert_eq!(breaker.current_state(), State::Closed);
    record(false, t0 + Duration::from_millis(11));
    record(false, t0 + Duration::from_millis(11));
    assert_eq!(breaker.current_state(), State::Closed, "the old generation's failures are gone");
    assert_eq!(p.windows_sent(), 0);

    // A new version of the plugin: its fresh instance has no copy, so the next decision sends the window once.
    host.load_file(&dir.path().join("window-trip.wasm")).unwrap();
    record(true, t0 + Duration::from_millis(12));
    assert_eq!(p.windows_sent(), 1);
    record(false, t0 + Duration::from_millis(12));
    assert_eq!(breaker.current_state(), State::Open);
    assert_eq!(p.windows_sent(), 1);
    assert_eq!(
        *reasons.lock().unwrap(),
        [
            "3 of the last 4 probes failed or slow",
            "reset timeout elapsed",
            "1 consecutive successes in half-open state",
            "3 of the last 4 probes failed or slow",
        ]
    );
}

#[test]
fn escalating_restart_restarts_then_notifies_then_waits() {
    let (host, _dir) = host(&["escalating-restart"]);
    let fallback = Arc::new(FixedAction(RecoveryAction::Ignore));
    let s = host
        .recovery_strategy("escalating-restart", service(), config(&[("restarts", "2"), ("wait_ms", "1500")]), fallback)
        .unwrap();
    assert_eq!(s.plugin_name(), "escalating-restart");
    let history = [Failure { at_ms: 1, detail: "HTTP 503".into() }];
    assert_eq!(s.decide(&history, 0), RecoveryAction::Restart);
    assert_eq!(s.decide(&history, 1), RecoveryAction::Restart);
    assert_eq!(
        s.decide(&history, 2),
        RecoveryAction::Notify(Some("api is still failing after 2 restarts; last failure: HTTP 503".into()))
    );
    assert_eq!(s.decide(&history, 3), RecoveryAction::Wait(Duration::from_millis(1500)));
}

#[test]
fn panic_detector_finds_panics_and_passes_ordinary_lines() {
    let (host, _dir) = host(&["panic-detector"]);
    let fallback = Arc::new(Contains::new("never", Severity::Info, ["\u{0}never\u{0}"]));
    let rule = host.log_rule("panic-detector", "app.log", config(&[]), fallback).unwrap();
    let f = rule.match_line("/var/log/app.log", "thread 'main' panicked at src/main.rs:2:5:").unwrap();
    assert_eq!((f.rule.as_str(), f.severity), ("rust-panic", Severity::Critical));
    assert_eq!(f.message, "/var/log/app.log: thread 'main' panicked at src/main.rs:2:5:");
    assert_eq!(rule.match_line("app.log", "GET /health 200"), None);
    // A line far over the hand-over limit is cut, not refused.
    let long = format!("memory allocation of 8 bytes failed {}", "x".repeat(100_000));
    assert_eq!(rule.match_line("app.log", &long).map(|f| f.rule).as_deref(), Some("oom"));
}

#[test]
fn ewma_latency_flags_a_spike() {
    let (host, _dir) = host(&["ewma-latency"]);
    let fallback = Arc::new(ZScore { k: 1e9, ..ZScore::default() });
    let scorer = host.anomaly_scorer("ewma-latency", service(), config(&[("k", "3")]), fallback).unwrap();
    let mut series: Vec<MetricSample> = [100.0, 104.0, 98.0, 101.0, 99.0, 102.0, 100.0]
        .iter()
        .enumerate()
        .map(|(i, &value)| MetricSample { at_ms: i as u64 * 1000, value })
        .collect();
    assert_eq!(scorer.score("latency", &series), None);
    series.push(MetricSample { at_ms: 8000, value: 400.0 });
    let a = scorer.score("latency", &series).unwrap();
    assert!(a.score > 3.0 && a.reason.starts_with("api latency 400.0"), "{a:?}");
    assert_eq!(scorer.score("throughput", &series), None);
}

#[derive(Debug)]
struct FixedBody;

impl AlertFormatter for FixedBody {
    fn format(&self, _: &Alert, _: &str) -> Result<Payload, FormatError> {
        Ok(Payload { content_type: "text/plain".into(), headers: Vec::new(), body: b"built-in".to_vec() })
    }
}

fn alert() -> Alert {
    Alert {
        name: "ServiceDown".into(),
        status: AlertStatus::Firing,
        severity: Severity::Critical,
        labels: vec![("service".into(), "api".into())],
        annotations: vec![("summary".into(), "3 of the last 5 probes failed".into())],
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: None,
        fingerprint: "abc".into(),
    }
}

#[test]
fn chat_formatter_renders_and_its_refusal_falls_back_without_a_strike() {
    let (host, _dir) = host(&["chat-formatter"]);
    let f =
        host.alert_formatter("chat-formatter", "slack", config(&[("channel", "#ops")]), Arc::new(FixedBody)).unwrap();
    let p = f.format(&alert(), "slack").unwrap();
    assert_eq!(p.content_type, "application/json");
    let body = String::from_utf8(p.body).unwrap();
    assert!(
        body.starts_with(
            "{\"channel\":\"#ops\",\"text\":\":red_circle: [FIRING] ServiceDown on api: 3 of the last 5 probes failed\""
        ),
        "{body}"
    );

    let nameless = Alert { name: String::new(), ..alert() };
    assert_eq!(f.format(&nameless, "slack").unwrap().body, b"built-in");
    let stats = host.stats().into_iter().find(|s| s.plugin == "chat-formatter").unwrap();
    assert_eq!((stats.calls(CallResult::Ok), stats.calls(CallResult::Invalid)), (2, 0));
}

#[test]
fn binding_errors_name_the_plugin_and_the_problem() {
    let (host, _dir) = host(&["window-trip", "escalating-restart"]);
    let wrong = host.recovery_strategy("window-trip", service(), vec![], Arc::new(FixedAction(RecoveryAction::Ignore)));
    assert!(matches!(wrong, Err(PluginError::WrongKind { actual: "trip-predicate", .. })), "{wrong:?}");
    let refused =
        host.trip_predicate("window-trip", service(), config(&[("windw", "3")]), Arc::new(ConsecutiveFailures(3)));
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("window-trip") && err.contains("`windw`"), "{err}");
    // A plugin that is not loaded is waited for; meanwhile the built-in decides.
    let missing =
        host.log_rule("nope", "app.log", vec![], Arc::new(Contains::new("x", Severity::Info, ["x"]))).unwrap();
    assert!(!missing.is_loaded());
    assert!(missing.match_line("app.log", "x marks the spot").is_some());
}
