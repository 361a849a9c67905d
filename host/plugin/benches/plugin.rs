//! Criterion benchmarks of the plugin host, in one run: a breaker's record-and-decide step with a trip predicate
//! through WASM (`window-trip`) vs the native built-in vs recording alone vs a component that does nothing
//! (`bare-trip`, the floor of any WASM decision), the same with a shadow predicate asked after it, a decision that sends the plugin the whole window (its
//! resynchronising path), instantiating a plugin from the pool (a fresh store and instance, dropped) and binding it
//! (the same plus its `init` with a config), and loading a plugin cold (Cranelift) vs from the precompile cache.
//! Builds the plugin workspace for wasm32-wasip2 first; with `AEGIS_BENCH_PLUGINS=<dir>` it takes `window_trip.wasm`
//! and `bare_trip.wasm` from `<dir>` instead, to compare two builds of the SDK or of a plugin with one host build.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_core::{ConsecutiveFailures, Counts, Sample, TripContext, TripPredicate, Window, WindowKind};
use aegis_plugin::{CacheOutcome, PluginHost, SandboxLimits, ServiceInfo};
use criterion::{Criterion, criterion_group, criterion_main};

/// Builds the plugin workspace and returns the directory holding the compiled components.
fn build_plugins() -> PathBuf {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", plugins.join("target"))
        .status()
        .expect("run cargo to build the plugins");
    assert!(status.success(), "building the plugin workspace failed: {status}");
    plugins.join("target/wasm32-wasip2/release")
}

fn service() -> ServiceInfo {
    ServiceInfo { name: "bench".into(), kind: "http".into(), endpoint: "http://127.0.0.1:8081/health".into() }
}

/// A breaker's view after 20 probes, every fourth a failure: neither predicate trips, both read everything.
fn history() -> (Counts, Window) {
    let mut counts = Counts::default();
    let mut window = Window::new(WindowKind::Count(20));
    let now = Instant::now();
    for i in 0..20 {
        let ok = i % 4 != 0;
        counts.on_outcome(ok, false);
        window.record(now, Sample { success: ok, duration: Duration::from_millis(3), slow: false });
    }
    (counts, window)
}

/// Counts and a 20-call window of one breaker generation, as the breaker keeps them.
struct Generation {
    counts: Counts,
    window: Window,
    now: Instant,
    /// Every `fail_every`-th outcome fails (never when 0).
    fail_every: u32,
}

impl Generation {
    fn new(fail_every: u32) -> Self {
        Generation {
            counts: Counts::default(),
            window: Window::new(WindowKind::Count(20)),
            now: Instant::now(),
            fail_every,
        }
    }

    /// Records the next outcome; returns the request count.
    fn record(&mut self) -> u32 {
        let ok = self.fail_every == 0 || !self.counts.requests.is_multiple_of(self.fail_every);
        self.counts.on_outcome(ok, false);
        self.window.record(self.now, Sample { success: ok, duration: Duration::from_millis(3), slow: false });
        self.counts.requests
    }

    fn context(&self) -> TripContext<'_> {
        TripContext::new(&self.counts, &self.window, 1).in_generation(0)
    }
}

