//! Capabilities: a plugin's manifest asks, the operator grants. Ungranted requests refuse the load with the missing
//! capability named; granted ones work, and only as far as granted.

use std::sync::Arc;

use aegis_plugin::{Capabilities, PluginError, PluginHost, SandboxLimits};

use crate::support::{BuiltIn, ask, config, install, service};

#[test]
fn ungranted_capabilities_refuse_the_load_and_granted_ones_work_as_far_as_granted() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = std::fs::canonicalize(data.path()).unwrap();
    std::fs::write(data_dir.join("status"), "green").unwrap();
    install(plugins.path(), "hostile");
    std::fs::write(
        plugins.path().join("hostile.manifest.yaml"),
        format!(
            "kind: trip-predicate\nversion: 0.0.1-test\nconfig: {{mode: file, path: {}}}\n\
             capabilities: {{env: [PATH], read-dirs: [{}]}}\n",
            data_dir.join("status").display(),
            data_dir.display()
        ),
    )
    .unwrap();
    let wasm = plugins.path().join("hostile.wasm");

    let host = PluginHost::new(SandboxLimits::default()).unwrap();
    let err = host.load_file(&wasm).unwrap_err();
    assert!(matches!(err, PluginError::NotGranted { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("`hostile`") && msg.contains("env:PATH") && msg.contains("read-dirs:"), "{msg}");

    host.grant("hostile", Capabilities { env: vec!["PATH".into()], ..Capabilities::default() });
    let msg = host.load_file(&wasm).unwrap_err().to_string();
    assert!(!msg.contains("env:PATH") && msg.contains("read-dirs:"), "{msg}");

    host.grant(
        "hostile",
        Capabilities { env: vec!["PATH".into()], read_dirs: vec![data_dir.clone()], ..Capabilities::default() },
    );
    let info = host.load_file(&wasm).unwrap();
    assert_eq!(info.version.as_deref(), Some("0.0.1-test"));

    // Manifest config supplies the defaults: read the granted file.
    let granted = host.trip_predicate("hostile", service(), vec![], Arc::new(BuiltIn)).unwrap();
    assert_eq!(
        ask(&granted, &[true]).as_deref(),
        Some(format!("LEAK: read 5 bytes of {}", data_dir.join("status").display()).as_str())
    );
    // Outside the granted directory nothing changes.
    let outside =
        host.trip_predicate("hostile", service(), config(&[("path", "/etc/hostname")]), Arc::new(BuiltIn)).unwrap();
    assert!(ask(&outside, &[true]).unwrap().starts_with("denied"));
    // Only the granted variable is visible.
    let env = host.trip_predicate("hostile", service(), config(&[("mode", "env")]), Arc::new(BuiltIn)).unwrap();
    assert_eq!(ask(&env, &[true]).as_deref(), Some("LEAK: [\"PATH\"]"));
    // Clocks were not asked for: they stand still.
    let clock = host.trip_predicate("hostile", service(), config(&[("mode", "clock")]), Arc::new(BuiltIn)).unwrap();
    assert!(ask(&clock, &[true]).unwrap().starts_with("denied"));
}

#[test]
fn granted_clocks_tell_the_time() {
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile");
    std::fs::write(
        plugins.path().join("hostile.manifest.yaml"),
        "config: {mode: clock}\ncapabilities: {clocks: true}\n",
    )
    .unwrap();
    let wasm = plugins.path().join("hostile.wasm");
    let host = PluginHost::new(SandboxLimits::default()).unwrap();
    let msg = host.load_file(&wasm).unwrap_err().to_string();
    assert!(msg.contains("clocks"), "{msg}");
    host.grant("hostile", Capabilities { clocks: true, ..Capabilities::default() });
    host.load_file(&wasm).unwrap();
    let p = host.trip_predicate("hostile", service(), vec![], Arc::new(BuiltIn)).unwrap();
    let reason = ask(&p, &[true]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let secs: u64 = reason
        .strip_prefix("LEAK: wall clock ")
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(now.abs_diff(secs) < 60 && reason.ends_with("moved: true"), "{reason}");
}

/// A granted directory is a boundary, however the path is spelled: `..`, an absolute or relative symlink pointing
/// out, or a symlinked directory leading up all fail (wasmtime-wasi resolves guest paths with cap-std, beneath the
/// preopened directory). A symlink that stays inside still works.
#[test]
fn granted_directories_cannot_be_escaped_by_dot_dot_or_symlinks() {
    let plugins = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(root.path()).unwrap();
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("status"), "green").unwrap();
    std::fs::write(root.join("secret"), "hunter2").unwrap();
    std::os::unix::fs::symlink("status", data.join("alias")).unwrap();
    std::os::unix::fs::symlink("../secret", data.join("relative")).unwrap();
    std::os::unix::fs::symlink(root.join("secret"), data.join("absolute")).unwrap();
    std::os::unix::fs::symlink("..", data.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc", data.join("etc")).unwrap();
    install(plugins.path(), "hostile");
    std::fs::write(
        plugins.path().join("hostile.manifest.yaml"),
        format!("kind: trip-predicate\nconfig: {{mode: file}}\ncapabilities: {{read-dirs: [{}]}}\n", data.display()),
    )
    .unwrap();
    let host = PluginHost::new(SandboxLimits::default()).unwrap();
    host.grant("hostile", Capabilities { read_dirs: vec![data.clone()], ..Capabilities::default() });
    host.load_file(&plugins.path().join("hostile.wasm")).unwrap();
    let read = |path: &str| {
        let p = host.trip_predicate("hostile", service(), config(&[("path", path)]), Arc::new(BuiltIn)).unwrap();
        ask(&p, &[true]).unwrap()
    };
    let inside = data.join("alias").display().to_string();
    assert_eq!(read(&inside), format!("LEAK: read 5 bytes of {inside}"), "a symlink within the grant is followed");
    let escapes = [
        format!("{}/../secret", data.display()),
        format!("{}/relative", data.display()),
        format!("{}/absolute", data.display()),
        format!("{}/up/secret", data.display()),
        format!("{}/etc/hostname", data.display()),
        format!("{}/up/data/../secret", data.display()),
        root.join("secret").display().to_string(),
    ];
    for path in escapes {
        let answer = read(&path);
        assert!(answer.starts_with("denied"), "{path}: {answer}");
    }
}
