//! Criterion benchmarks of the plugin host, in one run: a trip-predicate decision through WASM (`window-trip`) vs
//! the native built-in (and the fixed cost of a call, with an empty window), instantiating a plugin from the pool
//! (a fresh store and instance, dropped) and binding it (the same plus its `init` with a config), and loading a
//! plugin cold (Cranelift) vs from the precompile cache. Builds the plugin workspace for wasm32-wasip2 first.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_core::{ConsecutiveFailures, Counts, Sample, TripContext, TripPredicate, Window, WindowKind};
use aegis_plugin::{CacheOutcome, PluginHost, SandboxLimits, ServiceInfo};
use criterion::{Criterion, criterion_group, criterion_main};

/// Builds the plugin workspace and returns the path of the compiled `window-trip` component.
fn window_trip_wasm() -> PathBuf {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", plugins.join("target"))
        .status()
        .expect("run cargo to build the plugins");
    assert!(status.success(), "building the plugin workspace failed: {status}");
    plugins.join("target/wasm32-wasip2/release/window_trip.wasm")
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

fn benches(c: &mut Criterion) {
    let wasm = window_trip_wasm();
    let plugins = tempfile::tempdir().expect("temp dir");
    let plugin = plugins.path().join("window-trip.wasm");
    std::fs::copy(&wasm, &plugin).expect("install window-trip");
    let cache = tempfile::tempdir().expect("temp dir");

    let host = PluginHost::new(SandboxLimits::default()).expect("engine");
    host.load_file(&plugin).expect("load window-trip");
    let config = vec![("window".to_owned(), "10".to_owned()), ("failures".to_owned(), "5".to_owned())];
    let wasm_trip = host
        .trip_predicate("window-trip", service(), config.clone(), Arc::new(ConsecutiveFailures(5)))
        .expect("bind window-trip");
    let native = ConsecutiveFailures(5);
    let (counts, window) = history();
    let ctx = TripContext::new(&counts, &window, 1);
    assert_eq!(wasm_trip.should_trip(&ctx), None);

    let mut g = c.benchmark_group("trip");
    g.bench_function("wasm/window-trip", |b| b.iter(|| black_box(wasm_trip.should_trip(black_box(&ctx)))));
    g.bench_function("native/consecutive-failures", |b| b.iter(|| black_box(native.should_trip(black_box(&ctx)))));
    // The fixed cost of a call, without a window to copy.
    let (no_counts, no_window) = (Counts::default(), Window::new(WindowKind::Count(20)));
    let empty = TripContext::new(&no_counts, &no_window, 1);
    g.bench_function("wasm/window-trip/empty-window", |b| {
        b.iter(|| black_box(wasm_trip.should_trip(black_box(&empty))))
    });
    g.finish();

    let mut g = c.benchmark_group("bind");
    g.bench_function("instantiate", |b| b.iter(|| host.instantiate("window-trip").expect("instantiate")));
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
