//! Test helpers: build the plugin workspace once, install chosen plugins into a temporary plugin directory, capture
//! the host's log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aegis_core::{Counts, Sample, TripContext, TripPredicate, Window, WindowKind};
use aegis_plugin::{PluginHost, QuarantinePolicy, SandboxLimits, ServiceInfo};
use tempfile::TempDir;

/// The bundled plugins, built from source once per test run (shared with the end-to-end tests).
pub use aegis_tests::built_plugins;

/// Copies the plugin crate `crate_name` into `dir` as `<crate_name>.wasm`.
pub fn install(dir: &Path, crate_name: &str) -> PathBuf {
    aegis_tests::install_plugin(crate_name, dir)
}

/// A host with `plugins` loaded from a fresh plugin directory (kept alive by the returned `TempDir`).
pub fn host_with(plugins: &[&str], limits: SandboxLimits, quarantine: QuarantinePolicy) -> (PluginHost, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for p in plugins {
        install(dir.path(), p);
    }
    let host = PluginHost::new(limits).unwrap().with_quarantine(quarantine);
    let report = host.load_dir(dir.path()).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.loaded.len(), plugins.len());
    (host, dir)
}

pub fn host(plugins: &[&str]) -> (PluginHost, TempDir) {
    host_with(plugins, roomy(), QuarantinePolicy::default())
}

pub fn service() -> ServiceInfo {
    ServiceInfo { name: "api".into(), kind: "http".into(), endpoint: "http://127.0.0.1:8081/health".into() }
}

pub fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Counts and window after `outcomes` (true = success), as a breaker would have them.
pub fn history(outcomes: &[bool]) -> (Counts, Window) {
    let mut counts = Counts::default();
    let mut window = Window::new(WindowKind::Count(20));
    let now = Instant::now();
    for &ok in outcomes {
        counts.on_outcome(ok, false);
        window.record(now, Sample { success: ok, duration: std::time::Duration::from_millis(3), slow: false });
    }
    (counts, window)
}

/// Asks `predicate` about `outcomes`.
pub fn ask(predicate: &dyn TripPredicate, outcomes: &[bool]) -> Option<String> {
    let (counts, window) = history(outcomes);
    predicate.should_trip(&TripContext::new(&counts, &window, 1))
}

/// A trip predicate that always trips with reason "built-in", so a test can see when the fallback decided.
#[derive(Debug)]
pub struct BuiltIn;

impl TripPredicate for BuiltIn {
    fn should_trip(&self, _: &TripContext<'_>) -> Option<String> {
        Some("built-in".into())
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with the host's log (this thread's `tracing` output) captured, and returns it.
pub fn capture_log<R>(f: impl FnOnce() -> R) -> (R, String) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (result, text)
}

/// The default sandbox with a generous deadline, for tests that are not about deadlines: on a loaded two-core
/// machine a thread can be descheduled for longer than the 10 ms default, which would read as a timeout.
pub fn roomy() -> SandboxLimits {
    SandboxLimits { deadline: std::time::Duration::from_millis(500), ..SandboxLimits::default() }
}
