//! Errors of the plugin host. Each names the plugin file or plugin name it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot create the WASM engine: {0:#}")]
    Engine(wasmtime::Error),

    #[error("cannot start the thread that enforces plugin deadlines: {0}")]
    EpochTicker(std::io::Error),

    #[error("cannot read plugin directory {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },

    #[error("{path}: not a loadable WASM component: {reason}")]
    Compile { path: PathBuf, reason: String },

    #[error("{path}: a symlink that leads to no file ({source}): a link loop, or its target is gone; skipped")]
    BrokenLink { path: PathBuf, source: std::io::Error },

    #[error("{path}: exports no aegis:policy world (exports: {exports})")]
    UnknownWorld { path: PathBuf, exports: String },

    #[error("{path}: built for {found}, but this host implements aegis:policy@{expected}")]
    WitVersion { path: PathBuf, found: String, expected: &'static str },

    #[error("{path}: exports more than one policy kind ({kinds}); a plugin implements exactly one")]
    AmbiguousWorld { path: PathBuf, kinds: String },

    #[error("{path}: does not match the {kind} world: {reason}")]
    WorldMismatch { path: PathBuf, kind: &'static str, reason: String },

    #[error("{path}: now implements {now}, but the running version is a {was} plugin; keeping the running version")]
    KindChanged { path: PathBuf, was: &'static str, now: &'static str },

    #[error("{path}: invalid manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },

    #[error("plugin `{name}` asks for capabilities the operator has not granted: {missing}")]
    NotGranted { name: String, missing: String },

    #[error("no plugin named `{name}` is loaded (loaded: {loaded})")]
    NotFound { name: String, loaded: String },

    #[error("plugin `{name}` is a {actual} plugin, not a {wanted}")]
    WrongKind { name: String, actual: &'static str, wanted: &'static str },

    #[error("plugin `{name}`: cannot instantiate: {reason}")]
    Instantiate { name: String, reason: String },

    #[error("plugin `{name}` refused its config: {reason}")]
    InitRefused { name: String, reason: String },
}
