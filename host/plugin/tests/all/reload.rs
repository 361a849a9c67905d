//! Hot reload: bindings follow a changed plugin at their next call, a broken or kind-changing replacement keeps the
//! running version, a deleted plugin falls back to the built-in, and a re-added one is used again.

use std::sync::Arc;

use aegis_plugin::{PluginError, PluginHost, SandboxLimits};

use crate::support::{BuiltIn, ask, built_plugins, service};

fn put(dir: &std::path::Path, crate_name: &str) {
    let built = built_plugins().join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::copy(built, dir.join("p.wasm")).unwrap();
}

#[test]
fn reload_follows_changes_and_keeps_the_running_version_on_bad_replacements() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "window-trip");
    let host = PluginHost::new(SandboxLimits::default()).unwrap();
    host.load_dir(dir.path()).unwrap();
    // Empty config: window-trip trips at 5 of 10; hostile (mode `ok`) never trips.
    let p = host.trip_predicate("p", service(), vec![], Arc::new(BuiltIn)).unwrap();
    let failing = [false; 5];
    assert_eq!(ask(&p, &failing).as_deref(), Some("5 of the last 5 probes failed or slow"));

    let r = host.reload_dir(dir.path()).unwrap();
    assert_eq!((r.unchanged.as_slice(), r.updated.len(), r.failed.len()), (&["p".to_owned()][..], 0, 0));

    put(dir.path(), "hostile");
    let r = host.reload_dir(dir.path()).unwrap();
    assert_eq!(r.updated, ["p"]);
    assert_eq!(ask(&p, &failing), None, "the binding switched to the new version");

    std::fs::write(dir.path().join("p.wasm"), b"\0asm broken").unwrap();
    let r = host.reload_dir(dir.path()).unwrap();
    assert!(matches!(r.failed.as_slice(), [PluginError::Compile { .. }]), "{:?}", r.failed);
    assert_eq!(ask(&p, &failing), None, "the previous version keeps running");

    put(dir.path(), "escalating-restart");
    let r = host.reload_dir(dir.path()).unwrap();
    let [err] = r.failed.as_slice() else { panic!("{:?}", r.failed) };
    assert!(err.to_string().contains("keeping the running version"), "{err}");
    assert_eq!(ask(&p, &failing), None);

    std::fs::remove_file(dir.path().join("p.wasm")).unwrap();
    let r = host.reload_dir(dir.path()).unwrap();
    assert_eq!(r.removed, ["p"]);
    assert!(host.plugins().is_empty());
    assert_eq!(ask(&p, &failing).as_deref(), Some("built-in"));
    assert!(!host.trip_predicate("p", service(), vec![], Arc::new(BuiltIn)).unwrap().is_loaded());

    put(dir.path(), "window-trip");
    let r = host.reload_dir(dir.path()).unwrap();
    assert_eq!(r.added, ["p"]);
    assert_eq!(ask(&p, &failing).as_deref(), Some("5 of the last 5 probes failed or slow"));
}

/// A binding made before its plugin exists (a typo being fixed, a plugin still being copied in) uses the built-in
/// until the plugin appears, then binds at its next call; a plugin of another kind under that name is not used.
#[test]
fn a_binding_waits_for_a_plugin_that_appears_later() {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(SandboxLimits::default()).unwrap();
    host.load_dir(dir.path()).unwrap();
    let p = host.trip_predicate("p", service(), vec![], Arc::new(BuiltIn)).unwrap();
    assert!(!p.is_loaded());
    let failing = [false; 5];
    assert_eq!(ask(&p, &failing).as_deref(), Some("built-in"));
    assert!(host.plugins().is_empty(), "a waiting binding lists no plugin");

    put(dir.path(), "escalating-restart");
    assert_eq!(host.reload_dir(dir.path()).unwrap().added, ["p"]);
    assert!(p.is_loaded());
    assert_eq!(ask(&p, &failing).as_deref(), Some("built-in"), "a recovery strategy is no trip predicate");

    std::fs::remove_file(dir.path().join("p.wasm")).unwrap();
    host.reload_dir(dir.path()).unwrap();
    put(dir.path(), "window-trip");
    assert_eq!(host.reload_dir(dir.path()).unwrap().added, ["p"]);
    assert_eq!(ask(&p, &failing).as_deref(), Some("5 of the last 5 probes failed or slow"));
}

/// A symlink loop or a dangling link among the plugins is an error naming that file; the other plugins load, and
/// neither a load nor a reload hangs on it.
#[test]
fn symlink_loops_and_dangling_links_are_named_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "window-trip");
    std::os::unix::fs::symlink("b.wasm", dir.path().join("a.wasm")).unwrap();
    std::os::unix::fs::symlink("a.wasm", dir.path().join("b.wasm")).unwrap();
    std::os::unix::fs::symlink("gone.wasm", dir.path().join("dangling.wasm")).unwrap();
    let host = PluginHost::new(SandboxLimits::default()).unwrap();
    let report = host.load_dir(dir.path()).unwrap();
    assert_eq!(report.loaded.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["p"]);
    let failed: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for (error, file) in report.failed.iter().zip(["a.wasm", "b.wasm", "dangling.wasm"]) {
        assert!(matches!(error, PluginError::BrokenLink { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(file) && message.contains("symlink"), "{message}");
    }
    assert!(failed[0].contains("symbolic links"), "the system's reason: {}", failed[0]);
    let r = host.reload_dir(dir.path()).unwrap();
    assert_eq!((r.unchanged.as_slice(), r.failed.len()), (&["p".to_owned()][..], 3));
}
