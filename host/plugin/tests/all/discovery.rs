//! Components the host cannot run are refused at load, with an error naming the file and what is wrong: an unknown
//! version of the contract, no aegis world at all, a world without the functions it needs, not a component. The
//! components are `bare-trip` with names rewritten in place (to names of the same length, so the binary stays
//! well-formed), which is what a plugin built against another contract looks like to the host.

use std::path::Path;

use aegis_plugin::{PluginError, PluginHost, PluginInfo, SandboxLimits};

use crate::support::built_plugins;

/// `bare-trip` with every occurrence of `from` replaced by `to`.
fn bare_trip_renamed(from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a rewrite must keep the length");
    let mut wasm = std::fs::read(built_plugins().join("bare_trip.wasm")).unwrap();
    let mut replaced = 0;
    let mut at = 0;
    while let Some(found) = wasm[at..].windows(from.len()).position(|w| w == from.as_bytes()) {
        let start = at + found;
        wasm[start..start + from.len()].copy_from_slice(to.as_bytes());
        at = start + from.len();
        replaced += 1;
    }
    assert!(replaced > 0, "`{from}` is not in bare-trip");
    wasm
}

/// Loads `wasm` as `<name>.wasm` from a fresh plugin directory.
fn load(name: &str, wasm: &[u8]) -> Result<PluginInfo, PluginError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    PluginHost::new(SandboxLimits::default()).unwrap().load_file(&path)
}

fn names(err: &PluginError, file: &str) -> String {
    let message = err.to_string();
    assert!(message.contains(&Path::new(file).display().to_string()), "the error names {file}: {message}");
    message
}

#[test]
fn the_unmodified_component_loads() {
    let info = load("bare", &std::fs::read(built_plugins().join("bare_trip.wasm")).unwrap()).unwrap();
    assert_eq!(info.kind.as_str(), "trip-predicate");
}

#[test]
fn another_version_of_the_contract_is_refused_naming_both_versions() {
    let wasm = bare_trip_renamed("aegis:policy/trip-predicate@0.1.0", "aegis:policy/trip-predicate@0.9.0");
    let err = load("future", &wasm).unwrap_err();
    assert!(matches!(err, PluginError::WitVersion { .. }), "{err:?}");
    let message = names(&err, "future.wasm");
    assert!(message.contains("built for aegis:policy@0.9.0") && message.contains("aegis:policy@0.1.0"), "{message}");
}

#[test]
fn a_component_without_a_policy_world_is_refused_listing_its_exports() {
    let wasm = bare_trip_renamed("trip-predicate", "trip-estimator");
    let err = load("stranger", &wasm).unwrap_err();
    assert!(matches!(err, PluginError::UnknownWorld { .. }), "{err:?}");
    let message = names(&err, "stranger.wasm");
    assert!(message.contains("exports no aegis:policy world"), "{message}");
    assert!(message.contains("aegis:policy/trip-estimator@0.1.0"), "{message}");
}

#[test]
fn a_world_missing_its_functions_is_a_mismatch() {
    // `should-trip` and `should-trip-with-window` are gone; the interface name still says trip-predicate.
    let wasm = bare_trip_renamed("should-trip", "should-tr1p");
    let err = load("outdated", &wasm).unwrap_err();
    assert!(matches!(err, PluginError::WorldMismatch { kind: "trip-predicate", .. }), "{err:?}");
    let message = names(&err, "outdated.wasm");
    assert!(
        message.contains("does not match the trip-predicate world") && message.contains("should-trip"),
        "{message}"
    );
}

#[test]
fn a_core_module_or_garbage_is_not_a_component() {
    for (name, wasm) in [
        ("core", b"\0asm\x01\0\0\0".to_vec()),
        ("garbage", b"\0asm\x0d\0\x01\0not a component".to_vec()),
        ("empty", Vec::new()),
    ] {
        let err = load(name, &wasm).unwrap_err();
        assert!(matches!(err, PluginError::Compile { .. }), "{name}: {err:?}");
        let message = names(&err, &format!("{name}.wasm"));
        assert!(message.contains("not a loadable WASM component"), "{message}");
        if name == "core" {
            assert!(message.contains("build the plugin for wasm32-wasip2"), "a hint for the usual mistake: {message}");
        }
    }
}