fn benches(c: &mut Criterion) {
    let built = std::env::var_os("AEGIS_BENCH_PLUGINS").map(PathBuf::from).unwrap_or_else(build_plugins);
    let plugins = tempfile::tempdir().expect("temp dir");
    let plugin = plugins.path().join("window-trip.wasm");
    std::fs::copy(built.join("window_trip.wasm"), &plugin).expect("install window-trip");
    let bare = plugins.path().join("bare-trip.wasm");
    std::fs::copy(built.join("bare_trip.wasm"), &bare).expect("install bare-trip");
    let cache = tempfile::tempdir().expect("temp dir");

    let host = PluginHost::new(SandboxLimits::default()).expect("engine");
    host.load_file(&plugin).expect("load window-trip");
    host.load_file(&bare).expect("load bare-trip");
    let config = vec![("window".to_owned(), "10".to_owned()), ("failures".to_owned(), "5".to_owned())];
    let wasm_trip = host
        .trip_predicate("window-trip", service(), config.clone(), Arc::new(ConsecutiveFailures(5)))
        .expect("bind window-trip");
    let native = ConsecutiveFailures(5);

    // A breaker's hot path: record one outcome (every fourth a failure, so neither predicate trips), then decide.
    // Every WASM decision is the plain-numbers call: the plugin's copy of the window follows outcome by outcome.
    let mut g = c.benchmark_group("trip");
    let mut breaker = Generation::new(4);
    g.bench_function("record-only", |b| b.iter(|| black_box(breaker.record())));
    g.bench_function("native/consecutive-failures", |b| {
        b.iter(|| {
            breaker.record();
            black_box(native.should_trip(&breaker.context()))
        })
    });
    // The floor: the same step through a component that does nothing (no SDK, no window, no policy). What is
    // left is wasmtime's component call, the host's binding and the breaker's bookkeeping.
    let bare_trip = host
        .trip_predicate("bare-trip", service(), Vec::new(), Arc::new(ConsecutiveFailures(5)))
        .expect("bind bare-trip");
    g.bench_function("wasm/bare", |b| {
        b.iter(|| {
            breaker.record();
            black_box(bare_trip.should_trip(&breaker.context()))
        })
    });
    // Shadow mode: the same step with a shadow (window-trip, a stricter config that still stays closed here, its own
    // quarantine record) asked after the live decision, as the runtime's shadowed predicate does; the difference to
    // `wasm/window-trip` is what a shadow adds to a live decision. (A shadow that trips pays for fetching its reason.)
    let shadow = host
        .trip_predicate(
            "window-trip",
            service(),
            vec![("failures".to_owned(), "4".to_owned())],
            Arc::new(ConsecutiveFailures(5)),
        )
        .expect("bind the window-trip shadow")
        .into_shadow(&host);
    g.bench_function("wasm/window-trip+shadow", |b| {
        b.iter(|| {
            breaker.record();
            let ctx = breaker.context();
            black_box((wasm_trip.should_trip(&ctx), shadow.answer(&ctx)))
        })
    });
    let sent = wasm_trip.windows_sent();
    g.bench_function("wasm/window-trip", |b| {
        b.iter(|| {
            breaker.record();
            black_box(wasm_trip.should_trip(&breaker.context()))
        })
    });
    // At most the first decision (the plugin's copy is fresh, the generation is not) sends the window; none when a
    // filter skipped the case.
    assert!(wasm_trip.windows_sent() <= sent + 1, "the window was sent {} times", wasm_trip.windows_sent() - sent);
    // The same plugin reading only the newest outcome, of a healthy service: what is left is the cost of the call
    // (wasmtime's component call, the adapter, the SDK's glue and window copy), not of the policy.
    let newest_only = vec![("window".to_owned(), "1".to_owned()), ("failures".to_owned(), "1".to_owned())];
    let minimal = host
        .trip_predicate("window-trip", service(), newest_only, Arc::new(ConsecutiveFailures(5)))
        .expect("bind window-trip");
    let mut healthy = Generation::new(0);
    g.bench_function("wasm/window-trip/newest-only", |b| {
        b.iter(|| {
            healthy.record();
            black_box(minimal.should_trip(&healthy.context()))
        })
    });
    // A decision that sends the whole window (20 outcomes): a fresh instance's first one, or a context from
    // outside a breaker, as here.
    let (counts, window) = history();
    let ctx = TripContext::new(&counts, &window, 1);
    assert_eq!(wasm_trip.should_trip(&ctx), None);
    g.bench_function("wasm/window-trip/window-sent", |b| b.iter(|| black_box(wasm_trip.should_trip(black_box(&ctx)))));
    g.finish();

    let mut g = c.benchmark_group("bind");
    g.bench_function("instantiate", |b| b.iter(|| host.instantiate("window-trip").expect("instantiate")));
    g.bench_function("instantiate/bare", |b| b.iter(|| host.instantiate("bare-trip").expect("instantiate")));
    g.bench_function("instantiate+init", |b| {
        b.iter(|| {
            black_box(
                host.trip_predicate("window-trip", service(), config.clone(), Arc::new(ConsecutiveFailures(5)))
                    .expect("bind"),
            )
        })
    });
    g.finish();

    let cached = PluginHost::new(SandboxLimits::default()).expect("engine").with_cache_dir(cache.path());
    assert_eq!(cached.load_file(&plugin).expect("warm the cache").compiled, CacheOutcome::Miss);
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("cold", |b| b.iter(|| black_box(host.load_file(&plugin).expect("load"))));
    g.bench_function("cached", |b| {
        b.iter(|| {
            let info = cached.load_file(&plugin).expect("load");
            assert_eq!(info.compiled, CacheOutcome::Hit);
            black_box(info)
        })
    });
    g.finish();
}

criterion_group!(plugin, benches);
criterion_main!(plugin);
