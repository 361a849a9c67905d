//! Replay speed (issue 17): recorded check outcomes per second through `aegis_core::replay` — the live breaker core,
//! the recovery model and the transitions — with the `window-trip` plugin as the trip predicate, and in the same run
//! the native built-in predicate as the baseline. Target: at least 1 000 000 outcomes/s through `window-trip`.
//!
//! The record is synthetic but shaped like a real one: one check a second with latencies of a few milliseconds,
//! and every ten minutes an outage of 30 failed checks, which opens the breaker, skips the checks of its reset
//! timeout, fails a trial and closes later (so every path of the replay is taken, not only the closed fast path).
//!
//! `window-trip` comes from `AEGIS_WINDOW_TRIP`, else `plugins/window-trip.wasm`, else the plugin workspace's release
//! output (`make plugins`); without it only the native side is measured. Knobs: `REPLAY_OUTCOMES` (default
//! 2 000 000), `REPLAY_RUNS` (default 5; the best run is reported).
//!
//! Run: `cargo bench -p aegis-host --bench replay`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_core::history::Outcome;
use aegis_core::policy::RecoveryAction;
use aegis_core::replay::{RecoveryModel, Run, replay};
use aegis_core::{BackoffSettings, ConsecutiveFailures, TripPredicate};
use aegis_plugin::{PluginHost, SandboxLimits, ServiceInfo};
use aegis_runtime::config::BreakerConfig;
use aegis_runtime::supervisor::breaker_settings;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn record(n: usize) -> Vec<Outcome> {
    let start = 1_764_000_000_000i64;
    (0..n)
        .map(|i| {
            let failed = i % 600 >= 570;
            Outcome {
                at_ms: start + 1000 * i as i64,
                success: !failed,
                slow: false,
                latency_us: 1_500 + (i as u32 * 7919) % 4_000,
                detail: failed.then(|| "status 503".into()),
            }
        })
        .collect()
}

fn window_trip() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("AEGIS_WINDOW_TRIP").map(PathBuf::from),
        Some(root.join("plugins/window-trip.wasm")),
        Some(root.join("plugins/target/wasm32-wasip2/release/window_trip.wasm")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Best outcomes/s over `runs` replays, and the last run.
fn measure(outcomes: &[Outcome], predicate: &Arc<dyn TripPredicate>, runs: u64) -> (f64, Run) {
    let config = BreakerConfig { reset_timeout: Duration::from_secs(30), ..BreakerConfig::default() };
    let model = RecoveryModel {
        strategy: None,
        on_failure: RecoveryAction::Restart,
        backoff: Some(BackoffSettings::default()),
        restart_limit: None,
        seed: 1,
    };
    let end = outcomes.last().map_or(0, |o| o.at_ms);
    let mut best = 0.0f64;
    let mut last = None;
    for _ in 0..runs.max(1) {
        let settings = breaker_settings("bench", &config, Arc::clone(predicate));
        let t = Instant::now();
        let run = replay(outcomes, settings, &model, end);
        let rate = outcomes.len() as f64 / t.elapsed().as_secs_f64();
        best = best.max(rate);
        last = Some(run);
    }
    (best, last.expect("at least one run"))
}

fn report(name: &str, rate: f64, run: &Run) {
    println!(
        "{name:<28} {:>12.0} outcomes/s   ({} admitted, {} refused, {} openings, {} restarts)",
        rate,
        run.checked,
        run.skipped,
        run.openings(),
        run.restarts()
    );
}

fn main() {
    let n = env_or("REPLAY_OUTCOMES", 2_000_000) as usize;
    let runs = env_or("REPLAY_RUNS", 5);
    let outcomes = record(n);
    println!("replay: {n} outcomes, best of {runs} runs");
    let native: Arc<dyn TripPredicate> = Arc::new(ConsecutiveFailures(5));
    let (native_rate, native_run) = measure(&outcomes, &native, runs);
    report("native (5 consecutive)", native_rate, &native_run);
    let Some(file) = window_trip() else {
        println!("window-trip: not built (run `make plugins`); only the native floor was measured");
        return;
    };
    let host = PluginHost::new(SandboxLimits::default()).expect("plugin engine");
    let info = host.load_file(&file).expect("load window-trip");
    let service = ServiceInfo { name: "bench".into(), kind: "http".into(), endpoint: "http://127.0.0.1:1/".into() };
    let config = vec![("window".to_owned(), "10".to_owned()), ("failures".to_owned(), "5".to_owned())];
    let wasm: Arc<dyn TripPredicate> =
        Arc::new(host.trip_predicate(&info.name, service, config, Arc::clone(&native)).expect("bind window-trip"));
    let (wasm_rate, wasm_run) = measure(&outcomes, &wasm, runs);
    report("window-trip (WASM)", wasm_rate, &wasm_run);
    println!(
        "window-trip / native: {:.2}; target >= 1000000 outcomes/s through window-trip: {}",
        wasm_rate / native_rate,
        if wasm_rate >= 1_000_000.0 { "met" } else { "MISSED" }
    );
    let stats = host.stats();
    println!("plugin calls: {stats:?}");
}
