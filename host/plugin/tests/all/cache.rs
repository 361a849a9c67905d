//! The precompile cache: a second load of an unchanged plugin is a hit, a damaged entry is a miss that repairs
//! itself, and a cache inside the plugin directory is not used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_plugin::{CacheOutcome, PluginHost, SandboxLimits};

use crate::support::{BuiltIn, ask, install, service};

fn load(plugins: &Path, cache: &Path) -> (PluginHost, CacheOutcome) {
    let host = PluginHost::new(SandboxLimits::default()).unwrap().with_cache_dir(cache);
    let info = host.load_file(&plugins.join("window-trip.wasm")).unwrap();
    (host, info.compiled)
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache).unwrap().map(|e| e.unwrap().path()).collect()
}

#[test]
fn unchanged_plugins_load_from_the_cache_and_damaged_entries_are_misses() {
    let plugins = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    install(plugins.path(), "window-trip");

    assert_eq!(load(plugins.path(), cache.path()).1, CacheOutcome::Miss);
    let (host, outcome) = load(plugins.path(), cache.path());
    assert_eq!(outcome, CacheOutcome::Hit);
    let p = host.trip_predicate("window-trip", service(), vec![], Arc::new(BuiltIn)).unwrap();
    assert_eq!(ask(&p, &[false; 5]).as_deref(), Some("5 of the last 5 probes failed or slow"));

    let [entry] = entries(cache.path()).try_into().unwrap();
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".cwasm") && name.len() > 64 + 6, "{name}");

    // A flipped byte fails the checksum.
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    assert_eq!(load(plugins.path(), cache.path()).1, CacheOutcome::Miss);
    assert_eq!(load(plugins.path(), cache.path()).1, CacheOutcome::Hit);

    // A well-formed entry that wasmtime refuses is a miss too.
    let junk = b"not a compiled component".to_vec();
    std::fs::write(&entry, [crc32fast::hash(&junk).to_le_bytes().to_vec(), junk].concat()).unwrap();
    assert_eq!(load(plugins.path(), cache.path()).1, CacheOutcome::Miss);
    assert_eq!(entries(cache.path()).len(), 1, "the entry is replaced, no temp files stay behind");
}

#[test]
fn a_cache_inside_the_plugin_directory_is_not_used() {
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "window-trip");
    let inside = plugins.path().join("cache");
    assert_eq!(load(plugins.path(), &inside).1, CacheOutcome::Disabled);
    assert_eq!(load(plugins.path(), &inside).1, CacheOutcome::Disabled);
    assert!(!inside.exists());
}
